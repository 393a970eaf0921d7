/*
 * test-maildir.c - the Maildir maildrop alone: scanning, sizes, UIDL,
 * locking, RETR/TOP conversion, UPDATE, templates.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "pop3d/pop3d.h"
#include "tests/unit.h"

static char root[256];

static void mkmaildir(const char *path)
{
	char p[512];

	mkdir(path, 0700);
	snprintf(p, sizeof(p), "%s/new", path);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/cur", path);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/tmp", path);
	mkdir(p, 0700);
}

static void put(const char *md, const char *rel, const char *content, time_t mtime)
{
	char p[512];
	FILE *f;
	struct timespec ts[2];

	snprintf(p, sizeof(p), "%s/%s", md, rel);
	f = fopen(p, "w");
	if (f == NULL) {
		perror(p);
		exit(2);
	}
	fputs(content, f);
	fclose(f);
	ts[0].tv_sec = ts[1].tv_sec = mtime;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	utimensat(AT_FDCWD, p, ts, 0);
}

static bool exists(const char *md, const char *rel)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", md, rel);
	return stat(p, &st) == 0;
}

struct sink {
	char buf[65536];
	size_t len;
};

static int sink_emit(void *ctx, const void *data, size_t len)
{
	struct sink *s = ctx;

	if (s->len + len > sizeof(s->buf))
		return -1;
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	return 0;
}

static const char *conv(const char *in, long lines, uint64_t *octets_r)
{
	static uint8_t out[4096];
	struct maildir_conv c;
	size_t o;

	maildir_conv_init(&c, lines);
	o = maildir_conv_run(&c, (const uint8_t *)in, strlen(in), out);
	o += maildir_conv_finish(&c, out + o);
	out[o] = '\0';
	if (octets_r != NULL)
		*octets_r = c.octets;
	return (const char *)out;
}

static void test_conv_crlf_and_dots(void)
{
	uint64_t oct;

	CHECK_STR(conv("a\nb\n", -1, &oct), "a\r\nb\r\n");
	CHECK_INT(oct, 6);
	CHECK_STR(conv("a\r\nb\r\n", -1, &oct), "a\r\nb\r\n");
	CHECK_INT(oct, 6);
	CHECK_STR(conv(".\n..x\n.", -1, &oct), "..\r\n...x\r\n..\r\n");
	CHECK_INT(oct, 3 + 5 + 3);
	CHECK_STR(conv("no newline", -1, &oct), "no newline\r\n");
	CHECK_INT(oct, 12);
	CHECK_STR(conv("", -1, &oct), "");
	CHECK_INT(oct, 0);
	CHECK_STR(conv("mid.dot\n", -1, NULL), "mid.dot\r\n");
}

static void test_conv_top(void)
{
	const char *msg = "H: 1\nH: 2\n\nb1\nb2\nb3\n";

	CHECK_STR(conv(msg, 0, NULL), "H: 1\r\nH: 2\r\n\r\n");
	CHECK_STR(conv(msg, 2, NULL), "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n");
	CHECK_STR(conv(msg, 10, NULL), "H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\nb3\r\n");
	CHECK_STR(conv("H: 1\r\n\r\n.b\r\n", 1, NULL), "H: 1\r\n\r\n..b\r\n");
	CHECK_STR(conv("H: only\n", 0, NULL), "H: only\r\n");
}

static void test_conv_split_input(void)
{
	/* CR at the end of one chunk, LF at the start of the next. */
	struct maildir_conv c;
	uint8_t out[64];
	size_t o;

	maildir_conv_init(&c, -1);
	o = maildir_conv_run(&c, (const uint8_t *)"a\r", 2, out);
	o += maildir_conv_run(&c, (const uint8_t *)"\n.b\n", 4, out + o);
	out[o] = '\0';
	CHECK_STR((char *)out, "a\r\n..b\r\n");
	CHECK_INT(c.octets, 7);
}

static void test_scan_sizes_uidl_order(void)
{
	char md[300];
	struct maildir *m;
	const char *err;

	snprintf(md, sizeof(md), "%s/scan", root);
	mkmaildir(md);
	put(md, "new/1000.A.host", "Subject: a\n\nbody\n", 1000);
	put(md, "cur/0999.B.host:2,S", "Subject: b\r\n\r\nbody\r\n", 999);
	put(md, "new/1001.C.host,S=5,W=77", "x\n", 1001);
	put(md, "tmp/1002.D.host", "in delivery\n", 1002);
	put(md, "new/.hidden", "x\n", 1003);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	CHECK_INT(maildir_count(m), 3);
	CHECK_STR(maildir_msg(m, 0)->uidl, "0999.B.host");
	CHECK_INT(maildir_msg(m, 0)->size, 20);
	CHECK_STR(maildir_msg(m, 1)->uidl, "1000.A.host");
	CHECK_INT(maildir_msg(m, 1)->size, 20);	/* 17 + 3 CRs */
	CHECK_STR(maildir_msg(m, 2)->uidl, "1001.C.host");
	CHECK_INT(maildir_msg(m, 2)->size, 77);	/* trusted from W= */
	maildir_free(&m);
	CHECK(exists(md, "pop3d-sizes"));
	/* The size is now cached: a changed file keeps its listed size. */
	put(md, "new/1000.A.host", "Subject: a\n\nbody changed\n", 1000);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m != NULL) {
		CHECK_INT(maildir_msg(m, 1)->size, 20);
		maildir_free(&m);
	}
}

static void test_uidl_odd_names(void)
{
	char md[300], name[200];
	struct maildir *m;
	const char *err;

	snprintf(md, sizeof(md), "%s/odd", root);
	mkmaildir(md);
	memset(name, 'x', 100);
	memcpy(name, "new/", 4);
	name[100] = '\0';
	put(md, name, "a\n", 1);
	put(md, "new/sp ace", "a\n", 2);
	put(md, "new/dup:2,", "a\n", 3);
	put(md, "cur/dup:2,S", "a\n", 4);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	CHECK_INT(maildir_count(m), 4);
	for (size_t i = 0; i < maildir_count(m); i++) {
		const char *u = maildir_msg(m, i)->uidl;
		CHECK(strlen(u) >= 1 && strlen(u) <= 70);
		for (const char *p = u; *p; p++)
			CHECK(*p > 0x20 && *p < 0x7f);
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(u, maildir_msg(m, j)->uidl) != 0);
	}
	maildir_free(&m);
	/* stable across sessions */
	char first[4][80];
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	for (size_t i = 0; i < 4; i++)
		snprintf(first[i], sizeof(first[i]), "%s", maildir_msg(m, i)->uidl);
	maildir_free(&m);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	for (size_t i = 0; i < 4; i++)
		CHECK_STR(maildir_msg(m, i)->uidl, first[i]);
	maildir_free(&m);
}

