/*
 * test-histogram.c - unit tests for common/histogram.c.
 *
 * The contract (histogram.h): a bucket is at most 1/2^HISTOGRAM_SUB_BITS of
 * its values wide, and histogram_quantile(q) returns the upper bound of the
 * bucket holding rank floor(q * count) + 1, never below that sample and
 * capped by the maximum.  So against the sorted samples s[], for rank r:
 *     s[r-1] <= quantile <= s[r-1] + s[r-1] / 32.
 * The distributions come from a fixed-seed generator (splitmix64), so a
 * failure reproduces exactly.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/histogram.h"
#include "tests/unit.h"

#define SUB (1u << HISTOGRAM_SUB_BITS)
#define NSAMPLES 200000

static uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(void)
{
	return (double)(rng() >> 11) * (1.0 / 9007199254740992.0);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static struct histogram H, H2, H3;
static uint64_t samples[NSAMPLES];

static const double qs[] = {
	0, 0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.333, 0.5, 0.75, 0.9, 0.95, 0.99,
	0.995, 0.999, 0.9999, 0.99999, 1,
};

/* Checks every quantile in qs[] of H against the first n samples (sorted
 * here).  Returns the number of quantiles out of bounds. */
static unsigned check_quantiles(size_t n, const char *what)
{
	unsigned bad = 0;

	qsort(samples, n, sizeof(samples[0]), cmp_u64);
	CHECK_INT(H.count, n);
	CHECK(H.max == samples[n - 1]);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		uint64_t got = histogram_quantile(&H, qs[i]), want, r;

		if (qs[i] >= 1) {
			if (got != samples[n - 1]) {
				fprintf(stderr, "  %s: q=1 gave %llu, max %llu\n", what,
					(unsigned long long)got,
					(unsigned long long)samples[n - 1]);
				bad++;
			}
			continue;
		}
		r = (uint64_t)(qs[i] * (double)n) + 1;
		if (r > n)
			r = n;
		want = samples[r - 1];
		if (got < want || got - want > want / SUB) {
			fprintf(stderr, "  %s: q=%g gave %llu, sample at rank %llu is %llu\n",
				what, qs[i], (unsigned long long)got, (unsigned long long)r,
				(unsigned long long)want);
			bad++;
		}
		/* and as the header words it: at least fraction q lie at or below */
		size_t le = 0;

		while (le < n && samples[le] <= got)
			le++;
		if ((double)le < qs[i] * (double)n) {
			fprintf(stderr, "  %s: q=%g gave %llu, only %zu of %zu at or below\n",
				what, qs[i], (unsigned long long)got, le, n);
			bad++;
		}
	}
	return bad;
}

static void fill(size_t n)
{
	histogram_reset(&H);
	for (size_t i = 0; i < n; i++)
		histogram_add(&H, samples[i]);
}

static void test_empty(void)
{
	histogram_reset(&H);
	CHECK_INT(H.count, 0);
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
		CHECK_INT(histogram_quantile(&H, qs[i]), 0);
	CHECK_INT(histogram_quantile(&H, -1), 0);
	CHECK_INT(histogram_quantile(&H, 2), 0);

	/* reset really clears a used histogram */
	histogram_add(&H, 12345);
	histogram_add(&H, UINT64_MAX);
	histogram_reset(&H);
	CHECK_INT(H.count, 0);
	CHECK_INT(H.sum, 0);
	CHECK_INT(H.max, 0);
	CHECK_INT(histogram_quantile(&H, 0.5), 0);
	for (unsigned i = 0; i < HISTOGRAM_BUCKETS; i++)
		if (H.buckets[i] != 0) {
			CHECK(!"bucket not cleared");
			break;
		}
}

