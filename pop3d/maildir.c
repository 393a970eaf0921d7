/*
 * maildir.c - the Maildir maildrop of a POP3 session.
 *
 * Runs in the session process, as the mailbox owner, and nowhere else.
 *
 * DESIGN
 * - Everything is opened relative to one directory descriptor taken at
 *   open time, so a rename of the maildir path mid-session cannot make us
 *   touch another tree, and no path is ever built from client input.
 * - One session per maildrop: flock(LOCK_EX|LOCK_NB) on "pop3d-lock".  The
 *   kernel drops an flock when its last descriptor closes, so a crashed or
 *   killed session never leaves a stale lock behind.
 * - The message list is taken once, at open: new/ and cur/, sorted by
 *   mtime then name (or the index's, below).  Mail delivered afterwards
 *   lands in new/ under a name we have not listed, so it stays invisible
 *   and untouched until the next session.  We only ever unlink or rename
 *   names we listed, never tmp/.
 * - The index "pop3d-index" (issue 19) holds the listing: per message its
 *   name, size, inode and mtime, in order; and the device, inode, mtime
 *   and ctime (nanoseconds) of new/ and cur/ as they were just before the
 *   listing was read, and whether they had "settled".  Any change to a
 *   directory's entries (a delivery, a rename, an unlink) sets both its
 *   times to the clock's time of the change; ctime cannot be set back
 *   by anyone (utimensat sets it to now).  So if both directories still
 *   have the stamps the index recorded, their entries are the ones it
 *   lists, and the open reads nothing else: no readdir, no stat.  The
 *   catch is the clock's granularity (a jiffy, or a second on some
 *   filesystems): a change in the same tick as the listing's stamp
 *   would leave it unchanged.  Hence "settled": stamps that were at
 *   least POP3D_INDEX_SETTLE_S old by the clock read before them can only
 *   be followed by changes with later times; an index whose stamps were
 *   younger is not trusted, and the next open reads the directories
 *   again (Dovecot's Maildir has the same rule).  The stamps are taken
 *   before the listing, so a change racing with it can only make the
 *   index look older than the directories, never newer.  (A filesystem
 *   whose clock is not this host's, NFS, is trusted as far as its
 *   server's clock and this one's agree within the settle time.)
 * - Warm listings (issue 19, seed 2): a session process that serves
 *   again (a spare) keeps the listing of its last session when UPDATE
 *   changed nothing and its stamps were settled (maildir_park), without
 *   the lock or any descriptor.  Its next open of the same maildir (the
 *   same device and inode; mailbox.c also wants the same user and
 *   maildrop) stamps new/ and cur/ and takes the kept listing under the
 *   index's rule: stamps equal, so the same entries.  No index is read,
 *   no name parsed, no UIDL computed.  Per-session marks (DELE, RETR) are
 *   cleared at the park; the EXPIRE record is read again at each open.
 *   A listing whose sizes RETR found wrong (index_off) is not kept.
 * - Reading the directories again is cheap too: a file whose readdir
 *   inode and base name match an index entry (the same file, renamed by
 *   an MUA or not) takes its size and mtime from there without a stat;
 *   only files the index does not know are stat()ed and sized.  Where
 *   readdir's d_ino is not stat's st_ino (some overlay filesystems)
 *   nothing matches and every file is stat()ed, as without an index.
 * - The index is the owner's file, and is read as hostile: it must be a
 *   regular file owned by our euid, at most POP3D_INDEX_MAX_BYTES, with
 *   this version's first line; its owner line must name our euid and
 *   the maildir's device and inode (an index copied in from another
 *   mailbox, whoever's, is refused even if its stamps were forged to
 *   match); every line is bounded and strictly parsed, names must be
 *   "new/" or "cur/" and a name a directory could list (no '/', no
 *   leading '.'), a name twice, a count that is not the number of lines,
 *   a missing "end" or bytes after it refuse it whole.  A refused index
 *   is rebuilt.  What it could still say wrongly, a size, is checked as
 *   RETR sends the message: a mismatch drops the index and the cached
 *   size (never the name's ",W=", which is the name's word).  UIDLs are
 *   never read from it: they are computed from the names at every open,
 *   so they are the same with or without it.
 * - It is written like pop3d-sizes (below), and also fdatasync()ed before
 *   the rename, so a crash leaves the old index or the new one whole.  A
 *   write failure (read-only or full maildir) leaves the login working,
 *   without an index, logged once per session process and maildir.
 *   UPDATE rewrites it when it removed or renamed a message, as not
 *   settled (the directories changed under our hands).  A message gone
 *   from its listed name at RETR or TOP is looked for by base name and
 *   inode in cur/ and new/ (an MUA renamed it) before -ERR.
 * - Sizes are RFC 1939 sizes: octets with CRLF line ends, as RETR sends
 *   them before dot-stuffing.  A ",W=<n>" in the name is trusted (delivery
 *   agents write it); otherwise the size cache "pop3d-sizes" ("base size"
 *   lines) is used, or the message is read once and the cache rewritten
 *   (atomically, through a temporary file and rename).
 * - UIDL is the base of the file name (up to the first ':' or ','), which
 *   never changes when flags are added or the file moves to cur/.  A base
 *   that is not 1-70 printable characters, or that two files share, is
 *   replaced by a hash of the name: still stable, still unique.  So is a
 *   base that looks like such a hash (32 lower-case hex digits): kept as
 *   it is, it could be the hash another file gets (pop3d/fuzz-maildir.c
 *   made one), and two messages would share a UIDL.
 * - No file is ever replaced, so no message is ever lost to a rename.
 *   Every move is renameat2(RENAME_NOREPLACE); where the filesystem lacks
 *   that flag (EINVAL or ENOSYS: NFS, some FUSE, old kernels) it is
 *   linkat (which refuses an existing name too) and then unlinkat of the
 *   old name.  A filesystem with neither leaves the message where it is.
 *   The cur/ name a retrieved message should get may already be taken:
 *   a copy put back by an MUA, a sync tool or a restore ("new/X" and
 *   "cur/X:2,S"), or the same base with other flags.  Then the message
 *   gets a fresh Maildir name, "cur/<sec>.M<usec>P<pid>Q<n>.<host>:2,<flags>"
 *   (the delivery scheme of the Maildir spec; '/', ':' and ',' in the
 *   host name escaped as \057, \072, \054), keeping both files; its UIDL
 *   changes, so a client may download it once more: a duplicate, never a
 *   loss.  If the taken name is the same file (a hard link, or a link +
 *   unlink cut short by a crash), only the extra name goes.
 * - Only the file that was listed is deleted.  The listing keeps each
 *   file's device and inode; at UPDATE a message to delete is first moved
 *   (never replacing) to a private name in tmp/ and checked there, so a
 *   file that took its name since the listing (the message renamed away
 *   by an MUA, another one delivered under the same name) is seen, put
 *   back and kept.  A retrieved message is marked seen only if its name
 *   still holds the listed file.
 * - Audit of every other rename and unlink (issue 13): "pop3d-sizes",
 *   "pop3d-expire" and "pop3d-index" are written to a temporary name that is unlinked first
 *   and created O_EXCL|O_NOFOLLOW (a stale or planted temporary file is
 *   never truncated, even if it is a hard link to a message), then renamed
 *   over their own name: replacing our own record is the point, and
 *   nothing else is ever stored under it.  "pop3d-lock" is opened without
 *   O_TRUNC, must be a regular file, and is never unlinked or renamed
 *   (that would let two sessions lock two different files).  Nothing in
 *   tmp/ but our own claimed names is touched.  RETR, TOP and sizing open
 *   messages read-only.
 * - What remains: with the link + unlink fallback, the old name is
 *   unlinked by name right after the link, and a deletion that cannot
 *   claim (no tmp/) unlinks by name right after checking the inode: a
 *   file put under that name within that one system call would go.  Only
 *   RENAME_NOREPLACE closes that, and it is used wherever it exists.
 * - EXPIRE (RFC 2449 section 6.7) needs to know when a message was first
 *   retrieved (RETR or TOP).  That is kept in "pop3d-expire", "base
 *   unix-seconds" lines, written at UPDATE like the size cache, for the
 *   listed messages only (so it never grows beyond the maildrop).  It is
 *   the owner's file: read strictly (malformed lines ignored, lines and
 *   entries bounded, times in the future taken as now), never trusted
 *   beyond "this message was seen then".  A base two listed files share
 *   is neither trusted nor written: a retrieval is never credited to a
 *   copy that was not retrieved.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/num.h"
#include "pop3d/pop3d.h"

#define LOCK_NAME	"pop3d-lock"
#define CACHE_NAME	"pop3d-sizes"
#define CACHE_TMP	"pop3d-sizes.tmp"
#define EXPIRE_NAME	"pop3d-expire"
#define EXPIRE_TMP	"pop3d-expire.tmp"
#define INDEX_NAME	"pop3d-index"
#define INDEX_TMP	"pop3d-index.tmp"
/* The first line; another version is an index to rebuild, not to read. */
#define INDEX_MAGIC	"pop3d-index 1"
#define CACHE_MAX_LINE	512
/* Fresh names tried when the one a message should get is taken. */
#define FRESH_TRIES	8
#define READ_CHUNK	(POP3D_SESSION_FLUSH / 2)

