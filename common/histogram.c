/*
 * histogram.c - log-linear histogram (see histogram.h).
 *
 * Values below 2^SUB_BITS get a bucket each.  Above that, a value with its
 * top bit at position m (m >= SUB_BITS) goes to group m - SUB_BITS + 1 and
 * to the sub-bucket given by the SUB_BITS bits below the top bit.
 */
#include <string.h>

#include "common/histogram.h"

#define SUB_COUNT (1u << HISTOGRAM_SUB_BITS)

void histogram_reset(struct histogram *h)
{
	memset(h, 0, sizeof(*h));
}

unsigned histogram_bucket_of(uint64_t v)
{
	unsigned m, group, sub;

	if (v < SUB_COUNT)
		return (unsigned)v;
	m = 63u - (unsigned)__builtin_clzll(v);
	group = m - HISTOGRAM_SUB_BITS + 1;
	sub = (unsigned)(v >> (m - HISTOGRAM_SUB_BITS)) & (SUB_COUNT - 1);
	return group * SUB_COUNT + sub;
}

uint64_t histogram_bucket_upper(unsigned bucket)
{
	unsigned group = bucket / SUB_COUNT, sub = bucket % SUB_COUNT;
	unsigned shift;

	if (group == 0)
		return sub;
	shift = group - 1;
	/* Values in this bucket: (SUB_COUNT + sub) << shift ... +(1 << shift) - 1 */
	if (shift >= 64 - HISTOGRAM_SUB_BITS - 1 && sub == SUB_COUNT - 1)
		return UINT64_MAX;
	return (((uint64_t)(SUB_COUNT + sub) + 1) << shift) - 1;
}

void histogram_add(struct histogram *h, uint64_t value)
{
	h->count++;
	h->sum += value;
	if (value > h->max)
		h->max = value;
	h->buckets[histogram_bucket_of(value)]++;
}

void histogram_merge(struct histogram *into, const struct histogram *from)
{
	into->count += from->count;
	into->sum += from->sum;
	if (from->max > into->max)
		into->max = from->max;
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++)
		into->buckets[i] += from->buckets[i];
}

uint64_t histogram_quantile(const struct histogram *h, double q)
{
	uint64_t rank, seen = 0;

	if (h->count == 0)
		return 0;
	if (!(q > 0))	/* also NaN */
		q = 0;
	if (q >= 1)
		return h->max;
	rank = (uint64_t)(q * (double)h->count) + 1;
	if (rank > h->count)
		rank = h->count;
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++) {
		seen += h->buckets[i];
		if (seen >= rank) {
			uint64_t up = histogram_bucket_upper(i);
			return up < h->max ? up : h->max;
		}
	}
	return h->max;
}
