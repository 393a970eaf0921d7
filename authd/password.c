/*
 * password.c - password schemes of passwd-files (Dovecot-compatible).
 *
 *   {ARGON2ID} {ARGON2I}                  libsodium crypto_pwhash_str_verify
 *   {SHA512-CRYPT} {SHA256-CRYPT}
 *   {BLF-CRYPT} {CRYPT}, bare "$id$..."   libcrypt (libxcrypt: also yescrypt $y$)
 *   {PLAIN} {CLEAR} {CLEARTEXT}           constant-time compare
 *
 * Everything here may take tens of milliseconds and megabytes (argon2):
 * worker threads only, with the caller capping concurrency.
 */
#include <crypt.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "authd/authd.h"

enum scheme { S_UNKNOWN, S_ARGON2, S_CRYPT, S_PLAIN };

struct scheme_def {
	const char *prefix;	/* "{NAME}" */
	enum scheme scheme;
	const char *must_start;	/* what the hash after the prefix looks like */
};

static const struct scheme_def schemes[] = {
	{ "{ARGON2ID}", S_ARGON2, "$argon2id$" },
	{ "{ARGON2I}", S_ARGON2, "$argon2i$" },
	{ "{SHA512-CRYPT}", S_CRYPT, "$6$" },
	{ "{SHA256-CRYPT}", S_CRYPT, "$5$" },
	{ "{BLF-CRYPT}", S_CRYPT, "$2" },
	{ "{CRYPT}", S_CRYPT, "" },
	{ "{PLAIN}", S_PLAIN, "" },
	{ "{CLEAR}", S_PLAIN, "" },
	{ "{CLEARTEXT}", S_PLAIN, "" },
};

/* Finds the scheme of stored; *hash_r points past the prefix. */
static enum scheme scheme_of(const char *stored, const char **hash_r)
{
	if (stored[0] == '{') {
		for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
			size_t n = strlen(schemes[i].prefix);
			if (strncasecmp(stored, schemes[i].prefix, n) == 0) {
				*hash_r = stored + n;
				if (strncmp(*hash_r, schemes[i].must_start,
					    strlen(schemes[i].must_start)) != 0)
					return S_UNKNOWN;
				return schemes[i].scheme;
			}
		}
		return S_UNKNOWN;
	}
	/* No prefix: Dovecot's passwd-file default is CRYPT; argon2 strings
	 * are recognised by their own prefix. */
	*hash_r = stored;
	if (strncmp(stored, "$argon2id$", 10) == 0 || strncmp(stored, "$argon2i$", 9) == 0)
		return S_ARGON2;
	if (stored[0] == '\0')
		return S_UNKNOWN;
	return S_CRYPT;
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

bool password_scheme_known(const char *stored)
{
	const char *hash;
	int c;

	switch (scheme_of(stored, &hash)) {
	case S_CRYPT:
		/* Ask libcrypt whether it knows this method (cheap: no hashing);
		 * DES and MD5 are "legacy" but still accepted. */
		if (hash[0] == '*' || hash[0] == '!')
			return false;
		c = crypt_checksalt(hash);
		return c != CRYPT_SALT_INVALID && c != CRYPT_SALT_METHOD_DISABLED;
	case S_ARGON2:
		return argon2_well_formed(hash);
	case S_PLAIN:
		return true;
	case S_UNKNOWN:
		break;
	}
	return false;
}

bool password_is_plain(const char *stored)
{
	const char *hash;

	return scheme_of(stored, &hash) == S_PLAIN;
}

static enum pw_check verify_plain(const char *stored, const char *password)
{
	uint8_t a[crypto_generichash_BYTES], b[crypto_generichash_BYTES];
	enum pw_check r;

	/* Hash both so the compare takes the same time whatever the lengths. */
	crypto_generichash(a, sizeof(a), (const uint8_t *)stored, strlen(stored), NULL, 0);
	crypto_generichash(b, sizeof(b), (const uint8_t *)password, strlen(password), NULL, 0);
	r = crypto_verify_32(a, b) == 0 ? PW_MATCH : PW_MISMATCH;
	sodium_memzero(b, sizeof(b));
	return r;
}

static enum pw_check verify_crypt(const char *hash, const char *password)
{
	struct crypt_data *data = calloc(1, sizeof(*data));
	enum pw_check r = PW_BAD_HASH;
	const char *out;
	size_t n;

	if (data == NULL)
		return PW_BAD_HASH;
	/* libcrypt refuses such long passphrases; it cannot be the password. */
	if (strlen(password) >= CRYPT_MAX_PASSPHRASE_SIZE) {
		free(data);
		return PW_MISMATCH;
	}
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

	if (n >= sizeof(str) || !argon2_well_formed(hash))
		return PW_BAD_HASH;
	memcpy(str, hash, n + 1);
	/* Well-formed, so -1 now means a wrong password. */
	return crypto_pwhash_str_verify(str, password, strlen(password)) == 0 ?
		PW_MATCH : PW_MISMATCH;
}

enum pw_check password_verify(const char *stored, const char *password)
{
	const char *hash;

	switch (scheme_of(stored, &hash)) {
	case S_ARGON2: return verify_argon2(hash, password);
	case S_CRYPT: return verify_crypt(hash, password);
	case S_PLAIN: return verify_plain(hash, password);
	case S_UNKNOWN: break;
	}
	return PW_BAD_HASH;
}
