/*
 * pwgen.c - writes password hashes in every scheme password.c verifies
 * (authctl pw).  Runs in authctl, as whoever calls it; pure computation
 * and libsodium's randombytes, no other I/O, no logging.
 *
 * Every string is checked with password.c before it is handed out
 * (password_scheme_check, then password_verify with the same password
 * must say PW_MATCH), so this file cannot write what authd would refuse.
 *
 * Default costs (authctl(1) says the same, with the reasons):
 *   ARGON2ID       m=19 MiB, t=2, p=1: OWASP's Password Storage Cheat
 *                  Sheet's minimum (libsodium always uses p=1)
 *   ARGON2I        m=19 MiB, t=3 (libsodium's least t for argon2i)
 *   SHA512-CRYPT, SHA256-CRYPT, MD5-CRYPT, CRYPT
 *                  libxcrypt's defaults (rounds=5000 for SHA-crypt, as
 *                  doveadm pw and mkpasswd write; CRYPT is libxcrypt's
 *                  preferred method, yescrypt on Debian 12)
 *   BLF-CRYPT      cost 12 (libxcrypt's default, 5, is below OWASP's 10)
 *   PBKDF2         1,300,000 rounds of HMAC-SHA1 (OWASP 2023)
 *   SCRAM-SHA-1    1,300,000 iterations (OWASP's PBKDF2-HMAC-SHA1)
 *   SCRAM-SHA-256  600,000 iterations (OWASP's PBKDF2-HMAC-SHA256)
 * Salts: 16 random bytes from randombytes_buf (crypt: what
 * crypt_gensalt_rn makes of them).
 */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/limits.h"

#define PWGEN_SALT_BYTES 16
/* OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane. */
#define PWGEN_ARGON2_MEMORY (19u * 1024 * 1024)
#define PWGEN_ARGON2ID_T 2u
#define PWGEN_ARGON2I_T 3u	/* crypto_pwhash_argon2i_OPSLIMIT_MIN */
#define PWGEN_ARGON2_MAX_T 32u	/* ~1 s a login at 19 MiB */
#define PWGEN_BCRYPT_COST 12u
#define PWGEN_BCRYPT_MAX_COST 20u	/* ~1 min a login */
#define PWGEN_SHACRYPT_MIN 1000u	/* libxcrypt's least rounds= */
#define PWGEN_PBKDF2_SHA1 1300000u
#define PWGEN_PBKDF2_SHA256 600000u
/* Longest output: a SCRAM-SHA-256 line or a base64'd plain password. */
#define PWGEN_MAX_OUT (AUTH_MAX_PASSWORD * 2 + 64)

enum gen_kind {
	G_ARGON2ID, G_ARGON2I, G_CRYPT, G_DIGEST, G_SALTED, G_PBKDF2, G_SCRAM,
	G_CRAM_MD5, G_PLAIN, G_PLAIN_TRUNC,
};

struct gen_def {
	const char *name;	/* as password.c's table spells it */
	enum gen_kind kind;
	const char *md;		/* G_DIGEST, G_SALTED, G_SCRAM: OpenSSL's name */
	bool hex;		/* G_DIGEST: hex, else base64 */
	const char *prefix;	/* G_CRYPT: crypt_gensalt_rn's, NULL = preferred */
	unsigned min_rounds, max_rounds, def_rounds;	/* max 0: no -r */
	size_t max_password;	/* bytes the scheme reads; 0: AUTH_MAX_PASSWORD */
	const char *weak;	/* a warning for stderr, or NULL */
};

#define W_DIGEST "an unsalted fast digest: equal passwords give equal hashes and " \
	"a leaked file is cracked at billions of guesses a second; prefer ARGON2ID"
#define W_FAST "a fast salted digest: a leaked file is cracked at billions of guesses " \
	"a second; prefer ARGON2ID"
#define W_PLAIN "the password itself is stored in the file; prefer ARGON2ID"
#define W_MD5CRYPT "MD5-CRYPT is obsolete (about a million guesses a second on one GPU); " \
	"prefer ARGON2ID"
#define W_CRAM "the CRAM-MD5 context is as good as the password for CRAM-MD5 and " \
	"fast to crack; prefer ARGON2ID"

/* CRYPT_MAX_PASSPHRASE_SIZE - 1: libcrypt refuses longer passphrases. */
#define CRYPT_MAX_PW (CRYPT_MAX_PASSPHRASE_SIZE - 1)

