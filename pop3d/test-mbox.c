/*
 * test-mbox.c - the mbox maildrop alone (pop3d/mbox.c): the scanner on
 * awkward spools, sizes as sent, UIDLs and their stability, the c-client
 * metadata message, locking against fcntl and dot locks (live and stale),
 * and the UPDATE rewrite in both of its ways, with mail appended meanwhile.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "pop3d/pop3d.h"
#include "tests/unit.h"

static char root[256];

static void path_of(const char *name, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", root, name);
}

static void put(const char *name, const char *content, size_t len)
{
	char p[512];
	int fd;

	path_of(name, p, sizeof(p));
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd == -1 || write(fd, content, len) != (ssize_t)len) {
		perror(p);
		exit(2);
	}
	close(fd);
}

static void append(const char *name, const char *content)
{
	char p[512];
	int fd;

	path_of(name, p, sizeof(p));
	fd = open(p, O_WRONLY | O_APPEND);
	if (fd == -1 || write(fd, content, strlen(content)) != (ssize_t)strlen(content)) {
		perror(p);
		exit(2);
	}
	close(fd);
}

/* The file's content, NUL-terminated, into a static buffer. */
static const char *slurp(const char *name)
{
	static char buf[1 << 16];
	char p[512];
	ssize_t n;
	int fd;

	path_of(name, p, sizeof(p));
	fd = open(p, O_RDONLY);
	if (fd == -1)
		return NULL;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n < 0 ? 0 : n] = '\0';
	return buf;
}

struct sink {
	char buf[4 << 20];
	size_t len;
};

static int sink_emit(void *ctx, const void *data, size_t len)
{
	struct sink *s = ctx;

	if (s->len + len >= sizeof(s->buf))
		return -1;
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	return 0;
}

static enum maildir_status open_mbox(const char *name, struct mbox **mb_r)
{
	char p[512];
	const char *err;

	path_of(name, p, sizeof(p));
	return mbox_open(p, mb_r, &err);
}

/* RETR of message i as sent (without the final "."). */
static const char *retr(struct mbox *mb, size_t i, long lines)
{
	static struct sink s;
	const char *err;

	s.len = 0;
	s.buf[0] = '\0';
	if (mbox_send(mb, i, lines, sink_emit, &s, &err) != 0)
		return NULL;
	return s.buf;
}

#define FROM1 "From alice@example.org Mon Dec  7 04:00:00 2026\n"
#define FROM2 "From bob@example.org Mon Dec  7 04:01:00 2026\n"
#define FROM3 "From carol@example.org Mon Dec  7 04:02:00 2026\n"

/* Every awkward shape at once: sizes agree with what is sent. */
static void test_scan_shapes(void)
{
	static const char box[] =
		FROM1
		"Subject: one\n\nFrom the start, a body line.\n"
		">From quoted stays quoted\n"
		"From here on, no separator (no time)\n\n"
		"From here too\n"
		".dot line\n\n"
		FROM2
		"\n"				/* empty header, empty body */
		"\n"
		FROM3
		"\n"				/* empty message: nothing but the separator */
		"From dave@example.org Mon Dec  7 04:03:00 2026\r\n"
		"Subject: crlf\r\n\r\nbody\r\n\r\n"
		"From erin@example.org Mon Dec  7 04:04:00 2026\n"
		"Subject: last\n\nno final newline";
	struct mbox *mb;

	put("shapes", box, sizeof(box) - 1);
	CHECK_INT(open_mbox("shapes", &mb), MAILDIR_OK);
	if (mb == NULL)
		return;
	CHECK_INT(mbox_count(mb), 5);
	CHECK_STR(retr(mb, 0, -1), "Subject: one\r\n\r\nFrom the start, a body line.\r\n"
		  ">From quoted stays quoted\r\nFrom here on, no separator (no time)\r\n\r\n"
		  "From here too\r\n..dot line\r\n");
	CHECK_STR(retr(mb, 1, -1), "\r\n");
	CHECK_STR(retr(mb, 2, -1), "");
	CHECK_STR(retr(mb, 3, -1), "Subject: crlf\r\n\r\nbody\r\n");
	CHECK_STR(retr(mb, 4, -1), "Subject: last\r\n\r\nno final newline\r\n");
	CHECK_STR(retr(mb, 0, 1), "Subject: one\r\n\r\nFrom the start, a body line.\r\n");
	for (size_t i = 0; i < mbox_count(mb); i++) {
		const char *body = retr(mb, i, -1);
		size_t dots = 0;

		/* size: octets as sent, before dot-stuffing */
		for (const char *p = body; p != NULL && *p != '\0'; p++)
			dots += *p == '.' && (p == body || p[-1] == '\n');
		CHECK_INT(mbox_msg(mb, i)->size, strlen(body) - dots);
		CHECK(mbox_msg(mb, i)->name == NULL);
	}
	mbox_free(&mb);
	CHECK(mb == NULL);
}

