/*
 * test-cache-stress.c - readers, inserters, flushes and expiry racing on a
 * tiny cache (4 sets), for a bounded time (default 2 s; argv[1] = seconds)
 * and a bounded number of operations.  Run it plain and under
 * `make SANITIZER=thread` and `SANITIZER=address`.
 *
 * Every value is self-checking: an OK entry for (key, verifier) inserted
 * as generation g carries uid = g, gid = a checksum of (key, g), a home
 * made from the key and g, a maildrop made from the verifier, g and its
 * fresh_until, and an authenticator made from g.  A lookup fails the test
 * if it returns
 *   - another key's or another password's entry (fields or kind disagree
 *     with what this (key, verifier) would have been given);
 *   - a torn entry (fields from two generations disagree);
 *   - an expired entry as fresh (fresh_until <= the now it was given), or
 *     a stale one past stale_until;
 *   - CACHE_HIT_REFRESH twice for the same entry.
 * Half the keys share their first 24 bytes (same set, same tag), so only
 * a comparison of the full 32 bytes tells them apart.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "tests/unit.h"

#define NKEYS 64
#define NVERIFIERS 3		/* 0: the right password; 1, 2: wrong */
#define READERS 2
#define WRITERS 2
#define MAX_OPS 20000000	/* per thread */
#define MAX_GEN (1u << 22)	/* inserts in all */

static uint8_t keys[NKEYS][CACHE_KEY_LEN];
static uint8_t verifiers[NKEYS][NVERIFIERS][CACHE_VERIFIER_LEN];
static struct cache *cache;
static int64_t deadline;
static _Atomic uint32_t next_gen = 1;
static _Atomic uint8_t refreshed[MAX_GEN];	/* generation signalled */
static _Atomic uint64_t violations, lookups, hits[4], stale_hits, refreshes;
static _Atomic uint64_t inserts, flushes;

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* What the backend says for (key k, verifier v). */
static enum cache_kind truth(unsigned k, unsigned v)
{
	if (k % 4 == 3)
		return CACHE_NOUSER;
	return v == 0 ? CACHE_OK : CACHE_FAIL;
}

