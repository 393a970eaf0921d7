/*
 * seal.h - the shared (L2) cache's keys, names and sealed entries.
 *
 * Pure functions over bytes: no network, no clock, no global state; used
 * by authd's L2 tier (authd/l2.c) on its worker threads and by the loop.
 * Everything an authd host writes to memcached goes through here, so this
 * file says what a reader of memcached can learn (nothing but sizes, times
 * and counts; docs/cluster.md, "What memcached sees"):
 *
 *   cluster key K (32 random bytes, [cache] cluster-key-file)
 *     ├─ name key      = KDF(K, 1)  keyed BLAKE2b of (scope, user): the
 *     │                  user key, shared by L1 and L2 so that a flush
 *     │                  record names the same entry on every host
 *     ├─ verifier key  = KDF(K, 2)  keyed BLAKE2b of (user key, password)
 *     └─ seal key      = KDF(K, 3)  XChaCha20-Poly1305 of an entry
 *
 * memcached names (all printable, no spaces, < 250 bytes):
 *   "authd:a:" hex(user key)   a sealed entry (the user's last good login)
 *   "authd:g:" hex(user key)   the user's generation (16 hex digits)
 *   "authd:e"                  the server's epoch (16 hex digits)
 *   "authd:s", "authd:f:N"     the server's flush log: a counter and its
 *                              records (hex user keys, and a sealed kick),
 *                              see authd/l2.c
 *
 * A sealed entry: version byte (1) | 24-byte random nonce | ciphertext.
 * The associated data is the version byte and the entry's memcached name,
 * so an entry copied under another user's name, or from another format,
 * does not open.  Inside: kind, verifier, fresh and stale times (Unix ms,
 * checked after opening), generation, epoch, uid, gid and the userdb
 * strings (length-prefixed, bounded by cache.h's _MAX).
 */
#ifndef CACHE_SEAL_H
#define CACHE_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"

#define SEAL_KEY_LEN 32			/* a cluster key */
#define SEAL_MAX_KEYS 2			/* current and previous */
#define SEAL_VERSION 1
#define SEAL_NONCE_LEN 24
#define SEAL_TAG_LEN 16
/* Largest plaintext: fixed part + three length-prefixed strings. */
#define SEAL_PLAIN_MAX (73 + 3 + CACHE_HOME_MAX + CACHE_MAILDROP_MAX + CACHE_AUTHENTICATOR_MAX)
/* Largest sealed value; anything longer from memcached is refused unread. */
#define SEAL_VALUE_MAX (1 + SEAL_NONCE_LEN + SEAL_PLAIN_MAX + SEAL_TAG_LEN)
#define SEAL_PREFIX "authd:"
/* "authd:a:" + 64 hex digits + NUL */
#define SEAL_NAME_SIZE (sizeof(SEAL_PREFIX) + 2 + 2 * CACHE_KEY_LEN)

/* The keys derived from one cluster key.  Kept in sodium_malloc'd memory
 * by the caller; wiped with it. */
struct seal_key {
	uint8_t name[32];	/* hashing key of cache_key(): (scope, user) */
	uint8_t verifier[32];	/* hashing key of cache_verifier() */
	uint8_t seal[32];	/* XChaCha20-Poly1305 key */
};

struct seal_keyset {
	unsigned n;		/* 1, or 2 while a key is being rotated */
	struct seal_key k[SEAL_MAX_KEYS];	/* [0] current, [1] previous */
};

/* An entry as it travels through memcached.  Times are Unix milliseconds:
 * hosts share them, so they cannot be any one host's monotonic clock. */
struct seal_entry {
	uint8_t verifier[CACHE_VERIFIER_LEN];
	int64_t fresh_until, stale_until;
	uint64_t generation, epoch;
	uint32_t uid, gid;
	char home[CACHE_HOME_MAX + 1];
	char maildrop[CACHE_MAILDROP_MAX + 1];
	char authenticator[CACHE_AUTHENTICATOR_MAX + 1];
};

