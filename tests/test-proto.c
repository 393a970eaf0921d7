/*
 * test-proto.c - unit tests for common/proto.c, the authd protocol codec.
 *
 * The contract is docs/auth-protocol.md ("Line format") and proto.h:
 * splitting and unescaping (proto_parse), key=value access, request ids,
 * building lines with escaping and overflow detection (proto_line_*), and
 * SASL PLAIN decoding.  The PLAIN vectors were made outside this code, with
 *     printf '\0tim\0tanstaaftanstaaf' | base64
 * (the first is the example of RFC 4616 section 4), so a decoder that
 * agrees with an encoder bug of its own cannot pass.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/limits.h"
#include "common/proto.h"
#include "tests/unit.h"

/* proto_parse modifies its input: every case parses a private copy. */
struct parsed {
	char line[AUTHD_MAX_LINE * 2];
	struct proto_msg msg;
	const char *error;
	int rc;
};

static struct parsed P;

/* Parses the first len bytes of s (which may contain NULs) as one line. */
static int parse_n(const char *s, size_t len)
{
	if (len >= sizeof(P.line))
		abort();
	memcpy(P.line, s, len);
	P.line[len] = '\0';
	P.error = NULL;
	P.rc = proto_parse(P.line, len, &P.msg, &P.error);
	return P.rc;
}

static int parse(const char *s)
{
	return parse_n(s, strlen(s));
}

/* ---- proto_parse: fields ---------------------------------------------- */

static void test_parse_basic(void)
{
	CHECK_INT(parse("AUTH\tr1\tservice=pop3\tuser=tim\tpass=secret"), 0);
	CHECK_STR(P.msg.cmd, "AUTH");
	CHECK_INT(P.msg.nargs, 4);
	CHECK_STR(P.msg.args[0], "r1");
	CHECK_INT(P.msg.nkv, 3);
	CHECK_STR(P.msg.kv[0].key, "service");
	CHECK_STR(P.msg.kv[0].value, "pop3");
	CHECK_STR(P.msg.kv[1].key, "user");
	CHECK_STR(P.msg.kv[1].value, "tim");
	CHECK_STR(P.msg.kv[2].key, "pass");
	CHECK_STR(P.msg.kv[2].value, "secret");
	CHECK_STR(proto_get(&P.msg, "user"), "tim");
	CHECK_STR(proto_get(&P.msg, "pass"), "secret");
	CHECK(proto_get(&P.msg, "rip") == NULL);
	CHECK(proto_get(&P.msg, "") == NULL);
	CHECK(proto_get(&P.msg, "us") == NULL);		/* no prefix match */
	CHECK(proto_get(&P.msg, "user=tim") == NULL);
	CHECK(!proto_has_duplicates(&P.msg));

	/* VERSION has no id: its arguments are plain fields */
	CHECK_INT(parse("VERSION\t1\t0"), 0);
	CHECK_STR(P.msg.cmd, "VERSION");
	CHECK_INT(P.msg.nargs, 2);
	CHECK_STR(P.msg.args[0], "1");
	CHECK_STR(P.msg.args[1], "0");
	CHECK_INT(P.msg.nkv, 0);

	/* a command alone */
	CHECK_INT(parse("CANCEL"), 0);
	CHECK_STR(P.msg.cmd, "CANCEL");
	CHECK_INT(P.msg.nargs, 0);
	CHECK_INT(P.msg.nkv, 0);
}

static void test_parse_empty_fields(void)
{
	/* the codec splits; deciding that "" is not a command is the caller's job */
	CHECK_INT(parse(""), 0);
	CHECK_STR(P.msg.cmd, "");
	CHECK_INT(P.msg.nargs, 0);

	CHECK_INT(parse("A\t\tx"), 0);
	CHECK_STR(P.msg.cmd, "A");
	CHECK_INT(P.msg.nargs, 2);
	CHECK_STR(P.msg.args[0], "");
	CHECK_STR(P.msg.args[1], "x");
	CHECK_INT(P.msg.nkv, 0);

	/* a trailing TAB is one more, empty, field */
	CHECK_INT(parse("A\t1\t"), 0);
	CHECK_INT(P.msg.nargs, 2);
	CHECK_STR(P.msg.args[1], "");
	CHECK_INT(P.msg.nkv, 0);

	CHECK_INT(parse("\t"), 0);
	CHECK_STR(P.msg.cmd, "");
	CHECK_INT(P.msg.nargs, 1);
	CHECK_STR(P.msg.args[0], "");

	/* blanks are data, not separators */
	CHECK_INT(parse("A B\t 1 \tk = v "), 0);
	CHECK_STR(P.msg.cmd, "A B");
	CHECK_STR(P.msg.args[0], " 1 ");
	CHECK_INT(P.msg.nkv, 1);
	CHECK_STR(P.msg.kv[0].key, "k ");
	CHECK_STR(P.msg.kv[0].value, " v ");
}

