/*
 * cache.c - the credential cache: a set-associative table of fixed-size
 * slots, each guarded by a sequence counter (seqlock).
 *
 * DESIGN
 *
 * Layout.  The table is an array of `nsets` sets, allocated once by
 * cache_create() from the byte budget and freed only by cache_free().  A key
 * belongs to one set, chosen from the key's first 8 bytes (the key is
 * already a keyed hash, so an attacker cannot aim at one set) by a
 * multiply-shift onto [0, nsets).  A set is one 64-byte header and
 * CACHE_WAYS (8) slots of 384 bytes:
 *
 *   set header  tag[8] | lock | hand                            64 B
 *   slot        seq | refresh_seq | ref | entry words[46]      384 B
 *   entry       key, verifier, fresh_until, stale_until,
 *               refresh_at, uid, gid, kind     (13 words: the "head")
 *               home, maildrop, authenticator  (33 words: the "tail";
 *                                               lookups copy all 46 words,
 *                                               walks only the head)
 *
 * An entry never moves: it stays in its slot until it is overwritten or
 * cleared.  Nothing is allocated or freed between cache_create() and
 * cache_free(), so a reader can never touch freed memory and there is
 * nothing to reclaim.  Expired entries are not swept; they are never
 * returned as fresh and are the first to be reused.
 *
 * Invariants.
 *   I1  A slot's seq is even while no writer is inside it and odd while one
 *       is.  Entry words are stored only while it is odd; each completed
 *       write adds 2.  It is 64 bits wide, so it never wraps (no ABA).
 *   I2  Only the holder of a set's lock writes that set's seq values, entry
 *       words, tags and CLOCK hand.  Readers write only two hints that lie
 *       outside the entry: `ref` and `refresh_seq`.
 *   I3  In a set, at most one entry answers any (key, verifier): the OK and
 *       FAIL entries of a key have distinct verifiers, and a key has either
 *       one NOUSER entry or OK/FAIL entries, never both.  cache_insert()
 *       keeps this by clearing what the new entry supersedes, under the lock.
 *   I4  A set holds at most fail_max live FAIL entries and nouser_max live
 *       NOUSER entries ("live" by the inserting writer's clock).
 *
 * Readers (cache_lookup, cache_lookup_stale, cache_summarize, cache_iterate)
 * take no lock, never block, and run a bounded number of steps.  For each of
 * the 8 slots whose tag matches, slot_read() makes a seqlock copy (Boehm,
 * "Can seqlocks get along with programming language memory models?", 2012,
 * the version with fences):
 *
 *   s1 = seq (acquire); if odd, retry
 *   copy entry words with relaxed atomic loads into a local image
 *   acquire fence; s2 = seq (relaxed); use the copy only if s1 == s2
 *
 * After READ_TRIES failed attempts (a writer is inside, or was preempted
 * there) the slot is treated as a miss.  Only then is the copy looked at:
 * every decision - key, verifier, kind, freshness - is taken on the
 * validated local copy.
 *
 * Writers (cache_insert and the flushes) take the set's lock, choose the
 * slot, and write it in slot_write():
 *
 *   seq = s + 1 (relaxed); release fence
 *   store entry words (relaxed)
 *   seq = s + 2 (release); tag = new tag (relaxed)
 *
 * The lock is a try-lock: inserts give up after LOCK_TRIES spins (counted
 * as insert_busy; a lost insert only costs a later miss), flushes yield and
 * retry.  A writer holds it for one scan of 8 slot heads and a few slot
 * writes: no system call, no allocation, nothing that waits.
 *
 * Why a per-set writer lock rather than claiming each slot by a CAS on its
 * seq: two workers inserting the same (key, verifier) at once - a mail
 * client opening several connections does exactly that - would each claim a
 * different free slot, and the set would hold the entry twice.  A later
 * result for it (a FAIL after a password change) would replace one copy
 * while lookups kept finding the other, breaking I3.  With the lock, "find
 * the entry this one supersedes, else pick a victim, then write" is one
 * step.  Readers never look at the lock, so lookups pay nothing for it, and
 * writers are rare (one per backend answer) and spread over many sets.
 *
 * Why a lookup never returns
 *   - a torn entry: the copy is used only if seq read the same even value s
 *     before and after it.  By the acquire load/release store pair, every
 *     word is at least as new as the write that ended with s.  By the fence
 *     pair, if any word came from a later write, the second load of seq
 *     sees at least that write's odd value, so s2 != s.  Hence every word
 *     comes from the one write that ended with s (I1, I2).
 *   - another key's entry: the set and the tag only choose where to look;
 *     the full 32-byte key of the validated copy must equal the lookup's,
 *     and, except for NOUSER (true for every password), so must the full
 *     verifier.  Keys are 256-bit keyed hashes of an unambiguous encoding,
 *     so distinct (scope, user) pairs collide only by breaking BLAKE2b.
 *   - an expired entry as fresh: fresh_until is part of the same validated
 *     copy, and only now < fresh_until is a hit, with the caller's now.
 *   - a superseded answer beside its successor: by I3 at most one entry
 *     matches; an insert clears what it supersedes before it writes the new
 *     entry, so a concurrent reader sees the old answer, a miss, or the new
 *     answer, never a choice between two.
 *
 * Linearization points.  An insert or a flush takes effect at the release
 * store that makes its slot's seq even again.  A hit takes effect at the
 * acquire load that began its validated copy: the entry was in the slot,
 * unchanged, for the whole copy.  A miss has no single instant (slots are
 * read one after another); it means only that each slot, when read, held no
 * fresh match.  A lookup racing with the insert of its own entry may miss
 * it; a miss is always safe here, as the caller then asks the backend.
 *
 * Hints, read and written relaxed, never deciding what a lookup returns:
 *   - tag[i]: 31 bits of slot i's key (0 = empty), so a lookup reads one
 *     header line instead of 8 slots.  Written after the slot is published;
 *     a stale tag only causes a skipped slot (a miss) or a wasted copy.
 *   - ref: the CLOCK bit, set by a hit only when clear (so a hot entry's
 *     line is not written on every hit), cleared by the CLOCK hand and by
 *     slot_write().  A hit racing with a replacement may mark the new entry.
 *   - refresh_seq: (the low 32 bits of) the seq of the last entry version
 *     that returned CACHE_HIT_REFRESH.  A lookup moves it forward to its
 *     copy's seq with a CAS; only the one whose CAS succeeds signals, so
 *     each entry version signals at most once.  New versions have larger
 *     seq values, so nothing needs to reset it.
 *
 * Eviction, per set, when the new entry supersedes nothing (and its kind
 * is under its cap, I4): an empty slot, else an expired one (past
 * stale_until), else the live negative closest to expiry, else a positive
 * chosen by CLOCK.  A negative at its kind's cap replaces the same kind's
 * entry closest to expiry, so floods of wrong passwords or random names
 * never push out positive entries beyond their share.
 *
 * Flush epoch.  A flush (a passwd-file changed, `authctl flush`) must not
 * be undone by a result the backend gave from what it knew before it: a
 * request asked before the flush that answers after it.  So every flush
 * counts `epoch` up before it sweeps, a caller takes cache_epoch() before
 * it asks the backend, and cache_insert_if_epoch() stores the answer only
 * if no flush counted up since:
 *
 *   E = epoch (acquire; pairs with F1)       ... the backend is asked ...
 *   insert:  epoch == E (acquire, pairs with F1), else drop (an early out)
 *            cache_insert() as usual
 *            R: fetch_add(epoch, 0) (acq_rel; pairs with F1 both ways)
 *            if R != E: remove the key's entries again
 *   flush:   F1: fetch_add(epoch, 1) (acq_rel), then sweep under the locks
 *
 * R and F1 are read-modify-writes of one location, so one comes first in
 * its modification order and the later one reads from it.  If R is first,
 * F1 reads from R: R's release half makes the entry stored before R
 * visible to F1's acquire half, so F1's sweep removes it.  If F1 is first,
 * R reads its count, differs from E, and removes the entry itself.  Either
 * way nothing asked before the flush survives it (a plain load instead of
 * R could read the old count while F1's sweep missed the entry).  The
 * acquire of E against F1's release also means: a request that sees a
 * flush's count was asked after what the flusher did before it (the
 * passwd-file watcher swaps in the new file, then flushes).  A flush
 * racing an insert may remove a little more than it had to (the key's
 * other entries); never less.
 *
 * Memory orders.  Each acquire, release and fence below names its pair.
 * Relaxed is used for statistics counters, for the seqlock's entry words
 * (ordered by the fence pair), for the hints above, and where a writer
 * reads what only it can write (I2).
 */
