/*
 * confreader.c - the configuration reader: one small process that stays
 * root so that a reload can read a configuration file that [authd] user
 * may not (make install creates it root:root 0640; it can hold an LDAP
 * bind password, and the front ends' user must never read it).
 *
 * Processes and privileges:
 *   - confreader_start() runs in authd as root, just before the privilege
 *     drop (main.c), and forks the reader.
 *   - the reader (reader_main, below) stays root for authd's lifetime.  It
 *     holds nothing but its end of one socketpair (every other descriptor
 *     closed; no threads, no libevent), is non-dumpable, sits in a session
 *     of its own, and knows one path, fixed at start-up.  For each byte
 *     authd writes it reads that file and sends it back; it never takes a
 *     path, a size or anything else from authd.  It exits when authd's end
 *     closes (authd stopped or died).
 *   - confreader_load() and confreader_stop() run in authd's event-loop
 *     thread, unprivileged.  (Start-up reads the file itself, as root,
 *     with config_load().)
 *
 * Wire (SOCK_STREAM): authd writes one byte; the reader answers with a
 * struct reply (status: 0, an errno, or READ_NOT_REGULAR / READ_TOO_BIG;
 * len: the file's size, 0 unless status is 0) followed by len bytes, at
 * most AUTHD_CONF_MAX.  authd checks both before it trusts them, then
 * parses the bytes with config_load_buffer(): start-up and reload share
 * one parser.  Anything else from the reader (a short reply, a length too
 * large, no answer within AUTHD_CONF_READ_MS) gives the reader up: that
 * reload and later ones fail with a message saying to restart authd.
 *
 * The exchange blocks the event loop, as reading the file directly did
 * before: a local file of at most AUTHD_CONF_MAX bytes, bounded by
 * AUTHD_CONF_READ_MS.  An exception to "an event loop never blocks" that a
 * reload (an operator's act) is allowed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/privsep.h"
#include "common/proctitle.h"

#define READ_NOT_REGULAR (-1)
#define READ_TOO_BIG (-2)

struct reply {
	int32_t status;
	uint32_t len;
};

static int reader_fd = -1;	/* authd's end; -1: no reader */
static bool reader_lost;	/* it was started, then given up */
static char reader_why[128];	/* why, for the next reload's error */

/* ---- the reader (root) ---------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads path into buf (AUTHD_CONF_MAX + 1 bytes).  Returns the status of
 * the reply and sets *len_r. */
static int32_t read_config(const char *path, uint8_t *buf, size_t *len_r)
{
	struct stat st;
	size_t len = 0;
	int fd, err;

	*len_r = 0;
	/* O_NONBLOCK: a FIFO put in the file's place must not hang us. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1)
		return errno;
	if (fstat(fd, &st) == -1) {
		err = errno;
		close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return READ_NOT_REGULAR;
	}
	/* One byte more than allowed, to see a file that is too big even if
	 * it grows while we read. */
	while (len < AUTHD_CONF_MAX + 1) {
		ssize_t n = read(fd, buf + len, AUTHD_CONF_MAX + 1 - len);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			err = errno;
			close(fd);
			return err;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > AUTHD_CONF_MAX)
		return READ_TOO_BIG;
	*len_r = len;
	return 0;
}

