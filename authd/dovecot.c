/*
 * dovecot.c - the Dovecot authentication protocol, server side, on
 * [authd] dovecot-socket: what Postfix (smtpd_sasl_type = dovecot), Exim's
 * dovecot authenticator and other Dovecot auth clients speak
 * (docs/auth-protocol.md has the dialogue as authd speaks it).
 *
 * Runs on authd's event-loop thread, as [authd] user.  The peer is
 * whoever the socket's mode and group let in (Postfix's smtpd processes,
 * which relay what an SMTP client typed): hostile.  Lines go through the
 * bounded line reader and saslproto.c's decoders; a line that is too long,
 * holds a NUL, or breaks the protocol (no VERSION first, an AUTH without
 * a usable id, an id already in use, an unknown command) closes that
 * connection only, as Dovecot's own server does; a well-framed request
 * that authd cannot take (an unknown mechanism, a bad service, a
 * malformed response) gets FAIL for its id.  At most DOVECOT_MAX_PENDING
 * requests per connection are open (a new one past that gets FAIL temp);
 * one waiting for the client's CONT lives DOVECOT_CONT_TIMEOUT_MS.
 *
 * Each exchange ends in a request of request.c, like a pop3d login: the
 * same normalisation, cache, coalescing, chain, fair queues (by rip) and
 * timeouts, with the service the client named (service= or protocol=).
 * A password lives in the exchange until the request takes it, then in
 * the request (request.c wipes it); the line buffer is wiped after each
 * line, and the stack below the loop after each batch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/line.h"
#include "common/log.h"
#include "common/memwipe.h"
#include "common/mtime.h"
#include "common/sock.h"

/* A peer that does not read its replies: past this much output waiting,
 * it is closed (Postfix reads each reply before it sends again). */
#define DOVECOT_MAX_OUTPUT (256 * 1024)

struct dconn;

/* One AUTH of a connection: waiting for the client's CONT (timer armed)
 * or for its answer (req set). */
struct dreq {
	TAILQ_ENTRY(dreq) entry;
	struct dconn *c;
	unsigned id;
	struct sasl_exchange x;		/* holds the password until req takes it */
	char service[33];
	char rip[AUTHD_MAX_ADDR + 1], lip[AUTHD_MAX_ADDR + 1];
	bool secured;
	struct request *req;		/* the check in progress, or NULL */
	struct event *timer;		/* the CONT deadline */
};

struct dconn {
	TAILQ_ENTRY(dconn) entry;
	struct bufferevent *bev;
	pid_t pid;			/* SO_PEERCRED, for the log */
	long cpid;			/* the client's CPID, 0 until sent */
	bool version;			/* its VERSION came */
	bool processing, dead;
	bool closing;			/* close_ev is on its way: read no more lines */
	struct event *close_ev;		/* closes it from the loop (tempfail disconnect) */
	unsigned npending;
	TAILQ_HEAD(, dreq) reqs;
};

static TAILQ_HEAD(, dconn) conns = TAILQ_HEAD_INITIALIZER(conns);
static unsigned nconns;
static unsigned long cuid_next;
static const struct config *conf;
static struct evconnlistener *listener;
static struct event_base *base;

static void dconn_process(struct dconn *c);
static void dconn_free(struct dconn *c);

/* ---- replies ----------------------------------------------------------- */

struct dline {
	char buf[1024];
	size_t len;
	bool overflow;
};

static void dl_put(struct dline *l, const char *s, size_t n)
{
	if (l->overflow || n > sizeof(l->buf) - l->len) {
		l->overflow = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

/* Appends TAB and s in the protocol's escaping (\001 before 1, t, r, n). */
static void dl_add(struct dline *l, const char *s)
{
	dl_put(l, "\t", 1);
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '\001': dl_put(l, "\0011", 2); break;
		case '\t': dl_put(l, "\001t", 2); break;
		case '\r': dl_put(l, "\001r", 2); break;
		case '\n': dl_put(l, "\001n", 2); break;
		default: dl_put(l, s, 1); break;
		}
	}
}

static void dl_start(struct dline *l, const char *cmd, unsigned id)
{
	char n[16];

	l->len = 0;
	l->overflow = false;
	dl_put(l, cmd, strlen(cmd));
	snprintf(n, sizeof(n), "%u", id);
	dl_add(l, n);
}

static void dl_send(struct dconn *c, struct dline *l)
{
	dl_put(l, "\n", 1);
	if (l->overflow) {
		log_error("dovecot: reply too long, dropped");
		return;
	}
	if (bufferevent_write(c->bev, l->buf, l->len) == -1)
		log_warnx("dovecot: cannot queue reply");
}