static void test_lock_in_use(void)
{
	char md[300];
	struct maildir *m, *m2 = NULL;
	const char *err;
	int status;
	pid_t pid;

	snprintf(md, sizeof(md), "%s/lock", root);
	mkmaildir(md);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	/* another process (flock is per open file description) */
	pid = fork();
	if (pid == 0)
		_exit(maildir_open(md, &m2, &err) == MAILDIR_IN_USE ? 0 : 1);
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	maildir_free(&m);
	/* a holder that dies leaves no stale lock */
	pid = fork();
	if (pid == 0) {
		maildir_open(md, &m2, &err);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	maildir_free(&m);
}

static void test_missing_and_damaged(void)
{
	char md[300];
	struct maildir *m;
	const char *err;

	snprintf(md, sizeof(md), "%s/absent", root);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_PERM);
	snprintf(md, sizeof(md), "%s/damaged", root);
	mkdir(md, 0700);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_PERM);
	CHECK(strstr(err, "damaged") != NULL);
}

static void test_send_and_update(void)
{
	char md[300];
	struct maildir *m;
	struct sink s = { .len = 0 };
	const char *err;

	snprintf(md, sizeof(md), "%s/upd", root);
	mkmaildir(md);
	put(md, "new/1.a", "H: 1\n\n.dot\nline\n", 1);
	put(md, "new/2.b", "H: 2\n\nbye\n", 2);
	put(md, "cur/3.c:2,F", "H: 3\n\nflagged\n", 3);
	put(md, "cur/4.d:2,", "H: 4\n\nkeep\n", 4);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	CHECK_INT(maildir_send(m, 0, -1, sink_emit, &s, &err), 0);
	CHECK_STR(s.buf, "H: 1\r\n\r\n..dot\r\nline\r\n");
	CHECK_INT(maildir_msg(m, 0)->size, s.len - 1);	/* one stuffed dot */
	maildir_msg(m, 0)->retrieved = true;
	maildir_msg(m, 1)->deleted = true;
	maildir_msg(m, 2)->retrieved = true;
	/* a message delivered during the session */
	put(md, "new/5.e", "late\n", 5);
	CHECK_INT(maildir_update(m, -1, 0), 0);
	maildir_free(&m);
	CHECK(exists(md, "cur/1.a:2,S"));
	CHECK(!exists(md, "new/1.a"));
	CHECK(!exists(md, "new/2.b"));
	CHECK(exists(md, "cur/3.c:2,FS"));
	CHECK(exists(md, "cur/4.d:2,"));
	CHECK(exists(md, "new/5.e"));
}

/* maildir_send stops reading without waiting for read() to say end of
 * file only when what it read comes to the size announced: a message that
 * grew or shrank after the listing is sent as it is now, whole. */
static void test_send_changed_after_listing(void)
{
	char md[300];
	struct maildir *m;
	struct sink s = { .len = 0 };
	const char *err;

	snprintf(md, sizeof(md), "%s/changed", root);
	mkmaildir(md);
	put(md, "cur/1.a:2,S", "H: 1\n\nshort\n", 1);
	put(md, "cur/2.b:2,S", "H: 2\n\na longer body than it will have\n", 2);
	put(md, "cur/3.c:2,S", "H: 3\n\nsame\n", 3);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	CHECK_INT(maildir_msg(m, 0)->size, 15);
	put(md, "cur/1.a:2,S", "H: 1\n\nshort\nand more lines\nafter the listing\n", 1);
	put(md, "cur/2.b:2,S", "H: 2\n\nless\n", 2);
	CHECK_INT(maildir_send(m, 0, -1, sink_emit, &s, &err), 0);
	CHECK_STR(s.buf, "H: 1\r\n\r\nshort\r\nand more lines\r\nafter the listing\r\n");
	s.len = 0;
	CHECK_INT(maildir_send(m, 1, -1, sink_emit, &s, &err), 0);
	CHECK_STR(s.buf, "H: 2\r\n\r\nless\r\n");
	s.len = 0;
	CHECK_INT(maildir_send(m, 2, -1, sink_emit, &s, &err), 0);
	CHECK_STR(s.buf, "H: 3\r\n\r\nsame\r\n");
	CHECK_INT(s.len, maildir_msg(m, 2)->size);
	maildir_free(&m);
}

static void test_vanished_message(void)
{
	char md[300], p[400];
	struct maildir *m;
	struct sink s = { .len = 0 };
	const char *err;

	snprintf(md, sizeof(md), "%s/vanish", root);
	mkmaildir(md);
	put(md, "new/1.a", "x\n", 1);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	snprintf(p, sizeof(p), "%s/new/1.a", md);
	unlink(p);
	CHECK_INT(maildir_send(m, 0, -1, sink_emit, &s, &err), -1);
	maildir_msg(m, 0)->deleted = true;
	CHECK_INT(maildir_update(m, -1, 0), 0);	/* already gone is fine */
	maildir_free(&m);
}


/* Every message's content on disk (new/ and cur/), sorted and joined
 * with '|', into out. */
static const char *contents(const char *md, char *out, size_t size)
{
	char *items[64];
	size_t n = 0, o = 0;

	for (int d = 0; d < 2; d++) {
		char p[512];
		struct dirent *de;
		DIR *dir;

		snprintf(p, sizeof(p), "%s/%s", md, d == 0 ? "new" : "cur");
		dir = opendir(p);
		if (dir == NULL)
			continue;
		while ((de = readdir(dir)) != NULL && n < 64) {
			char f[800], buf[256];
			FILE *fp;
			size_t len;

			if (de->d_name[0] == '.')
				continue;
			snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
			fp = fopen(f, "r");
			if (fp == NULL)
				continue;
			len = fread(buf, 1, sizeof(buf) - 1, fp);
			fclose(fp);
			buf[len] = '\0';
			items[n++] = strdup(buf);
		}
		closedir(dir);
	}
	for (size_t i = 0; i < n; i++)		/* a small insertion sort */
		for (size_t j = i; j > 0 && strcmp(items[j - 1], items[j]) > 0; j--) {
			char *t = items[j];
			items[j] = items[j - 1];
			items[j - 1] = t;
		}
	out[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(out + o, size - o, "%s%s", i > 0 ? "|" : "", items[i]);
		if (w > 0 && (size_t)w < size - o)
			o += (size_t)w;
		free(items[i]);
	}
	return out;
}

