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
	CHECK_INT(maildir_update(m), 0);
	maildir_free(&m);
	CHECK(exists(md, "cur/1.a:2,S"));
	CHECK(!exists(md, "new/1.a"));
	CHECK(!exists(md, "new/2.b"));
	CHECK(exists(md, "cur/3.c:2,FS"));
	CHECK(exists(md, "cur/4.d:2,"));
	CHECK(exists(md, "new/5.e"));
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
	CHECK_INT(maildir_update(m), 0);	/* already gone is fine */
	maildir_free(&m);
}

static void test_expand(void)
{
	char out[256];
	const char *err;

	CHECK_INT(maildir_expand("maildir:%h/Maildir", "bob", "/home/bob", out, sizeof(out), &err), 0);
	CHECK_STR(out, "/home/bob/Maildir");
	CHECK_INT(maildir_expand("/var/mail/%d/%n", "bob@example.org", NULL, out, sizeof(out), &err), 0);
	CHECK_STR(out, "/var/mail/example.org/bob");
	CHECK_INT(maildir_expand("/m/%u/100%%", "a", NULL, out, sizeof(out), &err), 0);
	CHECK_STR(out, "/m/a/100%");
	CHECK_INT(maildir_expand("mbox:/var/mail/%u", "a", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildir_expand("%h/Maildir", "a", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildir_expand("/m/%x", "a", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildir_expand("/m/%u", "../etc", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildir_expand("/m/%u", "..", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildir_expand("rel/%u", "a", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildir_expand("/%u", "aaaaaaaaaa", NULL, out, 8, &err), -1);
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
	UNIT_RUN(test_lock_in_use);
	UNIT_RUN(test_missing_and_damaged);
	UNIT_RUN(test_send_and_update);
	UNIT_RUN(test_vanished_message);
	UNIT_RUN(test_expand);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
	return unit_finish();
}
