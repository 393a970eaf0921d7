/*
 * test-cache.c - unit tests for cache/cache.c, one thread, a fake clock.
 *
 * Most tests use a cache of exactly one set (8 slots), so every key shares
 * the set and eviction order can be observed slot by slot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "tests/unit.h"

#define T0 1000000		/* the fake clock starts here (ms) */

static struct cache *new_cache(size_t size, unsigned fail_max,
			       unsigned nouser_max, unsigned refresh_percent)
{
	struct cache_settings set = {
		.size = size,
		.fail_max_per_set = fail_max,
		.nouser_max_per_set = nouser_max,
		.refresh_percent = refresh_percent,
	};
	const char *error = NULL;
	struct cache *cache = cache_create(&set, &error);

	if (cache == NULL) {
		fprintf(stderr, "cache_create: %s\n", error);
		exit(2);
	}
	return cache;
}

/* A cache of one set, caps 2/2, refresh in the last 20 %. */
static struct cache *one_set(void)
{
	return new_cache(CACHE_WAYS * CACHE_ENTRY_BYTES, 2, 2, 20);
}

struct cred {
	uint8_t key[CACHE_KEY_LEN];
	uint8_t verifier[CACHE_VERIFIER_LEN];
};

static struct cred cred(const struct cache *cache, const char *user,
			const char *password)
{
	struct cred c;

	cache_key(cache, "imap", user, c.key);
	cache_verifier(cache, c.key, password, NULL, c.verifier);
	return c;
}

static const struct cache_user user_a = {
	.uid = 1001, .gid = 100, .home = "/home/a",
	.maildrop = "/var/mail/a", .authenticator = "pam",
};

static enum cache_insert_result put(struct cache *cache, const struct cred *c,
				    enum cache_kind kind, int64_t now,
				    uint32_t fresh, uint32_t stale)
{
	return cache_insert(cache, c->key, c->verifier, kind,
			    kind == CACHE_OK ? &user_a : NULL, now, fresh, stale);
}

static enum cache_result get(struct cache *cache, const struct cred *c,
			     int64_t now, struct cache_entry *e)
{
	return cache_lookup(cache, c->key, c->verifier, now, e);
}

static void test_create_rejects_bad_settings(void)
{
	struct cache_settings set = {
		.size = CACHE_WAYS * CACHE_ENTRY_BYTES, .fail_max_per_set = 2,
		.nouser_max_per_set = 2, .refresh_percent = 20,
	};
	const char *error = NULL;
	struct cache *cache;

	set.size = CACHE_WAYS * CACHE_ENTRY_BYTES - 1;
	CHECK(cache_create(&set, &error) == NULL && error != NULL);
	set.size = CACHE_WAYS * CACHE_ENTRY_BYTES;
	set.fail_max_per_set = 0;
	CHECK(cache_create(&set, &error) == NULL);
	set.fail_max_per_set = 4;
	set.nouser_max_per_set = 4;	/* would leave no positive slot */
	CHECK(cache_create(&set, &error) == NULL);
	set.nouser_max_per_set = 3;
	set.refresh_percent = 101;
	CHECK(cache_create(&set, &error) == NULL);
	set.refresh_percent = 100;
	cache = cache_create(&set, &error);
	CHECK(cache != NULL);
	cache_free(&cache);
	CHECK(cache == NULL);
	cache_free(&cache);	/* NULL is ignored */
}

static void test_key_and_verifier(void)
{
	struct cache *cache = one_set(), *other = one_set();
	uint8_t k1[CACHE_KEY_LEN], k2[CACHE_KEY_LEN], v1[32], v2[32];

	cache_key(cache, "imap", "alice", k1);
	cache_key(cache, "imap", "alice", k2);
	CHECK(memcmp(k1, k2, sizeof(k1)) == 0);
	/* Length prefixes: ("ab", "c") and ("a", "bc") are different. */
	cache_key(cache, "ab", "c", k1);
	cache_key(cache, "a", "bc", k2);
	CHECK(memcmp(k1, k2, sizeof(k1)) != 0);
	cache_key(cache, "", "imapalice", k1);
	cache_key(cache, "imap", "alice", k2);
	CHECK(memcmp(k1, k2, sizeof(k1)) != 0);
	/* Per-process random keys: another cache hashes differently. */
	cache_key(other, "imap", "alice", k1);
	CHECK(memcmp(k1, k2, sizeof(k1)) != 0);

	cache_verifier(cache, k2, "secret", NULL, v1);
	cache_verifier(cache, k2, "secret", NULL, v2);
	CHECK(memcmp(v1, v2, sizeof(v1)) == 0);
	cache_verifier(cache, k2, "secreT", NULL, v2);
	CHECK(memcmp(v1, v2, sizeof(v1)) != 0);
	/* The verifier is bound to the key. */
	cache_key(cache, "imap", "bob", k1);
	cache_verifier(cache, k1, "secret", NULL, v2);
	CHECK(memcmp(v1, v2, sizeof(v1)) != 0);
	/* A chain: "" is none; any other is bound into the verifier, with
	   no (password, chain) pair taking another's place. */
	cache_verifier(cache, k2, "secret", "", v2);
	CHECK(memcmp(v1, v2, sizeof(v1)) == 0);
	cache_verifier(cache, k2, "secret", "ldap", v2);
	CHECK(memcmp(v1, v2, sizeof(v1)) != 0);
	cache_verifier(cache, k2, "secretldap", NULL, v1);
	CHECK(memcmp(v1, v2, sizeof(v1)) != 0);
	cache_verifier(cache, k2, "secretl", "dap", v1);
	CHECK(memcmp(v1, v2, sizeof(v1)) != 0);
	cache_verifier(cache, k2, "secret", "ldap,file", v1);
	CHECK(memcmp(v1, v2, sizeof(v1)) != 0);
	cache_verifier(cache, k2, "secret", "ldap", v1);
	CHECK(memcmp(v1, v2, sizeof(v1)) == 0);
	cache_free(&cache);
	cache_free(&other);
}