struct msg_entry {
	struct maildir_msg m;
	struct timespec mtime;
	dev_t dev;		/* the file listed: only it is ever deleted */
	ino_t ino;
	bool size_known;
	bool size_from_name;
	bool shared_base;	/* another listed file has the same base */
	bool removed;		/* UPDATE: deleted (DELE or EXPIRE) */
	bool name_borrowed;	/* m.name points into md->index_buf: not freed */
};

/* new/ or cur/ as it was when the listing was taken (or the index says). */
struct dir_stamp {
	bool valid;		/* a directory, and stat()ed */
	uint64_t dev, ino;
	struct timespec mtime, ctime;
};

/* One message line of pop3d-index; name points into the index's buffer. */
struct index_msg {
	char *name;		/* "new/X" or "cur/X" */
	uint64_t size;
	uint64_t ino;
	struct timespec mtime;
};

/* pop3d-index as read (index_parse). */
struct index {
	char *buf;		/* the file's bytes, lines NUL-terminated in place */
	struct dir_stamp dirs[2];	/* new/, cur/ */
	bool settled;		/* the stamps were old enough to be trusted */
	struct index_msg *msgs;
	size_t n;
};

/* A "base number" line of pop3d-sizes (size) or pop3d-expire (time). */
struct cache_entry {
	char *base;
	uint64_t value;
};

struct maildir {
	int dirfd;
	int lockfd;
	struct msg_entry *msgs;
	size_t n, cap;
	struct cache_entry *cache;
	size_t ncache;
	bool cache_dirty;
	struct cache_entry *expire;	/* pop3d-expire, loaded at UPDATE */
	size_t nexpire;
	uint64_t dev, ino;	/* of the maildir: the index's owner check */
	struct dir_stamp dirs[2];	/* new/, cur/ before the listing was read */
	char *index_buf;	/* the index read at open (names borrowed from it) */
	bool index_off;		/* not to be written again by this session */
	bool changed;		/* UPDATE removed or renamed a message */
	bool settled;		/* dirs were settled when the listing was read */
};

bool maildir_no_renameat2;
int maildir_index_settle_s = POP3D_INDEX_SETTLE_S;

static enum maildir_status status_of(int err)
{
	switch (err) {
	case ENOENT: case ENOTDIR: case EACCES: case EPERM: case ELOOP: case EROFS:
		return MAILDIR_PERM;
	default:
		return MAILDIR_TEMP;
	}
}

/* ---- the converter ------------------------------------------------------ */

void maildir_conv_init(struct maildir_conv *c, long body_lines)
{
	memset(c, 0, sizeof(*c));
	c->line_start = true;
	c->body_lines = body_lines;
}

size_t maildir_conv_run(struct maildir_conv *c, const uint8_t *in, size_t inlen,
			uint8_t *out)
{
	size_t o = 0, i = 0;

	if (c->done)
		return 0;
	/* A line (or the part of it in this chunk) at a time: memchr finds its
	 * end, memcpy moves it; only line starts and ends need a look. */
	while (i < inlen) {
		const uint8_t *nl = memchr(in + i, '\n', inlen - i);
		size_t end = nl != NULL ? (size_t)(nl - in) : inlen;
		size_t len = end - i;
		bool empty;

		if (len > 0) {
			if (c->line_start && in[i] == '.')
				out[o++] = '.';		/* stuffed: not counted */
			memcpy(out + o, in + i, len);
			o += len;
			c->octets += len;
			c->line_start = false;
			c->prev_cr = in[end - 1] == '\r';
			c->line_bytes += len;
		}
		if (nl == NULL)
			break;
		i = end + 1;

		/* the LF: CRLF out, unless a CR came just before it */
		empty = c->line_bytes == 0 || (c->line_bytes == 1 && c->prev_cr);
		if (!c->prev_cr) {
			out[o++] = '\r';
			c->octets++;
		}
		out[o++] = '\n';
		c->octets++;
		c->line_start = true;
		c->prev_cr = false;
		c->line_bytes = 0;
		if (c->body_lines >= 0) {
			/* TOP n: the header, the blank line, then n body lines */
			if (c->in_body)
				c->body_lines--;
			else if (empty)
				c->in_body = true;
			if (c->in_body && c->body_lines == 0) {
				c->done = true;
				return o;
			}
		} else if (empty) {
			c->in_body = true;
		}
	}
	return o;
}

size_t maildir_conv_finish(struct maildir_conv *c, uint8_t *out)
{
	if (c->done || c->line_start)
		return 0;
	out[0] = '\r';
	out[1] = '\n';
	c->octets += 2;
	c->line_start = true;
	return 2;
}

/* ---- names -------------------------------------------------------------- */

/* Length of the base of a file name: up to the first ':' or ','. */
static size_t base_len(const char *name)
{
	return strcspn(name, ":,");
}

/* ",W=<n>" before the info part, if any. */
static bool size_from_name(const char *name, uint64_t *size_r)
{
	size_t end = strcspn(name, ":");
	char num[24];

	for (const char *p = name; p < name + end; p++) {
		if (p[0] != ',' || p[1] != 'W' || p[2] != '=')
			continue;
		const char *d = p + 3;
		size_t n = strspn(d, "0123456789");
		if (n == 0 || n >= sizeof(num) || d + n > name + end)
			return false;
		memcpy(num, d, n);
		num[n] = '\0';
		return num_parse_u64(num, 0, UINT64_MAX, size_r) == 0;
	}
	return false;
}

bool uidl_ok(const char *s, size_t len)
{
	if (len == 0 || len > POP3D_MAX_UIDL)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

bool uidl_hashlike(const char *s, size_t len)
{
	return len == 32 && strspn(s, "0123456789abcdef") >= len;
}

static void uidl_hash(const char *s, size_t len, char *out)
{
	unsigned char h[16];

	crypto_generichash(h, sizeof(h), (const unsigned char *)s, len, NULL, 0);
	sodium_bin2hex(out, 2 * sizeof(h) + 1, h, sizeof(h));
}

static int cmp_uidl_idx(const void *a, const void *b, void *arg)
{
	const struct msg_entry *m = arg;

	return strcmp(m[*(const size_t *)a].m.uidl, m[*(const size_t *)b].m.uidl);
}

static int cmp_name_idx(const void *a, const void *b, void *arg)
{
	const struct msg_entry *m = arg;

	return strcmp(m[*(const size_t *)a].m.name, m[*(const size_t *)b].m.name);
}

/* Sorts idx by UIDL and gives every member of a group that shares one a
 * hash of its name: without the info part, or (full) all of it.  Two
 * entries with one name (only an index can say that: a directory cannot)
 * share a UIDL too; the first round finds them and sets *dup_r. */
static void rehash_groups(struct maildir *md, size_t *idx, bool full, bool *dup_r)
{
	qsort_r(idx, md->n, sizeof(*idx), cmp_uidl_idx, md->msgs);
	for (size_t i = 0; i + 1 < md->n;) {
		size_t end = i + 1;

		/* the whole group first: hashing changes the key compared */
		while (end < md->n && strcmp(md->msgs[idx[end]].m.uidl,
					     md->msgs[idx[i]].m.uidl) == 0)
			end++;
		if (!full && end - i > 1) {
			qsort_r(idx + i, end - i, sizeof(*idx), cmp_name_idx, md->msgs);
			for (size_t k = i + 1; k < end; k++)
				if (strcmp(md->msgs[idx[k]].m.name, md->msgs[idx[k - 1]].m.name) == 0)
					*dup_r = true;
		}
		for (size_t k = i; end - i > 1 && k < end; k++) {
			const char *name = md->msgs[idx[k]].m.name;
			uidl_hash(name, full ? strlen(name) : strcspn(name, ":"),
				  md->msgs[idx[k]].m.uidl);
			md->msgs[idx[k]].shared_base = true;
		}
		i = end;
	}
}

/* The process's random key for its hash tables (the UIDL check below,
 * the index's inodes): the owner's names and index cannot choose which
 * of them share a chain. */
static const unsigned char *table_key(void)
{
	static unsigned char key[crypto_shorthash_KEYBYTES];
	static bool keyed;

	if (!keyed) {
		if (sodium_init() == -1)
			fatalx("sodium_init");
		randombytes_buf(key, sizeof(key));
		keyed = true;
	}
	return key;
}

/* No two listed messages share a UIDL?  A table, not a sort: this runs at
 * every open, and nearly always finds none. */
static bool uidls_unique(const struct maildir *md)
{
	const unsigned char *key = table_key();
	size_t cap = 16, mask;
	uint32_t *slot;
	bool unique = true;

	while (cap < 2 * md->n)
		cap *= 2;
	mask = cap - 1;
	slot = xcalloc(cap, sizeof(*slot));
	for (size_t i = 0; i < md->n && unique; i++) {
		const char *u = md->msgs[i].m.uidl;
		unsigned char h[crypto_shorthash_BYTES];
		uint64_t hv;
		size_t k;

		crypto_shorthash(h, (const unsigned char *)u, strlen(u), key);
		memcpy(&hv, h, sizeof(hv));
		for (k = (size_t)hv & mask; slot[k] != 0; k = (k + 1) & mask)
			if (strcmp(md->msgs[slot[k] - 1].m.uidl, u) == 0) {
				unique = false;
				break;
			}
		slot[k] = (uint32_t)i + 1;
	}
	free(slot);
	return unique;
}

/* Gives every listed message its UIDL.  Returns false if two entries
 * have the same name (a corrupt index), true otherwise. */
static bool assign_uidls(struct maildir *md)
{
	bool dup = false;
	size_t *idx;

	for (size_t i = 0; i < md->n; i++) {
		const char *name = strchr(md->msgs[i].m.name, '/') + 1;
		size_t bl = base_len(name);

		if (uidl_ok(name, bl) && !uidl_hashlike(name, bl)) {
			memcpy(md->msgs[i].m.uidl, name, bl);
			md->msgs[i].m.uidl[bl] = '\0';
		} else {
			uidl_hash(name, bl, md->msgs[i].m.uidl);
		}
	}
	if (md->n < 2 || uidls_unique(md))
		return true;
	/* Two files with one base (a copy gone wrong): give every holder of a
	 * shared base a hash of its name without the info part ("new/X" and
	 * "cur/X:2,S" differ there, and keep their UIDL when flags change).
	 * Two that still agree ("cur/X:2,F" and "cur/X:2,FS") get a hash of
	 * their whole name: unique, though it changes with the flags. */
	idx = xcalloc(md->n, sizeof(*idx));
	for (size_t i = 0; i < md->n; i++)
		idx[i] = i;
	rehash_groups(md, idx, false, &dup);
	rehash_groups(md, idx, true, &dup);
	free(idx);
	return !dup;
}

/* ---- the size cache ----------------------------------------------------- */

static int cmp_cache(const void *a, const void *b)
{
	return strcmp(((const struct cache_entry *)a)->base,
		      ((const struct cache_entry *)b)->base);
}

static bool cacheable(const char *base, size_t len)
{
	return uidl_ok(base, len) || (len > 0 && len < 256 &&
		strcspn(base, " \t\r\n") >= len);
}

/* Reads "base number" lines of the file name (pop3d-sizes, pop3d-expire)
 * into a sorted table.  Anything malformed is ignored: a corrupt or
 * hostile file costs a recomputation, never a crash or a wrong answer
 * beyond what was written there.  Lines are at most CACHE_MAX_LINE bytes,
 * entries at most POP3D_MAX_MESSAGES. */
static void pairs_read(FILE *f, struct cache_entry **tab_r, size_t *n_r);
static void pairs_load(int dirfd, const char *name, struct cache_entry **tab_r, size_t *n_r)
{
	struct stat st;
	FILE *f;
	int fd;

	*tab_r = NULL;
	*n_r = 0;
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd == -1)
		return;
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {	/* a FIFO would block */
		close(fd);
		return;
	}
	f = fdopen(fd, "r");
	if (f == NULL) {
		close(fd);
		return;
	}
	pairs_read(f, tab_r, n_r);
	fclose(f);
}