static void test_not_mbox_missing_empty(void)
{
	struct mbox *mb = NULL;

	put("junk", "Subject: no From line\n\nhello\n", 29);
	CHECK_INT(open_mbox("junk", &mb), MAILDIR_PERM);
	CHECK_INT(open_mbox("nonexistent", &mb), MAILDIR_OK);
	if (mb != NULL) {
		CHECK_INT(mbox_count(mb), 0);
		CHECK_INT(mbox_update(mb, -1, 0), 0);
		mbox_free(&mb);
	}
	put("empty", "", 0);
	CHECK_INT(open_mbox("empty", &mb), MAILDIR_OK);
	if (mb != NULL) {
		CHECK_INT(mbox_count(mb), 0);
		mbox_free(&mb);
	}
	/* a spool with a second name (planted in a world-writable spool
	 * directory, as a hard link to another file): refused */
	char p1[512], p2[512];

	put("linked", "From a@b Mon Dec  7 03:00:00 2026\n\nx\n", 37);
	path_of("linked", p1, sizeof(p1));
	path_of("linked2", p2, sizeof(p2));
	CHECK(link(p1, p2) == 0);
	CHECK_INT(open_mbox("linked", &mb), MAILDIR_PERM);
	CHECK(mb == NULL);
	unlink(p2);
	CHECK_INT(open_mbox("linked", &mb), MAILDIR_OK);
	if (mb != NULL) {
		CHECK_INT(mbox_count(mb), 1);
		mbox_free(&mb);
	}
}

static void test_cclient_hidden_and_kept(void)
{
	static const char meta[] =
		"From MAILER-DAEMON Mon Dec  7 03:00:00 2026\n"
		"Date: Mon, 7 Dec 2026 03:00:00 +0000\n"
		"From: Mail System Internal Data <MAILER-DAEMON@host>\n"
		"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
		"X-IMAP: 1765000000 0000000002\n"
		"Status: RO\n\n"
		"This text is part of the internal format of your mail folder.\n\n";
	static const char box_tail[] =
		FROM1 "Subject: a\nStatus: RO\nX-Status: A\nX-UID: 1\n\nA\n\n"
		FROM2 "Subject: b\n\nB\n\n";
	char box[1024];
	struct mbox *mb;

	snprintf(box, sizeof(box), "%s%s", meta, box_tail);
	put("cclient", box, strlen(box));
	CHECK_INT(open_mbox("cclient", &mb), MAILDIR_OK);
	if (mb == NULL)
		return;
	CHECK_INT(mbox_count(mb), 2);
	CHECK_STR(retr(mb, 0, -1), "Subject: a\r\nStatus: RO\r\nX-Status: A\r\nX-UID: 1\r\n\r\nA\r\n");
	mbox_msg(mb, 0)->deleted = true;
	CHECK_INT(mbox_update(mb, -1, 0), 0);
	mbox_free(&mb);
	snprintf(box, sizeof(box), "%s%s", meta, FROM2 "Subject: b\n\nB\n\n");
	CHECK_STR(slurp("cclient"), box);

	/* Not first: an ordinary message. */
	snprintf(box, sizeof(box), "%s%s", box_tail, meta);
	put("cclient2", box, strlen(box));
	CHECK_INT(open_mbox("cclient2", &mb), MAILDIR_OK);
	if (mb != NULL) {
		CHECK_INT(mbox_count(mb), 3);
		mbox_free(&mb);
	}
}