/* ---- proto_parse: escapes --------------------------------------------- */

static void test_parse_escapes(void)
{
	static const struct { const char *wire, *value; } cases[] = {
		{ "\\\\", "\\" },
		{ "\\t", "\t" },
		{ "\\n", "\n" },
		{ "\\r", "\r" },
		{ "a\\\\b", "a\\b" },
		{ "\\\\t", "\\t" },		/* escaped backslash, then a plain t */
		{ "\\\\\\t", "\\\t" },		/* escaped backslash, escaped TAB */
		{ "\\\\\\\\", "\\\\" },
		{ "\\r\\n", "\r\n" },
		{ "x\\ty\\nz\\r\\\\", "x\ty\nz\r\\" },
		{ "\\t\\t\\t", "\t\t\t" },
		{ "no escapes here", "no escapes here" },
		{ "=\\\\=", "=\\=" },
	};
	char line[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* as a plain field (the id position) and as a value */
		snprintf(line, sizeof(line), "C\t%s\tk=%s", cases[i].wire, cases[i].wire);
		if (parse(line) != 0) {
			fprintf(stderr, "  refused \"%s\": %s\n", cases[i].wire, P.error);
			CHECK(0);
			continue;
		}
		CHECK_INT(P.msg.nargs, 2);
		CHECK_STR(P.msg.args[0], cases[i].value);
		CHECK_INT(P.msg.nkv, 1);
		CHECK_STR(proto_get(&P.msg, "k"), cases[i].value);
	}

	/* escapes in the command and in a key */
	CHECK_INT(parse("A\\tB\tid\tk\\ty=1"), 0);
	CHECK_STR(P.msg.cmd, "A\tB");
	CHECK_STR(P.msg.kv[0].key, "k\ty");
	CHECK_STR(P.msg.kv[0].value, "1");
	/* an escaped TAB does not split the field */
	CHECK_INT(parse("A\tid\tk=1\\t2\\t3"), 0);
	CHECK_INT(P.msg.nargs, 2);
	CHECK_STR(proto_get(&P.msg, "k"), "1\t2\t3");
}

static void test_parse_bad_escapes(void)
{
	static const char *const bad[] = {
		"A\t1\tk=\\x",
		"A\t1\tk=\\0",
		"A\t1\tk=\\T",		/* escapes are lower case */
		"A\t1\tk=\\N",
		"A\t1\tk=\\R",
		"A\t1\tk=\\ ",
		"A\t1\tk=\\=",
		"A\t1\tk=\\\"",
		"A\t1\tk=\\'",
		"A\t1\tk=\\a",
		"A\t1\tk=\\b",
		"A\t1\tk=\\e",
		"A\t1\tk=\\f",
		"A\t1\tk=\\v",
		"A\t1\tk=\\u0041",
		"A\t1\tk=\\101",
		"A\t1\tk=\\\xc3\xa9",	/* backslash before a UTF-8 character */
		"A\t1\tk=\\\x01",
		"\\q\t1",			/* in the command */
		"A\t\\q",			/* in the id */
		"A\t1\t\\q=1",			/* in a key */
		"A\t1\tk=ok\tj=\\q",		/* in a later field */
		"A\t1\tk=\\\\\\",		/* escaped backslash, then a lone one */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i]) != -1) {
			fprintf(stderr, "  accepted bad escape case %zu\n", i);
			CHECK(0);
			continue;
		}
		CHECK(P.error != NULL && P.error[0] != '\0');
	}
}

static void test_parse_trailing_backslash(void)
{
	/* at the very end of the line: the unescaper must not read past NUL */
	CHECK_INT(parse("A\t1\tk=v\\"), -1);
	CHECK(P.error != NULL);
	CHECK_INT(parse("\\"), -1);
	CHECK_INT(parse("A\\"), -1);
	/* at the end of a field: "\" + TAB is not an escaped TAB */
	CHECK_INT(parse("A\t1\\\tk=v"), -1);
	CHECK_INT(parse("A\\\t1"), -1);
	CHECK_INT(parse("A\t1\tk=v\\\tj=w"), -1);
	/* an even number of backslashes is fine */
	CHECK_INT(parse("A\t1\tk=v\\\\"), 0);
	CHECK_STR(proto_get(&P.msg, "k"), "v\\");
	CHECK_INT(parse("A\t1\\\\\tk=v"), 0);
	CHECK_STR(P.msg.args[0], "1\\");
}

static void test_parse_raw_cr_lf(void)
{
	static const char *const bad[] = {
		"A\t1\tk=a\rb",
		"A\t1\tk=a\nb",
		"A\t1\tk=v\r",		/* CRLF sender: the CR is not stripped */
		"A\t1\tk=v\n",		/* caller left the LF in */
		"A\r\t1",
		"\rA\t1",
		"A\t1\r",
		"A\t1\n\tk=v",
		"\n",
		"\r",
		"A\t1\tk=v\r\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i]) != -1) {
			fprintf(stderr, "  accepted raw CR/LF case %zu\n", i);
			CHECK(0);
			continue;
		}
		CHECK(P.error != NULL);
	}
	/* other control characters are data */
	CHECK_INT(parse("A\t1\tk=\x01\x1b\x7f"), 0);
	CHECK_STR(proto_get(&P.msg, "k"), "\x01\x1b\x7f");
}

