/*
 * test-num.c - unit tests for common/num.c (strict number parsing).
 *
 * Every accepted form is checked with its exact value, every rejected form
 * with -1, for num_parse_u64/uint, num_parse_duration, num_parse_size and
 * num_parse_percent.  The contract is num.h; where the code accepts a form
 * num.h does not list ("min", lower-case "k") the test pins what the code
 * does and says so.
 */
#include <limits.h>
#include <stdint.h>

#include "common/num.h"
#include "tests/unit.h"

#define U64_MAX_STR "18446744073709551615"
#define U64_OVER_STR "18446744073709551616"	/* 2^64 */

/* Written into the output before each call that must fail, to show a failed
 * parse leaves it alone (callers keep their default on error). */
#define UNTOUCHED 0x5a5a5a5aULL

struct ok_case {
	const char *s;
	uint64_t value;
};

/* Strings no strict parser may accept, whatever the unit. */
static const char *const junk[] = {
	"", " ", "+1", "-1", "-0", "+0", " 1", "1 ", "\t1", "1\t", "1\n", "\n1",
	"1.0", "1,000", "1_000", "0x10", "0X10", "1e3", "0b1", "0o7", "one",
	"1a", "a1", "--1", "1-", "\xd9\xa1" /* ARABIC-INDIC DIGIT ONE */,
	"\xef\xbc\x91" /* FULLWIDTH DIGIT ONE */,
};

static void test_u64_accepts(void)
{
	static const struct ok_case cases[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "9", 9 },
		{ "10", 10 },
		{ "42", 42 },
		{ "007", 7 },
		{ "00", 0 },
		{ "000000000000000000000000000000000001", 1 },
		{ "4294967295", 4294967295ULL },
		{ "4294967296", 4294967296ULL },
		{ "1844674407370955161", 1844674407370955161ULL },
		{ "18446744073709551609", 18446744073709551609ULL },
		{ "18446744073709551614", 18446744073709551614ULL },
		{ U64_MAX_STR, UINT64_MAX },
		/* leading zeros do not count towards overflow */
		{ "0000000000000000000000" U64_MAX_STR, UINT64_MAX },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = UNTOUCHED;

		if (num_parse_u64(cases[i].s, 0, UINT64_MAX, &v) != 0) {
			fprintf(stderr, "  refused \"%s\"\n", cases[i].s);
			CHECK(0);
			continue;
		}
		CHECK(v == cases[i].value);
	}
}

static void test_u64_rejects(void)
{
	static const char *const over[] = {
		U64_OVER_STR,			/* 2^64 */
		"18446744073709551617",
		"18446744073709551620",		/* last digit fits, the tens do not */
		"18446744073709551700",
		"18446744073709552000",
		"19000000000000000000",
		"99999999999999999999",
		"100000000000000000000",	/* 21 digits */
		"184467440737095516150",
		"340282366920938463463374607431768211456",	/* 2^128: wraps to 0 if unchecked */
		"36893488147419103232",		/* 2^65: wraps to 0 if unchecked */
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		v = UNTOUCHED;
		if (num_parse_u64(junk[i], 0, UINT64_MAX, &v) != -1)
			fprintf(stderr, "  accepted \"%s\"\n", junk[i]);
		CHECK(num_parse_u64(junk[i], 0, UINT64_MAX, &v) == -1);
		CHECK(v == UNTOUCHED);
	}
	for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
		v = UNTOUCHED;
		if (num_parse_u64(over[i], 0, UINT64_MAX, &v) != -1)
			fprintf(stderr, "  accepted overflow \"%s\"\n", over[i]);
		CHECK(num_parse_u64(over[i], 0, UINT64_MAX, &v) == -1);
		CHECK(v == UNTOUCHED);
	}
}

static void test_u64_range(void)
{
	uint64_t v;

	/* both ends inclusive */
	CHECK(num_parse_u64("5", 5, 10, &v) == 0 && v == 5);
	CHECK(num_parse_u64("10", 5, 10, &v) == 0 && v == 10);
	CHECK(num_parse_u64("7", 5, 10, &v) == 0 && v == 7);
	CHECK(num_parse_u64("4", 5, 10, &v) == -1);
	CHECK(num_parse_u64("11", 5, 10, &v) == -1);
	CHECK(num_parse_u64("0", 5, 10, &v) == -1);
	CHECK(num_parse_u64(U64_MAX_STR, 5, 10, &v) == -1);
	CHECK(num_parse_u64(U64_OVER_STR, 5, 10, &v) == -1);
	/* single-value range */
	CHECK(num_parse_u64("3", 3, 3, &v) == 0 && v == 3);
	CHECK(num_parse_u64("2", 3, 3, &v) == -1);
	CHECK(num_parse_u64("4", 3, 3, &v) == -1);
	/* max below the value by one at the top of the type */
	CHECK(num_parse_u64(U64_MAX_STR, 0, UINT64_MAX - 1, &v) == -1);
	CHECK(num_parse_u64("18446744073709551614", 0, UINT64_MAX - 1, &v) == 0 &&
	      v == UINT64_MAX - 1);
	CHECK(num_parse_u64(U64_MAX_STR, UINT64_MAX, UINT64_MAX, &v) == 0 && v == UINT64_MAX);
	/* the range check does not make junk acceptable */
	CHECK(num_parse_u64("07", 7, 7, &v) == 0 && v == 7);
	CHECK(num_parse_u64("7 ", 7, 7, &v) == -1);
}

