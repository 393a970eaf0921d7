/*
 * redeem.c - the REDEEM listener on [authd] master-socket: the pop3d
 * master (a client of authd, not a master process of authd's) redeems
 * tickets here.  Runs on authd's event-loop thread, as [authd] user.
 *
 * Only root or authd's own uid may talk to it (the socket is 0600 too).
 * One request per line: REDEEM <id> ticket=<hex> pid=<front end pid>.
 *
 * The other way, for `authctl who` and `authctl kick` (client.c) and for
 * kicks that come from the cluster (l2.c): a master that says
 * sessions=yes in its VERSION line is asked WHO <serial> (it answers a
 * SESSION <serial> line per session, then END <serial> n=N) and KICK
 * <serial> user=U (KICKED <serial> n=N).  What a master answers is read
 * as untrusted: each field checked, at most MASTER_WHO_MAX sessions per
 * answer, an answer only to a question asked of that connection, and a
 * question gives up on masters that have not answered in
 * MASTER_ASK_TIMEOUT_MS.  docs/auth-protocol.md has the lines.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sodium.h>

#include "authd/authd.h"
#include "common/line.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/num.h"
#include "common/proto.h"
#include "common/sock.h"

#define MASTER_MAX_CONNS 64
#define MASTER_ASK_TIMEOUT_MS 2000
#define MASTER_WHO_MAX 100000

struct mconn {
	LIST_ENTRY(mconn) entry;
	struct bufferevent *bev;
	pid_t pid;			/* SO_PEERCRED at connect time */
	bool handshaked;
	bool sessions;			/* it answers WHO and KICK */
};

/* A WHO or KICK asked of every master that answers them. */
struct ask {
	LIST_ENTRY(ask) entry;
	uint64_t serial;
	bool kick;
	struct mconn *pending[MASTER_MAX_CONNS];	/* asked, not answered */
	unsigned npending, asked, answered;
	unsigned long long n;		/* sessions listed or ended */
	masters_session_cb *session_cb;
	masters_done_cb *done_cb;
	void *ctx;
	struct event *timer;
};

static LIST_HEAD(, mconn) conns = LIST_HEAD_INITIALIZER(conns);
static LIST_HEAD(, ask) asks = LIST_HEAD_INITIALIZER(asks);
static unsigned nconns;
static uint64_t ask_serial;
static struct evconnlistener *listener;
static struct event_base *base;

static void ask_finish(struct ask *a)
{
	LIST_REMOVE(a, entry);
	event_free(a->timer);
	if (a->done_cb != NULL)
		a->done_cb(a->ctx, a->n, a->answered, a->asked);
	free(a);
}

/* m has answered a (or is gone): a ends when nobody else is pending. */
static void ask_unpend(struct ask *a, struct mconn *m, bool answered)
{
	for (unsigned i = 0; i < a->npending; i++)
		if (a->pending[i] == m) {
			a->pending[i] = a->pending[--a->npending];
			if (answered)
				a->answered++;
			break;
		}
	if (a->npending == 0)
		ask_finish(a);
}

static bool ask_pending(const struct ask *a, const struct mconn *m)
{
	for (unsigned i = 0; i < a->npending; i++)
		if (a->pending[i] == m)
			return true;
	return false;
}

static void mconn_free(struct mconn *m)
{
	struct ask *a, *next;

	for (a = LIST_FIRST(&asks); a != NULL; a = next) {
		next = LIST_NEXT(a, entry);
		if (ask_pending(a, m))
			ask_unpend(a, m, false);
	}
	LIST_REMOVE(m, entry);
	nconns--;
	bufferevent_free(m->bev);
	free(m);
}

static void send_line(struct mconn *m, struct proto_line *l)
{
	if (proto_line_end(l) == 0)
		bufferevent_write(m->bev, l->buf, l->len);
}

static struct ask *ask_find(const struct proto_msg *msg, struct mconn *m)
{
	uint64_t serial;
	struct ask *a;

	if (msg->nargs < 1 || num_parse_u64(msg->args[0], 1, UINT64_MAX, &serial) == -1)
		return NULL;
	LIST_FOREACH(a, &asks, entry)
		if (a->serial == serial)
			return ask_pending(a, m) ? a : NULL;
	return NULL;
}

/* One SESSION line of a WHO answer: every field checked before it is
 * passed on.  Returns 0, or -1 for a malformed one (the connection is
 * dropped: the master is ours, a bad line is a bug or worse). */