static void test_parse_nul(void)
{
	static const char with_nul[] = "AUTH\tr1\tuser=tim\0\tpass=x";
	const size_t n = sizeof(with_nul) - 1;

	/* a NUL anywhere in the first len bytes */
	CHECK_INT(parse_n(with_nul, n), -1);
	CHECK(P.error != NULL);
	CHECK_INT(parse_n("\0", 1), -1);
	CHECK_INT(parse_n("A\t1\0", 4), -1);
	CHECK_INT(parse_n("\0A\t1", 4), -1);
	CHECK_INT(parse_n("A\t1\tk=v\0", 8), -1);
	/* the same bytes up to the NUL are fine */
	CHECK_INT(parse_n(with_nul, strlen(with_nul)), 0);

	/* line[len] must be the terminator: a len shorter than the string is a
	 * caller bug the parser refuses instead of parsing past len */
	char line[32] = "A\t1\tk=v";

	P.error = NULL;
	CHECK_INT(proto_parse(line, 3, &P.msg, &P.error), -1);
	CHECK(P.error != NULL);
}

/* Builds "C" followed by n - 1 more fields "fI" (n fields in all). */
static void build_fields(char *buf, size_t size, size_t n, bool kv)
{
	size_t len;

	snprintf(buf, size, "C");
	for (size_t i = 1; i < n; i++) {
		len = strlen(buf);
		if (kv && i >= 2)
			snprintf(buf + len, size - len, "\tk%zu=v%zu", i, i);
		else
			snprintf(buf + len, size - len, "\tf%zu", i);
	}
}

static void test_parse_max_fields(void)
{
	char line[4096];

	/* AUTHD_MAX_FIELDS counts every field, command included (limits.h:
	 * "Fields (command, id and key=value pairs) in one authd protocol line") */
	build_fields(line, sizeof(line), AUTHD_MAX_FIELDS, true);
	CHECK_INT(parse(line), 0);
	CHECK_INT(P.msg.nargs, AUTHD_MAX_FIELDS - 1);
	CHECK_INT(P.msg.nkv, AUTHD_MAX_FIELDS - 2);
	CHECK_STR(P.msg.args[AUTHD_MAX_FIELDS - 2], "k31");
	CHECK_STR(proto_get(&P.msg, "k31"), "v31");
	CHECK_STR(proto_get(&P.msg, "k2"), "v2");
	CHECK(!proto_has_duplicates(&P.msg));

	build_fields(line, sizeof(line), AUTHD_MAX_FIELDS + 1, true);
	if (parse(line) != -1)
		fprintf(stderr, "  %d fields (AUTHD_MAX_FIELDS + 1) accepted\n",
			AUTHD_MAX_FIELDS + 1);
	CHECK_INT(P.rc, -1);
	CHECK(P.rc == 0 || P.error != NULL);

	build_fields(line, sizeof(line), AUTHD_MAX_FIELDS + 2, true);
	CHECK_INT(parse(line), -1);
	CHECK(P.error != NULL);

	build_fields(line, sizeof(line), 200, false);
	CHECK_INT(parse(line), -1);

	/* empty fields count too */
	memset(line, '\t', 300);
	line[300] = '\0';
	CHECK_INT(parse(line), -1);
	memset(line, '\t', AUTHD_MAX_FIELDS - 1);
	line[AUTHD_MAX_FIELDS - 1] = '\0';
	CHECK_INT(parse(line), 0);
	CHECK_INT(P.msg.nargs, AUTHD_MAX_FIELDS - 1);
}

/* ---- key=value -------------------------------------------------------- */

static void test_kv_split(void)
{
	/* the value is everything after the first '=' */
	CHECK_INT(parse("A\t1\tk=a=b\tresp=dGltAHRpbQBwdw==\tj=="), 0);
	CHECK_INT(P.msg.nkv, 3);
	CHECK_STR(P.msg.kv[0].key, "k");
	CHECK_STR(P.msg.kv[0].value, "a=b");
	CHECK_STR(proto_get(&P.msg, "resp"), "dGltAHRpbQBwdw==");
	CHECK_STR(proto_get(&P.msg, "j"), "=");

	/* empty value, empty key */
	CHECK_INT(parse("A\t1\tk=\t=v"), 0);
	CHECK_INT(P.msg.nkv, 2);
	CHECK_STR(proto_get(&P.msg, "k"), "");
	CHECK_STR(P.msg.kv[1].key, "");
	CHECK_STR(P.msg.kv[1].value, "v");

	/* fields without '=' after the id are arguments, not pairs */
	CHECK_INT(parse("A\t1\tflag\tk=v\tother"), 0);
	CHECK_INT(P.msg.nargs, 4);
	CHECK_INT(P.msg.nkv, 1);
	CHECK_STR(P.msg.args[1], "flag");
	CHECK_STR(P.msg.args[2], "k");		/* split in place: args[] holds the key */
	CHECK_STR(P.msg.args[3], "other");
	CHECK_STR(proto_get(&P.msg, "k"), "v");
	CHECK(proto_get(&P.msg, "flag") == NULL);

	/* an escaped value may contain what looks like another pair */
	CHECK_INT(parse("A\t1\tpass=x\\tuser=root"), 0);
	CHECK_INT(P.msg.nkv, 1);
	CHECK_STR(proto_get(&P.msg, "pass"), "x\tuser=root");
	CHECK(proto_get(&P.msg, "user") == NULL);
}