static const struct gen_def gens[] = {
	{ "ARGON2ID", G_ARGON2ID, NULL, false, NULL, 1, PWGEN_ARGON2_MAX_T,
	  PWGEN_ARGON2ID_T, 0, NULL },
	{ "ARGON2I", G_ARGON2I, NULL, false, NULL, PWGEN_ARGON2I_T, PWGEN_ARGON2_MAX_T,
	  PWGEN_ARGON2I_T, 0, NULL },
	{ "SHA512-CRYPT", G_CRYPT, NULL, false, "$6$", PWGEN_SHACRYPT_MIN, PW_MAX_ROUNDS, 0,
	  CRYPT_MAX_PW, NULL },
	{ "SHA256-CRYPT", G_CRYPT, NULL, false, "$5$", PWGEN_SHACRYPT_MIN, PW_MAX_ROUNDS, 0,
	  CRYPT_MAX_PW, NULL },
	{ "BLF-CRYPT", G_CRYPT, NULL, false, "$2b$", 4, PWGEN_BCRYPT_MAX_COST,
	  PWGEN_BCRYPT_COST, 72, NULL },
	{ "CRYPT", G_CRYPT, NULL, false, NULL, 0, 0, 0, CRYPT_MAX_PW, NULL },
	{ "MD5-CRYPT", G_CRYPT, NULL, false, "$1$", 0, 0, 0, CRYPT_MAX_PW, W_MD5CRYPT },
	/* Dovecot's {MD5} writes MD5-CRYPT. */
	{ "MD5", G_CRYPT, NULL, false, "$1$", 0, 0, 0, CRYPT_MAX_PW, W_MD5CRYPT },
	{ "DES-CRYPT", G_CRYPT, NULL, false, "", 0, 0, 0, 8,
	  "DES-CRYPT reads 8 bytes of the password and takes a 12-bit salt: it is "
	  "cracked in hours; only for very old systems" },
	{ "PBKDF2", G_PBKDF2, "SHA1", false, NULL, 1000, PW_MAX_ROUNDS, PWGEN_PBKDF2_SHA1, 0,
	  NULL },
	{ "SCRAM-SHA-1", G_SCRAM, "SHA1", false, NULL, PW_SCRAM_MIN_ROUNDS, PW_MAX_ROUNDS,
	  PWGEN_PBKDF2_SHA1, 0, NULL },
	{ "SCRAM-SHA-256", G_SCRAM, "SHA256", false, NULL, PW_SCRAM_MIN_ROUNDS, PW_MAX_ROUNDS,
	  PWGEN_PBKDF2_SHA256, 0, NULL },
	{ "SSHA512", G_SALTED, "SHA512", false, NULL, 0, 0, 0, 0, W_FAST },
	{ "SSHA256", G_SALTED, "SHA256", false, NULL, 0, 0, 0, 0, W_FAST },
	{ "SSHA", G_SALTED, "SHA1", false, NULL, 0, 0, 0, 0, W_FAST },
	{ "SMD5", G_SALTED, "MD5", false, NULL, 0, 0, 0, 0, W_FAST },
	{ "SHA512", G_DIGEST, "SHA512", false, NULL, 0, 0, 0, 0, W_DIGEST },
	{ "SHA256", G_DIGEST, "SHA256", false, NULL, 0, 0, 0, 0, W_DIGEST },
	{ "SHA1", G_DIGEST, "SHA1", false, NULL, 0, 0, 0, 0, W_DIGEST },
	{ "SHA", G_DIGEST, "SHA1", false, NULL, 0, 0, 0, 0, W_DIGEST },
	{ "PLAIN-MD5", G_DIGEST, "MD5", true, NULL, 0, 0, 0, 0, W_DIGEST },
	{ "LDAP-MD5", G_DIGEST, "MD5", false, NULL, 0, 0, 0, 0, W_DIGEST },
	{ "CRAM-MD5", G_CRAM_MD5, NULL, false, NULL, 0, 0, 0, 0, W_CRAM },
	{ "HMAC-MD5", G_CRAM_MD5, NULL, false, NULL, 0, 0, 0, 0, W_CRAM },
	{ "PLAIN", G_PLAIN, NULL, false, NULL, 0, 0, 0, 0, W_PLAIN },
	{ "CLEAR", G_PLAIN, NULL, false, NULL, 0, 0, 0, 0, W_PLAIN },
	{ "CLEARTEXT", G_PLAIN, NULL, false, NULL, 0, 0, 0, 0, W_PLAIN },
	{ "PLAIN-TRUNC", G_PLAIN_TRUNC, NULL, false, NULL, 0, 0, 0, 0,
	  "the password itself is stored in the file, and any password that begins "
	  "with it is taken too (Dovecot's rule); prefer ARGON2ID" },
};

