/*
 * cache.h - authd's in-memory credential cache (lock-free lookups).
 *
 * A fixed-size table of authentication results, keyed by a keyed hash of
 * (scope, user) and a keyed hash of the password.  No name and no password
 * is stored.  Lookups never take a lock and never block on a writer (a
 * slot being rewritten is retried a few times, then counts as a miss); the
 * design and its correctness argument are at the top of cache/cache.c.
 *
 * Time: every call that needs the time takes `now`, in milliseconds of a
 * monotonic clock chosen by the caller (tests pass a fake one).  The cache
 * never reads a clock itself.
 *
 * Threads: after cache_create() returns, every function except cache_free()
 * may be called from any number of threads at once.  cache_free() must be
 * called alone, after every other call has returned.
 *
 * Policy (which results to cache and for how long) belongs to the caller;
 * this module makes each policy possible:
 *   - cache_lookup(): fresh hits, with a one-time refresh-ahead signal;
 *   - cache_lookup_stale(): a matching positive entry past its fresh time,
 *     for when the backend is unreachable (never a FAIL or NOUSER);
 *   - cache_insert(): OK / FAIL results per (key, verifier), NOUSER per key;
 *   - cache_flush_key() / cache_flush_all(); cache_summarize() and
 *     cache_iterate() for `authctl cache`; cache_stats_get() for counters.
 */
#ifndef CACHE_CACHE_H
#define CACHE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_KEY_LEN 32		/* BLAKE2b-256 of (scope, user) */
#define CACHE_VERIFIER_LEN 32		/* BLAKE2b-256 of (key, password) */
#define CACHE_WAYS 8			/* slots per set: a key lives in one set */

/* Longest userdb strings an entry holds, in bytes without the NUL.  An
 * entry is one 384-byte slot (6 cache lines); these three fill what is left
 * after key, verifier and times.  119 bytes holds ordinary home and maildrop
 * paths ("/home/alice", "/var/vmail/example.org/alice/Maildir"); an
 * authenticator name is a passdb name ("pam", "ldap", "checkpassword").
 * Longer values are refused and counted (insert_too_long), never truncated:
 * such users are simply not cached. */
#define CACHE_HOME_MAX 119
#define CACHE_MAILDROP_MAX 119
#define CACHE_AUTHENTICATOR_MAX 23

/* Bytes of table memory per cached entry (a slot plus its share of the set
 * header); the table holds size / CACHE_ENTRY_BYTES entries, rounded down to
 * whole sets. */
#define CACHE_ENTRY_BYTES 392

struct cache;

/* What the backend said. */
enum cache_kind {
	CACHE_OK = 1,		/* right password; the userdb fields are valid */
	CACHE_FAIL = 2,		/* wrong password for a known user */
	CACHE_NOUSER = 3,	/* unknown user, whatever the password */
};

enum cache_result {
	CACHE_MISS = 0,		/* nothing fresh: ask the backend */
	CACHE_HIT,		/* fresh entry copied to entry_r */
	CACHE_HIT_REFRESH,	/* fresh CACHE_OK entry in its refresh window:
				   use it, and revalidate in the background */
};

enum cache_insert_result {
	CACHE_INSERTED = 0,
	CACHE_INSERT_BUSY,	/* another writer held the set: not cached */
	CACHE_INSERT_TOO_LONG,	/* a userdb string exceeds its _MAX: not cached */
	CACHE_INSERT_FLUSHED,	/* a flush came after the epoch given: not kept */
};

struct cache_settings {
	/* Byte budget for the table; at least CACHE_WAYS * CACHE_ENTRY_BYTES.
	   All of it is allocated (and touched) by cache_create(). */
	size_t size;
	/* Most live CACHE_FAIL entries in one set of CACHE_WAYS slots, and
	   most live CACHE_NOUSER entries; each 1..CACHE_WAYS-1 and together
	   below CACHE_WAYS, so a flood of wrong passwords or random names
	   can take at most that share of the table from positive entries. */
	unsigned fail_max_per_set;
	unsigned nouser_max_per_set;
	/* A fresh CACHE_OK hit in the last refresh_percent % of its fresh
	   time returns CACHE_HIT_REFRESH (once per entry); 0..100, 0 = never. */
	unsigned refresh_percent;
	/* NULL: a fresh random hashing key, so keys and verifiers mean
	   something only inside this process.  Else 64 bytes, the key of
	   cache_key() then that of cache_verifier(), copied: hosts that share
	   an L2 (cache/seal.h) derive them from their cluster key, so that a
	   user's key is the same on every host. */
	const uint8_t *hash_keys;
};

/* Userdb fields of a CACHE_OK result, as given to cache_insert().  NULL
   strings are stored as "". */
struct cache_user {
	uint32_t uid, gid;
	const char *home;
	const char *maildrop;
	const char *authenticator;
};

