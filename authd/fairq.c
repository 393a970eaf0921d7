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

/* Key tags: what kind of source a key names. */
enum { KEY_NONE = 0, KEY_TEXT = 1, KEY_IPV4 = 4, KEY_IPV6 = 6 };

struct fairq_source {
	LIST_ENTRY(fairq_source) hash_entry;	/* bucket, or the free list */
	TAILQ_ENTRY(fairq_source) ring_entry;	/* on the ring while waiting > 0 */
	TAILQ_ENTRY(fairq_source) len_entry;	/* by_len[waiting] while waiting > 0 */
	struct job_list jobs;			/* waiting, oldest first */
	struct fairq_key key;
	unsigned waiting, running;
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
	struct source_tailq ring;
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

/* The source of key: found, taken from the pool, or the overflow source.
 * A new one has nothing waiting or running; source_release() gives it
 * back if the request is not queued after all. */
static struct fairq_source *source_get(struct fairq *q, const struct fairq_key *key)
{
	struct source_list *b = &q->buckets[bucket_of(q, key)];
	struct fairq_source *s;

	LIST_FOREACH(s, b, hash_entry)
		if (memcmp(s->key.b, key->b, sizeof(key->b)) == 0)
			return s;
	s = LIST_FIRST(&q->free);
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

/* Gives s back to the pool once it has nothing waiting or running. */
static void source_release(struct fairq *q, struct fairq_source *s)
{
	if (s->waiting + s->running > 0 || !s->hashed)
		return;
	LIST_REMOVE(s, hash_entry);
	LIST_INSERT_HEAD(&q->free, s, hash_entry);
	q->live--;
}

/* s->waiting goes up by one: ring, length lists, totals. */
static void waiting_inc(struct fairq *q, struct fairq_source *s)
{
	if (s->waiting > 0)
		TAILQ_REMOVE(&q->by_len[s->waiting], s, len_entry);
	else
		TAILQ_INSERT_TAIL(&q->ring, s, ring_entry);
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

struct job *fairq_pop(struct fairq *q)
{
	struct fairq_source *s = TAILQ_FIRST(&q->ring);
	struct job *job;

	if (s == NULL)
		return NULL;
	job = TAILQ_FIRST(&s->jobs);
	TAILQ_REMOVE(&s->jobs, job, entry);
	waiting_dec(q, s);
	s->running++;
	TAILQ_REMOVE(&q->ring, s, ring_entry);
	if (s->waiting > 0)
		TAILQ_INSERT_TAIL(&q->ring, s, ring_entry);	/* its next turn */
	return job;
}

void fairq_done(struct fairq *q, struct job *job)
{
	struct fairq_source *s = job->fq_source;

	if (s == NULL)
		return;
	job->fq_source = NULL;
	s->running--;
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
