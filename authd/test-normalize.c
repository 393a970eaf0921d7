/*
 * test-normalize.c - unit tests of authd/normalize.c alone.
 *
 * Each test fills a struct config by hand (zeroed, then only the [authd]
 * settings user_normalize() reads) instead of loading a file, so that
 * only normalize.c is under test.
 */
#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "authd/authd.h"
#include "tests/unit.h"

/* Canary byte written around the output to catch writes past `size`. */
#define CANARY 'Z'

static struct config conf;

static void conf_reset(bool lowercase, bool strip, const char *domain)
{
	static char domain_buf[256];

	memset(&conf, 0, sizeof(conf));
	conf.authd.lowercase_usernames = lowercase;
	conf.authd.strip_domain = strip;
	if (domain != NULL) {
		snprintf(domain_buf, sizeof(domain_buf), "%s", domain);
		conf.authd.default_domain = domain_buf;
	}
}

/* Normalises in with a roomy buffer; checks the result is want (NULL:
 * refused) and that nothing was written past the terminating NUL. */
static void check_norm(const char *in, const char *want)
{
	char out[AUTH_MAX_USER + 1 + 8];
	int r;

	memset(out, CANARY, sizeof(out));
	r = user_normalize(&conf, in, out, AUTH_MAX_USER + 1);
	if (want == NULL) {
		if (r != -1)
			fprintf(stderr, "  \"%s\" gave \"%s\", want refusal\n", in, out);
		CHECK_INT(r, -1);
	} else {
		if (r != 0)
			fprintf(stderr, "  \"%s\" refused, want \"%s\"\n", in, want);
		CHECK_INT(r, 0);
		if (r == 0) {
			/* strip_domain cuts in place: the domain stays after
			 * the NUL, so look past the longer of the two. */
			size_t used = strlen(in) > strlen(want) ? strlen(in) : strlen(want);
			CHECK_STR(out, want);
			CHECK(out[used + 1] == CANARY);
		}
	}
	CHECK(out[AUTH_MAX_USER + 1] == CANARY);
}

/* Normalises in into exactly `size` bytes of a larger buffer; returns
 * user_normalize()'s answer and checks the bytes after `size` are intact. */
static int norm_sized(const char *in, size_t size, char *out, size_t outsize)
{
	int r;

	memset(out, CANARY, outsize);
	r = user_normalize(&conf, in, out, size);
	for (size_t i = size; i < outsize; i++)
		CHECK(out[i] == CANARY);
	return r;
}

static void test_unchanged(void)
{
	conf_reset(false, false, NULL);
	check_norm("alice", "alice");
	check_norm("Alice", "Alice");
	check_norm("alice@example.com", "alice@example.com");
	check_norm("a", "a");
	check_norm("john smith", "john smith");
	check_norm("~!#$%^&*()_+-=[]{}|;':\",./<>?`", "~!#$%^&*()_+-=[]{}|;':\",./<>?`");
	/* Bytes >= 0x80 are not control characters: UTF-8 names pass. */
	check_norm("j\xc3\xb6rg", "j\xc3\xb6rg");
	check_norm("\xff\x80", "\xff\x80");
}

static void test_trim(void)
{
	conf_reset(false, false, NULL);
	check_norm(" alice", "alice");
	check_norm("alice ", "alice");
	check_norm("   alice   ", "alice");
	check_norm("\talice", "alice");
	check_norm("alice\t", "alice");
	check_norm(" \t \talice\t \t ", "alice");
	check_norm("  john smith  ", "john smith");
	check_norm(" a ", "a");
	/* Only space and tab are trimmed; inside a name a tab is a control
	 * character. */
	check_norm("john\tsmith", NULL);
	check_norm("alice\r", NULL);
	check_norm("alice\n", NULL);
	check_norm("\nalice", NULL);
	check_norm("\valice", NULL);
	check_norm("alice\f", NULL);
}

static void test_empty(void)
{
	conf_reset(false, false, NULL);
	check_norm("", NULL);
	check_norm(" ", NULL);
	check_norm("\t", NULL);
	check_norm("   ", NULL);
	check_norm(" \t \t ", NULL);
	/* Nothing is made up for an empty name, not even with a domain. */
	conf_reset(true, false, "example.com");
	check_norm("", NULL);
	check_norm(" \t", NULL);
	conf_reset(true, true, "example.com");
	check_norm("", NULL);
	check_norm("  ", NULL);
}