static void test_kv_not_before_id(void)
{
	/* the command and the first argument (the id) are never pairs */
	CHECK_INT(parse("A=1\tid=2\tk=v"), 0);
	CHECK_STR(P.msg.cmd, "A=1");
	CHECK_STR(P.msg.args[0], "id=2");
	CHECK_INT(P.msg.nkv, 1);
	CHECK_STR(P.msg.kv[0].key, "k");
	CHECK(proto_get(&P.msg, "id") == NULL);
	CHECK(proto_get(&P.msg, "A") == NULL);

	CHECK_INT(parse("A\tuser=root"), 0);
	CHECK_INT(P.msg.nkv, 0);
	CHECK(proto_get(&P.msg, "user") == NULL);
	CHECK_STR(P.msg.args[0], "user=root");
}

static void test_kv_duplicates(void)
{
	CHECK_INT(parse("A\t1\tuser=a\tuser=b"), 0);
	CHECK(proto_has_duplicates(&P.msg));
	CHECK_STR(proto_get(&P.msg, "user"), "a");	/* the first wins */

	CHECK_INT(parse("A\t1\tuser=a\tpass=x\trip=1\tuser=a"), 0);
	CHECK(proto_has_duplicates(&P.msg));		/* not adjacent, same value */

	CHECK_INT(parse("A\t1\tk=\tk="), 0);
	CHECK(proto_has_duplicates(&P.msg));

	CHECK_INT(parse("A\t1\tuser=a\tUser=b\tuser_=c\tuse=d"), 0);
	CHECK(!proto_has_duplicates(&P.msg));		/* keys are case-sensitive */

	/* the id equal to a key, and a non-pair field equal to a key, are not pairs */
	CHECK_INT(parse("A\tuser=a\tuser=b"), 0);
	CHECK(!proto_has_duplicates(&P.msg));
	CHECK_INT(parse("A\t1\tuser\tuser=b"), 0);
	CHECK(!proto_has_duplicates(&P.msg));

	/* escaped keys compare after unescaping */
	CHECK_INT(parse("A\t1\tk\\\\=1\tk\\\\=2"), 0);
	CHECK(proto_has_duplicates(&P.msg));

	/* the last pair against the first, with many between */
	char line[1024];

	build_fields(line, sizeof(line), AUTHD_MAX_FIELDS - 1, true);
	strcat(line, "\tk2=again");
	CHECK_INT(parse(line), 0);
	CHECK(proto_has_duplicates(&P.msg));

	CHECK_INT(parse("A\t1"), 0);
	CHECK(!proto_has_duplicates(&P.msg));
}

/* ---- request ids ------------------------------------------------------ */

static void test_id_valid(void)
{
	static const char *const good[] = {
		"1", "a", "Z", "0", ".", "_", "-", "r1", "req-1.2_3",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef",		/* 32 */
		"ghijklmnopqrstuvwxyz0123456789._",		/* 32 */
		"--------------------------------",		/* 32 */
		"..",
	};
	static const char *const bad[] = {
		"",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg",		/* 33 */
		"000000000000000000000000000000000",		/* 33 */
		"0000000000000000000000000000000000000000000000000000000000000000",
		" ", "a b", " a", "a ", "a\t", "\t", "a\n", "a\r", "a=b", "a/b", "a\\b",
		"a+b", "a@b", "a:b", "a,b", "a;b", "a#b", "a~b", "a*b", "a%b", "~",
		"\xc3\xa9", "a\xff", "\x7f", "\x01",
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (!proto_id_valid(good[i]))
			fprintf(stderr, "  refused id \"%s\"\n", good[i]);
		CHECK(proto_id_valid(good[i]));
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (proto_id_valid(bad[i]))
			fprintf(stderr, "  accepted id \"%s\"\n", bad[i]);
		CHECK(!proto_id_valid(bad[i]));
	}
	CHECK_INT(strlen("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"), AUTHD_MAX_ID);

	/* every single byte: exactly the 65 documented characters pass */
	unsigned n = 0;
	char one[2] = { 0, 0 };

	for (int c = 1; c < 256; c++) {
		one[0] = (char)c;
		if (proto_id_valid(one))
			n++;
	}
	CHECK_INT(n, 26 + 26 + 10 + 3);
}

