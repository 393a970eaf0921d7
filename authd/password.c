/*
 * password.c - password schemes of passwd-files and LDAP compare mode
 * (Dovecot 2.3-compatible).  Runs in authd's worker threads (unprivileged
 * authd user); pure computation, no I/O, no logging.
 *
 *   {ARGON2ID} {ARGON2I}                  libsodium crypto_pwhash_str_verify
 *   {SHA512-CRYPT} {SHA256-CRYPT} {MD5-CRYPT}
 *   {BLF-CRYPT} {DES-CRYPT} {CRYPT}, bare "$id$..."
 *                                         libcrypt (libxcrypt: also yescrypt $y$);
 *                                         "$6$" in its usual form: shacrypt.c
 *   {MD5}                                 MD5-CRYPT if "$1$...", else PLAIN-MD5
 *   {SHA} {SHA1} {SHA256} {SHA512}        H(password), libcrypto EVP
 *   {PLAIN-MD5} {LDAP-MD5}                MD5(password)
 *   {SSHA} {SSHA256} {SSHA512} {SMD5}     H(password || salt), stored as
 *                                         digest || salt
 *   {PBKDF2}                              $1$salt$rounds$hex, PBKDF2-HMAC-SHA1
 *   {SCRAM-SHA-1} {SCRAM-SHA-256}         iter,salt,StoredKey,ServerKey (RFC 5802)
 *   {CRAM-MD5} {HMAC-MD5}                 the two MD5 states of HMAC's pads
 *   {PLAIN} {CLEAR} {CLEARTEXT} {PLAIN-TRUNC}
 *                                         constant-time compare
 *
 * Refused, with the reason in refused_why (docs/configuration.md lists
 * them): {DIGEST-MD5}, {PLAIN-MD4}, {OTP}, and the pre-2.3 {LANMAN},
 * {NTLM}, {RPA}.  Any other name is "unknown".
 *
 * Scheme names are case-insensitive.  As in Dovecot, a ".b64", ".base64"
 * or ".hex" suffix on the name selects the encoding ({SHA256.HEX}); without
 * one, a scheme with a fixed-size digest takes hex when the string is twice
 * the digest's length and base64 otherwise.  Decoding is stricter than
 * Dovecot's: base64 must be padded, canonical and without blanks, hex even
 * and without blanks; a stored string over PW_MAX_STORED bytes is refused.
 * Every tool writes what this accepts.
 *
 * password_scheme_check() decodes and checks everything but the password, so a
 * string it accepts gets PW_MATCH or PW_MISMATCH from password_verify()
 * (crypt aside: libcrypt may still refuse a string it called well-formed).
 *
 * Everything here may take tens of milliseconds and megabytes (argon2):
 * worker threads only, with the caller capping concurrency.
 */
#include <crypt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* CRAM-MD5 needs MD5's state after one block (MD5_CTX's A..D), which only
 * the low-level API, deprecated in OpenSSL 3, gives. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/md5.h>

#include <sodium.h>

#include "authd/argon2mem.h"
#include "authd/authd.h"
#include "authd/shacrypt.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/memwipe.h"
#include "common/num.h"

/* Longest stored string (prefix included) looked at: a passwd-file line is
 * at most 4096 bytes, and so is an LDAP value (LDAP_MAX_HASH); nothing a
 * tool writes comes near.  Bounds the decode buffer. */
#define PW_MAX_STORED 4096
/* PW_MAX_ROUNDS and PW_SCRAM_MIN_ROUNDS are in authd.h: pwgen.c writes
 * within them. */
/* The longest scheme name (with its encoding suffix) worth looking up. */
#define PW_MAX_SCHEME_NAME 32

enum scheme_kind {
	K_ARGON2,
	K_CRYPT,	/* crypt(3) string */
	K_MD5,		/* Dovecot's {MD5}: MD5-CRYPT or PLAIN-MD5 */
	K_PLAIN,
	K_PLAIN_TRUNC,	/* "<length>-<password>" */
	K_DIGEST,	/* H(password) */
	K_SALTED,	/* H(password || salt) || salt */
	K_PBKDF2,
	K_SCRAM,
	K_CRAM_MD5,
	K_REFUSED,
};

enum encoding { ENC_NONE, ENC_BASE64, ENC_HEX };
enum hash_alg { H_NONE, H_MD5, H_SHA1, H_SHA256, H_SHA512 };

struct scheme_def {
	const char *name;	/* as Dovecot spells it, without braces */
	enum scheme_kind kind;
	enum hash_alg alg;
	enum encoding enc;	/* Dovecot's default encoding */
	size_t raw_len;		/* fixed decoded length, 0 if any */
	const char *must_start;	/* K_CRYPT / K_ARGON2: what the string begins
				 * with; NULL for DES (13 chars, no '$') */
	const char *refused_why;	/* K_REFUSED */
};