static void test_control_characters(void)
{
	char in[8];

	conf_reset(false, false, NULL);
	for (int ch = 0x01; ch < 0x20; ch++) {
		if (ch == '\t')
			continue;	/* trimmed at the ends, refused inside */
		snprintf(in, sizeof(in), "a%cb", ch);
		check_norm(in, NULL);
		snprintf(in, sizeof(in), "%cab", ch);
		check_norm(in, NULL);
		snprintf(in, sizeof(in), "ab%c", ch);
		check_norm(in, NULL);
	}
	check_norm("a\x7f" "b", NULL);
	check_norm("\x7f", NULL);
	check_norm("alice\x7f", NULL);
	check_norm("\x1b[31malice", NULL);
	check_norm("alice\t@example.com", NULL);
	/* Space, '~' and 0x80 are the neighbours that pass. */
	check_norm("a b", "a b");
	check_norm("a~b", "a~b");
	check_norm("a\x80" "b", "a\x80" "b");
	/* Refused whatever the other settings. */
	conf_reset(true, true, "example.com");
	check_norm("al\nice@example.com", NULL);
	check_norm("alice@exa\x7fmple.com", NULL);
	check_norm("alice@example.com\x01", NULL);
}

static void test_lowercase(void)
{
	conf_reset(true, false, NULL);
	check_norm("Alice", "alice");
	check_norm("ALICE@EXAMPLE.COM", "alice@example.com");
	check_norm("  MiXeD CaSe\t", "mixed case");
	check_norm("alice", "alice");
	check_norm("A1-B_2.C", "a1-b_2.c");
	/* ASCII only: UTF-8 bytes are left alone. */
	check_norm("J\xc3\x96RG", "j\xc3\x96rg");

	conf_reset(false, false, NULL);
	check_norm("Alice", "Alice");
	check_norm("ALICE@EXAMPLE.COM", "ALICE@EXAMPLE.COM");
}

static void test_strip_domain(void)
{
	conf_reset(false, true, NULL);
	check_norm("alice@example.com", "alice");
	check_norm("Alice@Example.com", "Alice");
	check_norm("alice", "alice");
	check_norm("alice@", "alice");
	check_norm("  alice@example.com  ", "alice");
	check_norm("a@b@c", "a");
	/* Nothing left before the '@'. */
	check_norm("@example.com", NULL);
	check_norm("@", NULL);
	check_norm(" @example.com", NULL);
	check_norm("\t@", NULL);

	conf_reset(true, true, NULL);
	check_norm("Alice@EXAMPLE.com", "alice");

	/* strip_domain wins over default_domain: no domain is added back. */
	conf_reset(false, true, "example.com");
	check_norm("alice", "alice");
	check_norm("alice@other.org", "alice");
	check_norm("@other.org", NULL);
}

static void test_default_domain(void)
{
	conf_reset(false, false, "example.com");
	check_norm("alice", "alice@example.com");
	check_norm("  alice\t", "alice@example.com");
	check_norm("Alice", "Alice@example.com");
	/* Only added when the name has no '@'. */
	check_norm("alice@other.org", "alice@other.org");
	check_norm("alice@", "alice@");
	check_norm("@other.org", "@other.org");

	/* The domain follows lowercase_usernames too. */
	conf_reset(false, false, "Example.COM");
	check_norm("Alice", "Alice@Example.COM");
	conf_reset(true, false, "Example.COM");
	check_norm("Alice", "alice@example.com");
	check_norm("Alice@Other.ORG", "alice@other.org");

	/* Empty or unset: nothing added. */
	conf_reset(false, false, "");
	check_norm("alice", "alice");
	conf_reset(false, false, NULL);
	check_norm("alice", "alice");
}