static void test_single_values(void)
{
	static const uint64_t vals[] = {
		0, 1, 31, 32, 33, 63, 64, 65, 1000, 1023, 1024, 1025, 123456789,
		(1ULL << 32) - 1, 1ULL << 32, (1ULL << 63) - 1, 1ULL << 63,
		(1ULL << 63) + 1, UINT64_MAX - 1, UINT64_MAX,
	};

	/* one sample: every quantile is that sample (the bucket bound is
	 * capped by the maximum) */
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		histogram_reset(&H);
		histogram_add(&H, vals[i]);
		CHECK_INT(H.count, 1);
		CHECK(H.sum == vals[i]);
		CHECK(H.max == vals[i]);
		for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++)
			if (histogram_quantile(&H, qs[k]) != vals[i]) {
				fprintf(stderr, "  value %llu, q=%g: %llu\n",
					(unsigned long long)vals[i], qs[k],
					(unsigned long long)histogram_quantile(&H, qs[k]));
				CHECK(0);
			}
		CHECK(histogram_quantile(&H, -0.5) == vals[i]);
		CHECK(histogram_quantile(&H, 1.5) == vals[i]);
	}
}

static void test_small_values_exact(void)
{
	/* below 2^SUB_BITS every value has its own bucket: exact quantiles */
	histogram_reset(&H);
	for (uint64_t v = 0; v < SUB; v++)
		for (int k = 0; k < 10; k++)
			histogram_add(&H, v);
	CHECK_INT(H.count, SUB * 10);
	CHECK_INT(H.sum, 10 * (SUB - 1) * SUB / 2);
	CHECK_INT(histogram_quantile(&H, 0), 0);
	CHECK_INT(histogram_quantile(&H, 0.5), 16);	/* rank 161 of 320 */
	CHECK_INT(histogram_quantile(&H, 0.25), 8);	/* rank 81 */
	CHECK_INT(histogram_quantile(&H, 0.999), 31);
	CHECK_INT(histogram_quantile(&H, 1), 31);
	CHECK_INT(histogram_quantile(&H, 0.03125), 1);	/* rank 11 */
	CHECK_INT(histogram_quantile(&H, 0.03124), 0);	/* rank 10 */
}

static void test_quantile_bounds(void)
{
	/* q outside 0..1 is clamped */
	histogram_reset(&H);
	for (uint64_t v = 100; v < 200; v++)
		histogram_add(&H, v);
	CHECK_INT(histogram_quantile(&H, -1), histogram_quantile(&H, 0));
	CHECK_INT(histogram_quantile(&H, -1e300), histogram_quantile(&H, 0));
	CHECK_INT(histogram_quantile(&H, 1.0000001), 199);
	CHECK_INT(histogram_quantile(&H, 1e300), 199);
	CHECK(histogram_quantile(&H, 0) >= 100 && histogram_quantile(&H, 0) <= 103);
	/* monotonic in q */
	uint64_t prev = 0;

	for (int i = 0; i <= 1000; i++) {
		uint64_t v = histogram_quantile(&H, i / 1000.0);

		CHECK(v >= prev);
		prev = v;
	}
}

static void test_uniform(void)
{
	rng_state = 1;
	for (size_t i = 0; i < NSAMPLES; i++)
		samples[i] = rng() % 1000000;
	fill(NSAMPLES);
	CHECK_INT(check_quantiles(NSAMPLES, "uniform"), 0);

	/* the median of U[0, 1e6) is near 5e5 (a check on the test itself) */
	uint64_t med = histogram_quantile(&H, 0.5);

	CHECK(med > 490000 && med < 510000 * (1 + 1.0 / SUB));
}

static void test_exponential(void)
{
	const double mean = 20000;	/* e.g. microseconds */

	rng_state = 2;
	for (size_t i = 0; i < NSAMPLES; i++)
		samples[i] = (uint64_t)(-mean * log(1 - rng_unit()));
	fill(NSAMPLES);
	CHECK_INT(check_quantiles(NSAMPLES, "exponential"), 0);

	/* p50 of Exp(mean) is mean * ln 2, p99 is mean * ln 100 */
	double p50 = (double)histogram_quantile(&H, 0.5);
	double p99 = (double)histogram_quantile(&H, 0.99);

	CHECK(fabs(p50 / (mean * log(2)) - 1) < 0.05);
	CHECK(fabs(p99 / (mean * log(100)) - 1) < 0.06);
}