#include <assert.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include <sodium.h>

#include "cache/cache.h"

#define SLOT_WORDS 46		/* entry words per slot: 368 bytes */
#define HEAD_WORDS 13		/* key .. kind; the rest is strings */
#define READ_TRIES 16		/* seqlock copies before a slot counts as a miss */
#define LOCK_TRIES 128		/* spins before an insert gives up (busy) */
#define STRIPES 16		/* counter copies: up to 16 threads share no line */
#define KIND_EMPTY 0
#define HUGE_PAGE ((size_t)2 << 20)

/* The entry as stored, word for word, in a slot; readers and writers build
   and inspect it in a local `union image`. */
struct entry {
	uint8_t key[CACHE_KEY_LEN];
	uint8_t verifier[CACHE_VERIFIER_LEN];	/* zero for NOUSER */
	int64_t fresh_until;
	int64_t stale_until;		/* == fresh_until for negatives */
	int64_t refresh_at;		/* INT64_MAX: never signal */
	uint32_t uid, gid;
	uint8_t kind;			/* KIND_EMPTY or enum cache_kind */
	uint8_t unused[7];
	char home[CACHE_HOME_MAX + 1];
	char maildrop[CACHE_MAILDROP_MAX + 1];
	char authenticator[CACHE_AUTHENTICATOR_MAX + 1];
};

union image {
	struct entry e;
	uint64_t w[SLOT_WORDS];
};

_Static_assert(sizeof(struct entry) == SLOT_WORDS * sizeof(uint64_t),
	       "entry must fill the slot's words exactly");
_Static_assert(offsetof(struct entry, home) == HEAD_WORDS * sizeof(uint64_t),
	       "the strings must start right after the head words");
_Static_assert((sizeof(uint64_t) == sizeof(long) ? ATOMIC_LONG_LOCK_FREE :
		ATOMIC_LLONG_LOCK_FREE) == 2,
	       "readers must not fall back to libatomic's locks");

struct slot {
	_Atomic uint64_t seq;		/* I1; 64 bits, so it never wraps */
	_Atomic uint32_t refresh_seq;	/* hint: low 32 bits of the seq of
					   the last version that signalled */
	_Atomic uint8_t ref;		/* hint: CLOCK reference bit */
	_Atomic uint64_t w[SLOT_WORDS];	/* the entry */
};

struct set {
	alignas(64) _Atomic uint32_t tag[CACHE_WAYS];	/* hint, 0 = empty */
	_Atomic uint32_t lock;		/* writers only; 1 = held */
	unsigned hand;			/* CLOCK hand; under lock */
	alignas(64) struct slot slot[CACHE_WAYS];
};

