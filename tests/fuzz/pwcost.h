/*
 * pwcost.h - for the fuzz harnesses that verify stored hashes
 * (fuzz-password.c, fuzz-passwd-file.c): is a stored string cheap enough
 * to hash thousands of times a second?
 *
 * The slow schemes carry their cost in the string (argon2's m= and t=,
 * sha-crypt's rounds=, bcrypt's cost, PBKDF2's rounds), so a fuzzer that
 * verified everything would spend its time in a few inputs that ask for
 * seconds of CPU.  Instead, the cost is read here from the string and a
 * hash is verified only under these caps; above them it is still decoded
 * and checked (password_scheme_check), just not hashed.  A harness-side
 * reading: password.c is not changed for the fuzzer, and a string this
 * misreads as cheap only costs time, never a false alarm.
 *
 *   argon2       m <= 64 KiB and t <= 4
 *   $5$ / $6$    an explicit rounds=N with N <= 1000 (the default is 5000)
 *   $2?$         bcrypt cost 04 (16 key expansions)
 *   $1$, DES     always (fixed, cheap); so {MD5} always
 *   PBKDF2       rounds <= 1000
 *   SCRAM        never (RFC 5802 needs at least 4096 iterations)
 *   other crypt  never ($y$ yescrypt, $7$ scrypt, $gy$, $md5...: their own
 *                cost encodings)
 *   digests, salted digests, PLAIN, CRAM-MD5: always.
 */
#ifndef TESTS_FUZZ_PWCOST_H
#define TESTS_FUZZ_PWCOST_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The number after key in s (up to the next non-digit), or ULONG_MAX. */
static unsigned long pwcost_num(const char *s, const char *key)
{
	const char *p = strstr(s, key);
	unsigned long v = 0;
	size_t i;

	if (p == NULL)
		return (unsigned long)-1;
	p += strlen(key);
	for (i = 0; p[i] >= '0' && p[i] <= '9' && i < 9; i++)
		v = v * 10 + (unsigned long)(p[i] - '0');
	return i == 0 ? (unsigned long)-1 : v;
}

/* A crypt(3) or argon2 string (no scheme prefix). */
static bool pwcost_crypt_cheap(const char *h)
{
	if (strncmp(h, "$argon2", 7) == 0)
		return pwcost_num(h, "m=") <= 64 && pwcost_num(h, "t=") <= 4;
	if (strncmp(h, "$5$", 3) == 0 || strncmp(h, "$6$", 3) == 0)
		return strncmp(h + 3, "rounds=", 7) == 0 && pwcost_num(h + 3, "rounds=") <= 1000;
	if (h[0] == '$' && h[1] == '2' && h[2] != '\0' && h[3] == '$')
		return strncmp(h + 4, "04$", 3) == 0;
	if (strncmp(h, "$1$", 3) == 0)
		return true;
	return h[0] != '$' && h[0] != '_';	/* DES; "_" is BSDi's extended DES */
}

/* True if verifying stored costs little (see the head of this file). */
static bool pwcost_cheap(const char *stored)
{
	const char *close, *h;
	size_t n;

	if (stored[0] != '{')
		return pwcost_crypt_cheap(stored);
	close = strchr(stored, '}');
	if (close == NULL)
		return true;	/* refused before any hashing */
	h = close + 1;
	n = strcspn(stored + 1, ".}");
#define IS(name) (n == strlen(name) && strncasecmp(stored + 1, name, n) == 0)
	if (IS("ARGON2I") || IS("ARGON2ID") || IS("CRYPT") || IS("SHA512-CRYPT") ||
	    IS("SHA256-CRYPT") || IS("BLF-CRYPT") || IS("DES-CRYPT") || IS("MD5-CRYPT"))
		return pwcost_crypt_cheap(h);
	if (IS("PBKDF2")) {
		/* $1$salt$rounds$hex: the rounds are the third field */
		const char *d = strncmp(h, "$1$", 3) == 0 ? strchr(h + 3, '$') : NULL;
		return d == NULL || pwcost_num(d, "$") <= 1000;
	}
	if (IS("SCRAM-SHA-1") || IS("SCRAM-SHA-256"))
		return false;
#undef IS
	return true;
}

#endif
