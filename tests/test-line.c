/*
 * test-line.c - unit tests for common/line.c, the bounded line reader.
 *
 * The contract is line.h: max counts the line with its LF; a line longer
 * than max is LINE_TOOLONG and nothing is consumed; an incomplete line is
 * LINE_NONE until it is too long; LF and one CR before it are removed; a
 * NUL inside is reported through *has_nul_r.  Each case checks what is
 * left in the evbuffer afterwards, since that is what the next call sees.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/line.h"
#include "tests/unit.h"

#define OUTSZ 512

static struct evbuffer *buf;
static char out[OUTSZ + 16];
static size_t len;
static bool has_nul;

static void reset(void)
{
	if (buf != NULL)
		evbuffer_free(buf);
	buf = evbuffer_new();
	if (buf == NULL)
		abort();
}

static void add(const char *s, size_t n)
{
	if (evbuffer_add(buf, s, n) != 0)
		abort();
}

static void adds(const char *s)
{
	add(s, strlen(s));
}

/* Reads one line with the given max; out is pre-filled with '#' to show
 * what line_read wrote. */
static enum line_status rd(size_t max)
{
	memset(out, '#', sizeof(out));
	len = 9999;
	has_nul = true;
	return line_read(buf, out, max, &len, &has_nul);
}

static size_t left(void)
{
	return evbuffer_get_length(buf);
}

/* The buffered bytes equal s (n bytes). */
static bool left_is(const char *s, size_t n)
{
	unsigned char *p;

	if (left() != n)
		return false;
	if (n == 0)
		return true;
	p = evbuffer_pullup(buf, -1);
	return p != NULL && memcmp(p, s, n) == 0;
}

static void test_lf_and_crlf(void)
{
	reset();
	adds("USER tim\r\nPASS x\nQUIT\r\n");
	CHECK_INT(rd(100), LINE_OK);
	CHECK_STR(out, "USER tim");
	CHECK_INT(len, 8);
	CHECK(!has_nul);
	CHECK_INT(rd(100), LINE_OK);
	CHECK_STR(out, "PASS x");
	CHECK_INT(len, 6);
	CHECK_INT(rd(100), LINE_OK);
	CHECK_STR(out, "QUIT");
	CHECK_INT(rd(100), LINE_NONE);
	CHECK_INT(left(), 0);
}

static void test_empty_lines(void)
{
	reset();
	adds("\n\r\n\r\r\n");
	CHECK_INT(rd(100), LINE_OK);
	CHECK_STR(out, "");
	CHECK_INT(len, 0);
	CHECK_INT(rd(100), LINE_OK);
	CHECK_STR(out, "");
	CHECK_INT(len, 0);
	/* only one CR is removed */
	CHECK_INT(rd(100), LINE_OK);
	CHECK_STR(out, "\r");
	CHECK_INT(len, 1);
	CHECK_INT(left(), 0);
}

static void test_cr_not_before_lf(void)
{
	reset();
	adds("a\rb\n\rc\n");
	CHECK_INT(rd(100), LINE_OK);
	CHECK_STR(out, "a\rb");
	CHECK_INT(len, 3);
	CHECK_INT(rd(100), LINE_OK);
	CHECK_STR(out, "\rc");
	/* a lone CR is not a line end */
	reset();
	adds("abc\r");
	CHECK_INT(rd(100), LINE_NONE);
	CHECK(left_is("abc\r", 4));
}

static void test_partial(void)
{
	reset();
	CHECK_INT(rd(100), LINE_NONE);		/* empty buffer */
	adds("USER ");
	CHECK_INT(rd(100), LINE_NONE);
	CHECK(left_is("USER ", 5));		/* nothing consumed */
	CHECK(out[0] == '#');			/* nothing written */
	adds("tim\r");
	CHECK_INT(rd(100), LINE_NONE);
	CHECK(left_is("USER tim\r", 9));
	adds("\nPA");
	CHECK_INT(rd(100), LINE_OK);
	CHECK_STR(out, "USER tim");
	CHECK(left_is("PA", 2));
	CHECK_INT(rd(100), LINE_NONE);
	adds("SS x\n");
	CHECK_INT(rd(100), LINE_OK);
	CHECK_STR(out, "PASS x");
	CHECK_INT(left(), 0);
}