_Static_assert(sizeof(struct slot) == 384, "a slot is six cache lines");
_Static_assert(sizeof(struct set) == CACHE_WAYS * CACHE_ENTRY_BYTES,
	       "CACHE_ENTRY_BYTES in cache.h is out of date");

enum stat {
	STAT_HITS, STAT_NEGATIVE_HITS, STAT_MISSES, STAT_STALE_SERVED,
	STAT_REFRESHES, STAT_INSERTS, STAT_EVICT_EXPIRED, STAT_EVICT_NEGATIVE,
	STAT_EVICT_CLOCK, STAT_INSERT_BUSY, STAT_INSERT_TOO_LONG, STAT_FLUSHED,
	STAT_READ_RETRIES, STAT_ENTRIES,
	STAT_COUNT
};

/* One copy of the counters.  Threads add to "their" stripe so that two
   cores never increment the same cache line on every lookup. */
struct stripe {
	alignas(64) _Atomic uint64_t n[STAT_COUNT];
};

struct cache {
	struct set *sets;
	uint64_t nsets;
	unsigned fail_max, nouser_max, refresh_percent;
	/* sodium_malloc'd, read-only after creation: bytes 0..31 key the
	   cache key hash, bytes 32..63 the verifier hash. */
	unsigned char *hash_keys;
	/* Flushes so far (see DESIGN, Flush epoch); written by any thread. */
	_Atomic uint64_t epoch;
	struct stripe stripes[STRIPES];
};

static const union image empty_image;

/* ---- counters ---------------------------------------------------------- */

static _Atomic unsigned stripe_next;
static _Thread_local unsigned stripe_of_thread;	/* 1 + index; 0 = unset */

static struct stripe *my_stripe(struct cache *cache)
{
	if (stripe_of_thread == 0) {
		/* Relaxed: a counter handing out indexes; publishes nothing. */
		unsigned n = atomic_fetch_add_explicit(&stripe_next, 1,
						       memory_order_relaxed);
		stripe_of_thread = 1 + n % STRIPES;
	}
	return &cache->stripes[stripe_of_thread - 1];
}

static void stat_add(struct stripe *st, enum stat i, uint64_t n)
{
	/* Relaxed: statistics only. */
	atomic_fetch_add_explicit(&st->n[i], n, memory_order_relaxed);
}

/* ---- helpers ----------------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

static struct set *set_of(const struct cache *cache,
			  const uint8_t key[CACHE_KEY_LEN])
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));
	return &cache->sets[(uint64_t)(((unsigned __int128)h * cache->nsets) >> 64)];
}

static uint32_t tag_of(const uint8_t key[CACHE_KEY_LEN])
{
	uint32_t t;

	/* Bytes 8..11: independent of the set index, never 0 (= empty). */
	memcpy(&t, key + 8, sizeof(t));
	return t | 1;
}

/* True if the (validated) entry `e` answers a lookup for (key, verifier). */
static bool entry_matches(const struct entry *e, const uint8_t *key,
			  const uint8_t *verifier)
{
	if (e->kind == KIND_EMPTY)
		return false;
	if (crypto_verify_32(e->key, key) != 0)
		return false;
	return e->kind == CACHE_NOUSER ||
		crypto_verify_32(e->verifier, verifier) == 0;
}

/* True if the new entry `n` makes the old entry `o` wrong: the same key
   and either the same verifier or a NOUSER on either side (I3). */
static bool entry_supersedes(const struct entry *n, const struct entry *o)
{
	if (crypto_verify_32(n->key, o->key) != 0)
		return false;
	if (n->kind == CACHE_NOUSER || o->kind == CACHE_NOUSER)
		return true;
	return crypto_verify_32(n->verifier, o->verifier) == 0;
}

/* Copies a validated entry out to the caller. */
static void entry_export(const struct entry *e, struct cache_entry *entry_r)
{
	entry_r->kind = e->kind;
	entry_r->fresh_until = e->fresh_until;
	entry_r->stale_until = e->stale_until;
	if (e->kind != CACHE_OK) {
		entry_r->uid = entry_r->gid = 0;
		entry_r->home[0] = entry_r->maildrop[0] = '\0';
		entry_r->authenticator[0] = '\0';
		return;
	}
	entry_r->uid = e->uid;
	entry_r->gid = e->gid;
	memcpy(entry_r->home, e->home, sizeof(entry_r->home));
	memcpy(entry_r->maildrop, e->maildrop, sizeof(entry_r->maildrop));
	memcpy(entry_r->authenticator, e->authenticator,
	       sizeof(entry_r->authenticator));
	/* Writers always store terminated strings; this is belt and braces. */
	entry_r->home[CACHE_HOME_MAX] = '\0';
	entry_r->maildrop[CACHE_MAILDROP_MAX] = '\0';
	entry_r->authenticator[CACHE_AUTHENTICATOR_MAX] = '\0';
}

/* ---- seqlock: read side ------------------------------------------------ */

/*
 * Copies the first `nwords` entry words of `slot` into *copy (lookups take
 * all of them; walks only the head) and returns true if the copy is
 * consistent: every word from the one complete write whose seq is put in
 * *seq_r.  Returns false if no consistent copy was made in READ_TRIES
 * attempts.  The caller decides what the copy means only after this.
 */
