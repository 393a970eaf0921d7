/*
 * fuzz-password.c - libFuzzer harness for the stored-hash decoder of
 * authd/password.c (scheme prefix, encoding suffix, base64/hex, digest and
 * salt lengths, PBKDF2/SCRAM/PLAIN-TRUNC fields).
 *
 * Input: the stored string, then optionally a NUL and the password.
 * Properties checked:
 *   - password_scheme_check() refuses  =>  password_verify() is PW_BAD_HASH
 *     (the load-time check never lets through what verify would call broken,
 *     and verify never matches what the load refused);
 *   - for the decoded (non-crypt) schemes, accepted  =>  never PW_BAD_HASH
 *     (crypt and argon2 strings are verified too, not checked for this);
 *   - the reason never holds the text after the prefix;
 *   - the scheme name is case-insensitive;
 *   - authd/shacrypt.c agrees with libcrypt on every "$6$" string it takes
 *     (cheap ones: rounds=1000): the same verdict for the stored string,
 *     and a match for libcrypt's own string of that salt and password.
 * Slow schemes (argon2, crypt(3), PBKDF2, SCRAM: their cost is in the
 * stored string) are verified only when that cost is small
 * (tests/fuzz/pwcost.h: argon2 m <= 64 KiB and t <= 4, sha-crypt
 * rounds <= 1000, bcrypt cost 04, PBKDF2 <= 1000 rounds, never SCRAM);
 * above it they are decoded and checked, not hashed.
 */
#include <crypt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "authd/authd.h"
#include "authd/shacrypt.h"
#include "tests/fuzz/pwcost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A crypt(3) or argon2 string, which libcrypt or libsodium may still
 * refuse after password_scheme_check() accepted it. */
static bool is_crypt(const char *stored)
{
	const char *end;
	size_t n;

	if (stored[0] != '{')
		return true;	/* bare: crypt or argon2 */
	end = stored + 1 + strcspn(stored + 1, ".}");
	n = (size_t)(end - stored - 1);
	return (n >= 5 && strncasecmp(end - 5, "CRYPT", 5) == 0) ||
	       (n == 3 && strncasecmp(stored + 1, "MD5", 3) == 0) ||
	       (n >= 6 && strncasecmp(stored + 1, "ARGON2", 6) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	char *stored, *password, why[256];
	const char *nul;
	bool ok;

	if (!init) {
		if (sodium_init() == -1)
			abort();
		init = true;
	}
	if (size > 8192)
		return 0;
	nul = memchr(data, '\0', size);
	stored = malloc(size + 1);
	password = malloc(size + 64);	/* room for the default password */
	if (stored == NULL || password == NULL)
		abort();
	if (nul != NULL) {
		size_t n = (size_t)(nul - (const char *)data);
		memcpy(stored, data, n);
		stored[n] = '\0';
		memcpy(password, nul + 1, size - n - 1);
		password[size - n - 1] = '\0';	/* may hold further NULs: cut there */
	} else {
		memcpy(stored, data, size);
		stored[size] = '\0';
		snprintf(password, size + 64, "%s", "correct horse battery staple");
	}

	why[0] = '\0';
	ok = password_scheme_check(stored, why, sizeof(why));
	if (ok != password_scheme_known(stored))
		abort();
	if (!ok && why[0] == '\0')
		abort();
	/* The reason may quote only the table's names and fixed words: never
	 * 8 bytes of what follows the prefix.  Only probes holding '/', '+'
	 * or '=' (base64, never in a reason) are checked, so a hash that
	 * happens to spell a scheme name is not a false alarm. */
	if (!ok) {
		const char *after = stored[0] == '{' && strchr(stored, '}') != NULL ?
			strchr(stored, '}') + 1 : stored;
		if (strlen(after) >= 8) {
			char probe[9];
			memcpy(probe, after, 8);
			probe[8] = '\0';
			if (strpbrk(probe, "/+=") != NULL && strstr(why, probe) != NULL)
				abort();
		}
	}
	if (pwcost_cheap(stored)) {
		enum pw_check r = password_verify(stored, password);
		if (!ok && r != PW_BAD_HASH)
			abort();
		if (ok && r == PW_BAD_HASH && !is_crypt(stored))
			abort();
		/* Case of the scheme name does not matter. */
		if (stored[0] == '{') {
			for (char *p = stored + 1; *p != '\0' && *p != '}'; p++)
				if (*p >= 'a' && *p <= 'z')
					*p = (char)(*p - 32);
			if (password_verify(stored, password) != r)
				abort();
		}
	}
	/* shacrypt.c against libcrypt, on the string after any {SCHEME}. */
	const char *h = stored[0] == '{' && strchr(stored, '}') != NULL ?
		strchr(stored, '}') + 1 : stored;
	if (strncmp(h, "$6$", 3) == 0 && pwcost_crypt_cheap(h) &&
	    strlen(password) < CRYPT_MAX_PASSPHRASE_SIZE) {
		int mine = shacrypt512_verify(h, password);

		if (mine != SHACRYPT_NOT_MINE) {
			static struct crypt_data cd;
			char again[CRYPT_OUTPUT_SIZE];
			const char *out = crypt_rn(password, h, &cd, sizeof(cd));

			if ((out != NULL && strcmp(out, h) == 0) != (mine == SHACRYPT_MATCH))
				abort();
			if (out == NULL || out[0] != '$')
				abort();	/* libcrypt refused what shacrypt.c took */
			snprintf(again, sizeof(again), "%s", out);
			if (shacrypt512_verify(again, password) != SHACRYPT_MATCH)
				abort();
		}
	}
	free(stored);
	free(password);
	return 0;
}
