/*
 * test-session.c - the TRANSACTION/UPDATE session driven over a
 * socketpair: session_run runs in a child process, the test writes
 * commands (pipelined) and reads the whole transcript.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "pop3d/pop3d.h"
#include "tests/unit.h"

static char root[256];
static struct config conf;
static char out[1 << 20];
static struct session_report report;	/* of the last run */

static void mkmaildir(const char *md)
{
	char p[512];
	static const char *const sub[] = { "", "/new", "/cur", "/tmp" };

	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s%s", md, sub[i]);
		mkdir(p, 0700);
	}
}

static void put(const char *md, const char *rel, const char *content, time_t t)
{
	char p[512];
	struct timespec ts[2] = { { t, 0 }, { t, 0 } };
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", md, rel);
	f = fopen(p, "w");
	if (f == NULL)
		exit(2);
	fputs(content, f);
	fclose(f);
	utimensat(AT_FDCWD, p, ts, 0);
}

static size_t count(const char *md, const char *sub)
{
	char p[512], cmd[600];
	FILE *f;
	size_t n = 0;
	int ch;

	snprintf(p, sizeof(p), "%s/%s", md, sub);
	snprintf(cmd, sizeof(cmd), "ls -1 '%s'", p);
	f = popen(cmd, "r");
	if (f == NULL)
		return 0;
	while ((ch = fgetc(f)) != EOF)
		n += ch == '\n';
	pclose(f);
	return n;
}

/* Runs a session on maildrop with pre-handoff bytes `pre`, writes `input`
 * and then half-closes (so a script without QUIT ends in a disconnect).
 * Returns the transcript (NUL-terminated, in `out`). */
static const char *run_n(const char *maildrop, const char *pre, const char *input,
			 size_t inlen)
{
	struct session_params p;
	size_t len = 0;
	int sv[2], rp[2], status;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1 || pipe(rp) == -1)
		exit(2);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		close(rp[0]);
		memset(&p, 0, sizeof(p));
		p.fd = sv[1];
		p.user = "tester";
		p.maildrop = maildrop;
		p.rip = "127.0.0.1";
		p.data = (const uint8_t *)pre;
		p.data_len = pre != NULL ? strlen(pre) : 0;
		p.conf = &conf;
		status = session_run(&p, &report);
		if (write(rp[1], &report, sizeof(report)) != (ssize_t)sizeof(report))
			_exit(3);
		_exit(status);
	}
	close(sv[1]);
	close(rp[1]);
	if (inlen > 0 && write(sv[0], input, inlen) == -1)
		exit(2);
	shutdown(sv[0], SHUT_WR);
	for (int i = 0; i < 1000; i++) {
		struct pollfd pfd = { .fd = sv[0], .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, 5000) <= 0)
			break;
		n = read(sv[0], out + len, sizeof(out) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	close(sv[0]);
	memset(&report, 0xff, sizeof(report));
	if (read(rp[0], &report, sizeof(report)) != (ssize_t)sizeof(report))
		fprintf(stderr, "  no session report\n");
	close(rp[0]);
	waitpid(pid, &status, 0);
	return out;
}

static const char *run(const char *maildrop, const char *pre, const char *input)
{
	return run_n(maildrop, pre, input, input != NULL ? strlen(input) : 0);
}