/* A line of total bytes with its terminator (LF or CRLF). */
static void add_line(size_t total, bool crlf)
{
	char s[OUTSZ * 2];
	size_t body = total - (crlf ? 2 : 1);

	memset(s, 'x', body);
	if (crlf)
		s[body++] = '\r';
	s[body++] = '\n';
	add(s, body);
}

static void test_exactly_max(void)
{
	const size_t max = 256;

	/* max bytes including the LF: accepted, out holds max - 1 + NUL */
	reset();
	add_line(max, false);
	CHECK_INT(rd(max), LINE_OK);
	CHECK_INT(len, max - 1);
	CHECK_INT(strlen(out), max - 1);
	CHECK(out[max - 1] == '\0');
	CHECK(out[max + 1] == '#');		/* out needs max + 1 bytes, no more */
	CHECK_INT(left(), 0);

	/* CRLF: the CR counts towards max */
	reset();
	add_line(max, true);
	CHECK_INT(rd(max), LINE_OK);
	CHECK_INT(len, max - 2);
	CHECK(out[max + 1] == '#');

	/* max - 1: accepted */
	reset();
	add_line(max - 1, false);
	CHECK_INT(rd(max), LINE_OK);
	CHECK_INT(len, max - 2);

	/* the smallest max: a lone LF */
	reset();
	adds("\n");
	CHECK_INT(rd(1), LINE_OK);
	CHECK_INT(len, 0);
	CHECK_STR(out, "");
}

static void test_max_plus_one(void)
{
	const size_t max = 256;

	/* complete line of max + 1 bytes: too long, nothing consumed */
	reset();
	add_line(max + 1, false);
	adds("next\n");
	CHECK_INT(rd(max), LINE_TOOLONG);
	CHECK_INT(left(), max + 1 + 5);
	CHECK(out[0] == '#');
	CHECK_INT(rd(max), LINE_TOOLONG);	/* and again: nothing changed */
	CHECK_INT(left(), max + 1 + 5);
	/* a larger max reads it */
	CHECK_INT(rd(max + 1), LINE_OK);
	CHECK_INT(len, max);
	CHECK_INT(rd(max), LINE_OK);
	CHECK_STR(out, "next");

	/* CRLF line of max + 1 bytes (max - 1 characters + CR + LF) */
	reset();
	add_line(max + 1, true);
	CHECK_INT(rd(max), LINE_TOOLONG);
	CHECK_INT(left(), max + 1);
}

static void test_incomplete_too_long(void)
{
	const size_t max = 256;
	char s[OUTSZ];

	memset(s, 'x', sizeof(s));
	/* no LF yet: max - 1 bytes may still become a line of max */
	reset();
	add(s, max - 1);
	CHECK_INT(rd(max), LINE_NONE);
	CHECK_INT(left(), max - 1);
	/* max bytes without LF can only be a line longer than max */
	add(s, 1);
	CHECK_INT(rd(max), LINE_TOOLONG);
	CHECK_INT(left(), max);
	add(s, 100);
	CHECK_INT(rd(max), LINE_TOOLONG);
	CHECK_INT(left(), max + 100);

	/* a short line first is still read normally */
	reset();
	adds("ok\n");
	add(s, max + 10);
	CHECK_INT(rd(max), LINE_OK);
	CHECK_STR(out, "ok");
	CHECK_INT(rd(max), LINE_TOOLONG);
	CHECK_INT(left(), max + 10);

	/* an LF far away does not make a long line acceptable */
	reset();
	add(s, 400);
	adds("\n");
	CHECK_INT(rd(max), LINE_TOOLONG);
	CHECK_INT(left(), 401);
}

