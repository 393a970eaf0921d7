/*
 * test-conntab.c - the master's connection table alone: ids, counts, and
 * a keyed hash that chosen keys cannot pile into one chain.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "common/log.h"
#include "pop3d/pop3d.h"
#include "tests/unit.h"

/* conntab_refuse adds to the master's counters (stats.c, not linked). */
struct master_stats master_stats;

static unsigned released;

static void on_release(struct conn *c)
{
	released++;
}

static void test_ids_and_counts(void)
{
	struct conn *a, *b, *c;
	uint64_t id_a;

	a = conntab_new("192.0.2.1", 1000);
	b = conntab_new("192.0.2.1", 1001);
	c = conntab_new("192.0.2.2", 1002);
	CHECK(c != NULL && c != a && c != b);
	CHECK_INT(conntab_active(), 3);
	CHECK_INT(conntab_per_ip("192.0.2.1"), 2);
	CHECK_INT(conntab_per_ip("192.0.2.2"), 1);
	CHECK_INT(conntab_per_ip("192.0.2.3"), 0);
	id_a = conntab_id(a);
	CHECK(conntab_find(id_a) == a);
	conntab_set_session(b, 4242, "alice");
	CHECK_INT(conntab_per_user("alice"), 1);
	CHECK(conntab_session(4242) == b);
	conntab_release(a);
	CHECK_INT(released, 1);
	/* a stale id never names the record's next use */
	CHECK(conntab_find(id_a) == NULL);
	a = conntab_new("192.0.2.9", 1003);
	CHECK(conntab_find(id_a) == NULL);
	CHECK(conntab_find(conntab_id(a)) == a);
	/* iteration sees the live ones, and survives a release under it */
	unsigned n = 0;
	for (struct conn *x = conntab_next(NULL); x != NULL; x = conntab_next(x)) {
		n++;
		conntab_release(x);
	}
	CHECK_INT(n, 3);
	CHECK_INT(conntab_active(), 0);
	CHECK_INT(conntab_per_ip("192.0.2.1"), 0);
	CHECK_INT(conntab_per_user("alice"), 0);
	CHECK(conntab_session(4242) == NULL);
}

/* Keys an attacker builds to collide under djb2 (h * 33 + c: "Aa" and
 * "B@" add the same): under a keyed hash they spread. */
/* A PROXY protocol connection: counted in all, under no address until
 * the front end's address comes, then under that one only. */
static void test_pending_address(void)
{
	struct conn *a, *b;

	a = conntab_new_pending("10.0.0.2", 5000);
	b = conntab_new_pending("10.0.0.2", 5001);
	CHECK_INT(conntab_active(), 2);
	CHECK_INT(conntab_per_ip("10.0.0.2"), 0);	/* the balancer is no client */
	CHECK(a->addr_pending);
	conntab_set_addr(a, "192.0.2.7", 40000);
	CHECK(!a->addr_pending);
	CHECK_STR(a->rip, "192.0.2.7");
	CHECK_INT(conntab_per_ip("192.0.2.7"), 1);
	conntab_release(b);		/* never got one: nothing to uncount */
	CHECK_INT(conntab_per_ip("10.0.0.2"), 0);
	conntab_release(a);
	CHECK_INT(conntab_per_ip("192.0.2.7"), 0);
	CHECK_INT(conntab_active(), 0);
	/* a released record comes back counted as usual */
	a = conntab_new("192.0.2.7", 1);
	CHECK(!a->addr_pending);
	CHECK_INT(conntab_per_ip("192.0.2.7"), 1);
	conntab_release(a);
}

static void test_hash_keyed(void)
{
	char key[16 + 1];
	unsigned first = 0, same = 0;

	for (unsigned i = 0; i < 256; i++) {
		for (unsigned k = 0; k < 8; k++)
			memcpy(key + 2 * k, (i >> k & 1) ? "B@" : "Aa", 2);
		key[16] = '\0';
		unsigned h = conntab_hash(key);
		CHECK(h < CONNTAB_BUCKETS);
		if (i == 0)
			first = h;
		same += h == first;
		CHECK_INT(conntab_hash(key), h);	/* stable within a run */
	}
	/* 256 in one bucket of 4096 by chance: never */
	CHECK(same < 16);
}

int main(void)
{
	log_init("test-conntab", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	if (sodium_init() == -1)
		return 1;
	conntab_init(on_release);
	UNIT_RUN(test_ids_and_counts);
	UNIT_RUN(test_pending_address);
	UNIT_RUN(test_hash_keyed);
	return unit_finish();
}
