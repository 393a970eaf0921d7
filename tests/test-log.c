/*
 * test-log.c - unit tests for common/log.c's log_token(), the one escaper
 * of client-chosen names in log lines (authd's auth lines, pop3d's).
 *
 * The contract is log.h: one token, nothing that could pose as a field, a
 * line, or raw 8-bit text; cut where it does not fit, never inside an
 * escape; the longest user name, all escaped, fits LOG_TOKEN_SIZE.
 */
#include <string.h>

#include "common/limits.h"
#include "common/log.h"
#include "tests/unit.h"

static void test_token(void)
{
	char buf[LOG_TOKEN_SIZE(AUTH_MAX_USER)], small[8];

	CHECK_STR(log_token("alice@example.org", buf, sizeof(buf)), "alice@example.org");
	CHECK_STR(log_token("evil rip=192.0.2.1", buf, sizeof(buf)), "evil\\x20rip=192.0.2.1");
	CHECK_STR(log_token("a\\b\tc\r\n\x7f\xc3\xa9\"", buf, sizeof(buf)),
		  "a\\x5cb\\x09c\\x0d\\x0a\\x7f\\xc3\\xa9\"");
	CHECK_STR(log_token("\xc2\x85\xe2\x80\xa8", buf, sizeof(buf)),
		  "\\xc2\\x85\\xe2\\x80\\xa8");		/* NEL, LINE SEPARATOR */
	CHECK_STR(log_token("", buf, sizeof(buf)), "-");
	CHECK_STR(log_token(NULL, buf, sizeof(buf)), "-");
	CHECK_STR(log_token("abc", buf, 0), "");
	/* cut where it does not fit, never in the middle of an escape */
	CHECK_STR(log_token("abcdefghij", small, sizeof(small)), "abcdefg");
	CHECK_STR(log_token("ab cdefgh", small, sizeof(small)), "ab\\x20c");
	CHECK_STR(log_token("abcd efgh", small, sizeof(small)), "abcd");
	/* the longest user name, all escaped, fits */
	{
		char name[AUTH_MAX_USER + 1];

		memset(name, ' ', AUTH_MAX_USER);
		name[AUTH_MAX_USER] = '\0';
		CHECK_INT(strlen(log_token(name, buf, sizeof(buf))), 4 * AUTH_MAX_USER);
	}
	/* every byte value: the output is printable ASCII without blanks */
	{
		char all[256];

		for (int i = 1; i < 256; i++)
			all[i - 1] = (char)i;
		all[255] = '\0';
		log_token(all, buf, sizeof(buf));
		for (const char *p = buf; *p != '\0'; p++)
			CHECK(*p > 0x20 && *p < 0x7f);
	}
}

/* log_ratelimit: per_sec lines a second, the rest counted and reported
 * with the next line let through. */
static void test_ratelimit(void)
{
	struct log_ratelimit rl = { 0 };
	uint64_t sup = 99, now = 5000;
	unsigned ok = 0;

	for (int i = 0; i < 25; i++)
		ok += log_ratelimit(&rl, 10, now + (uint64_t)i, &sup);
	CHECK_INT(ok, 10);
	CHECK_INT(rl.suppressed, 15);
	CHECK(!log_ratelimit(&rl, 10, now + 999, &sup));
	CHECK(log_ratelimit(&rl, 10, now + 1000, &sup));	/* a new second */
	CHECK_INT(sup, 16);
	CHECK(log_ratelimit(&rl, 10, now + 1001, &sup));
	CHECK_INT(sup, 0);
}

int main(void)
{
	log_init("test-log", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	UNIT_RUN(test_token);
	UNIT_RUN(test_ratelimit);
	return unit_finish();
}