static size_t files_in(const char *md, const char *sub)
{
	char p[512];
	struct dirent *de;
	size_t n = 0;
	DIR *d;

	snprintf(p, sizeof(p), "%s/%s", md, sub);
	d = opendir(p);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Marks retrieved every message whose content starts with one of the
 * given letters ("AB": the copies A and B). */
static void retrieve(struct maildir *m, const char *which)
{
	for (size_t i = 0; i < maildir_count(m); i++) {
		struct sink s = { .len = 0 };
		const char *err;

		if (maildir_send(m, i, -1, sink_emit, &s, &err) == 0 &&
		    strchr(which, s.buf[0]) != NULL)
			maildir_msg(m, i)->retrieved = true;
	}
}

/* issue 13: "new/X" and "cur/X:2,S" with one base, RETR and QUIT: the
 * move to cur/ renamed one over the other and a message was gone. */
static void test_update_never_replaces(void)
{
	static const struct {
		const char *a, *b;	/* two files, contents "A..." and "B..." */
		const char *retr;	/* which of them are retrieved */
	} cases[] = {
		{ "new/100.X.host", "cur/100.X.host:2,S", "AB" },
		{ "new/100.X.host", "cur/100.X.host:2,S", "A" },
		{ "new/100.X.host", "cur/100.X.host:2,S", "B" },
		/* the target exists with other flags */
		{ "cur/100.X.host:2,F", "cur/100.X.host:2,FS", "A" },
		{ "cur/100.X.host:2,F", "cur/100.X.host:2,FS", "AB" },
		{ "new/100.X.host:2,F", "cur/100.X.host:2,FS", "A" },
		{ "new/100.X.host", "cur/100.X.host:2,ST", "AB" },
	};

	for (int fallback = 0; fallback < 2; fallback++) {
		maildir_no_renameat2 = fallback == 1;
		for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
			char md[300], got[1024];
			struct maildir *m;
			const char *err;

			snprintf(md, sizeof(md), "%s/dup%d-%zu", root, fallback, c);
			mkmaildir(md);
			put(md, cases[c].a, "A: copy a\n\nbody a\n", 1);
			put(md, cases[c].b, "B: copy b\n\nbody b\n", 2);
			put(md, "new/200.Y.host", "C: other\n\nc\n", 3);
			CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
			if (m == NULL)
				continue;
			CHECK_INT(maildir_count(m), 3);
			for (size_t i = 0; i < 3; i++)		/* UIDLs stay unique */
				for (size_t j = 0; j < i; j++)
					CHECK(strcmp(maildir_msg(m, i)->uidl,
						     maildir_msg(m, j)->uidl) != 0);
			retrieve(m, cases[c].retr);
			CHECK_INT(maildir_update(m, -1, 0), 0);
			maildir_free(&m);
			CHECK_STR(contents(md, got, sizeof(got)),
				  "A: copy a\n\nbody a\n|B: copy b\n\nbody b\n|C: other\n\nc\n");
			CHECK_INT(files_in(md, "new") + files_in(md, "cur"), 3);
			CHECK_INT(files_in(md, "tmp"), 0);
			/* the next session lists all three, each once */
			CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
			if (m != NULL) {
				CHECK_INT(maildir_count(m), 3);
				maildir_free(&m);
			}
		}
	}
	maildir_no_renameat2 = false;
}

/* The name a retrieved message should get holds the same file (a hard
 * link, or a link + unlink cut short): only the extra name goes. */
static void test_update_same_file_twice(void)
{
	char md[300], a[400], b[400], got[256];
	struct maildir *m;
	const char *err;

	snprintf(md, sizeof(md), "%s/hardlink", root);
	mkmaildir(md);
	put(md, "new/300.Z.host", "Z: z\n\nz\n", 1);
	snprintf(a, sizeof(a), "%s/new/300.Z.host", md);
	snprintf(b, sizeof(b), "%s/cur/300.Z.host:2,S", md);
	CHECK(link(a, b) == 0);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	retrieve(m, "Z");
	CHECK_INT(maildir_update(m, -1, 0), 0);
	maildir_free(&m);
	CHECK(!exists(md, "new/300.Z.host"));
	CHECK(exists(md, "cur/300.Z.host:2,S"));
	CHECK_INT(files_in(md, "cur"), 1);
	CHECK_STR(contents(md, got, sizeof(got)), "Z: z\n\nz\n");
}

/* DELE deletes the file that was listed, never one that took its name
 * since (the message renamed away by an MUA, another one delivered under
 * the same name). */
static void test_dele_only_the_listed_file(void)
{
	for (int fallback = 0; fallback < 2; fallback++) {
		char md[300], from[400], to[400], got[256];
		struct maildir *m;
		const char *err;

		maildir_no_renameat2 = fallback == 1;
		snprintf(md, sizeof(md), "%s/dele-replaced%d", root, fallback);
		mkmaildir(md);
		put(md, "new/400.D.host", "D: listed\n\nd\n", 1);
		put(md, "new/401.E.host", "E: deleted\n\ne\n", 2);
		CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
		if (m == NULL)
			continue;
		snprintf(from, sizeof(from), "%s/new/400.D.host", md);
		snprintf(to, sizeof(to), "%s/cur/400.D.host:2,T", md);
		CHECK(rename(from, to) == 0);
		put(md, "new/400.D.host", "N: newcomer\n\nn\n", 3);
		maildir_msg(m, 0)->deleted = true;
		maildir_msg(m, 1)->deleted = true;
		CHECK_INT(maildir_update(m, -1, 0), 1);	/* one could not be deleted */
		maildir_free(&m);
		CHECK_STR(contents(md, got, sizeof(got)), "D: listed\n\nd\n|N: newcomer\n\nn\n");
		CHECK_INT(files_in(md, "tmp"), 0);
	}
	maildir_no_renameat2 = false;
}

/* Without RENAME_NOREPLACE a DELE claims the message by link + unlink;
 * when the unlink of its name fails (new/ not writable, tmp/ writable),
 * the message is still there under its name: not booked as deleted.
 * Run in a child as nobody, since root may unlink anyway. */
