/*
 * seal.c - the shared (L2) cache's keys, names and sealed entries (see
 * seal.h for the formats).  Runs in authd (unprivileged), on the loop
 * thread and on the L2 workers; no state of its own.
 */
#include <string.h>

#include <sodium.h>

#include "cache/seal.h"

/* crypto_kdf context: 8 bytes, fixed for this format. */
static const char kdf_context[crypto_kdf_CONTEXTBYTES] = { 'a', 'u', 't', 'h', 'd', 'L', '2', 'c' };

enum { KDF_NAME = 1, KDF_VERIFIER = 2, KDF_SEAL = 3 };

/* Fixed part of the plaintext: kind(1) verifier(32) fresh(8) stale(8)
 * generation(8) epoch(8) uid(4) gid(4). */
#define PLAIN_FIXED 73
#define KIND_OK 1

static void derive(const uint8_t master[SEAL_KEY_LEN], struct seal_key *k)
{
	crypto_kdf_derive_from_key(k->name, sizeof(k->name), KDF_NAME, kdf_context, master);
	crypto_kdf_derive_from_key(k->verifier, sizeof(k->verifier), KDF_VERIFIER, kdf_context,
				   master);
	crypto_kdf_derive_from_key(k->seal, sizeof(k->seal), KDF_SEAL, kdf_context, master);
}

int seal_keyset_from_bytes(const uint8_t *buf, size_t len, struct seal_keyset *ks,
			   const char **error_r)
{
	static const uint8_t zero[SEAL_KEY_LEN];

	memset(ks, 0, sizeof(*ks));
	if (len != SEAL_KEY_LEN && len != 2 * SEAL_KEY_LEN) {
		*error_r = "must hold exactly 32 bytes (a key) or 64 (the current key, then the "
			   "previous one)";
		return -1;
	}
	ks->n = (unsigned)(len / SEAL_KEY_LEN);
	for (unsigned i = 0; i < ks->n; i++) {
		if (sodium_memcmp(buf + i * SEAL_KEY_LEN, zero, SEAL_KEY_LEN) == 0) {
			*error_r = "holds a key of zero bytes (not made with a random source)";
			sodium_memzero(ks, sizeof(*ks));
			return -1;
		}
		derive(buf + i * SEAL_KEY_LEN, &ks->k[i]);
	}
	if (ks->n == 2 && sodium_memcmp(buf, buf + SEAL_KEY_LEN, SEAL_KEY_LEN) == 0)
		ks->n = 1;	/* the same key twice: nothing is being rotated */
	return 0;
}

void seal_user_key(const struct seal_key *k, const char *scope, const char *user,
		   uint8_t key_r[CACHE_KEY_LEN])
{
	cache_key_with(k->name, scope, user, key_r);
}

void seal_verifier(const struct seal_key *k, const uint8_t key[CACHE_KEY_LEN],
		   const char *password, const char *chain,
		   uint8_t verifier_r[CACHE_VERIFIER_LEN])
{
	cache_verifier_with(k->verifier, key, password, chain, verifier_r);
}