/* A cached entry as returned by a lookup; a copy owned by the caller. */
struct cache_entry {
	enum cache_kind kind;
	int64_t fresh_until;	/* ms, caller's clock: fresh while now < this */
	int64_t stale_until;	/* usable by cache_lookup_stale while now < this */
	uint32_t uid, gid;	/* CACHE_OK only; 0 otherwise */
	char home[CACHE_HOME_MAX + 1];	/* CACHE_OK only; "" otherwise */
	char maildrop[CACHE_MAILDROP_MAX + 1];
	char authenticator[CACHE_AUTHENTICATOR_MAX + 1];
};

/* Counters since cache_create(), summed over threads by cache_stats_get().
   Each is exact, but a snapshot taken while other threads run is not one
   instant: counters may be a few operations apart. */
struct cache_stats {
	uint64_t hits;			/* fresh CACHE_OK hits */
	uint64_t negative_hits;		/* fresh CACHE_FAIL / CACHE_NOUSER hits */
	uint64_t misses;		/* cache_lookup() that found nothing fresh */
	uint64_t stale_served;		/* cache_lookup_stale() past fresh time */
	uint64_t refreshes;		/* CACHE_HIT_REFRESH returned */
	uint64_t inserts;		/* entries written (new or replaced) */
	uint64_t evict_expired;		/* inserts that reused an expired slot */
	uint64_t evict_negative;	/* ... that pushed out a live negative */
	uint64_t evict_clock;		/* ... that pushed out a live positive */
	uint64_t insert_busy;		/* CACHE_INSERT_BUSY */
	uint64_t insert_too_long;	/* CACHE_INSERT_TOO_LONG */
	uint64_t flushed;		/* entries removed by the flush calls */
	uint64_t read_retries;		/* slot copies repeated for a writer */
	uint64_t entries;		/* occupied slots now (incl. expired) */
};

/* Contents by kind at one moment (approximate under concurrent writes). */
struct cache_summary {
	uint64_t capacity;		/* slots */
	uint64_t ok_fresh, ok_stale;	/* ok_stale: past fresh, before stale */
	uint64_t fail, nouser;		/* fresh negatives */
	uint64_t expired;		/* occupied but unusable */
	uint64_t empty;
	struct cache_stats stats;
};

/* What cache_iterate() shows of an entry: no key, no name. */
struct cache_entry_info {
	enum cache_kind kind;
	int64_t fresh_until, stale_until;
};

/* Creates a cache with the given settings and hashing keys (random unless
   settings->hash_keys gives them).  Calls
   sodium_init().  Returns NULL and a static message in *error_r if the
   settings are invalid or memory (or locked memory for the key) is short.
   The caller owns the result and frees it with cache_free(). */
struct cache *cache_create(const struct cache_settings *settings,
			   const char **error_r);

/* Wipes and frees the cache and sets *cachep to NULL; NULL is ignored.
   No other call on this cache may be running or follow. */
void cache_free(struct cache **cachep);

/* Computes the cache key of `user` within `scope` (the passdb chain or
   service name): keyed BLAKE2b-256 of
   le64(strlen(scope)) || scope || le64(strlen(user)) || user.
   `user` must already be normalised by the caller (case, realm).  Also
   starts loading the key's set into the CPU cache, for the lookup that
   usually follows cache_verifier(). */
void cache_key(const struct cache *cache, const char *scope, const char *user,
	       uint8_t key_r[CACHE_KEY_LEN]);

/* cache_key() and cache_verifier() with a given 32-byte hashing key
   instead of the cache's: what the shared L2 (cache/seal.c) computes for
   the previous cluster key, with the construction kept in one place. */
void cache_key_with(const uint8_t hash_key[32], const char *scope, const char *user,
		    uint8_t key_r[CACHE_KEY_LEN]);
void cache_verifier_with(const uint8_t hash_key[32], const uint8_t key[CACHE_KEY_LEN],
			 const char *password, const char *chain,
			 uint8_t verifier_r[CACHE_VERIFIER_LEN]);

/* Computes the password verifier: keyed BLAKE2b-256 (with a second key) of
   key || password, or, when `chain` is neither NULL nor "", of
   key || password || 0x00 || chain: the verifier of a password checked by
   a part of the chain only (authd: a service's own chain), which matches
   no entry the whole chain (or another part) made.  The module keeps no
   copy of `password`; the caller wipes it. */
void cache_verifier(const struct cache *cache,
		    const uint8_t key[CACHE_KEY_LEN], const char *password, const char *chain,
		    uint8_t verifier_r[CACHE_VERIFIER_LEN]);

