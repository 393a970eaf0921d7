/*
 * metrics.h - writing the Prometheus text exposition format (version
 * 0.0.4) that both daemons serve on their stats sockets.
 */
#ifndef COMMON_METRICS_H
#define COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Latency bucket upper bounds in microseconds for every *_seconds
 * histogram (exported as seconds); the +Inf bucket comes after them. */
#define METRICS_NBUCKETS 14
extern const uint64_t metrics_bucket_us[METRICS_NBUCKETS];

/* A latency histogram with the buckets above.  One writer (no locking). */
struct metrics_hist {
	uint64_t buckets[METRICS_NBUCKETS + 1];	/* non-cumulative; last = +Inf */
	uint64_t count;
	uint64_t sum_us;
};

void metrics_hist_add(struct metrics_hist *h, uint64_t us);

/* "# HELP name help\n# TYPE name type\n" (type: counter, gauge, histogram). */
void metrics_header(struct evbuffer *out, const char *name, const char *type,
		    const char *help);
/* "name{labels} value\n"; labels is the text inside the braces, already
 * escaped, or NULL for none. */
void metrics_value(struct evbuffer *out, const char *name, const char *labels, uint64_t value);
/* The _bucket, _sum and _count lines of a histogram (values in seconds). */
void metrics_hist(struct evbuffer *out, const char *name, const char *labels,
		  const struct metrics_hist *h);

#endif