void seal_name(char kind, const uint8_t key[CACHE_KEY_LEN], char name[SEAL_NAME_SIZE])
{
	size_t n = strlen(SEAL_PREFIX);

	memcpy(name, SEAL_PREFIX, n);
	name[n++] = kind;
	name[n++] = ':';
	sodium_bin2hex(name + n, SEAL_NAME_SIZE - n, key, CACHE_KEY_LEN);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

/* Appends a length-prefixed string; -1 if it is longer than max. */
static int put_str(uint8_t *p, size_t *pos, const char *s, size_t max)
{
	size_t len = strnlen(s, max + 1);

	if (len > max)
		return -1;
	p[(*pos)++] = (uint8_t)len;
	memcpy(p + *pos, s, len);
	*pos += len;
	return 0;
}

/* Reads a length-prefixed string into out (max + 1 bytes); -1 if it runs
 * past the end, is longer than max or holds a NUL. */
static int get_str(const uint8_t *p, size_t len, size_t *pos, char *out, size_t max)
{
	size_t n;

	if (*pos >= len)
		return -1;
	n = p[(*pos)++];
	if (n > max || n > len - *pos || memchr(p + *pos, '\0', n) != NULL)
		return -1;
	memcpy(out, p + *pos, n);
	out[n] = '\0';
	*pos += n;
	return 0;
}

/* Associated data: version byte || name. */
static size_t make_ad(const char *name, uint8_t *ad, size_t size)
{
	size_t n = strnlen(name, size - 1);

	ad[0] = SEAL_VERSION;
	memcpy(ad + 1, name, n);
	return n + 1;
}

int seal_entry_seal(const struct seal_key *k, const char *name, const struct seal_entry *e,
		    uint8_t *out, size_t *len_r)
{
	uint8_t plain[SEAL_PLAIN_MAX], ad[256];
	size_t pos = 0, adlen = make_ad(name, ad, sizeof(ad));
	unsigned long long clen;

	plain[pos++] = KIND_OK;
	memcpy(plain + pos, e->verifier, CACHE_VERIFIER_LEN);
	pos += CACHE_VERIFIER_LEN;
	put64(plain + pos, (uint64_t)e->fresh_until);
	put64(plain + pos + 8, (uint64_t)e->stale_until);
	put64(plain + pos + 16, e->generation);
	put64(plain + pos + 24, e->epoch);
	put32(plain + pos + 32, e->uid);
	put32(plain + pos + 36, e->gid);
	pos += 40;
	if (put_str(plain, &pos, e->home, CACHE_HOME_MAX) == -1 ||
	    put_str(plain, &pos, e->maildrop, CACHE_MAILDROP_MAX) == -1 ||
	    put_str(plain, &pos, e->authenticator, CACHE_AUTHENTICATOR_MAX) == -1) {
		sodium_memzero(plain, sizeof(plain));
		return -1;
	}
	out[0] = SEAL_VERSION;
	randombytes_buf(out + 1, SEAL_NONCE_LEN);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + SEAL_NONCE_LEN, &clen, plain, pos,
						   ad, adlen, NULL, out + 1, k->seal);
	sodium_memzero(plain, sizeof(plain));
	*len_r = 1 + SEAL_NONCE_LEN + (size_t)clen;
	return 0;
}

enum seal_open_result seal_entry_open(const struct seal_key *k, const char *name,
				      const uint8_t *value, size_t len, struct seal_entry *e)
{
	uint8_t plain[SEAL_PLAIN_MAX], ad[256];
	size_t adlen = make_ad(name, ad, sizeof(ad)), pos;
	unsigned long long plen;
	enum seal_open_result r = SEAL_BAD_CONTENT;

	memset(e, 0, sizeof(*e));
	if (len < 1 + SEAL_NONCE_LEN + SEAL_TAG_LEN + PLAIN_FIXED + 3 || len > SEAL_VALUE_MAX ||
	    value[0] != SEAL_VERSION)
		return SEAL_BAD_VERSION;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL,
						       value + 1 + SEAL_NONCE_LEN,
						       len - 1 - SEAL_NONCE_LEN, ad, adlen,
						       value + 1, k->seal) != 0)
		return SEAL_BAD_SEAL;
	/* Sealed by a holder of the key, and still checked as if hostile: a
	 * bug in another version of authd must not become ours. */
	if (plen < PLAIN_FIXED + 3 || plain[0] != KIND_OK)
		goto out;
	pos = 1;
	memcpy(e->verifier, plain + pos, CACHE_VERIFIER_LEN);
	pos += CACHE_VERIFIER_LEN;
	e->fresh_until = (int64_t)get64(plain + pos);
	e->stale_until = (int64_t)get64(plain + pos + 8);
	e->generation = get64(plain + pos + 16);
	e->epoch = get64(plain + pos + 24);
	e->uid = get32(plain + pos + 32);
	e->gid = get32(plain + pos + 36);
	pos += 40;
	if (get_str(plain, (size_t)plen, &pos, e->home, CACHE_HOME_MAX) == -1 ||
	    get_str(plain, (size_t)plen, &pos, e->maildrop, CACHE_MAILDROP_MAX) == -1 ||
	    get_str(plain, (size_t)plen, &pos, e->authenticator, CACHE_AUTHENTICATOR_MAX) == -1 ||
	    pos != plen || e->fresh_until <= 0 || e->stale_until < e->fresh_until)
		goto out;
	r = SEAL_OPENED;
out:
	sodium_memzero(plain, sizeof(plain));
	if (r != SEAL_OPENED)
		sodium_memzero(e, sizeof(*e));
	return r;
}

/* Exactly 2 * n hex digits into out: libsodium's decoder, which refuses
 * any other character when no ignore set and no end pointer are given. */