static void uidls(const char *name, char out[][POP3D_MAX_UIDL + 1], size_t max, size_t *n_r)
{
	struct mbox *mb;

	*n_r = 0;
	if (open_mbox(name, &mb) != MAILDIR_OK)
		return;
	for (size_t i = 0; i < mbox_count(mb) && i < max; i++)
		snprintf(out[(*n_r)++], POP3D_MAX_UIDL + 1, "%s", mbox_msg(mb, i)->uidl);
	mbox_free(&mb);
}

static void test_uidl(void)
{
	char a[8][POP3D_MAX_UIDL + 1], b[8][POP3D_MAX_UIDL + 1];
	size_t na, nb;
	static const char box[] =
		FROM1 "Subject: x\nX-UIDL: qpop-123\n\nx\n\n"
		FROM2 "Subject: same\n\nbody 1\n\n"
		FROM2 "Subject: same\n\nbody 2\n\n"
		FROM3 "Subject: y\nX-UIDL: dup\n\ny\n\n"
		FROM3 "Subject: z\nX-UIDL: dup\n\nz\n\n"
		FROM3 "Subject: h\nX-UIDL: 0123456789abcdef0123456789abcdef\n\nh\n\n";
	/* The same with Status headers added and a Content-Length changed,
	 * as a MUA rewrites it, and the first message gone. */
	static const char box2[] =
		FROM2 "Subject: same\nStatus: RO\n\nbody 1\n\n"
		FROM2 "Subject: same\nStatus: O\nX-Status: F\n\nbody 2\n\n"
		FROM3 "Subject: y\nX-UIDL: dup\nContent-Length: 2\n\ny\n\n"
		FROM3 "Subject: z\nX-UIDL: dup\n\nz\n\n"
		FROM3 "Subject: h\nX-UIDL: 0123456789abcdef0123456789abcdef\nX-UID: 7\n\nh\n\n";

	put("uidl", box, sizeof(box) - 1);
	uidls("uidl", a, 8, &na);
	CHECK_INT(na, 6);
	CHECK_STR(a[0], "qpop-123");
	for (size_t i = 1; i < na; i++) {
		CHECK_INT(strlen(a[i]), 32);	/* digests */
		for (size_t k = 0; k < i; k++)
			CHECK(strcmp(a[i], a[k]) != 0);
	}
	put("uidl", box2, sizeof(box2) - 1);
	uidls("uidl", b, 8, &nb);
	CHECK_INT(nb, 5);
	for (size_t i = 0; i < nb && i + 1 < na; i++)
		CHECK_STR(b[i], a[i + 1]);
}

/* The rewrite keeps everything else byte for byte, in both of its ways,
 * and mail appended after the scan. */
