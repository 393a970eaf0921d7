/*
 * fairq.c - an authenticator's queue, served fairly between client
 * sources.  Runs in authd: the loop thread pushes, worker threads pop;
 * every call but fairq_key() is made under the owning authenticator's
 * mutex (authenticator.c), so nothing here locks.
 *
 * DESIGN
 * - A source is where requests come from, as the front end says (`rip`):
 *   an IPv4 address, an IPv6 /64 (one host usually owns a whole /64, so
 *   finer would give it thousands of shares), the empty address (a client
 *   that sent none: local tools, tests) as one source, anything else that
 *   is not an address as a keyed hash of its text.  An IPv4-mapped IPv6
 *   address is the IPv4 address.
 * - Each source with requests waiting is on a ring; fairq_pop() takes the
 *   oldest request of the source at the head and moves that source to the
 *   tail (deficit round robin where every request costs one: we cannot
 *   know a check's cost before it runs).  So a request waits for at most
 *   one request of every other source with requests waiting, however many
 *   they have: a source with a thousand waiting requests delays another
 *   by one turn per round, not by a thousand.
 * - Sources that keep failing wait behind the others.  A source whose
 *   last FAIRQ_SUSPECT_FAILS results or more were failures (wrong
 *   password, unknown user), with no success since, is "suspect": it
 *   waits on a second ring, served only when the first is empty or once
 *   every FAIRQ_SUSPECT_SHARE pops (so it is never starved).  A
 *   password-guessing flood makes its sources suspect within a few
 *   checks, and a client that logs in right is served before them,
 *   waiting only for the checks already running: with 40 flooding
 *   addresses, plain turns would make it wait for 40 checks.  A success
 *   makes the source clean again.  A source with failures that has
 *   nothing waiting or running is remembered (it keeps its pool entry,
 *   hashed, on the `remembered` list, oldest first) for
 *   FAIRQ_SUSPECT_MEMORY_MS: a flood whose requests are mostly refused at
 *   admission (authenticator.c) has one check at a time per address, and
 *   would otherwise never count to FAIRQ_SUSPECT_FAILS, or come back
 *   clean after each refusal.  A remembered
 *   entry is given back when a new source needs the pool and no entry is
 *   free (the oldest first), so remembering costs no memory.  Only the
 *   order changes: the limits below are the same for both rings.
 * - fairq_ahead() tells how many jobs would be taken before a new one of
 *   a source: for admission (authenticator.c).  It walks the ring of the
 *   source (O(sources)); authd calls it only when the queue is not empty.
 * - A source holds at most `limit` requests, waiting and in a worker
 *   together (per-source-limit): more are refused (FAIRQ_SOURCE_LIMIT).
 * - The queue holds at most `capacity` waiting requests (queue-limit).
 *   When it is full, a request of a source with fewer waiting than the
 *   longest source pushes out that source's newest waiting request
 *   (longest-queue drop: the caller answers it TEMPFAIL); otherwise it is
 *   refused (FAIRQ_FULL).  So a flood from a few sources cannot keep the
 *   queue full against a source that asks rarely.  The longest source is
 *   found in O(1): waiting sources are on lists by their number of
 *   waiting requests (at most min(limit, capacity)), and that number only
 *   moves by one at a time, so the highest non-empty list is tracked
 *   exactly.
 * - Memory: sources come from a pool allocated once, in a hash table
 *   keyed with a random SipHash key (a client cannot choose addresses
 *   that collide).  A source lives while it has a request waiting or in
 *   a worker, so at most capacity + workers sources are ever live; the
 *   pool has that many entries, at most AUTHD_MAX_SOURCES.  If it is
 *   full (only with queue-limit above AUTHD_MAX_SOURCES), new sources
 *   share one overflow source: one turn and one limit between them until
 *   some others leave; fairq_table_full() counts those requests.  No
 *   request allocates anything here.
 * - Every operation is O(1) (a hash lookup in push).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/mtime.h"

/* Key tags: what kind of source a key names. */
enum { KEY_NONE = 0, KEY_TEXT = 1, KEY_IPV4 = 4, KEY_IPV6 = 6 };

