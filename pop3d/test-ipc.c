/*
 * test-ipc.c - ipc.c alone: the master's decoders of what session
 * processes write (reports, SESSION_SPARE), and the channels' output
 * queues (a peer that does not read never stalls the sender's loop).
 */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/log.h"
#include "common/sock.h"
#include "pop3d/pop3d.h"
#include "tests/unit.h"

static void test_report_decode(void)
{
	struct session_report r, out;
	uint8_t buf[sizeof(r) + 1];

	memset(&r, 0, sizeof(r));
	r.kind = SESSION_REPORT_END;
	r.end = SESSION_END_QUIT;
	r.retr = 3;
	r.commands[CMD_RETR] = 3;
	memcpy(buf, &r, sizeof(r));
	memset(&out, 0xff, sizeof(out));
	CHECK_INT(ipc_report_decode(buf, sizeof(r), &out), 0);
	CHECK(memcmp(&out, &r, sizeof(r)) == 0);
	/* every length but the one */
	CHECK_INT(ipc_report_decode(buf, sizeof(r) - 1, &out), -1);
	CHECK_INT(ipc_report_decode(buf, sizeof(r) + 1, &out), -1);	/* trailing byte */
	CHECK_INT(ipc_report_decode(buf, 0, &out), -1);
	/* end and kind out of range */
	r.end = SESSION_END_COUNT;
	memcpy(buf, &r, sizeof(r));
	CHECK_INT(ipc_report_decode(buf, sizeof(r), &out), -1);
	r.end = SESSION_END_QUIT;
	r.kind = 3;
	memcpy(buf, &r, sizeof(r));
	CHECK_INT(ipc_report_decode(buf, sizeof(r), &out), -1);
	/* OPENED is a word: counts with it are not a report */
	r.kind = SESSION_REPORT_OPENED;
	memcpy(buf, &r, sizeof(r));
	CHECK_INT(ipc_report_decode(buf, sizeof(r), &out), -1);
	memset(&r, 0, sizeof(r));
	r.kind = SESSION_REPORT_OPENED;
	memcpy(buf, &r, sizeof(r));
	CHECK_INT(ipc_report_decode(buf, sizeof(r), &out), 0);
	CHECK_INT(out.kind, SESSION_REPORT_OPENED);
	/* ... and so is OPENED_WARM (a kept listing served) */
	r.kind = SESSION_REPORT_OPENED_WARM;
	memcpy(buf, &r, sizeof(r));
	CHECK_INT(ipc_report_decode(buf, sizeof(r), &out), 0);
	CHECK_INT(out.kind, SESSION_REPORT_OPENED_WARM);
	r.retr = 1;
	memcpy(buf, &r, sizeof(r));
	CHECK_INT(ipc_report_decode(buf, sizeof(r), &out), -1);
}

/* Over a real socket: the kernel names the sender; no credentials, a
 * descriptor or a longer datagram is refused, and the descriptor closed. */
static void test_report_recv(void)
{
	struct session_report r, out;
	int sv[2], on = 1, devnull;
	uint8_t big[sizeof(r) + 8];
	struct stat st;
	pid_t pid = 0;

	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	memset(&r, 0, sizeof(r));
	r.end = SESSION_END_DISCONNECT;
	/* SO_PASSCRED not set yet: no credentials */
	CHECK(send(sv[1], &r, sizeof(r), 0) == (ssize_t)sizeof(r));
	errno = 0;
	CHECK_INT(ipc_report_recv(sv[0], &out, &pid), -1);
	CHECK_INT(errno, EPROTO);
	CHECK(setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == 0);
	CHECK(send(sv[1], &r, sizeof(r), 0) == (ssize_t)sizeof(r));
	CHECK_INT(ipc_report_recv(sv[0], &out, &pid), 1);
	CHECK_INT(pid, getpid());
	CHECK_INT(out.end, SESSION_END_DISCONNECT);
	memset(big, 0, sizeof(big));
	CHECK(send(sv[1], big, sizeof(big), 0) == (ssize_t)sizeof(big));
	errno = 0;
	CHECK_INT(ipc_report_recv(sv[0], &out, &pid), -1);
	CHECK_INT(errno, EPROTO);
	/* a report with a descriptor: dropped, the descriptor not kept */
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHECK(devnull != -1);
	CHECK(sock_send_fd(sv[1], devnull, &r, sizeof(r)) == 0);
	close(devnull);		/* the next open would reuse the number of a leak */
	errno = 0;
	CHECK_INT(ipc_report_recv(sv[0], &out, &pid), -1);
	CHECK_INT(errno, EPROTO);
	CHECK(fstat(devnull, &st) == -1);
	errno = 0;
	CHECK(ipc_report_recv(sv[0], &out, &pid) == -1 && errno == EAGAIN);
	close(sv[0]);
	close(sv[1]);
}