/* The parsing half of pairs_load: f's lines into a sorted table (pop3d/
 * fuzz-maildir.c feeds it from memory). */
static void pairs_read(FILE *f, struct cache_entry **tab_r, size_t *n_r)
{
	char line[CACHE_MAX_LINE];
	struct cache_entry *tab = NULL;
	size_t n = 0, cap = 0, kept;

	while (fgets(line, sizeof(line), f) != NULL) {
		char *sp, *nl = strchr(line, '\n');
		uint64_t v;

		if (nl == NULL) {	/* over-long: skip the rest of it */
			int ch;
			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
			continue;
		}
		*nl = '\0';
		sp = strrchr(line, ' ');
		if (sp == NULL || sp == line)
			continue;
		*sp = '\0';
		if (num_parse_u64(sp + 1, 0, UINT64_MAX, &v) == -1)
			continue;
		if (n == POP3D_MAX_MESSAGES)
			break;
		if (n == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			tab = realloc(tab, cap * sizeof(*tab));
			if (tab == NULL)
				fatal("realloc");
		}
		tab[n].base = xstrdup(line);
		tab[n].value = v;
		n++;
	}
	if (n > 1)
		qsort(tab, n, sizeof(*tab), cmp_cache);
	/* A base listed twice (a record written before bases two files
	 * share were left out of it) says nothing for sure: both go. */
	kept = 0;
	for (size_t i = 0; i < n;) {
		size_t end = i + 1;

		while (end < n && strcmp(tab[end].base, tab[i].base) == 0)
			end++;
		if (end - i == 1)
			tab[kept++] = tab[i];
		else
			for (size_t k = i; k < end; k++)
				free(tab[k].base);
		i = end;
	}
	*tab_r = tab;
	*n_r = kept;
}

static void pairs_free(struct cache_entry **tabp, size_t *np)
{
	for (size_t i = 0; i < *np; i++)
		free((*tabp)[i].base);
	free(*tabp);
	*tabp = NULL;
	*np = 0;
}

static bool pairs_find(const struct cache_entry *tab, size_t n, const char *base, size_t len,
		       uint64_t *value_r)
{
	char key[256];
	struct cache_entry k = { key, 0 };
	const struct cache_entry *e;

	if (len >= sizeof(key) || n == 0)
		return false;
	memcpy(key, base, len);
	key[len] = '\0';
	e = bsearch(&k, tab, n, sizeof(*tab), cmp_cache);
	if (e == NULL)
		return false;
	*value_r = e->value;
	return true;
}

static bool cache_find(const struct maildir *md, const char *base, size_t len,
		       uint64_t *size_r)
{
	return pairs_find(md->cache, md->ncache, base, len, size_r);
}

/* Opens tmp for a record that replaces name: a stale or planted tmp is
 * unlinked first and the new one created O_EXCL, so no file is ever
 * truncated through a name it merely shares.  Returns a stream or NULL
 * (logged). */
static FILE *record_begin(struct maildir *md, const char *tmp)
{
	FILE *f;
	int fd;

	if (unlinkat(md->dirfd, tmp, 0) == -1 && errno != ENOENT) {
		log_warn("maildir: cannot remove %s", tmp);
		return NULL;
	}
	fd = openat(md->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		log_warn("maildir: cannot write %s", tmp);
		return NULL;
	}
	f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		unlinkat(md->dirfd, tmp, 0);
	}
	return f;
}

/* Closes f and renames tmp over name (our own record: replacing it is
 * the point).  Returns 0 or -1 (logged, tmp removed). */
static int record_end(struct maildir *md, FILE *f, const char *tmp, const char *name)
{
	if (fclose(f) == EOF || renameat(md->dirfd, tmp, md->dirfd, name) == -1) {
		log_warn("maildir: cannot update %s", name);
		unlinkat(md->dirfd, tmp, 0);
		return -1;
	}
	return 0;
}

static void cache_save(struct maildir *md)
{
	FILE *f = record_begin(md, CACHE_TMP);

	if (f == NULL)
		return;
	for (size_t i = 0; i < md->n; i++) {
		const struct msg_entry *e = &md->msgs[i];
		const char *name = strchr(e->m.name, '/') + 1;
		size_t bl = base_len(name);

		/* a base two files share would give both one size */
		if (e->size_from_name || !e->size_known || e->shared_base || !cacheable(name, bl))
			continue;
		fprintf(f, "%.*s %llu\n", (int)bl, name, (unsigned long long)e->m.size);
	}
	record_end(md, f, CACHE_TMP, CACHE_NAME);
}

/* ---- the index ------------------------------------------------------------ */

/* pop3d-index (DESIGN: "The index"):
 *
 *   pop3d-index 1
 *   owner <euid> <maildir dev> <maildir ino>
 *   new <dev> <ino> <mtime s> <mtime ns> <ctime s> <ctime ns>
 *   cur <dev> <ino> <mtime s> <mtime ns> <ctime s> <ctime ns>
 *   settled <0|1>
 *   messages <n>
 *   <size> <ino> <mtime s> <mtime ns> <new|cur>/<name>     (n lines)
 *   end
 *
 * in listing order.  Each line ends in LF and holds no NUL; the name is
 * the rest of its line (it may hold blanks, never a LF: such a listing is
 * not written). */

static const char *const subdirs[2] = { "new", "cur" };

static int sub_of(const char *name)
{
	return name[0] == 'c';	/* "cur/..." (1) or "new/..." (0) */
}

/* new/ and cur/ as they are now, into md->dirs. */
static void stamp_dirs(struct maildir *md)
{
	for (int i = 0; i < 2; i++) {
		struct dir_stamp *d = &md->dirs[i];
		struct stat st;

		memset(d, 0, sizeof(*d));
		if (fstatat(md->dirfd, subdirs[i], &st, AT_SYMLINK_NOFOLLOW) == -1 ||
		    !S_ISDIR(st.st_mode))
			continue;	/* the listing will say what is wrong */
		d->valid = true;
		d->dev = st.st_dev;
		d->ino = st.st_ino;
		d->mtime = st.st_mtim;
		d->ctime = st.st_ctim;
	}
}

