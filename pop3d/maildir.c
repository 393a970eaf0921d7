/*
 * maildir.c - the Maildir maildrop of a POP3 session.
 *
 * DESIGN
 * - Everything is opened relative to one directory descriptor taken at
 *   open time, so a rename of the maildir path mid-session cannot make us
 *   touch another tree, and no path is ever built from client input.
 * - One session per maildrop: flock(LOCK_EX|LOCK_NB) on "pop3d-lock".  The
 *   kernel drops an flock when its last descriptor closes, so a crashed or
 *   killed session never leaves a stale lock behind.
 * - The message list is taken once, at open: new/ and cur/, sorted by
 *   mtime then name.  Mail delivered afterwards lands in new/ under a name
 *   we have not listed, so it stays invisible and untouched until the next
 *   session.  We only ever unlink or rename names we listed, never tmp/.
 * - Sizes are RFC 1939 sizes: octets with CRLF line ends, as RETR sends
 *   them before dot-stuffing.  A ",W=<n>" in the name is trusted (delivery
 *   agents write it); otherwise the size cache "pop3d-sizes" ("base size"
 *   lines) is used, or the message is read once and the cache rewritten
 *   (atomically, through a temporary file and rename).
 * - UIDL is the base of the file name (up to the first ':' or ','), which
 *   never changes when flags are added or the file moves to cur/.  A base
 *   that is not 1-70 printable characters, or that two files share, is
 *   replaced by a hash of the name: still stable, still unique.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "common/num.h"
#include "pop3d/pop3d.h"

#define LOCK_NAME	"pop3d-lock"
#define CACHE_NAME	"pop3d-sizes"
#define CACHE_TMP	"pop3d-sizes.tmp"
#define CACHE_MAX_LINE	512
#define READ_CHUNK	(POP3D_SESSION_FLUSH / 2)

struct msg_entry {
	struct maildir_msg m;
	struct timespec mtime;
	bool size_known;
	bool size_from_name;
};

struct cache_entry {
	char *base;
	uint64_t size;
};

struct maildir {
	int dirfd;
	int lockfd;
	struct msg_entry *msgs;
	size_t n, cap;
	struct cache_entry *cache;
	size_t ncache;
	bool cache_dirty;
};

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

static bool uidl_ok(const char *s, size_t len)
{
	if (len == 0 || len > POP3D_MAX_UIDL)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
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

static void assign_uidls(struct maildir *md)
{
	size_t *idx;

	for (size_t i = 0; i < md->n; i++) {
		const char *name = strchr(md->msgs[i].m.name, '/') + 1;
		size_t bl = base_len(name);

		if (uidl_ok(name, bl)) {
			memcpy(md->msgs[i].m.uidl, name, bl);
			md->msgs[i].m.uidl[bl] = '\0';
		} else {
			uidl_hash(name, bl, md->msgs[i].m.uidl);
		}
	}
	if (md->n < 2)
		return;
	/* Two files with one base (a copy gone wrong): give every holder of a
	 * shared base a hash of its whole name without the info part. */
	idx = xcalloc(md->n, sizeof(*idx));
	for (size_t i = 0; i < md->n; i++)
		idx[i] = i;
	qsort_r(idx, md->n, sizeof(*idx), cmp_uidl_idx, md->msgs);
	for (size_t i = 0; i + 1 < md->n; i++) {
		size_t j = i + 1;
		if (strcmp(md->msgs[idx[i]].m.uidl, md->msgs[idx[j]].m.uidl) != 0)
			continue;
		for (size_t k = i; k < md->n &&
		     strcmp(md->msgs[idx[k]].m.uidl, md->msgs[idx[i]].m.uidl) == 0; k++) {
			const char *full = md->msgs[idx[k]].m.name;
			uidl_hash(full, strcspn(full, ":"), md->msgs[idx[k]].m.uidl);
		}
	}
	free(idx);
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

/* Reads "base size" lines; anything malformed is ignored (and will be
 * recomputed), so a corrupt cache costs time, never a wrong answer beyond
 * what was written there. */
static void cache_load(struct maildir *md)
{
	char line[CACHE_MAX_LINE];
	size_t cap = 0;
	FILE *f;
	int fd;

	fd = openat(md->dirfd, CACHE_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1)
		return;
	f = fdopen(fd, "r");
	if (f == NULL) {
		close(fd);
		return;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *sp, *nl = strchr(line, '\n');
		uint64_t size;

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
		if (num_parse_u64(sp + 1, 0, UINT64_MAX, &size) == -1)
			continue;
		if (md->ncache == POP3D_MAX_MESSAGES)
			break;
		if (md->ncache == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			md->cache = realloc(md->cache, cap * sizeof(*md->cache));
			if (md->cache == NULL)
				fatal("realloc");
		}
		md->cache[md->ncache].base = xstrdup(line);
		md->cache[md->ncache].size = size;
		md->ncache++;
	}
	fclose(f);
	if (md->ncache > 1)
		qsort(md->cache, md->ncache, sizeof(*md->cache), cmp_cache);
}