static const struct scheme_def schemes[] = {
	{ "ARGON2ID", K_ARGON2, H_NONE, ENC_NONE, 0, "$argon2id$", NULL },
	{ "ARGON2I", K_ARGON2, H_NONE, ENC_NONE, 0, "$argon2i$", NULL },
	{ "SHA512-CRYPT", K_CRYPT, H_NONE, ENC_NONE, 0, "$6$", NULL },
	{ "SHA256-CRYPT", K_CRYPT, H_NONE, ENC_NONE, 0, "$5$", NULL },
	{ "MD5-CRYPT", K_CRYPT, H_NONE, ENC_NONE, 0, "$1$", NULL },
	{ "BLF-CRYPT", K_CRYPT, H_NONE, ENC_NONE, 0, "$2", NULL },
	{ "DES-CRYPT", K_CRYPT, H_NONE, ENC_NONE, 0, NULL, NULL },
	{ "CRYPT", K_CRYPT, H_NONE, ENC_NONE, 0, "", NULL },
	{ "MD5", K_MD5, H_MD5, ENC_NONE, 0, NULL, NULL },
	{ "PLAIN", K_PLAIN, H_NONE, ENC_NONE, 0, NULL, NULL },
	{ "CLEAR", K_PLAIN, H_NONE, ENC_NONE, 0, NULL, NULL },
	{ "CLEARTEXT", K_PLAIN, H_NONE, ENC_NONE, 0, NULL, NULL },
	{ "PLAIN-TRUNC", K_PLAIN_TRUNC, H_NONE, ENC_NONE, 0, NULL, NULL },
	{ "SHA", K_DIGEST, H_SHA1, ENC_BASE64, 20, NULL, NULL },
	{ "SHA1", K_DIGEST, H_SHA1, ENC_BASE64, 20, NULL, NULL },
	{ "SHA256", K_DIGEST, H_SHA256, ENC_BASE64, 32, NULL, NULL },
	{ "SHA512", K_DIGEST, H_SHA512, ENC_BASE64, 64, NULL, NULL },
	{ "PLAIN-MD5", K_DIGEST, H_MD5, ENC_HEX, 16, NULL, NULL },
	{ "LDAP-MD5", K_DIGEST, H_MD5, ENC_BASE64, 16, NULL, NULL },
	{ "SMD5", K_SALTED, H_MD5, ENC_BASE64, 0, NULL, NULL },
	{ "SSHA", K_SALTED, H_SHA1, ENC_BASE64, 0, NULL, NULL },
	{ "SSHA256", K_SALTED, H_SHA256, ENC_BASE64, 0, NULL, NULL },
	{ "SSHA512", K_SALTED, H_SHA512, ENC_BASE64, 0, NULL, NULL },
	{ "PBKDF2", K_PBKDF2, H_SHA1, ENC_NONE, 0, NULL, NULL },
	{ "SCRAM-SHA-1", K_SCRAM, H_SHA1, ENC_NONE, 0, NULL, NULL },
	{ "SCRAM-SHA-256", K_SCRAM, H_SHA256, ENC_NONE, 0, NULL, NULL },
	{ "CRAM-MD5", K_CRAM_MD5, H_MD5, ENC_HEX, 32, NULL, NULL },
	{ "HMAC-MD5", K_CRAM_MD5, H_MD5, ENC_HEX, 32, NULL, NULL },
	{ "DIGEST-MD5", K_REFUSED, H_NONE, ENC_HEX, 16, NULL,
	  "not supported: the hash binds the user name and realm as Dovecot "
	  "formatted them, which authd's normalised name need not match" },
	{ "PLAIN-MD4", K_REFUSED, H_NONE, ENC_HEX, 16, NULL,
	  "not supported: MD4 is only in OpenSSL 3's legacy provider" },
	{ "OTP", K_REFUSED, H_NONE, ENC_NONE, 0, NULL,
	  "not supported: an S/KEY chain (RFC 2289) for the OTP SASL mechanism" },
	{ "LANMAN", K_REFUSED, H_NONE, ENC_NONE, 0, NULL,
	  "not supported: removed in Dovecot 2.3 (DES of the upper-cased password)" },
	{ "NTLM", K_REFUSED, H_NONE, ENC_NONE, 0, NULL,
	  "not supported: removed in Dovecot 2.3 (MD4, legacy provider only)" },
	{ "RPA", K_REFUSED, H_NONE, ENC_NONE, 0, NULL,
	  "not supported: removed in Dovecot 2.3" },
};

/* A stored string taken apart.  data/len is the decoded hash (what follows
 * the prefix), NUL-terminated at data[len]; buf owns it when decoding was
 * needed (wiped and freed by parsed_free). */
struct parsed {
	const struct scheme_def *def;
	const uint8_t *data;
	size_t len;
	uint8_t *buf;
};