struct fairq_source {
	LIST_ENTRY(fairq_source) hash_entry;	/* bucket, or the free list */
	TAILQ_ENTRY(fairq_source) ring_entry;	/* on the ring while waiting > 0 */
	TAILQ_ENTRY(fairq_source) len_entry;	/* by_len[waiting] while waiting > 0 */
	struct job_list jobs;			/* waiting, oldest first */
	struct fairq_key key;
	unsigned waiting, running;
	unsigned fails;				/* failed results since its last success */
	bool on_suspects;			/* its ring is q->suspects */
	bool remembered;			/* idle suspect, on q->remembered */
	TAILQ_ENTRY(fairq_source) mem_entry;	/* on q->remembered */
	uint64_t idle_ms;			/* remembered since (mtime_ms) */
	bool hashed;				/* false: the overflow source */
};
LIST_HEAD(source_list, fairq_source);
TAILQ_HEAD(source_tailq, fairq_source);

struct fairq {
	unsigned limit, capacity;
	unsigned waiting;			/* all sources */
	unsigned live, max_sources;
	struct fairq_source *pool;
	struct fairq_source overflow;
	struct source_list free;
	struct source_list *buckets;
	size_t nbuckets;			/* a power of two */
	struct source_tailq ring;		/* clean sources with requests waiting */
	struct source_tailq suspects;		/* suspect sources with requests waiting */
	unsigned clean_pops;			/* pops from ring since the last suspect one */
	struct source_tailq remembered;		/* idle suspects, oldest first */
	struct source_tailq *by_len;		/* [1 .. max_len_cap] */
	unsigned max_len_cap, max_len;
	uint64_t table_full;
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
};

void fairq_key(const char *rip, struct fairq_key *key_r)
{
	char addr[AUTHD_MAX_ADDR + 1];
	uint8_t a[16];
	char *pct;

	memset(key_r, 0, sizeof(*key_r));
	if (rip == NULL || rip[0] == '\0')
		return;		/* KEY_NONE: one source for every client without an address */
	snprintf(addr, sizeof(addr), "%s", rip);
	pct = strchr(addr, '%');	/* an IPv6 zone: the same host */
	if (pct != NULL)
		*pct = '\0';
	if (inet_pton(AF_INET, addr, a) == 1) {
		key_r->b[0] = KEY_IPV4;
		memcpy(key_r->b + 1, a, 4);
	} else if (inet_pton(AF_INET6, addr, a) == 1) {
		static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

		if (memcmp(a, mapped, sizeof(mapped)) == 0) {
			key_r->b[0] = KEY_IPV4;
			memcpy(key_r->b + 1, a + 12, 4);
		} else {
			key_r->b[0] = KEY_IPV6;
			memcpy(key_r->b + 1, a, 8);	/* the /64 */
		}
	} else {
		key_r->b[0] = KEY_TEXT;
		crypto_generichash(key_r->b + 1, sizeof(key_r->b) - 1, (const uint8_t *)rip,
				   strlen(rip), NULL, 0);
	}
}

struct fairq *fairq_new(unsigned capacity, unsigned limit, unsigned workers)
{
	struct fairq *q = xcalloc(1, sizeof(*q));
	uint64_t most = (uint64_t)capacity + workers;

	q->capacity = capacity;
	q->limit = limit;
	q->max_sources = most < AUTHD_MAX_SOURCES ? (unsigned)most : AUTHD_MAX_SOURCES;
	q->pool = xcalloc(q->max_sources, sizeof(*q->pool));
	LIST_INIT(&q->free);
	for (unsigned i = q->max_sources; i-- > 0;)
		LIST_INSERT_HEAD(&q->free, &q->pool[i], hash_entry);
	for (q->nbuckets = 16; q->nbuckets < q->max_sources; q->nbuckets *= 2)
		;
	q->buckets = xcalloc(q->nbuckets, sizeof(*q->buckets));
	for (size_t i = 0; i < q->nbuckets; i++)
		LIST_INIT(&q->buckets[i]);
	TAILQ_INIT(&q->ring);
	TAILQ_INIT(&q->suspects);
	TAILQ_INIT(&q->remembered);
	TAILQ_INIT(&q->overflow.jobs);
	q->max_len_cap = limit < capacity ? limit : capacity;
	q->by_len = xcalloc((size_t)q->max_len_cap + 1, sizeof(*q->by_len));
	for (unsigned i = 0; i <= q->max_len_cap; i++)
		TAILQ_INIT(&q->by_len[i]);
	randombytes_buf(q->hash_key, sizeof(q->hash_key));
	return q;
}

void fairq_free(struct fairq **qp)
{
	struct fairq *q = *qp;

	if (q == NULL)
		return;
	free(q->by_len);
	free(q->buckets);
	free(q->pool);
	sodium_memzero(q, sizeof(*q));
	free(q);
	*qp = NULL;
}

