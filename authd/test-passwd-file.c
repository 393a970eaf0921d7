/*
 * test-passwd-file.c - unit tests of the passwd-file authenticator: the
 * file format (Dovecot's), malformed lines, userdb fields and extra
 * fields, unknown users, and reloading when the file changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"
#include "tests/unit.h"

/* passdb_passwd_file.c flushes the cache when the file changes. */
struct cache *requests_cache(void)
{
	return NULL;
}

uint64_t requests_cache_flush(const char *user, l2_flush_cb *cb, void *ctx, bool *l2_r)
{
	(void)user;
	(void)cb;
	(void)ctx;
	if (l2_r != NULL)
		*l2_r = false;
	return 0;
}

static char path[64];

static void write_file(const char *text)
{
	char tmp[80];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	fputs(text, f);
	fclose(f);
	chmod(tmp, 0600);
	rename(tmp, path);
}

static struct authenticator *start(const char *text)
{
	struct authenticator *a = xcalloc(1, sizeof(*a));
	struct auth_conf *ac = xcalloc(1, sizeof(*ac));
	char err[256];

	write_file(text);
	ac->name = "pw";
	ac->path = path;
	ac->hash_concurrency = 2;
	a->conf = ac;
	if (passdb_passwd_file.init(a, err, sizeof(err)) == -1) {
		fprintf(stderr, "  init: %s\n", err);
		free(ac);
		free(a);
		return NULL;
	}
	return a;
}

static void stop(struct authenticator *a)
{
	passdb_passwd_file.deinit(a);
	free((void *)(uintptr_t)a->conf);
	free(a);
}

static struct job check(struct authenticator *a, const char *user, const char *pw)
{
	struct job job;

	memset(&job, 0, sizeof(job));
	snprintf(job.user, sizeof(job.user), "%s", user);
	job.password = (char *)(uintptr_t)pw;
	job.deadline_ms = mtime_ms() + 5000;
	job.result = AUTH_RESULT_TEMPFAIL;
	passdb_passwd_file.verify(a, NULL, &job);
	return job;
}

static void test_fields(void)
{
	struct authenticator *a = start(
		"# comment line\n"
		"\n"
		"alice:{PLAIN}a-pw:1001:1002:Alice A:/home/alice:/bin/sh:maildrop=maildir:/m/alice\n"
		"bob:{PLAIN}b-pw\n"
		"carol:{PLAIN}c-pw:::::: userdb_mail=mbox:/var/mail/carol other=x\n"
		"dan:{PLAIN}d-pw:7:8::/home/dan\r\n");
	struct job j;

	CHECK(a != NULL);
	j = check(a, "alice", "a-pw");
	CHECK_INT(j.result, AUTH_RESULT_OK);
	CHECK(j.udb.has_uid && j.udb.has_gid);
	CHECK_INT(j.udb.uid, 1001);
	CHECK_INT(j.udb.gid, 1002);
	CHECK_STR(j.udb.home, "/home/alice");
	CHECK_STR(j.udb.maildrop, "maildir:/m/alice");
	j = check(a, "bob", "b-pw");
	CHECK_INT(j.result, AUTH_RESULT_OK);
	CHECK(!j.udb.has_uid && !j.udb.has_gid);
	CHECK_STR(j.udb.home, "");
	j = check(a, "carol", "c-pw");
	CHECK_INT(j.result, AUTH_RESULT_OK);
	CHECK_STR(j.udb.maildrop, "mbox:/var/mail/carol");
	j = check(a, "dan", "d-pw");			/* CRLF line ending */
	CHECK_INT(j.result, AUTH_RESULT_OK);
	CHECK_STR(j.udb.home, "/home/dan");
	CHECK_INT(check(a, "alice", "wrong").result, AUTH_RESULT_FAIL);
	CHECK_INT(check(a, "Alice", "a-pw").result, AUTH_RESULT_NOUSER);	/* exact names */
	CHECK_INT(check(a, "nobody", "a-pw").result, AUTH_RESULT_NOUSER);
	stop(a);
}