/* ---- building lines --------------------------------------------------- */

static struct proto_line L;

static void test_line_build(void)
{
	proto_line_start(&L, "OK");
	proto_line_add(&L, "r1");
	proto_line_kv(&L, "user", "tim");
	proto_line_kvf(&L, "uid", "%u", 1000u);
	proto_line_kv(&L, "empty", "");
	proto_line_add(&L, "");
	CHECK_INT(proto_line_end(&L), 0);
	CHECK(!L.overflow);
	CHECK_STR(L.buf, "OK\tr1\tuser=tim\tuid=1000\tempty=\t\n");
	CHECK_INT(L.len, strlen(L.buf));

	/* exact escaping of each special character, in a field and a value */
	proto_line_start(&L, "C");
	proto_line_add(&L, "a\\b\tc\nd\re");
	proto_line_kv(&L, "k", "\\\t\n\r=x");
	CHECK_INT(proto_line_end(&L), 0);
	CHECK_STR(L.buf, "C\ta\\\\b\\tc\\nd\\re\tk=\\\\\\t\\n\\r=x\n");

	/* the command and the key are written as given */
	proto_line_start(&L, "CMD");
	proto_line_kv(&L, "a.b-c", "v");
	CHECK_INT(proto_line_end(&L), 0);
	CHECK_STR(L.buf, "CMD\ta.b-c=v\n");

	/* start again after use: the old content is gone */
	proto_line_start(&L, "X");
	CHECK_INT(proto_line_end(&L), 0);
	CHECK_STR(L.buf, "X\n");
	CHECK_INT(L.len, 2);
}

/* Builds a line from fields, sends it through the parser, checks it comes
 * back the same. */
static void round_trip(const char *cmd, const char *id, const char *key, const char *value)
{
	proto_line_start(&L, cmd);
	proto_line_add(&L, id);
	proto_line_kv(&L, key, value);
	if (proto_line_end(&L) != 0) {
		CHECK(!"round trip line overflowed");
		return;
	}
	CHECK(L.len >= 1 && L.buf[L.len - 1] == '\n');
	CHECK(memchr(L.buf, '\r', L.len) == NULL);
	CHECK(memchr(L.buf, '\n', L.len - 1) == NULL);	/* one LF, at the end */
	if (parse_n(L.buf, L.len - 1) != 0) {
		fprintf(stderr, "  own line refused: %s\n", P.error);
		CHECK(0);
		return;
	}
	CHECK_STR(P.msg.cmd, cmd);
	CHECK_INT(P.msg.nargs, 2);
	CHECK_STR(P.msg.args[0], id);
	CHECK_INT(P.msg.nkv, 1);
	CHECK_STR(P.msg.kv[0].key, key);
	CHECK_STR(P.msg.kv[0].value, value);
}

static void test_line_round_trip(void)
{
	static const char *const values[] = {
		"", "plain", "\\", "\t", "\n", "\r", "\r\n", "\\t", "\\\\", "\\n",
		"a\\", "\\a", "=", "==", "k=v", "\t\t", "pa\tss\nwo\rrd\\",
		"\xc3\xa9t\xc3\xa9", "\x01\x02\x1b\x7f\xff", " spaces  ",
		"tab\tat\tend\t", "\\\t\\\n\\\r",
	};
	char all[256];

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		round_trip("AUTH", "r1", "pass", values[i]);
		round_trip("AUTH", values[i][0] != '\0' ? values[i] : "x", "k", "v");
	}
	/* every byte value except NUL, in one value */
	for (int c = 1; c < 256; c++)
		all[c - 1] = (char)c;
	all[255] = '\0';
	round_trip("C", "1", "all", all);
	/* and reversed */
	for (int c = 1; c < 256; c++)
		all[c - 1] = (char)(256 - c);
	round_trip("C", "1", "all", all);
}

/* Fills a line up to a given total length (LF included) with one field of
 * 'x': "C" TAB x... LF. */
static int fill_to(size_t total)
{
	static char s[AUTHD_MAX_LINE * 2];
	size_t n = total - 3;	/* "C", TAB, LF */

	memset(s, 'x', n);
	s[n] = '\0';
	proto_line_start(&L, "C");
	proto_line_add(&L, s);
	return proto_line_end(&L);
}

