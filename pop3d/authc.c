/*
 * authc.c - the front end's one multiplexed connection to authd's
 * protocol socket (docs/auth-protocol.md).
 *
 * Requests carry a numeric id (the handle); replies come in any order and
 * are matched through a small hash table.  Anything malformed from authd,
 * or the connection closing, fails every pending request with TEMPFAIL and
 * reports the loss once; the owner decides how to reconnect.
 *
 * authc_connect() runs in a front end before its privilege drop (so as
 * root), the rest as login-user inside login-chroot.  The connection's
 * handshake is written by authc_connect() itself, before the front end
 * reads any client byte: it does not ask for authd's administration
 * commands, so the connection can never use them, even though authd saw
 * a root peer connect (docs/auth-protocol.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/line.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/num.h"
#include "common/proto.h"
#include "common/sock.h"
#include "pop3d/pop3d.h"

#define AUTHC_BUCKETS 256

struct authc_req {
	uint64_t handle;
	authc_cb *cb;
	void *ctx;
	LIST_ENTRY(authc_req) entry;	/* hash chain */
};

struct authc {
	struct event_base *base;
	struct bufferevent *bev;	/* NULL: not connected */
	bool versioned;			/* authd answered our VERSION */
	uint64_t next_handle;
	LIST_HEAD(, authc_req) buckets[AUTHC_BUCKETS];
	void (*lost)(void *);
	void *ctx;
};

static struct authc_req *find_req(struct authc *ac, uint64_t handle)
{
	struct authc_req *q;

	LIST_FOREACH(q, &ac->buckets[handle % AUTHC_BUCKETS], entry)
		if (q->handle == handle)
			return q;
	return NULL;
}

/* Fails every pending request and drops the connection. */
static void authc_drop(struct authc *ac, const char *why)
{
	struct authc_reply r = { .result = AUTHC_TEMPFAIL, .reason = why };

	if (ac->bev == NULL)
		return;
	log_warnx("front end: authd connection lost: %s", why);
	bufferevent_free(ac->bev);
	ac->bev = NULL;
	ac->versioned = false;
	for (size_t b = 0; b < AUTHC_BUCKETS; b++) {
		while (!LIST_EMPTY(&ac->buckets[b])) {
			struct authc_req *q = LIST_FIRST(&ac->buckets[b]);
			LIST_REMOVE(q, entry);
			q->cb(q->ctx, &r);
			free(q);
		}
	}
	if (ac->lost != NULL)
		ac->lost(ac->ctx);
}