static bool slot_read(struct slot *slot, unsigned nwords, struct stripe *st,
		      union image *copy, uint64_t *seq_r)
{
	for (unsigned tries = 0; tries < READ_TRIES; tries++) {
		if (tries > 0) {
			stat_add(st, STAT_READ_RETRIES, 1);
			cpu_relax();
		}
		/* Acquire: pairs with the release store of the even seq at
		   the end of slot_write(); the words copied below are at
		   least as new as that write. */
		uint64_t seq = atomic_load_explicit(&slot->seq,
						    memory_order_acquire);
		if ((seq & 1) != 0)
			continue;	/* a writer is inside */
		for (unsigned i = 0; i < nwords; i++) {
			/* Relaxed: validated by the seq re-check below. */
			copy->w[i] = atomic_load_explicit(&slot->w[i],
							  memory_order_relaxed);
		}
		/* Acquire fence: pairs with the release fence in
		   slot_write() that follows the odd seq store.  If any word
		   above came from a newer write, the load below sees that
		   write's odd seq or later. */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&slot->seq, memory_order_relaxed) == seq) {
			*seq_r = seq;
			return true;
		}
	}
	return false;
}

/* Sets the CLOCK bit of a slot just hit. */
static void slot_touch(struct slot *slot)
{
	/* Relaxed: a hint (see DESIGN).  Tested first so that a hot entry's
	   cache line is written once, not on every hit. */
	if (atomic_load_explicit(&slot->ref, memory_order_relaxed) == 0)
		atomic_store_explicit(&slot->ref, 1, memory_order_relaxed);
}

/* True for exactly one caller per entry version `seq` (see DESIGN).  The
   token keeps 32 bits of seq, compared modulo 2^32: an entry version
   older by 2^31 writes of the slot could claim again, which would only
   cost one extra refresh. */
static bool slot_claim_refresh(struct slot *slot, uint64_t seq)
{
	uint32_t version = (uint32_t)seq;
	/* Relaxed: the value is a token; it publishes no other data. */
	uint32_t seen = atomic_load_explicit(&slot->refresh_seq,
					     memory_order_relaxed);
	do {
		if ((int32_t)(version - seen) <= 0)
			return false;	/* this version (or a newer) signalled */
	} while (!atomic_compare_exchange_weak_explicit(&slot->refresh_seq,
							&seen, version,
							memory_order_relaxed,
							memory_order_relaxed));
	return true;
}

/* ---- seqlock: write side (caller holds the set's lock) ----------------- */

/* Copies the head of a slot in a set whose lock the caller holds. */
static void slot_peek(struct slot *slot, union image *copy)
{
	for (unsigned i = 0; i < HEAD_WORDS; i++) {
		/* Relaxed: under the set lock nobody else writes these (I2);
		   the lock's acquire ordered us after the last writer. */
		copy->w[i] = atomic_load_explicit(&slot->w[i],
						  memory_order_relaxed);
	}
}

/* Writes `img` into slot i of a set whose lock the caller holds; an
   all-zero image (empty_image, tag 0) clears the slot. */
static void slot_write(struct set *set, unsigned i, const union image *img,
		       uint32_t tag)
{
	struct slot *slot = &set->slot[i];

	/* Relaxed: only the lock holder writes seq (I2). */
	uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_relaxed);
	assert((seq & 1) == 0);
	atomic_store_explicit(&slot->seq, seq + 1, memory_order_relaxed);
	/* Release fence: pairs with the acquire fence in slot_read(); a
	   reader that sees any word stored below then sees seq odd. */
	atomic_thread_fence(memory_order_release);
	/* Relaxed: hint; the new entry starts unreferenced. */
	atomic_store_explicit(&slot->ref, 0, memory_order_relaxed);
	for (unsigned w = 0; w < SLOT_WORDS; w++) {
		/* Relaxed: ordered by the fence above and the store below. */
		atomic_store_explicit(&slot->w[w], img->w[w],
				      memory_order_relaxed);
	}
	/* Release: pairs with the acquire load of seq in slot_read();
	   publishes the words above.  This is the write's linearization
	   point. */
	atomic_store_explicit(&slot->seq, seq + 2, memory_order_release);
	/* Relaxed: hint (see DESIGN); set after publication. */
	atomic_store_explicit(&set->tag[i], tag, memory_order_relaxed);
}

static bool set_trylock(struct set *set, unsigned spins)
{
	for (unsigned n = 0;; n++) {
		uint32_t expected = 0;
		/* Acquire: pairs with the release store in set_unlock(); we
		   see the set as the previous writer left it. */
		if (atomic_compare_exchange_weak_explicit(&set->lock,
							  &expected, 1,
							  memory_order_acquire,
							  memory_order_relaxed))
			return true;
		if (n >= spins)
			return false;
		cpu_relax();
	}
}

/* For flushes, which must not give up: writers hold the lock briefly. */
static void set_lock_wait(struct set *set)
{
	while (!set_trylock(set, LOCK_TRIES))
		sched_yield();
}

static void set_unlock(struct set *set)
{
	/* Release: pairs with the acquire CAS in set_trylock(). */
	atomic_store_explicit(&set->lock, 0, memory_order_release);
}

/* CLOCK: the first slot from the hand whose bit is clear, clearing bits on
   the way.  Readers may set bits meanwhile, so the walk is bounded. */
static unsigned set_clock_victim(struct set *set)
{
	for (unsigned n = 0; n < 2 * CACHE_WAYS; n++) {
		unsigned i = set->hand;

		set->hand = (i + 1) % CACHE_WAYS;
		/* Relaxed: hint. */
		if (atomic_load_explicit(&set->slot[i].ref,
					 memory_order_relaxed) == 0)
			return i;
		atomic_store_explicit(&set->slot[i].ref, 0, memory_order_relaxed);
	}
	return set->hand;
}

/*
 * Chooses the slot for the new entry `e` in `set` (locked) and clears every
 * other slot holding an entry that `e` supersedes (I3).  Counts evictions
 * and the change in occupied slots.  See "Eviction" in DESIGN.
 */