static void test_uint(void)
{
	unsigned u = 0;

	CHECK(num_parse_uint("0", 0, UINT_MAX, &u) == 0 && u == 0);
	CHECK(num_parse_uint("4294967295", 0, UINT_MAX, &u) == 0 && u == UINT_MAX);
	/* one past UINT_MAX must not be truncated to 0 */
	u = 77;
	CHECK(num_parse_uint("4294967296", 0, UINT_MAX, &u) == -1);
	CHECK(u == 77);
	CHECK(num_parse_uint("8589934593", 0, UINT_MAX, &u) == -1);	/* 2^33 + 1 */
	CHECK(num_parse_uint(U64_MAX_STR, 0, UINT_MAX, &u) == -1);
	CHECK(num_parse_uint(U64_OVER_STR, 0, UINT_MAX, &u) == -1);
	CHECK(u == 77);
	CHECK(num_parse_uint("1", 1, 65536, &u) == 0 && u == 1);
	CHECK(num_parse_uint("65536", 1, 65536, &u) == 0 && u == 65536);
	CHECK(num_parse_uint("65537", 1, 65536, &u) == -1);
	CHECK(num_parse_uint("0", 1, 65536, &u) == -1);
	CHECK(num_parse_uint("0001", 1, 1, &u) == 0 && u == 1);
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
		CHECK(num_parse_uint(junk[i], 0, UINT_MAX, &u) == -1);
	CHECK(u == 1);
}

static void test_duration_accepts(void)
{
	static const struct ok_case cases[] = {
		{ "0", 0 },
		{ "0ms", 0 },
		{ "0s", 0 },
		{ "0m", 0 },
		{ "0h", 0 },
		{ "1", 1000 },			/* bare number: seconds */
		{ "30", 30000 },
		{ "1ms", 1 },
		{ "500ms", 500 },
		{ "1000ms", 1000 },
		{ "1s", 1000 },
		{ "5s", 5000 },
		{ "1m", 60000 },
		{ "2m", 120000 },
		{ "1h", 3600000 },
		{ "24h", 86400000 },
		{ "007s", 7000 },
		{ "0010m", 600000 },
		/* "min" is accepted by num.c although num.h lists only "m" */
		{ "1min", 60000 },
		{ U64_MAX_STR "ms", UINT64_MAX },
		{ "18446744073709551", 18446744073709551000ULL },	/* s, just fits */
		{ "307445734561825m", 307445734561825ULL * 60000 },	/* largest m */
		{ "5124095576030h", 5124095576030ULL * 3600000 },	/* largest h */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = UNTOUCHED;

		if (num_parse_duration(cases[i].s, UINT64_MAX, &ms) != 0) {
			fprintf(stderr, "  refused \"%s\"\n", cases[i].s);
			CHECK(0);
			continue;
		}
		if (ms != cases[i].value)
			fprintf(stderr, "  \"%s\" -> %llu\n", cases[i].s, (unsigned long long)ms);
		CHECK(ms == cases[i].value);
	}
}

static void test_duration_rejects(void)
{
	static const char *const bad[] = {
		"ms", "s", "m", "h", "min",		/* unit without digits */
		"1 s", "1s ", " 1s", "1 ms", "1\tms",
		"1S", "1MS", "1Ms", "1H", "1M",	/* units are lower case */
		"1sec", "1secs", "1mins", "1hr", "1hour", "1d", "1w", "1y", "1us", "1ns",
		"1msms", "1ss", "1hm", "1m1s", "1h30m", "1.5s", "1.5", ".5s",
		"-1s", "+1s", "-1", "+1", "1e3ms", "0x10s",
		U64_OVER_STR "ms",			/* 2^64 before the unit */
		"18446744073709552",			/* seconds: * 1000 overflows */
		"307445734561826m",			/* minutes: * 60000 overflows */
		"307445734561826min",
		"5124095576031h",			/* hours: * 3600000 overflows */
		U64_MAX_STR "s", U64_MAX_STR "m", U64_MAX_STR "h", U64_MAX_STR,
	};

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		uint64_t ms = UNTOUCHED;

		CHECK(num_parse_duration(junk[i], UINT64_MAX, &ms) == -1);
		CHECK(ms == UNTOUCHED);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t ms = UNTOUCHED;

		if (num_parse_duration(bad[i], UINT64_MAX, &ms) != -1)
			fprintf(stderr, "  accepted \"%s\" -> %llu\n", bad[i],
				(unsigned long long)ms);
		CHECK(num_parse_duration(bad[i], UINT64_MAX, &ms) == -1);
		CHECK(ms == UNTOUCHED);
	}
}

