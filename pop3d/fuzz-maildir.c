/*
 * fuzz-maildir.c - libFuzzer harness for what pop3d/maildir.c reads out
 * of Maildir file names and its own records: the size in a name
 * (",W=<n>", size_from_name), the UIDL (base_len, uidl_ok, uidl_hash,
 * assign_uidls with its two rounds of rehashing for shared bases), the
 * cur/ name with the Seen flag (seen_name: the ":2,<flags>" info suffix),
 * the "base number" records pop3d-sizes and pop3d-expire (pairs_read,
 * pairs_find, cacheable), and the index pop3d-index (index_parse,
 * index_format).  maildir.c is included: these are static.  No
 * directory is touched: the listing is built in memory as scan_dir would.
 *
 * Input: lines.  Up to the first empty line, each line is a file name,
 * in new/ if its first byte is even, else in cur/ (the rest of the line
 * is the name; names with '/', a leading '.', or listed twice are
 * dropped, as a directory cannot hold them); after it, the text of a
 * record file.
 * Properties checked:
 *   - every UIDL is 1 to 70 bytes of 0x21..0x7e and no two are equal;
 *     a base that is a valid UIDL, held by one file only and not like a
 *     hash is its UIDL;
 *     UIDLs do not depend on the order of the listing;
 *   - size_from_name accepts only a name with ",W=<digits>" before ':';
 *   - seen_name keeps the base, gives flags with exactly one S and the
 *     others unchanged, and its result, once in cur/, is not renamed
 *     again;
 *   - the record table is sorted, every entry is found by its base, and
 *     no base holds a blank or a line end;
 *   - the same text as an index (pop3d-index, index_parse) is refused, or
 *     holds only names "new/X" or "cur/X" a directory could list and
 *     bounded numbers, is written back by index_format into an index
 *     that parses to the same listing, and is refused for another user.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3d/maildir.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_NAMES 64

static void check_uidls(const struct maildir *md)
{
	for (size_t i = 0; i < md->n; i++) {
		const char *u = md->msgs[i].m.uidl, *name = strchr(md->msgs[i].m.name, '/') + 1;
		size_t bl = base_len(name);
		bool shared = false;

		if (!uidl_ok(u, strlen(u)))
			abort();
		for (size_t k = 0; k < md->n; k++) {
			const char *other = strchr(md->msgs[k].m.name, '/') + 1;

			if (k == i)
				continue;
			if (strcmp(md->msgs[k].m.uidl, u) == 0)
				abort();
			if (base_len(other) == bl && memcmp(other, name, bl) == 0)
				shared = true;
		}
		if (!shared && uidl_ok(name, bl) && !uidl_hashlike(name, bl) &&
		    (strlen(u) != bl || memcmp(u, name, bl) != 0))
			abort();
	}
}

static void check_size(const char *name)
{
	uint64_t v;
	const char *w;
	size_t end = strcspn(name, ":");

	if (!size_from_name(name, &v))
		return;
	w = memmem(name, end, ",W=", 3);
	if (w == NULL || w[3] < '0' || w[3] > '9')
		abort();
}

static void check_seen(const char *name)
{
	char out[600], again[600];
	const char *info, *info2, *file = strchr(name, '/') + 1, *oldinfo;
	size_t bl, nflags = 0;
	int r = seen_name(name, out, sizeof(out), &info);

	if (r != 0)
		return;
	oldinfo = strstr(file, ":2,");
	bl = oldinfo != NULL ? (size_t)(oldinfo - file) : strcspn(file, ":");
	if (strncmp(out, "cur/", 4) != 0 || memcmp(out + 4, file, bl) != 0 ||
	    info != out + 4 + bl || strncmp(info, ":2,", 3) != 0)
		abort();
	for (const char *p = info + 3; *p != '\0'; p++)
		nflags += *p == 'S';
	if (nflags != 1)
		abort();
	/* the other flags, in their order */
	if (oldinfo != NULL) {
		const char *a = oldinfo + 3, *b = info + 3;

		for (;;) {
			while (*a == 'S')
				a++;
			while (*b == 'S')
				b++;
			if (*a != *b)
				abort();
			if (*a == '\0')
				break;
			a++;
			b++;
		}
	}
	/* 1 (seen, in cur/), or -1 when adding S made 63 flags, one more
	 * than seen_name takes: either way mark_seen leaves it there */
	if (seen_name(out, again, sizeof(again), &info2) == 0)
		abort();
}

static void check_pairs(const char *text, size_t len, struct maildir *md)
{
	struct cache_entry *tab;
	size_t n;
	FILE *f;
	uint64_t v;

	if (len == 0)
		return;
	f = fmemopen((void *)(uintptr_t)text, len, "r");
	if (f == NULL)
		abort();
	pairs_read(f, &tab, &n);
	fclose(f);
	for (size_t i = 0; i < n; i++) {
		size_t bl = strlen(tab[i].base);

		if (i > 0 && strcmp(tab[i - 1].base, tab[i].base) > 0)
			abort();
		if (strpbrk(tab[i].base, "\n") != NULL || bl == 0)
			abort();
		if (bl < 256 && !pairs_find(tab, n, tab[i].base, bl, &v))
			abort();
	}
	/* what the listing would look up */
	for (size_t i = 0; i < md->n; i++) {
		const char *name = strchr(md->msgs[i].m.name, '/') + 1;

		if (cacheable(name, base_len(name)))
			(void)pairs_find(tab, n, name, base_len(name), &v);
	}
	pairs_free(&tab, &n);
}