static unsigned set_choose_slot(const struct cache *cache, struct set *set,
				const struct entry *e, int64_t now,
				struct stripe *st)
{
	bool superseded[CACHE_WAYS] = { false };
	int first_superseded = -1, empty = -1, dead = -1;
	int negative = -1, same_kind = -1;
	int64_t negative_until = INT64_MAX, same_kind_until = INT64_MAX;
	unsigned same_kind_live = 0, cap = CACHE_WAYS;

	if (e->kind == CACHE_FAIL)
		cap = cache->fail_max;
	else if (e->kind == CACHE_NOUSER)
		cap = cache->nouser_max;

	for (unsigned i = 0; i < CACHE_WAYS; i++) {
		union image old;
		const struct entry *o = &old.e;

		slot_peek(&set->slot[i], &old);
		if (o->kind == KIND_EMPTY) {
			if (empty < 0)
				empty = (int)i;
		} else if (entry_supersedes(e, o)) {
			superseded[i] = true;
			if (first_superseded < 0)
				first_superseded = (int)i;
		} else if (now >= o->stale_until) {
			if (dead < 0)
				dead = (int)i;
		} else if (o->kind != CACHE_OK) {
			if (o->fresh_until < negative_until) {
				negative = (int)i;
				negative_until = o->fresh_until;
			}
			if (o->kind == e->kind) {
				same_kind_live++;
				if (o->fresh_until < same_kind_until) {
					same_kind = (int)i;
					same_kind_until = o->fresh_until;
				}
			}
		}
	}

	unsigned target;
	if (same_kind_live >= cap) {
		target = (unsigned)same_kind;
		stat_add(st, STAT_EVICT_NEGATIVE, 1);
	} else if (first_superseded >= 0) {
		target = (unsigned)first_superseded;	/* replace in place */
	} else if (empty >= 0) {
		target = (unsigned)empty;
		stat_add(st, STAT_ENTRIES, 1);
	} else if (dead >= 0) {
		target = (unsigned)dead;
		stat_add(st, STAT_EVICT_EXPIRED, 1);
	} else if (negative >= 0) {
		target = (unsigned)negative;
		stat_add(st, STAT_EVICT_NEGATIVE, 1);
	} else {
		target = set_clock_victim(set);	/* all 8 are live positives */
		stat_add(st, STAT_EVICT_CLOCK, 1);
	}

	for (unsigned i = 0; i < CACHE_WAYS; i++) {
		if (superseded[i] && i != target) {
			slot_write(set, i, &empty_image, 0);
			stat_add(st, STAT_ENTRIES, (uint64_t)-1);
		}
	}
	return target;
}

/* Copies `s` (NULL = "") into a field of `size` bytes; false if too long. */
static bool field_set(char *field, size_t size, const char *s)
{
	if (s == NULL)
		s = "";
	size_t len = strnlen(s, size);
	if (len >= size)
		return false;
	memcpy(field, s, len + 1);
	return true;
}

/* ---- public ------------------------------------------------------------ */

struct cache *cache_create(const struct cache_settings *settings,
			   const char **error_r)
{
	struct cache *cache;

	if (settings->size < sizeof(struct set)) {
		*error_r = "cache size is below one set (8 entries)";
		return NULL;
	}
	if (settings->fail_max_per_set < 1 || settings->nouser_max_per_set < 1 ||
	    settings->fail_max_per_set + settings->nouser_max_per_set >= CACHE_WAYS) {
		*error_r = "negative caps must be >= 1 and leave positive slots";
		return NULL;
	}
	if (settings->refresh_percent > 100) {
		*error_r = "refresh_percent must be 0..100";
		return NULL;
	}
	if (sodium_init() < 0) {
		*error_r = "sodium_init failed";
		return NULL;
	}

	cache = aligned_alloc(alignof(struct cache), sizeof(*cache));
	if (cache == NULL) {
		*error_r = "out of memory for the cache";
		return NULL;
	}
	memset(cache, 0, sizeof(*cache));
	for (unsigned s = 0; s < STRIPES; s++)
		for (unsigned i = 0; i < STAT_COUNT; i++)
			atomic_init(&cache->stripes[s].n[i], 0);
	cache->fail_max = settings->fail_max_per_set;
	cache->nouser_max = settings->nouser_max_per_set;
	cache->refresh_percent = settings->refresh_percent;
	cache->nsets = settings->size / sizeof(struct set);

	size_t bytes = cache->nsets * sizeof(struct set);
	size_t align = bytes >= HUGE_PAGE ? HUGE_PAGE : alignof(struct set);
	bytes = (bytes + align - 1) / align * align;
	cache->sets = aligned_alloc(align, bytes);
	if (cache->sets == NULL) {
		*error_r = "out of memory for the cache table";
		goto out_free_cache;
	}
#ifdef MADV_HUGEPAGE
	/* A hint, before the first touch below; without huge pages the
	   table works the same, with more TLB misses.  Failure is fine. */
	if (align == HUGE_PAGE)
		(void)madvise(cache->sets, bytes, MADV_HUGEPAGE);
#endif
	for (uint64_t s = 0; s < cache->nsets; s++) {
		struct set *set = &cache->sets[s];

		for (unsigned i = 0; i < CACHE_WAYS; i++) {
			atomic_init(&set->tag[i], 0);
			atomic_init(&set->slot[i].seq, 0);
			atomic_init(&set->slot[i].refresh_seq, 0);
			atomic_init(&set->slot[i].ref, 0);
			for (unsigned w = 0; w < SLOT_WORDS; w++)
				atomic_init(&set->slot[i].w[w], 0);
		}
		atomic_init(&set->lock, 0);
		set->hand = 0;
	}

	cache->hash_keys = sodium_malloc(2 * crypto_generichash_KEYBYTES);
	if (cache->hash_keys == NULL) {
		*error_r = "sodium_malloc failed for the hashing keys";
		goto out_free_sets;
	}
	if (settings->hash_keys != NULL)
		memcpy(cache->hash_keys, settings->hash_keys, 2 * crypto_generichash_KEYBYTES);
	else
		randombytes_buf(cache->hash_keys, 2 * crypto_generichash_KEYBYTES);
	if (sodium_mprotect_readonly(cache->hash_keys) == -1) {
		*error_r = "cannot make the hashing keys read-only";
		goto out_free_keys;
	}
	return cache;

out_free_keys:
	sodium_free(cache->hash_keys);
out_free_sets:
	free(cache->sets);
out_free_cache:
	free(cache);
	return NULL;
}