/* Looks up the entry for (key, verifier): a CACHE_OK or CACHE_FAIL entry
   with this verifier, or a CACHE_NOUSER entry for this key.  Returns
   CACHE_HIT or CACHE_HIT_REFRESH with a copy in *entry_r if that entry is
   fresh (now < fresh_until), else CACHE_MISS (*entry_r undefined).
   CACHE_HIT_REFRESH goes to the first lookup that hits a CACHE_OK entry in
   the last refresh_percent % of its fresh time, and to no other lookup of
   that entry (a new insert starts a new entry).  Never takes a lock or
   blocks; may miss an entry that a writer is replacing at that moment. */
enum cache_result cache_lookup(struct cache *cache,
			       const uint8_t key[CACHE_KEY_LEN],
			       const uint8_t verifier[CACHE_VERIFIER_LEN],
			       int64_t now, struct cache_entry *entry_r);

/* For when the backend failed with a temporary error: returns true and a
   copy in *entry_r if a CACHE_OK entry with this verifier is still usable
   (now < stale_until), whether or not it is past fresh; counts it as
   stale_served if it is.  Never returns CACHE_FAIL or CACHE_NOUSER entries,
   and counts no hit or miss. */
bool cache_lookup_stale(struct cache *cache,
			const uint8_t key[CACHE_KEY_LEN],
			const uint8_t verifier[CACHE_VERIFIER_LEN],
			int64_t now, struct cache_entry *entry_r);

/* Stores a result.  kind CACHE_OK needs `user` (its strings are copied);
   CACHE_FAIL and CACHE_NOUSER ignore it.  `verifier` is ignored (may be
   NULL) for CACHE_NOUSER.  The entry is fresh for fresh_ttl_ms from now and,
   for CACHE_OK only, usable by cache_lookup_stale() for stale_ttl_ms more.
   An entry for the same (key, verifier) is replaced in place.  Results for
   the same key that contradict this one are removed: a NOUSER removes every
   entry of the key, an OK or FAIL removes the key's NOUSER.  Otherwise the
   entry takes, in its set, an empty slot, else an expired one, else the
   live negative closest to expiry, else a positive chosen by CLOCK; a FAIL
   or NOUSER at its per-set cap replaces its own kind's entry closest to
   expiry instead.  Returns CACHE_INSERTED, or the reason nothing was
   stored.  Never blocks: if another writer holds the set for longer than
   a short spin, gives up with CACHE_INSERT_BUSY. */
enum cache_insert_result cache_insert(struct cache *cache,
				      const uint8_t key[CACHE_KEY_LEN],
				      const uint8_t verifier[CACHE_VERIFIER_LEN],
				      enum cache_kind kind,
				      const struct cache_user *user,
				      int64_t now, uint32_t fresh_ttl_ms,
				      uint32_t stale_ttl_ms);

/* The number of flushes so far: take it before asking the backend, give
   it to cache_insert_if_epoch() with the answer.  Any thread. */
uint64_t cache_epoch(struct cache *cache);

/* cache_insert(), unless cache_flush_key() or cache_flush_all() ran (or
   runs concurrently) since `epoch` was read from cache_epoch(): then
   nothing of the answer stays (the key's entries may be removed) and the
   result is CACHE_INSERT_FLUSHED.  So an answer from before a flush never
   outlives it (cache.c's DESIGN, Flush epoch). */
enum cache_insert_result cache_insert_if_epoch(struct cache *cache,
					       const uint8_t key[CACHE_KEY_LEN],
					       const uint8_t verifier[CACHE_VERIFIER_LEN],
					       enum cache_kind kind,
					       const struct cache_user *user,
					       int64_t now, uint32_t fresh_ttl_ms,
					       uint32_t stale_ttl_ms, uint64_t epoch);

/* Removes every entry of `key` (positive and negative, all verifiers), and
   counts the flush epoch up first.  Waits for concurrent writers of the
   key's set.  Returns how many entries were removed.  A plain
   cache_insert() racing with the flush may land after it;
   cache_insert_if_epoch() with an epoch from before it does not. */
unsigned cache_flush_key(struct cache *cache, const uint8_t key[CACHE_KEY_LEN]);

/* Removes every entry, set by set, counting the flush epoch up first (not
   one atomic step: plain inserts running at the same time may survive;
   cache_insert_if_epoch() ones from before it do not).  Returns how many
   entries were removed. */
uint64_t cache_flush_all(struct cache *cache);

/* Fills *stats_r with the counters summed over all threads. */
void cache_stats_get(struct cache *cache, struct cache_stats *stats_r);

/* Counts the entries by kind as of `now`, and fills in the counters. */
void cache_summarize(struct cache *cache, int64_t now,
		     struct cache_summary *summary_r);

/* Calls fn(info, context) for every occupied slot, expired ones included,
   without holding any lock (fn may do anything but free the cache).
   Entries written during the walk may or may not be seen. */
void cache_iterate(struct cache *cache,
		   void (*fn)(const struct cache_entry_info *info, void *context),
		   void *context);

#endif