static void reply_fail(struct dconn *c, unsigned id, const char *user, bool temp,
		       const char *reason)
{
	struct dline l;
	char kv[16 + LOG_TOKEN_SIZE(AUTH_MAX_USER)];

	dl_start(&l, "FAIL", id);
	if (user != NULL && user[0] != '\0') {
		snprintf(kv, sizeof(kv), "user=%s", user);
		dl_add(&l, kv);
	}
	if (temp) {
		/* "temp" for Postfix and Dovecot 2.3's clients, code= for 2.4's */
		dl_add(&l, "temp");
		dl_add(&l, "code=temp_fail");
	}
	if (reason != NULL) {
		snprintf(kv, sizeof(kv), "reason=%s", reason);
		dl_add(&l, kv);
	}
	dl_send(c, &l);
}

/* ---- requests ---------------------------------------------------------- */

static void dreq_free(struct dreq *r)
{
	if (r->req != NULL)
		request_cancel(r->req);
	if (r->timer != NULL)
		event_free(r->timer);
	TAILQ_REMOVE(&r->c->reqs, r, entry);
	r->c->npending--;
	sodium_memzero(r, sizeof(*r));
	free(r);
}

static struct dreq *dreq_find(struct dconn *c, unsigned id)
{
	struct dreq *r;

	TAILQ_FOREACH(r, &c->reqs, entry)
		if (r->id == id)
			return r;
	return NULL;
}

/* request_cb: the check of r ended. */
static void on_answer(void *ctx, struct request *req, const struct request_answer *a)
{
	struct dreq *r = ctx;
	struct dconn *c = r->c;
	struct dline l;
	char kv[8 + AUTH_MAX_USER + 1];

	r->req = NULL;		/* request.c frees it when we return */
	switch (a->result) {
	case AUTH_RESULT_OK:
		dl_start(&l, "OK", r->id);
		snprintf(kv, sizeof(kv), "user=%s", a->user);
		dl_add(&l, kv);
		dl_send(c, &l);
		break;
	case AUTH_RESULT_TEMPFAIL: {
		char why[64];

		if (strcmp(conf->authd.dovecot_tempfail, "disconnect") == 0) {
			/* Postfix (3.7 at least) takes FAIL temp for a wrong
			 * password (535) and only a lost connection for a
			 * temporary failure (454): give it that. */
			log_info("dovecot: client pid %ld: temporary failure; closing "
				 "(dovecot-tempfail = disconnect)", (long)c->pid);
			dreq_free(r);
			/* Not here: request.c is still answering this flight's
			 * waiters, which may include others of c's. */
			bufferevent_disable(c->bev, EV_READ);
			c->closing = true;
			event_active(c->close_ev, EV_TIMEOUT, 0);
			return;
		}

		snprintf(why, sizeof(why), "Temporary authentication failure (%s)",
			 tempfail_reason_name(a->reason));
		reply_fail(c, r->id, a->user, true, why);
		break;
	}
	default:
		/* No reason: it must not tell an unknown user from a wrong
		 * password. */
		reply_fail(c, r->id, a->user, false, NULL);
		break;
	}
	dreq_free(r);
}

/* The exchange of r is complete: the check starts (and may answer before
 * this returns, freeing r). */
static void dreq_run(struct dreq *r)
{
	struct request_params p;
	char id[16];
	char *pw;

	event_del(r->timer);
	snprintf(id, sizeof(id), "%u", r->id);
	pw = xmalloc(r->x.passlen + 1);
	memcpy(pw, r->x.password, r->x.passlen + 1);
	memset(&p, 0, sizeof(p));
	p.id = id;
	p.service = r->service;
	p.user = r->x.user;
	p.rip = r->rip;
	p.lip = r->lip;
	p.password = pw;
	p.passlen = r->x.passlen;
	p.secured = r->secured;
	r->req = request_new(&p, on_answer, r);
	sodium_memzero(&r->x, sizeof(r->x));
	request_run(r->req);	/* r may be gone now */
}

static void on_cont_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct dreq *r = arg;

	reply_fail(r->c, r->id, NULL, false, "Authentication request timed out");
	dreq_free(r);
}

/* Feeds the client's response (NULL: none) to r's mechanism. */
static void dreq_step(struct dreq *r, const char *b64, bool initial)
{
	const char *challenge, *err;
	struct dline l;
	struct timeval tv;

	switch (sasl_mech_step(&r->x, b64, initial, &challenge, &err)) {
	case SASL_STEP_CONTINUE:
		dl_start(&l, "CONT", r->id);
		dl_add(&l, challenge);
		dl_send(r->c, &l);
		MTIME_TV(tv, DOVECOT_CONT_TIMEOUT_MS);
		event_add(r->timer, &tv);
		return;
	case SASL_STEP_DONE:
		dreq_run(r);
		return;
	case SASL_STEP_FAIL:
		authd_stats.errors++;
		reply_fail(r->c, r->id, NULL, false, err);
		dreq_free(r);
		return;
	}
}