static size_t bucket_of(const struct fairq *q, const struct fairq_key *key)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, key->b, sizeof(key->b), q->hash_key);
	memcpy(&v, h, sizeof(v));
	return (size_t)(v & (q->nbuckets - 1));
}

/* s (remembered) is not any more: live again, or about to be reused.  Its
 * suspicion lapses after FAIRQ_SUSPECT_MEMORY_MS. */
static void remember_end(struct fairq *q, struct fairq_source *s)
{
	TAILQ_REMOVE(&q->remembered, s, mem_entry);
	s->remembered = false;
	if (mtime_ms() - s->idle_ms >= FAIRQ_SUSPECT_MEMORY_MS)
		s->fails = 0;
}

/* The source of key: found, taken from the pool, or the overflow source.
 * A new one has nothing waiting or running; source_release() gives it
 * back if the request is not queued after all. */
static struct fairq_source *source_get(struct fairq *q, const struct fairq_key *key)
{
	struct source_list *b = &q->buckets[bucket_of(q, key)];
	struct fairq_source *s;

	LIST_FOREACH(s, b, hash_entry)
		if (memcmp(s->key.b, key->b, sizeof(key->b)) == 0) {
			if (s->remembered) {
				remember_end(q, s);
				q->live++;
			}
			return s;
		}
	s = LIST_FIRST(&q->free);
	if (s == NULL && (s = TAILQ_FIRST(&q->remembered)) != NULL)
		remember_end(q, s);	/* the oldest one makes room */
	if (s == NULL) {
		q->table_full++;
		return &q->overflow;
	}
	LIST_REMOVE(s, hash_entry);
	memset(s, 0, sizeof(*s));
	TAILQ_INIT(&s->jobs);
	s->key = *key;
	s->hashed = true;
	LIST_INSERT_HEAD(b, s, hash_entry);
	q->live++;
	return s;
}

/* Gives s back to the pool once it has nothing waiting or running (a
 * source with failures is remembered instead: it stays hashed). */
static void source_release(struct fairq *q, struct fairq_source *s)
{
	if (s->waiting + s->running > 0 || !s->hashed)
		return;
	if (s->fails > 0) {
		s->remembered = true;
		s->idle_ms = mtime_ms();
		TAILQ_INSERT_TAIL(&q->remembered, s, mem_entry);
		q->live--;
		return;
	}
	LIST_REMOVE(s, hash_entry);
	LIST_INSERT_HEAD(&q->free, s, hash_entry);
	q->live--;
}

static bool suspect(const struct fairq_source *s)
{
	return s->fails >= FAIRQ_SUSPECT_FAILS;
}

/* Puts s (with requests waiting, on no ring) at the tail of its ring. */
static void ring_insert(struct fairq *q, struct fairq_source *s)
{
	s->on_suspects = suspect(s);
	TAILQ_INSERT_TAIL(s->on_suspects ? &q->suspects : &q->ring, s, ring_entry);
}

static void ring_remove(struct fairq *q, struct fairq_source *s)
{
	TAILQ_REMOVE(s->on_suspects ? &q->suspects : &q->ring, s, ring_entry);
}

/* s->waiting goes up by one: ring, length lists, totals. */
static void waiting_inc(struct fairq *q, struct fairq_source *s)
{
	if (s->waiting > 0)
		TAILQ_REMOVE(&q->by_len[s->waiting], s, len_entry);
	else
		ring_insert(q, s);
	s->waiting++;
	TAILQ_INSERT_TAIL(&q->by_len[s->waiting], s, len_entry);
	if (s->waiting > q->max_len)
		q->max_len = s->waiting;
	q->waiting++;
}

/* s->waiting goes down by one (s stays on the ring: the caller knows
 * where it goes). */
static void waiting_dec(struct fairq *q, struct fairq_source *s)
{
	TAILQ_REMOVE(&q->by_len[s->waiting], s, len_entry);
	if (s->waiting == q->max_len && TAILQ_EMPTY(&q->by_len[s->waiting]))
		q->max_len--;	/* s itself is at max_len - 1 now, or nothing waits */
	s->waiting--;
	if (s->waiting > 0)
		TAILQ_INSERT_TAIL(&q->by_len[s->waiting], s, len_entry);
	q->waiting--;
}

enum fairq_push fairq_push(struct fairq *q, struct job *job, const struct fairq_key *key,
			   struct job **evicted_r)
{
	struct fairq_source *s = source_get(q, key);