static void __attribute__((noreturn)) reader_main(int fd, const char *path)
{
	uint8_t *buf, req;
	int nul;

	/* authd's reload signal, the terminal's and the log's are not ours;
	 * SIGTERM (systemd stopping the unit) is. */
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	(void)setsid();
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		_exit(1);
	privsep_close_fds(&fd, 1);
	/* It logs nothing, so it keeps nothing of authd's: not the log file
	 * (a rotated one would never be freed) or syslog, not the caller's
	 * terminal or pipe, not the directory authd was started from. */
	log_init("authd", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (nul == -1 || chdir("/") == -1 || dup2(nul, STDIN_FILENO) == -1 ||
	    dup2(nul, STDOUT_FILENO) == -1 || dup2(nul, STDERR_FILENO) == -1)
		_exit(1);
	if (nul > STDERR_FILENO)
		close(nul);
	proctitle_set("authd: configuration reader");
	buf = malloc(AUTHD_CONF_MAX + 1);
	if (buf == NULL)
		_exit(1);
	for (;;) {
		struct reply r = { 0 };
		size_t len;
		ssize_t n = read(fd, &req, 1);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(0);	/* authd is gone (or broke the socket) */
		r.status = read_config(path, buf, &len);
		r.len = (uint32_t)len;
		if (write_all(fd, &r, sizeof(r)) == -1 || write_all(fd, buf, len) == -1)
			_exit(0);
		/* The file may hold a bind password: all of what was read,
		 * also when it was too big or failed half-way. */
		sodium_memzero(buf, AUTHD_CONF_MAX + 1);
	}
}

/* ---- authd's side (unprivileged) ----------------------------------------- */

void confreader_start(const char *path)
{
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		fatal("confreader: socketpair");
	pid = fork();
	if (pid == -1)
		fatal("confreader: fork");
	if (pid == 0) {
		close(sv[0]);
		reader_main(sv[1], path);
	}
	close(sv[1]);
	reader_fd = sv[0];
	log_debug("confreader: reader pid %ld for %s", (long)pid, path);
}

/* Gives the reader up (it exits when it sees our end close). */
static void reader_give_up(const char *why)
{
	log_error("confreader: %s; giving up the configuration reader", why);
	snprintf(reader_why, sizeof(reader_why), "%s", why);
	close(reader_fd);
	reader_fd = -1;
	reader_lost = true;
}

/* Reads exactly len bytes within the deadline.  Returns 0, or -1 with
 * *why_r set. */
static int read_exact(void *buf, size_t len, uint64_t deadline, const char **why_r)
{
	uint8_t *p = buf;

	while (len > 0) {
		uint64_t now = mtime_ms();
		struct pollfd pfd = { .fd = reader_fd, .events = POLLIN };
		ssize_t n;
		int rc;

		if (now >= deadline) {
			*why_r = "the reader did not answer in time";
			return -1;
		}
		rc = poll(&pfd, 1, (int)(deadline - now));
		if (rc == -1 && errno == EINTR)
			continue;
		if (rc == -1) {
			*why_r = "poll failed";
			return -1;
		}
		if (rc == 0)
			continue;	/* the deadline check above ends it */
		n = read(reader_fd, p, len);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0) {
			*why_r = n == 0 ? "the reader exited" : "cannot read from the reader";
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

struct config *confreader_load(const char *path, char *error, size_t size)
{
	struct config *conf;
	struct reply r;
	const char *why;
	uint8_t *buf, req = 'R';
	uint64_t deadline;
	ssize_t n;

	if (reader_fd == -1 && !reader_lost)
		return config_load(path, error, size);	/* no drop: we read it */
	if (reader_fd == -1) {
		snprintf(error, size, "%s: cannot read the configuration: its root reader is "
			 "gone (%s); restart authd", path, reader_why);
		return NULL;
	}
	deadline = mtime_ms() + AUTHD_CONF_READ_MS;
	do
		n = send(reader_fd, &req, 1, MSG_NOSIGNAL);
	while (n == -1 && errno == EINTR);
	if (n != 1) {
		reader_give_up("the reader does not take requests");
		return confreader_load(path, error, size);
	}
	if (read_exact(&r, sizeof(r), deadline, &why) == -1) {
		reader_give_up(why);
		return confreader_load(path, error, size);
	}
	if (r.len > AUTHD_CONF_MAX || (r.status != 0 && r.len != 0)) {
		reader_give_up("the reader sent a bad length");
		return confreader_load(path, error, size);
	}
	if (r.status != 0) {
		if (r.status == READ_NOT_REGULAR)
			snprintf(error, size, "%s: cannot open: not a regular file", path);
		else if (r.status == READ_TOO_BIG)
			snprintf(error, size, "%s: larger than %u bytes", path,
				 (unsigned)AUTHD_CONF_MAX);
		else if (r.status > 0)
			snprintf(error, size, "%s: cannot open: %s", path, strerror(r.status));
		else
			snprintf(error, size, "%s: cannot read (reader status %ld)", path,
				 (long)r.status);
		return NULL;
	}
	buf = xmalloc(r.len > 0 ? r.len : 1);
	if (read_exact(buf, r.len, deadline, &why) == -1) {
		sodium_memzero(buf, r.len);
		free(buf);
		reader_give_up(why);
		return confreader_load(path, error, size);
	}
	conf = config_load_buffer(path, buf, r.len, error, size);
	sodium_memzero(buf, r.len);
	free(buf);
	return conf;
}

void confreader_stop(void)
{
	/* The reader exits when it sees EOF.  It is not waited for: a
	 * daemonised authd is not its parent, and a reader stuck on a hung
	 * file system must not hold up the shutdown; once authd exits, init
	 * reaps it. */
	if (reader_fd != -1)
		close(reader_fd);
	reader_fd = -1;
}
