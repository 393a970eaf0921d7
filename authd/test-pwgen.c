/*
 * test-pwgen.c - unit tests of authd/pwgen.c, each hash checked with
 * password.c's password_verify (itself tested against independent
 * vectors in test-password.c).  The unsalted digests are also compared
 * with the strings Dovecot's `doveadm pw` wrote for the same password
 * (tests/integration/test_password_schemes.py's VECTORS).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "authd/authd.h"
#include "common/limits.h"
#include "tests/unit.h"

#define PW "correct horse battery staple"

/* Hashes pw in scheme with rounds; NULL (and a failed CHECK) if refused. */
static char *gen(const char *scheme, const char *pw, unsigned rounds)
{
	char why[256], *h = NULL;
	enum pwgen_result r = pwgen_hash(scheme, pw, rounds, &h, why, sizeof(why));

	if (r != PWGEN_OK)
		fprintf(stderr, "  %s: %s\n", scheme, why);
	CHECK_INT(r, PWGEN_OK);
	return h;
}

static enum pwgen_result refused(const char *scheme, const char *pw, unsigned rounds)
{
	char why[256], *h = (char *)"x";
	enum pwgen_result r = pwgen_hash(scheme, pw, rounds, &h, why, sizeof(why));

	CHECK(h == NULL);
	CHECK(why[0] != '\0');
	CHECK(strstr(why, pw[0] != '\0' ? pw : "\x01") == NULL);	/* never the password */
	free(h);
	return r;
}

/* The cheapest rounds each costly scheme takes, to keep the loop fast;
 * test_defaults checks the default costs. */
static unsigned cheap_rounds(const char *scheme)
{
	static const struct { const char *name; unsigned rounds; } cheap[] = {
		{ "ARGON2ID", 1 }, { "ARGON2I", 3 }, { "SHA512-CRYPT", 1000 },
		{ "SHA256-CRYPT", 1000 }, { "BLF-CRYPT", 4 }, { "PBKDF2", 1000 },
		{ "SCRAM-SHA-1", 4096 }, { "SCRAM-SHA-256", 4096 },
	};
	for (size_t i = 0; i < sizeof(cheap) / sizeof(cheap[0]); i++)
		if (strcmp(cheap[i].name, scheme) == 0)
			return cheap[i].rounds;
	return 0;
}

static bool is_salted(const char *scheme)
{
	static const char *const unsalted[] = {
		"SHA512", "SHA256", "SHA1", "SHA", "PLAIN-MD5", "LDAP-MD5", "CRAM-MD5",
		"HMAC-MD5", "PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC",
	};
	for (size_t i = 0; i < sizeof(unsalted) / sizeof(unsalted[0]); i++)
		if (strcmp(unsalted[i], scheme) == 0)
			return false;
	return true;
}

static void test_every_scheme_verifies(void)
{
	CHECK(pwgen_count() >= 28);
	for (size_t i = 0; i < pwgen_count(); i++) {
		const char *s = pwgen_scheme(i, NULL, NULL);
		const char *pw = strcmp(s, "DES-CRYPT") == 0 ? "8bytes!!" : PW;
		char prefix[40], why[256], *a = gen(s, pw, cheap_rounds(s)), *b;

		if (a == NULL)
			continue;
		snprintf(prefix, sizeof(prefix), "{%s}", s);
		CHECK(strncmp(a, prefix, strlen(prefix)) == 0);
		CHECK(password_scheme_check(a, why, sizeof(why)));
		CHECK_INT(password_verify(a, pw), PW_MATCH);
		CHECK_INT(password_verify(a, "correct horse battery stapl"), PW_MISMATCH);
		CHECK_INT(password_verify(a, "wrong"), PW_MISMATCH);
		CHECK(strpbrk(a, ":\r\n") == NULL);	/* one passwd-file field */
		b = gen(s, pw, cheap_rounds(s));
		if (b != NULL)
			CHECK_INT(strcmp(a, b) != 0, is_salted(s));
		free(a);
		free(b);
	}
}

static void test_matches_doveadm(void)
{
	static const struct { const char *scheme, *want; } v[] = {
		{ "SHA", "{SHA}q/eq1kOINtvlJqojGr3i0O73TUI=" },
		{ "SHA256", "{SHA256}xLvLH77JnWW/WdhcjLYu4tuWPw/hBvSD2a+nO9Tjmoo=" },
		{ "PLAIN-MD5", "{PLAIN-MD5}9cc2ae8a1ba7a93da39b46fc1019c481" },
		{ "LDAP-MD5", "{LDAP-MD5}nMKuihunqT2jm0b8EBnEgQ==" },
		{ "CRAM-MD5",
		  "{CRAM-MD5}09eae0fafdb8b11dde53f0031217a5c4938a03ccb3eebe1b64e0c243b569921c" },
		{ "PLAIN-TRUNC", "{PLAIN-TRUNC}28-" PW },
		{ "plain", "{PLAIN}" PW },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char *h = gen(v[i].scheme, PW, 0);
		CHECK_STR(h, v[i].want);
		free(h);
	}
}

