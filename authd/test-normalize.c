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
	/* UTF-8 names pass (NFC already). */
	check_norm("j\xc3\xb6rg", "j\xc3\xb6rg");
}

/* Not UTF-8 (RFC 3629): refused, whatever the settings. */
static void test_invalid_utf8(void)
{
	for (int lc = 0; lc < 2; lc++) {
		conf_reset(lc, false, NULL);
		check_norm("\xff\x80", NULL);
		check_norm("a\x80" "b", NULL);			/* lone continuation */
		check_norm("j\xc3rg", NULL);			/* truncated sequence */
		check_norm("j\xc3", NULL);			/* ... at the end */
		check_norm("\xc0\xaf", NULL);			/* overlong "/" */
		check_norm("\xe0\x80\xaf", NULL);		/* overlong, 3 bytes */
		check_norm("\xed\xa0\x80", NULL);		/* surrogate U+D800 */
		check_norm("\xf4\x90\x80\x80", NULL);	/* U+110000 */
		check_norm("\xfe", NULL);
		/* Latin-1 "jörg": not UTF-8 */
		check_norm("j\xf6rg", NULL);
	}
	conf_reset(false, false, "example.com");
	check_norm("j\xf6rg", NULL);
}

/* NFC: the composed and decomposed spellings of one name are one name. */
static void test_nfc(void)
{
	conf_reset(false, false, NULL);
	/* "jörg": o + U+0308 COMBINING DIAERESIS becomes U+00F6 */
	check_norm("jo\xcc\x88rg", "j\xc3\xb6rg");
	/* "Ångström" decomposed (A + U+030A, o + U+0308) */
	check_norm("A\xcc\x8angstro\xcc\x88m", "\xc3\x85ngstr\xc3\xb6m");
	/* U+212B ANGSTROM SIGN is a singleton: NFC makes it U+00C5 */
	check_norm("\xe2\x84\xab", "\xc3\x85");
	/* Case is kept without lowercase-usernames. */
	check_norm("JO\xcc\x88RG", "J\xc3\x96RG");
	/* Fullwidth forms are kept too: width mapping belongs to the
	 * case-mapped profile only. */
	check_norm("\xef\xbc\xa1", "\xef\xbc\xa1");
	/* Japanese: katakana KA + combining voiced mark = GA */
	check_norm("\xe3\x82\xab\xe3\x82\x99", "\xe3\x82\xac");
	/* C1 control characters (U+0080..U+009F) are control characters. */
	check_norm("a\xc2\x85" "b", NULL);
	check_norm("\xc2\x9b" "31m", NULL);
	/* ... their neighbours pass */
	check_norm("a\xc2\xa0" "b", "a\xc2\xa0" "b");
}

/* lowercase-usernames: RFC 8265's UsernameCaseMapped mapping. */
static void test_case_mapped(void)
{
	conf_reset(true, false, NULL);
	/* case mapping beyond ASCII */
	check_norm("J\xc3\x96RG", "j\xc3\xb6rg");
	check_norm("JO\xcc\x88RG", "j\xc3\xb6rg");	/* decomposed too */
	check_norm("\xce\xa3\xce\x9f\xce\xa6\xce\x99\xce\x91",	/* ΣΟΦΙΑ */
		   "\xcf\x83\xce\xbf\xcf\x86\xce\xb9\xce\xb1");
	check_norm("\xd0\x98\xd0\x92\xd0\x90\xd0\x9d",			/* ИВАН */
		   "\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd");
	check_norm("\xc5\x81UKASZ", "\xc5\x82ukasz");			/* ŁUKASZ */
	/* width mapping: fullwidth ＡＬＩＣＥ and halfwidth katakana */
	check_norm("\xef\xbc\xa1\xef\xbc\xac\xef\xbc\xa9\xef\xbc\xa3\xef\xbc\xa5", "alice");
	check_norm("\xef\xbd\x81lice", "alice");
	check_norm("\xef\xbd\xb6", "\xe3\x82\xab");	/* ｶ U+FF76 -> カ U+30AB */
	/* halfwidth KA + halfwidth voiced mark: mapped, then composed */
	check_norm("\xef\xbd\xb6\xef\xbe\x9e", "\xe3\x82\xac");
	/* fullwidth commercial at splits like "@" */
	conf_reset(true, true, NULL);
	check_norm("Alice\xef\xbc\xa0" "Example.org", "alice");
	/* the default domain is mapped with the name */
	conf_reset(true, false, "\xc3\x96rt.example");
	check_norm("J\xc3\x96RG", "j\xc3\xb6rg@\xc3\xb6rt.example");
	/* an ideographic space at the end maps to a blank: trimmed */
	conf_reset(true, false, NULL);
	check_norm("alice\xe3\x80\x80", "alice");
	check_norm("\xe3\x80\x80", NULL);
	/* still refused: invalid UTF-8 and controls */
	conf_reset(true, false, NULL);
	check_norm("J\xf6RG", NULL);
	check_norm("a\xc2\x85", NULL);
	/* and invisible characters, in either mode: soft hyphen, zero-width
	 * space, byte order mark, word joiner */
	for (int lc = 0; lc < 2; lc++) {
		conf_reset(lc, false, NULL);
		check_norm("ali\xc2\xad" "ce", NULL);
		check_norm("ali\xe2\x80\x8b" "ce", NULL);
		check_norm("\xef\xbb\xbf" "alice", NULL);
		check_norm("alice\xe2\x81\xa0", NULL);
	}
}

/* Normalising twice gives the same name (authd's tickets and the fuzz
 * harness rely on it). */
static void test_idempotent(void)
{
	static const char *const names[] = {
		"jo\xcc\x88rg", "J\xc3\x96RG", "\xef\xbd\xb6\xef\xbe\x9e", "\xe2\x84\xab",
		"\xc4\xb0stanbul", "STRASSE", "stra\xc3\x9f" "e", "\xe1\xba\x9e", "Alice",
	};

	for (int lc = 0; lc < 2; lc++) {
		conf_reset(lc, false, NULL);
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
			char once[AUTH_MAX_USER + 1], twice[AUTH_MAX_USER + 1];

			CHECK_INT(user_normalize(&conf, names[i], once, sizeof(once)), 0);
			CHECK_INT(user_normalize(&conf, once, twice, sizeof(twice)), 0);
			CHECK_STR(twice, once);
		}
	}
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
	/* Space, '~' and U+00A0 are the neighbours that pass. */
	check_norm("a b", "a b");
	check_norm("a~b", "a~b");
	check_norm("a\xc2\xa0" "b", "a\xc2\xa0" "b");
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
	/* Beyond ASCII too (test_case_mapped). */
	check_norm("J\xc3\x96RG", "j\xc3\xb6rg");

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
	UNIT_RUN(test_invalid_utf8);
	UNIT_RUN(test_nfc);
	UNIT_RUN(test_case_mapped);
	UNIT_RUN(test_idempotent);
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
