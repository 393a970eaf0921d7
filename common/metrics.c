/*
 * metrics.c - Prometheus text exposition (see metrics.h).
 */
#include <event2/buffer.h>

#include "common/metrics.h"

const uint64_t metrics_bucket_us[METRICS_NBUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 5000000,
};

void metrics_hist_add(struct metrics_hist *h, uint64_t us)
{
	unsigned i = 0;

	while (i < METRICS_NBUCKETS && us > metrics_bucket_us[i])
		i++;
	h->buckets[i]++;
	h->count++;
	h->sum_us += us;
}

void metrics_header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_value(struct evbuffer *out, const char *name, const char *labels, uint64_t value)
{
	if (labels != NULL && labels[0] != '\0')
		evbuffer_add_printf(out, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
	else
		evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)value);
}

void metrics_hist(struct evbuffer *out, const char *name, const char *labels,
		  const struct metrics_hist *h)
{
	const char *sep = labels != NULL && labels[0] != '\0' ? "," : "";
	uint64_t cum = 0;

	if (labels == NULL)
		labels = "";
	for (unsigned i = 0; i < METRICS_NBUCKETS; i++) {
		cum += h->buckets[i];
		evbuffer_add_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
				    (double)metrics_bucket_us[i] / 1e6, (unsigned long long)cum);
	}
	cum += h->buckets[METRICS_NBUCKETS];
	evbuffer_add_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
			    (unsigned long long)cum);
	if (labels[0] != '\0') {
		evbuffer_add_printf(out, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels,
				    (double)h->sum_us / 1e6, name, labels,
				    (unsigned long long)h->count);
	} else {
		evbuffer_add_printf(out, "%s_sum %.6f\n%s_count %llu\n", name,
				    (double)h->sum_us / 1e6, name, (unsigned long long)h->count);
	}
}