static void test_line_overflow(void)
{
	/* the longest line the builder produces is within AUTHD_MAX_LINE
	 * (docs/auth-protocol.md: 8192 bytes including the LF) */
	CHECK_INT(fill_to(AUTHD_MAX_LINE - 1), 0);
	CHECK(!L.overflow);
	CHECK_INT(L.len, AUTHD_MAX_LINE - 1);
	CHECK(L.buf[L.len - 1] == '\n' && L.buf[L.len] == '\0');
	CHECK_INT(strlen(L.buf), L.len);
	/* the reader would accept it: parse it back */
	CHECK_INT(parse_n(L.buf, L.len - 1), 0);
	CHECK_INT(strlen(P.msg.args[0]), AUTHD_MAX_LINE - 4);

	/* (AUTHD_MAX_LINE itself: the buffer keeps a NUL after the LF, so the
	 * builder stops one byte short of what a peer may send; not checked) */

	/* one byte more than the protocol allows */
	CHECK_INT(fill_to(AUTHD_MAX_LINE + 1), -1);
	CHECK(L.overflow);
	CHECK(L.len < sizeof(L.buf));
	CHECK(L.buf[L.len] == '\0');
	CHECK_INT(strlen(L.buf), L.len);

	/* far beyond: no write past the buffer (ASan build), flag set */
	CHECK_INT(fill_to(AUTHD_MAX_LINE * 2 - 1), -1);
	CHECK(L.overflow);

	/* overflow is sticky: a short field afterwards does not clear it */
	fill_to(AUTHD_MAX_LINE + 1);
	CHECK(L.overflow);
	proto_line_add(&L, "");
	proto_line_kv(&L, "k", "v");
	CHECK_INT(proto_line_end(&L), -1);
	CHECK_INT(proto_line_end(&L), -1);

	/* proto_line_start clears it */
	proto_line_start(&L, "OK");
	CHECK(!L.overflow);
	CHECK_INT(proto_line_end(&L), 0);
	CHECK_STR(L.buf, "OK\n");
}

static void test_line_overflow_escape(void)
{
	char s[AUTHD_MAX_LINE];
	size_t room;

	/* leave exactly one byte of room, then add an escaped character: it
	 * needs two, and half an escape must never be written */
	proto_line_start(&L, "C");
	room = sizeof(L.buf) - 1 - L.len;	/* bytes the builder can still take */
	memset(s, 'x', room - 2);
	s[room - 2] = '\0';
	proto_line_add(&L, s);			/* TAB + room-2: one byte left */
	CHECK(!L.overflow);
	CHECK_INT(sizeof(L.buf) - 1 - L.len, 1);
	{
		size_t before = L.len;

		proto_line_kv(&L, "", "");	/* TAB fits, then "=" does not */
		CHECK(L.overflow);
		CHECK(L.len <= before + 1);
	}

	proto_line_start(&L, "C");
	s[room - 3] = '\0';			/* two bytes left */
	proto_line_add(&L, s);
	CHECK_INT(sizeof(L.buf) - 1 - L.len, 2);
	{
		size_t before = L.len;

		proto_line_add(&L, "\\");	/* TAB fits, "\\\\" does not */
		CHECK(L.overflow);
		CHECK_INT(L.len, before + 1);
		CHECK(L.buf[L.len - 1] == '\t');
		CHECK(L.buf[L.len] == '\0');
	}
	CHECK_INT(proto_line_end(&L), -1);
}

static void test_line_kvf(void)
{
	char big[1100];

	proto_line_start(&L, "OK");
	proto_line_kvf(&L, "n", "%d-%s", -5, "a\tb");
	CHECK_INT(proto_line_end(&L), 0);
	CHECK_STR(L.buf, "OK\tn=-5-a\\tb\n");	/* the formatted value is escaped */

	/* the formatted value is limited to 1023 characters */
	memset(big, 'v', sizeof(big));
	big[1023] = '\0';
	proto_line_start(&L, "OK");
	proto_line_kvf(&L, "k", "%s", big);
	CHECK(!L.overflow);
	CHECK_INT(proto_line_end(&L), 0);
	CHECK_INT(L.len, strlen("OK\tk=\n") + 1023);

	big[1023] = 'v';
	big[1024] = '\0';
	proto_line_start(&L, "OK");
	proto_line_kvf(&L, "k", "%s", big);
	CHECK(L.overflow);
	CHECK_INT(proto_line_end(&L), -1);
}

static void test_line_wipe(void)
{
	proto_line_start(&L, "AUTH");
	proto_line_kv(&L, "pass", "hunter2");
	CHECK(strstr(L.buf, "hunter2") != NULL);
	proto_line_wipe(&L);
	CHECK_INT(L.len, 0);
	for (size_t i = 0; i < sizeof(L.buf); i++)
		if (L.buf[i] != 0) {
			CHECK(!"byte left after wipe");
			break;
		}
}

/* ---- SASL PLAIN ------------------------------------------------------- */

#define USZ (AUTH_MAX_USER + 1)
#define PSZ (AUTH_MAX_PASSWORD + 1)

static char user[USZ + 8], pass[PSZ + 8];
static const char *err;

static int plain(const char *b64)
{
	memset(user, '#', sizeof(user));
	memset(pass, '#', sizeof(pass));
	user[sizeof(user) - 1] = pass[sizeof(pass) - 1] = '\0';
	err = NULL;
	return proto_sasl_plain_decode(b64, user, USZ, pass, PSZ, &err);
}