#define NGENS (sizeof(gens) / sizeof(gens[0]))

static const struct gen_def *gen_find(const char *scheme)
{
	for (size_t i = 0; i < NGENS; i++)
		if (strcasecmp(gens[i].name, scheme) == 0)
			return &gens[i];
	return NULL;
}

size_t pwgen_count(void)
{
	return NGENS;
}

const char *pwgen_scheme(size_t i, unsigned *default_rounds_r, const char **weak_r)
{
	if (i >= NGENS)
		return NULL;
	if (default_rounds_r != NULL)
		*default_rounds_r = gens[i].max_rounds != 0 ? gens[i].def_rounds : 0;
	if (weak_r != NULL)
		*weak_r = gens[i].weak;
	return gens[i].name;
}

const char *pwgen_canonical(const char *scheme)
{
	const struct gen_def *g = gen_find(scheme);

	return g != NULL ? g->name : NULL;
}

const char *pwgen_warning(const char *scheme)
{
	const struct gen_def *g = gen_find(scheme);

	return g != NULL ? g->weak : NULL;
}

/* base64 (padded, original alphabet) of n bytes appended at out + *len. */
static void put_b64(char *out, size_t *len, const uint8_t *bin, size_t n)
{
	sodium_bin2base64(out + *len, PWGEN_MAX_OUT - *len, bin, n,
			  sodium_base64_VARIANT_ORIGINAL);
	*len += strlen(out + *len);
}

static void put_hex(char *out, size_t *len, const uint8_t *bin, size_t n)
{
	sodium_bin2hex(out + *len, PWGEN_MAX_OUT - *len, bin, n);
	*len += strlen(out + *len);
}

static void put_str(char *out, size_t *len, const char *s)
{
	int n = snprintf(out + *len, PWGEN_MAX_OUT - *len, "%s", s);

	*len += (size_t)n;
}

/* H(a || b) into md; returns its length or 0. */
static unsigned digest(const char *mdname, const void *a, size_t alen, const void *b,
		       size_t blen, uint8_t md[EVP_MAX_MD_SIZE])
{
	const EVP_MD *type = EVP_get_digestbyname(mdname);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned n = 0;

	if (ctx == NULL || type == NULL)
		goto out;
	if (EVP_DigestInit_ex(ctx, type, NULL) != 1 || EVP_DigestUpdate(ctx, a, alen) != 1 ||
	    EVP_DigestUpdate(ctx, b, blen) != 1 || EVP_DigestFinal_ex(ctx, md, &n) != 1)
		n = 0;
out:
	EVP_MD_CTX_free(ctx);
	return n;
}

static int gen_argon2(const struct gen_def *g, const char *pw, unsigned t, char *out,
		      size_t *len)
{
	char str[crypto_pwhash_STRBYTES];
	int alg = g->kind == G_ARGON2ID ? crypto_pwhash_ALG_ARGON2ID13 :
					  crypto_pwhash_ALG_ARGON2I13;

	if (crypto_pwhash_str_alg(str, pw, strlen(pw), t, PWGEN_ARGON2_MEMORY, alg) != 0)
		return -1;	/* out of memory */
	put_str(out, len, str);
	return 0;
}

static int gen_crypt(const struct gen_def *g, const char *pw, unsigned rounds, char *out,
		     size_t *len)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	uint8_t rnd[PWGEN_SALT_BYTES];
	struct crypt_data *data;
	const char *h;
	int rc = -1;

	randombytes_buf(rnd, sizeof(rnd));
	if (crypt_gensalt_rn(g->prefix, rounds, (const char *)rnd, (int)sizeof(rnd), setting,
			     sizeof(setting)) == NULL)
		return -1;
	sodium_memzero(rnd, sizeof(rnd));
	data = calloc(1, sizeof(*data));
	if (data == NULL)
		return -1;
	h = crypt_rn(pw, setting, data, sizeof(*data));
	if (h != NULL && h[0] != '*') {
		put_str(out, len, h);
		rc = 0;
	}
	sodium_memzero(data, sizeof(*data));
	free(data);
	return rc;
}