static const struct scheme_def *scheme_find(const char *name, size_t n)
{
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strlen(schemes[i].name) == n && strncasecmp(schemes[i].name, name, n) == 0)
			return &schemes[i];
	return NULL;
}

static const struct scheme_def *scheme_named(const char *name)
{
	return scheme_find(name, strlen(name));
}

static void parsed_free(struct parsed *p)
{
	if (p->buf != NULL) {
		sodium_memzero(p->buf, p->len);
		free(p->buf);
		p->buf = NULL;
	}
}

/* Decodes s (n bytes) in enc into a fresh buffer.  Returns 0 or -1. */
static int decode(const char *s, size_t n, enum encoding enc, struct parsed *p)
{
	size_t max = n / 4 * 3 + 3, len = 0;	/* base64's 3/4 bounds hex's 1/2 */
	uint8_t *buf = xmalloc(max + 1);
	int rc;

	if (enc == ENC_HEX)
		rc = sodium_hex2bin(buf, max, s, n, NULL, &len, NULL);
	else
		rc = sodium_base642bin(buf, max, s, n, NULL, &len, NULL,
				       sodium_base64_VARIANT_ORIGINAL);
	if (rc != 0) {
		sodium_memzero(buf, max + 1);
		free(buf);
		return -1;
	}
	buf[len] = '\0';
	p->buf = buf;
	p->data = buf;
	p->len = len;
	return 0;
}

/* Is s (NUL-terminated) a traditional DES crypt string: 13 characters of
 * ./0-9A-Za-z? */
static bool is_des(const char *s)
{
	static const char chars[] =
		"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

	return strlen(s) == 13 && strspn(s, chars) == 13;
}

/*
 * Splits stored into scheme and decoded hash.  Returns 0 with *p filled
 * (free with parsed_free), or -1 with why (size bytes) saying what is
 * wrong, naming only the scheme (from the table), never the hash.
 */
static int parse(const char *stored, struct parsed *p, char *why, size_t size)
{
	const struct scheme_def *def;
	const char *hash, *close, *dot;
	enum encoding enc;
	bool explicit_enc = false;
	size_t n = strlen(stored);

	memset(p, 0, sizeof(*p));
	if (n > PW_MAX_STORED) {
		snprintf(why, size, "password field over %d bytes", PW_MAX_STORED);
		return -1;
	}
	if (stored[0] != '{') {
		/* No prefix: Dovecot's passwd-file default is CRYPT; argon2
		 * strings are recognised by their own prefix. */
		if (strncmp(stored, "$argon2id$", 10) == 0)
			def = scheme_named("ARGON2ID");
		else if (strncmp(stored, "$argon2i$", 9) == 0)
			def = scheme_named("ARGON2I");
		else
			def = scheme_named("CRYPT");
		hash = stored;
		enc = ENC_NONE;
	} else {
		size_t nlen;

		close = strchr(stored, '}');
		nlen = close != NULL ? (size_t)(close - stored - 1) : 0;
		if (close == NULL || nlen == 0 || nlen > PW_MAX_SCHEME_NAME) {
			snprintf(why, size, "unknown password scheme");
			return -1;
		}
		dot = memchr(stored + 1, '.', nlen);
		def = scheme_find(stored + 1, dot != NULL ? (size_t)(dot - stored - 1) : nlen);
		if (def == NULL) {
			snprintf(why, size, "unknown password scheme");
			return -1;
		}
		enc = def->enc;
		if (dot != NULL) {
			size_t elen = (size_t)(close - dot - 1);

			explicit_enc = true;
			if ((elen == 3 && strncasecmp(dot + 1, "b64", 3) == 0) ||
			    (elen == 6 && strncasecmp(dot + 1, "base64", 6) == 0))
				enc = ENC_BASE64;
			else if (elen == 3 && strncasecmp(dot + 1, "hex", 3) == 0)
				enc = ENC_HEX;
			else {
				snprintf(why, size, "{%s}: unknown encoding suffix", def->name);
				return -1;
			}
		}
		hash = close + 1;
	}
	p->def = def;
	if (def->kind == K_REFUSED) {
		snprintf(why, size, "{%s}: %s", def->name, def->refused_why);
		return -1;
	}

	n = strlen(hash);
	if (enc != ENC_NONE && def->raw_len != 0 && !explicit_enc) {
		/* Dovecot's guess: hex if twice the digest's length (and valid
		 * hex), base64 otherwise. */
		if (n == def->raw_len * 2 && decode(hash, n, ENC_HEX, p) == 0)
			enc = ENC_NONE;	/* done */
		else
			enc = ENC_BASE64;
	}
	if (enc != ENC_NONE) {
		if (decode(hash, n, enc, p) == -1) {
			snprintf(why, size, "{%s}: bad %s encoding", def->name,
				 enc == ENC_HEX ? "hex" : "base64");
			return -1;
		}
		/* The text schemes cannot hold a NUL. */
		if (def->raw_len == 0 && def->kind != K_SALTED &&
		    memchr(p->data, '\0', p->len) != NULL) {
			snprintf(why, size, "{%s}: NUL byte in the decoded hash", def->name);
			goto fail;
		}
	} else if (p->buf == NULL) {
		p->data = (const uint8_t *)hash;
		p->len = n;
	}
	if (def->raw_len != 0 && p->len != def->raw_len) {
		snprintf(why, size, "{%s}: hash is %zu bytes, not %zu", def->name, p->len,
			 def->raw_len);
		goto fail;
	}
	return 0;
fail:
	parsed_free(p);
	return -1;
}