static void test_fresh_hit_and_expiry(void)
{
	struct cache *cache = one_set();
	struct cred c = cred(cache, "alice", "pw");
	struct cache_entry e;

	CHECK_INT(get(cache, &c, T0, &e), CACHE_MISS);
	CHECK_INT(put(cache, &c, CACHE_OK, T0, 1000, 5000), CACHE_INSERTED);
	memset(&e, 0x55, sizeof(e));
	CHECK_INT(get(cache, &c, T0, &e), CACHE_HIT);
	CHECK_INT(e.kind, CACHE_OK);
	CHECK_INT(e.uid, 1001);
	CHECK_INT(e.gid, 100);
	CHECK_STR(e.home, "/home/a");
	CHECK_STR(e.maildrop, "/var/mail/a");
	CHECK_STR(e.authenticator, "pam");
	CHECK_INT(e.fresh_until, T0 + 1000);
	CHECK_INT(e.stale_until, T0 + 6000);
	CHECK_INT(get(cache, &c, T0 + 799, &e), CACHE_HIT);
	/* Fresh means now < fresh_until, exactly. */
	CHECK_INT(get(cache, &c, T0 + 1000, &e), CACHE_MISS);
	CHECK_INT(get(cache, &c, T0 + 1001, &e), CACHE_MISS);
	cache_free(&cache);
}

static void test_other_password_misses(void)
{
	struct cache *cache = one_set();
	struct cred old = cred(cache, "alice", "old"), new = cred(cache, "alice", "new");
	struct cache_entry e;

	put(cache, &old, CACHE_OK, T0, 1000, 0);
	/* A new password is not answered from the old entry... */
	CHECK_INT(get(cache, &new, T0 + 1, &e), CACHE_MISS);
	/* ...and works as soon as the backend accepted it. */
	put(cache, &new, CACHE_OK, T0 + 2, 1000, 0);
	CHECK_INT(get(cache, &new, T0 + 3, &e), CACHE_HIT);
	/* The old password works at most until its own fresh time (these
	   hits are in the refresh window: the first one signals it). */
	CHECK_INT(get(cache, &old, T0 + 999, &e), CACHE_HIT_REFRESH);
	CHECK_INT(get(cache, &old, T0 + 1000, &e), CACHE_MISS);
	CHECK_INT(get(cache, &new, T0 + 1000, &e), CACHE_HIT_REFRESH);
	cache_free(&cache);
}

static void test_wrong_password_is_negative_beside_positive(void)
{
	struct cache *cache = one_set();
	struct cred right = cred(cache, "alice", "right");
	struct cred wrong = cred(cache, "alice", "wrong");
	struct cache_entry e;

	put(cache, &right, CACHE_OK, T0, 60000, 0);
	put(cache, &wrong, CACHE_FAIL, T0, 30000, 0);
	/* A client hammering the wrong password gets the negative hit... */
	for (int i = 0; i < 100; i++)
		CHECK_INT(get(cache, &wrong, T0 + i, &e), CACHE_HIT);
	CHECK_INT(e.kind, CACHE_FAIL);
	CHECK_INT(e.uid, 0);
	CHECK_STR(e.home, "");
	/* ...while the right password still hits the positive entry. */
	CHECK_INT(get(cache, &right, T0 + 100, &e), CACHE_HIT);
	CHECK_INT(e.kind, CACHE_OK);

	/* Many different wrong passwords stay within the FAIL cap and never
	   push out the positive entry. */
	for (int i = 0; i < 50; i++) {
		char pw[32];
		snprintf(pw, sizeof(pw), "guess%d", i);
		struct cred g = cred(cache, "alice", pw);
		CHECK_INT(put(cache, &g, CACHE_FAIL, T0 + 200 + i, 30000, 0),
			  CACHE_INSERTED);
	}
	CHECK_INT(get(cache, &right, T0 + 300, &e), CACHE_HIT);
	CHECK_INT(e.kind, CACHE_OK);
	struct cache_summary sum;
	cache_summarize(cache, T0 + 300, &sum);
	CHECK_INT(sum.fail, 2);
	CHECK_INT(sum.ok_fresh, 1);
	cache_free(&cache);
}

