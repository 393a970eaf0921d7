/*
 * histogram.h - a small log-linear latency histogram.
 *
 * Values (e.g. microseconds) fall into buckets indexed by their highest set
 * bit and the next HISTOGRAM_SUB_BITS bits, so every bucket is at most
 * 1/2^HISTOGRAM_SUB_BITS (about 3 %) wide relative to its value.  Fixed
 * size, no allocation; merge per-thread histograms with histogram_merge().
 * Not thread-safe: one writer per histogram.
 */
#ifndef COMMON_HISTOGRAM_H
#define COMMON_HISTOGRAM_H

#include <stdint.h>

#define HISTOGRAM_SUB_BITS 5
#define HISTOGRAM_BUCKETS ((64 - HISTOGRAM_SUB_BITS + 1) << HISTOGRAM_SUB_BITS)

struct histogram {
	uint64_t count;
	uint64_t sum;
	uint64_t max;
	uint64_t buckets[HISTOGRAM_BUCKETS];
};

void histogram_reset(struct histogram *h);
void histogram_add(struct histogram *h, uint64_t value);
void histogram_merge(struct histogram *into, const struct histogram *from);
/* The value below which fraction q (0..1) of the samples lie: the upper
 * bound of the bucket holding that rank (never below a recorded value),
 * capped by the maximum recorded.  0 for an empty histogram. */
uint64_t histogram_quantile(const struct histogram *h, double q);
/* Bucket helpers, for exporting cumulative counts. */
unsigned histogram_bucket_of(uint64_t value);
uint64_t histogram_bucket_upper(unsigned bucket);

#endif