static void test_malformed_lines_skipped(void)
{
	char long_line[5000];
	char text[6000];
	struct authenticator *a;

	memset(long_line, 'x', sizeof(long_line) - 1);
	long_line[sizeof(long_line) - 1] = '\0';
	snprintf(text, sizeof(text),
		 "nocolon\n"
		 ":emptyuser\n"
		 "baduid:{PLAIN}p:notanumber\n"
		 "badgid:{PLAIN}p:1:-1\n"
		 "unknownscheme:{NOSUCH}p\n"
		 "locked:*\n"
		 "long:%s\n"
		 "ok:{PLAIN}ok-pw:1:1\n", long_line);
	a = start(text);
	CHECK(a != NULL);
	CHECK_INT(check(a, "ok", "ok-pw").result, AUTH_RESULT_OK);
	CHECK_INT(check(a, "baduid", "p").result, AUTH_RESULT_NOUSER);
	CHECK_INT(check(a, "badgid", "p").result, AUTH_RESULT_NOUSER);
	CHECK_INT(check(a, "unknownscheme", "p").result, AUTH_RESULT_NOUSER);
	CHECK_INT(check(a, "locked", "").result, AUTH_RESULT_NOUSER);
	CHECK_INT(check(a, "long", long_line).result, AUTH_RESULT_NOUSER);
	stop(a);
}

static void test_duplicate_user_one_entry(void)
{
	struct authenticator *a = start("dup:{PLAIN}one\ndup:{PLAIN}two\n");
	int ok = 0;

	CHECK(a != NULL);
	ok += check(a, "dup", "one").result == AUTH_RESULT_OK;
	ok += check(a, "dup", "two").result == AUTH_RESULT_OK;
	CHECK_INT(ok, 1);
	stop(a);
}

static void test_empty_file_and_missing_file(void)
{
	struct authenticator *a = start("# nobody here\n");

	CHECK(a != NULL);
	CHECK_INT(check(a, "x", "y").result, AUTH_RESULT_NOUSER);
	stop(a);
	unlink(path);
	struct auth_conf ac = { .name = "pw", .path = path, .hash_concurrency = 1 };
	struct authenticator b = { .conf = &ac };
	char err[256];
	CHECK_INT(passdb_passwd_file.init(&b, err, sizeof(err)), -1);
	CHECK(strstr(err, path) != NULL);
}

static void test_reload_when_changed(void)
{
	struct authenticator *a = start("frank:{PLAIN}old\n");
	uint64_t deadline;

	CHECK(a != NULL);
	CHECK_INT(check(a, "frank", "old").result, AUTH_RESULT_OK);
	write_file("frank:{PLAIN}new\ngina:{PLAIN}g\n");
	/* the watcher checks once a second: wait for it, at most 5 s */
	deadline = mtime_ms() + 5000;
	while (check(a, "frank", "new").result != AUTH_RESULT_OK && mtime_ms() < deadline)
		usleep(20 * 1000);
	CHECK_INT(check(a, "frank", "new").result, AUTH_RESULT_OK);
	CHECK_INT(check(a, "frank", "old").result, AUTH_RESULT_FAIL);
	CHECK_INT(check(a, "gina", "g").result, AUTH_RESULT_OK);
	/* a broken replacement keeps working entries it can parse */
	write_file("garbage without colons\nfrank:{PLAIN}newer\n");
	deadline = mtime_ms() + 5000;
	while (check(a, "frank", "newer").result != AUTH_RESULT_OK && mtime_ms() < deadline)
		usleep(20 * 1000);
	CHECK_INT(check(a, "frank", "newer").result, AUTH_RESULT_OK);
	/* a vanished file keeps the loaded version */
	unlink(path);
	usleep(1200 * 1000);
	CHECK_INT(check(a, "frank", "newer").result, AUTH_RESULT_OK);
	stop(a);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	log_init("test-passwd-file", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	snprintf(path, sizeof(path), "/tmp/test-passwd-file.%ld", (long)getpid());
	UNIT_RUN(test_fields);
	UNIT_RUN(test_malformed_lines_skipped);
	UNIT_RUN(test_duplicate_user_one_entry);
	UNIT_RUN(test_empty_file_and_missing_file);
	UNIT_RUN(test_reload_when_changed);
	unlink(path);
	return unit_finish();
}