static void test_spare(void)
{
	uint32_t w = SESSION_SPARE;
	uint8_t buf[8];
	int sv[2], devnull;

	memcpy(buf, &w, sizeof(w));
	CHECK(ipc_spare_decode(buf, sizeof(w)));
	CHECK(!ipc_spare_decode(buf, sizeof(w) - 1));
	CHECK(!ipc_spare_decode(buf, sizeof(w) + 1));	/* trailing byte */
	buf[0] ^= 1;
	CHECK(!ipc_spare_decode(buf, sizeof(w)));

	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	sock_set_nonblock(sv[0], true);
	errno = 0;
	CHECK(ipc_spare_recv(sv[0]) == -1 && errno == EAGAIN);
	CHECK_INT(ipc_spare_send(sv[1]), 0);
	CHECK_INT(ipc_spare_recv(sv[0]), 1);
	/* the word and more: the old 4-byte read took this for SESSION_SPARE */
	memcpy(buf, &w, sizeof(w));
	memset(buf + sizeof(w), 'x', sizeof(buf) - sizeof(w));
	CHECK(send(sv[1], buf, sizeof(buf), 0) == (ssize_t)sizeof(buf));
	errno = 0;
	CHECK_INT(ipc_spare_recv(sv[0]), -1);
	CHECK_INT(errno, EPROTO);
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHECK(sock_send_fd(sv[1], devnull, &w, sizeof(w)) == 0);
	close(devnull);
	errno = 0;
	CHECK_INT(ipc_spare_recv(sv[0]), -1);
	CHECK_INT(errno, EPROTO);
	close(sv[1]);
	CHECK_INT(ipc_spare_recv(sv[0]), 0);
	close(sv[0]);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(*(int *)arg)++;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A channel whose peer does not read: sends never wait (the old ipc_send
 * polled up to 5 s per message), the queue holds exactly its bound and
 * then refuses with ENOBUFS, the loop keeps running; once the peer reads,
 * the queue goes out in order, a queued descriptor arriving open although
 * the sender closed its own at once. */
static void test_chan_full(void)
{
	struct event_base *base = event_base_new();
	struct ipc_chan *ch;
	struct event *tick;
	struct ipc_msg m, r;
	int sv[2], pfd[2], sndbuf = 4096, ticks = 0, fd, got;
	uint64_t sent = 0, next = 0, fd_msg = UINT64_MAX;
	struct timeval zero = { 0, 0 };
	double t0;
	char c;

	CHECK(base != NULL);
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == 0);
	sock_set_nonblock(sv[0], true);
	sock_set_nonblock(sv[1], true);
	CHECK(pipe(pfd) == 0);
	ch = ipc_chan_new(base, sv[0], 8);
	memset(&m, 0, sizeof(m));
	m.type = IPC_STATS;
	m.data_len = sizeof(struct fe_stats);
	t0 = now_s();
	/* fill the socket, then the queue; one queued message carries an fd */
	for (int i = 0; i < 100000; i++) {
		int rc, xfd = -1;

		if (ipc_chan_queued(ch) == 3 && fd_msg == UINT64_MAX) {
			m.type = IPC_NEWCONN;
			m.data_len = 0;
			xfd = fcntl(pfd[0], F_DUPFD_CLOEXEC, 0);
			fd_msg = sent;
		}
		m.conn_id = sent;
		rc = ipc_chan_send(ch, &m, xfd);
		if (xfd != -1)
			close(xfd);	/* ours; the queue keeps its own */
		m.type = IPC_STATS;
		m.data_len = sizeof(struct fe_stats);
		if (rc == -1) {
			CHECK_INT(errno, ENOBUFS);
			break;
		}
		sent++;
	}
	CHECK(now_s() - t0 < 2.0);
	CHECK_INT(ipc_chan_queued(ch), 8);
	CHECK(fd_msg != UINT64_MAX);
	/* full is not yet wedged: that takes a queue that does not move */
	CHECK(!ipc_chan_stalled(ch, 60000));
	CHECK(ipc_chan_stalled(ch, 0));
	/* the loop runs while the channel is full */
	tick = evtimer_new(base, on_tick, &ticks);
	evtimer_add(tick, &zero);
	t0 = now_s();
	CHECK_INT(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
	CHECK_INT(ticks, 1);
	CHECK(now_s() - t0 < 2.0);
	CHECK_INT(ipc_chan_queued(ch), 8);
	/* the peer reads: everything arrives, in order */
	for (int i = 0; i < 100000 && next < sent; i++) {
		got = ipc_recv(sv[1], &r, &fd);
		if (got == -1 && errno == EAGAIN) {
			event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
			continue;
		}
		CHECK_INT(got, 1);
		if (got != 1)
			break;
		CHECK(r.conn_id == next);
		if (next == fd_msg) {
			CHECK(r.type == IPC_NEWCONN && fd != -1);
			/* the pipe it names is still open */
			CHECK(write(pfd[1], "x", 1) == 1);
			CHECK(read(fd, &c, 1) == 1 && c == 'x');
			close(fd);
		} else {
			CHECK(r.type == IPC_STATS && fd == -1);
		}
		next++;
	}
	CHECK(next == sent);
	CHECK_INT(ipc_chan_queued(ch), 0);
	CHECK(!ipc_chan_stalled(ch, 0));
	/* room again */
	m.conn_id = sent;
	CHECK_INT(ipc_chan_send(ch, &m, -1), 0);
	CHECK_INT(ipc_recv(sv[1], &r, &fd), 1);
	CHECK(r.conn_id == sent);
	/* a peer gone: the channel says so instead of queueing for ever */
	close(sv[1]);
	CHECK_INT(ipc_chan_send(ch, &m, -1), -1);
	CHECK(errno != ENOBUFS);
	event_free(tick);
	ipc_chan_free(&ch);
	event_base_free(base);
	close(sv[0]);
	close(pfd[0]);
	close(pfd[1]);
}

/* IPC_HANDOFF's language field (issue 21): "" or a language tag,
 * terminated; anything else refuses the whole message, descriptor closed. */
static void test_handoff_lang(void)
{
	static const struct {
		const char *lang;
		bool ok;
	} cases[] = {
		{ "", true }, { "pl", true }, { "pt-BR", true }, { "de-1996", true },
		{ "x y", false }, { "pl\r\n", false }, { "-pl", false }, { "pl-", false },
		{ "1pl", false }, { "abcdefghi", false }, { "p%s", false }, { "*", false },
	};
	static struct ipc_msg m, r;
	int sv[2], devnull, fd;
	struct stat st;

	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&m, 0, sizeof(m));
		m.type = IPC_HANDOFF;
		m.conn_id = 1;
		snprintf(m.method, sizeof(m.method), "USER");
		memset(m.ticket, 'a', IPC_TICKET_LEN);
		snprintf(m.lang, sizeof(m.lang), "%s", cases[i].lang);
		devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
		CHECK(devnull != -1);
		CHECK(sock_send_fd(sv[1], devnull, &m, IPC_HEADER_LEN) == 0);
		close(devnull);
		fd = -1;
		if (cases[i].ok) {
			CHECK_INT(ipc_recv(sv[0], &r, &fd), 1);
			CHECK_STR(r.lang, cases[i].lang);
			CHECK(fd != -1);
			if (fd != -1)
				close(fd);
		} else {
			errno = 0;
			CHECK_INT(ipc_recv(sv[0], &r, &fd), -1);
			CHECK_INT(errno, EPROTO);
			CHECK(fstat(devnull, &st) == -1);	/* not leaked */
		}
	}
	/* not terminated */
	memset(m.lang, 'a', sizeof(m.lang));
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHECK(sock_send_fd(sv[1], devnull, &m, IPC_HEADER_LEN) == 0);
	close(devnull);
	CHECK_INT(ipc_recv(sv[0], &r, &fd), -1);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	log_init("test-ipc", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	UNIT_RUN(test_report_decode);
	UNIT_RUN(test_report_recv);
	UNIT_RUN(test_spare);
	UNIT_RUN(test_chan_full);
	UNIT_RUN(test_handoff_lang);
	return unit_finish();
}