static void test_nouser_any_password_and_bound(void)
{
	struct cache *cache = one_set();
	struct cred ghost = cred(cache, "ghost", "a");
	struct cred ghost2 = cred(cache, "ghost", "b");
	struct cred users[5];
	struct cache_entry e;

	put(cache, &ghost, CACHE_NOUSER, T0, 10000, 0);
	/* An unknown user is unknown whatever the password. */
	CHECK_INT(get(cache, &ghost2, T0 + 1, &e), CACHE_HIT);
	CHECK_INT(e.kind, CACHE_NOUSER);
	/* The verifier may be NULL for NOUSER. */
	CHECK_INT(cache_insert(cache, ghost.key, NULL, CACHE_NOUSER, NULL,
			       T0 + 2, 10000, 0), CACHE_INSERTED);

	for (int i = 0; i < 5; i++) {
		char name[32];
		snprintf(name, sizeof(name), "user%d", i);
		users[i] = cred(cache, name, "pw");
		put(cache, &users[i], CACHE_OK, T0, 60000, 0);
	}
	/* A flood of random names: at most 2 NOUSER entries in the set. */
	for (int i = 0; i < 200; i++) {
		char name[32];
		snprintf(name, sizeof(name), "random%d", i);
		struct cred r = cred(cache, name, "x");
		CHECK_INT(put(cache, &r, CACHE_NOUSER, T0 + 10 + i, 10000, 0),
			  CACHE_INSERTED);
	}
	for (int i = 0; i < 5; i++)
		CHECK_INT(get(cache, &users[i], T0 + 300, &e), CACHE_HIT);
	struct cache_summary sum;
	cache_summarize(cache, T0 + 300, &sum);
	CHECK_INT(sum.nouser, 2);
	CHECK_INT(sum.ok_fresh, 5);
	CHECK_INT(sum.capacity, CACHE_WAYS);
	CHECK_INT(sum.empty, 1);
	cache_free(&cache);
}

static void test_nouser_and_user_supersede_each_other(void)
{
	struct cache *cache = one_set();
	struct cred a = cred(cache, "alice", "pw"), b = cred(cache, "alice", "bad");
	struct cache_stats st;
	struct cache_entry e;

	put(cache, &a, CACHE_OK, T0, 60000, 60000);
	put(cache, &b, CACHE_FAIL, T0, 60000, 0);
	/* The user was deleted: NOUSER replaces every entry of the key. */
	put(cache, &a, CACHE_NOUSER, T0 + 1, 10000, 0);
	CHECK_INT(get(cache, &a, T0 + 2, &e), CACHE_HIT);
	CHECK_INT(e.kind, CACHE_NOUSER);
	CHECK_INT(get(cache, &b, T0 + 2, &e), CACHE_HIT);
	CHECK_INT(e.kind, CACHE_NOUSER);
	CHECK(!cache_lookup_stale(cache, a.key, a.verifier, T0 + 2, &e));
	cache_stats_get(cache, &st);
	CHECK_INT(st.entries, 1);
	/* The user is back: an OK replaces the NOUSER. */
	put(cache, &a, CACHE_OK, T0 + 3, 60000, 0);
	CHECK_INT(get(cache, &a, T0 + 4, &e), CACHE_HIT);
	CHECK_INT(e.kind, CACHE_OK);
	CHECK_INT(get(cache, &b, T0 + 4, &e), CACHE_MISS);
	cache_stats_get(cache, &st);
	CHECK_INT(st.entries, 1);
	cache_free(&cache);
}