/* ---- the schemes, each with a checker (no password) and a verifier ----- */

static const EVP_MD *evp_md(enum hash_alg alg)
{
	switch (alg) {
	case H_MD5: return EVP_md5();
	case H_SHA1: return EVP_sha1();
	case H_SHA256: return EVP_sha256();
	case H_SHA512: return EVP_sha512();
	case H_NONE: break;
	}
	return NULL;
}

/* out = H(a || b); returns the digest length, 0 on failure. */
static size_t digest2(enum hash_alg alg, const void *a, size_t alen, const void *b, size_t blen,
		      uint8_t out[EVP_MAX_MD_SIZE])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned n = 0;

	if (ctx == NULL)
		return 0;
	if (EVP_DigestInit_ex(ctx, evp_md(alg), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, a, alen) != 1 || EVP_DigestUpdate(ctx, b, blen) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, &n) != 1)
		n = 0;
	EVP_MD_CTX_free(ctx);
	return n;
}

static size_t digest_len(enum hash_alg alg)
{
	return (size_t)EVP_MD_get_size(evp_md(alg));
}

/* Constant-time compare of n bytes: PW_MATCH or PW_MISMATCH. */
static enum pw_check same(const uint8_t *a, const uint8_t *b, size_t n)
{
	return sodium_memcmp(a, b, n) == 0 ? PW_MATCH : PW_MISMATCH;
}

static enum pw_check verify_digest(const struct parsed *p, const char *password)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	size_t n = digest2(p->def->alg, password, strlen(password), "", 0, md);
	enum pw_check r;

	if (n == 0 || n != p->len)
		return PW_BAD_HASH;
	r = same(md, p->data, n);
	sodium_memzero(md, sizeof(md));
	return r;
}

/* Salted: digest || salt, salt at least one byte (Dovecot: "too short"). */
static bool salted_ok(const struct parsed *p, char *why, size_t size)
{
	if (p->len <= digest_len(p->def->alg)) {
		snprintf(why, size, "{%s}: no salt after the digest", p->def->name);
		return false;
	}
	return true;
}

static enum pw_check verify_salted(const struct parsed *p, const char *password)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	size_t dlen = digest_len(p->def->alg), n;
	enum pw_check r;

	if (p->len <= dlen)
		return PW_BAD_HASH;
	n = digest2(p->def->alg, password, strlen(password), p->data + dlen, p->len - dlen, md);
	if (n != dlen)
		return PW_BAD_HASH;
	r = same(md, p->data, n);
	sodium_memzero(md, sizeof(md));
	return r;
}

/* Compares two byte strings of any lengths in a time that depends on
 * neither: both are hashed first. */
static enum pw_check verify_bytes(const void *stored, size_t slen, const void *pw, size_t plen)
{
	uint8_t a[crypto_generichash_BYTES], b[crypto_generichash_BYTES];
	enum pw_check r;

	crypto_generichash(a, sizeof(a), stored, slen, NULL, 0);
	crypto_generichash(b, sizeof(b), pw, plen, NULL, 0);
	r = crypto_verify_32(a, b) == 0 ? PW_MATCH : PW_MISMATCH;
	sodium_memzero(a, sizeof(a));
	sodium_memzero(b, sizeof(b));
	return r;
}

/* "<length>-<password>": the digits are parsed into *trunc_r (bounded by
 * the stored length, which is all that matters), *rest_r points past '-'. */
static bool plain_trunc_parse(const struct parsed *p, size_t *trunc_r, size_t *rest_r)
{
	size_t i = 0, t = 0;

	while (i < p->len && p->data[i] >= '0' && p->data[i] <= '9') {
		if (t <= PW_MAX_STORED)
			t = t * 10 + (size_t)(p->data[i] - '0');
		i++;
	}
	if (i == 0 || i == p->len || p->data[i] != '-')
		return false;
	*trunc_r = t;
	*rest_r = i + 1;
	return true;
}

/* Dovecot's rule: a password stored cut to <length> bytes matches any
 * password that starts with it; otherwise the whole password must match. */
static enum pw_check verify_plain_trunc(const struct parsed *p, const char *password)
{
	size_t trunc, rest, plen = strlen(password), slen;