void cache_free(struct cache **cachep)
{
	struct cache *cache = *cachep;

	if (cache == NULL)
		return;
	*cachep = NULL;
	/* The table holds verifiers: wipe it. */
	sodium_memzero(cache->sets, cache->nsets * sizeof(struct set));
	free(cache->sets);
	sodium_free(cache->hash_keys);	/* wipes the keys */
	free(cache);
}

static void hash_update_counted(crypto_generichash_state *state,
				const char *s)
{
	size_t len = strlen(s);
	uint8_t le[8];

	for (unsigned i = 0; i < 8; i++)
		le[i] = (uint8_t)((uint64_t)len >> (8 * i));
	crypto_generichash_update(state, le, sizeof(le));
	crypto_generichash_update(state, (const unsigned char *)s, len);
}

void cache_key_with(const uint8_t hash_key[32], const char *scope, const char *user,
		    uint8_t key_r[CACHE_KEY_LEN])
{
	crypto_generichash_state state;

	crypto_generichash_init(&state, hash_key, crypto_generichash_KEYBYTES, CACHE_KEY_LEN);
	hash_update_counted(&state, scope);
	hash_update_counted(&state, user);
	crypto_generichash_final(&state, key_r, CACHE_KEY_LEN);
	sodium_memzero(&state, sizeof(state));
}

void cache_verifier_with(const uint8_t hash_key[32], const uint8_t key[CACHE_KEY_LEN],
			 const char *password, const char *chain,
			 uint8_t verifier_r[CACHE_VERIFIER_LEN])
{
	crypto_generichash_state state;

	crypto_generichash_init(&state, hash_key, crypto_generichash_KEYBYTES,
				CACHE_VERIFIER_LEN);
	crypto_generichash_update(&state, key, CACHE_KEY_LEN);
	crypto_generichash_update(&state, (const unsigned char *)password, strlen(password));
	/* A password holds no NUL: one between it and the chain ends it, so
	   no (password, chain) hashes the input of another, nor that of a
	   password without a chain. */
	if (chain != NULL && chain[0] != '\0') {
		crypto_generichash_update(&state, (const unsigned char *)"", 1);
		crypto_generichash_update(&state, (const unsigned char *)chain, strlen(chain));
	}
	crypto_generichash_final(&state, verifier_r, CACHE_VERIFIER_LEN);
	sodium_memzero(&state, sizeof(state));
}

void cache_key(const struct cache *cache, const char *scope, const char *user,
	       uint8_t key_r[CACHE_KEY_LEN])
{
	cache_key_with(cache->hash_keys, scope, user, key_r);
	/* A lookup of this key usually follows the verifier hash (about half
	   a microsecond): start loading the set's header line now, so that
	   cache_lookup() finds it in the CPU cache.  Only a hint. */
	__builtin_prefetch(set_of(cache, key_r));
}

void cache_verifier(const struct cache *cache,
		    const uint8_t key[CACHE_KEY_LEN], const char *password, const char *chain,
		    uint8_t verifier_r[CACHE_VERIFIER_LEN])
{
	cache_verifier_with(cache->hash_keys + crypto_generichash_KEYBYTES, key, password, chain,
			    verifier_r);
}

enum cache_result cache_lookup(struct cache *cache,
			       const uint8_t key[CACHE_KEY_LEN],
			       const uint8_t verifier[CACHE_VERIFIER_LEN],
			       int64_t now, struct cache_entry *entry_r)
{
	struct stripe *st = my_stripe(cache);
	struct set *set = set_of(cache, key);
	uint32_t tag = tag_of(key);
	uint64_t seq;
	union image copy;

	for (unsigned i = 0; i < CACHE_WAYS; i++) {
		struct slot *slot = &set->slot[i];

		/* Relaxed: hint (see DESIGN). */
		if (atomic_load_explicit(&set->tag[i], memory_order_relaxed) != tag)
			continue;
		if (!slot_read(slot, SLOT_WORDS, st, &copy, &seq) ||
		    !entry_matches(&copy.e, key, verifier))
			continue;
		if (now >= copy.e.fresh_until)
			continue;	/* expired: never a fresh hit */
		slot_touch(slot);
		entry_export(&copy.e, entry_r);
		if (copy.e.kind != CACHE_OK) {
			stat_add(st, STAT_NEGATIVE_HITS, 1);
			return CACHE_HIT;
		}
		stat_add(st, STAT_HITS, 1);
		if (now >= copy.e.refresh_at && slot_claim_refresh(slot, seq)) {
			stat_add(st, STAT_REFRESHES, 1);
			return CACHE_HIT_REFRESH;
		}
		return CACHE_HIT;
	}
	stat_add(st, STAT_MISSES, 1);
	return CACHE_MISS;
}