static void test_dele_claim_half_done(void)
{
	char md[300], sub[400], got[256];
	int status;
	pid_t pid;

	snprintf(md, sizeof(md), "%s/dele-halfdone", root);
	mkmaildir(md);
	put(md, "new/600.G.host", "G: kept\n\ng\n", 1);
	fflush(NULL);
	pid = fork();
	CHECK(pid != -1);
	if (pid == 0) {
		struct maildir *m;
		const char *err;

		if (geteuid() == 0) {
			char cmd[400];

			snprintf(cmd, sizeof(cmd), "chown -R 65534:65534 %s", md);
			if (chmod(root, 0755) == -1 || system(cmd) != 0 || setgid(65534) == -1 ||
			    setuid(65534) == -1)
				_exit(2);
		}
		snprintf(sub, sizeof(sub), "%s/new", md);
		maildir_no_renameat2 = true;
		if (maildir_open(md, &m, &err) != MAILDIR_OK || chmod(sub, 0555) == -1)
			_exit(3);
		maildir_msg(m, 0)->deleted = true;
		_exit(maildir_update(m, -1, 0) == 1 ? 0 : 4);	/* one not deleted */
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	snprintf(sub, sizeof(sub), "%s/new", md);
	chmod(sub, 0755);
	CHECK_STR(contents(md, got, sizeof(got)), "G: kept\n\ng\n");
	CHECK_INT(files_in(md, "tmp"), 0);
}

/* The size cache is written through a temporary file that is unlinked
 * first: a planted "pop3d-sizes.tmp" linked to a message is not truncated. */
static void test_cache_tmp_not_truncated(void)
{
	char md[300], a[400], b[400], got[256];
	struct maildir *m;
	const char *err;

	snprintf(md, sizeof(md), "%s/cachetmp", root);
	mkmaildir(md);
	put(md, "new/500.F.host", "F: f\n\nf\n", 1);
	snprintf(a, sizeof(a), "%s/new/500.F.host", md);
	snprintf(b, sizeof(b), "%s/pop3d-sizes.tmp", md);
	CHECK(link(a, b) == 0);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);	/* writes the cache */
	if (m != NULL)
		maildir_free(&m);
	CHECK(exists(md, "pop3d-sizes"));
	CHECK_STR(contents(md, got, sizeof(got)), "F: f\n\nf\n");
}

/* ---- EXPIRE ---- */

static void write_file(const char *md, const char *rel, const char *text)
{
	put(md, rel, text, 1);
}

static const char *read_file(const char *md, const char *rel, char *out, size_t size)
{
	char p[512];
	size_t n = 0;
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", md, rel);
	out[0] = '\0';
	f = fopen(p, "r");
	if (f == NULL)
		return out;
	n = fread(out, 1, size - 1, f);
	fclose(f);
	out[n] = '\0';
	return out;
}

static void test_expire_zero(void)
{
	char md[300], got[256];
	struct maildir *m;
	const char *err;

	snprintf(md, sizeof(md), "%s/expire0", root);
	mkmaildir(md);
	put(md, "new/1.a", "R: retr\n\nr\n", 1);
	put(md, "new/2.b", "T: top\n\nt\n", 2);
	put(md, "new/3.c", "K: kept\n\nk\n", 3);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	maildir_msg(m, 0)->retrieved = true;
	maildir_msg(m, 1)->topped = true;
	CHECK_INT(maildir_update(m, 0, 1000000), 0);
	CHECK(maildir_msg(m, 0)->expired);
	CHECK(maildir_msg(m, 1)->expired);
	CHECK(!maildir_msg(m, 2)->expired);
	maildir_free(&m);
	CHECK_STR(contents(md, got, sizeof(got)), "K: kept\n\nk\n");
	CHECK_INT(files_in(md, "tmp"), 0);
	/* no policy: a retrieved message only gets its Seen flag */
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	maildir_msg(m, 0)->retrieved = true;
	CHECK_INT(maildir_update(m, -1, 1000000), 0);
	maildir_free(&m);
	CHECK(exists(md, "cur/3.c:2,S"));
	CHECK(!exists(md, "pop3d-expire"));
}

static void test_expire_days(void)
{
	const int64_t now = 1700000000, day = 86400;
	char md[300], got[512], rec[512];
	struct maildir *m;
	const char *err;

	snprintf(md, sizeof(md), "%s/expireN", root);
	mkmaildir(md);
	put(md, "new/1.a", "A: retrieved now\n\na\n", 1);
	put(md, "cur/2.b:2,S", "B: 3 days ago\n\nb\n", 2);
	put(md, "cur/3.c:2,S", "C: 1 day ago\n\nc\n", 3);
	put(md, "new/4.d", "D: never\n\nd\n", 4);
	put(md, "new/5.e", "E: record from the future\n\ne\n", 5);
	snprintf(rec, sizeof(rec), "2.b %lld\n3.c %lld\ngone.x 5\n5.e %lld\n"
		 "garbage\n 12\n4.d -1\n4.d 99999999999999999999999\n",
		 (long long)(now - 3 * day), (long long)(now - day), (long long)(now + 10 * day));
	write_file(md, "pop3d-expire", rec);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	CHECK_INT(maildir_count(m), 5);
	CHECK_INT(maildir_msg(m, 1)->retrieved_at, now - 3 * day);
	CHECK_INT(maildir_msg(m, 3)->retrieved_at, 0);
	maildir_msg(m, 0)->retrieved = true;
	CHECK_INT(maildir_update(m, 2, now), 0);
	maildir_free(&m);
	CHECK_STR(contents(md, got, sizeof(got)),
		  "A: retrieved now\n\na\n|C: 1 day ago\n\nc\n|D: never\n\nd\n"
		  "|E: record from the future\n\ne\n");
	/* the record: what is left, the new retrieval, the future as now */
	snprintf(rec, sizeof(rec), "3.c %lld\n1.a %lld\n5.e %lld\n", (long long)(now - day),
		 (long long)now, (long long)now);
	read_file(md, "pop3d-expire", got, sizeof(got));
	CHECK(strstr(got, "1.a 1700000000\n") != NULL);
	CHECK(strstr(got, "3.c 1699913600\n") != NULL);
	CHECK(strstr(got, "5.e 1700000000\n") != NULL);
	CHECK(strstr(got, "2.b") == NULL && strstr(got, "gone.x") == NULL &&
	      strstr(got, "4.d") == NULL);
	/* two days later, a session that retrieves nothing removes A, C, E */
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	CHECK_INT(maildir_update(m, 2, now + 2 * day), 0);
	maildir_free(&m);
	CHECK_STR(contents(md, got, sizeof(got)), "D: never\n\nd\n");
	CHECK_STR(read_file(md, "pop3d-expire", got, sizeof(got)), "");
}

/* A base two files share is not credited with a retrieval. */
static void test_expire_shared_base(void)
{
	const int64_t now = 1700000000;
	char md[300], got[256];
	struct maildir *m;
	const char *err;

	snprintf(md, sizeof(md), "%s/expireshared", root);
	mkmaildir(md);
	put(md, "new/7.x", "X: not retrieved\n\nx\n", 1);
	put(md, "cur/7.x:2,S", "Y: copy\n\ny\n", 2);
	write_file(md, "pop3d-expire", "7.x 1000\n");
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	CHECK_INT(maildir_update(m, 1, now), 0);
	maildir_free(&m);
	CHECK_STR(contents(md, got, sizeof(got)), "X: not retrieved\n\nx\n|Y: copy\n\ny\n");
}
/* A file named after another's hashed UIDL (maildir.c's uidl_hash: a
 * 16-byte BLAKE2b of the name, in hex) must not share it.  Found by
 * pop3d/fuzz-maildir.c: cur/a:2,ST and cur/a:2,STs share base and
 * name-without-flags, so both get a hash of their whole name; a third
 * file whose base was that hash kept it as its own UIDL. */