	if (!plain_trunc_parse(p, &trunc, &rest))
		return PW_BAD_HASH;
	slen = p->len - rest;
	if (slen == trunc && plen >= trunc)
		plen = trunc;
	return verify_bytes(p->data + rest, slen, password, plen);
}

/* PBKDF2: "$1$<salt>$<rounds>$<40 hex>", PBKDF2-HMAC-SHA1, 20 bytes.
 * Fills salt/rounds/key; returns false (why set) if malformed. */
static bool pbkdf2_parse(const struct parsed *p, const char **salt_r, size_t *salt_len_r,
			 unsigned *rounds_r, uint8_t key_r[20], char *why, size_t size)
{
	const char *s = (const char *)p->data, *d1, *d2;
	char num[16];
	size_t klen;

	if (strncmp(s, "$1$", 3) != 0 || (d1 = strchr(s + 3, '$')) == NULL ||
	    (d2 = strchr(d1 + 1, '$')) == NULL || strchr(d2 + 1, '$') != NULL) {
		snprintf(why, size, "{PBKDF2}: not $1$salt$rounds$hash");
		return false;
	}
	if ((size_t)(d2 - d1 - 1) >= sizeof(num)) {
		snprintf(why, size, "{PBKDF2}: bad rounds");
		return false;
	}
	memcpy(num, d1 + 1, (size_t)(d2 - d1 - 1));
	num[d2 - d1 - 1] = '\0';
	if (num_parse_uint(num, 1, PW_MAX_ROUNDS, rounds_r) == -1) {
		snprintf(why, size, "{PBKDF2}: rounds not 1 to %u", PW_MAX_ROUNDS);
		return false;
	}
	if (strlen(d2 + 1) != 40 ||
	    sodium_hex2bin(key_r, 20, d2 + 1, 40, NULL, &klen, NULL) != 0 || klen != 20) {
		snprintf(why, size, "{PBKDF2}: hash is not 40 hex digits");
		return false;
	}
	*salt_r = s + 3;
	*salt_len_r = (size_t)(d1 - s - 3);
	return true;
}

static enum pw_check verify_pbkdf2(const struct parsed *p, const char *password)
{
	uint8_t want[20], got[20];
	const char *salt;
	size_t salt_len;
	unsigned rounds;
	char why[128];
	enum pw_check r = PW_BAD_HASH;

	if (!pbkdf2_parse(p, &salt, &salt_len, &rounds, want, why, sizeof(why)))
		return PW_BAD_HASH;
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), (const uint8_t *)salt,
			      (int)salt_len, (int)rounds, EVP_sha1(), sizeof(got), got) == 1)
		r = same(want, got, sizeof(got));
	sodium_memzero(got, sizeof(got));
	return r;
}

/* SCRAM: "<iter>,<base64 salt>,<base64 StoredKey>,<base64 ServerKey>". */
struct scram {
	unsigned iter;
	uint8_t salt[PW_MAX_STORED];
	size_t salt_len;
	uint8_t stored_key[EVP_MAX_MD_SIZE];
};

static bool b64_field(const char *s, size_t n, uint8_t *out, size_t max, size_t *len_r)
{
	return sodium_base642bin(out, max, s, n, NULL, len_r, NULL,
				 sodium_base64_VARIANT_ORIGINAL) == 0;
}

static bool scram_parse(const struct parsed *p, struct scram *sc, char *why, size_t size)
{
	const char *f[4], *s = (const char *)p->data;
	size_t flen[4], dlen = digest_len(p->def->alg), klen;
	uint8_t server_key[EVP_MAX_MD_SIZE];
	char num[16];
	size_t nf = 0;

	/* Exactly four comma-separated fields (empty ones included). */
	f[0] = s;
	for (const char *c = s;; c++) {
		if (*c != ',' && *c != '\0')
			continue;
		if (nf == 4) {
			nf++;
			break;
		}
		flen[nf] = (size_t)(c - f[nf]);
		nf++;
		if (*c == '\0')
			break;
		if (nf < 4)
			f[nf] = c + 1;
	}
	if (nf != 4) {
		snprintf(why, size, "{%s}: not iter,salt,StoredKey,ServerKey", p->def->name);
		return false;
	}
	if (flen[0] >= sizeof(num)) {
		snprintf(why, size, "{%s}: bad iteration count", p->def->name);
		return false;
	}
	memcpy(num, f[0], flen[0]);
	num[flen[0]] = '\0';
	if (num_parse_uint(num, PW_SCRAM_MIN_ROUNDS, PW_MAX_ROUNDS, &sc->iter) == -1) {
		snprintf(why, size, "{%s}: iteration count not %u to %u", p->def->name,
			 PW_SCRAM_MIN_ROUNDS, PW_MAX_ROUNDS);
		return false;
	}
	if (!b64_field(f[1], flen[1], sc->salt, sizeof(sc->salt), &sc->salt_len)) {
		snprintf(why, size, "{%s}: bad base64 salt", p->def->name);
		return false;
	}
	if (!b64_field(f[2], flen[2], sc->stored_key, sizeof(sc->stored_key), &klen) ||
	    klen != dlen) {
		snprintf(why, size, "{%s}: bad StoredKey", p->def->name);
		return false;
	}
	if (!b64_field(f[3], flen[3], server_key, sizeof(server_key), &klen) || klen != dlen) {
		snprintf(why, size, "{%s}: bad ServerKey", p->def->name);
		return false;
	}
	return true;
}

