/*
 * fuzz-line.c - libFuzzer harness for the bounded line reader
 * (common/line.c), checked against a model on a flat copy of the bytes.
 *
 * Input: byte 0 picks max (1..256), byte 1 the chunk size the bytes are
 * added to the evbuffer in (1..64, so lines straddle chain elements), the
 * rest is the stream.  Lines are read until LINE_NONE; on LINE_TOOLONG the
 * line is skipped, as the daemons do.  Every result, the bytes consumed
 * and has_nul must match the model.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evbuffer *buf;
	size_t max, chunk, pos, len;
	const uint8_t *s;
	char *out;
	bool has_nul;

	if (size < 2 || size > 16384)
		return 0;
	max = (size_t)data[0] + 1;
	chunk = (size_t)(data[1] % 64) + 1;
	s = data + 2;
	size -= 2;

	buf = evbuffer_new();
	out = malloc(max + 1);		/* exactly what line.h asks for */
	if (buf == NULL || out == NULL)
		abort();
	for (pos = 0; pos < size; pos += chunk)
		evbuffer_add(buf, s + pos, size - pos < chunk ? size - pos : chunk);

	pos = 0;		/* model: bytes consumed so far */
	for (;;) {
		const uint8_t *lf = memchr(s + pos, '\n', size - pos);
		size_t avail = size - pos, n = lf != NULL ? (size_t)(lf - (s + pos)) + 1 : 0;
		enum line_status st = line_read(buf, out, max, &len, &has_nul);

		if (evbuffer_get_length(buf) + pos != size && st != LINE_OK)
			abort();	/* consumed without returning a line */
		if (lf == NULL) {
			if (st != (avail >= max ? LINE_TOOLONG : LINE_NONE))
				abort();
			break;
		}
		if (n > max) {
			if (st != LINE_TOOLONG || evbuffer_get_length(buf) != avail)
				abort();
			if (!line_skip(buf))
				abort();
			pos += n;
			continue;
		}
		if (st != LINE_OK || evbuffer_get_length(buf) != avail - n)
			abort();
		size_t want = n - 1;

		if (want > 0 && s[pos + want - 1] == '\r')
			want--;
		if (len != want || out[len] != '\0' || memcmp(out, s + pos, len) != 0)
			abort();
		if (has_nul != (memchr(s + pos, '\0', want) != NULL))
			abort();
		pos += n;
	}
	if (evbuffer_get_length(buf) + pos != size)
		abort();
	free(out);
	evbuffer_free(buf);
	return 0;
}