/* Handles one reply line.  Returns -1 if authd broke the protocol. */
static int handle_line(struct authc *ac, char *line, size_t len)
{
	struct proto_msg msg;
	struct authc_reply r = { 0 };
	struct authc_req *q;
	const char *err;
	uint64_t handle;

	if (proto_parse(line, len, &msg, &err) == -1) {
		log_warnx("front end: bad line from authd: %s", err);
		return -1;
	}
	if (strcmp(msg.cmd, "VERSION") == 0) {
		if (msg.nargs < 2 || strcmp(msg.args[0], "1") != 0)
			return -1;
		ac->versioned = true;
		return 0;
	}
	if (msg.nargs < 1 || num_parse_u64(msg.args[0], 0, UINT64_MAX, &handle) == -1)
		return -1;
	if (strcmp(msg.cmd, "OK") == 0) {
		r.result = AUTHC_OK;
		r.user = proto_get(&msg, "user");
		r.ticket = proto_get(&msg, "ticket");
		if (r.user == NULL || r.ticket == NULL || strlen(r.ticket) != IPC_TICKET_LEN) {
			log_warnx("front end: authd OK without user or ticket");
			r.result = AUTHC_TEMPFAIL;
			r.reason = "bad reply";
		}
	} else if (strcmp(msg.cmd, "FAIL") == 0) {
		r.result = AUTHC_FAIL;
	} else if (strcmp(msg.cmd, "TEMPFAIL") == 0) {
		r.result = AUTHC_TEMPFAIL;
		r.reason = proto_get(&msg, "reason");
	} else if (strcmp(msg.cmd, "ERROR") == 0) {
		if (handle == 0)
			return -1;	/* version refused */
		/* A request authd calls malformed (user or password too long,
		 * bad base64): the client's fault, so a plain failure. */
		r.result = AUTHC_FAIL;
		r.reason = proto_get(&msg, "reason");
		log_info("front end: authd refused a request: %s",
			 r.reason != NULL ? r.reason : "?");
	} else {
		return -1;
	}
	if (r.reason == NULL)
		r.reason = "";
	q = find_req(ac, handle);
	if (q == NULL)
		return 0;	/* cancelled */
	LIST_REMOVE(q, entry);
	q->cb(q->ctx, &r);
	free(q);
	return 0;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	static char line[AUTHD_MAX_LINE + 1];
	struct authc *ac = arg;
	size_t len;
	bool has_nul;

	for (;;) {
		enum line_status st = line_read(bufferevent_get_input(bev), line,
						AUTHD_MAX_LINE, &len, &has_nul);
		if (st == LINE_NONE)
			return;
		if (st == LINE_TOOLONG || has_nul || handle_line(ac, line, len) == -1) {
			authc_drop(ac, "protocol error");
			return;
		}
		if (ac->bev == NULL)
			return;
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct authc *ac = arg;

	authc_drop(ac, (what & BEV_EVENT_EOF) ? "closed by authd" : "I/O error");
}

int authc_connect(const char *path)
{
	/* The whole handshake, without admin=yes: authd then refuses this
	 * connection FLUSH, CACHE and RELOAD for good, whoever we are now. */
	static const char hello[] = "VERSION\t1\t0\n";
	size_t off = 0;
	int fd;

	fd = sock_unix_connect(path, false);
	if (fd == -1) {
		log_warn("front end: cannot connect to authd %s", path);
		return -1;
	}
	while (off < sizeof(hello) - 1) {
		ssize_t n = send(fd, hello + off, sizeof(hello) - 1 - off, MSG_NOSIGNAL);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			log_warn("front end: cannot send the handshake to authd %s", path);
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	return fd;
}

void authc_set_fd(struct authc *ac, int fd)
{
	if (ac->bev != NULL)
		authc_drop(ac, "replaced");
	if (fd == -1)
		return;
	evutil_make_socket_nonblocking(fd);
	ac->bev = bufferevent_socket_new(ac->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (ac->bev == NULL)
		fatalx("bufferevent_socket_new");
	bufferevent_setcb(ac->bev, on_read, NULL, on_event, ac);
	bufferevent_enable(ac->bev, EV_READ);
}

struct authc *authc_new(struct event_base *base, int fd, void (*lost)(void *), void *ctx)
{
	struct authc *ac = xcalloc(1, sizeof(*ac));

	ac->base = base;
	ac->lost = lost;
	ac->ctx = ctx;
	ac->next_handle = 1;
	authc_set_fd(ac, fd);
	return ac;
}

void authc_free(struct authc **acp)
{
	struct authc *ac = *acp;

	if (ac == NULL)
		return;
	ac->lost = NULL;
	authc_drop(ac, "shutting down");
	free(ac);
	*acp = NULL;
}

bool authc_connected(const struct authc *ac)
{
	return ac->bev != NULL;
}

uint64_t authc_auth(struct authc *ac, const char *user, const char *pass,
		    const char *plain_resp, const char *rip, unsigned rport,
		    const char *lip, unsigned lport, bool secured,
		    authc_cb *cb, void *cbctx)
{
	struct proto_line l;
	struct authc_req *q;
	uint64_t handle;
	char id[24];
	int rc;

	if (ac->bev == NULL)
		return 0;
	handle = ac->next_handle++;
	snprintf(id, sizeof(id), "%llu", (unsigned long long)handle);
	proto_line_start(&l, "AUTH");
	proto_line_add(&l, id);
	proto_line_kv(&l, "service", "pop3");
	if (plain_resp != NULL) {
		proto_line_kv(&l, "mech", "PLAIN");
		proto_line_kv(&l, "resp", plain_resp);
	} else {
		proto_line_kv(&l, "user", user);
		proto_line_kv(&l, "pass", pass);
	}
	proto_line_kv(&l, "rip", rip);
	proto_line_kvf(&l, "rport", "%u", rport);
	proto_line_kv(&l, "lip", lip);
	proto_line_kvf(&l, "lport", "%u", lport);
	proto_line_kv(&l, "secured", secured ? "yes" : "no");
	rc = proto_line_end(&l);
	if (rc == 0)
		rc = bufferevent_write(ac->bev, l.buf, l.len);
	proto_line_wipe(&l);
	if (rc == -1)
		return 0;
	q = xcalloc(1, sizeof(*q));
	q->handle = handle;
	q->cb = cb;
	q->ctx = cbctx;
	LIST_INSERT_HEAD(&ac->buckets[handle % AUTHC_BUCKETS], q, entry);
	return handle;
}

void authc_cancel(struct authc *ac, uint64_t handle)
{
	struct authc_req *q = find_req(ac, handle);
	struct proto_line l;
	char id[24];

	if (q == NULL)
		return;
	LIST_REMOVE(q, entry);
	free(q);
	if (ac->bev == NULL)
		return;
	snprintf(id, sizeof(id), "%llu", (unsigned long long)handle);
	proto_line_start(&l, "CANCEL");
	proto_line_add(&l, id);
	if (proto_line_end(&l) == 0)
		bufferevent_write(ac->bev, l.buf, l.len);
}