static enum pw_check verify_scram(const struct parsed *p, const char *password)
{
	struct scram *sc = xmalloc(sizeof(*sc));
	uint8_t salted[EVP_MAX_MD_SIZE], client_key[EVP_MAX_MD_SIZE], stored[EVP_MAX_MD_SIZE];
	const EVP_MD *md = evp_md(p->def->alg);
	size_t dlen = digest_len(p->def->alg);
	unsigned hlen = 0;
	char why[128];
	enum pw_check r = PW_BAD_HASH;

	if (!scram_parse(p, sc, why, sizeof(why)))
		goto out;
	/* SaltedPassword = Hi(password, salt, i) = PBKDF2 (RFC 5802 §2.2);
	 * ClientKey = HMAC(SaltedPassword, "Client Key"); StoredKey = H(ClientKey). */
	if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), sc->salt, (int)sc->salt_len,
			      (int)sc->iter, md, (int)dlen, salted) != 1 ||
	    HMAC(md, salted, (int)dlen, (const uint8_t *)"Client Key", 10, client_key,
		 &hlen) == NULL || hlen != dlen ||
	    digest2(p->def->alg, client_key, dlen, "", 0, stored) != dlen)
		goto out;
	r = same(stored, sc->stored_key, dlen);
out:
	sodium_memzero(salted, sizeof(salted));
	sodium_memzero(client_key, sizeof(client_key));
	sodium_memzero(sc, sizeof(*sc));
	free(sc);
	return r;
}

/* CRAM-MD5 / HMAC-MD5: Dovecot stores MD5's state (A, B, C, D, each
 * little-endian) after the outer pad block, then after the inner one
 * (hmac-cram-md5.c), so that CRAM-MD5 can finish HMACs without the password. */
static void cram_state(const uint8_t pad[64], uint8_t out[16])
{
	MD5_CTX ctx;
	MD5_LONG s[4];

	MD5_Init(&ctx);
	MD5_Update(&ctx, pad, 64);
	s[0] = ctx.A;
	s[1] = ctx.B;
	s[2] = ctx.C;
	s[3] = ctx.D;
	for (int i = 0; i < 4; i++) {
		out[4 * i] = (uint8_t)(s[i] & 0xff);
		out[4 * i + 1] = (uint8_t)(s[i] >> 8 & 0xff);
		out[4 * i + 2] = (uint8_t)(s[i] >> 16 & 0xff);
		out[4 * i + 3] = (uint8_t)(s[i] >> 24 & 0xff);
	}
	sodium_memzero(&ctx, sizeof(ctx));
}

bool password_cram_md5(const char *password, uint8_t out[32])
{
	uint8_t key[64], ipad[64], opad[64];
	size_t plen = strlen(password);

	memset(key, 0, sizeof(key));
	/* HMAC (RFC 2104): a key longer than a block is hashed first. */
	if (plen > sizeof(key)) {
		if (digest2(H_MD5, password, plen, "", 0, key) != 16)
			return false;
	} else {
		memcpy(key, password, plen);
	}
	for (size_t i = 0; i < 64; i++) {
		ipad[i] = key[i] ^ 0x36;
		opad[i] = key[i] ^ 0x5c;
	}
	cram_state(opad, out);
	cram_state(ipad, out + 16);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(ipad, sizeof(ipad));
	sodium_memzero(opad, sizeof(opad));
	return true;
}

static enum pw_check verify_cram_md5(const struct parsed *p, const char *password)
{
	uint8_t got[32];
	enum pw_check r;

	if (p->len != sizeof(got) || !password_cram_md5(password, got))
		return PW_BAD_HASH;
	r = same(got, p->data, sizeof(got));
	sodium_memzero(got, sizeof(got));
	return r;
}

/* True if hash parses as an argon2 string libsodium accepts (it only
 * parses the parameters here; no hashing). */
static bool argon2_well_formed(const char *hash)
{
	char str[crypto_pwhash_STRBYTES];
	size_t n = strlen(hash);

	if (n >= sizeof(str))
		return false;
	memcpy(str, hash, n + 1);
	return crypto_pwhash_str_needs_rehash(str, crypto_pwhash_OPSLIMIT_MIN,
					      crypto_pwhash_MEMLIMIT_MIN) != -1;
}