static void test_buffer_limits(void)
{
	char out[64];

	conf_reset(false, false, NULL);
	/* "alice" needs 6 bytes. */
	CHECK_INT(norm_sized("alice", 6, out, sizeof(out)), 0);
	CHECK_STR(out, "alice");
	CHECK_INT(norm_sized("alice", 5, out, sizeof(out)), -1);
	CHECK_INT(norm_sized("a", 2, out, sizeof(out)), 0);
	CHECK_STR(out, "a");
	CHECK_INT(norm_sized("a", 1, out, sizeof(out)), -1);
	CHECK_INT(norm_sized("a", 0, out, sizeof(out)), -1);
	/* The limit applies to the trimmed name. */
	CHECK_INT(norm_sized("  alice\t\t", 6, out, sizeof(out)), 0);
	CHECK_STR(out, "alice");
	CHECK_INT(norm_sized("  alice\t\t", 5, out, sizeof(out)), -1);

	/* With a default domain the whole result must fit:
	 * "bob@example.com" is 15 characters, 16 bytes. */
	conf_reset(false, false, "example.com");
	CHECK_INT(norm_sized("bob", 16, out, sizeof(out)), 0);
	CHECK_STR(out, "bob@example.com");
	CHECK_INT(norm_sized("bob", 15, out, sizeof(out)), -1);
	CHECK_INT(norm_sized("bob", 5, out, sizeof(out)), -1);
	CHECK_INT(norm_sized("bob", 4, out, sizeof(out)), -1);
	CHECK_INT(norm_sized("bob", 3, out, sizeof(out)), -1);
	/* A name that has its own domain only needs its own length. */
	CHECK_INT(norm_sized("b@x", 4, out, sizeof(out)), 0);
	CHECK_STR(out, "b@x");
	CHECK_INT(norm_sized("b@x", 3, out, sizeof(out)), -1);

	/* strip_domain: the name is copied whole before the domain is cut,
	 * so the input (trimmed) must fit even though the result is shorter. */
	conf_reset(false, true, NULL);
	CHECK_INT(norm_sized("bob@example.com", 16, out, sizeof(out)), 0);
	CHECK_STR(out, "bob");
	CHECK_INT(norm_sized("bob@example.com", 15, out, sizeof(out)), -1);
}

/* The size request.c uses: AUTH_MAX_USER characters and a NUL. */
static void test_max_user(void)
{
	char in[AUTH_MAX_USER + 3];
	char out[AUTH_MAX_USER + 16];

	conf_reset(false, false, NULL);
	memset(in, 'u', AUTH_MAX_USER);
	in[AUTH_MAX_USER] = '\0';
	CHECK_INT(norm_sized(in, AUTH_MAX_USER + 1, out, sizeof(out)), 0);
	CHECK_INT(strlen(out), AUTH_MAX_USER);
	in[AUTH_MAX_USER] = 'u';
	in[AUTH_MAX_USER + 1] = '\0';
	CHECK_INT(norm_sized(in, AUTH_MAX_USER + 1, out, sizeof(out)), -1);

	/* Blanks around a name of the maximum length do not count. */
	in[0] = ' ';
	CHECK_INT(norm_sized(in, AUTH_MAX_USER + 1, out, sizeof(out)), 0);
	CHECK_INT(strlen(out), AUTH_MAX_USER);
	in[AUTH_MAX_USER + 1] = '\t';
	in[AUTH_MAX_USER + 2] = '\0';
	CHECK_INT(norm_sized(in, AUTH_MAX_USER + 1, out, sizeof(out)), 0);
	CHECK_INT(strlen(out), AUTH_MAX_USER);

	/* The same name with a default domain no longer fits. */
	conf_reset(false, false, "example.com");
	memset(in, 'u', AUTH_MAX_USER - 12);
	in[AUTH_MAX_USER - 12] = '\0';
	CHECK_INT(norm_sized(in, AUTH_MAX_USER + 1, out, sizeof(out)), 0);
	CHECK_INT(strlen(out), AUTH_MAX_USER);
	in[AUTH_MAX_USER - 12] = 'u';
	in[AUTH_MAX_USER - 11] = '\0';
	CHECK_INT(norm_sized(in, AUTH_MAX_USER + 1, out, sizeof(out)), -1);
}

int main(void)
{
	if (sodium_init() == -1) {
		fprintf(stderr, "sodium_init failed\n");
		return 1;
	}
	UNIT_RUN(test_unchanged);
	UNIT_RUN(test_trim);
	UNIT_RUN(test_empty);
	UNIT_RUN(test_control_characters);
	UNIT_RUN(test_lowercase);
	UNIT_RUN(test_strip_domain);
	UNIT_RUN(test_default_domain);
	UNIT_RUN(test_buffer_limits);
	UNIT_RUN(test_max_user);
	return unit_finish();
}