static void test_pipelined_handoff_bytes(void)
{
	char md[300];
	const char *t;

	snprintf(md, sizeof(md), "%s/pipe", root);
	mkmaildir(md);
	put(md, "new/1.a", "H: 1\n\nbody\n", 1);
	put(md, "new/2.b", "H: 2\n\n.dot\n", 2);
	t = run(md, "STAT\r\nLIST\r\n", "UIDL 2\r\nRETR 2\r\nTOP 1 0\r\nQUIT\r\n");
	CHECK_STR(t, "+OK Logged in, 2 messages (28 octets)\r\n"
		  "+OK 2 28\r\n"
		  "+OK Scan listing follows\r\n1 14\r\n2 14\r\n.\r\n"
		  "+OK 2 2.b\r\n"
		  "+OK 14 octets\r\nH: 2\r\n\r\n..dot\r\n.\r\n"
		  "+OK 14 octets\r\nH: 1\r\n\r\n.\r\n"
		  "+OK Logging out\r\n");
	CHECK_INT(count(md, "cur"), 1);		/* 2.b seen */
	CHECK_INT(count(md, "new"), 1);
	/* what it reports to the master at exit */
	CHECK_INT(report.end, SESSION_END_QUIT);
	CHECK_INT(report.kind, SESSION_REPORT_END);
	CHECK_INT(report.bytes_sent, strlen(t));
	CHECK_INT(report.commands[CMD_STAT], 1);
	CHECK_INT(report.commands[CMD_LIST], 1);
	CHECK_INT(report.commands[CMD_UIDL], 1);
	CHECK_INT(report.commands[CMD_RETR], 1);
	CHECK_INT(report.commands[CMD_TOP], 1);
	CHECK_INT(report.commands[CMD_QUIT], 1);
	CHECK_INT(report.commands[CMD_UNKNOWN], 0);
	CHECK_INT(report.retr, 1);
	CHECK_INT(report.retr_bytes, 14);
	CHECK_INT(report.top, 1);
	CHECK_INT(report.top_bytes, 14);
	CHECK_INT(report.dele, 0);
}

/* Runs a session on maildrop; once its greeting has come, removes the file
 * `gone` (as an MUA might), then writes input at once.  Returns the whole
 * output, greeting included. */