/* ---- commands ---------------------------------------------------------- */

/* Returns -1 if the connection must close. */
static int handle_auth(struct dconn *c, const struct dovecot_msg *m)
{
	struct dovecot_auth a;
	struct dreq *r;
	const char *err;

	switch (dovecot_parse_auth(m, &a, &err)) {
	case DOVECOT_AUTH_BROKEN:
		log_warnx("dovecot: client pid %ld: AUTH: %s; closing", (long)c->pid, err);
		return -1;
	case DOVECOT_AUTH_FAIL:
		if (dreq_find(c, a.id) != NULL)
			goto duplicate;
		authd_stats.errors++;
		reply_fail(c, a.id, NULL, false, err);
		return 0;
	case DOVECOT_AUTH_OK:
		break;
	}
	if (dreq_find(c, a.id) != NULL)
		goto duplicate;
	if (c->npending >= DOVECOT_MAX_PENDING) {
		reply_fail(c, a.id, NULL, true, "Too many requests in progress");
		return 0;
	}
	r = xcalloc(1, sizeof(*r));
	r->c = c;
	r->id = a.id;
	r->x.mech = a.mech;
	snprintf(r->service, sizeof(r->service), "%s", a.service);
	snprintf(r->rip, sizeof(r->rip), "%s", a.rip != NULL ? a.rip : "");
	snprintf(r->lip, sizeof(r->lip), "%s", a.lip != NULL ? a.lip : "");
	r->secured = a.secured;
	r->timer = evtimer_new(base, on_cont_timeout, r);
	if (r->timer == NULL)
		fatalx("out of memory (timer)");
	TAILQ_INSERT_TAIL(&c->reqs, r, entry);
	c->npending++;
	dreq_step(r, a.resp, true);
	return 0;
duplicate:
	log_warnx("dovecot: client pid %ld: AUTH with an id already in use; closing",
		  (long)c->pid);
	return -1;
}

static int handle_cont(struct dconn *c, const struct dovecot_msg *m)
{
	struct dreq *r;
	unsigned id;

	if (m->nargs < 1 || !dovecot_id_parse(m->args[0], &id)) {
		log_warnx("dovecot: client pid %ld: CONT without a usable id; closing",
			  (long)c->pid);
		return -1;
	}
	r = dreq_find(c, id);
	if (r == NULL) {
		/* timed out, failed, or never was: what Dovecot answers */
		reply_fail(c, id, NULL, false, "Authentication request timed out");
		return 0;
	}
	if (r->req != NULL) {
		log_warnx("dovecot: client pid %ld: CONT for a request being checked; closing",
			  (long)c->pid);
		return -1;
	}
	dreq_step(r, m->nargs >= 2 ? m->args[1] : "", false);
	return 0;
}

/* Handles one line.  Returns -1 if the connection must close. */
static int handle_line(struct dconn *c, char *line, size_t len)
{
	struct dovecot_msg m;
	const char *err;
	unsigned id;

	if (dovecot_parse(line, len, &m, &err) == -1) {
		log_warnx("dovecot: client pid %ld: %s; closing", (long)c->pid, err);
		return -1;
	}
	if (!c->version) {
		if (strcmp(m.cmd, "VERSION") != 0 || m.nargs < 1 || strcmp(m.args[0], "1") != 0) {
			log_warnx("dovecot: client pid %ld: expected VERSION 1; closing",
				  (long)c->pid);
			return -1;
		}
		c->version = true;
		return 0;
	}
	if (strcmp(m.cmd, "AUTH") == 0)
		return handle_auth(c, &m);
	if (strcmp(m.cmd, "CONT") == 0)
		return handle_cont(c, &m);
	if (strcmp(m.cmd, "CPID") == 0) {
		if (c->cpid != 0 || m.nargs < 1 || !dovecot_id_parse(m.args[0], &id)) {
			log_warnx("dovecot: client pid %ld: bad or second CPID; closing",
				  (long)c->pid);
			return -1;
		}
		c->cpid = (long)id;
		return 0;
	}
	if (strcmp(m.cmd, "CANCEL") == 0) {
		struct dreq *r;

		if (m.nargs >= 1 && dovecot_id_parse(m.args[0], &id) &&
		    (r = dreq_find(c, id)) != NULL)
			dreq_free(r);
		return 0;
	}
	/* The protocol has no error reply without an id: Dovecot's server
	 * disconnects, and so does authd. */
	log_warnx("dovecot: client pid %ld: unknown command; closing", (long)c->pid);
	return -1;
}

