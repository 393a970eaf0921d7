/*
 * ipc.c - messages between pop3d's processes, and every decoder of bytes
 * one of them reads from a less-trusted one.
 *
 * Linked into all three processes.  The master runs it as root on what
 * front ends write (ipc_recv) and what sessions write, as mailbox owners:
 * their reports (ipc_report_recv) and SESSION_SPARE (ipc_spare_recv).
 * Front ends run ipc_recv on the master's messages (IPC_NEWCONN,
 * IPC_RETIRE, IPC_TICKET_KEYS), as login-user in login-chroot; a type
 * that is not for the reader is ignored by it.  A session decodes the
 * logins the master hands it (session_job_recv) and sends SESSION_SPARE.
 * Every length and string is checked here, trailing bytes and unexpected
 * descriptors refused, before anyone looks at a message; pop3d/fuzz-ipc.c
 * drives every decoder.
 *
 * A SOCK_SEQPACKET socketpair keeps message boundaries, so one recvmsg is
 * one message and its descriptor.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "common/sock.h"
#include "pop3d/pop3d.h"

int ipc_send(int sock, const struct ipc_msg *m, int fd)
{
	/* The socket is non-blocking for the event loop's reads; a full
	 * send buffer (a busy peer) is waited out, but not for ever. */
	for (int tries = 0; tries < 50; tries++) {
		struct pollfd pfd = { .fd = sock, .events = POLLOUT };

		if (sock_send_fd(sock, fd, m, IPC_HEADER_LEN + m->data_len) == 0)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
			return -1;
		if (poll(&pfd, 1, 100) == -1 && errno != EINTR)
			return -1;
	}
	errno = ETIMEDOUT;
	return -1;
}

static bool terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

static bool ticket_ok(const char *t)
{
	if (strlen(t) != IPC_TICKET_LEN)
		return false;
	return strspn(t, "0123456789abcdefABCDEF") == IPC_TICKET_LEN;
}

/* "TLSv1.3/TLS_AES_256_GCM_SHA384": one printable token, logged as is. */
static bool tls_info_ok(const char *s)
{
	return s[0] != '\0' &&
	       strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-") ==
	       strlen(s);
}

/* IPC_TICKET_KEYS: has_prev 0 or 1, the padding zero, and two keys that
 * a ticket's name tells apart.  The key bytes themselves are random: any
 * value will do. */
static bool ticket_keys_ok(const struct ipc_msg *m)
{
	struct tls_ticket_keys k;
	bool ok;

	memcpy(&k, m->data, sizeof(k));		/* data has no alignment */
	ok = k.has_prev <= 1 && memcmp(k.zero, (const uint8_t[sizeof(k.zero)]){ 0 },
					 sizeof(k.zero)) == 0 &&
	     (!k.has_prev || memcmp(k.cur.name, k.prev.name, sizeof(k.cur.name)) != 0);
	sodium_memzero(&k, sizeof(k));
	return ok;
}

int ipc_recv(int sock, struct ipc_msg *m, int *fd_r)
{
	ssize_t n;
	int fd;

	n = sock_recv_fd(sock, m, sizeof(*m), &fd);
	*fd_r = -1;
	if (n <= 0)
		return (int)n;
	if ((size_t)n < IPC_HEADER_LEN)
		goto bad;
	switch (m->type) {
	case IPC_NEWCONN:
		if (fd == -1 || m->data_len != 0 || (size_t)n != IPC_HEADER_LEN ||
		    m->tls_port > 1 || m->secured != 0)
			goto bad;
		break;
	case IPC_CLOSED:
	case IPC_RETIRE:
		if (fd != -1 || m->data_len != 0 || (size_t)n != IPC_HEADER_LEN)
			goto bad;
		break;
	case IPC_STATS:
		/* the counters themselves are only counts: any value will do */
		if (fd != -1 || m->data_len != sizeof(struct fe_stats) ||
		    (size_t)n != IPC_HEADER_LEN + m->data_len)
			goto bad;
		break;
	case IPC_TICKET_KEYS:
		if (fd != -1 || m->data_len != sizeof(struct tls_ticket_keys) ||
		    (size_t)n != IPC_HEADER_LEN + m->data_len || !ticket_keys_ok(m) ||
		    m->conn_id != 0 || m->secured != 0 || m->tls_port != 0)
			goto bad;
		break;
	case IPC_HANDOFF:
		if (fd == -1 || m->data_len > POP3D_HANDOFF_MAX_DATA ||
		    (size_t)n != IPC_HEADER_LEN + m->data_len ||
		    !terminated(m->method, sizeof(m->method)) ||
		    !terminated(m->ticket, sizeof(m->ticket)) || !ticket_ok(m->ticket) ||
		    (strcmp(m->method, "USER") != 0 && strcmp(m->method, "PLAIN") != 0) ||
		    m->secured > 1 || m->tls_port != 0 ||
		    !terminated(m->tls_info, sizeof(m->tls_info)) ||
		    (m->secured ? !tls_info_ok(m->tls_info) : m->tls_info[0] != '\0'))
			goto bad;
		break;
	default:
		goto bad;
	}
	*fd_r = fd;
	return 1;
bad:
	if (fd != -1)
		close(fd);
	errno = EPROTO;
	return -1;
}