static void test_stale_lookup(void)
{
	struct cache *cache = one_set();
	struct cred a = cred(cache, "alice", "pw"), w = cred(cache, "alice", "no");
	struct cache_stats st;
	struct cache_entry e;

	put(cache, &a, CACHE_OK, T0, 1000, 9000);
	put(cache, &w, CACHE_FAIL, T0, 1000, 9000);	/* stale ignored */
	/* Fresh: the stale call returns it but does not count it stale. */
	CHECK(cache_lookup_stale(cache, a.key, a.verifier, T0 + 10, &e));
	cache_stats_get(cache, &st);
	CHECK_INT(st.stale_served, 0);
	/* Past fresh: a normal lookup misses, the stale call serves it. */
	CHECK_INT(get(cache, &a, T0 + 1500, &e), CACHE_MISS);
	CHECK(cache_lookup_stale(cache, a.key, a.verifier, T0 + 1500, &e));
	CHECK_INT(e.kind, CACHE_OK);
	CHECK_STR(e.home, "/home/a");
	CHECK(cache_lookup_stale(cache, a.key, a.verifier, T0 + 9999, &e));
	CHECK(!cache_lookup_stale(cache, a.key, a.verifier, T0 + 10000, &e));
	/* Negative entries are never served stale, fresh or not. */
	CHECK(!cache_lookup_stale(cache, w.key, w.verifier, T0 + 10, &e));
	CHECK(!cache_lookup_stale(cache, w.key, w.verifier, T0 + 1500, &e));
	/* Another password gets nothing from the stale entry. */
	struct cred other = cred(cache, "alice", "other");
	CHECK(!cache_lookup_stale(cache, other.key, other.verifier, T0 + 1500, &e));
	cache_stats_get(cache, &st);
	CHECK_INT(st.stale_served, 2);

	/* The password was changed: the backend's FAIL replaces the OK in
	   place, and stale data can no longer override it. */
	put(cache, &a, CACHE_FAIL, T0 + 2000, 1000, 0);
	CHECK_INT(get(cache, &a, T0 + 2001, &e), CACHE_HIT);
	CHECK_INT(e.kind, CACHE_FAIL);
	CHECK(!cache_lookup_stale(cache, a.key, a.verifier, T0 + 2001, &e));
	CHECK(!cache_lookup_stale(cache, a.key, a.verifier, T0 + 3500, &e));
	cache_free(&cache);
}

static void test_refresh_window(void)
{
	struct cache *cache = one_set();	/* last 20 % */
	struct cred a = cred(cache, "alice", "pw"), w = cred(cache, "alice", "no");
	struct cache_stats st;
	struct cache_entry e;

	put(cache, &a, CACHE_OK, T0, 1000, 0);
	put(cache, &w, CACHE_FAIL, T0, 1000, 0);
	CHECK_INT(get(cache, &a, T0 + 799, &e), CACHE_HIT);
	/* The first hit in the window is told to refresh, once. */
	CHECK_INT(get(cache, &a, T0 + 800, &e), CACHE_HIT_REFRESH);
	CHECK_INT(e.kind, CACHE_OK);
	CHECK_INT(get(cache, &a, T0 + 850, &e), CACHE_HIT);
	CHECK_INT(get(cache, &a, T0 + 999, &e), CACHE_HIT);
	/* Negative entries never ask for a refresh. */
	CHECK_INT(get(cache, &w, T0 + 900, &e), CACHE_HIT);
	/* The background revalidation stored a new entry: a new window. */
	put(cache, &a, CACHE_OK, T0 + 900, 1000, 0);
	CHECK_INT(get(cache, &a, T0 + 1600, &e), CACHE_HIT);
	CHECK_INT(get(cache, &a, T0 + 1700, &e), CACHE_HIT_REFRESH);
	CHECK_INT(get(cache, &a, T0 + 1701, &e), CACHE_HIT);
	cache_stats_get(cache, &st);
	CHECK_INT(st.refreshes, 2);
	cache_free(&cache);

	/* refresh_percent 0: never. */
	cache = new_cache(CACHE_WAYS * CACHE_ENTRY_BYTES, 2, 2, 0);
	a = cred(cache, "alice", "pw");
	put(cache, &a, CACHE_OK, T0, 1000, 0);
	CHECK_INT(get(cache, &a, T0 + 999, &e), CACHE_HIT);
	cache_free(&cache);
}