static void test_uidl_base_like_a_hash(void)
{
	char md[300], rel[80], hex[33];
	unsigned char h[16];
	struct maildir *m;
	const char *err;

	crypto_generichash(h, sizeof(h), (const unsigned char *)"cur/a:2,STs", 11, NULL, 0);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	snprintf(md, sizeof(md), "%s/hashlike", root);
	mkmaildir(md);
	put(md, "cur/a:2,ST", "a\n", 1);
	put(md, "cur/a:2,STs", "b\n", 2);
	snprintf(rel, sizeof(rel), "new/%s", hex);
	put(md, rel, "c\n", 3);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	CHECK_INT(maildir_count(m), 3);
	for (size_t i = 0; i < maildir_count(m); i++)
		for (size_t j = 0; j < i; j++)
			CHECK(strcmp(maildir_msg(m, i)->uidl, maildir_msg(m, j)->uidl) != 0);
	maildir_free(&m);
}

/* ---- the index (pop3d-index) ------------------------------------------------ */

static void unlink_rel(const char *md, const char *rel)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", md, rel);
	unlink(p);
}

static char *slurp(const char *md, const char *rel)
{
	char p[512], *buf;
	FILE *f;
	long len;

	snprintf(p, sizeof(p), "%s/%s", md, rel);
	f = fopen(p, "rb");
	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)len + 1);
	if (buf != NULL && fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static void spit(const char *md, const char *rel, const char *data, size_t len)
{
	char p[512];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", md, rel);
	f = fopen(p, "wb");
	if (f == NULL) {
		perror(p);
		exit(2);
	}
	fwrite(data, 1, len, f);
	fclose(f);
}

/* The "new"/"cur" line the index would hold for sub of md now. */
static void stamp_line(const char *md, const char *sub, char *out, size_t size)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", md, sub);
	if (stat(p, &st) == -1)
		exit(2);
	snprintf(out, size, "%s %llu %llu %lld %ld %lld %ld\n", sub,
		 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
		 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
		 (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

/* An index of md for owner (uid, the maildir of path owner_md) with the
 * directories' stamps as they are now, settled or not, and the message
 * lines body ("<size> <ino> <sec> <nsec> <name>\n"...), n of them. */
static void craft_index(const char *md, const char *owner_md, uid_t uid, bool settled,
			size_t n, const char *body)
{
	char buf[8192], nl[200], cl[200];
	struct stat st;
	int len;

	if (stat(owner_md, &st) == -1)
		exit(2);
	stamp_line(md, "new", nl, sizeof(nl));
	stamp_line(md, "cur", cl, sizeof(cl));
	len = snprintf(buf, sizeof(buf), "pop3d-index 1\nowner %lu %llu %llu\n%s%ssettled %d\n"
		       "messages %zu\n%send\n", (unsigned long)uid,
		       (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, nl, cl,
		       settled ? 1 : 0, n, body);
	spit(md, "pop3d-index", buf, (size_t)len);
}

static unsigned long long ino_of(const char *md, const char *rel)
{
	char p[512];
	struct stat st;

	snprintf(p, sizeof(p), "%s/%s", md, rel);
	return stat(p, &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

/* A maildir of three messages, for the index tests. */
static void three(const char *md)
{
	mkmaildir(md);
	put(md, "new/100.A.host", "Subject: a\n\nalpha\n", 100);
	put(md, "cur/200.B.host:2,S", "Subject: b\n\nbeta\n", 200);
	put(md, "new/300.C.host,W=99", "Subject: c\n\ngamma\n", 300);
}

/* UIDLs, sizes and names of an open, one string: "uidl size name|...". */
static const char *listing(struct maildir *m, char *out, size_t size)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t i = 0; i < maildir_count(m); i++) {
		const struct maildir_msg *x = maildir_msg(m, i);
		int w = snprintf(out + o, size - o, "%s%s %llu %s", i > 0 ? "|" : "", x->uidl,
				 (unsigned long long)x->size, x->name);
		if (w > 0 && (size_t)w < size - o)
			o += (size_t)w;
	}
	return out;
}

static const char *open_listing(const char *md, char *out, size_t size)
{
	struct maildir *m;
	const char *err;

	if (maildir_open(md, &m, &err) != MAILDIR_OK)
		return "(open failed)";
	listing(m, out, size);
	maildir_free(&m);
	return out;
}

static bool index_has(const char *md, const char *needle)
{
	char *ix = slurp(md, "pop3d-index");
	bool r = ix != NULL && strstr(ix, needle) != NULL;

	free(ix);
	return r;
}

#define THREE "100.A.host 21 new/100.A.host|200.B.host 20 cur/200.B.host:2,S|" \
	"300.C.host 99 new/300.C.host,W=99"

/* The first open writes the index; an open while neither directory
 * changed takes the listing from it (a size changed there shows). */
static void test_index_written_and_trusted(void)
{
	char md[300], got[1024], body[512];

	snprintf(md, sizeof(md), "%s/ix-trust", root);
	three(md);
	maildir_index_settle_s = 0;
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	CHECK(index_has(md, "pop3d-index 1\nowner "));
	CHECK(index_has(md, "\nsettled 1\nmessages 3\n"));
	CHECK(index_has(md, " new/100.A.host\n"));
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	/* trusted as written: nothing is read but the index */
	snprintf(body, sizeof(body), "21 %llu 100 0 new/100.A.host\n22 %llu 200 0 cur/200.B.host:2,S\n"
		 "99 %llu 300 0 new/300.C.host,W=99\n", ino_of(md, "new/100.A.host"),
		 ino_of(md, "cur/200.B.host:2,S"), ino_of(md, "new/300.C.host,W=99"));
	craft_index(md, md, geteuid(), true, 3, body);
	CHECK(strstr(open_listing(md, got, sizeof(got)), "200.B.host 22 ") != NULL);
	maildir_index_settle_s = POP3D_INDEX_SETTLE_S;
}

/* Directories changed within POP3D_INDEX_SETTLE_S of the write are not
 * trusted: the next open reads them again (a name only the index has is
 * not listed), and writes a settled index once they are old enough. */
static void test_index_unsettled_is_read_again(void)
{
	char md[300], got[1024], body[512];

	snprintf(md, sizeof(md), "%s/ix-settle", root);
	three(md);
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	CHECK(index_has(md, "\nsettled 0\n"));	/* the directories are brand new */
	snprintf(body, sizeof(body), "21 %llu 100 0 new/100.A.host\n7 1 150 0 new/150.ghost\n"
		 "20 %llu 200 0 cur/200.B.host:2,S\n99 %llu 300 0 new/300.C.host,W=99\n",
		 ino_of(md, "new/100.A.host"), ino_of(md, "cur/200.B.host:2,S"),
		 ino_of(md, "new/300.C.host,W=99"));
	craft_index(md, md, geteuid(), false, 4, body);
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	/* the same index, settled: trusted (what the flag is for) */
	craft_index(md, md, geteuid(), true, 4, body);
	CHECK(strstr(open_listing(md, got, sizeof(got)), "150.ghost") != NULL);
	unlink_rel(md, "pop3d-index");
	maildir_index_settle_s = 0;	/* as if two seconds had passed */
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	CHECK(index_has(md, "\nsettled 1\n"));
	maildir_index_settle_s = POP3D_INDEX_SETTLE_S;
}

/* new/ and cur/ of md dated back (mtime): any later change of either is
 * seen, however soon it comes. */
static void date_back(const char *md)
{
	struct timespec ts[2] = { { .tv_sec = 1000 }, { .tv_sec = 1000 } };
	char p[512];

	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s/%s", md, i == 0 ? "new" : "cur");
		CHECK(utimensat(AT_FDCWD, p, ts, 0) == 0);
	}
}

/* A listing kept by maildir_park (a spare's warm listing): used by the
 * next open of the same maildir while new/ and cur/ are unchanged; not
 * kept after an UPDATE that changed something or a listing of unsettled
 * directories; never used for another maildir; a delivery, a rename or a
 * deletion by someone else makes the open read the maildir again. */
static void test_warm_listing(void)
{
	char md[300], other[300], got[1024], first[1024];
	struct maildir *m, *warm = NULL;
	const char *err;
	bool used;

	snprintf(md, sizeof(md), "%s/warm", root);
	snprintf(other, sizeof(other), "%s/warm-other", root);
	three(md);
	three(other);
	put(other, "new/400.D.host", "Subject: d\n\ndelta\n", 400);
	/* unsettled (brand-new directories): not kept */
	CHECK(maildir_open_warm(md, &warm, &m, &err, &used) == MAILDIR_OK && !used);
	maildir_park(&m, &warm);
	CHECK(m == NULL && warm == NULL);
	maildir_index_settle_s = 0;
	date_back(md);
	date_back(other);
	CHECK(maildir_open_warm(md, &warm, &m, &err, &used) == MAILDIR_OK && !used);
	listing(m, first, sizeof(first));
	CHECK_STR(first, THREE);
	maildir_msg(m, 0)->deleted = true;	/* a DELE without QUIT changes nothing */
	maildir_park(&m, &warm);
	CHECK(warm != NULL);
	/* the lock went with the session: another open may take it */
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	CHECK(maildir_open_warm(md, &warm, &m, &err, &used) == MAILDIR_OK && used && warm == NULL);
	CHECK_STR(listing(m, got, sizeof(got)), first);
	CHECK(!maildir_msg(m, 0)->deleted);
	maildir_park(&m, &warm);
	/* another maildir: its own listing */
	CHECK(maildir_open_warm(other, &warm, &m, &err, &used) == MAILDIR_OK && !used);
	CHECK(maildir_count(m) == 4);
	maildir_free(&m);
	/* a delivery, a rename, a deletion, each right after the park */
	static const char *const change[] = { "deliver", "rename", "delete" };
	for (size_t k = 0; k < 3; k++) {
		three(md);
		unlink_rel(md, "new/500.E.host");
		unlink_rel(md, "cur/100.A.host:2,S");
		put(md, "new/100.A.host", "Subject: a\n\nalpha\n", 100);
		date_back(md);
		CHECK(maildir_open_warm(md, &warm, &m, &err, &used) == MAILDIR_OK);
		maildir_park(&m, &warm);
		CHECK(warm != NULL);
		char from[512], to[512];
		if (k == 0) {
			put(md, "new/500.E.host", "Subject: e\n\nepsilon\n", 500);
		} else if (k == 1) {
			snprintf(from, sizeof(from), "%s/new/100.A.host", md);
			snprintf(to, sizeof(to), "%s/cur/100.A.host:2,S", md);
			CHECK(rename(from, to) == 0);
		} else {
			unlink_rel(md, "new/100.A.host");
		}
		CHECK(maildir_open_warm(md, &warm, &m, &err, &used) == MAILDIR_OK);
		if (used)
			fprintf(stderr, "warm listing used after a %s\n", change[k]);
		CHECK(!used);
		CHECK(maildir_count(m) == (k == 0 ? 4u : k == 1 ? 3u : 2u));
		maildir_free(&m);
	}
	/* an UPDATE that removed a message: nothing kept */
	three(md);
	date_back(md);
	CHECK(maildir_open_warm(md, &warm, &m, &err, &used) == MAILDIR_OK);
	maildir_msg(m, 0)->deleted = true;
	CHECK(maildir_update(m, -1, 0) == 0);
	maildir_park(&m, &warm);
	CHECK(warm == NULL);
	maildir_index_settle_s = POP3D_INDEX_SETTLE_S;
}

/* Between two opens: a delivery, an MUA's rename (new/ to cur/ with
 * flags), a deletion.  Each is listed as it is on disk, UIDLs as ever,
 * and the index follows. */
static void test_index_changes_between_opens(void)
{
	char md[300], got[1024], a[600], b[600];

	snprintf(md, sizeof(md), "%s/ix-between", root);
	three(md);
	maildir_index_settle_s = 0;
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	put(md, "new/400.D.host", "Subject: d\n\ndelta\n", 400);
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE "|400.D.host 21 new/400.D.host");
	CHECK(index_has(md, " new/400.D.host\n"));
	snprintf(a, sizeof(a), "%s/new/100.A.host", md);
	snprintf(b, sizeof(b), "%s/cur/100.A.host:2,S", md);
	CHECK(rename(a, b) == 0);
	CHECK_STR(open_listing(md, got, sizeof(got)),
		  "100.A.host 21 cur/100.A.host:2,S|200.B.host 20 cur/200.B.host:2,S|"
		  "300.C.host 99 new/300.C.host,W=99|400.D.host 21 new/400.D.host");
	CHECK(index_has(md, " cur/100.A.host:2,S\n"));
	CHECK(!index_has(md, " new/100.A.host\n"));
	unlink_rel(md, "cur/200.B.host:2,S");
	CHECK_STR(open_listing(md, got, sizeof(got)),
		  "100.A.host 21 cur/100.A.host:2,S|300.C.host 99 new/300.C.host,W=99|"
		  "400.D.host 21 new/400.D.host");
	CHECK(index_has(md, "\nmessages 3\n"));
	maildir_index_settle_s = POP3D_INDEX_SETTLE_S;
}

/* During a session opened from the index: an MUA renames a message (RETR
 * finds it again, DELE removes it under its new name), deletes another
 * (-ERR for it alone), delivers a third (seen by the next session). */
static void test_index_changes_during_session(void)
{
	char md[300], got[1024], a[600], b[600];
	struct sink s = { .len = 0 };
	struct maildir *m;
	const char *err;

	snprintf(md, sizeof(md), "%s/ix-during", root);
	three(md);
	maildir_index_settle_s = 0;
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	snprintf(a, sizeof(a), "%s/new/100.A.host", md);
	snprintf(b, sizeof(b), "%s/cur/100.A.host:2,RS", md);
	CHECK(rename(a, b) == 0);
	unlink_rel(md, "cur/200.B.host:2,S");
	put(md, "new/400.D.host", "Subject: d\n\ndelta\n", 400);
	CHECK_INT(maildir_send(m, 0, -1, sink_emit, &s, &err), 0);
	CHECK_STR(s.buf, "Subject: a\r\n\r\nalpha\r\n");
	CHECK_STR(maildir_msg(m, 0)->uidl, "100.A.host");
	s.len = 0;
	CHECK_INT(maildir_send(m, 1, -1, sink_emit, &s, &err), -1);
	CHECK(strstr(err, "removed") != NULL);
	CHECK_INT(maildir_send(m, 2, 0, sink_emit, &s, &err), 0);	/* TOP still works */
	CHECK_INT(maildir_count(m), 3);
	maildir_msg(m, 0)->deleted = true;
	CHECK_INT(maildir_update(m, -1, 0), 0);
	maildir_free(&m);
	CHECK(!exists(md, "cur/100.A.host:2,RS"));
	CHECK(index_has(md, "\nsettled 0\n"));	/* written at UPDATE, to be read again */
	CHECK_STR(open_listing(md, got, sizeof(got)),
		  "300.C.host 99 new/300.C.host,W=99|400.D.host 21 new/400.D.host");
	maildir_index_settle_s = POP3D_INDEX_SETTLE_S;
}

/* Corrupt, truncated, of another version, or with a hostile line: never
 * trusted (even with the directories' stamps right), rebuilt. */
static void test_index_corrupt_rebuilt(void)
{
	static const char *const bad_lines[] = {
		"7 1 150 0 new/../../etc/passwd\n", "7 1 150 0 new/a/b\n", "7 1 150 0 tmp/x\n",
		"7 1 150 0 new/.hidden\n", "7 1 150 0 new/\n", "1099511627777 1 150 0 new/big\n",
		"7 1 150 1000000000 new/ns\n", "-7 1 150 0 new/neg\n", "7  1 150 0 new/blank\n",
		"7 1 150 0\n", "07x 1 150 0 new/junk\n",
	};
	char md[300], got[1024], body[1024], *good;
	size_t len;

	snprintf(md, sizeof(md), "%s/ix-corrupt", root);
	three(md);
	maildir_index_settle_s = 0;
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	good = slurp(md, "pop3d-index");
	CHECK(good != NULL);
	if (good == NULL)
		return;
	len = strlen(good);
	/* truncated: at every line end but the last, and mid-line */
	for (size_t cut = 0; cut + 1 < len; cut++) {
		if (good[cut] != '\n' && cut != len / 2 && cut != len - 3)
			continue;
		spit(md, "pop3d-index", good, cut + 1);
		CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
		CHECK(index_has(md, "\nend\n"));
	}
	/* one message line less, the count right: listed from the index
	 * would lose a message; the count wrong: corrupt */
	for (size_t k = 0; k < sizeof(bad_lines) / sizeof(bad_lines[0]); k++) {
		snprintf(body, sizeof(body), "21 %llu 100 0 new/100.A.host\n%s20 %llu 200 0 "
			 "cur/200.B.host:2,S\n99 %llu 300 0 new/300.C.host,W=99\n",
			 ino_of(md, "new/100.A.host"), bad_lines[k],
			 ino_of(md, "cur/200.B.host:2,S"), ino_of(md, "new/300.C.host,W=99"));
		craft_index(md, md, geteuid(), true, 4, body);
		CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	}
	/* a name twice */
	snprintf(body, sizeof(body), "21 %llu 100 0 new/100.A.host\n21 %llu 100 0 new/100.A.host\n"
		 "20 %llu 200 0 cur/200.B.host:2,S\n99 %llu 300 0 new/300.C.host,W=99\n",
		 ino_of(md, "new/100.A.host"), ino_of(md, "new/100.A.host"),
		 ino_of(md, "cur/200.B.host:2,S"), ino_of(md, "new/300.C.host,W=99"));
	craft_index(md, md, geteuid(), true, 4, body);
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	/* another version; garbage; a NUL; trailing bytes after "end" */
	spit(md, "pop3d-index", "pop3d-index 0\n", 14);
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	CHECK(index_has(md, "pop3d-index 1\n"));
	spit(md, "pop3d-index", "\x01\x02garbage\n\n\n", 12);
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	{
		char *nul = strdup(good);

		nul[strlen("pop3d-index 1\now")] = '\0';
		spit(md, "pop3d-index", nul, len);
		free(nul);
		CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	}
	snprintf(body, sizeof(body), "%sextra\n", good);
	spit(md, "pop3d-index", body, strlen(body));
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	/* a line beyond POP3D_INDEX_MAX_LINE */
	memset(body, 'x', 700);
	memcpy(body, "7 1 150 0 new/", 14);
	memcpy(body + 700, "\n", 2);
	craft_index(md, md, geteuid(), true, 1, body);
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	free(good);
	maildir_index_settle_s = POP3D_INDEX_SETTLE_S;
}

/* An index of another maildir (another user's, copied in) is refused even
 * with this maildir's stamps: its owner line names the other one. */
static void test_index_of_another_maildir(void)
{
	char md[300], other[300], got[1024], body[512];

	snprintf(md, sizeof(md), "%s/ix-mine", root);
	snprintf(other, sizeof(other), "%s/ix-theirs", root);
	three(md);
	mkmaildir(other);
	put(other, "new/900.Z.host", "Subject: z\n\nsecret\n", 900);
	maildir_index_settle_s = 0;
	CHECK_STR(open_listing(other, got, sizeof(got)), "900.Z.host 22 new/900.Z.host");
	snprintf(body, sizeof(body), "22 %llu 900 0 new/900.Z.host\n", ino_of(other, "new/900.Z.host"));
	craft_index(md, other, geteuid(), true, 1, body);
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	CHECK(!index_has(md, "900.Z.host"));
	/* the right maildir, another uid */
	craft_index(md, md, geteuid() + 1, true, 1, body);
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	CHECK(!index_has(md, "900.Z.host"));
	/* the control: the same index with this maildir's owner line is
	 * trusted (so the refusals above are the owner check's) */
	craft_index(md, md, geteuid(), true, 1, body);
	CHECK_STR(open_listing(md, got, sizeof(got)), "900.Z.host 22 new/900.Z.host");
	maildir_index_settle_s = POP3D_INDEX_SETTLE_S;
}

/* UIDLs are those of the names, whatever the index: the same after it is
 * removed, corrupted or rebuilt (odd names hashed as ever). */
static void test_index_uidl_stable(void)
{
	char md[300], first[2048], got[2048];

	snprintf(md, sizeof(md), "%s/ix-uidl", root);
	three(md);
	put(md, "new/sp ace", "a\n", 1);
	put(md, "new/dup:2,", "a\n", 2);
	put(md, "cur/dup:2,S", "b\n", 3);
	maildir_index_settle_s = 0;
	open_listing(md, first, sizeof(first));
	CHECK_STR(open_listing(md, got, sizeof(got)), first);	/* from the index */
	CHECK(index_has(md, " new/sp ace\n"));
	unlink_rel(md, "pop3d-index");
	CHECK_STR(open_listing(md, got, sizeof(got)), first);	/* rebuilt */
	spit(md, "pop3d-index", "pop3d-index 1\nowner 0", 22);
	CHECK_STR(open_listing(md, got, sizeof(got)), first);	/* corrupt */
	CHECK_STR(open_listing(md, got, sizeof(got)), first);
	maildir_index_settle_s = POP3D_INDEX_SETTLE_S;
}

/* A message changed in place (same inode, directories untouched): RETR
 * sends what is there, and the index and cached size go, so that the next
 * open sizes it afresh. */
static void test_index_size_checked_when_sent(void)
{
	char md[300], got[1024];
	struct sink s = { .len = 0 };
	struct maildir *m;
	const char *err;

	snprintf(md, sizeof(md), "%s/ix-size", root);
	three(md);
	maildir_index_settle_s = 0;
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	CHECK(exists(md, "pop3d-sizes"));
	put(md, "new/100.A.host", "Subject: a\n\nalpha, longer\n", 100);
	CHECK_INT(maildir_open(md, &m, &err), MAILDIR_OK);
	if (m == NULL)
		return;
	CHECK_INT(maildir_msg(m, 0)->size, 21);		/* as listed */
	CHECK_INT(maildir_send(m, 0, -1, sink_emit, &s, &err), 0);
	CHECK_STR(s.buf, "Subject: a\r\n\r\nalpha, longer\r\n");
	CHECK(!exists(md, "pop3d-index"));
	CHECK_INT(maildir_update(m, -1, 0), 0);
	maildir_free(&m);
	CHECK(!exists(md, "pop3d-index"));
	CHECK(strstr(open_listing(md, got, sizeof(got)), "100.A.host 29 new/100.A.host") != NULL);
	maildir_index_settle_s = POP3D_INDEX_SETTLE_S;
}

/* The index cannot be written (here a directory holds its temporary
 * name; a read-only maildir as another user below): the open works. */
static void test_index_unwritable(void)
{
	char md[300], got[1024], p[400];
	int status;
	pid_t pid;

	snprintf(md, sizeof(md), "%s/ix-blocked", root);
	three(md);
	snprintf(p, sizeof(p), "%s/pop3d-index.tmp", md);
	CHECK(mkdir(p, 0700) == 0);
	spit(md, "pop3d-index.tmp/x", "x", 1);
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);
	CHECK(!exists(md, "pop3d-index"));
	CHECK_STR(open_listing(md, got, sizeof(got)), THREE);

	snprintf(md, sizeof(md), "%s/ix-readonly", root);
	three(md);
	fflush(NULL);
	pid = fork();
	CHECK(pid != -1);
	if (pid == 0) {
		char buf[1024];

		if (geteuid() == 0) {
			char cmd[400];

			snprintf(cmd, sizeof(cmd), "chown -R 65534:65534 %s", md);
			if (chmod(root, 0755) == -1 || system(cmd) != 0 || setgid(65534) == -1 ||
			    setuid(65534) == -1)
				_exit(2);
		}
		/* the lock file exists (a session before), then the maildir
		 * becomes read-only */
		if (strcmp(open_listing(md, buf, sizeof(buf)), THREE) != 0)
			_exit(3);
		unlink_rel(md, "pop3d-index");
		unlink_rel(md, "pop3d-sizes");
		if (chmod(md, 0555) == -1)
			_exit(4);
		for (int i = 0; i < 2; i++)
			if (strcmp(open_listing(md, buf, sizeof(buf)), THREE) != 0)
				_exit(5);
		_exit(exists(md, "pop3d-index") ? 6 : 0);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	chmod(md, 0755);
}

int main(void)
{
	char tmpl[] = "/tmp/test-maildir.XXXXXX";
	char cmd[300];

	log_init("test-maildir", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	if (mkdtemp(tmpl) == NULL)
		return 2;
	snprintf(root, sizeof(root), "%s", tmpl);
	UNIT_RUN(test_conv_crlf_and_dots);
	UNIT_RUN(test_conv_top);
	UNIT_RUN(test_conv_split_input);
	UNIT_RUN(test_scan_sizes_uidl_order);
	UNIT_RUN(test_uidl_odd_names);
	UNIT_RUN(test_uidl_base_like_a_hash);
	UNIT_RUN(test_lock_in_use);
	UNIT_RUN(test_missing_and_damaged);
	UNIT_RUN(test_send_and_update);
	UNIT_RUN(test_send_changed_after_listing);
	UNIT_RUN(test_vanished_message);
	UNIT_RUN(test_update_never_replaces);
	UNIT_RUN(test_update_same_file_twice);
	UNIT_RUN(test_dele_only_the_listed_file);
	UNIT_RUN(test_dele_claim_half_done);
	UNIT_RUN(test_cache_tmp_not_truncated);
	UNIT_RUN(test_expire_zero);
	UNIT_RUN(test_expire_days);
	UNIT_RUN(test_expire_shared_base);
	UNIT_RUN(test_index_written_and_trusted);
	UNIT_RUN(test_index_unsettled_is_read_again);
	UNIT_RUN(test_index_changes_between_opens);
	UNIT_RUN(test_index_changes_during_session);
	UNIT_RUN(test_index_corrupt_rebuilt);
	UNIT_RUN(test_index_of_another_maildir);
	UNIT_RUN(test_index_uidl_stable);
	UNIT_RUN(test_index_size_checked_when_sent);
	UNIT_RUN(test_index_unwritable);
	UNIT_RUN(test_warm_listing);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
	return unit_finish();
}
