/*
 * test-cache-stress.c - readers, inserters, flushes and expiry racing on a
 * tiny cache, for a bounded time and a bounded number of operations: once
 * on a single set (every thread on the same 8 slots) and once on 4 sets,
 * 1.5 s each (argv[1] = seconds per run).  3 readers and 3 writers on
 * this 2-CPU machine, so that threads are also preempted inside their
 * critical sections.  Run it plain and under `make SANITIZER=thread` and
 * `SANITIZER=address`.
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
 *
 * The test itself shares nothing between threads but read-only setup
 * data: each thread keeps its own counts, summed after the joins, so the
 * only synchronisation TSan sees between readers and writers is the
 * cache's own.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "tests/unit.h"

#define NKEYS 64
#define NVERIFIERS 3		/* 0: the right password; 1, 2: wrong */
#define READERS 3
#define WRITERS 3
#define MAX_OPS 20000000	/* per thread */
#define MAX_GEN (1u << 22)	/* generations: writer w uses w, w + WRITERS, ... */
#define MAX_REFRESH 65536	/* refresh signals recorded per reader */

static uint8_t keys[NKEYS][CACHE_KEY_LEN];
static uint8_t verifiers[NKEYS][NVERIFIERS][CACHE_VERIFIER_LEN];
static struct cache *cache;
static int64_t deadline;		/* set before the threads start */

struct thread {
	pthread_t thread;
	unsigned id;
	uint64_t ops, violations, hits[4], stale_hits, inserts, flushes;
	uint32_t *refreshed;		/* generations that signalled refresh */
	uint64_t refreshes;
};

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

static void violation(struct thread *t, const char *what, unsigned k,
		      unsigned v, const struct cache_entry *e, int64_t now)
{
	t->violations++;
	fprintf(stderr, "  VIOLATION %s: key %u verifier %u kind %d uid %u "
		"fresh_until %" PRId64 " stale_until %" PRId64 " now %" PRId64
		" home %s\n", what, k, v, (int)e->kind, e->uid, e->fresh_until,
		e->stale_until, now, e->home);
}

/* Checks an entry returned for (k, v); `stale` if from the stale call. */
static void check_entry(struct thread *t, unsigned k, unsigned v,
			const struct cache_entry *e, int64_t now, bool stale)
{
	if (e->kind != truth(k, v)) {
		violation(t, "wrong kind (another key's or password's entry)", k, v, e, now);
		return;
	}
	if (stale ? now >= e->stale_until : now >= e->fresh_until) {
		violation(t, stale ? "past stale_until" : "expired entry as fresh",
			  k, v, e, now);
		return;
	}
	if (e->kind != CACHE_OK) {
		if (e->uid != 0 || e->gid != 0 || e->home[0] != '\0' ||
		    e->maildrop[0] != '\0' || e->authenticator[0] != '\0')
			violation(t, "negative entry with fields", k, v, e, now);
		return;
	}
	struct fields want;
	make_fields(k, v, e->uid, e->fresh_until, &want);
	if (e->gid != checksum(keys[k], e->uid) ||
	    strcmp(e->home, want.home) != 0 ||
	    strcmp(e->maildrop, want.maildrop) != 0 ||
	    strcmp(e->authenticator, want.authenticator) != 0)
		violation(t, "torn or foreign OK entry", k, v, e, now);
}

static void *reader(void *arg)
{
	struct thread *t = arg;
	uint64_t seed = 0x9e3779b97f4a7c15ull * (t->id + 1) + 1;
	struct cache_entry e;

	for (t->ops = 0; t->ops < MAX_OPS; t->ops++) {
		int64_t now = now_ms();
		if ((t->ops & 255) == 0 && now >= deadline)
			break;
		unsigned k = rnd(&seed) % NKEYS, v = rnd(&seed) % NVERIFIERS;
		if (rnd(&seed) % 8 == 0) {
			if (cache_lookup_stale(cache, keys[k], verifiers[k][v], now, &e)) {
				t->stale_hits++;
				check_entry(t, k, v, &e, now, true);
			}
			continue;
		}
		enum cache_result r = cache_lookup(cache, keys[k], verifiers[k][v],
						   now, &e);
		if (r == CACHE_MISS)
			continue;
		t->hits[e.kind]++;
		check_entry(t, k, v, &e, now, false);
		if (r == CACHE_HIT_REFRESH) {
			if (e.kind != CACHE_OK)
				violation(t, "refresh signal for a negative", k, v, &e, now);
			else if (t->refreshes < MAX_REFRESH)
				t->refreshed[t->refreshes++] = e.uid;
		}
	}
	return NULL;
}

