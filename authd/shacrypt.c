/*
 * shacrypt.c - SHA512-CRYPT ("$6$") checked with libcrypto's SHA-512.
 * Runs in authd's worker threads (unprivileged authd user), and in authctl
 * and the unit tests that link password.c; pure computation, no I/O.
 *
 * Why: an uncached SHA512-CRYPT login is a 5,000-round hash, and libcrypt
 * (libxcrypt) computes SHA-512 in portable C; OpenSSL's SHA-512 uses the
 * CPU's vector units and takes about two thirds of the time for the same
 * rounds (docs/benchmarks.md, "Uncached SHA512-CRYPT").  The algorithm is Drepper's "Unix crypt
 * using SHA-256 and SHA-512" specification, which libcrypt implements too.
 *
 * Only the canonical form is handled here:
 *
 *   $6$[rounds=N$]SALT$HASH
 *
 * N decimal without a leading zero, 1000 to PW_MAX_ROUNDS; SALT 1 to 16
 * characters of crypt's alphabet [./0-9A-Za-z]; HASH exactly 86 of them,
 * and nothing after.  That is what libcrypt, Dovecot and OpenSSL write.
 * Anything else (a longer salt that libcrypt would cut, other salt bytes,
 * rounds out of range) returns SHACRYPT_NOT_MINE and password.c asks
 * libcrypt as before, so what is accepted, and how, never changes: the
 * unit tests (test-password) and the fuzz-password harness compare the
 * two on every input they try.
 *
 * The password's traces (its repetitions, the digests of it, the hash
 * contexts) are wiped before returning.
 */
#include <crypt.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* The low-level SHA512_* calls, deprecated in OpenSSL 3, cost a third of
 * what EVP's per-call dispatch costs on a 5,000-round loop of small
 * updates (measured: 1.3 against 2.1 ms per check). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <sodium.h>

#include "authd/authd.h"
#include "authd/shacrypt.h"

#define SALT_MAX 16
#define HASH_CHARS 86
#define ROUNDS_DEFAULT 5000u
#define ROUNDS_MIN 1000u

static const char b64[] =
	"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static bool is_b64(char c)
{
	return c != '\0' && strchr(b64, c) != NULL;
}

/* "rounds=N$": N into *rounds, *p past the '$'; false if not canonical. */
static bool parse_rounds(const char **p, unsigned *rounds)
{
	const char *s = *p + 7;		/* past "rounds=" */
	uint64_t v = 0;
	int digits = 0;

	if (*s == '0')
		return false;
	while (*s >= '0' && *s <= '9') {
		if (++digits > 9)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
		s++;
	}
	if (digits == 0 || *s != '$' || v < ROUNDS_MIN || v > PW_MAX_ROUNDS)
		return false;
	*rounds = (unsigned)v;
	*p = s + 1;
	return true;
}

/* The 64-byte digest in crypt's order of bytes and alphabet: 86 characters. */
static void encode(const unsigned char d[64], char out[HASH_CHARS])
{
	/* Each triple is read as one 24-bit number, first byte highest, and
	 * written as four characters, least significant six bits first. */
	static const unsigned char order[21][3] = {
		{ 0, 21, 42 }, { 22, 43, 1 }, { 44, 2, 23 }, { 3, 24, 45 },
		{ 25, 46, 4 }, { 47, 5, 26 }, { 6, 27, 48 }, { 28, 49, 7 },
		{ 50, 8, 29 }, { 9, 30, 51 }, { 31, 52, 10 }, { 53, 11, 32 },
		{ 12, 33, 54 }, { 34, 55, 13 }, { 56, 14, 35 }, { 15, 36, 57 },
		{ 37, 58, 16 }, { 59, 17, 38 }, { 18, 39, 60 }, { 40, 61, 19 },
		{ 62, 20, 41 },
	};
	size_t i, k, o = 0;
	uint32_t w;

	for (i = 0; i < 21; i++) {
		w = (uint32_t)d[order[i][0]] << 16 | (uint32_t)d[order[i][1]] << 8 |
		    d[order[i][2]];
		for (k = 0; k < 4; k++, w >>= 6)
			out[o++] = b64[w & 0x3f];
	}
	w = d[63];
	out[o++] = b64[w & 0x3f];
	out[o++] = b64[(w >> 6) & 0x3f];
}

