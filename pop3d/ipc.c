/*
 * ipc.c - messages between pop3d's processes, and every decoder of bytes
 * one of them reads from a less-trusted one.
 *
 * Linked into all three processes.  The master runs it as root on what
 * front ends write (ipc_recv) and what sessions write, as mailbox owners:
 * their reports (ipc_report_recv) and SESSION_SPARE (ipc_spare_recv).
 * Front ends run ipc_recv on the master's messages (IPC_NEWCONN,
 * IPC_RETIRE, IPC_TICKET_KEYS, IPC_PROXY_VERDICT), as login-user in
 * login-chroot; a type
 * that is not for the reader is ignored by it.  A session decodes the
 * logins the master hands it (session_job_recv) and sends SESSION_SPARE.
 * Every length and string is checked here, trailing bytes and unexpected
 * descriptors refused, before anyone looks at a message; pop3d/fuzz-ipc.c
 * drives every decoder.
 *
 * A SOCK_SEQPACKET socketpair keeps message boundaries, so one recvmsg is
 * one message and its descriptor.
 *
 * Output queues (struct ipc_chan).  The master and the front ends send to
 * each other from their event loops, which must never wait for a busy
 * peer.  A message goes straight to the socket when nothing is queued and
 * the socket takes it; otherwise it joins the channel's queue (so the
 * order per channel is kept), and an EV_WRITE event sends the queue as
 * room appears.  A queued descriptor is a dup, closed once sent: the
 * caller closes its own at once either way.  Queued bytes are wiped when
 * freed (ticket keys, pipelined client bytes).  The queue holds at most
 * POP3D_IPC_MAX_QUEUED messages, on top of what the kernel buffers; a
 * peer that far behind is wedged, and when the queue is full the send
 * fails with ENOBUFS and the sender applies its policy:
 *   master -> front end: the connection being passed is refused with the
 *     existing path ([SYS/TEMP], REFUSE_INTERNAL), and new connections go
 *     to front ends whose queue has room.  A busy front end catches up
 *     and keeps its clients; one whose queue has not moved for
 *     POP3D_IPC_STALL_MS (ipc_chan_stalled: the 5 s a blocking send used
 *     to wait) is wedged and replaced (master.c's fe_stalled).  A RETIRE
 *     or the ticket keys it cannot take get it stopped (SIGTERM).
 *   front end -> master: a handoff that cannot be queued closes the client
 *     with [SYS/TEMP]; a counter snapshot is sent again at the next tick;
 *     a RETIRE request that cannot be queued ends the front end.
 * Blocking writes remain only where no event loop runs: a session
 * process's SESSION_SPARE (ipc_spare_send) and its report
 * (session_proc.c), and a retired front end's last counters just before
 * it exits (ipc_chan_flush_wait, bounded).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/sock.h"
#include "pop3d/pop3d.h"

/* ---- output queues --------------------------------------------------------------------- */

/* One message waiting for room in its channel, with its own copy of the
 * descriptor (closed once sent, or when the queue is dropped). */
struct ipc_out {
	TAILQ_ENTRY(ipc_out) entry;
	int fd;				/* a dup, or -1 */
	size_t len;
	uint8_t msg[];			/* header plus data */
};

struct ipc_chan {
	int sock;
	struct event *wev;		/* EV_WRITE, pending while out is not empty */
	TAILQ_HEAD(, ipc_out) out;
	unsigned nout, max;
	int error;			/* errno that broke the channel, or 0 */
	uint64_t moved_ms;		/* while out is not empty: when it was last
					 * queued from empty or last sent from */
	LIST_ENTRY(ipc_chan) all;
};

/* Every channel of this process, so that a forked child can drop what
 * the parent had queued (ipc_chan_forget_all). */
static LIST_HEAD(, ipc_chan) chans = LIST_HEAD_INITIALIZER(chans);

static void out_free(struct ipc_out *o)
{
	if (o->fd != -1)
		close(o->fd);
	sodium_memzero(o->msg, o->len);		/* ticket keys, client bytes */
	free(o);
}