bool cache_lookup_stale(struct cache *cache,
			const uint8_t key[CACHE_KEY_LEN],
			const uint8_t verifier[CACHE_VERIFIER_LEN],
			int64_t now, struct cache_entry *entry_r)
{
	struct stripe *st = my_stripe(cache);
	struct set *set = set_of(cache, key);
	uint32_t tag = tag_of(key);
	uint64_t seq;
	union image copy;

	for (unsigned i = 0; i < CACHE_WAYS; i++) {
		struct slot *slot = &set->slot[i];

		/* Relaxed: hint (see DESIGN). */
		if (atomic_load_explicit(&set->tag[i], memory_order_relaxed) != tag)
			continue;
		if (!slot_read(slot, SLOT_WORDS, st, &copy, &seq) ||
		    !entry_matches(&copy.e, key, verifier))
			continue;
		if (copy.e.kind != CACHE_OK || now >= copy.e.stale_until)
			continue;	/* a FAIL is never overridden */
		slot_touch(slot);
		entry_export(&copy.e, entry_r);
		if (now >= copy.e.fresh_until)
			stat_add(st, STAT_STALE_SERVED, 1);
		return true;
	}
	return false;
}

enum cache_insert_result cache_insert(struct cache *cache,
				      const uint8_t key[CACHE_KEY_LEN],
				      const uint8_t verifier[CACHE_VERIFIER_LEN],
				      enum cache_kind kind,
				      const struct cache_user *user,
				      int64_t now, uint32_t fresh_ttl_ms,
				      uint32_t stale_ttl_ms)
{
	struct stripe *st = my_stripe(cache);
	struct set *set = set_of(cache, key);
	union image img;
	struct entry *e = &img.e;

	assert(kind == CACHE_OK || kind == CACHE_FAIL || kind == CACHE_NOUSER);
	memset(&img, 0, sizeof(img));
	memcpy(e->key, key, CACHE_KEY_LEN);
	if (kind != CACHE_NOUSER)
		memcpy(e->verifier, verifier, CACHE_VERIFIER_LEN);
	e->kind = (uint8_t)kind;
	e->fresh_until = now + fresh_ttl_ms;
	e->stale_until = e->fresh_until;
	e->refresh_at = INT64_MAX;
	if (kind == CACHE_OK) {
		assert(user != NULL);
		if (!field_set(e->home, sizeof(e->home), user->home) ||
		    !field_set(e->maildrop, sizeof(e->maildrop), user->maildrop) ||
		    !field_set(e->authenticator, sizeof(e->authenticator),
			       user->authenticator)) {
			stat_add(st, STAT_INSERT_TOO_LONG, 1);
			sodium_memzero(&img, sizeof(img));
			return CACHE_INSERT_TOO_LONG;
		}
		e->uid = user->uid;
		e->gid = user->gid;
		e->stale_until += stale_ttl_ms;
		if (cache->refresh_percent > 0)
			e->refresh_at = e->fresh_until -
				(int64_t)fresh_ttl_ms * cache->refresh_percent / 100;
	}

	if (!set_trylock(set, LOCK_TRIES)) {
		stat_add(st, STAT_INSERT_BUSY, 1);
		sodium_memzero(&img, sizeof(img));
		return CACHE_INSERT_BUSY;
	}
	unsigned target = set_choose_slot(cache, set, e, now, st);
	slot_write(set, target, &img, tag_of(key));
	set_unlock(set);

	stat_add(st, STAT_INSERTS, 1);
	sodium_memzero(&img, sizeof(img));
	return CACHE_INSERTED;
}

/* Removes every entry of key; the flushes' sweep, without the epoch. */
static unsigned sweep_key(struct cache *cache, const uint8_t key[CACHE_KEY_LEN])
{
	struct stripe *st = my_stripe(cache);
	struct set *set = set_of(cache, key);
	unsigned removed = 0;
	union image old;

	set_lock_wait(set);
	for (unsigned i = 0; i < CACHE_WAYS; i++) {
		slot_peek(&set->slot[i], &old);
		if (old.e.kind != KIND_EMPTY &&
		    crypto_verify_32(old.e.key, key) == 0) {
			slot_write(set, i, &empty_image, 0);
			removed++;
		}
	}
	set_unlock(set);
	sodium_memzero(&old, sizeof(old));
	stat_add(st, STAT_FLUSHED, removed);
	stat_add(st, STAT_ENTRIES, -(uint64_t)removed);
	return removed;
}

uint64_t cache_epoch(struct cache *cache)
{
	/* Acquire: pairs with F1's release in the flushes (DESIGN, Flush
	   epoch). */
	return atomic_load_explicit(&cache->epoch, memory_order_acquire);
}

/* F1 (DESIGN, Flush epoch): before the sweep.  Release pairs with
   cache_epoch()'s and cache_insert_if_epoch()'s acquires; acquire pairs
   with the release half of cache_insert_if_epoch()'s R. */
static void epoch_advance(struct cache *cache)
{
	atomic_fetch_add_explicit(&cache->epoch, 1, memory_order_acq_rel);
}

unsigned cache_flush_key(struct cache *cache, const uint8_t key[CACHE_KEY_LEN])
{
	epoch_advance(cache);
	return sweep_key(cache, key);
}

uint64_t cache_flush_all(struct cache *cache)
{
	struct stripe *st = my_stripe(cache);
	uint64_t removed = 0;
	union image old;

	epoch_advance(cache);
	for (uint64_t s = 0; s < cache->nsets; s++) {
		struct set *set = &cache->sets[s];

		set_lock_wait(set);
		for (unsigned i = 0; i < CACHE_WAYS; i++) {
			slot_peek(&set->slot[i], &old);
			if (old.e.kind != KIND_EMPTY) {
				slot_write(set, i, &empty_image, 0);
				removed++;
			}
		}
		set_unlock(set);
	}
	sodium_memzero(&old, sizeof(old));
	stat_add(st, STAT_FLUSHED, removed);
	stat_add(st, STAT_ENTRIES, -removed);
	return removed;
}