struct work {
	SHA512_CTX ctx;
	unsigned char a[64], b[64], dp[64], ds[64];
	unsigned char p[CRYPT_MAX_PASSPHRASE_SIZE];	/* P sequence */
	unsigned char s[SALT_MAX];			/* S sequence */
	char enc[HASH_CHARS];
};

static void compute(struct work *w, const unsigned char *pw, size_t pl, const char *salt,
		    size_t sl, unsigned rounds)
{
	SHA512_CTX *c = &w->ctx;
	size_t n;
	unsigned i;

	/* B = H(P S P) */
	SHA512_Init(c);
	SHA512_Update(c, pw, pl);
	SHA512_Update(c, salt, sl);
	SHA512_Update(c, pw, pl);
	SHA512_Final(w->b, c);

	/* A = H(P S, B for as many bytes as P has, then a bit-driven mix) */
	SHA512_Init(c);
	SHA512_Update(c, pw, pl);
	SHA512_Update(c, salt, sl);
	for (n = pl; n > 64; n -= 64)
		SHA512_Update(c, w->b, 64);
	SHA512_Update(c, w->b, n);
	for (n = pl; n > 0; n >>= 1) {
		if (n & 1)
			SHA512_Update(c, w->b, 64);
		else
			SHA512_Update(c, pw, pl);
	}
	SHA512_Final(w->a, c);

	/* P sequence: H(P repeated |P| times), stretched to |P| bytes */
	SHA512_Init(c);
	for (n = 0; n < pl; n++)
		SHA512_Update(c, pw, pl);
	SHA512_Final(w->dp, c);
	for (n = 0; n < pl; n++)
		w->p[n] = w->dp[n % 64];

	/* S sequence: H(S repeated 16 + A[0] times), cut to |S| bytes */
	SHA512_Init(c);
	for (n = 0; n < 16u + w->a[0]; n++)
		SHA512_Update(c, salt, sl);
	SHA512_Final(w->ds, c);
	memcpy(w->s, w->ds, sl);

	/* The rounds, on C (starting as A) */
	for (i = 0; i < rounds; i++) {
		SHA512_Init(c);
		if (i & 1)
			SHA512_Update(c, w->p, pl);
		else
			SHA512_Update(c, w->a, 64);
		if (i % 3 != 0)
			SHA512_Update(c, w->s, sl);
		if (i % 7 != 0)
			SHA512_Update(c, w->p, pl);
		if (i & 1)
			SHA512_Update(c, w->a, 64);
		else
			SHA512_Update(c, w->p, pl);
		SHA512_Final(w->a, c);
	}
	encode(w->a, w->enc);
}

enum shacrypt_check shacrypt512_verify(const char *hash, const char *password)
{
	const char *p, *salt, *stored;
	unsigned rounds = ROUNDS_DEFAULT;
	size_t sl, pl, i;
	struct work w;
	enum shacrypt_check r;

	if (strncmp(hash, "$6$", 3) != 0)
		return SHACRYPT_NOT_MINE;
	p = hash + 3;
	if (strncmp(p, "rounds=", 7) == 0 && !parse_rounds(&p, &rounds))
		return SHACRYPT_NOT_MINE;
	salt = p;
	for (sl = 0; sl <= SALT_MAX && is_b64(salt[sl]); sl++)
		;
	if (sl == 0 || sl > SALT_MAX || salt[sl] != '$')
		return SHACRYPT_NOT_MINE;
	stored = salt + sl + 1;
	for (i = 0; i < HASH_CHARS; i++)
		if (!is_b64(stored[i]))
			return SHACRYPT_NOT_MINE;
	if (stored[HASH_CHARS] != '\0')
		return SHACRYPT_NOT_MINE;
	pl = strlen(password);
	if (pl >= CRYPT_MAX_PASSPHRASE_SIZE)
		return SHACRYPT_NOT_MINE;	/* libcrypt's own limit decides */

	compute(&w, (const unsigned char *)password, pl, salt, sl, rounds);
	r = sodium_memcmp(w.enc, stored, HASH_CHARS) == 0 ? SHACRYPT_MATCH
							   : SHACRYPT_MISMATCH;
	sodium_memzero(&w, sizeof(w));
	return r;
}