static void *writer(void *arg)
{
	struct thread *t = arg;
	uint64_t seed = 0xda942042e4dd58b5ull * (t->id + 1) + 7;
	uint32_t gen = t->id + 1;

	for (t->ops = 0; t->ops < MAX_OPS; t->ops++) {
		int64_t now = now_ms();
		if ((t->ops & 255) == 0 && now >= deadline)
			break;
		uint64_t r = rnd(&seed);
		unsigned k = r % NKEYS, v = (r >> 8) % NVERIFIERS;
		if ((r >> 16) % 2000 == 0) {
			cache_flush_key(cache, keys[k]);
			t->flushes++;
			continue;
		}
		if ((r >> 16) % 50000 == 1) {
			cache_flush_all(cache);
			t->flushes++;
			continue;
		}
		gen += WRITERS;		/* unique over all writers */
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
			t->violations++;
		}
		t->inserts++;
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static double seconds = 1.5;

static void stress(unsigned nsets)
{
	struct cache_settings set = {
		.size = nsets * CACHE_WAYS * CACHE_ENTRY_BYTES,
		.fail_max_per_set = 2, .nouser_max_per_set = 2,
		.refresh_percent = 50,
	};
	const char *error;
	struct thread tr[READERS], tw[WRITERS], sum = { 0 };
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

	uint32_t *refreshed = calloc((size_t)READERS * MAX_REFRESH,
				     sizeof(*refreshed));
	CHECK(refreshed != NULL);
	if (refreshed == NULL)
		return;
	deadline = now_ms() + (int64_t)(1000 * seconds);
	for (unsigned i = 0; i < READERS; i++) {
		tr[i] = (struct thread){ .id = i,
			.refreshed = refreshed + (size_t)i * MAX_REFRESH };
		CHECK(pthread_create(&tr[i].thread, NULL, reader, &tr[i]) == 0);
	}
	for (unsigned i = 0; i < WRITERS; i++) {
		tw[i] = (struct thread){ .id = i };
		CHECK(pthread_create(&tw[i].thread, NULL, writer, &tw[i]) == 0);
	}
	for (unsigned i = 0; i < READERS + WRITERS; i++) {
		struct thread *t = i < READERS ? &tr[i] : &tw[i - READERS];

		pthread_join(t->thread, NULL);
		sum.violations += t->violations;
		for (unsigned k = 0; k < 4; k++)
			sum.hits[k] += t->hits[k];
		sum.stale_hits += t->stale_hits;
		sum.inserts += t->inserts;
		sum.flushes += t->flushes;
		if (i < READERS) {
			sum.ops += t->ops;
			/* Pack the readers' lists for the duplicate check. */
			memmove(refreshed + sum.refreshes, t->refreshed,
				t->refreshes * sizeof(*refreshed));
			sum.refreshes += t->refreshes;
		}
	}
	/* Each entry version (generation) may signal refresh only once. */
	qsort(refreshed, sum.refreshes, sizeof(*refreshed), cmp_u32);
	for (uint64_t i = 1; i < sum.refreshes; i++) {
		if (refreshed[i] == refreshed[i - 1]) {
			fprintf(stderr, "  VIOLATION: generation %u signalled "
				"refresh twice\n", refreshed[i]);
			sum.violations++;
		}
	}
	free(refreshed);

	struct cache_summary cs;
	cache_summarize(cache, now_ms(), &cs);
	const struct cache_stats *st = &cs.stats;
	printf("  %" PRIu64 " lookups: %" PRIu64 " OK, %" PRIu64 " FAIL, %" PRIu64
	       " NOUSER hits, %" PRIu64 " stale, %" PRIu64 " refresh signals\n",
	       sum.ops, sum.hits[CACHE_OK], sum.hits[CACHE_FAIL],
	       sum.hits[CACHE_NOUSER], sum.stale_hits, sum.refreshes);
	printf("  %" PRIu64 " inserts, %" PRIu64 " flushes; evictions: %" PRIu64
	       " expired, %" PRIu64 " negative, %" PRIu64 " clock; busy %" PRIu64
	       ", read retries %" PRIu64 "\n",
	       sum.inserts, sum.flushes, st->evict_expired, st->evict_negative,
	       st->evict_clock, st->insert_busy, st->read_retries);

	CHECK_INT(sum.violations, 0);
	/* The test must have exercised what it claims to. */
	CHECK(sum.hits[CACHE_OK] > 0);
	CHECK(sum.hits[CACHE_FAIL] > 0);
	CHECK(sum.hits[CACHE_NOUSER] > 0);
	CHECK(sum.refreshes > 0);
	CHECK(st->evict_expired + st->evict_negative + st->evict_clock > 0);
	/* Quiescent now: the entries gauge matches the slots. */
	CHECK_INT(st->entries, cs.capacity - cs.empty);
	CHECK_INT(st->inserts + st->insert_busy, sum.inserts);
	CHECK_INT(st->refreshes, sum.refreshes);
	cache_free(&cache);
}

static void test_stress_one_set(void)
{
	stress(1);
}

static void test_stress_four_sets(void)
{
	stress(4);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		seconds = strtod(argv[1], NULL);
	UNIT_RUN(test_stress_one_set);
	UNIT_RUN(test_stress_four_sets);
	return unit_finish();
}