static void test_flush(void)
{
	struct cache *cache = one_set();
	struct cred a = cred(cache, "alice", "pw"), aw = cred(cache, "alice", "no");
	struct cred b = cred(cache, "bob", "pw"), g = cred(cache, "ghost", "x");
	struct cache_stats st;
	struct cache_entry e;

	put(cache, &a, CACHE_OK, T0, 60000, 0);
	put(cache, &aw, CACHE_FAIL, T0, 60000, 0);
	put(cache, &b, CACHE_OK, T0, 60000, 0);
	put(cache, &g, CACHE_NOUSER, T0, 60000, 0);
	CHECK_INT(cache_flush_key(cache, a.key), 2);
	CHECK_INT(get(cache, &a, T0 + 1, &e), CACHE_MISS);
	CHECK_INT(get(cache, &aw, T0 + 1, &e), CACHE_MISS);
	CHECK_INT(get(cache, &b, T0 + 1, &e), CACHE_HIT);
	CHECK_INT(cache_flush_key(cache, a.key), 0);
	CHECK_INT(cache_flush_key(cache, g.key), 1);
	CHECK_INT(get(cache, &g, T0 + 1, &e), CACHE_MISS);
	put(cache, &a, CACHE_OK, T0, 60000, 0);
	CHECK_INT(cache_flush_all(cache), 2);
	CHECK_INT(get(cache, &a, T0 + 1, &e), CACHE_MISS);
	CHECK_INT(get(cache, &b, T0 + 1, &e), CACHE_MISS);
	cache_stats_get(cache, &st);
	CHECK_INT(st.flushed, 5);
	CHECK_INT(st.entries, 0);
	cache_free(&cache);

	/* flush_all over many sets. */
	cache = new_cache(1 << 20, 2, 2, 20);
	for (int i = 0; i < 1000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "u%d", i);
		struct cred c = cred(cache, name, "pw");
		put(cache, &c, CACHE_OK, T0, 60000, 0);
	}
	cache_stats_get(cache, &st);
	uint64_t n = st.entries;
	CHECK(n > 900);		/* a few may have lost to CLOCK in full sets */
	CHECK_INT(cache_flush_all(cache), n);
	cache_stats_get(cache, &st);
	CHECK_INT(st.entries, 0);
	cache_free(&cache);
}

/* An answer asked before a flush is not stored after it: by either flush,
   even of another key (the epoch counts flushes, not keys). */
static void test_insert_if_epoch(void)
{
	struct cache *cache = one_set();
	struct cred a = cred(cache, "alice", "pw"), b = cred(cache, "bob", "pw");
	struct cache_entry e;
	uint64_t ep = cache_epoch(cache);

	CHECK_INT(cache_insert_if_epoch(cache, a.key, a.verifier, CACHE_OK, &user_a, T0, 60000,
					0, ep), CACHE_INSERTED);
	CHECK_INT(get(cache, &a, T0 + 1, &e), CACHE_HIT);
	cache_flush_key(cache, b.key);
	CHECK(cache_epoch(cache) == ep + 1);
	CHECK_INT(cache_insert_if_epoch(cache, b.key, b.verifier, CACHE_FAIL, NULL, T0, 60000,
					0, ep), CACHE_INSERT_FLUSHED);
	CHECK_INT(get(cache, &b, T0 + 1, &e), CACHE_MISS);
	CHECK_INT(cache_insert_if_epoch(cache, b.key, NULL, CACHE_NOUSER, NULL, T0, 60000, 0,
					ep), CACHE_INSERT_FLUSHED);
	CHECK_INT(get(cache, &b, T0 + 1, &e), CACHE_MISS);
	ep = cache_epoch(cache);
	cache_flush_all(cache);
	CHECK(cache_epoch(cache) == ep + 1);
	CHECK_INT(cache_insert_if_epoch(cache, a.key, a.verifier, CACHE_OK, &user_a, T0, 60000,
					0, ep), CACHE_INSERT_FLUSHED);
	CHECK_INT(get(cache, &a, T0 + 1, &e), CACHE_MISS);
	/* asked after the flush: stored */
	CHECK_INT(cache_insert_if_epoch(cache, a.key, a.verifier, CACHE_OK, &user_a, T0, 60000,
					0, cache_epoch(cache)), CACHE_INSERTED);
	CHECK_INT(get(cache, &a, T0 + 1, &e), CACHE_HIT);
	cache_free(&cache);
}

/* Fills the one-set cache's 8 slots in order with u0..u7 (empty slots are
   taken first, lowest index first, so u<i> lands in slot i). */
static void fill(struct cache *cache, struct cred c[CACHE_WAYS])
{
	for (int i = 0; i < CACHE_WAYS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "u%d", i);
		c[i] = cred(cache, name, "pw");
		CHECK_INT(put(cache, &c[i], CACHE_OK, T0, 60000, 0), CACHE_INSERTED);
	}
}