static void test_plain_valid(void)
{
	/* RFC 4616 section 4: "\0tim\0tanstaaftanstaaf" */
	CHECK_INT(plain("AHRpbQB0YW5zdGFhZnRhbnN0YWFm"), 0);
	CHECK_STR(user, "tim");
	CHECK_STR(pass, "tanstaaftanstaaf");

	/* authzid equal to authcid: "tim\0tim\0pw" */
	CHECK_INT(plain("dGltAHRpbQBwdw=="), 0);
	CHECK_STR(user, "tim");
	CHECK_STR(pass, "pw");

	/* a password with '=', a blank and UTF-8: "\0tim\0pa=ss w\xc3\xa9rd" */
	CHECK_INT(plain("AHRpbQBwYT1zcyB3w6lyZA=="), 0);
	CHECK_STR(user, "tim");
	CHECK_STR(pass, "pa=ss w\xc3\xa9rd");
}

static void test_plain_authzid(void)
{
	/* "bob\0tim\0pw": proxy login refused */
	CHECK_INT(plain("Ym9iAHRpbQBwdw=="), -1);
	CHECK(err != NULL);
	CHECK(user[0] == '#');			/* nothing written on failure */
	/* "Tim\0tim\0pw": the comparison is exact */
	CHECK_INT(plain("VGltAHRpbQBwdw=="), -1);
	/* "ti\0tim\0pw" and "timm\0tim\0pw": a prefix is not equal */
	CHECK_INT(plain("dGkAdGltAHB3"), -1);
	CHECK_INT(plain("dGltbQB0aW0AcHc="), -1);
}

static void test_plain_malformed(void)
{
	static const char *const bad[] = {
		"dGlt",			/* "tim": no NUL */
		"dGltAHB3",		/* "tim\0pw": one NUL */
		"AHRpbQBwAHc=",		/* "\0tim\0p\0w": NUL in the password */
		"AHRpbQAA",		/* "\0tim\0\0": NUL as the password */
		"dGltAHRpbQBwdwA=",	/* "tim\0tim\0pw\0": trailing NUL */
		"AABwdw==",		/* "\0\0pw": empty user */
		"AAA=",			/* "\0\0": empty user */
		"",			/* nothing */
		"=",
		"AA==",			/* "\0" */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (plain(bad[i]) != -1) {
			fprintf(stderr, "  accepted \"%s\" as user \"%s\"\n", bad[i], user);
			CHECK(0);
			continue;
		}
		CHECK(err != NULL && err[0] != '\0');
		CHECK(user[0] == '#' && pass[0] == '#');
	}
}

static void test_plain_bad_base64(void)
{
	static const char *const bad[] = {
		"AHRpbQB0YW5zdGFhZnRhbnN0YWF",		/* one character short */
		"AHRpbQB0YW5zdGFhZnRhbnN0YWFmA",	/* one character long */
		"dGltAHRpbQBwdw",			/* padding missing */
		"dGltAHRpbQBwdw=",			/* padding short */
		"dGltAHRpbQBwdw===",			/* padding long */
		"dGltAHRpbQBwdw==dGlt",			/* data after padding */
		"dGltAHRp bQBwdw==",			/* blank inside */
		"dGltAHRpbQBwdw==\n",			/* newline after */
		" dGltAHRpbQBwdw==",
		"dGltAHRpbQBwdw==\r",
		"dGlt!HRpbQBwdw==",			/* not in the alphabet */
		"dGltAHRpbQBwdw-_",			/* URL-safe alphabet */
		"AHRpbQB0YW5zdGFhZnRhbnN0YWFm\xc3\xa9",
		"dGltAHRpbQBwdx==",			/* non-zero padding bits */
		"====",
		"A",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (plain(bad[i]) != -1) {
			fprintf(stderr, "  accepted bad base64 \"%s\"\n", bad[i]);
			CHECK(0);
			continue;
		}
		CHECK(err != NULL && err[0] != '\0');
		CHECK(user[0] == '#');
	}
}

/* base64 of authzid NUL authcid NUL pass, made with libsodium's encoder
 * (the decoder under test is checked against independent vectors above). */
static char *encode_plain(const char *authzid, const char *authcid, const char *pw)
{
	size_t zl = strlen(authzid), cl = strlen(authcid), pl = strlen(pw);
	size_t n = zl + 1 + cl + 1 + pl;
	unsigned char *bin = malloc(n + 1);
	size_t b64size = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	char *b64 = malloc(b64size);

	if (bin == NULL || b64 == NULL)
		abort();
	memcpy(bin, authzid, zl);
	bin[zl] = 0;
	memcpy(bin + zl + 1, authcid, cl);
	bin[zl + 1 + cl] = 0;
	memcpy(bin + zl + 1 + cl + 1, pw, pl);
	sodium_bin2base64(b64, b64size, bin, n, sodium_base64_VARIANT_ORIGINAL);
	free(bin);
	return b64;
}