int session_job_send(int sock, const struct session_job *j, int fd)
{
	return sock_send_fd(sock, fd, j, SESSION_JOB_HEADER_LEN + j->data_len);
}

int ipc_spare_send(int sock)
{
	uint32_t spare = SESSION_SPARE;

	if (send(sock, &spare, sizeof(spare), MSG_NOSIGNAL) != (ssize_t)sizeof(spare))
		return -1;
	return 0;
}

bool ipc_spare_decode(const uint8_t *buf, size_t len)
{
	uint32_t msg;

	if (len != sizeof(msg))
		return false;
	memcpy(&msg, buf, sizeof(msg));
	return msg == SESSION_SPARE;
}

/* A session process wrote it, as the mailbox owner: one word, no more
 * (read into a larger buffer so that trailing bytes show), and no
 * descriptor. */
int ipc_spare_recv(int sock)
{
	uint8_t buf[sizeof(uint32_t) + 1];
	ssize_t n;
	int fd;

	n = sock_recv_fd(sock, buf, sizeof(buf), &fd);
	if (fd != -1)
		close(fd);
	if (n <= 0)
		return (int)n;
	if (fd != -1 || !ipc_spare_decode(buf, (size_t)n)) {
		errno = EPROTO;
		return -1;
	}
	return 1;
}

int ipc_report_decode(const uint8_t *buf, size_t len, struct session_report *r_r)
{
	struct session_report r;

	if (len != sizeof(r))
		return -1;
	memcpy(&r, buf, sizeof(r));		/* buf has no alignment */
	if (r.end >= SESSION_END_COUNT)
		return -1;
	switch (r.kind) {
	case SESSION_REPORT_END:
		break;
	case SESSION_REPORT_OPENED: {
		/* a word, not counts: everything but its kind is zero */
		static const struct session_report zero = { .kind = SESSION_REPORT_OPENED };
		if (memcmp(&r, &zero, sizeof(r)) != 0)
			return -1;
		break;
	}
	default:
		return -1;
	}
	*r_r = r;
	return 0;
}

/* The report socket is shared by every session (each a mailbox owner):
 * the sender is who the kernel says it is (SCM_CREDENTIALS, with
 * SO_PASSCRED on sock), never what the bytes say. */
int ipc_report_recv(int sock, struct session_report *r_r, pid_t *pid_r)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(4 * sizeof(int))];
	} cm;
	uint8_t buf[sizeof(struct session_report) + 1];
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
			     .msg_controllen = sizeof(cm.buf) };
	bool cred = false, fds = false;
	struct ucred uc;
	ssize_t n;

	n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return (int)n;	/* -1 with EAGAIN: all read */
	for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h != NULL; h = CMSG_NXTHDR(&mh, h)) {
		if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_CREDENTIALS &&
		    h->cmsg_len == CMSG_LEN(sizeof(uc))) {
			memcpy(&uc, CMSG_DATA(h), sizeof(uc));
			cred = true;
		} else if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS &&
			   h->cmsg_len >= CMSG_LEN(0)) {
			/* a session sends no descriptor: close them, and
			 * the message is not a report */
			size_t nfd = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t k = 0; k < nfd; k++) {
				int fd;
				memcpy(&fd, CMSG_DATA(h) + k * sizeof(int), sizeof(fd));
				close(fd);
			}
			fds = true;
		}
	}
	if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || !cred || fds ||
	    ipc_report_decode(buf, (size_t)n, r_r) == -1) {
		errno = EPROTO;
		return -1;
	}
	*pid_r = uc.pid;
	return 1;
}

/* The master is the sender, but a session checks what it is given all the
 * same: it is about to act on it as a mailbox owner. */
int session_job_recv(int sock, struct session_job *j, int *fd_r)
{
	ssize_t n;
	int fd;

	n = sock_recv_fd(sock, j, sizeof(*j), &fd);
	*fd_r = -1;
	if (n <= 0)
		return (int)n;
	if ((size_t)n < SESSION_JOB_HEADER_LEN || fd == -1 ||
	    j->data_len > POP3D_HANDOFF_MAX_DATA ||
	    (size_t)n != SESSION_JOB_HEADER_LEN + j->data_len || j->secured > 1 ||
	    !terminated(j->method, sizeof(j->method)) ||
	    (strcmp(j->method, "USER") != 0 && strcmp(j->method, "PLAIN") != 0) ||
	    !terminated(j->user, sizeof(j->user)) || j->user[0] == '\0' ||
	    !terminated(j->home, sizeof(j->home)) ||
	    !terminated(j->maildrop, sizeof(j->maildrop)) ||
	    !terminated(j->rip, sizeof(j->rip)) ||
	    !terminated(j->tls_info, sizeof(j->tls_info)) ||
	    (j->secured ? !tls_info_ok(j->tls_info) : j->tls_info[0] != '\0')) {
		if (fd != -1)
			close(fd);
		errno = EPROTO;
		return -1;
	}
	*fd_r = fd;
	return 1;
}