static void test_eviction_order(void)
{
	struct cache *cache = one_set();
	struct cred c[CACHE_WAYS], n1 = cred(cache, "n1", "pw");
	struct cred n2 = cred(cache, "n2", "pw"), n3 = cred(cache, "n3", "pw");
	struct cred neg = cred(cache, "u1", "wrong");
	struct cache_stats st;
	struct cache_entry e;
	int64_t now = T0 + 10;

	fill(cache, c);
	/* Slot 0: expired.  Slot 1: a negative (replacing u1's OK would be
	   a supersede, so use a wrong password: a new identity) - first drop
	   u1 to make room.  Slot 2: an OK past fresh but still stale-usable
	   (live: not expired). */
	CHECK_INT(cache_flush_key(cache, c[1].key), 1);
	put(cache, &neg, CACHE_FAIL, T0, 60000, 0);
	put(cache, &c[0], CACHE_OK, T0, 5, 0);		/* in place, dies at T0+5 */
	put(cache, &c[2], CACHE_OK, T0, 5, 60000);	/* in place, stale-usable */
	cache_stats_get(cache, &st);
	CHECK_INT(st.entries, 8);
	CHECK_INT(st.evict_expired + st.evict_negative + st.evict_clock, 0);

	/* 1. the expired slot. */
	put(cache, &n1, CACHE_OK, now, 60000, 0);
	cache_stats_get(cache, &st);
	CHECK_INT(st.evict_expired, 1);
	CHECK_INT(get(cache, &neg, now, &e), CACHE_HIT);
	/* 2. then the negative, even before a positive past fresh. */
	put(cache, &n2, CACHE_OK, now, 60000, 0);
	cache_stats_get(cache, &st);
	CHECK_INT(st.evict_negative, 1);
	CHECK_INT(get(cache, &neg, now, &e), CACHE_MISS);
	CHECK(cache_lookup_stale(cache, c[2].key, c[2].verifier, now, &e));
	/* 3. then CLOCK: referenced entries get a second chance.  The hand
	   is at slot 0; hit the entries in slots 0..3 (n1, n2, u2, u3). */
	CHECK_INT(get(cache, &n1, now, &e), CACHE_HIT);
	CHECK_INT(get(cache, &n2, now, &e), CACHE_HIT);
	CHECK(cache_lookup_stale(cache, c[2].key, c[2].verifier, now, &e));
	CHECK_INT(get(cache, &c[3], now, &e), CACHE_HIT);
	put(cache, &n3, CACHE_OK, now, 60000, 0);
	cache_stats_get(cache, &st);
	CHECK_INT(st.evict_clock, 1);
	CHECK_INT(get(cache, &c[4], now, &e), CACHE_MISS);	/* slot 4 went */
	CHECK_INT(get(cache, &n3, now, &e), CACHE_HIT);
	CHECK_INT(get(cache, &n1, now, &e), CACHE_HIT);
	CHECK_INT(get(cache, &c[3], now, &e), CACHE_HIT);
	CHECK_INT(get(cache, &c[5], now, &e), CACHE_HIT);
	cache_stats_get(cache, &st);
	CHECK_INT(st.entries, 8);
	cache_free(&cache);
}

static void test_empty_before_expired(void)
{
	struct cache *cache = one_set();
	struct cred c[CACHE_WAYS], n = cred(cache, "new", "pw");
	struct cache_stats st;
	struct cache_entry e;

	fill(cache, c);
	put(cache, &c[0], CACHE_OK, T0, 5, 0);	/* expires at T0+5 */
	cache_flush_key(cache, c[5].key);	/* slot 5 empty */
	put(cache, &n, CACHE_OK, T0 + 10, 60000, 0);
	cache_stats_get(cache, &st);
	CHECK_INT(st.evict_expired, 0);
	CHECK_INT(st.entries, 8);
	/* The expired entry is still there, and still not a hit. */
	CHECK_INT(get(cache, &c[0], T0 + 10, &e), CACHE_MISS);
	struct cache_summary sum;
	cache_summarize(cache, T0 + 10, &sum);
	CHECK_INT(sum.expired, 1);
	CHECK_INT(sum.ok_fresh, 7);
	cache_free(&cache);
}

static void test_negative_cap_replaces_same_kind(void)
{
	struct cache *cache = one_set();
	struct cred c[5], w[3], late = cred(cache, "u1", "late");
	struct cache_summary sum;
	struct cache_entry e;

	for (int i = 0; i < 5; i++) {
		char name[32];
		snprintf(name, sizeof(name), "u%d", i);
		c[i] = cred(cache, name, "pw");
		put(cache, &c[i], CACHE_OK, T0, 60000, 0);
	}
	for (int i = 0; i < 3; i++) {
		char pw[32];
		snprintf(pw, sizeof(pw), "bad%d", i);
		w[i] = cred(cache, "u0", pw);
		/* w0 expires first, then w1, w2. */
		put(cache, &w[i], CACHE_FAIL, T0, 1000 + 100 * i, 0);
	}
	/* w0 and w1 took empty slots; w2 was over the cap of 2 and replaced
	   w0, the closest to expiry, though a slot was still empty. */
	CHECK_INT(get(cache, &w[0], T0 + 1, &e), CACHE_MISS);
	CHECK_INT(get(cache, &w[1], T0 + 1, &e), CACHE_HIT);
	CHECK_INT(get(cache, &w[2], T0 + 1, &e), CACHE_HIT);
	cache_summarize(cache, T0 + 1, &sum);
	CHECK_INT(sum.fail, 2);
	CHECK_INT(sum.ok_fresh, 5);
	CHECK_INT(sum.empty, 1);

	/* In a full set a new negative replaces a negative, not a positive:
	   negatives go before CLOCK whatever is being inserted. */
	put(cache, &c[0], CACHE_OK, T0, 60000, 0);	/* in place */
	struct cred x = cred(cache, "x", "pw");
	put(cache, &x, CACHE_OK, T0, 60000, 0);		/* the empty slot */
	put(cache, &late, CACHE_FAIL, T0 + 2, 5000, 0);
	CHECK_INT(get(cache, &late, T0 + 3, &e), CACHE_HIT);
	CHECK_INT(get(cache, &w[1], T0 + 3, &e), CACHE_MISS);
	for (int i = 0; i < 5; i++)
		CHECK_INT(get(cache, &c[i], T0 + 3, &e), CACHE_HIT);
	CHECK_INT(get(cache, &x, T0 + 3, &e), CACHE_HIT);
	cache_free(&cache);
}