static char *rep(char c, size_t n)
{
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static void test_plain_limits(void)
{
	char *u320 = rep('u', AUTH_MAX_USER), *u321 = rep('u', AUTH_MAX_USER + 1);
	char *p1024 = rep('p', AUTH_MAX_PASSWORD), *p1025 = rep('p', AUTH_MAX_PASSWORD + 1);
	char *b64;

	/* the longest user and password, with the authzid repeated: the
	 * largest response the protocol allows */
	b64 = encode_plain(u320, u320, p1024);
	CHECK_INT(plain(b64), 0);
	CHECK_INT(strlen(user), AUTH_MAX_USER);
	CHECK_INT(strlen(pass), AUTH_MAX_PASSWORD);
	CHECK(user[AUTH_MAX_USER] == '\0' && user[USZ] == '#');	/* nothing past the end */
	CHECK(pass[AUTH_MAX_PASSWORD] == '\0' && pass[PSZ] == '#');
	free(b64);

	b64 = encode_plain("", u320, p1024);
	CHECK_INT(plain(b64), 0);
	free(b64);

	/* one more byte of user or password: refused, buffers untouched */
	b64 = encode_plain("", u321, "pw");
	CHECK_INT(plain(b64), -1);
	CHECK(user[0] == '#' && user[USZ] == '#');
	free(b64);
	b64 = encode_plain(u321, u321, "pw");
	CHECK_INT(plain(b64), -1);
	free(b64);
	b64 = encode_plain("", "tim", p1025);
	CHECK_INT(plain(b64), -1);
	CHECK(pass[0] == '#' && pass[PSZ] == '#');
	free(b64);
	b64 = encode_plain(u320, u320, p1025);
	CHECK_INT(plain(b64), -1);
	free(b64);

	/* far too long: a megabyte of base64 is refused without decoding */
	char *huge = rep('A', 1 << 20);

	CHECK_INT(plain(huge), -1);
	CHECK(err != NULL);
	free(huge);

	free(u320);
	free(u321);
	free(p1024);
	free(p1025);
}

static void test_plain_buffer_sizes(void)
{
	/* "\0tim\0tanstaaftanstaaf": user 3, password 16 bytes */
	static const char *const rfc = "AHRpbQB0YW5zdGFhZnRhbnN0YWFm";
	char u[8], p[20];
	const char *e;

	memset(u, '#', sizeof(u));
	memset(p, '#', sizeof(p));
	/* exactly enough: length + NUL */
	CHECK_INT(proto_sasl_plain_decode(rfc, u, 4, p, 17, &e), 0);
	CHECK_STR(u, "tim");
	CHECK_STR(p, "tanstaaftanstaaf");
	CHECK(u[4] == '#' && p[17] == '#');

	/* one byte short, on either side */
	memset(u, '#', sizeof(u));
	memset(p, '#', sizeof(p));
	e = NULL;
	CHECK_INT(proto_sasl_plain_decode(rfc, u, 3, p, 17, &e), -1);
	CHECK(e != NULL);
	CHECK(u[0] == '#' && p[0] == '#');
	e = NULL;
	CHECK_INT(proto_sasl_plain_decode(rfc, u, 4, p, 16, &e), -1);
	CHECK(e != NULL);
	CHECK(u[0] == '#' && p[0] == '#');
	CHECK_INT(proto_sasl_plain_decode(rfc, u, 0, p, 0, &e), -1);
	CHECK(u[0] == '#' && p[0] == '#');
}

int main(void)
{
	UNIT_RUN(test_parse_basic);
	UNIT_RUN(test_parse_empty_fields);
	UNIT_RUN(test_parse_escapes);
	UNIT_RUN(test_parse_bad_escapes);
	UNIT_RUN(test_parse_trailing_backslash);
	UNIT_RUN(test_parse_raw_cr_lf);
	UNIT_RUN(test_parse_nul);
	UNIT_RUN(test_parse_max_fields);
	UNIT_RUN(test_kv_split);
	UNIT_RUN(test_kv_not_before_id);
	UNIT_RUN(test_kv_duplicates);
	UNIT_RUN(test_id_valid);
	UNIT_RUN(test_line_build);
	UNIT_RUN(test_line_round_trip);
	UNIT_RUN(test_line_overflow);
	UNIT_RUN(test_line_overflow_escape);
	UNIT_RUN(test_line_kvf);
	UNIT_RUN(test_line_wipe);
	UNIT_RUN(test_plain_valid);
	UNIT_RUN(test_plain_authzid);
	UNIT_RUN(test_plain_malformed);
	UNIT_RUN(test_plain_bad_base64);
	UNIT_RUN(test_plain_limits);
	UNIT_RUN(test_plain_buffer_sizes);
	return unit_finish();
}