	*evicted_r = NULL;
	if (s->waiting + s->running >= q->limit)
		return FAIRQ_SOURCE_LIMIT;	/* s has requests: nothing to release */
	if (q->waiting >= q->capacity) {
		struct fairq_source *longest = q->max_len > 0 ?
			TAILQ_FIRST(&q->by_len[q->max_len]) : NULL;

		if (longest == NULL || longest == s || longest->waiting <= s->waiting + 1) {
			source_release(q, s);
			return FAIRQ_FULL;
		}
		/* longest-queue drop: its newest request makes room */
		struct job *victim = TAILQ_LAST(&longest->jobs, job_list);
		TAILQ_REMOVE(&longest->jobs, victim, entry);
		waiting_dec(q, longest);	/* it had more than one: stays on the ring */
		victim->fq_source = NULL;
		*evicted_r = victim;
	}
	job->fq_source = s;
	TAILQ_INSERT_TAIL(&s->jobs, job, entry);
	waiting_inc(q, s);
	return FAIRQ_QUEUED;
}

/* The source of key if it is live, without taking one from the pool. */
static struct fairq_source *source_find(const struct fairq *q, const struct fairq_key *key)
{
	struct fairq_source *s;

	LIST_FOREACH(s, &q->buckets[bucket_of(q, key)], hash_entry)
		if (memcmp(s->key.b, key->b, sizeof(key->b)) == 0)
			return s;
	return NULL;
}

unsigned fairq_ahead(const struct fairq *q, const struct fairq_key *key, bool *suspect_r)
{
	const struct fairq_source *s = source_find(q, key);
	bool susp = s != NULL && suspect(s) &&
		    (!s->remembered || mtime_ms() - s->idle_ms < FAIRQ_SUSPECT_MEMORY_MS);
	unsigned mine = s != NULL ? s->waiting : 0, sources = 0, waiting = 0;
	const struct fairq_source *o;

	*suspect_r = susp;
	/* Every job of its own ring that waits, but at most one per source
	 * and round for the rounds before its own turn: (mine + 1) rounds.
	 * A suspect also waits for every clean job (bar its share). */
	TAILQ_FOREACH(o, susp ? &q->suspects : &q->ring, ring_entry) {
		sources++;
		waiting += o->waiting;
	}
	uint64_t rounds = (uint64_t)(mine + 1) * sources;
	unsigned ahead = rounds < waiting ? (unsigned)rounds : waiting;
	if (susp)
		ahead += q->waiting - waiting;
	return ahead;
}

struct job *fairq_pop(struct fairq *q)
{
	struct fairq_source *s = TAILQ_FIRST(&q->ring);
	struct job *job;

	/* Suspects when no clean source waits, or for their share (pops
	 * are counted only while suspects wait). */
	if (s == NULL || (q->clean_pops >= FAIRQ_SUSPECT_SHARE - 1 &&
			  !TAILQ_EMPTY(&q->suspects))) {
		s = TAILQ_FIRST(&q->suspects);
		q->clean_pops = 0;
	} else if (!TAILQ_EMPTY(&q->suspects)) {
		q->clean_pops++;
	}
	if (s == NULL)
		return NULL;
	job = TAILQ_FIRST(&s->jobs);
	TAILQ_REMOVE(&s->jobs, job, entry);
	waiting_dec(q, s);
	s->running++;
	ring_remove(q, s);
	if (s->waiting > 0)
		ring_insert(q, s);	/* its next turn */
	return job;
}

void fairq_done(struct fairq *q, struct job *job)
{
	struct fairq_source *s = job->fq_source;

	if (s == NULL)
		return;
	job->fq_source = NULL;
	s->running--;
	/* What the check found moves the source between rings (a skipped
	 * or tempfailed job says nothing about the client). */
	if (job->result == AUTH_RESULT_OK)
		s->fails = 0;
	else if (job->result == AUTH_RESULT_FAIL || job->result == AUTH_RESULT_NOUSER)
		s->fails += s->fails < FAIRQ_SUSPECT_FAILS;
	if (s->waiting > 0 && s->on_suspects != suspect(s)) {
		ring_remove(q, s);
		ring_insert(q, s);
	}
	source_release(q, s);
}

unsigned fairq_waiting(const struct fairq *q)
{
	return q->waiting;
}

unsigned fairq_sources(const struct fairq *q)
{
	return q->live + (q->overflow.waiting + q->overflow.running > 0);
}

uint64_t fairq_table_full(const struct fairq *q)
{
	return q->table_full;
}