static void chan_drop_queue(struct ipc_chan *ch)
{
	struct ipc_out *o;

	while ((o = TAILQ_FIRST(&ch->out)) != NULL) {
		TAILQ_REMOVE(&ch->out, o, entry);
		out_free(o);
	}
	ch->nout = 0;
}

static bool would_block(int err)
{
	return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS;
}

/* Sends from the head of the queue while the socket takes it.  Returns 0
 * (all sent, or the socket is full: EV_WRITE stays armed) or -1 (broken:
 * the queue is dropped). */
static int chan_flush(struct ipc_chan *ch)
{
	struct ipc_out *o;

	while ((o = TAILQ_FIRST(&ch->out)) != NULL) {
		if (sock_send_fd(ch->sock, o->fd, o->msg, o->len) == -1) {
			if (would_block(errno))
				return 0;
			ch->error = errno;
			chan_drop_queue(ch);
			event_del(ch->wev);
			return -1;
		}
		TAILQ_REMOVE(&ch->out, o, entry);
		ch->nout--;
		out_free(o);
		ch->moved_ms = mtime_ms();
	}
	event_del(ch->wev);
	return 0;
}

static void on_chan_writable(evutil_socket_t fd, short what, void *arg)
{
	struct ipc_chan *ch = arg;

	if (chan_flush(ch) == -1)
		log_debug("ipc: channel broken, %s", strerror(ch->error));
}

struct ipc_chan *ipc_chan_new(struct event_base *base, int sock, unsigned max)
{
	struct ipc_chan *ch = xcalloc(1, sizeof(*ch));

	ch->sock = sock;
	ch->max = max;
	TAILQ_INIT(&ch->out);
	ch->wev = event_new(base, sock, EV_WRITE | EV_PERSIST, on_chan_writable, ch);
	if (ch->wev == NULL)
		fatalx("event_new");
	LIST_INSERT_HEAD(&chans, ch, all);
	return ch;
}

void ipc_chan_free(struct ipc_chan **chp)
{
	struct ipc_chan *ch = *chp;

	if (ch == NULL)
		return;
	chan_drop_queue(ch);
	event_free(ch->wev);
	LIST_REMOVE(ch, all);
	free(ch);
	*chp = NULL;
}

void ipc_chan_forget_all(void)
{
	struct ipc_chan *ch;

	/* the child has no use for the parent's events: drop the queues
	 * only (the events belong to a base the child does not run) */
	LIST_FOREACH(ch, &chans, all)
		chan_drop_queue(ch);
}

unsigned ipc_chan_queued(const struct ipc_chan *ch)
{
	return ch->nout;
}

