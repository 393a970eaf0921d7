/*
 * line.c - bounded line reader on libevent buffers (see line.h).
 */
#include <string.h>

#include <event2/buffer.h>

#include "common/line.h"

enum line_status line_read(struct evbuffer *buf, char *out, size_t max,
			   size_t *len_r, bool *has_nul_r)
{
	struct evbuffer_ptr pos;
	size_t avail = evbuffer_get_length(buf), n;

	pos = evbuffer_search(buf, "\n", 1, NULL);
	if (pos.pos == -1)
		return avail >= max ? LINE_TOOLONG : LINE_NONE;
	n = (size_t)pos.pos + 1;	/* with LF */
	if (n > max)
		return LINE_TOOLONG;
	if (evbuffer_remove(buf, out, n) != (int)n)
		return LINE_NONE;	/* cannot happen: n <= avail */
	n--;
	if (n > 0 && out[n - 1] == '\r')
		n--;
	out[n] = '\0';
	*len_r = n;
	*has_nul_r = memchr(out, '\0', n) != NULL;
	return LINE_OK;
}

bool line_skip(struct evbuffer *buf)
{
	struct evbuffer_ptr pos = evbuffer_search(buf, "\n", 1, NULL);

	if (pos.pos == -1) {
		evbuffer_drain(buf, evbuffer_get_length(buf));
		return false;
	}
	evbuffer_drain(buf, (size_t)pos.pos + 1);
	return true;
}
