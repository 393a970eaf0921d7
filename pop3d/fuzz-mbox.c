/*
 * fuzz-mbox.c - libFuzzer harness for pop3d/mbox.c's scanner (scan_feed,
 * from_line, the header checks: X-UIDL, c-client's metadata message, the
 * digest) and its UIDL assignment (assign_uidls).  mbox.c is included:
 * these are static.  No file is touched: the input is the spool.
 *
 * Input: byte 0 picks the piece size the spool is fed in (1 to 256
 * bytes, or everything at once), as reads of any size would deliver it;
 * the rest is the spool.
 * Properties checked:
 *   - feeding in pieces gives the same messages as feeding all at once
 *     (offsets, sizes, digests, X-UIDLs);
 *   - the spool is refused exactly when it is not empty and does not start
 *     with a From_ line; otherwise the first message starts at 0, each
 *     From_ line satisfies from_line and stands at the start or after a
 *     blank line, messages follow each other (from < body <= end <= next
 *     from), and the last ends at most at the end;
 *   - every size is what maildir.c's converter makes of the message's
 *     bytes (what RETR sends, before dot-stuffing);
 *   - only the first message can be c-client's metadata message;
 *   - after assign_uidls every UIDL is 1-70 bytes of 0x21..0x7e and no two
 *     are equal.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3d/mbox.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_MSGS 512

struct collected {
	struct scan_msg m[FUZZ_MAX_MSGS];
	size_t n;
};

static int collect(void *ctx, const struct scan_msg *m)
{
	struct collected *c = ctx;

	if (c->n == FUZZ_MAX_MSGS)
		return -1;
	c->m[c->n++] = *m;
	return 0;
}

/* Feeds the spool in pieces of piece bytes (0: all at once), keeping what
 * the scanner leaves as a reader of mbox.c does.  Returns s.bad. */
static bool run(const uint8_t *spool, size_t len, size_t piece, struct collected *c)
{
	struct scanner s;
	uint8_t *buf = malloc(len + MBOX_LOOKAHEAD + 1);
	size_t have = 0, fed = 0;

	if (buf == NULL)
		abort();
	c->n = 0;
	scan_init(&s, collect, c);
	for (;;) {
		size_t want = piece == 0 ? len - fed : piece;
		bool eof;
		size_t used;

		if (want > len - fed)
			want = len - fed;
		memcpy(buf + have, spool + fed, want);
		have += want;
		fed += want;
		eof = fed == len && want == 0;
		used = scan_feed(&s, buf, have, eof);
		if (used > have)
			abort();
		/* with MBOX_LOOKAHEAD bytes in hand it always moves on */
		if (!s.bad && !s.stop && used == 0 && have >= MBOX_LOOKAHEAD)
			abort();
		memmove(buf, buf + used, have - used);
		have -= used;
		if (eof || s.bad || s.stop)
			break;
	}
	free(buf);
	return s.bad;
}

static uint64_t conv_octets(const uint8_t *p, size_t len)
{
	static uint8_t out[2 * 70000 + 2];
	struct maildir_conv c;
	size_t i = 0;

	maildir_conv_init(&c, -1);
	while (i < len) {
		size_t n = len - i < 65536 ? len - i : 65536;

		maildir_conv_run(&c, p + i, n, out);
		i += n;
	}
	maildir_conv_finish(&c, out);
	return c.octets;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct collected all, parts;
	static struct mbox_entry e[FUZZ_MAX_MSGS];
	const uint8_t *spool;
	size_t len, piece;
	bool bad, bad2;

	if (size < 1 || size > 65536)
		return 0;
	piece = data[0] == 0 ? 0 : data[0];
	spool = data + 1;
	len = size - 1;

	bad = run(spool, len, 0, &all);
	bad2 = run(spool, len, piece, &parts);
	if (bad != bad2 || all.n != parts.n)
		abort();
	for (size_t i = 0; i < all.n; i++)
		if (memcmp(&all.m[i], &parts.m[i], sizeof(all.m[i])) != 0)
			abort();

	/* refused exactly when there is something and it is no mbox */
	{
		const uint8_t *nl = memchr(spool, '\n', len);
		bool starts = nl != NULL && from_line(spool, (size_t)(nl - spool) + 1);

		if (bad != (len > 0 && !starts))
			abort();
	}
	if (bad)
		return 0;
	for (size_t i = 0; i < all.n; i++) {
		const struct scan_msg *m = &all.m[i];
		uint64_t next = i + 1 < all.n ? all.m[i + 1].from_off : len;

		if (i == 0 && m->from_off != 0)
			abort();
		if (!(m->from_off < m->body_off && m->body_off <= m->end_off && m->end_off <= next))
			abort();
		if (!from_line(spool + m->from_off, m->body_off - m->from_off))
			abort();
		if (m->from_off == 1)
			abort();
		if (m->from_off > 0 &&
		    !(spool[m->from_off - 1] == '\n' &&
		      (spool[m->from_off - 2] == '\n' ||
		       (m->from_off >= 3 && spool[m->from_off - 2] == '\r' &&
			spool[m->from_off - 3] == '\n'))))
			abort();
		if (m->octets != conv_octets(spool + m->body_off, m->end_off - m->body_off))
			abort();
		if (m->cclient && i != 0)
			abort();
		if (m->xuidl_ok && !uidl_ok(m->xuidl, strlen(m->xuidl)))
			abort();
	}

	memset(e, 0, sizeof(e));
	for (size_t i = 0; i < all.n; i++) {
		memcpy(e[i].digest, all.m[i].digest, MBOX_DIGEST);
		if (all.m[i].xuidl_ok) {
			e[i].from_xuidl = true;
			memcpy(e[i].m.uidl, all.m[i].xuidl, sizeof(e[i].m.uidl));
		}
	}
	assign_uidls(e, all.n);
	for (size_t i = 0; i < all.n; i++) {
		if (!uidl_ok(e[i].m.uidl, strlen(e[i].m.uidl)))
			abort();
		for (size_t k = 0; k < i; k++)
			if (strcmp(e[i].m.uidl, e[k].m.uidl) == 0)
				abort();
	}
	return 0;
}
