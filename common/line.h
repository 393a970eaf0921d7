/*
 * line.h - the bounded line reader every network input goes through.
 */
#ifndef COMMON_LINE_H
#define COMMON_LINE_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;

enum line_status {
	LINE_NONE,	/* no complete line yet (and not too long so far) */
	LINE_OK,	/* *out holds a line */
	LINE_TOOLONG,	/* no LF within max bytes: caller errors or skips */
};

/* Takes one LF-terminated line from buf.  max counts the line with its
 * terminator; out must have room for max + 1 bytes.  The LF and a CR before
 * it are removed; out is NUL-terminated and *len_r is its length.  A line
 * containing a NUL byte is returned as LINE_OK with *has_nul_r set: the
 * caller refuses it.  On LINE_TOOLONG nothing is consumed. */
enum line_status line_read(struct evbuffer *buf, char *out, size_t max,
			   size_t *len_r, bool *has_nul_r);

/* Drops bytes up to and including the next LF.  Returns true if an LF was
 * found; otherwise drops everything buffered and returns false. */
bool line_skip(struct evbuffer *buf);

#endif
