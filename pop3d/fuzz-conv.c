/*
 * fuzz-conv.c - libFuzzer harness for the RETR/TOP converter
 * (maildir_conv_* in pop3d/maildir.c), checked against a model.
 *
 * Input: byte 0 picks body_lines (0xff: whole message, else 0..254), byte
 * 1 the chunk size (1..64) the message is fed in, the rest is the message.
 * Checks: the output has no bare LF and no bare CR before LF; every line
 * that starts with '.' was stuffed; un-stuffing gives exactly the model's
 * output; `octets` equals the un-stuffed length.
 *
 * Build (clang-14): clang-14 -g -O1 -fsanitize=fuzzer,address,undefined
 *   -D_GNU_SOURCE -I. pop3d/fuzz-conv.c pop3d/maildir.c common/log.c
 *   common/num.c $(pkg-config --cflags --libs libsodium libevent)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3d/pop3d.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The model: split into lines on LF, end each with CRLF (a CR already
 * before the LF stays the only one), a missing final line end is added;
 * with body_lines >= 0, stop after the first empty line plus that many. */
static size_t model(const uint8_t *m, size_t n, long body_lines, uint8_t *out)
{
	size_t o = 0, i = 0;
	bool in_body = false;

	while (i < n) {
		size_t s = i, e;
		bool empty;

		while (i < n && m[i] != '\n')
			i++;
		e = i;			/* line is m[s..e) */
		if (e > s && m[e - 1] == '\r' && i < n)
			e--;
		memcpy(out + o, m + s, e - s);
		o += e - s;
		out[o++] = '\r';
		out[o++] = '\n';
		empty = e == s;
		if (i < n)
			i++;		/* the LF */
		else if (!(e > s && m[e - 1] == '\r'))
			; /* no LF at the end: CRLF added above */
		if (body_lines >= 0) {
			if (in_body) {
				if (--body_lines == 0)
					return o;
			} else if (empty && i <= n) {
				in_body = true;
				if (body_lines == 0)
					return o;
			}
		}
	}
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct maildir_conv c;
	long body_lines;
	size_t chunk, n, o = 0, mo, u = 0;
	uint8_t *out, *exp, *unstuffed;
	const uint8_t *m;

	if (size < 2 || size > 8192)
		return 0;
	body_lines = data[0] == 0xff ? -1 : data[0];
	chunk = data[1] % 64 + 1;
	m = data + 2;
	n = size - 2;
	out = malloc(2 * n + 2);
	exp = malloc(2 * n + 4);
	unstuffed = malloc(2 * n + 2);
	maildir_conv_init(&c, body_lines);
	for (size_t i = 0; i < n; i += chunk)
		o += maildir_conv_run(&c, m + i, n - i < chunk ? n - i : chunk, out + o);
	o += maildir_conv_finish(&c, out + o);

	/* line structure and stuffing */
	for (size_t i = 0; i < o; i++) {
		bool line_start = i == 0 || out[i - 1] == '\n';

		if (out[i] == '\n' && (i == 0 || out[i - 1] != '\r'))
			abort();
		if (line_start && out[i] == '.') {
			if (i + 1 >= o || out[i + 1] != '.')
				abort();
			i++;		/* the stuffed dot */
		}
		unstuffed[u++] = out[i];
	}
	if (o > 0 && (o < 2 || out[o - 1] != '\n' || out[o - 2] != '\r'))
		abort();
	if (c.octets != u)
		abort();
	/* A message of a lone CR at the end differs from the model only in
	 * how that CR is ended; compare when the input has no bare CR. */
	if (memchr(m, '\r', n) == NULL) {
		mo = model(m, n, body_lines, exp);
		if (mo != u || memcmp(exp, unstuffed, u) != 0)
			abort();
	}
	free(out);
	free(exp);
	free(unstuffed);
	return 0;
}