static void test_update_ways(void)
{
	char big[4096], box[16384], want[16384];
	struct mbox *mb;
	struct stat st;
	char p[512];

	memset(big, 'x', sizeof(big) - 2);
	big[sizeof(big) - 2] = '\n';
	big[sizeof(big) - 1] = '\0';

	/* (b): a small message deleted before a big kept one. */
	snprintf(box, sizeof(box), FROM1 "Subject: 1\n\nsmall\n\n" FROM2 "Subject: 2\n\n%s\n"
		 FROM3 "Subject: 3\n\nthree\n\n", big);
	put("upd", box, strlen(box));
	path_of("upd", p, sizeof(p));
	chmod(p, 0640);
	CHECK_INT(open_mbox("upd", &mb), MAILDIR_OK);
	if (mb == NULL)
		return;
	mbox_msg(mb, 0)->deleted = true;
	append("upd", FROM1 "Subject: late\n\nlate\n\n");	/* an MDA, meanwhile */
	CHECK_INT(mbox_update(mb, -1, 0), 0);
	mbox_free(&mb);
	snprintf(want, sizeof(want), FROM2 "Subject: 2\n\n%s\n" FROM3 "Subject: 3\n\nthree\n\n"
		 FROM1 "Subject: late\n\nlate\n\n", big);
	CHECK_STR(slurp("upd"), want);
	CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0640);

	/* (a): a big message deleted, small ones kept after it. */
	snprintf(box, sizeof(box), FROM1 "Subject: 1\n\none\n\n" FROM2 "Subject: 2\n\n%s\n"
		 FROM3 "Subject: 3\n\nthree\n\n" FROM3 "Subject: 4\n\nfour", big);
	put("upd", box, strlen(box));
	CHECK_INT(open_mbox("upd", &mb), MAILDIR_OK);
	if (mb == NULL)
		return;
	mbox_msg(mb, 1)->deleted = true;
	CHECK_INT(mbox_update(mb, -1, 0), 0);
	mbox_free(&mb);
	CHECK_STR(slurp("upd"), FROM1 "Subject: 1\n\none\n\n" FROM3 "Subject: 3\n\nthree\n\n"
		  FROM3 "Subject: 4\n\nfour");

	/* Everything after the first: one truncate.  EXPIRE 0: retrieved
	 * ones go too. */
	snprintf(box, sizeof(box), FROM1 "Subject: 1\n\none\n\n" FROM2 "Subject: 2\n\ntwo\n\n"
		 FROM3 "Subject: 3\n\nthree\n\n");
	put("upd", box, strlen(box));
	CHECK_INT(open_mbox("upd", &mb), MAILDIR_OK);
	if (mb == NULL)
		return;
	mbox_msg(mb, 1)->deleted = true;
	mbox_msg(mb, 2)->retrieved = true;
	CHECK_INT(mbox_update(mb, 0, 0), 0);
	CHECK(mbox_msg(mb, 2)->expired);
	mbox_free(&mb);
	CHECK_STR(slurp("upd"), FROM1 "Subject: 1\n\none\n\n");
}

/* More messages than a session lists: the rest are kept, whatever is
 * deleted among the listed ones. */
static void test_too_many_messages(void)
{
	static const char box[] = FROM1 "Subject: 1\n\none\n\n" FROM2 "Subject: 2\n\ntwo\n\n"
		FROM3 "Subject: 3\n\nthree\n\n" FROM3 "Subject: 4\n\nfour\n\n";
	struct mbox *mb;

	put("many", box, sizeof(box) - 1);
	mbox_max_messages = 2;
	CHECK_INT(open_mbox("many", &mb), MAILDIR_OK);
	mbox_max_messages = POP3D_MAX_MESSAGES;
	if (mb == NULL)
		return;
	CHECK_INT(mbox_count(mb), 2);
	mbox_msg(mb, 1)->deleted = true;
	CHECK_INT(mbox_update(mb, -1, 0), 0);
	mbox_free(&mb);
	CHECK_STR(slurp("many"), FROM1 "Subject: 1\n\none\n\n"
		  FROM3 "Subject: 3\n\nthree\n\n" FROM3 "Subject: 4\n\nfour\n\n");
}

/* A file changed under the lock (not by an append): nothing deleted. */
static void test_update_changed_file(void)
{
	static const char box[] = FROM1 "Subject: 1\n\none\n\n" FROM2 "Subject: 2\n\ntwo\n\n";
	static const char other[] = FROM3 "Subject: 3\n\nthree!\n\n" FROM2 "Subject: 2\n\ntwo\n\n";
	struct mbox *mb;

	put("chg", box, sizeof(box) - 1);
	CHECK_INT(open_mbox("chg", &mb), MAILDIR_OK);
	if (mb == NULL)
		return;
	mbox_msg(mb, 1)->deleted = true;
	/* rewritten in place by a program that ignored the locks */
	{
		char p[512];
		int fd;

		path_of("chg", p, sizeof(p));
		fd = open(p, O_WRONLY);
		CHECK(pwrite(fd, other, sizeof(other) - 1, 0) == (ssize_t)sizeof(other) - 1);
		close(fd);
	}
	CHECK_INT(mbox_update(mb, -1, 0), 1);
	mbox_free(&mb);
	CHECK_STR(slurp("chg"), other);
}

