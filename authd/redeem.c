/*
 * redeem.c - the REDEEM listener on [authd] master-socket: the pop3d
 * master (a client of authd, not a master process of authd's) redeems
 * tickets here.  Runs on authd's event-loop thread, as [authd] user.
 *
 * Only root or authd's own uid may talk to it (the socket is 0600 too).
 * One request per line: REDEEM <id> ticket=<hex> pid=<front end pid>.
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

struct mconn {
	LIST_ENTRY(mconn) entry;
	struct bufferevent *bev;
	bool handshaked;
};

static LIST_HEAD(, mconn) conns = LIST_HEAD_INITIALIZER(conns);
static unsigned nconns;
static struct evconnlistener *listener;
static struct event_base *base;

static void mconn_free(struct mconn *m)
{
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
		proto_line_start(&l, "VERSION");
		proto_line_add(&l, "1");
		proto_line_add(&l, "0");
		proto_line_kvf(&l, "pid", "%ld", (long)getpid());
		send_line(m, &l);
		return 0;
	}
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
	uid_t uid;

	if (sock_peer_cred(fd, NULL, &uid, NULL) == -1 || (uid != 0 && uid != geteuid())) {
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
	listener = evconnlistener_new(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE |
				      LEV_OPT_CLOSE_ON_EXEC, -1, listen_fd);
	if (listener == NULL)
		fatalx("cannot listen on the master socket");
}

void redeem_shutdown(void)
{
	struct mconn *m;

	if (listener != NULL)
		evconnlistener_free(listener);
	listener = NULL;
	while ((m = LIST_FIRST(&conns)) != NULL)
		mconn_free(m);
}
