/*
 * fuzz-proto.c - libFuzzer harness for the authd protocol codec
 * (common/proto.c): proto_parse, the proto_line builder and
 * proto_sasl_plain_decode.  Build and run with tests/fuzz/run.
 *
 * Besides crashes and sanitizer reports, it aborts when a property of the
 * codec breaks:
 *   - a parsed line re-encodes to exactly the input (escaping is canonical:
 *     the only way to write TAB, LF, CR or backslash in a field is the one
 *     escape the builder produces), when the command and keys are plain;
 *   - any string (up to its first NUL) survives proto_line_add + proto_parse;
 *   - proto_id_valid agrees with a direct reading of the rule;
 *   - a decoded PLAIN user is non-empty and both outputs fit their buffers.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/limits.h"
#include "common/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool plain_text(const char *s)
{
	return strpbrk(s, "\\\t\n\r") == NULL;
}

static bool id_rule(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > AUTHD_MAX_ID)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		      "0123456789._-") == n;
}

/* Parse, check the result, re-encode, compare with the input. */
static void check_parse(const uint8_t *data, size_t size)
{
	static struct proto_line l;
	struct proto_msg msg;
	const char *err = NULL;
	char *line = malloc(size + 1);
	bool plain;

	if (line == NULL)
		abort();
	memcpy(line, data, size);
	line[size] = '\0';
	if (proto_parse(line, size, &msg, &err) == -1) {
		if (err == NULL)
			abort();
		free(line);
		return;
	}
	if (msg.cmd == NULL || msg.nargs > AUTHD_MAX_FIELDS || msg.nkv > msg.nargs)
		abort();
	if (memchr(data, '\0', size) != NULL)
		abort();		/* must have been refused */

	plain = plain_text(msg.cmd);
	for (size_t i = 0; i < msg.nkv; i++) {
		if (proto_get(&msg, msg.kv[i].key) == NULL)
			abort();
		plain = plain && plain_text(msg.kv[i].key);
	}
	proto_line_start(&l, msg.cmd);
	for (size_t i = 0, k = 0; i < msg.nargs; i++) {
		if (k < msg.nkv && msg.args[i] == msg.kv[k].key) {
			proto_line_kv(&l, msg.kv[k].key, msg.kv[k].value);
			k++;
		} else {
			proto_line_add(&l, msg.args[i]);
		}
	}
	if (proto_line_end(&l) == 0 && plain) {
		if (l.len != size + 1 || memcmp(l.buf, data, size) != 0 || l.buf[size] != '\n')
			abort();	/* not the same line */
	}
	free(line);
}

/* A value (the input up to its first NUL) through the builder and back. */
static void check_round_trip(const char *s)
{
	static struct proto_line l;
	struct proto_msg msg;
	const char *err;

	proto_line_start(&l, "C");
	proto_line_add(&l, s);
	proto_line_kv(&l, "k", s);
	if (proto_line_end(&l) == -1) {
		/* "C" TAB esc(s) TAB "k=" esc(s) LF, each escape at most 2 bytes */
		if (4 * strlen(s) + 6 <= AUTHD_MAX_LINE - 1)
			abort();	/* overflow although it must fit */
		return;
	}
	if (l.len >= sizeof(l.buf) || l.buf[l.len - 1] != '\n' || l.buf[l.len] != '\0')
		abort();
	l.buf[--l.len] = '\0';
	if (proto_parse(l.buf, l.len, &msg, &err) == -1)
		abort();
	if (msg.nargs != 2 || msg.nkv != 1 || strcmp(msg.args[0], s) != 0 ||
	    strcmp(msg.kv[0].key, "k") != 0 || strcmp(msg.kv[0].value, s) != 0)
		abort();
}

static void check_plain(const char *s)
{
	/* exact-size heap buffers: one byte too many written is an ASan report */
	char *user = malloc(AUTH_MAX_USER + 1), *pass = malloc(AUTH_MAX_PASSWORD + 1);
	const char *err = NULL;

	if (user == NULL || pass == NULL)
		abort();
	if (proto_sasl_plain_decode(s, user, AUTH_MAX_USER + 1, pass, AUTH_MAX_PASSWORD + 1,
				    &err) == 0) {
		size_t ul = strnlen(user, AUTH_MAX_USER + 1), pl = strnlen(pass, AUTH_MAX_PASSWORD + 1);

		if (ul == 0 || ul > AUTH_MAX_USER || pl > AUTH_MAX_PASSWORD)
			abort();
	} else if (err == NULL) {
		abort();
	}
	free(user);
	free(pass);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s;

	if (size > 3 * AUTHD_MAX_LINE)
		return 0;
	check_parse(data, size);

	s = malloc(size + 1);
	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	check_round_trip(s);
	check_plain(s);
	if (proto_id_valid(s) != id_rule(s))
		abort();
	free(s);
	return 0;
}