static void test_locks(void)
{
	static const char box[] = FROM1 "Subject: 1\n\none\n\n";
	char p[512], lock[600];
	struct mbox *mb = NULL, *mb2 = NULL;
	int fds[2], back[2];
	pid_t pid;
	char c;

	put("lk", box, sizeof(box) - 1);
	path_of("lk", p, sizeof(p));
	snprintf(lock, sizeof(lock), "%s.lock", p);

	/* Ours while open, gone after. */
	CHECK_INT(open_mbox("lk", &mb), MAILDIR_OK);
	CHECK(access(lock, F_OK) == 0);
	mbox_free(&mb);
	CHECK(access(lock, F_OK) == -1);

	/* A stale dot lock (a dead pid) is taken over. */
	pid = fork();
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	{
		char pidtxt[32];
		int n = snprintf(pidtxt, sizeof(pidtxt), "%ld\n", (long)pid);
		int fd = open(lock, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		CHECK(fd != -1 && write(fd, pidtxt, (size_t)n) == n);
		close(fd);
	}
	CHECK_INT(open_mbox("lk", &mb), MAILDIR_OK);
	mbox_free(&mb);

	/* An fcntl lock held by another process (as procmail holds it):
	 * in use after the wait; free once it lets go. */
	if (pipe(fds) == -1 || pipe(back) == -1)
		return;
	pid = fork();
	if (pid == 0) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int fd = open(p, O_RDWR);

		if (fd == -1 || fcntl(fd, F_SETLK, &fl) == -1)
			_exit(1);
		if (write(fds[1], "x", 1) != 1 || read(back[0], &c, 1) != 1)
			_exit(1);
		_exit(0);
	}
	CHECK(read(fds[0], &c, 1) == 1);
	CHECK_INT(open_mbox("lk", &mb2), MAILDIR_IN_USE);
	CHECK(access(lock, F_OK) == -1);	/* no dot lock left behind */
	CHECK(write(back[1], "y", 1) == 1);
	waitpid(pid, NULL, 0);
	close(fds[0]);
	close(fds[1]);
	close(back[0]);
	close(back[1]);
	CHECK_INT(open_mbox("lk", &mb2), MAILDIR_OK);
	mbox_free(&mb2);
}

/* The dot lock is touched while the session lasts (others judge it stale
 * by its age). */
static void test_dotlock_touched(void)
{
	static const char box[] = FROM1 "Subject: 1\n\none\n\n";
	struct timespec old[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	char p[512], lock[600];
	struct mbox *mb;
	struct stat st;
	bool fresh = false;

	put("touch", box, sizeof(box) - 1);
	path_of("touch", p, sizeof(p));
	snprintf(lock, sizeof(lock), "%s.lock", p);
	mbox_touch_interval_s = 1;
	CHECK_INT(open_mbox("touch", &mb), MAILDIR_OK);
	if (mb == NULL)
		return;
	CHECK(utimensat(AT_FDCWD, lock, old, 0) == 0);
	/* bounded: the toucher runs every second */
	for (int i = 0; i < 100 && !fresh; i++) {
		usleep(50000);
		fresh = stat(lock, &st) == 0 && st.st_mtime > time(NULL) - 60;
	}
	CHECK(fresh);
	mbox_free(&mb);
	mbox_touch_interval_s = POP3D_MBOX_TOUCH_S;
}

/* ---- the kill-during-rewrite test ------------------------------------------ */

#define KILL_MSGS 60

struct corpus {
	char *msg[KILL_MSGS];		/* as sent (RETR) */
	bool del[KILL_MSGS];
	size_t n;
};

static char *dup_retr(struct mbox *mb, size_t i)
{
	const char *r = retr(mb, i, 0x7fffffff);	/* whole, within the sink */

	return r != NULL ? strdup(r) : NULL;
}

/* Writes a spool of n messages: message i has size[i] body bytes. */
static void make_spool(const char *name, const size_t *size, size_t n)
{
	char p[512];
	FILE *f;

	path_of(name, p, sizeof(p));
	f = fopen(p, "w");
	if (f == NULL)
		exit(2);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "From m%zu@example.org Mon Dec  7 04:%02zu:00 2026\nSubject: m%zu\n\n",
			i, i % 60, i);
		for (size_t k = 0; k < size[i]; k++)
			fputc(k % 61 == 60 ? '\n' : 'a' + (char)((i + k) % 26), f);
		fputs("\nend\n\n", f);
	}
	fclose(f);
}