static void test_too_long_refused(void)
{
	struct cache *cache = one_set();
	struct cred a = cred(cache, "alice", "pw");
	char home[CACHE_HOME_MAX + 2], auth[CACHE_AUTHENTICATOR_MAX + 2];
	struct cache_user u = user_a;
	struct cache_stats st;
	struct cache_entry e;

	memset(home, 'h', sizeof(home) - 1);
	home[sizeof(home) - 1] = '\0';		/* CACHE_HOME_MAX + 1 chars */
	u.home = home;
	CHECK_INT(cache_insert(cache, a.key, a.verifier, CACHE_OK, &u, T0, 1000, 0),
		  CACHE_INSERT_TOO_LONG);
	u.home = "/h";
	u.maildrop = home;
	CHECK_INT(cache_insert(cache, a.key, a.verifier, CACHE_OK, &u, T0, 1000, 0),
		  CACHE_INSERT_TOO_LONG);
	memset(auth, 'a', sizeof(auth) - 1);
	auth[sizeof(auth) - 1] = '\0';
	u.maildrop = "/m";
	u.authenticator = auth;
	CHECK_INT(cache_insert(cache, a.key, a.verifier, CACHE_OK, &u, T0, 1000, 0),
		  CACHE_INSERT_TOO_LONG);
	CHECK_INT(get(cache, &a, T0, &e), CACHE_MISS);	/* nothing stored */
	cache_stats_get(cache, &st);
	CHECK_INT(st.insert_too_long, 3);
	CHECK_INT(st.entries, 0);

	/* Exactly at the limits: stored whole. */
	home[CACHE_HOME_MAX] = '\0';
	auth[CACHE_AUTHENTICATOR_MAX] = '\0';
	u.home = u.maildrop = home;
	u.authenticator = auth;
	CHECK_INT(cache_insert(cache, a.key, a.verifier, CACHE_OK, &u, T0, 1000, 0),
		  CACHE_INSERTED);
	CHECK_INT(get(cache, &a, T0, &e), CACHE_HIT);
	CHECK_STR(e.home, home);
	CHECK_STR(e.maildrop, home);
	CHECK_STR(e.authenticator, auth);
	/* NULL strings are stored as "". */
	u.home = u.maildrop = u.authenticator = NULL;
	cache_insert(cache, a.key, a.verifier, CACHE_OK, &u, T0, 1000, 0);
	CHECK_INT(get(cache, &a, T0, &e), CACHE_HIT);
	CHECK_STR(e.home, "");
	CHECK_STR(e.authenticator, "");
	cache_free(&cache);
}

static void test_replace_in_place(void)
{
	struct cache *cache = one_set();
	struct cred a = cred(cache, "alice", "pw");
	struct cache_user u = user_a;
	struct cache_stats st;
	struct cache_entry e;

	for (uint32_t i = 0; i < 100; i++) {
		u.uid = 2000 + i;
		CHECK_INT(cache_insert(cache, a.key, a.verifier, CACHE_OK, &u,
				       T0 + i, 1000, 0), CACHE_INSERTED);
	}
	CHECK_INT(get(cache, &a, T0 + 100, &e), CACHE_HIT);
	CHECK_INT(e.uid, 2099);
	CHECK_INT(e.fresh_until, T0 + 99 + 1000);
	cache_stats_get(cache, &st);
	CHECK_INT(st.entries, 1);
	CHECK_INT(st.inserts, 100);
	CHECK_INT(st.evict_expired + st.evict_negative + st.evict_clock, 0);
	/* The same identity changing kind is still in place. */
	put(cache, &a, CACHE_FAIL, T0 + 200, 1000, 0);
	CHECK_INT(get(cache, &a, T0 + 201, &e), CACHE_HIT);
	CHECK_INT(e.kind, CACHE_FAIL);
	cache_stats_get(cache, &st);
	CHECK_INT(st.entries, 1);
	cache_free(&cache);
}