static bool cache_find(const struct maildir *md, const char *base, size_t len,
		       uint64_t *size_r)
{
	char key[256];
	struct cache_entry k = { key, 0 }, *e;

	if (len >= sizeof(key) || md->ncache == 0)
		return false;
	memcpy(key, base, len);
	key[len] = '\0';
	e = bsearch(&k, md->cache, md->ncache, sizeof(*md->cache), cmp_cache);
	if (e == NULL)
		return false;
	*size_r = e->size;
	return true;
}

static void cache_save(struct maildir *md)
{
	FILE *f;
	int fd;

	fd = openat(md->dirfd, CACHE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
		    0600);
	if (fd == -1) {
		log_warn("maildir: cannot write %s", CACHE_TMP);
		return;
	}
	f = fdopen(fd, "w");
	if (f == NULL) {
		close(fd);
		return;
	}
	for (size_t i = 0; i < md->n; i++) {
		const struct msg_entry *e = &md->msgs[i];
		const char *name = strchr(e->m.name, '/') + 1;
		size_t bl = base_len(name);

		if (e->size_from_name || !e->size_known || !cacheable(name, bl))
			continue;
		fprintf(f, "%.*s %llu\n", (int)bl, name, (unsigned long long)e->m.size);
	}
	if (fclose(f) == EOF || renameat(md->dirfd, CACHE_TMP, md->dirfd, CACHE_NAME) == -1) {
		log_warn("maildir: cannot update %s", CACHE_NAME);
		unlinkat(md->dirfd, CACHE_TMP, 0);
	}
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

static int scan_dir(struct maildir *md, const char *sub, const char **error_r)
{
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(md->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		*error_r = errno == ENOENT ? "maildrop is damaged (no new/ or cur/)"
					   : "cannot read maildrop";
		return -1;
	}
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		*error_r = "cannot read maildrop";
		return -1;
	}
	errno = 0;
	while ((de = readdir(d)) != NULL) {
		struct msg_entry *e;
		struct stat st;
		char name[512];

		if (de->d_name[0] == '.')
			continue;
		if (snprintf(name, sizeof(name), "%s/%s", sub, de->d_name) >= (int)sizeof(name))
			continue;
		if (fstatat(md->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
		    !S_ISREG(st.st_mode))
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
		e->m.name = xstrdup(name);
		e->mtime = st.st_mtim;
		errno = 0;
	}
	if (errno != 0) {
		closedir(d);
		*error_r = "cannot read maildrop";
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

enum maildir_status maildir_open(const char *path, struct maildir **md_r,
				 const char **error_r)
{
	struct maildir *md;
	enum maildir_status st;
	size_t kept = 0;

	md = xcalloc(1, sizeof(*md));
	md->lockfd = -1;
	md->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (md->dirfd == -1) {
		st = status_of(errno);
		*error_r = errno == ENOENT ? "maildrop does not exist" : "cannot open maildrop";
		log_warn("maildir: %s", path);
		goto out_free;
	}
	md->lockfd = openat(md->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
			    0600);
	if (md->lockfd == -1) {
		st = status_of(errno);
		*error_r = "cannot lock maildrop";
		log_warn("maildir: %s/%s", path, LOCK_NAME);
		goto out_free;
	}
	if (flock(md->lockfd, LOCK_EX | LOCK_NB) == -1) {
		st = errno == EWOULDBLOCK ? MAILDIR_IN_USE : MAILDIR_TEMP;
		*error_r = st == MAILDIR_IN_USE ? "maildrop is in use by another session"
						: "cannot lock maildrop";
		goto out_free;
	}
	if (scan_dir(md, "new", error_r) == -1 || scan_dir(md, "cur", error_r) == -1) {
		st = status_of(errno);
		log_warn("maildir: %s: %s", path, *error_r);
		goto out_free;
	}
	if (md->n > 1)
		qsort(md->msgs, md->n, sizeof(*md->msgs), cmp_msg);

	cache_load(md);
	for (size_t i = 0; i < md->n; i++) {
		struct msg_entry *e = &md->msgs[i];
		const char *name = strchr(e->m.name, '/') + 1;

		if (size_from_name(name, &e->m.size)) {
			e->size_from_name = true;
		} else if (!cache_find(md, name, base_len(name), &e->m.size)) {
			if (compute_size(md, e) == -1) {
				/* Gone (another agent expunged it) or unreadable:
				 * leave it out rather than fail the whole login. */
				log_warn("maildir: %s/%s: skipped", path, e->m.name);
				free(e->m.name);
				continue;
			}
			md->cache_dirty = true;
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
	*md_r = md;
	return MAILDIR_OK;

out_free:
	maildir_free(&md);
	return st;
}

void maildir_free(struct maildir **mdp)
{
	struct maildir *md = *mdp;

	if (md == NULL)
		return;
	for (size_t i = 0; i < md->n; i++)
		free(md->msgs[i].m.name);
	for (size_t i = 0; i < md->ncache; i++)
		free(md->cache[i].base);
	free(md->cache);
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
	if (fd == -1) {
		*error_r = errno == ENOENT ? "message was removed by another program"
					   : "cannot read message";
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
	}
	close(fd);
	o = maildir_conv_finish(&c, out);
	if (o > 0 && emit(ctx, out, o) == -1)
		return -2;
	return 0;
}

/* ---- UPDATE ----------------------------------------------------------------- */

/* The cur/ name of a retrieved message: info ":2,<flags>" with S added,
 * flags kept in ASCII order as the Maildir spec asks. */
static int seen_name(const char *name, char *out, size_t size)
{
	const char *file = strchr(name, '/') + 1;
	const char *info = strstr(file, ":2,");
	char flags[64];
	size_t fl = 0, bl;

	bl = info != NULL ? (size_t)(info - file) : strcspn(file, ":");
	if (info != NULL) {
		const char *f = info + 3;
		size_t n = strlen(f);
		if (n >= sizeof(flags) - 1)
			return -1;
		if (strchr(f, 'S') != NULL && strncmp(name, "cur/", 4) == 0)
			return 1;	/* already seen and in cur/ */
		for (size_t k = 0; k < n; k++)
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
	if (snprintf(out, size, "cur/%.*s:2,%s", (int)bl, file, flags) >= (int)size)
		return -1;
	return 0;
}

unsigned maildir_update(struct maildir *md)
{
	unsigned failed = 0;
	char to[600];

	for (size_t i = 0; i < md->n; i++) {
		struct maildir_msg *m = &md->msgs[i].m;

		if (m->deleted) {
			if (unlinkat(md->dirfd, m->name, 0) == -1 && errno != ENOENT) {
				log_warn("maildir: cannot delete %s", m->name);
				failed++;
			}
		} else if (m->retrieved) {
			int r = seen_name(m->name, to, sizeof(to));
			if (r == 0 && renameat(md->dirfd, m->name, md->dirfd, to) == -1 &&
			    errno != ENOENT)
				log_warn("maildir: cannot mark %s seen", m->name);
		}
	}
	return failed;
}

/* ---- maildrop templates ------------------------------------------------------- */

int maildir_expand(const char *tmpl, const char *user, const char *home,
		   char *out, size_t size, const char **error_r)
{
	const char *at = strrchr(user, '@');
	size_t o = 0;

	if (strncmp(tmpl, "maildir:", 8) == 0)
		tmpl += 8;
	else if (strchr(tmpl, ':') != NULL && tmpl[0] != '/' && tmpl[0] != '%') {
		*error_r = "unsupported maildrop type (only maildir)";
		return -1;
	}
	for (const char *p = tmpl; *p != '\0'; p++) {
		const char *v = NULL;
		size_t vl = 0;

		if (*p != '%') {
			v = p;
			vl = 1;
		} else {
			switch (*++p) {
			case '%': v = "%"; vl = 1; break;
			case 'u': v = user; vl = strlen(user); break;
			case 'n': v = user; vl = at != NULL ? (size_t)(at - user) : strlen(user); break;
			case 'd': v = at != NULL ? at + 1 : ""; vl = strlen(v); break;
			case 'h': v = home != NULL ? home : ""; vl = strlen(v); break;
			default:
				*error_r = "unknown %-variable in maildrop template";
				return -1;
			}
			if (vl == 0) {
				*error_r = "maildrop template needs a value the user does not have";
				return -1;
			}
			/* A user name must not walk the path: no "/" or "..". */
			if (*p != 'h' && *p != '%' &&
			    (memchr(v, '/', vl) != NULL || (vl <= 2 && strspn(v, ".") == vl))) {
				*error_r = "user name not usable in a path";
				return -1;
			}
		}
		if (o + vl >= size) {
			*error_r = "maildrop path too long";
			return -1;
		}
		memcpy(out + o, v, vl);
		o += vl;
	}
	out[o] = '\0';
	if (out[0] != '/') {
		*error_r = "maildrop is not an absolute path";
		return -1;
	}
	return 0;
}