static uint32_t checksum(const uint8_t *key, uint32_t gen)
{
	uint32_t h = 2166136261u ^ gen;

	for (unsigned i = 0; i < CACHE_KEY_LEN; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

static void hex8(char *out, const uint8_t *in)
{
	for (unsigned i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", in[i]);
}

struct fields {
	char home[CACHE_HOME_MAX + 1];
	char maildrop[CACHE_MAILDROP_MAX + 1];
	char authenticator[CACHE_AUTHENTICATOR_MAX + 1];
};

static void make_fields(unsigned k, unsigned v, uint32_t gen,
			int64_t fresh_until, struct fields *f)
{
	char kh[17], kt[17], vh[17];

	hex8(kh, keys[k]);
	hex8(kt, keys[k] + 24);
	hex8(vh, verifiers[k][v]);
	snprintf(f->home, sizeof(f->home), "/home/%s/%s/%" PRIu32, kh, kt, gen);
	snprintf(f->maildrop, sizeof(f->maildrop), "/mail/%s/%" PRIu32 "/%" PRId64,
		 vh, gen, fresh_until);
	snprintf(f->authenticator, sizeof(f->authenticator), "a%" PRIu32, gen);
}

static void violation(const char *what, unsigned k, unsigned v,
		      const struct cache_entry *e, int64_t now)
{
	atomic_fetch_add(&violations, 1);
	fprintf(stderr, "  VIOLATION %s: key %u verifier %u kind %d uid %u "
		"fresh_until %" PRId64 " stale_until %" PRId64 " now %" PRId64
		" home %s\n", what, k, v, (int)e->kind, e->uid, e->fresh_until,
		e->stale_until, now, e->home);
}

/* Checks an entry returned for (k, v); `stale` if from the stale call. */
static void check_entry(unsigned k, unsigned v, const struct cache_entry *e,
			int64_t now, bool stale)
{
	if (e->kind != truth(k, v)) {
		violation("wrong kind (another key's or password's entry)", k, v, e, now);
		return;
	}
	if (stale ? now >= e->stale_until : now >= e->fresh_until) {
		violation(stale ? "past stale_until" : "expired entry as fresh",
			  k, v, e, now);
		return;
	}
	if (e->kind != CACHE_OK) {
		if (e->uid != 0 || e->gid != 0 || e->home[0] != '\0' ||
		    e->maildrop[0] != '\0' || e->authenticator[0] != '\0')
			violation("negative entry with fields", k, v, e, now);
		return;
	}
	struct fields want;
	make_fields(k, v, e->uid, e->fresh_until, &want);
	if (e->gid != checksum(keys[k], e->uid) ||
	    strcmp(e->home, want.home) != 0 ||
	    strcmp(e->maildrop, want.maildrop) != 0 ||
	    strcmp(e->authenticator, want.authenticator) != 0)
		violation("torn or foreign OK entry", k, v, e, now);
}

static void *reader(void *arg)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull * (uintptr_t)arg + 1;
	struct cache_entry e;
	uint64_t n;

	for (n = 0; n < MAX_OPS; n++) {
		int64_t now = now_ms();
		if ((n & 255) == 0 && now >= deadline)
			break;
		unsigned k = rnd(&seed) % NKEYS, v = rnd(&seed) % NVERIFIERS;
		if (rnd(&seed) % 8 == 0) {
			if (cache_lookup_stale(cache, keys[k], verifiers[k][v], now, &e)) {
				atomic_fetch_add(&stale_hits, 1);
				check_entry(k, v, &e, now, true);
			}
			continue;
		}
		enum cache_result r = cache_lookup(cache, keys[k], verifiers[k][v],
						   now, &e);
		if (r == CACHE_MISS)
			continue;
		atomic_fetch_add(&hits[e.kind], 1);
		check_entry(k, v, &e, now, false);
		if (r == CACHE_HIT_REFRESH) {
			atomic_fetch_add(&refreshes, 1);
			if (e.kind != CACHE_OK || e.uid >= MAX_GEN ||
			    atomic_exchange(&refreshed[e.uid], 1) != 0)
				violation("second refresh signal", k, v, &e, now);
		}
	}
	atomic_fetch_add(&lookups, n);
	return NULL;
}

static void *writer(void *arg)
{
	uint64_t seed = 0xda942042e4dd58b5ull * (uintptr_t)arg + 7;
	uint64_t n;

	for (n = 0; n < MAX_OPS; n++) {
		int64_t now = now_ms();
		if ((n & 255) == 0 && now >= deadline)
			break;
		uint64_t r = rnd(&seed);
		unsigned k = r % NKEYS, v = (r >> 8) % NVERIFIERS;
		if ((r >> 16) % 2000 == 0) {
			cache_flush_key(cache, keys[k]);
			atomic_fetch_add(&flushes, 1);
			continue;
		}
		if ((r >> 16) % 50000 == 1) {
			cache_flush_all(cache);
			atomic_fetch_add(&flushes, 1);
			continue;
		}
		uint32_t gen = atomic_fetch_add(&next_gen, 1);
		if (gen >= MAX_GEN)
			break;
		/* Short lives, so expiry races with everything else. */
		uint32_t fresh = (uint32_t)((r >> 24) % 20);
		uint32_t stale = (uint32_t)((r >> 32) % 20);
		enum cache_kind kind = truth(k, v);
		struct fields f;
		make_fields(k, v, gen, now + fresh, &f);
		struct cache_user u = {
			.uid = gen, .gid = checksum(keys[k], gen),
			.home = f.home, .maildrop = f.maildrop,
			.authenticator = f.authenticator,
		};
		enum cache_insert_result res =
			cache_insert(cache, keys[k], verifiers[k][v], kind,
				     kind == CACHE_OK ? &u : NULL, now, fresh, stale);
		if (res == CACHE_INSERT_TOO_LONG) {
			fprintf(stderr, "  unexpected TOO_LONG (%zu bytes home)\n",
				strlen(f.home));
			atomic_fetch_add(&violations, 1);
		}
		atomic_fetch_add(&inserts, 1);
	}
	return NULL;
}

static unsigned seconds = 2;

static void test_stress(void)
{
	struct cache_settings set = {
		.size = 4 * CACHE_WAYS * CACHE_ENTRY_BYTES,	/* 4 sets */
		.fail_max_per_set = 2, .nouser_max_per_set = 2,
		.refresh_percent = 50,
	};
	const char *error;
	pthread_t tr[READERS], tw[WRITERS];
	uint64_t seed = (uint64_t)now_ms() | 1;

	cache = cache_create(&set, &error);
	CHECK(cache != NULL);
	if (cache == NULL)
		return;
	for (unsigned k = 0; k < NKEYS; k++) {
		for (unsigned i = 0; i < CACHE_KEY_LEN; i++)
			keys[k][i] = (uint8_t)rnd(&seed);
		if (k % 2 == 1)	/* same set and tag as key 0, and more */
			memcpy(keys[k], keys[0], 24);
		for (unsigned v = 0; v < NVERIFIERS; v++)
			for (unsigned i = 0; i < CACHE_VERIFIER_LEN; i++)
				verifiers[k][v][i] = (uint8_t)rnd(&seed);
	}

	deadline = now_ms() + 1000 * (int64_t)seconds;
	for (uintptr_t i = 0; i < READERS; i++)
		CHECK(pthread_create(&tr[i], NULL, reader, (void *)(i + 1)) == 0);
	for (uintptr_t i = 0; i < WRITERS; i++)
		CHECK(pthread_create(&tw[i], NULL, writer, (void *)(i + 1)) == 0);
	for (unsigned i = 0; i < READERS; i++)
		pthread_join(tr[i], NULL);
	for (unsigned i = 0; i < WRITERS; i++)
		pthread_join(tw[i], NULL);

	struct cache_summary sum;
	cache_summarize(cache, now_ms(), &sum);
	const struct cache_stats *st = &sum.stats;
	printf("  %" PRIu64 " lookups: %" PRIu64 " OK, %" PRIu64 " FAIL, %" PRIu64
	       " NOUSER hits, %" PRIu64 " stale, %" PRIu64 " refresh signals\n",
	       atomic_load(&lookups), atomic_load(&hits[CACHE_OK]),
	       atomic_load(&hits[CACHE_FAIL]), atomic_load(&hits[CACHE_NOUSER]),
	       atomic_load(&stale_hits), atomic_load(&refreshes));
	printf("  %" PRIu64 " inserts, %" PRIu64 " flushes; evictions: %" PRIu64
	       " expired, %" PRIu64 " negative, %" PRIu64 " clock; busy %" PRIu64
	       ", read retries %" PRIu64 "\n",
	       atomic_load(&inserts), atomic_load(&flushes), st->evict_expired,
	       st->evict_negative, st->evict_clock, st->insert_busy,
	       st->read_retries);

	CHECK_INT(atomic_load(&violations), 0);
	/* The test must have exercised what it claims to. */
	CHECK(atomic_load(&hits[CACHE_OK]) > 0);
	CHECK(atomic_load(&hits[CACHE_FAIL]) > 0);
	CHECK(atomic_load(&hits[CACHE_NOUSER]) > 0);
	CHECK(atomic_load(&refreshes) > 0);
	CHECK(st->evict_expired + st->evict_negative + st->evict_clock > 0);
	/* Quiescent now: the entries gauge matches the slots. */
	CHECK_INT(st->entries, sum.capacity - sum.empty);
	CHECK_INT(st->inserts + st->insert_busy, atomic_load(&inserts));
	cache_free(&cache);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		seconds = (unsigned)strtoul(argv[1], NULL, 10);
	UNIT_RUN(test_stress);
	return unit_finish();
}