static int who_session(struct ask *a, struct mconn *m, const struct proto_msg *msg)
{
	struct master_session s;
	const char *user = proto_get(msg, "user"), *rip = proto_get(msg, "rip");
	const char *tls = proto_get(msg, "tls");
	uint64_t v;

	memset(&s, 0, sizeof(s));
	if (user == NULL || user[0] == '\0' || strlen(user) > AUTH_MAX_USER ||
	    rip == NULL || strlen(rip) >= sizeof(s.rip) || tls == NULL ||
	    (strcmp(tls, "yes") != 0 && strcmp(tls, "no") != 0) || proto_has_duplicates(msg))
		return -1;
	s.user = user;
	snprintf(s.rip, sizeof(s.rip), "%s", rip);
	s.tls = strcmp(tls, "yes") == 0;
	if (proto_get(msg, "rport") == NULL ||
	    num_parse_u64(proto_get(msg, "rport"), 0, 65535, &v) == -1)
		return -1;
	s.rport = (unsigned)v;
	if (proto_get(msg, "start") == NULL ||
	    num_parse_u64(proto_get(msg, "start"), 0, INT64_MAX, &v) == -1)
		return -1;
	s.start = (int64_t)v;
	if (proto_get(msg, "pid") == NULL ||
	    num_parse_u64(proto_get(msg, "pid"), 1, 4194304, &v) == -1)
		return -1;
	s.pid = (long)v;
	s.master_pid = (long)m->pid;
	if (a->n >= MASTER_WHO_MAX)
		return 0;	/* listed enough; the rest is dropped */
	a->n++;
	if (a->session_cb != NULL)
		a->session_cb(a->ctx, &s);
	return 0;
}

/* SESSION, END and KICKED: a master's answers to our questions.  One to a
 * question that was not asked of it, or was given up on, is ignored. */
static int handle_answer(struct mconn *m, const struct proto_msg *msg)
{
	struct ask *a = ask_find(msg, m);
	const char *n = proto_get(msg, "n");
	uint64_t v;

	if (a == NULL)
		return 0;
	if (strcmp(msg->cmd, "SESSION") == 0)
		return a->kick ? -1 : who_session(a, m, msg);
	if (a->kick != (strcmp(msg->cmd, "KICKED") == 0) || n == NULL ||
	    num_parse_u64(n, 0, UINT32_MAX, &v) == -1)
		return -1;
	if (a->kick)
		a->n += v;
	ask_unpend(a, m, true);
	return 0;
}