/* In a child: open, DELE per c, UPDATE with the kill hook at step k.
 * Returns the child's wait status; *steps_r the steps it took (k = 0). */
static int child_signal = SIGKILL;	/* what the kill hook sends */

static int update_in_child(const char *name, const struct corpus *c, unsigned k,
			   unsigned *steps_r)
{
	int fds[2], status;
	pid_t pid;

	if (pipe(fds) == -1)
		exit(2);
	pid = fork();
	if (pid == 0) {
		struct mbox *mb;

		if (open_mbox(name, &mb) != MAILDIR_OK)
			_exit(3);
		for (size_t i = 0; i < c->n; i++)
			mbox_msg(mb, i)->deleted = c->del[i];
		mbox_test_kill_step = k;
		mbox_test_kill_signal = child_signal;
		mbox_test_steps = 0;
		if (mbox_update(mb, -1, 0) != 0)
			_exit(4);
		if (write(fds[1], &mbox_test_steps, sizeof(mbox_test_steps)) < 0)
			_exit(5);
		mbox_free(&mb);
		_exit(0);
	}
	close(fds[1]);
	if (read(fds[0], steps_r, sizeof(*steps_r)) != sizeof(*steps_r))
		*steps_r = 0;
	close(fds[0]);
	waitpid(pid, &status, 0);
	return status;
}

/* Kills the rewrite before each of its steps in turn; after each kill,
 * every message not deleted is in the file whole, and at most one
 * message is neither a kept nor a deleted one (a cut copy). */