int ipc_chan_send(struct ipc_chan *ch, const struct ipc_msg *m, int fd)
{
	size_t len = IPC_HEADER_LEN + m->data_len;
	struct ipc_out *o;

	if (ch->error != 0) {
		errno = ch->error;
		return -1;
	}
	/* Nothing queued: straight to the socket, if it takes it.  Else
	 * behind the queue, so that the channel keeps its order. */
	if (TAILQ_EMPTY(&ch->out)) {
		if (sock_send_fd(ch->sock, fd, m, len) == 0)
			return 0;
		if (!would_block(errno)) {
			ch->error = errno;
			return -1;
		}
	}
	if (ch->nout >= ch->max) {
		errno = ENOBUFS;
		return -1;
	}
	o = xmalloc(sizeof(*o) + len);
	o->fd = -1;
	o->len = len;
	memcpy(o->msg, m, len);
	if (fd != -1 && (o->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1) {
		int e = errno;
		out_free(o);
		errno = e;
		return -1;
	}
	if (TAILQ_EMPTY(&ch->out))
		ch->moved_ms = mtime_ms();
	TAILQ_INSERT_TAIL(&ch->out, o, entry);
	ch->nout++;
	event_add(ch->wev, NULL);
	return 0;
}

bool ipc_chan_broken(const struct ipc_chan *ch)
{
	return ch->error != 0;
}

bool ipc_chan_stalled(const struct ipc_chan *ch, uint64_t after_ms)
{
	return ch->nout > 0 && mtime_ms() - ch->moved_ms >= after_ms;
}

int ipc_chan_flush_wait(struct ipc_chan *ch, int timeout_ms)
{
	uint64_t deadline = mtime_ms() + (uint64_t)timeout_ms;

	for (;;) {
		struct pollfd pfd = { .fd = ch->sock, .events = POLLOUT };
		uint64_t now;

		if (chan_flush(ch) == -1)
			return -1;
		if (TAILQ_EMPTY(&ch->out))
			return 0;
		now = mtime_ms();
		if (now >= deadline) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (poll(&pfd, 1, (int)(deadline - now)) == -1 && errno != EINTR)
			return -1;
	}
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

/* A language field (IPC_HANDOFF, a session job): "" (the default) or a
 * language tag, terminated; the receiver looks it up (lang_find), so a
 * tag it does not offer gives the default language, never a failure. */
static bool lang_field_ok(const char *s, size_t size)
{
	return terminated(s, size) && (s[0] == '\0' || lang_tag_valid(s));
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

/* IPC_PROXY_ADDR: a front end's word on a client's address, read by the
 * master: a known family, a port, and nothing in the bytes it does not
 * use (so that two encodings never name one address). */
static bool proxy_addr_ok(const struct ipc_msg *m)
{
	struct ipc_proxy_addr a;

	memcpy(&a, m->data, sizeof(a));		/* data has no alignment */
	if (a.port > 65535)
		return false;
	if (a.family == AF_INET6)
		return true;
	return a.family == AF_INET &&
	       memcmp(a.addr + 4, (const uint8_t[12]){ 0 }, 12) == 0;
}

int ipc_proxy_addr_set(struct ipc_proxy_addr *a, const struct sockaddr *sa)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;

		a->family = AF_INET;
		a->port = ntohs(sin->sin_port);
		memcpy(a->addr, &sin->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;

		a->family = AF_INET6;
		a->port = ntohs(sin6->sin6_port);
		memcpy(a->addr, &sin6->sin6_addr, 16);
		return 0;
	}
	return -1;
}

void ipc_proxy_addr_get(const struct ipc_proxy_addr *a, struct sockaddr_storage *ss_r)
{
	memset(ss_r, 0, sizeof(*ss_r));
	if (a->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss_r;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)a->port);
		memcpy(&sin->sin_addr, a->addr, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss_r;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)a->port);
		memcpy(&sin6->sin6_addr, a->addr, 16);
	}
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
		    m->tls_port > 1 || m->secured != 0 || m->proxy > 1)
			goto bad;
		break;
	case IPC_PROXY_ADDR:
		if (fd != -1 || m->data_len != sizeof(struct ipc_proxy_addr) ||
		    (size_t)n != IPC_HEADER_LEN + m->data_len || !proxy_addr_ok(m) ||
		    m->secured != 0 || m->tls_port != 0 || m->proxy != 0)
			goto bad;
		break;
	case IPC_PROXY_VERDICT: {
		struct ipc_proxy_verdict v;

		if (fd != -1 || m->data_len != sizeof(v) ||
		    (size_t)n != IPC_HEADER_LEN + m->data_len)
			goto bad;
		memcpy(&v, m->data, sizeof(v));
		if (v.verdict != IPC_PROXY_OK && v.verdict != IPC_PROXY_PER_IP)
			goto bad;
		break;
	}
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
		    (m->secured ? !tls_info_ok(m->tls_info) : m->tls_info[0] != '\0') ||
		    !lang_field_ok(m->lang, sizeof(m->lang)))
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
	case SESSION_REPORT_OPENED:
	case SESSION_REPORT_OPENED_WARM: {
		/* a word, not counts: everything but its kind is zero */
		struct session_report zero;

		memset(&zero, 0, sizeof(zero));
		zero.kind = r.kind;
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
	    (j->secured ? !tls_info_ok(j->tls_info) : j->tls_info[0] != '\0') ||
	    !lang_field_ok(j->lang, sizeof(j->lang))) {
		if (fd != -1)
			close(fd);
		errno = EPROTO;
		return -1;
	}
	*fd_r = fd;
	return 1;
}