static void test_wide_range(void)
{
	/* log-uniform over the whole 64-bit range, to reach the top buckets */
	rng_state = 3;
	for (size_t i = 0; i < NSAMPLES; i++)
		samples[i] = rng() >> (rng() % 64);
	samples[0] = UINT64_MAX;
	samples[1] = 0;
	samples[2] = 1ULL << 63;
	fill(NSAMPLES);
	CHECK_INT(check_quantiles(NSAMPLES, "wide"), 0);
	CHECK(histogram_quantile(&H, 1) == UINT64_MAX);

	/* few samples, heavy duplicates */
	for (size_t i = 0; i < 7; i++)
		samples[i] = 1000 + (i % 2) * 999000;
	fill(7);
	CHECK_INT(check_quantiles(7, "small"), 0);
}

static void test_bucket_edges(void)
{
	CHECK_INT(histogram_bucket_of(0), 0);
	CHECK_INT(histogram_bucket_of(1), 1);
	CHECK_INT(histogram_bucket_of(31), 31);
	CHECK_INT(histogram_bucket_of(32), 32);
	CHECK_INT(histogram_bucket_of(63), 63);
	CHECK_INT(histogram_bucket_of(64), 64);
	CHECK_INT(histogram_bucket_of(65), 64);		/* 64..65 share a bucket */
	CHECK_INT(histogram_bucket_of(66), 65);
	CHECK_INT(histogram_bucket_of(1ULL << 63), (63 - HISTOGRAM_SUB_BITS + 1) * SUB);
	CHECK_INT(histogram_bucket_of((1ULL << 63) - 1), (63 - HISTOGRAM_SUB_BITS + 1) * SUB - 1);
	CHECK_INT(histogram_bucket_of(UINT64_MAX), HISTOGRAM_BUCKETS - 1);
	CHECK_INT(histogram_bucket_upper(0), 0);
	CHECK_INT(histogram_bucket_upper(1), 1);
	CHECK_INT(histogram_bucket_upper(31), 31);
	CHECK_INT(histogram_bucket_upper(32), 32);
	CHECK_INT(histogram_bucket_upper(63), 63);
	CHECK_INT(histogram_bucket_upper(64), 65);
	CHECK(histogram_bucket_upper(HISTOGRAM_BUCKETS - 1) == UINT64_MAX);
	CHECK(histogram_bucket_upper(histogram_bucket_of(1ULL << 63)) ==
	      (1ULL << 63) + (1ULL << (63 - HISTOGRAM_SUB_BITS)) - 1);
	CHECK(histogram_bucket_upper(histogram_bucket_of((1ULL << 63) - 1)) == (1ULL << 63) - 1);
}

static void test_buckets_consistent(void)
{
	unsigned bad_of = 0, bad_next = 0, bad_order = 0, bad_width = 0;

	/* every bucket: its upper bound maps back to it, the next value to the
	 * next bucket, bounds strictly increase, width within 1/32 */
	for (unsigned b = 0; b < HISTOGRAM_BUCKETS; b++) {
		uint64_t up = histogram_bucket_upper(b);

		if (histogram_bucket_of(up) != b)
			bad_of++;
		if (b + 1 < HISTOGRAM_BUCKETS && histogram_bucket_of(up + 1) != b + 1)
			bad_next++;
		if (b > 0) {
			uint64_t prev = histogram_bucket_upper(b - 1);
			uint64_t lower = prev + 1, width = up - prev;

			if (up <= prev)
				bad_order++;
			else if (b >= SUB && width * SUB > lower)
				bad_width++;
			else if (b < SUB && width != 1)
				bad_width++;
		}
	}
	CHECK_INT(bad_of, 0);
	CHECK_INT(bad_next, 0);
	CHECK_INT(bad_order, 0);
	CHECK_INT(bad_width, 0);
}

/* For value v: a valid bucket, v within it, and bucket_of monotonic. */
static unsigned check_value(uint64_t v, unsigned *prev_bucket, uint64_t *prev_v)
{
	unsigned b = histogram_bucket_of(v), bad = 0;

	if (b >= HISTOGRAM_BUCKETS)
		return 1;
	if (histogram_bucket_upper(b) < v)
		bad++;
	if (b > 0 && histogram_bucket_upper(b - 1) >= v)
		bad++;
	if (prev_bucket != NULL && v >= *prev_v && b < *prev_bucket)
		bad++;
	if (prev_bucket != NULL) {
		*prev_bucket = b;
		*prev_v = v;
	}
	if (bad != 0)
		fprintf(stderr, "  value %llu: bucket %u\n", (unsigned long long)v, b);
	return bad;
}

