/*
 * unit.h - the smallest test harness that does the job.
 *
 * A test file defines `static void test_x(void)` functions using CHECK()
 * and friends, and a main() that calls UNIT_RUN(test_x) for each, then
 * returns unit_finish().  A failed CHECK records the failure, prints where
 * and why, and lets the test continue; a test counts as passed when it
 * recorded no failure.  unit_finish() prints "N passed, N failed" and
 * returns the process exit status.
 */
#ifndef UNIT_H
#define UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_failures_in_test;
static int unit_passed, unit_failed;

#define CHECK(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		unit_failures_in_test++; \
	} \
} while (0)

#define CHECK_INT(a, b) do { \
	long long unit_a_ = (long long)(a), unit_b_ = (long long)(b); \
	if (unit_a_ != unit_b_) { \
		fprintf(stderr, "  %s:%d: CHECK failed: %s == %s (%lld != %lld)\n", \
			__FILE__, __LINE__, #a, #b, unit_a_, unit_b_); \
		unit_failures_in_test++; \
	} \
} while (0)

#define CHECK_STR(a, b) do { \
	const char *unit_a_ = (a), *unit_b_ = (b); \
	if (unit_a_ == NULL || unit_b_ == NULL || strcmp(unit_a_, unit_b_) != 0) { \
		fprintf(stderr, "  %s:%d: CHECK failed: %s == %s (\"%s\" != \"%s\")\n", \
			__FILE__, __LINE__, #a, #b, unit_a_ ? unit_a_ : "(null)", \
			unit_b_ ? unit_b_ : "(null)"); \
		unit_failures_in_test++; \
	} \
} while (0)

#define UNIT_RUN(fn) do { \
	unit_failures_in_test = 0; \
	fn(); \
	if (unit_failures_in_test == 0) { \
		unit_passed++; \
		printf("ok - %s\n", #fn); \
	} else { \
		unit_failed++; \
		printf("not ok - %s\n", #fn); \
	} \
	fflush(stdout); \
} while (0)

static inline int unit_finish(void)
{
	printf("%d passed, %d failed\n", unit_passed, unit_failed);
	return unit_failed == 0 ? 0 : 1;
}

#endif