static void kill_everywhere(const size_t *size, size_t n, const bool *del)
{
	struct corpus c = { .n = n };
	char p[512], backup[600], cmd[1300];
	unsigned steps = 0, dummy;
	struct mbox *mb;
	int status;

	make_spool("kill", size, n);
	path_of("kill", p, sizeof(p));
	snprintf(backup, sizeof(backup), "%s.orig", p);
	snprintf(cmd, sizeof(cmd), "cp %s %s", p, backup);
	if (system(cmd) != 0)
		exit(2);
	CHECK_INT(open_mbox("kill", &mb), MAILDIR_OK);
	if (mb == NULL)
		return;
	CHECK_INT(mbox_count(mb), n);
	for (size_t i = 0; i < n; i++) {
		c.msg[i] = dup_retr(mb, i);
		c.del[i] = del[i];
	}
	mbox_free(&mb);

	status = update_in_child("kill", &c, 0, &steps);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(steps > 3);
	printf("# rewrite of %zu messages: killed before each of its %u steps\n", n, steps);
	for (unsigned k = 1; k <= steps; k++) {
		size_t found[KILL_MSGS] = { 0 }, strangers = 0;

		snprintf(cmd, sizeof(cmd), "cp %s %s", backup, p);
		if (system(cmd) != 0)
			exit(2);
		status = update_in_child("kill", &c, k, &dummy);
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		CHECK_INT(open_mbox("kill", &mb), MAILDIR_OK);	/* takes the stale dot lock */
		if (mb == NULL)
			return;
		for (size_t i = 0; i < mbox_count(mb); i++) {
			const char *got = retr(mb, i, 0x7fffffff);
			bool known = false;

			for (size_t m = 0; m < n && got != NULL; m++) {
				if (strcmp(got, c.msg[m]) == 0) {
					found[m]++;
					known = true;
				}
			}
			strangers += !known;
		}
		mbox_free(&mb);
		for (size_t m = 0; m < n; m++)
			if (!c.del[m] && found[m] == 0) {
				fprintf(stderr, "  kill at step %u of %u: message %zu lost\n",
					k, steps, m);
				CHECK(found[m] > 0);
			}
		CHECK(strangers <= 1);
	}
	/* SIGTERM (pop3d stopping, a kick) at each step: it waits for the
	 * rewrite, which ends whole (then the session dies of it); and once
	 * more to the end, undisturbed: exactly the kept ones, once each */
	for (unsigned k = 1; k <= steps + 1; k++) {
		bool term = k <= steps;

		snprintf(cmd, sizeof(cmd), "cp %s %s", backup, p);
		if (system(cmd) != 0)
			exit(2);
		child_signal = SIGTERM;
		status = update_in_child("kill", &c, term ? k : 0, &dummy);
		child_signal = SIGKILL;
		if (term)
			CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
		else
			CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		CHECK_INT(open_mbox("kill", &mb), MAILDIR_OK);
		if (mb == NULL)
			continue;
		size_t j = 0;

		for (size_t m = 0; m < n; m++) {
			if (c.del[m])
				continue;
			CHECK(j < mbox_count(mb) && strcmp(retr(mb, j, 0x7fffffff), c.msg[m]) == 0);
			j++;
		}
		if (mbox_count(mb) != j)
			fprintf(stderr, "  SIGTERM at step %u of %u: %zu messages, %zu kept\n", k,
				steps, mbox_count(mb), j);
		CHECK_INT(mbox_count(mb), j);
		mbox_free(&mb);
	}
	for (size_t i = 0; i < n; i++)
		free(c.msg[i]);
	unlink(backup);
}

static void test_kill_during_rewrite(void)
{
	size_t size[KILL_MSGS];
	bool del[KILL_MSGS];

	/* (b): small deleted ones between kept ones, two of them larger than
	 * a copy buffer (1 MiB, so they are written in pieces) */
	for (size_t i = 0; i < KILL_MSGS; i++) {
		size[i] = 200 + 37 * i;
		del[i] = i % 3 == 0 || i % 7 == 0;
	}
	size[4] = 1536 * 1024;		/* 1.5 MiB: copied in two pieces */
	kill_everywhere(size, KILL_MSGS, del);

	/* (a): a big one deleted first, small ones kept after it */
	for (size_t i = 0; i < 8; i++) {
		size[i] = 100 + 50 * i;
		del[i] = i == 1 || i == 5;
	}
	size[1] = 20000;
	kill_everywhere(size, 8, del);
}

int main(void)
{
	char tmpl[] = "/tmp/test-mbox.XXXXXX";
	char cmd[300];

	log_init("test-mbox", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	if (sodium_init() == -1 || mkdtemp(tmpl) == NULL)
		return 2;
	snprintf(root, sizeof(root), "%s", tmpl);
	UNIT_RUN(test_scan_shapes);
	UNIT_RUN(test_not_mbox_missing_empty);
	UNIT_RUN(test_cclient_hidden_and_kept);
	UNIT_RUN(test_uidl);
	UNIT_RUN(test_update_ways);
	UNIT_RUN(test_update_changed_file);
	UNIT_RUN(test_too_many_messages);
	UNIT_RUN(test_locks);
	UNIT_RUN(test_dotlock_touched);
	UNIT_RUN(test_kill_during_rewrite);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd) != 0)
		return 2;
	return unit_finish();
}