static int hex_exact(const char *s, size_t len, uint8_t *out, size_t n)
{
	size_t got;

	if (len != 2 * n || sodium_hex2bin(out, n, s, len, NULL, &got, NULL) != 0 || got != n)
		return -1;
	return 0;
}

int seal_parse_u64hex(const char *s, size_t len, uint64_t *v)
{
	uint8_t b[8];

	if (hex_exact(s, len, b, sizeof(b)) == -1)
		return -1;
	*v = 0;
	for (size_t i = 0; i < sizeof(b); i++)
		*v = *v << 8 | b[i];
	return 0;
}

int seal_parse_keyhex(const char *s, size_t len, uint8_t key[CACHE_KEY_LEN])
{
	return hex_exact(s, len, key, CACHE_KEY_LEN);
}

/* ---- kicks ------------------------------------------------------------- */

#define KICK_AD "authd:kick"
#define KICK_FIXED 16		/* id(8) issued(8) */
#define KICK_SEALED_MAX (1 + SEAL_NONCE_LEN + KICK_FIXED + SEAL_KICK_USER_MAX + SEAL_TAG_LEN)

int seal_kick_seal(const struct seal_key *k, const struct seal_kick *kick, char *out)
{
	uint8_t plain[KICK_FIXED + SEAL_KICK_USER_MAX], sealed[KICK_SEALED_MAX], ad[64];
	size_t ulen = strnlen(kick->user, sizeof(kick->user)), adlen = make_ad(KICK_AD, ad, sizeof(ad));
	unsigned long long clen;
	size_t n;

	if (ulen == 0 || ulen > SEAL_KICK_USER_MAX)
		return -1;
	put64(plain, kick->id);
	put64(plain + 8, (uint64_t)kick->issued);
	memcpy(plain + KICK_FIXED, kick->user, ulen);
	sealed[0] = SEAL_VERSION;
	randombytes_buf(sealed + 1, SEAL_NONCE_LEN);
	crypto_aead_xchacha20poly1305_ietf_encrypt(sealed + 1 + SEAL_NONCE_LEN, &clen, plain,
						   KICK_FIXED + ulen, ad, adlen, NULL, sealed + 1,
						   k->seal);
	sodium_memzero(plain, sizeof(plain));
	n = 1 + SEAL_NONCE_LEN + (size_t)clen;
	sodium_bin2hex(out, SEAL_KICK_HEX_MAX + 1, sealed, n);
	return (int)(2 * n);
}

enum seal_open_result seal_kick_open(const struct seal_key *k, const char *hex, size_t len,
				     struct seal_kick *kick)
{
	uint8_t sealed[KICK_SEALED_MAX], plain[KICK_FIXED + SEAL_KICK_USER_MAX], ad[64];
	size_t n = len / 2, adlen = make_ad(KICK_AD, ad, sizeof(ad)), ulen;
	unsigned long long plen;
	enum seal_open_result r = SEAL_BAD_CONTENT;

	memset(kick, 0, sizeof(*kick));
	if (len % 2 != 0 || n < 1 + SEAL_NONCE_LEN + KICK_FIXED + 1 + SEAL_TAG_LEN ||
	    n > sizeof(sealed) || hex_exact(hex, len, sealed, n) == -1 || sealed[0] != SEAL_VERSION)
		return SEAL_BAD_VERSION;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, sealed + 1 + SEAL_NONCE_LEN,
						       n - 1 - SEAL_NONCE_LEN, ad, adlen, sealed + 1,
						       k->seal) != 0)
		return SEAL_BAD_SEAL;
	ulen = (size_t)plen - KICK_FIXED;
	/* What authd's user_normalize lets through: no control byte (a
	 * blank inside a name is allowed there, so here too). */
	for (size_t i = 0; i < ulen; i++)
		if (plain[KICK_FIXED + i] < ' ' || plain[KICK_FIXED + i] == 0x7f)
			goto out;
	kick->id = get64(plain);
	kick->issued = (int64_t)get64(plain + 8);
	memcpy(kick->user, plain + KICK_FIXED, ulen);
	kick->user[ulen] = '\0';
	r = SEAL_OPENED;
out:
	sodium_memzero(plain, sizeof(plain));
	if (r != SEAL_OPENED)
		sodium_memzero(kick, sizeof(*kick));
	return r;
}
