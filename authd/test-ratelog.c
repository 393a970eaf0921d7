/*
 * test-ratelog.c - the per-address limit of `auth failed` lines and the
 * per-kind limit of overload warnings (ratelog.c), alone: ratelog.c is
 * included so that the test can run its summary ticks when it wants.
 */
#include "authd/ratelog.c"

#include "tests/unit.h"

static void test_first_failure_per_address_logged(void)
{
	uint64_t before = ratelog_fail_suppressed();

	CHECK(ratelog_fail_allow("192.0.2.1", "bob", "pop3"));
	for (int i = 0; i < 1000; i++)
		CHECK(!ratelog_fail_allow("192.0.2.1", "bob", "pop3"));
	/* another address has its own first line */
	CHECK(ratelog_fail_allow("192.0.2.2", "alice", "pop3"));
	CHECK(ratelog_fail_suppressed() - before == 1000);
	/* a summary ends nothing while failures go on ... */
	on_fail_tick(-1, 0, NULL);
	CHECK(!ratelog_fail_allow("192.0.2.1", "bob", "pop3"));
	/* ... an interval without one ends the burst: the next is in full */
	on_fail_tick(-1, 0, NULL);
	on_fail_tick(-1, 0, NULL);
	CHECK(ratelog_fail_allow("192.0.2.1", "bob", "pop3"));
}

static void test_table_full_shares_one_slot(void)
{
	char rip[32];
	unsigned full = 0, shared = 0;

	for (unsigned i = 0; i < 4 * FAILLOG_SLOTS; i++) {
		snprintf(rip, sizeof(rip), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
		if (ratelog_fail_allow(rip, "u", "pop3"))
			full++;
		else
			shared++;
	}
	/* never more full lines than slots, and the unslotted ones' rate
	 * (this loop runs within a second or two): the rest are counted */
	CHECK(full <= FAILLOG_SLOTS + 2 * FAILLOG_UNSLOTTED_PER_S);
	CHECK(full > FAILLOG_SLOTS / 2);
	CHECK(full + shared == 4 * FAILLOG_SLOTS);
	CHECK(fslots[FAILLOG_SLOTS].used && strcmp(fslots[FAILLOG_SLOTS].rip, "*") == 0);
	on_fail_tick(-1, 0, NULL);
	on_fail_tick(-1, 0, NULL);
	for (size_t i = 0; i <= FAILLOG_SLOTS; i++)
		CHECK(!fslots[i].used);
}

static void test_overload_warnings_per_kind(void)
{
	CHECK(ratelog_allow("auth tempfail", "ldap", "timeout"));
	CHECK(!ratelog_allow("auth tempfail", "ldap", "timeout"));
	CHECK(ratelog_allow("auth tempfail", "ldap", "overloaded"));
	on_tick(-1, 0, NULL);
	on_tick(-1, 0, NULL);
	CHECK(ratelog_allow("auth tempfail", "ldap", "timeout"));
}

int main(void)
{
	log_init("test-ratelog", LOG_LEVEL_WARN, LOG_TARGET_STDERR, NULL, 0);
	UNIT_RUN(test_first_failure_per_address_logged);
	UNIT_RUN(test_table_full_shares_one_slot);
	UNIT_RUN(test_overload_warnings_per_kind);
	return unit_finish();
}