static bool ts_equal(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static bool stamps_equal(const struct dir_stamp *a, const struct dir_stamp *b)
{
	for (int i = 0; i < 2; i++)
		if (!a[i].valid || !b[i].valid || a[i].dev != b[i].dev || a[i].ino != b[i].ino ||
		    !ts_equal(&a[i].mtime, &b[i].mtime) || !ts_equal(&a[i].ctime, &b[i].ctime))
			return false;
	return true;
}

/* Both directories unchanged for maildir_index_settle_s seconds before
 * now, so that any later change gives them another time (DESIGN). */
static bool stamps_settled(const struct dir_stamp *d, const struct timespec *now)
{
	for (int i = 0; i < 2; i++)
		if (!d[i].valid || d[i].mtime.tv_sec > now->tv_sec - maildir_index_settle_s ||
		    d[i].ctime.tv_sec > now->tv_sec - maildir_index_settle_s)
			return false;
	return true;
}

/* The next line of buf[0..len) from *pos, its LF replaced by a NUL; NULL
 * if none is left, it is longer than POP3D_INDEX_MAX_LINE, holds a NUL or
 * has no LF. */
static char *index_line(char *buf, size_t len, size_t *pos)
{
	char *start = buf + *pos, *nl;
	size_t left = len - *pos;

	nl = memchr(start, '\n', left < POP3D_INDEX_MAX_LINE ? left : POP3D_INDEX_MAX_LINE);
	if (nl == NULL || memchr(start, '\0', (size_t)(nl - start)) != NULL)
		return NULL;
	*nl = '\0';
	*pos += (size_t)(nl - start) + 1;
	return start;
}

/* Splits line at its first k blanks into f[0..k-1] (each non-empty) and
 * *rest_r (what follows the k-th blank; the line has exactly k fields if
 * rest_r is NULL).  Returns 0 or -1. */
static int index_fields(char *line, char **f, int k, char **rest_r)
{
	char *p = line;

	for (int i = 0; i < k; i++) {
		char *sp = strchr(p, ' ');

		if (sp == NULL) {
			if (rest_r != NULL || i != k - 1 || *p == '\0')
				return -1;
			f[i] = p;
			return 0;
		}
		if (sp == p || (rest_r == NULL && i == k - 1))
			return -1;
		*sp = '\0';
		f[i] = p;
		p = sp + 1;
	}
	*rest_r = p;
	return 0;
}

static int index_num(const char *s, uint64_t max, uint64_t *v_r)
{
	return num_parse_u64(s, 0, max, v_r);
}

static int index_time(const char *sec, const char *nsec, struct timespec *ts_r)
{
	uint64_t s, ns;

	if (index_num(sec, INT64_MAX, &s) == -1 || index_num(nsec, 999999999, &ns) == -1)
		return -1;
	ts_r->tv_sec = (time_t)s;
	ts_r->tv_nsec = (long)ns;
	return 0;
}

/* A name as scan_dir lists one: "new/" or "cur/", then 1 to 255 bytes,
 * no '/', not starting with '.' (so never "." or ".."). */
static bool index_name_ok(const char *name)
{
	const char *file = name + 4;
	size_t len;

	if (strncmp(name, "new/", 4) != 0 && strncmp(name, "cur/", 4) != 0)
		return false;
	len = strlen(file);
	return len > 0 && len <= 255 && file[0] != '.' && strchr(file, '/') == NULL;
}

/* Parses the index in buf[0..len) (buf[len] must be writable: it becomes
 * a NUL) into *idx, for the maildir (dev, ino) of the user uid.  Every
 * line is checked; any fault, a version other than this one, or an
 * owner other than (uid, dev, ino) refuses the whole index.  On success
 * idx->msgs is allocated and its names point into buf; idx->buf is not
 * set.  Returns 0, or -1 with *why_r set (for a debug log line). */
static int index_parse(char *buf, size_t len, uint64_t uid, uint64_t dev, uint64_t ino,
		       struct index *idx, const char **why_r)
{
	char *line, *f[7], *rest;
	uint64_t v[3], n;
	size_t pos = 0;

	memset(idx, 0, sizeof(*idx));
	buf[len] = '\0';
	*why_r = "corrupt";
	line = index_line(buf, len, &pos);
	if (line == NULL || strcmp(line, INDEX_MAGIC) != 0) {
		*why_r = "another version, or not an index";
		return -1;
	}
	line = index_line(buf, len, &pos);
	if (line == NULL || index_fields(line, f, 4, NULL) == -1 || strcmp(f[0], "owner") != 0 ||
	    index_num(f[1], UINT64_MAX, &v[0]) == -1 || index_num(f[2], UINT64_MAX, &v[1]) == -1 ||
	    index_num(f[3], UINT64_MAX, &v[2]) == -1)
		return -1;
	if (v[0] != uid || v[1] != dev || v[2] != ino) {
		*why_r = "written for another user or maildir";
		return -1;
	}
	for (int i = 0; i < 2; i++) {
		struct dir_stamp *d = &idx->dirs[i];

		line = index_line(buf, len, &pos);
		if (line == NULL || index_fields(line, f, 7, NULL) == -1 ||
		    strcmp(f[0], subdirs[i]) != 0 || index_num(f[1], UINT64_MAX, &d->dev) == -1 ||
		    index_num(f[2], UINT64_MAX, &d->ino) == -1 ||
		    index_time(f[3], f[4], &d->mtime) == -1 || index_time(f[5], f[6], &d->ctime) == -1)
			return -1;
		d->valid = true;
	}
	line = index_line(buf, len, &pos);
	if (line == NULL || index_fields(line, f, 2, NULL) == -1 || strcmp(f[0], "settled") != 0 ||
	    index_num(f[1], 1, &v[0]) == -1)
		return -1;
	idx->settled = v[0] == 1;
	line = index_line(buf, len, &pos);
	/* the shortest message line is 14 bytes: no allocation beyond what
	 * the file could hold */
	if (line == NULL || index_fields(line, f, 2, NULL) == -1 || strcmp(f[0], "messages") != 0 ||
	    index_num(f[1], POP3D_MAX_MESSAGES, &n) == -1 || n > (len - pos) / 14)
		return -1;
	idx->msgs = xcalloc(n > 0 ? n : 1, sizeof(*idx->msgs));
	for (idx->n = 0; idx->n < n; idx->n++) {
		struct index_msg *m = &idx->msgs[idx->n];

		line = index_line(buf, len, &pos);
		if (line == NULL || index_fields(line, f, 4, &rest) == -1 ||
		    index_num(f[0], POP3D_INDEX_MAX_SIZE, &m->size) == -1 ||
		    index_num(f[1], UINT64_MAX, &m->ino) == -1 ||
		    index_time(f[2], f[3], &m->mtime) == -1 || !index_name_ok(rest))
			goto out_free;
		m->name = rest;
	}
	line = index_line(buf, len, &pos);
	if (line == NULL || strcmp(line, "end") != 0 || pos != len)
		goto out_free;
	return 0;

out_free:
	free(idx->msgs);
	memset(idx, 0, sizeof(*idx));
	return -1;
}

/* Reads and parses pop3d-index.  Returns true with *idx (idx->buf set:
 * the caller frees it and idx->msgs), or false: no index, or one to
 * rebuild (the reason logged at debug level). */
static bool index_load(struct maildir *md, struct index *idx)
{
	const char *why;
	struct stat st;
	size_t got = 0;
	char *buf;
	int fd;

	memset(idx, 0, sizeof(*idx));
	fd = openat(md->dirfd, INDEX_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd == -1) {
		if (errno != ENOENT)
			log_debug("maildir: %s: %s", INDEX_NAME, strerror(errno));
		return false;
	}
	/* Only our own regular file: not a FIFO, not a file planted by
	 * another user in a shared maildir, not one beyond any listing. */
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    st.st_size < 0 || (uint64_t)st.st_size > POP3D_INDEX_MAX_BYTES) {
		log_debug("maildir: %s: not a regular file of ours of a sane size", INDEX_NAME);
		close(fd);
		return false;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;		/* shorter than it was: the parse refuses it */
		got += (size_t)r;
	}
	close(fd);
	if (index_parse(buf, got, geteuid(), md->dev, md->ino, idx, &why) == -1) {
		log_debug("maildir: %s refused (%s): rebuilt", INDEX_NAME, why);
		free(buf);
		return false;
	}
	idx->buf = buf;
	return true;
}

/* Logs a failure to write the index once per process and maildir: a
 * read-only or full maildir is served without one at every login, and
 * says so once. */
static void index_write_failed(struct maildir *md, const char *what)
{
	static uint64_t dev, ino;
	static bool warned;
	int saved = errno;

	if (warned && dev == md->dev && ino == md->ino) {
		log_debug("maildir: cannot %s %s: %s", what, INDEX_NAME, strerror(saved));
		return;
	}
	warned = true;
	dev = md->dev;
	ino = md->ino;
	log_warnx("maildir: cannot %s %s: %s (the maildrop is served without it)", what,
		  INDEX_NAME, strerror(saved));
}

/* A growing output buffer; out of memory is fatal, as everywhere. */
struct obuf {
	char *p;
	size_t len, cap;
};

static void ob_reserve(struct obuf *o, size_t more)
{
	if (o->len + more <= o->cap)
		return;
	while (o->len + more > o->cap)
		o->cap = o->cap == 0 ? 4096 : o->cap * 2;
	o->p = realloc(o->p, o->cap);
	if (o->p == NULL)
		fatal("realloc");
}

static void ob_str(struct obuf *o, const char *s, size_t len)
{
	ob_reserve(o, len);
	memcpy(o->p + o->len, s, len);
	o->len += len;
}