static int handle_line(struct mconn *m, char *line, size_t len)
{
	struct proto_msg msg;
	struct proto_line l;
	const char *err, *hex, *pidstr;
	char user[AUTH_MAX_USER + 1];
	struct userdb udb;
	uint64_t pid;

	if (proto_parse(line, len, &msg, &err) == -1)
		return -1;
	if (!m->handshaked) {
		if (strcmp(msg.cmd, "VERSION") != 0 || msg.nargs < 2 || strcmp(msg.args[0], "1") != 0)
			return -1;
		m->handshaked = true;
		m->sessions = proto_get(&msg, "sessions") != NULL &&
			      strcmp(proto_get(&msg, "sessions"), "yes") == 0;
		proto_line_start(&l, "VERSION");
		proto_line_add(&l, "1");
		proto_line_add(&l, "0");
		proto_line_kvf(&l, "pid", "%ld", (long)getpid());
		send_line(m, &l);
		return 0;
	}
	if (m->sessions && (strcmp(msg.cmd, "SESSION") == 0 || strcmp(msg.cmd, "END") == 0 ||
			    strcmp(msg.cmd, "KICKED") == 0))
		return handle_answer(m, &msg);
	if (strcmp(msg.cmd, "REDEEM") != 0 || msg.nargs < 1 || !proto_id_valid(msg.args[0]))
		return -1;
	hex = proto_get(&msg, "ticket");
	pidstr = proto_get(&msg, "pid");
	if (hex == NULL || pidstr == NULL || proto_has_duplicates(&msg) ||
	    num_parse_u64(pidstr, 1, 4194304, &pid) == -1 ||
	    ticket_redeem(hex, (pid_t)pid, user, sizeof(user), &udb) == -1) {
		proto_line_start(&l, "NOTFOUND");
		proto_line_add(&l, msg.args[0]);
		send_line(m, &l);
		return 0;
	}
	proto_line_start(&l, "USER");
	proto_line_add(&l, msg.args[0]);
	proto_line_kv(&l, "user", user);
	if (udb.has_uid)
		proto_line_kvf(&l, "uid", "%u", udb.uid);
	if (udb.has_gid)
		proto_line_kvf(&l, "gid", "%u", udb.gid);
	if (udb.home[0] != '\0')
		proto_line_kv(&l, "home", udb.home);
	if (udb.maildrop[0] != '\0')
		proto_line_kv(&l, "maildrop", udb.maildrop);
	send_line(m, &l);
	return 0;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct mconn *m = arg;
	char line[AUTHD_MAX_LINE + 1];
	size_t len;
	bool nul;

	for (;;) {
		enum line_status st = line_read(bufferevent_get_input(bev), line,
						 AUTHD_MAX_LINE, &len, &nul);
		if (st == LINE_NONE)
			return;
		if (st == LINE_TOOLONG || nul || handle_line(m, line, len) == -1) {
			log_warnx("master connection: protocol error; closing");
			mconn_free(m);
			return;
		}
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		mconn_free(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct mconn *m;
	pid_t pid;
	uid_t uid;

	if (sock_peer_cred(fd, &pid, &uid, NULL) == -1 || (uid != 0 && uid != geteuid())) {
		log_warnx("master socket: connection from uid %ld refused", (long)uid);
		close(fd);
		return;
	}
	if (nconns >= MASTER_MAX_CONNS) {
		log_warnx("master socket: too many connections");
		close(fd);
		return;
	}
	m = xcalloc(1, sizeof(*m));
	m->pid = pid;
	m->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (m->bev == NULL)
		fatalx("out of memory (bufferevent)");
	bufferevent_setcb(m->bev, on_read, NULL, on_event, m);
	bufferevent_enable(m->bev, EV_READ | EV_WRITE);
	LIST_INSERT_HEAD(&conns, m, entry);
	nconns++;
}

void redeem_init(struct event_base *b, int listen_fd)
{
	base = b;
	listener = authd_listen(base, listen_fd, on_accept, "redeem");
}

static void on_ask_timeout(evutil_socket_t fd, short what, void *arg)
{
	ask_finish(arg);	/* with what came */
}

/* Asks every master that answers WHO and KICK. */
static void ask_all(bool kick, const char *user, masters_session_cb *session_cb,
		    masters_done_cb *done_cb, void *ctx)
{
	struct ask *a = xcalloc(1, sizeof(*a));
	struct timeval tv = { MASTER_ASK_TIMEOUT_MS / 1000, (MASTER_ASK_TIMEOUT_MS % 1000) * 1000 };
	struct proto_line l;
	struct mconn *m;
	char serial[24];

	a->serial = ++ask_serial;
	a->kick = kick;
	a->session_cb = session_cb;
	a->done_cb = done_cb;
	a->ctx = ctx;
	a->timer = evtimer_new(base, on_ask_timeout, a);
	if (a->timer == NULL)
		fatalx("evtimer_new");
	LIST_INSERT_HEAD(&asks, a, entry);
	snprintf(serial, sizeof(serial), "%llu", (unsigned long long)a->serial);
	proto_line_start(&l, kick ? "KICK" : "WHO");
	proto_line_add(&l, serial);
	if (kick)
		proto_line_kv(&l, "user", user);
	if (proto_line_end(&l) == 0)
		LIST_FOREACH(m, &conns, entry) {
			if (!m->handshaked || !m->sessions)
				continue;
			if (bufferevent_write(m->bev, l.buf, l.len) == -1)
				continue;
			a->pending[a->npending++] = m;
			a->asked++;
		}
	if (a->npending == 0) {
		ask_finish(a);
		return;
	}
	evtimer_add(a->timer, &tv);
}

void masters_who(masters_session_cb *session_cb, masters_done_cb *done_cb, void *ctx)
{
	ask_all(false, NULL, session_cb, done_cb, ctx);
}

void masters_kick(const char *user, masters_done_cb *done_cb, void *ctx)
{
	ask_all(true, user, NULL, done_cb, ctx);
}

void redeem_shutdown(void)
{
	struct mconn *m;
	struct ask *a;

	/* Each callback still runs once (it may own its ctx): the
	 * clients are gone by now, so theirs find nothing to answer. */
	while ((a = LIST_FIRST(&asks)) != NULL)
		ask_finish(a);

	if (listener != NULL)
		evconnlistener_free(listener);
	listener = NULL;
	while ((m = LIST_FIRST(&conns)) != NULL)
		mconn_free(m);
}