static void test_duration_max(void)
{
	uint64_t ms;

	/* max_ms applies to the result in milliseconds, inclusive */
	CHECK(num_parse_duration("1s", 1000, &ms) == 0 && ms == 1000);
	CHECK(num_parse_duration("1000ms", 1000, &ms) == 0 && ms == 1000);
	CHECK(num_parse_duration("1", 1000, &ms) == 0 && ms == 1000);
	CHECK(num_parse_duration("1001ms", 1000, &ms) == -1);
	CHECK(num_parse_duration("2s", 1000, &ms) == -1);
	CHECK(num_parse_duration("2", 1000, &ms) == -1);
	CHECK(num_parse_duration("1m", 59999, &ms) == -1);
	CHECK(num_parse_duration("1m", 60000, &ms) == 0 && ms == 60000);
	CHECK(num_parse_duration("1h", 3599999, &ms) == -1);
	CHECK(num_parse_duration("1h", 3600000, &ms) == 0 && ms == 3600000);
	CHECK(num_parse_duration("0", 0, &ms) == 0 && ms == 0);
	CHECK(num_parse_duration("0h", 0, &ms) == 0 && ms == 0);
	CHECK(num_parse_duration("1ms", 0, &ms) == -1);
	/* 7 days, the config limit */
	CHECK(num_parse_duration("168h", 7ULL * 24 * 3600 * 1000, &ms) == 0 &&
	      ms == 604800000ULL);
	CHECK(num_parse_duration("169h", 7ULL * 24 * 3600 * 1000, &ms) == -1);
	CHECK(num_parse_duration("604800001ms", 7ULL * 24 * 3600 * 1000, &ms) == -1);
}

static void test_size_accepts(void)
{
	static const struct ok_case cases[] = {
		{ "0", 0 },
		{ "1", 1 },
		{ "1024", 1024 },
		{ "007", 7 },
		{ "0K", 0 },
		{ "1K", 1024 },
		{ "1KB", 1024 },
		{ "64K", 65536 },
		{ "64KB", 65536 },
		{ "1M", 1048576 },
		{ "1MB", 1048576 },
		{ "16M", 16777216 },
		{ "1G", 1073741824 },
		{ "1GB", 1073741824 },
		{ "16G", 17179869184ULL },
		{ "4096G", 4398046511104ULL },
		/* lower-case "k" is accepted by num.c although num.h lists "K"
		 * only (the SI kilo; "m" would be milli, so it stays refused) */
		{ "1k", 1024 },
		{ "1kB", 1024 },
		{ U64_MAX_STR, UINT64_MAX },
		{ "18014398509481983K", 18014398509481983ULL * 1024 },	/* largest K */
		{ "17592186044415M", 17592186044415ULL << 20 },		/* largest M */
		{ "17179869183G", 17179869183ULL << 30 },		/* largest G */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t b = UNTOUCHED;

		if (num_parse_size(cases[i].s, UINT64_MAX, &b) != 0) {
			fprintf(stderr, "  refused \"%s\"\n", cases[i].s);
			CHECK(0);
			continue;
		}
		if (b != cases[i].value)
			fprintf(stderr, "  \"%s\" -> %llu\n", cases[i].s, (unsigned long long)b);
		CHECK(b == cases[i].value);
	}
}

static void test_size_rejects(void)
{
	static const char *const bad[] = {
		"K", "M", "G", "B", "KB",		/* unit without digits */
		"1B", "0B", "100B",			/* bare B: only after K, M or G */
		"1m", "1g", "1mb", "1gb", "1Mb", "1Kb", "1b",
		"1T", "1TB", "1P", "1E",		/* no larger units */
		"1KiB", "1MiB", "1Ki", "1KK", "1KBB", "1BB", "1MK",
		"1 K", "1K ", " 1K", "1 KB", "1K B",
		"1.5K", "1.5M", "-1K", "+1K", "0x10K",
		U64_OVER_STR "K", U64_OVER_STR,
		"18014398509481984K",			/* 2^54 K = 2^64: overflows */
		"17592186044416M",			/* 2^44 M = 2^64 */
		"17592186044416MB",
		"17179869184G",				/* 2^34 G = 2^64 */
		U64_MAX_STR "K", U64_MAX_STR "G",
	};

	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		uint64_t b = UNTOUCHED;

		CHECK(num_parse_size(junk[i], UINT64_MAX, &b) == -1);
		CHECK(b == UNTOUCHED);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t b = UNTOUCHED;

		if (num_parse_size(bad[i], UINT64_MAX, &b) != -1)
			fprintf(stderr, "  accepted \"%s\" -> %llu\n", bad[i],
				(unsigned long long)b);
		CHECK(num_parse_size(bad[i], UINT64_MAX, &b) == -1);
		CHECK(b == UNTOUCHED);
	}
}