static void test_nul(void)
{
	reset();
	add("US\0ER tim\n", 10);
	CHECK_INT(rd(100), LINE_OK);
	CHECK(has_nul);
	CHECK_INT(len, 9);
	CHECK(memcmp(out, "US\0ER tim", 10) == 0);

	add("\0\n", 2);
	CHECK_INT(rd(100), LINE_OK);
	CHECK(has_nul);
	CHECK_INT(len, 1);

	/* NUL just before the CR, just before the LF */
	add("ab\0\r\n", 5);
	CHECK_INT(rd(100), LINE_OK);
	CHECK(has_nul);
	CHECK_INT(len, 3);
	add("ab\r\0\n", 5);
	CHECK_INT(rd(100), LINE_OK);
	CHECK(has_nul);
	CHECK_INT(len, 4);

	/* a clean line after one with a NUL reports no NUL */
	adds("clean\n");
	CHECK_INT(rd(100), LINE_OK);
	CHECK(!has_nul);
	CHECK_STR(out, "clean");

	/* a NUL in the next line does not taint this one */
	add("one\ntw\0o\n", 9);
	CHECK_INT(rd(100), LINE_OK);
	CHECK(!has_nul);
	CHECK_STR(out, "one");
	CHECK_INT(rd(100), LINE_OK);
	CHECK(has_nul);
	CHECK_INT(left(), 0);
}

static void test_skip(void)
{
	const size_t max = 16;
	char s[64];

	memset(s, 'y', sizeof(s));
	/* the usual use: a too-long line is skipped, the next one read */
	reset();
	add(s, 40);
	adds("\nnext\n");
	CHECK_INT(rd(max), LINE_TOOLONG);
	CHECK(line_skip(buf));
	CHECK(left_is("next\n", 5));
	CHECK_INT(rd(max), LINE_OK);
	CHECK_STR(out, "next");

	/* no LF: everything dropped, false */
	reset();
	add(s, 40);
	CHECK(!line_skip(buf));
	CHECK_INT(left(), 0);
	CHECK(!line_skip(buf));		/* empty buffer */

	/* only up to the first LF */
	reset();
	adds("a\nb\nc");
	CHECK(line_skip(buf));
	CHECK(left_is("b\nc", 3));
	CHECK(line_skip(buf));
	CHECK(left_is("c", 1));
	CHECK(!line_skip(buf));
	CHECK_INT(left(), 0);

	/* an empty line, and a line that is just CRLF */
	reset();
	adds("\n\r\nz");
	CHECK(line_skip(buf));
	CHECK(left_is("\r\nz", 3));
	CHECK(line_skip(buf));
	CHECK(left_is("z", 1));
}

static void test_chunks(void)
{
	/* a line that arrives in many evbuffer chunks, one byte at a time */
	const char *msg = "AUTH\t1\tservice=pop3\tuser=tim\r\n";
	struct evbuffer *other;

	reset();
	for (const char *p = msg; *p != '\0'; p++) {
		CHECK_INT(rd(64), LINE_NONE);
		other = evbuffer_new();
		evbuffer_add(other, p, 1);
		evbuffer_add_buffer(buf, other);	/* a separate chain element */
		evbuffer_free(other);
	}
	CHECK_INT(rd(64), LINE_OK);
	CHECK_STR(out, "AUTH\t1\tservice=pop3\tuser=tim");
	CHECK_INT(left(), 0);

	/* many lines in one chunk, read back to back */
	reset();
	for (int i = 0; i < 100; i++) {
		char l[32];

		snprintf(l, sizeof(l), "line %d\n", i);
		adds(l);
	}
	for (int i = 0; i < 100; i++) {
		char l[32];

		snprintf(l, sizeof(l), "line %d", i);
		if (rd(16) != LINE_OK || strcmp(out, l) != 0) {
			CHECK(!"line lost");
			break;
		}
	}
	CHECK_INT(rd(16), LINE_NONE);
}

int main(void)
{
	UNIT_RUN(test_lf_and_crlf);
	UNIT_RUN(test_empty_lines);
	UNIT_RUN(test_cr_not_before_lf);
	UNIT_RUN(test_partial);
	UNIT_RUN(test_exactly_max);
	UNIT_RUN(test_max_plus_one);
	UNIT_RUN(test_incomplete_too_long);
	UNIT_RUN(test_nul);
	UNIT_RUN(test_skip);
	UNIT_RUN(test_chunks);
	if (buf != NULL)
		evbuffer_free(buf);
	return unit_finish();
}
