/*
 * ipc.c - messages between the master and its front ends, and the logins
 * it hands to session processes that serve again.
 *
 * A SOCK_SEQPACKET socketpair keeps message boundaries, so one recvmsg is
 * one message and its descriptor.  The master runs this decoder as root on
 * bytes an (untrusted) front end wrote: every length and string is checked
 * here before anyone looks at the message.  Front ends run it too, on the
 * master's messages (IPC_NEWCONN, IPC_RETIRE, IPC_TICKET_KEYS); a type
 * that is not for the reader is ignored by it.
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