static const char *run_removing(const char *maildrop, const char *gone, const char *input)
{
	struct session_params p;
	size_t len = 0;
	int sv[2], status;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		exit(2);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		memset(&p, 0, sizeof(p));
		p.fd = sv[1];
		p.user = "tester";
		p.maildrop = maildrop;
		p.rip = "127.0.0.1";
		p.conf = &conf;
		_exit(session_run(&p, &report));
	}
	close(sv[1]);
	for (int i = 0; i < 1000; i++) {
		struct pollfd pfd = { .fd = sv[0], .events = POLLIN };
		ssize_t n;

		if (len > 0 && memchr(out, '\n', len) != NULL && unlink(gone) == 0 &&
		    write(sv[0], input, strlen(input)) == (ssize_t)strlen(input))
			shutdown(sv[0], SHUT_WR);
		if (poll(&pfd, 1, 5000) <= 0)
			break;
		n = read(sv[0], out + len, sizeof(out) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	close(sv[0]);
	waitpid(pid, &status, 0);
	return out;
}

/* A RETR whose message cannot be opened takes its "+OK" back and answers
 * -ERR, whatever the output buffer held before it: with replies piled up
 * past half of the buffer, the "+OK" went in after a flush and the take-
 * back brought back bytes already sent (a "+OK n octets" followed by old
 * replies).  Tried with the buffer at every fill around that point. */
static void test_retr_vanished_after_pipelined_output(void)
{
	char md[300], gone[400], body[70000], *tail;
	const char *t;
	size_t o = 0;
	int bad = 0;

	o += (size_t)snprintf(body, sizeof(body), "H: 1\n\n");
	for (int i = 0; i < 647; i++)	/* 647 lines of 101 octets as sent */
		o += (size_t)snprintf(body + o, sizeof(body) - o, "%099d\n", i);
	tail = malloc(64);
	if (tail == NULL)
		exit(2);
	for (int k = 0; k < 80; k++) {
		char input[2048];
		size_t n = 0;

		snprintf(md, sizeof(md), "%s/vanish%d", root, k);	/* QUIT marks 1.a seen */
		mkmaildir(md);
		snprintf(gone, sizeof(gone), "%s/new/2.b", md);
		put(md, "new/1.a", body, 1);
		put(md, "new/2.b", "H: 2\n\ntwo\n", 2);
		n += (size_t)snprintf(input + n, sizeof(input) - n, "RETR 1\r\n");
		for (int j = 0; j < k; j++)
			n += (size_t)snprintf(input + n, sizeof(input) - n, "LIST 1\r\n");
		snprintf(input + n, sizeof(input) - n, "RETR 2\r\nQUIT\r\n");
		t = run_removing(md, gone, input);
		/* the last LIST reply (or RETR 1's end), then at once -ERR */
		snprintf(tail, 64, k > 0 ? "+OK 1 65355\r\n-ERR" : "\r\n.\r\n-ERR");
		if (strstr(t, tail) == NULL || strstr(t, "+OK Logging out\r\n") == NULL ||
		    strlen(t) > 65355 + 40 + 14 * (size_t)k + 200) {
			if (bad++ == 0)
				fprintf(stderr, "    with %d LIST replies: ...%s\n", k,
					strlen(t) > 120 ? t + strlen(t) - 120 : t);
		}
	}
	CHECK_INT(bad, 0);
	free(tail);
}

static void test_dele_quit_vs_disconnect(void)
{
	char md[300];
	const char *t;

	snprintf(md, sizeof(md), "%s/dele", root);
	mkmaildir(md);
	put(md, "new/1.a", "x\n", 1);
	put(md, "new/2.b", "y\n", 2);
	t = run(md, NULL, "DELE 1\r\nDELE 1\r\nSTAT\r\n");	/* no QUIT */
	CHECK(strstr(t, "+OK Message 1 deleted\r\n-ERR Message 1 already deleted\r\n"
		     "+OK 1 3\r\n") != NULL);
	CHECK_INT(count(md, "new"), 2);
	CHECK_INT(report.end, SESSION_END_DISCONNECT);
	CHECK_INT(report.commands[CMD_DELE], 2);
	CHECK_INT(report.dele, 0);		/* nothing deleted without QUIT */
	t = run(md, NULL, "DELE 1\r\nRSET\r\nDELE 2\r\nLIST 2\r\nQUIT\r\n");
	CHECK(strstr(t, "+OK Maildrop has 2 messages (6 octets)\r\n") != NULL);
	CHECK(strstr(t, "-ERR Message 2 already deleted\r\n") != NULL);
	CHECK_INT(count(md, "new"), 1);
	CHECK_INT(report.end, SESSION_END_QUIT);
	CHECK_INT(report.dele, 1);
	CHECK_INT(report.dele_bytes, 3);
}

static void test_bad_input(void)
{
	char md[300], longline[600];
	const char *t;

	snprintf(md, sizeof(md), "%s/bad", root);
	mkmaildir(md);
	memset(longline, 'A', 400);
	memcpy(longline + 400, "\r\nNOOP\r\n", 9);
	t = run(md, NULL, longline);
	CHECK(strstr(t, "-ERR Line too long\r\n+OK\r\n") != NULL);
	{
		static const char in[] = "NO\0OP\r\nNOOP\r\nRETR 1\r\nRETR x\r\nTOP 1\r\n"
					 "LIST 1 2\r\nUSER a\r\nSTAT 1\r\n";
		t = run_n(md, NULL, in, sizeof(in) - 1);
	}
	CHECK(strstr(t, "-ERR NUL byte in command\r\n+OK\r\n-ERR No such message\r\n"
		     "-ERR No such message\r\n-ERR Syntax: TOP msg lines\r\n"
		     "-ERR Syntax: LIST [msg] or UIDL [msg]\r\n-ERR Already logged in\r\n"
		     "-ERR Syntax: STAT\r\n") != NULL);
	/* 10 bad commands close the session */
	t = run(md, NULL, "X\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nX\r\nNOOP\r\n");
	CHECK(strstr(t, "-ERR Too many bad commands, closing\r\n") != NULL);
	CHECK(strstr(t, "+OK\r\n") == NULL);
}

static void test_in_use_and_missing(void)
{
	char md[300], lock[400];
	const char *t;
	int fd;

	snprintf(md, sizeof(md), "%s/inuse", root);
	mkmaildir(md);
	snprintf(lock, sizeof(lock), "%s/pop3d-lock", md);
	fd = open(lock, O_RDWR | O_CREAT, 0600);
	CHECK(fd != -1 && flock(fd, LOCK_EX) == 0);
	t = run(md, NULL, "STAT\r\n");
	CHECK(strncmp(t, "-ERR [IN-USE] ", 14) == 0);
	close(fd);
	t = run(md, NULL, "STAT\r\nQUIT\r\n");
	CHECK(strncmp(t, "+OK Logged in", 13) == 0);
	snprintf(md, sizeof(md), "%s/nonexistent", root);
	t = run(md, NULL, "STAT\r\n");
	CHECK(strncmp(t, "-ERR [SYS/PERM] ", 16) == 0);
}

/* RFC 1939: TOP takes any non-negative number of lines; one past 32 or
 * 64 bits is "all of them", not a syntax error. */
static void test_top_huge(void)
{
	static const char whole[] = "+OK 16 octets\r\nH: 1\r\n\r\nb1\r\nb2\r\n.\r\n";
	char md[300], want[400];
	const char *t;

	snprintf(md, sizeof(md), "%s/tophuge", root);
	mkmaildir(md);
	put(md, "new/1.a", "H: 1\n\nb1\nb2\n", 1);
	t = run(md, NULL, "TOP 1 2147483648\r\nTOP 1 4294967296\r\n"
		"TOP 1 18446744073709551616\r\nTOP 1 99999999999999999999999999999\r\n"
		"TOP 1 1\r\nTOP 1 -1\r\nTOP 1 +1\r\nTOP 1 1x\r\nQUIT\r\n");
	snprintf(want, sizeof(want), "+OK Logged in, 1 messages (16 octets)\r\n%s%s%s%s"
		 "+OK 16 octets\r\nH: 1\r\n\r\nb1\r\n.\r\n"
		 "-ERR Syntax: TOP msg lines\r\n-ERR Syntax: TOP msg lines\r\n"
		 "-ERR Syntax: TOP msg lines\r\n+OK Logging out\r\n",
		 whole, whole, whole, whole);
	CHECK_STR(t, want);
	CHECK_INT(count(md, "new"), 1);		/* TOP does not mark it seen */
}

static void test_capa_after_login(void)
{
	char md[300];
	const char *t;

	snprintf(md, sizeof(md), "%s/capa", root);
	mkmaildir(md);
	t = run(md, NULL, "CAPA\r\nQUIT\r\n");
	CHECK(strstr(t, "\r\nTOP\r\n") != NULL);
	CHECK(strstr(t, "SASL") == NULL);
	CHECK(strstr(t, "USER") == NULL);
}

int main(void)
{
	char tmpl[] = "/tmp/test-session.XXXXXX", cmd[300];

	log_init("test-session", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	if (mkdtemp(tmpl) == NULL)
		return 2;
	snprintf(root, sizeof(root), "%s", tmpl);
	conf.pop3d.session_timeout_ms = 5000;
	conf.pop3d.max_bad_commands = 10;
	conf.pop3d.expire_days = CONFIG_EXPIRE_NEVER;
	conf.pop3d.user_command = true;
	UNIT_RUN(test_pipelined_handoff_bytes);
	UNIT_RUN(test_dele_quit_vs_disconnect);
	UNIT_RUN(test_bad_input);
	UNIT_RUN(test_in_use_and_missing);
	UNIT_RUN(test_capa_after_login);
	UNIT_RUN(test_top_huge);
	UNIT_RUN(test_retr_vanished_after_pipelined_output);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup failed\n");
	return unit_finish();
}