static void test_size_max(void)
{
	uint64_t b;

	CHECK(num_parse_size("16G", 16ULL << 30, &b) == 0 && b == 16ULL << 30);
	CHECK(num_parse_size("17G", 16ULL << 30, &b) == -1);
	CHECK(num_parse_size("16385M", 16ULL << 30, &b) == -1);
	CHECK(num_parse_size("16384M", 16ULL << 30, &b) == 0 && b == 16ULL << 30);
	CHECK(num_parse_size("17179869184", 16ULL << 30, &b) == 0);
	CHECK(num_parse_size("17179869185", 16ULL << 30, &b) == -1);
	CHECK(num_parse_size("1K", 1023, &b) == -1);
	CHECK(num_parse_size("1K", 1024, &b) == 0 && b == 1024);
	CHECK(num_parse_size("1024", 1023, &b) == -1);
	CHECK(num_parse_size("0G", 0, &b) == 0 && b == 0);
	CHECK(num_parse_size("1", 0, &b) == -1);
}

static void test_percent(void)
{
	static const struct { const char *s; unsigned pct; } ok[] = {
		{ "0", 0 }, { "0%", 0 }, { "1", 1 }, { "1%", 1 }, { "25", 25 },
		{ "25%", 25 }, { "99%", 99 }, { "100", 100 }, { "100%", 100 },
		{ "007", 7 }, { "0100%", 100 },
	};
	static const char *const bad[] = {
		"%", "%5", "5%%", "5 %", "5% ", " 5%", "101", "101%", "1000%", "255",
		"256%", "4294967296", "4294967396%", U64_MAX_STR, U64_OVER_STR "%",
		"-1%", "+1%", "5.5%", "0.5", "50 percent", "50pct", "5%5",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		unsigned p = 999;

		if (num_parse_percent(ok[i].s, &p) != 0) {
			fprintf(stderr, "  refused \"%s\"\n", ok[i].s);
			CHECK(0);
			continue;
		}
		CHECK(p == ok[i].pct);
	}
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		unsigned p = 999;

		CHECK(num_parse_percent(junk[i], &p) == -1);
		CHECK(p == 999);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned p = 999;

		if (num_parse_percent(bad[i], &p) != -1)
			fprintf(stderr, "  accepted \"%s\" -> %u\n", bad[i], p);
		CHECK(num_parse_percent(bad[i], &p) == -1);
		CHECK(p == 999);
	}
}

/* Every value 0..100009, written plainly and zero-padded, parses back to
 * itself; the checks above catch special cases, this one catches a digit
 * loop that is wrong for some digit. */
static void test_u64_sweep(void)
{
	char buf[32];
	unsigned bad = 0;

	for (uint64_t i = 0; i < 100010; i++) {
		uint64_t v;

		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)i);
		if (num_parse_u64(buf, 0, UINT64_MAX, &v) != 0 || v != i)
			bad++;
		snprintf(buf, sizeof(buf), "%08llu", (unsigned long long)i);
		if (num_parse_u64(buf, 0, UINT64_MAX, &v) != 0 || v != i)
			bad++;
	}
	/* and the top of the type, digit by digit of the last place */
	for (uint64_t i = UINT64_MAX - 100; i != 0; i++) {
		uint64_t v;

		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)i);
		if (num_parse_u64(buf, 0, UINT64_MAX, &v) != 0 || v != i)
			bad++;
	}
	CHECK_INT(bad, 0);
}

int main(void)
{
	UNIT_RUN(test_u64_accepts);
	UNIT_RUN(test_u64_rejects);
	UNIT_RUN(test_u64_range);
	UNIT_RUN(test_u64_sweep);
	UNIT_RUN(test_uint);
	UNIT_RUN(test_duration_accepts);
	UNIT_RUN(test_duration_rejects);
	UNIT_RUN(test_duration_max);
	UNIT_RUN(test_size_accepts);
	UNIT_RUN(test_size_rejects);
	UNIT_RUN(test_size_max);
	UNIT_RUN(test_percent);
	return unit_finish();
}