/* The same text as the index pop3d-index of the user 1000 in the
 * maildir (2049, 77): whatever index_parse accepts holds names a
 * directory could list, bounded numbers, and comes back the same through
 * index_format and index_parse again. */
static void check_index(const char *text, size_t len)
{
	static struct msg_entry msgs[16384 / 14 + 1];	/* the input bound over the shortest line */
	struct index idx, again;
	struct maildir md;
	struct obuf o;
	const char *why;
	char *buf = xmalloc(len + 1);

	memcpy(buf, text, len);
	if (index_parse(buf, len, 1000, 2049, 77, &idx, &why) == -1) {
		free(buf);
		return;
	}
	if (idx.n > sizeof(msgs) / sizeof(msgs[0]))
		abort();	/* 14 bytes a line at least: the input is smaller */
	memset(&md, 0, sizeof(md));
	md.dev = 2049;
	md.ino = 77;
	md.dirs[0] = idx.dirs[0];
	md.dirs[1] = idx.dirs[1];
	md.msgs = msgs;
	for (size_t i = 0; i < idx.n; i++) {
		const struct index_msg *m = &idx.msgs[i];

		if (!index_name_ok(m->name) || m->size > POP3D_INDEX_MAX_SIZE ||
		    m->mtime.tv_nsec < 0 || m->mtime.tv_nsec > 999999999)
			abort();
		memset(&msgs[i], 0, sizeof(msgs[i]));
		msgs[i].m.name = m->name;
		msgs[i].m.size = m->size;
		msgs[i].ino = m->ino;
		msgs[i].mtime = m->mtime;
		msgs[i].dev = idx.dirs[sub_of(m->name)].dev;
		msgs[i].size_known = true;
	}
	md.n = idx.n;
	if (!index_format(&md, 1000, idx.settled, &o))
		abort();
	ob_reserve(&o, 1);	/* index_parse's NUL */
	if (index_parse(o.p, o.len, 1000, 2049, 77, &again, &why) == -1 || again.n != idx.n ||
	    again.settled != idx.settled || !stamps_equal(again.dirs, idx.dirs))
		abort();
	for (size_t i = 0; i < idx.n; i++)
		if (strcmp(again.msgs[i].name, idx.msgs[i].name) != 0 ||
		    again.msgs[i].size != idx.msgs[i].size || again.msgs[i].ino != idx.msgs[i].ino ||
		    !ts_equal(&again.msgs[i].mtime, &idx.msgs[i].mtime))
			abort();
	free(again.msgs);
	/* another owner, uid or maildir: refused */
	memcpy(buf, text, len);
	if (index_parse(buf, len, 1001, 2049, 77, &again, &why) != -1)
		abort();
	free(o.p);
	free(idx.msgs);
	free(buf);
}

static void md_clear(struct maildir *md)
{
	for (size_t i = 0; i < md->n; i++)
		free(md->msgs[i].m.name);
	md->n = 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct msg_entry msgs[FUZZ_MAX_NAMES];
	static char uidls[FUZZ_MAX_NAMES][POP3D_MAX_UIDL + 1];
	struct maildir md;
	const char *p = (const char *)data, *end = p + size;
	char name[520];

	if (size > 16384)
		return 0;
	memset(&md, 0, sizeof(md));
	md.msgs = msgs;
	md.cap = FUZZ_MAX_NAMES;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
		bool dup = false;

		if (len == 0) {
			p++;
			break;	/* the record follows */
		}
		if (md.n < FUZZ_MAX_NAMES && len > 1 && len < 256 && p[1] != '.' &&
		    memchr(p + 1, '/', len - 1) == NULL && memchr(p + 1, '\0', len - 1) == NULL) {
			snprintf(name, sizeof(name), "%s/%.*s", p[0] & 1 ? "cur" : "new",
				 (int)(len - 1), p + 1);
			for (size_t i = 0; i < md.n && !dup; i++)
				dup = strcmp(md.msgs[i].m.name, name) == 0;
			if (!dup) {
				memset(&md.msgs[md.n], 0, sizeof(md.msgs[0]));
				md.msgs[md.n].m.name = xstrdup(name);
				md.msgs[md.n].mtime.tv_sec = (time_t)md.n;
				md.n++;
			}
		}
		p += len + (nl != NULL);
	}

	assign_uidls(&md);
	check_uidls(&md);
	/* The same names listed the other way round get the same UIDLs. */
	for (size_t i = 0; i < md.n; i++)
		memcpy(uidls[i], md.msgs[i].m.uidl, sizeof(uidls[i]));
	for (size_t i = 0; i < md.n / 2; i++) {
		struct msg_entry t = md.msgs[i];

		md.msgs[i] = md.msgs[md.n - 1 - i];
		md.msgs[md.n - 1 - i] = t;
	}
	for (size_t i = 0; i < md.n; i++)
		md.msgs[i].shared_base = false;
	assign_uidls(&md);
	for (size_t i = 0; i < md.n; i++)
		if (strcmp(md.msgs[i].m.uidl, uidls[md.n - 1 - i]) != 0)
			abort();

	for (size_t i = 0; i < md.n; i++) {
		check_size(md.msgs[i].m.name);
		check_seen(md.msgs[i].m.name);
	}
	check_pairs(p, (size_t)(end - p), &md);
	check_index(p, (size_t)(end - p));
	md_clear(&md);
	return 0;
}