/* ---- connections ------------------------------------------------------- */

static void dconn_free(struct dconn *c)
{
	struct dreq *r;

	if (c->processing) {
		c->dead = true;
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		return;
	}
	while ((r = TAILQ_FIRST(&c->reqs)) != NULL)
		dreq_free(r);
	TAILQ_REMOVE(&conns, c, entry);
	nconns--;
	event_free(c->close_ev);
	bufferevent_free(c->bev);
	free(c);
	if (listener != NULL && nconns < conf->authd.max_clients)	/* also after a reload raised it */
		evconnlistener_enable(listener);
}

static void dconn_process(struct dconn *c)
{
	static char line[DOVECOT_MAX_LINE + 1];
	struct evbuffer *in = bufferevent_get_input(c->bev);
	enum line_status st;
	size_t len;
	bool nul;
	int rc = 0;

	c->processing = true;
	while (!c->dead && !c->closing) {
		st = line_read(in, line, DOVECOT_MAX_LINE, &len, &nul);
		if (st == LINE_NONE)
			break;
		if (st == LINE_TOOLONG) {
			log_warnx("dovecot: client pid %ld: line too long; closing", (long)c->pid);
			rc = -1;
			break;
		}
		if (nul) {
			log_warnx("dovecot: client pid %ld: NUL byte in line; closing",
				  (long)c->pid);
			rc = -1;
		} else {
			rc = handle_line(c, line, len);
		}
		sodium_memzero(line, len);
		if (rc == -1)
			break;
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) > DOVECOT_MAX_OUTPUT) {
			log_warnx("dovecot: client pid %ld: does not read its replies; closing",
				  (long)c->pid);
			rc = -1;
			break;
		}
	}
	/* What decoding and hashing the cache key left of a password */
	memwipe_stack();
	c->processing = false;
	if (rc == -1 || c->dead)
		dconn_free(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	dconn_process(arg);
}

static void on_close(evutil_socket_t fd, short what, void *arg)
{
	dconn_free(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		dconn_free(arg);
}

/* The server's half of the handshake, sent at once (a client may send its
 * VERSION first or wait for ours: Postfix does the former). */
static void send_handshake(struct dconn *c)
{
	uint8_t cookie[16];
	char hex[2 * sizeof(cookie) + 1], text[512];
	int n;

	randombytes_buf(cookie, sizeof(cookie));
	sodium_bin2hex(hex, sizeof(hex), cookie, sizeof(cookie));
	n = snprintf(text, sizeof(text),
		     "VERSION\t1\t2\n"
		     "MECH\tPLAIN\tplaintext\n"
		     "MECH\tLOGIN\tplaintext\n"
		     "SPID\t%ld\n"
		     "CUID\t%lu\n"
		     "COOKIE\t%s\n"
		     "DONE\n", (long)getpid(), ++cuid_next, hex);
	if (n > 0 && (size_t)n < sizeof(text))
		bufferevent_write(c->bev, text, (size_t)n);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct dconn *c;
	uid_t uid = (uid_t)-1;

	if (nconns >= conf->authd.max_clients) {
		log_warnx("dovecot: max-clients (%u) reached, refusing a connection",
			  conf->authd.max_clients);
		close(fd);
		evconnlistener_disable(l);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	TAILQ_INIT(&c->reqs);
	if (sock_peer_cred(fd, &c->pid, &uid, NULL) == -1)
		c->pid = -1;
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("out of memory (bufferevent)");
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->close_ev = evtimer_new(base, on_close, c);
	if (c->close_ev == NULL)
		fatalx("out of memory (event)");
	TAILQ_INSERT_TAIL(&conns, c, entry);
	nconns++;
	send_handshake(c);
	log_debug("dovecot: client connected, pid %ld uid %ld", (long)c->pid, (long)uid);
}

void dovecot_init(struct event_base *b, const struct config *cf, int listen_fd)
{
	base = b;
	conf = cf;
	listener = authd_listen(base, listen_fd, on_accept, "dovecot");
}

void dovecot_set_conf(const struct config *cf)
{
	conf = cf;
}

void dovecot_shutdown(void)
{
	struct dconn *c;

	if (listener != NULL)
		evconnlistener_free(listener);
	listener = NULL;
	while ((c = TAILQ_FIRST(&conns)) != NULL)
		dconn_free(c);
}
