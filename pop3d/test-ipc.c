/*
 * test-ipc.c - ipc.c alone: the master's decoders of what session
 * processes write (reports, SESSION_SPARE).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

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
	r.kind = 2;
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

int main(void)
{
	log_init("test-ipc", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	UNIT_RUN(test_report_decode);
	UNIT_RUN(test_report_recv);
	UNIT_RUN(test_spare);
	return unit_finish();
}