enum seal_open_result {
	SEAL_OPENED = 0,
	SEAL_BAD_VERSION,	/* too short, too long, or an unknown version */
	SEAL_BAD_SEAL,		/* does not open under any key: forged, flipped,
				   another cluster's, or under another name */
	SEAL_BAD_CONTENT,	/* opened, but its fields are out of bounds */
};

/* Parses a cluster key file's contents: exactly 32 bytes (one key) or 64
 * (the current key, then the previous one).  Fills *ks with the derived
 * keys.  Returns 0, or -1 with a static message in *error_r. */
int seal_keyset_from_bytes(const uint8_t *buf, size_t len, struct seal_keyset *ks,
			   const char **error_r);

/* The user key of (scope, user) under key k: the same construction as
 * cache_key() (cache.h), so L1 entries and L2 names agree. */
void seal_user_key(const struct seal_key *k, const char *scope, const char *user,
		   uint8_t key_r[CACHE_KEY_LEN]);
/* The verifier of password (for chain) under key k, as cache_verifier(). */
void seal_verifier(const struct seal_key *k, const uint8_t key[CACHE_KEY_LEN],
		   const char *password, const char *chain,
		   uint8_t verifier_r[CACHE_VERIFIER_LEN]);

/* Writes "authd:<kind>:" hex(key) into name (SEAL_NAME_SIZE bytes); kind
 * is 'a' (entry) or 'g' (generation). */
void seal_name(char kind, const uint8_t key[CACHE_KEY_LEN], char name[SEAL_NAME_SIZE]);

/* Seals e under k for the memcached name `name`, with a fresh random
 * nonce.  Writes the value into out (SEAL_VALUE_MAX bytes) and its length
 * into *len_r.  Returns 0, or -1 if a string of e is longer than its _MAX
 * (nothing written). */
int seal_entry_seal(const struct seal_key *k, const char *name, const struct seal_entry *e,
		    uint8_t *out, size_t *len_r);

/* Opens a value read from memcached under the name it was read from, with
 * key k.  Fills *e on SEAL_OPENED only; *e is wiped otherwise. */
enum seal_open_result seal_entry_open(const struct seal_key *k, const char *name,
				      const uint8_t *value, size_t len, struct seal_entry *e);

/* A kick (authctl kick): which user's sessions every host ends, sealed
 * so that memcached learns nothing of the name.  Value, in hex: version
 * byte | nonce | ciphertext of id(8) issued(8, Unix ms) user, with the
 * associated data version byte || "authd:kick".  The id lets a host apply
 * each kick once although every server's log carries it. */
#define SEAL_KICK_USER_MAX 320
#define SEAL_KICK_HEX_MAX (2 * (1 + SEAL_NONCE_LEN + 16 + SEAL_KICK_USER_MAX + SEAL_TAG_LEN))

struct seal_kick {
	uint64_t id;
	int64_t issued;		/* Unix ms */
	char user[SEAL_KICK_USER_MAX + 1];
};

/* Seals kick under k as hex into out (SEAL_KICK_HEX_MAX + 1 bytes, NUL
 * terminated).  Returns the hex length, or -1 if the user name is empty or
 * longer than SEAL_KICK_USER_MAX. */
int seal_kick_seal(const struct seal_key *k, const struct seal_kick *kick, char *out);
/* Opens len hex digits read from memcached with key k.  Fills *kick on
 * SEAL_OPENED only (a user name without control bytes, as authd's
 * normalisation lets through). */
enum seal_open_result seal_kick_open(const struct seal_key *k, const char *hex, size_t len,
				     struct seal_kick *kick);

/* Parses exactly 16 lower- or upper-case hex digits (a generation or an
 * epoch as stored) into *v.  Returns 0, or -1 for anything else. */
int seal_parse_u64hex(const char *s, size_t len, uint64_t *v);
/* Parses exactly 2 * CACHE_KEY_LEN hex digits into key.  Returns 0 or -1. */
int seal_parse_keyhex(const char *s, size_t len, uint8_t key[CACHE_KEY_LEN]);

#endif