static int iterate_count[4];
static int64_t iterate_max_until;

static void iterate_cb(const struct cache_entry_info *info, void *context)
{
	CHECK(context == &iterate_count);
	iterate_count[info->kind]++;
	if (info->fresh_until > iterate_max_until)
		iterate_max_until = info->fresh_until;
}

static void test_counters_and_iterate(void)
{
	struct cache *cache = one_set();
	struct cred a = cred(cache, "alice", "pw"), w = cred(cache, "alice", "no");
	struct cred g = cred(cache, "ghost", "x"), b = cred(cache, "bob", "pw");
	struct cache_stats st;
	struct cache_entry e;

	put(cache, &a, CACHE_OK, T0, 1000, 0);
	put(cache, &w, CACHE_FAIL, T0, 2000, 0);
	put(cache, &g, CACHE_NOUSER, T0, 3000, 0);
	get(cache, &a, T0 + 1, &e);		/* hit */
	get(cache, &a, T0 + 900, &e);		/* hit, refresh */
	get(cache, &w, T0 + 1, &e);		/* negative hit */
	get(cache, &g, T0 + 1, &e);		/* negative hit */
	get(cache, &b, T0 + 1, &e);		/* miss */
	get(cache, &a, T0 + 1000, &e);		/* miss: expired */
	cache_stats_get(cache, &st);
	CHECK_INT(st.hits, 2);
	CHECK_INT(st.negative_hits, 2);
	CHECK_INT(st.misses, 2);
	CHECK_INT(st.refreshes, 1);
	CHECK_INT(st.inserts, 3);
	CHECK_INT(st.entries, 3);
	CHECK_INT(st.read_retries, 0);
	CHECK_INT(st.insert_busy, 0);

	struct cache_summary sum;
	cache_summarize(cache, T0 + 1000, &sum);
	CHECK_INT(sum.capacity, 8);
	CHECK_INT(sum.ok_fresh, 0);
	CHECK_INT(sum.expired, 1);
	CHECK_INT(sum.fail, 1);
	CHECK_INT(sum.nouser, 1);
	CHECK_INT(sum.empty, 5);
	CHECK_INT(sum.stats.hits, 2);

	cache_iterate(cache, iterate_cb, &iterate_count);
	CHECK_INT(iterate_count[CACHE_OK], 1);
	CHECK_INT(iterate_count[CACHE_FAIL], 1);
	CHECK_INT(iterate_count[CACHE_NOUSER], 1);
	CHECK_INT(iterate_max_until, T0 + 3000);
	cache_free(&cache);
}

static void test_many_sets(void)
{
	/* 4 MiB: about 10k entries; 5k users all fit (few full sets). */
	struct cache *cache = new_cache(4 << 20, 2, 2, 20);
	struct cache_stats st;
	struct cache_entry e;
	int hits = 0;

	for (int i = 0; i < 5000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "user%d", i);
		struct cred c = cred(cache, name, "pw");
		put(cache, &c, CACHE_OK, T0, 60000, 0);
	}
	for (int i = 0; i < 5000; i++) {
		char name[32];
		snprintf(name, sizeof(name), "user%d", i);
		struct cred c = cred(cache, name, "pw");
		if (get(cache, &c, T0 + 1, &e) == CACHE_HIT) {
			hits++;
			CHECK_INT(e.uid, 1001);
		}
	}
	/* Sets are chosen by hash: a few of them get more than 8 users, and
	   CLOCK evicts the excess.  Every insert is accounted for. */
	cache_stats_get(cache, &st);
	CHECK_INT(hits, (int)st.entries);
	CHECK_INT(st.entries + st.evict_clock, 5000);
	CHECK(hits >= 4900);
	cache_free(&cache);
}

int main(void)
{
	UNIT_RUN(test_create_rejects_bad_settings);
	UNIT_RUN(test_key_and_verifier);
	UNIT_RUN(test_fresh_hit_and_expiry);
	UNIT_RUN(test_other_password_misses);
	UNIT_RUN(test_wrong_password_is_negative_beside_positive);
	UNIT_RUN(test_nouser_any_password_and_bound);
	UNIT_RUN(test_nouser_and_user_supersede_each_other);
	UNIT_RUN(test_stale_lookup);
	UNIT_RUN(test_refresh_window);
	UNIT_RUN(test_flush);
	UNIT_RUN(test_insert_if_epoch);
	UNIT_RUN(test_eviction_order);
	UNIT_RUN(test_empty_before_expired);
	UNIT_RUN(test_negative_cap_replaces_same_kind);
	UNIT_RUN(test_too_long_refused);
	UNIT_RUN(test_replace_in_place);
	UNIT_RUN(test_counters_and_iterate);
	UNIT_RUN(test_many_sets);
	return unit_finish();
}