/* v in decimal, then the byte after (' ' or '\n'). */
static void ob_num(struct obuf *o, uint64_t v, char after)
{
	char d[21];
	size_t i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	ob_str(o, d + i, sizeof(d) - i);
	ob_str(o, &after, 1);
}

static void ob_stamp(struct obuf *o, const char *sub, const struct dir_stamp *d)
{
	ob_str(o, sub, strlen(sub));
	ob_str(o, " ", 1);
	ob_num(o, d->dev, ' ');
	ob_num(o, d->ino, ' ');
	ob_num(o, (uint64_t)d->mtime.tv_sec, ' ');
	ob_num(o, (uint64_t)d->mtime.tv_nsec, ' ');
	ob_num(o, (uint64_t)d->ctime.tv_sec, ' ');
	ob_num(o, (uint64_t)d->ctime.tv_nsec, '\n');
}

/* The listing of md (but removed messages) as an index of the user uid
 * into *o.  settled: whether the stamps md->dirs may be trusted (DESIGN).
 * Returns false if the index cannot describe it (a name with a LF, a file
 * on another device than its directory, a time before 1970), true with
 * *o allocated. */
static bool index_format(const struct maildir *md, uint64_t uid, bool settled, struct obuf *o)
{
	size_t n = 0;

	memset(o, 0, sizeof(*o));
	for (int i = 0; i < 2; i++)
		if (!md->dirs[i].valid || md->dirs[i].mtime.tv_sec < 0 || md->dirs[i].ctime.tv_sec < 0)
			return false;
	for (size_t i = 0; i < md->n; i++) {
		const struct msg_entry *e = &md->msgs[i];

		if (e->removed)
			continue;
		if (!e->size_known || e->m.size > POP3D_INDEX_MAX_SIZE || e->mtime.tv_sec < 0 ||
		    e->dev != md->dirs[sub_of(e->m.name)].dev || strchr(e->m.name, '\n') != NULL ||
		    !index_name_ok(e->m.name))
			return false;
		n++;
	}
	ob_reserve(o, 256 + n * 96);
	ob_str(o, INDEX_MAGIC "\nowner ", sizeof(INDEX_MAGIC "\nowner ") - 1);
	ob_num(o, uid, ' ');
	ob_num(o, md->dev, ' ');
	ob_num(o, md->ino, '\n');
	ob_stamp(o, "new", &md->dirs[0]);
	ob_stamp(o, "cur", &md->dirs[1]);
	ob_str(o, settled ? "settled 1\nmessages " : "settled 0\nmessages ", 19);
	ob_num(o, n, '\n');
	for (size_t i = 0; i < md->n; i++) {
		const struct msg_entry *e = &md->msgs[i];

		if (e->removed)
			continue;
		ob_num(o, e->m.size, ' ');
		ob_num(o, e->ino, ' ');
		ob_num(o, (uint64_t)e->mtime.tv_sec, ' ');
		ob_num(o, (uint64_t)e->mtime.tv_nsec, ' ');
		ob_str(o, e->m.name, strlen(e->m.name));
		ob_str(o, "\n", 1);
	}
	ob_str(o, "end\n", 4);
	return true;
}

/* Writes the listing as pop3d-index (index_format): to a temporary name
 * (a stale one unlinked first, the new one created O_EXCL, as
 * record_begin), synced, then renamed over the index.  A listing the
 * index cannot describe removes the index instead.  Failures are logged
 * once and change nothing else. */
static void index_save(struct maildir *md, bool settled)
{
	struct obuf o;
	size_t off = 0;
	int fd;

	if (md->index_off)
		return;
	if (!index_format(md, geteuid(), settled, &o))
		goto out_unlink;
	if (unlinkat(md->dirfd, INDEX_TMP, 0) == -1 && errno != ENOENT) {
		index_write_failed(md, "replace");
		goto out_free;
	}
	fd = openat(md->dirfd, INDEX_TMP, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		    0600);
	if (fd == -1) {
		index_write_failed(md, "write");
		goto out_free;
	}
	while (off < o.len) {
		ssize_t w = write(fd, o.p + off, o.len - off);

		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1)
			break;
		off += (size_t)w;
	}
	/* synced before the rename: after a crash the index is the old one
	 * or this one, whole (a torn one would only be rebuilt anyway) */
	if (off < o.len || fdatasync(fd) == -1) {
		index_write_failed(md, "write");
		close(fd);
		unlinkat(md->dirfd, INDEX_TMP, 0);
		goto out_free;
	}
	if (close(fd) == -1 || renameat(md->dirfd, INDEX_TMP, md->dirfd, INDEX_NAME) == -1) {
		index_write_failed(md, "write");
		unlinkat(md->dirfd, INDEX_TMP, 0);
	}
out_free:
	free(o.p);
	return;

out_unlink:
	log_debug("maildir: a listing %s cannot hold: removed", INDEX_NAME);
	if (unlinkat(md->dirfd, INDEX_NAME, 0) == -1 && errno != ENOENT)
		index_write_failed(md, "remove");
}

/* The index's messages looked up by inode (the files a new listing finds
 * again: same inode, same base, whatever their flags or directory now). */