/* A crypt string of the scheme def names, that libcrypt knows (cheap: no
 * hashing)?  DES and MD5 are "legacy" but still accepted. */
static bool crypt_ok(const struct scheme_def *def, const char *hash)
{
	int c;

	if (def->must_start == NULL ? !is_des(hash)
				    : strncmp(hash, def->must_start, strlen(def->must_start)) != 0)
		return false;
	if (hash[0] == '*' || hash[0] == '!')
		return false;
	c = crypt_checksalt(hash);
	return c != CRYPT_SALT_INVALID && c != CRYPT_SALT_METHOD_DISABLED;
}

/* A SHA256-/SHA512-CRYPT string asking for more than PW_MAX_ROUNDS rounds?
 * libcrypt takes up to 999,999,999, minutes of a worker's CPU per check,
 * which whoever can write a hash (a directory user changing their own
 * userPassword) could plant; refused as PBKDF2's and SCRAM's are. */
static bool sha_crypt_rounds_over(const char *hash)
{
	const char *num;
	uint64_t v = 0;

	if ((strncmp(hash, "$5$", 3) != 0 && strncmp(hash, "$6$", 3) != 0) ||
	    strncmp(hash + 3, "rounds=", 7) != 0)
		return false;
	for (num = hash + 10; *num >= '0' && *num <= '9'; num++) {
		v = v * 10 + (uint64_t)(*num - '0');
		if (v > PW_MAX_ROUNDS)
			return true;
	}
	return false;
}

static enum pw_check verify_crypt(const char *hash, const char *password)
{
	struct crypt_data *data;
	enum pw_check r = PW_BAD_HASH;
	const char *out;
	size_t n;

	/* libcrypt refuses such long passphrases; it cannot be the password. */
	if (strlen(password) >= CRYPT_MAX_PASSPHRASE_SIZE)
		return PW_MISMATCH;
	/* SHA512-CRYPT in its usual form: libcrypto's SHA-512 is faster. */
	switch (shacrypt512_verify(hash, password)) {
	case SHACRYPT_MATCH:
		return PW_MATCH;
	case SHACRYPT_MISMATCH:
		return PW_MISMATCH;
	case SHACRYPT_NOT_MINE:
		break;
	}
	data = calloc(1, sizeof(*data));
	if (data == NULL)
		return PW_BAD_HASH;
	out = crypt_rn(password, hash, data, sizeof(*data));
	if (out != NULL && out[0] != '*') {
		n = strlen(out);
		if (n == strlen(hash))
			r = sodium_memcmp(out, hash, n) == 0 ? PW_MATCH : PW_MISMATCH;
		else
			r = PW_BAD_HASH;	/* a truncated hash read as a salt */
	}
	sodium_memzero(data, sizeof(*data));
	free(data);
	return r;
}

static enum pw_check verify_argon2(const char *hash, const char *password)
{
	char str[crypto_pwhash_STRBYTES];
	size_t n = strlen(hash);
	int r;

	if (n >= sizeof(str) || !argon2_well_formed(hash))
		return PW_BAD_HASH;
	memcpy(str, hash, n + 1);
	/* Well-formed, so -1 now means a wrong password.  The hash's memory
	 * comes from argon2mem.c's pool. */
	argon2mem_begin();
	r = crypto_pwhash_str_verify(str, password, strlen(password));
	argon2mem_end();
	return r == 0 ? PW_MATCH : PW_MISMATCH;
}

/* Dovecot's {MD5}: "$1$..." is MD5-CRYPT, anything else PLAIN-MD5 (hex or
 * base64 by length).  Re-parses the string as the scheme it turns out to be. */
static int md5_resolve(const struct parsed *p, struct parsed *q, char *why, size_t size)
{
	const char *s = (const char *)p->data;
	char tmp[PW_MAX_STORED + 32];

	snprintf(tmp, sizeof(tmp), "{%s}%s", strncmp(s, "$1$", 3) == 0 ? "MD5-CRYPT" : "PLAIN-MD5",
		 s);
	if (parse(tmp, q, why, size) == -1) {
		sodium_memzero(tmp, sizeof(tmp));
		snprintf(why, size, "{MD5}: neither MD5-CRYPT nor PLAIN-MD5");
		return -1;
	}
	if (q->buf == NULL) {
		/* q->data points into tmp: keep a copy of its own. */
		q->buf = xmalloc(q->len + 1);
		memcpy(q->buf, q->data, q->len + 1);
		q->data = q->buf;
	}
	sodium_memzero(tmp, sizeof(tmp));
	return 0;
}