enum cache_insert_result cache_insert_if_epoch(struct cache *cache,
					       const uint8_t key[CACHE_KEY_LEN],
					       const uint8_t verifier[CACHE_VERIFIER_LEN],
					       enum cache_kind kind,
					       const struct cache_user *user,
					       int64_t now, uint32_t fresh_ttl_ms,
					       uint32_t stale_ttl_ms, uint64_t epoch)
{
	enum cache_insert_result r;

	/* Acquire: pairs with F1's release.  Only an early out: R decides. */
	if (atomic_load_explicit(&cache->epoch, memory_order_acquire) != epoch)
		return CACHE_INSERT_FLUSHED;
	r = cache_insert(cache, key, verifier, kind, user, now, fresh_ttl_ms, stale_ttl_ms);
	/* R: a read-modify-write on purpose (DESIGN, Flush epoch).  Release
	   pairs with F1's acquire (a later flush's sweep sees the entry just
	   stored); acquire pairs with F1's release. */
	if (r == CACHE_INSERTED &&
	    atomic_fetch_add_explicit(&cache->epoch, 0, memory_order_acq_rel) != epoch) {
		sweep_key(cache, key);
		return CACHE_INSERT_FLUSHED;
	}
	return r;
}

void cache_stats_get(struct cache *cache, struct cache_stats *stats_r)
{
	uint64_t n[STAT_COUNT] = { 0 };

	for (unsigned s = 0; s < STRIPES; s++) {
		for (unsigned i = 0; i < STAT_COUNT; i++) {
			/* Relaxed: statistics only. */
			n[i] += atomic_load_explicit(&cache->stripes[s].n[i],
						     memory_order_relaxed);
		}
	}
	stats_r->hits = n[STAT_HITS];
	stats_r->negative_hits = n[STAT_NEGATIVE_HITS];
	stats_r->misses = n[STAT_MISSES];
	stats_r->stale_served = n[STAT_STALE_SERVED];
	stats_r->refreshes = n[STAT_REFRESHES];
	stats_r->inserts = n[STAT_INSERTS];
	stats_r->evict_expired = n[STAT_EVICT_EXPIRED];
	stats_r->evict_negative = n[STAT_EVICT_NEGATIVE];
	stats_r->evict_clock = n[STAT_EVICT_CLOCK];
	stats_r->insert_busy = n[STAT_INSERT_BUSY];
	stats_r->insert_too_long = n[STAT_INSERT_TOO_LONG];
	stats_r->flushed = n[STAT_FLUSHED];
	stats_r->read_retries = n[STAT_READ_RETRIES];
	/* Increments and decrements land in different stripes: the sum
	   modulo 2^64 is right, a single stripe is not. */
	stats_r->entries = n[STAT_ENTRIES];
}

/* Calls fn for each occupied slot's validated head.  Slots busy for
   READ_TRIES attempts are skipped. */
static void cache_walk(struct cache *cache,
		       void (*fn)(const struct entry *e, void *context),
		       void *context)
{
	struct stripe *st = my_stripe(cache);
	union image copy;
	uint64_t seq;

	for (uint64_t s = 0; s < cache->nsets; s++) {
		for (unsigned i = 0; i < CACHE_WAYS; i++) {
			struct slot *slot = &cache->sets[s].slot[i];

			if (slot_read(slot, HEAD_WORDS, st, &copy, &seq) &&
			    copy.e.kind != KIND_EMPTY)
				fn(&copy.e, context);
		}
	}
	sodium_memzero(&copy, sizeof(copy));
}

struct summarize_context {
	struct cache_summary *summary;
	int64_t now;
};

static void summarize_one(const struct entry *e, void *context)
{
	struct summarize_context *ctx = context;
	struct cache_summary *sum = ctx->summary;

	if (ctx->now >= e->stale_until)
		sum->expired++;
	else if (e->kind != CACHE_OK)
		*(e->kind == CACHE_FAIL ? &sum->fail : &sum->nouser) += 1;
	else if (ctx->now < e->fresh_until)
		sum->ok_fresh++;
	else
		sum->ok_stale++;
}

void cache_summarize(struct cache *cache, int64_t now,
		     struct cache_summary *summary_r)
{
	struct summarize_context ctx = { .summary = summary_r, .now = now };

	memset(summary_r, 0, sizeof(*summary_r));
	summary_r->capacity = cache->nsets * CACHE_WAYS;
	cache_walk(cache, summarize_one, &ctx);
	summary_r->empty = summary_r->capacity - summary_r->ok_fresh -
		summary_r->ok_stale - summary_r->fail - summary_r->nouser -
		summary_r->expired;
	cache_stats_get(cache, &summary_r->stats);
}

struct iterate_context {
	void (*fn)(const struct cache_entry_info *info, void *context);
	void *context;
};

static void iterate_one(const struct entry *e, void *context)
{
	const struct iterate_context *ctx = context;
	struct cache_entry_info info = {
		.kind = e->kind,
		.fresh_until = e->fresh_until,
		.stale_until = e->stale_until,
	};

	ctx->fn(&info, ctx->context);
}

void cache_iterate(struct cache *cache,
		   void (*fn)(const struct cache_entry_info *info, void *context),
		   void *context)
{
	struct iterate_context ctx = { .fn = fn, .context = context };

	cache_walk(cache, iterate_one, &ctx);
}