static void test_defaults(void)
{
	char *h;
	unsigned r;

	CHECK_STR(pwgen_scheme(0, &r, NULL), "ARGON2ID");
	CHECK_INT(r, 2);
	h = gen("argon2id", PW, 0);	/* names are case-insensitive */
	CHECK(h != NULL && strncmp(h, "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$", 41) == 0);
	free(h);
	h = gen("ARGON2I", PW, 0);
	CHECK(h != NULL && strncmp(h, "{ARGON2I}$argon2i$v=19$m=19456,t=3,p=1$", 39) == 0);
	free(h);
	h = gen("BLF-CRYPT", PW, 0);
	CHECK(h != NULL && strncmp(h, "{BLF-CRYPT}$2b$12$", 18) == 0);
	free(h);
	h = gen("SHA512-CRYPT", PW, 0);	/* libxcrypt's default: 5000, unwritten */
	CHECK(h != NULL && strncmp(h, "{SHA512-CRYPT}$6$", 17) == 0 &&
	      strstr(h, "rounds=") == NULL);
	free(h);
	h = gen("SHA512-CRYPT", PW, 20000);
	CHECK(h != NULL && strncmp(h, "{SHA512-CRYPT}$6$rounds=20000$", 30) == 0);
	free(h);
	h = gen("CRYPT", PW, 0);	/* libxcrypt's preferred method */
	CHECK(h != NULL && strncmp(h, "{CRYPT}$", 8) == 0);
	free(h);
	h = gen("PBKDF2", PW, 0);
	CHECK(h != NULL && strstr(h, "$1300000$") != NULL);
	free(h);
	h = gen("SCRAM-SHA-256", PW, 0);
	CHECK(h != NULL && strncmp(h, "{SCRAM-SHA-256}600000,", 22) == 0);
	free(h);
	CHECK(pwgen_warning("ARGON2ID") == NULL);
	CHECK(pwgen_warning("PLAIN") != NULL);
	CHECK(pwgen_warning("DES-CRYPT") != NULL);
	CHECK_STR(pwgen_canonical("scram-sha-1"), "SCRAM-SHA-1");
	CHECK(pwgen_canonical("DIGEST-MD5") == NULL);
	CHECK(pwgen_scheme(pwgen_count(), NULL, NULL) == NULL);
}

static void test_refusals(void)
{
	char big[AUTH_MAX_PASSWORD + 2];

	CHECK_INT(refused("NOPE", PW, 0), PWGEN_BAD_ARGS);
	CHECK_INT(refused("DIGEST-MD5", PW, 0), PWGEN_BAD_ARGS);	/* authd refuses it */
	CHECK_INT(refused("SHA256", PW, 5000), PWGEN_BAD_ARGS);	/* takes no rounds */
	CHECK_INT(refused("PBKDF2", PW, PW_MAX_ROUNDS + 1), PWGEN_BAD_ARGS);
	CHECK_INT(refused("SCRAM-SHA-1", PW, PW_SCRAM_MIN_ROUNDS - 1), PWGEN_BAD_ARGS);
	CHECK_INT(refused("BLF-CRYPT", PW, 3), PWGEN_BAD_ARGS);
	CHECK_INT(refused("ARGON2I", PW, 2), PWGEN_BAD_ARGS);
	CHECK(!pwgen_args_ok("SHA", 5, (char[64]){ 0 }, 64));
	CHECK(pwgen_args_ok("pbkdf2", 5000, (char[64]){ 0 }, 64));
	CHECK_INT(refused("ARGON2ID", "", 0), PWGEN_BAD_PASSWORD);
	CHECK_INT(refused("ARGON2ID", "a\rb", 0), PWGEN_BAD_PASSWORD);
	CHECK_INT(refused("PLAIN", "a\nb", 0), PWGEN_BAD_PASSWORD);
	/* Truncating schemes: a longer password is refused, not cut. */
	CHECK_INT(refused("DES-CRYPT", "123456789", 0), PWGEN_BAD_PASSWORD);
	memset(big, 'x', sizeof(big));
	big[73] = '\0';
	CHECK_INT(refused("BLF-CRYPT", big, 4), PWGEN_BAD_PASSWORD);
	big[72] = '\0';
	free(gen("BLF-CRYPT", big, 4));
	memset(big, 'x', sizeof(big));
	big[512] = '\0';	/* CRYPT_MAX_PASSPHRASE_SIZE */
	CHECK_INT(refused("SHA512-CRYPT", big, 1000), PWGEN_BAD_PASSWORD);
	big[511] = '\0';
	free(gen("SHA512-CRYPT", big, 1000));
	memset(big, 'x', sizeof(big));
	big[AUTH_MAX_PASSWORD + 1] = '\0';
	CHECK_INT(refused("PLAIN", big, 0), PWGEN_BAD_PASSWORD);
	big[AUTH_MAX_PASSWORD] = '\0';
	char *h = gen("ARGON2ID", big, 1);
	CHECK(h != NULL && password_verify(h, big) == PW_MATCH);
	free(h);
}

/* A ':' would end the passwd-file field: plain text goes base64. */
static void test_plain_with_colon(void)
{
	char *h = gen("PLAIN", "a:b c", 0);

	CHECK_STR(h, "{PLAIN.B64}YTpiIGM=");
	CHECK(h != NULL && password_verify(h, "a:b c") == PW_MATCH);
	free(h);
	h = gen("PLAIN-TRUNC", "a:b", 0);
	CHECK(h != NULL && strncmp(h, "{PLAIN-TRUNC.B64}", 17) == 0 &&
	      password_verify(h, "a:b") == PW_MATCH && password_verify(h, "a:") == PW_MISMATCH);
	/* Dovecot's rule, as doveadm writes it: "3-a:b" takes "a:b..." too
	 * (pwgen.c's warning says so). */
	CHECK(h != NULL && password_verify(h, "a:bc") == PW_MATCH);
	free(h);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	UNIT_RUN(test_every_scheme_verifies);
	UNIT_RUN(test_matches_doveadm);
	UNIT_RUN(test_defaults);
	UNIT_RUN(test_refusals);
	UNIT_RUN(test_plain_with_colon);
	return unit_finish();
}