static int gen_digest(const struct gen_def *g, const char *pw, char *out, size_t *len)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned n = digest(g->md, pw, strlen(pw), "", 0, md);

	if (n == 0)
		return -1;
	if (g->hex)
		put_hex(out, len, md, n);
	else
		put_b64(out, len, md, n);
	sodium_memzero(md, sizeof(md));
	return 0;
}

/* base64(H(password || salt) || salt), as password.c's K_SALTED reads. */
static int gen_salted(const struct gen_def *g, const char *pw, char *out, size_t *len)
{
	uint8_t buf[EVP_MAX_MD_SIZE + PWGEN_SALT_BYTES], salt[PWGEN_SALT_BYTES];
	unsigned n;

	randombytes_buf(salt, sizeof(salt));
	n = digest(g->md, pw, strlen(pw), salt, sizeof(salt), buf);
	if (n == 0)
		return -1;
	memcpy(buf + n, salt, sizeof(salt));
	put_b64(out, len, buf, n + sizeof(salt));
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

/* Dovecot's "$1$<salt>$<rounds>$<hex>": the salt is text (16 characters
 * of crypt's alphabet, as Dovecot writes), used as it stands. */
static int gen_pbkdf2(const char *pw, unsigned rounds, char *out, size_t *len)
{
	static const char chars[] =
		"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	char salt[PWGEN_SALT_BYTES + 1], num[16];
	uint8_t key[20];

	for (size_t i = 0; i < PWGEN_SALT_BYTES; i++)
		salt[i] = chars[randombytes_uniform(sizeof(chars) - 1)];
	salt[PWGEN_SALT_BYTES] = '\0';
	if (PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), (const uint8_t *)salt, PWGEN_SALT_BYTES,
			      (int)rounds, EVP_sha1(), sizeof(key), key) != 1)
		return -1;
	snprintf(num, sizeof(num), "%u", rounds);
	put_str(out, len, "$1$");
	put_str(out, len, salt);
	put_str(out, len, "$");
	put_str(out, len, num);
	put_str(out, len, "$");
	put_hex(out, len, key, sizeof(key));
	sodium_memzero(key, sizeof(key));
	return 0;
}

/* RFC 5802: SaltedPassword = Hi(password, salt, i); ClientKey and
 * ServerKey are HMACs of it; StoredKey = H(ClientKey).  Written as
 * "i,base64(salt),base64(StoredKey),base64(ServerKey)". */
static int gen_scram(const struct gen_def *g, const char *pw, unsigned iter, char *out,
		     size_t *len)
{
	const EVP_MD *md = EVP_get_digestbyname(g->md);
	uint8_t salt[PWGEN_SALT_BYTES], salted[EVP_MAX_MD_SIZE], ck[EVP_MAX_MD_SIZE];
	uint8_t sk[EVP_MAX_MD_SIZE], stored[EVP_MAX_MD_SIZE];
	unsigned dlen, n1 = 0, n2 = 0;
	char num[16];
	int rc = -1;

	if (md == NULL)
		return -1;
	dlen = (unsigned)EVP_MD_get_size(md);
	randombytes_buf(salt, sizeof(salt));
	if (PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, sizeof(salt), (int)iter, md,
			      (int)dlen, salted) != 1 ||
	    HMAC(md, salted, (int)dlen, (const uint8_t *)"Client Key", 10, ck, &n1) == NULL ||
	    HMAC(md, salted, (int)dlen, (const uint8_t *)"Server Key", 10, sk, &n2) == NULL ||
	    n1 != dlen || n2 != dlen || digest(g->md, ck, dlen, "", 0, stored) != dlen)
		goto out;
	snprintf(num, sizeof(num), "%u,", iter);
	put_str(out, len, num);
	put_b64(out, len, salt, sizeof(salt));
	put_str(out, len, ",");
	put_b64(out, len, stored, dlen);
	put_str(out, len, ",");
	put_b64(out, len, sk, dlen);
	rc = 0;
out:
	sodium_memzero(salted, sizeof(salted));
	sodium_memzero(ck, sizeof(ck));
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(stored, sizeof(stored));
	return rc;
}

/* The password as it stands, or base64'd under a ".B64" suffix when it
 * holds a ':' (a passwd-file's field separator); out holds "{NAME}" on
 * entry. */