/* Everything but the password: true if p can be verified. */
static bool check(const struct parsed *p, char *why, size_t size)
{
	const char *s = (const char *)p->data;
	const char *salt;
	size_t salt_len, trunc, rest;
	unsigned rounds;
	uint8_t key[20];
	bool ok;

	switch (p->def->kind) {
	case K_ARGON2:
		ok = strncmp(s, p->def->must_start, strlen(p->def->must_start)) == 0 &&
		     argon2_well_formed(s);
		if (!ok)
			snprintf(why, size, "{%s}: not a valid %s string", p->def->name,
				 p->def->must_start);
		return ok;
	case K_CRYPT:
		if (!crypt_ok(p->def, s)) {
			snprintf(why, size, "{%s}: locked, or not a crypt string libcrypt "
				 "enables for this scheme", p->def->name);
			return false;
		}
		if (sha_crypt_rounds_over(s)) {
			snprintf(why, size, "{%s}: more than %u rounds", p->def->name,
				 PW_MAX_ROUNDS);
			return false;
		}
		return true;
	case K_PLAIN:
	case K_DIGEST:
	case K_CRAM_MD5:
		return true;	/* lengths checked by parse() */
	case K_PLAIN_TRUNC:
		if (!plain_trunc_parse(p, &trunc, &rest)) {
			snprintf(why, size, "{PLAIN-TRUNC}: not <length>-<password>");
			return false;
		}
		return true;
	case K_SALTED:
		return salted_ok(p, why, size);
	case K_PBKDF2:
		ok = pbkdf2_parse(p, &salt, &salt_len, &rounds, key, why, size);
		sodium_memzero(key, sizeof(key));
		return ok;
	case K_SCRAM: {
		struct scram *sc = xmalloc(sizeof(*sc));
		ok = scram_parse(p, sc, why, size);
		sodium_memzero(sc, sizeof(*sc));
		free(sc);
		return ok;
	}
	case K_MD5: {
		struct parsed q;
		if (md5_resolve(p, &q, why, size) == -1)
			return false;
		ok = check(&q, why, size);
		parsed_free(&q);
		return ok;
	}
	case K_REFUSED:
		break;
	}
	snprintf(why, size, "{%s}: not supported", p->def->name);
	return false;
}

static enum pw_check verify(const struct parsed *p, const char *password)
{
	const char *s = (const char *)p->data;
	char why[128];

	switch (p->def->kind) {
	case K_ARGON2:
		if (strncmp(s, p->def->must_start, strlen(p->def->must_start)) != 0)
			return PW_BAD_HASH;
		return verify_argon2(s, password);
	case K_CRYPT:
		if (!crypt_ok(p->def, s) || sha_crypt_rounds_over(s))
			return PW_BAD_HASH;
		return verify_crypt(s, password);
	case K_PLAIN:
		return verify_bytes(p->data, p->len, password, strlen(password));
	case K_PLAIN_TRUNC:
		return verify_plain_trunc(p, password);
	case K_DIGEST:
		return verify_digest(p, password);
	case K_SALTED:
		return verify_salted(p, password);
	case K_PBKDF2:
		return verify_pbkdf2(p, password);
	case K_SCRAM:
		return verify_scram(p, password);
	case K_CRAM_MD5:
		return verify_cram_md5(p, password);
	case K_MD5: {
		struct parsed q;
		enum pw_check r;
		if (md5_resolve(p, &q, why, sizeof(why)) == -1)
			return PW_BAD_HASH;
		r = verify(&q, password);
		parsed_free(&q);
		return r;
	}
	case K_REFUSED:
		break;
	}
	return PW_BAD_HASH;
}

/* ---- public ------------------------------------------------------------ */

bool password_scheme_check(const char *stored, char *why, size_t size)
{
	struct parsed p;
	bool ok;

	if (stored[0] == '\0') {
		snprintf(why, size, "empty password field");
		return false;
	}
	if (parse(stored, &p, why, size) == -1)
		return false;
	ok = check(&p, why, size);
	parsed_free(&p);
	return ok;
}

bool password_scheme_known(const char *stored)
{
	char why[256];

	return password_scheme_check(stored, why, sizeof(why));
}

bool password_is_plain(const char *stored)
{
	struct parsed p;
	char why[256];
	bool plain;

	if (stored[0] != '{' || parse(stored, &p, why, sizeof(why)) == -1)
		return false;
	plain = (p.def->kind == K_PLAIN || p.def->kind == K_PLAIN_TRUNC) &&
		check(&p, why, sizeof(why));
	parsed_free(&p);
	return plain;
}

void password_wipe_freed(void)
{
	if (CRYPTO_set_mem_functions(memwipe_crypto_malloc, memwipe_crypto_realloc,
				     memwipe_crypto_free) != 1)
		fatalx("CRYPTO_set_mem_functions: libcrypto has allocated already");
}

enum pw_check password_verify(const char *stored, const char *password)
{
	struct parsed p;
	char why[256];
	enum pw_check r;

	if (stored[0] == '\0' || parse(stored, &p, why, sizeof(why)) == -1)
		return PW_BAD_HASH;
	r = verify(&p, password);
	parsed_free(&p);
	return r;
}