struct reuse {
	const struct index *idx;
	uint32_t *slot;		/* index of an index_msg + 1; 0: empty */
	size_t mask;
	uint64_t salt;
	size_t same;		/* listed files found under their index name */
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static void reuse_init(struct reuse *r, const struct index *idx)
{
	size_t cap = 16;

	memset(r, 0, sizeof(*r));
	r->idx = idx;
	while (cap < 2 * idx->n)
		cap *= 2;
	r->slot = xcalloc(cap, sizeof(*r->slot));
	r->mask = cap - 1;
	memcpy(&r->salt, table_key(), sizeof(r->salt));
	for (size_t i = 0; i < idx->n; i++) {
		size_t h = (size_t)mix64(idx->msgs[i].ino ^ r->salt) & r->mask;

		while (r->slot[h] != 0)
			h = (h + 1) & r->mask;
		r->slot[h] = (uint32_t)i + 1;
	}
}

/* The index's entry for file (in sub) with inode ino and the same base,
 * or NULL. */
static const struct index_msg *reuse_find(const struct reuse *r, const char *file, uint64_t ino)
{
	size_t bl = base_len(file);

	if (r->slot == NULL)
		return NULL;
	for (size_t h = (size_t)mix64(ino ^ r->salt) & r->mask; r->slot[h] != 0;
	     h = (h + 1) & r->mask) {
		const struct index_msg *m = &r->idx->msgs[r->slot[h] - 1];
		const char *mf = m->name + 4;

		if (m->ino == ino && base_len(mf) == bl && memcmp(mf, file, bl) == 0)
			return m;
	}
	return NULL;
}

static void reuse_free(struct reuse *r)
{
	free(r->slot);
	memset(r, 0, sizeof(*r));
}

/* ---- listing -------------------------------------------------------------- */

static int compute_size(struct maildir *md, struct msg_entry *e)
{
	static uint8_t in[READ_CHUNK], out[2 * READ_CHUNK + 2];
	struct maildir_conv c;
	ssize_t n;
	int fd;

	fd = openat(md->dirfd, e->m.name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return -1;
	maildir_conv_init(&c, -1);
	while ((n = read(fd, in, sizeof(in))) > 0)
		maildir_conv_run(&c, in, (size_t)n, out);
	if (n == -1) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	close(fd);
	maildir_conv_finish(&c, out);
	e->m.size = c.octets;
	return 0;
}

static void free_name(struct msg_entry *e)
{
	if (!e->name_borrowed)
		free(e->m.name);
	e->m.name = NULL;
	e->name_borrowed = false;
}

/* Lists sub (0: new/, 1: cur/) into md->msgs.  A file the index r knows
 * (the same inode and base: renamed by an MUA or not) takes its time and
 * size from there without a stat; any other is stat()ed (r may be empty). */
static int scan_dir(struct maildir *md, int sub, struct reuse *r, const char **error_r)
{
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(md->dirfd, subdirs[sub], O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		*error_r = errno == ENOENT ? N_("maildrop is damaged (no new/ or cur/)")
					   : N_("cannot read maildrop");
		return -1;
	}
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		*error_r = N_("cannot read maildrop");
		return -1;
	}
	for (;;) {
		const struct index_msg *known = NULL;
		struct msg_entry *e;
		struct stat st;
		char name[512];

		/* errno is readdir's alone: a name that vanished before its
		 * fstatat (an MUA moving mail) must not fail the listing */
		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;

		if (de->d_name[0] == '.')
			continue;
		if (snprintf(name, sizeof(name), "%s/%s", subdirs[sub], de->d_name) >=
		    (int)sizeof(name))
			continue;
		/* The inode readdir gives is the one stat gives wherever the
		 * index could have learnt it (or no entry matches: a stat). */
		if ((de->d_type == DT_REG || de->d_type == DT_UNKNOWN) && md->dirs[sub].valid)
			known = reuse_find(r, de->d_name, (uint64_t)de->d_ino);
		if (known == NULL && (fstatat(md->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
				      !S_ISREG(st.st_mode)))
			continue;	/* vanished, or not a message */
		if (md->n == POP3D_MAX_MESSAGES) {
			log_warnx("maildir: more than %d messages, listing the first",
				  POP3D_MAX_MESSAGES);
			break;
		}
		if (md->n == md->cap) {
			md->cap = md->cap == 0 ? 64 : md->cap * 2;
			md->msgs = realloc(md->msgs, md->cap * sizeof(*md->msgs));
			if (md->msgs == NULL)
				fatal("realloc");
		}
		e = &md->msgs[md->n++];
		memset(e, 0, sizeof(*e));
		if (known != NULL) {
			if (strcmp(known->name, name) == 0) {
				e->m.name = known->name;	/* md->index_buf's */
				e->name_borrowed = true;
				r->same++;
			} else {
				e->m.name = xstrdup(name);
			}
			e->mtime = known->mtime;
			e->dev = md->dirs[sub].dev;
			e->ino = known->ino;
			e->m.size = known->size;
			e->size_known = true;
		} else {
			e->m.name = xstrdup(name);
			e->mtime = st.st_mtim;
			e->dev = st.st_dev;
			e->ino = st.st_ino;
		}
	}
	if (de == NULL && errno != 0) {
		closedir(d);
		*error_r = N_("cannot read maildrop");
		return -1;
	}
	closedir(d);
	return 0;
}

static int cmp_msg(const void *a, const void *b)
{
	const struct msg_entry *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(strchr(x->m.name, '/'), strchr(y->m.name, '/'));
}

/* The listing straight from the index, without reading the directories:
 * only when its stamps are the directories' and were settled (DESIGN).
 * Returns false (md->msgs left empty) if two of its entries have one
 * name. */
static bool index_use(struct maildir *md, const struct index *idx)
{
	md->msgs = xcalloc(idx->n > 0 ? idx->n : 1, sizeof(*md->msgs));
	md->cap = idx->n > 0 ? idx->n : 1;
	for (size_t i = 0; i < idx->n; i++) {
		const struct index_msg *m = &idx->msgs[i];
		struct msg_entry *e = &md->msgs[i];

		e->m.name = m->name;
		e->name_borrowed = true;
		e->m.size = m->size;
		e->mtime = m->mtime;
		e->dev = md->dirs[sub_of(m->name)].dev;
		e->ino = m->ino;
		e->size_known = true;
	}
	md->n = idx->n;
	if (assign_uidls(md))
		return true;
	md->n = 0;
	return false;
}

enum maildir_status maildir_open(const char *path, struct maildir **md_r,
				 const char **error_r)
{
	bool used;

	return maildir_open_warm(path, NULL, md_r, error_r, &used);
}

/* Takes the warm listing w for md if it is of the same maildir and the
 * directories are as they were when it was read (md->dirs, just stamped):
 * then nothing was delivered, removed or renamed since, as for the index
 * (DESIGN: "The index", "Warm listings").  Frees w either way. */
static bool warm_take(struct maildir *md, struct maildir *w)
{
	bool ok = w->settled && w->dev == md->dev && w->ino == md->ino &&
		  stamps_equal(w->dirs, md->dirs);

	if (ok) {
		md->msgs = w->msgs;
		md->n = w->n;
		md->cap = w->cap;
		md->index_buf = w->index_buf;
		md->settled = true;
		w->msgs = NULL;
		w->n = w->cap = 0;
		w->index_buf = NULL;
	}
	maildir_free(&w);
	return ok;
}

enum maildir_status maildir_open_warm(const char *path, struct maildir **warm,
				      struct maildir **md_r, const char **error_r,
				      bool *warm_used_r)
{
	struct maildir *md, *w = warm != NULL ? *warm : NULL;
	enum maildir_status st;
	struct stat lst;
	struct timespec now;
	struct index idx;
	struct reuse reuse;
	bool have_index, settled, cache_loaded = false;
	size_t kept = 0;

	memset(&idx, 0, sizeof(idx));
	memset(&reuse, 0, sizeof(reuse));
	*warm_used_r = false;
	if (warm != NULL)
		*warm = NULL;		/* ours now: taken, or freed */

	md = xcalloc(1, sizeof(*md));
	md->lockfd = -1;
	md->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (md->dirfd == -1) {
		st = status_of(errno);
		*error_r = errno == ENOENT ? N_("maildrop does not exist")
					   : N_("cannot open maildrop");
		log_warn("maildir: %s", path);
		goto out_free;
	}
	/* No O_TRUNC, never unlinked: see DESIGN.  O_NONBLOCK: a FIFO planted
	 * under the name must not hang the open; it is refused below. */
	md->lockfd = openat(md->dirfd, LOCK_NAME,
			    O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
	if (md->lockfd == -1) {
		st = status_of(errno);
		*error_r = N_("cannot lock maildrop");
		log_warn("maildir: %s/%s", path, LOCK_NAME);
		goto out_free;
	}
	if (fstat(md->lockfd, &lst) == -1 || !S_ISREG(lst.st_mode)) {
		st = MAILDIR_TEMP;
		*error_r = N_("cannot lock maildrop");
		log_warnx("maildir: %s/%s is not a regular file", path, LOCK_NAME);
		goto out_free;
	}
	if (flock(md->lockfd, LOCK_EX | LOCK_NB) == -1) {
		st = errno == EWOULDBLOCK ? MAILDIR_IN_USE : MAILDIR_TEMP;
		*error_r = st == MAILDIR_IN_USE ? N_("maildrop is in use by another session")
						: N_("cannot lock maildrop");
		goto out_free;
	}
	if (fstat(md->dirfd, &lst) == -1) {
		st = MAILDIR_TEMP;
		*error_r = N_("cannot read maildrop");
		log_warn("maildir: %s", path);
		goto out_free;
	}
	md->dev = lst.st_dev;
	md->ino = lst.st_ino;
	/* The clock, then the directories, then the index and the listing:
	 * a change after the stamps can only make them look older than the
	 * listing, never newer (DESIGN: "The index"). */
	clock_gettime(CLOCK_REALTIME, &now);
	stamp_dirs(md);
	if (w != NULL) {
		bool taken = warm_take(md, w);

		w = NULL;
		if (taken) {
			*warm_used_r = true;
			goto listed;
		}
	}
	have_index = index_load(md, &idx);
	if (have_index) {
		md->index_buf = idx.buf;	/* names are borrowed from it */
		if (idx.settled && stamps_equal(idx.dirs, md->dirs)) {
			if (index_use(md, &idx)) {
				md->settled = true;
				goto listed;
			}
			log_debug("maildir: %s lists a name twice: rebuilt", INDEX_NAME);
			have_index = false;
		}
	}
	if (have_index)
		reuse_init(&reuse, &idx);
	if (scan_dir(md, 0, &reuse, error_r) == -1 || scan_dir(md, 1, &reuse, error_r) == -1) {
		st = status_of(errno);
		log_warn("maildir: %s: %s", path, *error_r);
		goto out_free;
	}
	if (md->n > 1)
		qsort(md->msgs, md->n, sizeof(*md->msgs), cmp_msg);

	for (size_t i = 0; i < md->n; i++) {
		struct msg_entry *e = &md->msgs[i];
		const char *name = strchr(e->m.name, '/') + 1;

		if (size_from_name(name, &e->m.size)) {
			e->size_from_name = true;
		} else if (e->size_known) {
			;	/* from the index */
		} else {
			if (!cache_loaded) {
				pairs_load(md->dirfd, CACHE_NAME, &md->cache, &md->ncache);
				cache_loaded = true;
			}
			if (!cache_find(md, name, base_len(name), &e->m.size)) {
				if (compute_size(md, e) == -1) {
					/* Gone (another agent expunged it) or
					 * unreadable: leave it out rather than
					 * fail the whole login. */
					log_warn("maildir: %s/%s: skipped", path, e->m.name);
					free_name(e);
					continue;
				}
				md->cache_dirty = true;
			}
		}
		e->size_known = true;
		md->msgs[kept++] = *e;
	}
	if (kept != md->n)
		md->cache_dirty = true;
	md->n = kept;
	assign_uidls(md);
	if (md->cache_dirty)
		cache_save(md);
	/* A new index when the listing or what is known of the directories
	 * differs from the one read (settled: DESIGN). */
	settled = stamps_settled(md->dirs, &now);
	md->settled = settled;
	if (!have_index || reuse.same != md->n || idx.n != md->n || settled != idx.settled ||
	    !stamps_equal(idx.dirs, md->dirs))
		index_save(md, settled);
listed:
	reuse_free(&reuse);
	free(idx.msgs);
	/* When each message was first retrieved, as far as the record says:
	 * not for a base two files share, and never later than now. */
	pairs_load(md->dirfd, EXPIRE_NAME, &md->expire, &md->nexpire);
	for (size_t i = 0; i < md->n && md->nexpire > 0; i++) {
		struct msg_entry *e = &md->msgs[i];
		const char *name = strchr(e->m.name, '/') + 1;
		uint64_t t;

		if (!e->shared_base && pairs_find(md->expire, md->nexpire, name, base_len(name), &t))
			e->m.retrieved_at = t > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)t;
	}
	*md_r = md;
	return MAILDIR_OK;

out_free:
	reuse_free(&reuse);
	free(idx.msgs);
	maildir_free(&w);
	maildir_free(&md);
	return st;
}

void maildir_park(struct maildir **mdp, struct maildir **warm)
{
	struct maildir *md = *mdp;

	*mdp = NULL;
	if (md == NULL)
		return;
	maildir_free(warm);
	/* index_off: a message was not the size listed */
	if (md->changed || !md->settled || md->index_off || md->n > POP3D_WARM_MAX_MESSAGES) {
		maildir_free(&md);
		return;
	}
	/* The listing alone: no lock (another session may open the maildir
	 * at once), no descriptor, nothing of this session's. */
	close(md->lockfd);
	md->lockfd = -1;
	close(md->dirfd);
	md->dirfd = -1;
	pairs_free(&md->cache, &md->ncache);
	pairs_free(&md->expire, &md->nexpire);
	md->cache_dirty = md->index_off = false;
	for (size_t i = 0; i < md->n; i++) {
		struct maildir_msg *m = &md->msgs[i].m;

		m->deleted = m->retrieved = m->topped = m->expired = false;
		m->retrieved_at = 0;
	}
	*warm = md;
}

void maildir_free(struct maildir **mdp)
{
	struct maildir *md = *mdp;

	if (md == NULL)
		return;
	for (size_t i = 0; i < md->n; i++)
		free_name(&md->msgs[i]);
	free(md->index_buf);
	pairs_free(&md->cache, &md->ncache);
	pairs_free(&md->expire, &md->nexpire);
	free(md->msgs);
	if (md->lockfd != -1)
		close(md->lockfd);	/* releases the flock */
	if (md->dirfd != -1)
		close(md->dirfd);
	free(md);
	*mdp = NULL;
}

size_t maildir_count(const struct maildir *md)
{
	return md->n;
}

struct maildir_msg *maildir_msg(struct maildir *md, size_t i)
{
	return &md->msgs[i].m;
}

/* ---- RETR / TOP ------------------------------------------------------------- */

static bool same_file(const struct stat *st, const struct msg_entry *e)
{
	return st->st_dev == e->dev && st->st_ino == e->ino;
}

static void rename_entry(struct maildir *md, struct msg_entry *e, const char *to);

/* Finds the listed file e again after its name went: an MUA renamed it
 * ("new/X" to "cur/X:2,S", or other flags) during the session, or since
 * the index was written.  A file in cur/ or new/ with the same base and
 * the listed inode, and only that, is the message.  Returns 0 with e
 * renamed, or -1. */
static int relocate(struct maildir *md, struct msg_entry *e)
{
	char base[256], name[512];
	const char *file = strchr(e->m.name, '/') + 1;
	size_t bl = base_len(file);

	if (bl >= sizeof(base))
		return -1;
	memcpy(base, file, bl);		/* rename_entry frees e->m.name */
	base[bl] = '\0';
	for (int sub = 1; sub >= 0; sub--) {	/* cur/ first: where MUAs move mail */
		struct dirent *de;
		struct stat st;
		DIR *d;
		int fd;

		fd = openat(md->dirfd, subdirs[sub], O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		if (fd == -1)
			continue;
		d = fdopendir(fd);
		if (d == NULL) {
			close(fd);
			continue;
		}
		while ((de = readdir(d)) != NULL) {
			if (de->d_name[0] == '.' || base_len(de->d_name) != bl ||
			    memcmp(de->d_name, base, bl) != 0 ||
			    snprintf(name, sizeof(name), "%s/%s", subdirs[sub], de->d_name) >=
			    (int)sizeof(name))
				continue;
			if (fstatat(md->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISREG(st.st_mode) && same_file(&st, e)) {
				closedir(d);
				log_info("maildir: %s was renamed to %s", e->m.name, name);
				rename_entry(md, e, name);
				return 0;
			}
		}
		closedir(d);
	}
	return -1;
}

/* Drops base from the size cache pop3d-sizes, if it is there. */
static void cache_forget(struct maildir *md, const char *base, size_t len)
{
	struct cache_entry *tab;
	size_t n;
	uint64_t v;
	FILE *f;

	pairs_load(md->dirfd, CACHE_NAME, &tab, &n);
	if (pairs_find(tab, n, base, len, &v) && (f = record_begin(md, CACHE_TMP)) != NULL) {
		for (size_t k = 0; k < n; k++)
			if (strlen(tab[k].base) != len || memcmp(tab[k].base, base, len) != 0)
				fprintf(f, "%s %llu\n", tab[k].base, (unsigned long long)tab[k].value);
		record_end(md, f, CACHE_TMP, CACHE_NAME);
	}
	pairs_free(&tab, &n);
}

/* RETR sent octets of e, listed as e->m.size: the file changed in place
 * since it was sized.  Logged; unless the size came from a ",W=" in the
 * name (the name's word: nothing of ours holds it), the index goes (and
 * is not written again by this session) and so does the cached size, so
 * that the next session sizes the message afresh. */
static void size_mismatch(struct maildir *md, struct msg_entry *e, uint64_t octets)
{
	const char *file = strchr(e->m.name, '/') + 1;
	uint64_t w;

	log_warnx("maildir: %s: %llu octets sent, %llu listed", e->m.name,
		  (unsigned long long)octets, (unsigned long long)e->m.size);
	if (size_from_name(file, &w) && w == e->m.size)
		return;
	md->index_off = true;
	if (unlinkat(md->dirfd, INDEX_NAME, 0) == -1 && errno != ENOENT)
		index_write_failed(md, "remove");
	cache_forget(md, file, base_len(file));
}

int maildir_send(struct maildir *md, size_t i, long body_lines,
		 int (*emit)(void *ctx, const void *data, size_t len), void *ctx,
		 const char **error_r)
{
	static uint8_t in[READ_CHUNK], out[2 * READ_CHUNK + 2];
	struct maildir_conv c;
	ssize_t n;
	size_t o;
	int fd;

	fd = openat(md->dirfd, md->msgs[i].m.name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno == ENOENT) {
		if (relocate(md, &md->msgs[i]) == 0)
			fd = openat(md->dirfd, md->msgs[i].m.name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		else
			errno = ENOENT;
	}
	if (fd == -1) {
		*error_r = errno == ENOENT ? N_("message was removed by another program")
					   : N_("cannot read message");
		log_warn("maildir: %s", md->msgs[i].m.name);
		return -1;
	}
	maildir_conv_init(&c, body_lines);
	while (!c.done && (n = read(fd, in, sizeof(in))) != 0) {
		if (n == -1) {
			log_warn("maildir: read %s", md->msgs[i].m.name);
			close(fd);
			return -2;
		}
		o = maildir_conv_run(&c, in, (size_t)n, out);
		if (o > 0 && emit(ctx, out, o) == -1) {
			close(fd);
			return -2;
		}
		/* A short read of a regular file is its end, as a rule: when
		 * what was read comes to the size announced, the read that
		 * would return 0 is saved.  Otherwise (the file changed, a
		 * read cut short) read on to the real end. */
		if ((size_t)n < sizeof(in) && body_lines < 0 &&
		    c.octets + (c.line_start ? 0 : 2) == md->msgs[i].m.size)
			break;
	}
	close(fd);
	o = maildir_conv_finish(&c, out);
	if (o > 0 && emit(ctx, out, o) == -1)
		return -2;
	if (body_lines < 0 && c.octets != md->msgs[i].m.size)
		size_mismatch(md, &md->msgs[i], c.octets);
	return 0;
}

/* ---- UPDATE ----------------------------------------------------------------- */

/* A fresh Maildir base, "<sec>.M<usec>P<pid>Q<n>.<host>" (the Maildir
 * spec's delivery name; Dovecot's has the same shape), into out. */
static void fresh_base(char *out, size_t size)
{
	static unsigned long counter;
	char host[256], safe[3 * 64 + 1];
	struct timespec ts;
	size_t o = 0;

	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	for (const char *h = host; *h != '\0' && o + 5 <= sizeof(safe) && o < 3 * 60; h++) {
		unsigned char ch = (unsigned char)*h;

		if (ch == '/' || ch == ':' || ch == ',') {
			/* the spec's escapes: a name never holds '/' or an
			 * info ':'; a ',' would end our base */
			snprintf(safe + o, sizeof(safe) - o, "\\%03o", ch);
			o += 4;
		} else if (ch > 0x20 && ch < 0x7f) {
			safe[o++] = (char)ch;
		}
	}
	safe[o] = '\0';
	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(out, size, "%lld.M%ldP%ldQ%lu.%s", (long long)ts.tv_sec, ts.tv_nsec / 1000,
		 (long)getpid(), ++counter, o > 0 ? safe : "localhost");
}

/* Moves from to to without ever replacing a file at to: RENAME_NOREPLACE,
 * or link + unlink where the filesystem lacks the flag.  Returns 0, or -1
 * with errno (EEXIST: to is taken; from is then untouched). */
static int move_noreplace(struct maildir *md, const char *from, const char *to)
{
	if (!maildir_no_renameat2) {
		if (renameat2(md->dirfd, from, md->dirfd, to, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EINVAL && errno != ENOSYS)
			return -1;
	}
	if (linkat(md->dirfd, from, md->dirfd, to, 0) == -1)
		return -1;
	if (unlinkat(md->dirfd, from, 0) == -1 && errno != ENOENT)
		/* the message now has two names: kept twice, not lost */
		log_warn("maildir: moved %s to %s but cannot remove the old name", from, to);
	return 0;
}

/* Gives the file at from (in cur/ or new/ as dir says) a fresh name in
 * dir with info (":2,FLAGS" or "").  Writes the new name into out.
 * Returns 0 or -1 (errno). */
static int move_fresh(struct maildir *md, const char *from, const char *dir,
		      const char *info, char *out, size_t size)
{
	char base[400];

	for (int tries = 0; tries < FRESH_TRIES; tries++) {
		fresh_base(base, sizeof(base));
		if (snprintf(out, size, "%s/%s%s", dir, base, info) >= (int)size) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (move_noreplace(md, from, out) == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

/* Deletes the file listed as e, and only that file.  Returns 0 (deleted,
 * or gone already), 1 (another file has its name now: kept) or -1. */
static int remove_listed(struct maildir *md, struct msg_entry *e)
{
	char claim[512], base[400], back[600];
	struct stat st;

	if (fstatat(md->dirfd, e->m.name, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!same_file(&st, e))
		return 1;
	/* Claim it under a name only we know, then look at what we got. */
	fresh_base(base, sizeof(base));
	snprintf(claim, sizeof(claim), "tmp/%s.pop3d-dele", base);
	if (move_noreplace(md, e->m.name, claim) == -1) {
		/* Removed meanwhile by someone else (ENOENT), or no tmp/ (a
		 * damaged maildir) or no way to move here: by name, right
		 * after the check (see DESIGN: "What remains"). */
		if (fstatat(md->dirfd, e->m.name, &st, AT_SYMLINK_NOFOLLOW) == -1)
			return errno == ENOENT ? 0 : -1;
		if (!same_file(&st, e))
			return 1;
		if (unlinkat(md->dirfd, e->m.name, 0) == -1)
			return errno == ENOENT ? 0 : -1;
		return 0;
	}
	if (fstatat(md->dirfd, claim, &st, AT_SYMLINK_NOFOLLOW) == -1)
		return -1;
	if (same_file(&st, e)) {
		/* link + unlink may have left the old name (move_noreplace
		 * logged it): then the message is not deleted, only linked */
		if (fstatat(md->dirfd, e->m.name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    same_file(&st, e)) {
			unlinkat(md->dirfd, claim, 0);
			errno = EPERM;
			return -1;
		}
		return unlinkat(md->dirfd, claim, 0) == -1 ? -1 : 0;
	}
	/* Another file took the name between the check and the claim: put
	 * it back, or beside under a fresh name if that is taken again. */
	{
		const char *file = strchr(e->m.name, '/') + 1;
		const char *info = strchr(file, ':');
		char dir[8];

		snprintf(dir, sizeof(dir), "%.*s", (int)(file - 1 - e->m.name), e->m.name);
		if (move_noreplace(md, claim, e->m.name) == -1 &&
		    move_fresh(md, claim, dir, info != NULL ? info : "", back, sizeof(back)) == -1)
			log_warn("maildir: a message that took the name %s is left as %s",
				 e->m.name, claim);
	}
	return 1;
}

/* The cur/ name of a retrieved message: info ":2,<flags>" with S added,
 * flags kept in ASCII order as the Maildir spec asks.  Returns 0, 1 (it
 * is in cur/ with S already) or -1 (flags too long).  *info_r points to
 * the ":2,..." part of out. */
static int seen_name(const char *name, char *out, size_t size, const char **info_r)
{
	const char *file = strchr(name, '/') + 1;
	const char *info = strstr(file, ":2,");
	char flags[64];
	size_t fl = 0, bl;
	int n;

	bl = info != NULL ? (size_t)(info - file) : strcspn(file, ":");
	if (info != NULL) {
		const char *f = info + 3;
		size_t len = strlen(f);
		if (len >= sizeof(flags) - 1)
			return -1;
		if (strchr(f, 'S') != NULL && strncmp(name, "cur/", 4) == 0)
			return 1;	/* already seen and in cur/ */
		for (size_t k = 0; k < len; k++)
			if (f[k] != 'S')
				flags[fl++] = f[k];
	}
	/* insert S in order */
	{
		size_t pos = 0;
		while (pos < fl && (unsigned char)flags[pos] < 'S')
			pos++;
		memmove(flags + pos + 1, flags + pos, fl - pos);
		flags[pos] = 'S';
		fl++;
		flags[fl] = '\0';
	}
	n = snprintf(out, size, "cur/%.*s:2,%s", (int)bl, file, flags);
	if (n < 0 || n >= (int)size)
		return -1;
	*info_r = out + 4 + bl;
	return 0;
}

static void rename_entry(struct maildir *md, struct msg_entry *e, const char *to)
{
	free_name(e);
	e->m.name = xstrdup(to);
	md->changed = true;
}

/* Moves a retrieved message to cur/ with the Seen flag, never replacing
 * another file (see DESIGN). */
static void mark_seen(struct maildir *md, struct msg_entry *e)
{
	char to[600], fresh[600];
	const char *info;
	struct stat st;

	if (seen_name(e->m.name, to, sizeof(to), &info) != 0)
		return;
	if (fstatat(md->dirfd, e->m.name, &st, AT_SYMLINK_NOFOLLOW) == -1 || !same_file(&st, e))
		return;		/* gone, or another file has the name now: not ours */
	if (move_noreplace(md, e->m.name, to) == 0) {
		rename_entry(md, e, to);
		return;
	}
	if (errno != EEXIST) {
		if (errno != ENOENT)
			log_warn("maildir: cannot mark %s seen", e->m.name);
		return;
	}
	if (fstatat(md->dirfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0 && same_file(&st, e)) {
		/* Already there under both names: drop the extra one. */
		if (remove_listed(md, e) == 0)
			rename_entry(md, e, to);
		return;
	}
	if (move_fresh(md, e->m.name, "cur", info, fresh, sizeof(fresh)) == -1) {
		log_warn("maildir: cannot mark %s seen (%s is taken)", e->m.name, to);
		return;
	}
	log_info("maildir: %s is taken by another file: %s keeps its content as %s",
		 to, e->m.name, fresh);
	rename_entry(md, e, fresh);
	e->shared_base = false;		/* a fresh base is its own */
}

/* Rewrites pop3d-expire: the first retrieval time of every message still
 * there that has one, under the base its name has now. */
/* True if e's first retrieval belongs in pop3d-expire (DESIGN: listed,
 * kept, retrieved, its base its own and cacheable). */
static bool expire_recorded(const struct msg_entry *e, const char *name, size_t bl)
{
	return !e->removed && e->m.retrieved_at > 0 && !e->shared_base && cacheable(name, bl);
}

static void expire_save(struct maildir *md)
{
	size_t kept = 0;
	bool changed = false;
	FILE *f;

	for (size_t i = 0; i < md->n; i++) {
		const struct msg_entry *e = &md->msgs[i];
		const char *name = strchr(e->m.name, '/') + 1;
		uint64_t old;

		if (!expire_recorded(e, name, base_len(name)))
			continue;
		if (pairs_find(md->expire, md->nexpire, name, base_len(name), &old) &&
		    old == (uint64_t)e->m.retrieved_at)
			kept++;
		else
			changed = true;
	}
	if (!changed && kept == md->nexpire)
		return;
	f = record_begin(md, EXPIRE_TMP);
	if (f == NULL)
		return;
	for (size_t i = 0; i < md->n; i++) {
		const struct msg_entry *e = &md->msgs[i];
		const char *name = strchr(e->m.name, '/') + 1;
		size_t bl = base_len(name);

		if (!expire_recorded(e, name, bl))
			continue;
		fprintf(f, "%.*s %lld\n", (int)bl, name, (long long)e->m.retrieved_at);
	}
	record_end(md, f, EXPIRE_TMP, EXPIRE_NAME);
}

unsigned maildir_update(struct maildir *md, long expire_days, int64_t now)
{
	unsigned failed = 0;

	for (size_t i = 0; i < md->n; i++) {
		struct msg_entry *e = &md->msgs[i];
		struct maildir_msg *m = &e->m;

		if (m->retrieved_at > now)
			m->retrieved_at = now;	/* a record from the future counts as now */
		if (expire_days >= 0 && (m->retrieved || m->topped) && m->retrieved_at <= 0)
			m->retrieved_at = now;	/* the first retrieval */
		if (!m->deleted && expire_days >= 0 && m->retrieved_at > 0 &&
		    (uint64_t)(now - m->retrieved_at) >= (uint64_t)expire_days * 86400)
			m->expired = true;
		if (m->deleted || m->expired) {
			int r = remove_listed(md, e);

			if (r == 0) {
				e->removed = true;
				md->changed = true;
				continue;
			}
			if (r == 1)
				log_warnx("maildir: %s was replaced by another file since the "
					  "listing; kept", m->name);
			else
				log_warn("maildir: cannot delete %s", m->name);
			if (m->deleted)
				failed++;
			m->expired = false;
		}
		if (m->retrieved)
			mark_seen(md, e);
	}
	if (expire_days >= 0)
		expire_save(md);
	/* What this session changed, so that the next one finds every file
	 * in the index by inode and stats none; not settled: the next open
	 * reads the directories (DESIGN: "The index"). */
	if (md->changed)
		index_save(md, false);
	return failed;
}