static void gen_plain(const char *pw, bool trunc, char *out, size_t *len)
{
	char head[24] = "";
	size_t plen = strlen(pw);

	if (trunc)
		snprintf(head, sizeof(head), "%zu-", plen);
	if (strchr(pw, ':') == NULL) {
		put_str(out, len, head);
		put_str(out, len, pw);
		return;
	}
	/* "{PLAIN}" -> "{PLAIN.B64}" */
	(*len)--;
	put_str(out, len, ".B64}");
	char *tmp = xmalloc(strlen(head) + plen + 1);
	memcpy(tmp, head, strlen(head));
	memcpy(tmp + strlen(head), pw, plen + 1);
	put_b64(out, len, (const uint8_t *)tmp, strlen(tmp));
	sodium_memzero(tmp, strlen(tmp));
	free(tmp);
}

bool pwgen_args_ok(const char *scheme, unsigned rounds, char *why, size_t size)
{
	const struct gen_def *g = gen_find(scheme);

	if (g == NULL) {
		snprintf(why, size, "unknown scheme (authctl pw -l lists them)");
		return false;
	}
	if (rounds != 0 && g->max_rounds == 0) {
		snprintf(why, size, "%s takes no rounds", g->name);
		return false;
	}
	if (rounds != 0 && (rounds < g->min_rounds || rounds > g->max_rounds)) {
		snprintf(why, size, "%s: rounds must be %u to %u", g->name, g->min_rounds,
			 g->max_rounds);
		return false;
	}
	return true;
}

enum pwgen_result pwgen_hash(const char *scheme, const char *password, unsigned rounds,
			     char **hash_r, char *why, size_t size)
{
	const struct gen_def *g = gen_find(scheme);
	size_t plen = strlen(password), max, len = 0;
	char *out;
	int rc = -1;

	*hash_r = NULL;
	if (!pwgen_args_ok(scheme, rounds, why, size))
		return PWGEN_BAD_ARGS;
	if (rounds == 0)
		rounds = g->def_rounds;
	if (plen == 0) {
		snprintf(why, size, "empty password (authd refuses every empty password)");
		return PWGEN_BAD_PASSWORD;
	}
	if (strpbrk(password, "\r\n") != NULL) {
		snprintf(why, size, "the password holds a CR or LF, which no login can send");
		return PWGEN_BAD_PASSWORD;
	}
	if (plen > AUTH_MAX_PASSWORD) {
		snprintf(why, size, "password over %d bytes (the longest authd takes)",
			 AUTH_MAX_PASSWORD);
		return PWGEN_BAD_PASSWORD;
	}
	max = g->max_password != 0 ? g->max_password : AUTH_MAX_PASSWORD;
	if (plen > max) {
		/* A hash that ignores the rest would take any password that
		 * starts the same: refused rather than truncated. */
		snprintf(why, size, "%s reads only %zu bytes of a password: this one has %zu",
			 g->name, max, plen);
		return PWGEN_BAD_PASSWORD;
	}

	out = xmalloc(PWGEN_MAX_OUT);
	snprintf(out, PWGEN_MAX_OUT, "{%s}", g->name);
	len = strlen(out);
	switch (g->kind) {
	case G_ARGON2ID:
	case G_ARGON2I:
		rc = gen_argon2(g, password, rounds, out, &len);
		break;
	case G_CRYPT:
		rc = gen_crypt(g, password, rounds, out, &len);
		break;
	case G_DIGEST:
		rc = gen_digest(g, password, out, &len);
		break;
	case G_SALTED:
		rc = gen_salted(g, password, out, &len);
		break;
	case G_PBKDF2:
		rc = gen_pbkdf2(password, rounds, out, &len);
		break;
	case G_SCRAM:
		rc = gen_scram(g, password, rounds, out, &len);
		break;
	case G_CRAM_MD5: {
		uint8_t ctx[32];
		if (password_cram_md5(password, ctx)) {
			put_hex(out, &len, ctx, sizeof(ctx));
			rc = 0;
		}
		sodium_memzero(ctx, sizeof(ctx));
		break;
	}
	case G_PLAIN:
	case G_PLAIN_TRUNC:
		gen_plain(password, g->kind == G_PLAIN_TRUNC, out, &len);
		rc = 0;
		break;
	}
	if (rc == -1) {
		snprintf(why, size, "%s: hashing failed (out of memory?)", g->name);
		goto fail;
	}
	/* Only what authd takes leaves this file. */
	if (!password_scheme_check(out, why, size))
		goto fail;
	if (password_verify(out, password) != PW_MATCH) {
		snprintf(why, size, "%s: the new hash does not verify", g->name);
		goto fail;
	}
	*hash_r = out;
	return PWGEN_OK;
fail:
	sodium_memzero(out, PWGEN_MAX_OUT);
	free(out);
	return PWGEN_FAILED;
}