static void test_bucket_of_values(void)
{
	unsigned bad = 0, pb = 0;
	uint64_t pv = 0;
	static uint64_t sorted[100000];

	for (uint64_t v = 0; v < 200000; v++)
		bad += check_value(v, &pb, &pv);
	pb = 0;
	pv = 0;
	for (unsigned k = 0; k < 64; k++) {
		uint64_t p = 1ULL << k;

		bad += check_value(p - 1, &pb, &pv);
		bad += check_value(p, &pb, &pv);
		bad += check_value(p + 1, &pb, &pv);
	}
	bad += check_value(UINT64_MAX - 1, &pb, &pv);
	bad += check_value(UINT64_MAX, &pb, &pv);
	rng_state = 4;
	for (size_t i = 0; i < sizeof(sorted) / sizeof(sorted[0]); i++)
		sorted[i] = rng() >> (rng() % 64);
	qsort(sorted, sizeof(sorted) / sizeof(sorted[0]), sizeof(sorted[0]), cmp_u64);
	pb = 0;
	pv = 0;
	for (size_t i = 0; i < sizeof(sorted) / sizeof(sorted[0]); i++)
		bad += check_value(sorted[i], &pb, &pv);
	CHECK_INT(bad, 0);
}

static void test_merge(void)
{
	/* merging two histograms equals adding all samples to one */
	rng_state = 5;
	histogram_reset(&H);
	histogram_reset(&H2);
	histogram_reset(&H3);
	for (int i = 0; i < 50000; i++) {
		uint64_t v = rng() >> (rng() % 64);

		histogram_add(i % 3 ? &H : &H2, v);
		histogram_add(&H3, v);
	}
	histogram_add(&H2, UINT64_MAX / 3);	/* the larger max is in "from" */
	histogram_add(&H3, UINT64_MAX / 3);
	histogram_merge(&H, &H2);
	CHECK(memcmp(&H, &H3, sizeof(H)) == 0);
	CHECK(H.max == H3.max);
	CHECK_INT(H.count, 50001);

	/* the larger max is in "into": merge keeps it */
	histogram_reset(&H);
	histogram_reset(&H2);
	histogram_add(&H, 1000);
	histogram_add(&H2, 10);
	histogram_merge(&H, &H2);
	CHECK_INT(H.max, 1000);
	CHECK_INT(H.count, 2);
	CHECK_INT(H.sum, 1010);
	CHECK_INT(histogram_quantile(&H, 0), 10);

	/* empty into full, full into empty, empty into empty */
	memcpy(&H3, &H, sizeof(H));
	histogram_reset(&H2);
	histogram_merge(&H, &H2);
	CHECK(memcmp(&H, &H3, sizeof(H)) == 0);
	histogram_merge(&H2, &H);
	CHECK(memcmp(&H2, &H3, sizeof(H)) == 0);
	histogram_reset(&H);
	histogram_reset(&H2);
	histogram_merge(&H, &H2);
	CHECK_INT(H.count, 0);
	CHECK_INT(histogram_quantile(&H, 0.5), 0);

	/* merge into itself doubles everything */
	histogram_reset(&H);
	histogram_add(&H, 7);
	histogram_add(&H, 700);
	histogram_merge(&H, &H);
	CHECK_INT(H.count, 4);
	CHECK_INT(H.sum, 1414);
	CHECK_INT(H.buckets[histogram_bucket_of(700)], 2);
}

int main(void)
{
	UNIT_RUN(test_empty);
	UNIT_RUN(test_single_values);
	UNIT_RUN(test_small_values_exact);
	UNIT_RUN(test_quantile_bounds);
	UNIT_RUN(test_uniform);
	UNIT_RUN(test_exponential);
	UNIT_RUN(test_wide_range);
	UNIT_RUN(test_bucket_edges);
	UNIT_RUN(test_buckets_consistent);
	UNIT_RUN(test_bucket_of_values);
	UNIT_RUN(test_merge);
	return unit_finish();
}
