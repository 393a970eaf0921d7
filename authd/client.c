/*
 * client.c - connections on the protocol socket (docs/auth-protocol.md).
 *
 * Every byte here comes from another process and is treated as hostile:
 * lines go through the bounded line reader, a line that is too long, holds
 * a NUL byte, or breaks the framing closes that connection only; a
 * malformed request gets an ERROR reply for its id.  A client with
 * AUTHD_MAX_INFLIGHT requests in flight is not read until replies drain.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sodium.h>

#include "authd/authd.h"
#include "cache/cache.h"
#include "common/line.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/memwipe.h"
#include "common/mtime.h"
#include "common/proto.h"
#include "common/sock.h"

struct client {
	TAILQ_ENTRY(client) entry;
	struct bufferevent *bev;
	pid_t pid;
	uid_t uid;		/* SO_PEERCRED: at connect time, not now */
	bool handshaked;
	bool admin;		/* asked for (VERSION admin=yes) and granted */
	bool tickets;		/* OK replies carry a handoff ticket (handle_version) */
	bool processing;	/* inside client_process(): do not free */
	bool dead;		/* free once processing ends */
	struct request_list requests;
	unsigned inflight;
};
TAILQ_HEAD(client_list, client);

/* An admin command whose reply waits for other parts: a FLUSH for its
 * cluster-wide part (l2_flush), a KICK for that and for the pop3d masters
 * (masters_kick), a WHO for the masters' lists.  Found again by its
 * number, never by a pointer the L2 threads or redeem.c hold, so a client
 * that left meanwhile is simply not found. */
struct admin_wait {
	TAILQ_ENTRY(admin_wait) entry;
	uint64_t serial;
	struct client *c;
	char id[AUTHD_MAX_ID + 1];
	const char *cmd;		/* FLUSH, KICK or WHO */
	unsigned pending;		/* parts not done yet */
	uint64_t removed;		/* L1 entries */
	bool l2;			/* the cluster part ran */
	unsigned servers_ok, nservers;
	bool masters;			/* the masters were asked */
	unsigned long long sessions;	/* listed or ended */
	unsigned answered, asked;
	char only[AUTH_MAX_USER + 1];	/* WHO user=: that user's, normalised */
};
static TAILQ_HEAD(, admin_wait) admin_waits = TAILQ_HEAD_INITIALIZER(admin_waits);
static uint64_t admin_serial;

static struct client_list clients = TAILQ_HEAD_INITIALIZER(clients);
static unsigned nclients;
static const struct config *conf;
static struct evconnlistener *listener;
static struct event_base *base;

static void client_process(struct client *c);

static void client_free(struct client *c)
{
	struct request *req;

	if (c->processing) {
		c->dead = true;
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
		return;
	}
	while ((req = TAILQ_FIRST(&c->requests)) != NULL) {
		TAILQ_REMOVE(&c->requests, req, client_entry);
		request_cancel(req);
	}
	struct admin_wait *w = TAILQ_FIRST(&admin_waits), *wn;
	for (; w != NULL; w = wn) {
		wn = TAILQ_NEXT(w, entry);
		if (w->c == c) {
			TAILQ_REMOVE(&admin_waits, w, entry);
			free(w);
		}
	}
	TAILQ_REMOVE(&clients, c, entry);
	nclients--;
	bufferevent_free(c->bev);
	free(c);
	if (listener != NULL && nclients < conf->authd.max_clients)	/* also after a reload raised it */
		evconnlistener_enable(listener);
}

static void send_line(struct client *c, struct proto_line *l)
{
	if (proto_line_end(l) == -1) {
		/* Our own reply does not fit: a bug or absurd userdb data. */
		log_error("client: reply too long, dropped");
		return;
	}
	if (bufferevent_write(c->bev, l->buf, l->len) == -1)
		log_warnx("client: cannot queue reply");
}

static void reply_error(struct client *c, const char *id, const char *reason)
{
	struct proto_line l;

	authd_stats.errors++;
	proto_line_start(&l, "ERROR");
	proto_line_add(&l, id);
	proto_line_kv(&l, "reason", reason);
	send_line(c, &l);
}

static void reply_ok(struct client *c, const char *id, const struct request_answer *a)
{
	char ticket[2 * AUTHD_TICKET_BYTES + 1];
	const struct userdb *udb = a->udb;
	struct proto_line l;

	proto_line_start(&l, "OK");
	proto_line_add(&l, id);
	proto_line_kv(&l, "user", a->user);
	if (udb->has_uid)
		proto_line_kvf(&l, "uid", "%u", udb->uid);
	if (udb->has_gid)
		proto_line_kvf(&l, "gid", "%u", udb->gid);
	if (udb->home[0] != '\0')
		proto_line_kv(&l, "home", udb->home);
	if (udb->maildrop[0] != '\0')
		proto_line_kv(&l, "maildrop", udb->maildrop);
	proto_line_kv(&l, "authenticator", a->authname);
	/* Only for a connection that can hand it on to a pop3d master; a
	 * ticket nobody redeems would only take up room until it expires. */
	if (c->tickets) {
		ticket_issue(a->user, udb, c->pid, ticket);
		proto_line_kv(&l, "ticket", ticket);
		sodium_memzero(ticket, sizeof(ticket));
	}
	send_line(c, &l);
	proto_line_wipe(&l);
}

/* request_cb: a request of c ended; reply and unlink it. */
static void on_answer(void *ctx, struct request *req, const struct request_answer *a)
{
	struct client *c = ctx;
	struct proto_line l;

	switch (a->result) {
	case AUTH_RESULT_OK:
		reply_ok(c, req->id, a);
		break;
	case AUTH_RESULT_TEMPFAIL:
		proto_line_start(&l, "TEMPFAIL");
		proto_line_add(&l, req->id);
		proto_line_kv(&l, "reason", tempfail_reason_name(a->reason));
		send_line(c, &l);
		break;
	default:
		proto_line_start(&l, "FAIL");
		proto_line_add(&l, req->id);
		send_line(c, &l);
		break;
	}
	TAILQ_REMOVE(&c->requests, req, client_entry);
	c->inflight--;
	if (c->inflight == AUTHD_MAX_INFLIGHT - 1 && !c->processing && !c->dead) {
		/* Back-pressure released: take the lines already buffered. */
		bufferevent_enable(c->bev, EV_READ);
		client_process(c);
	}
}

static struct request *find_request(struct client *c, const char *id)
{
	struct request *req;

	TAILQ_FOREACH(req, &c->requests, client_entry)
		if (strcmp(req->id, id) == 0)
			return req;
	return NULL;
}

static void handle_auth(struct client *c, struct proto_msg *m)
{
	struct request_params p;
	struct request *req;
	const char *id, *mech, *pass, *err, *secured;
	char user[AUTH_MAX_USER + 1];
	char *pw;

	if (m->nargs < 1 || !proto_id_valid(m->args[0])) {
		reply_error(c, "0", "bad or missing request id");
		return;
	}
	id = m->args[0];
	if (proto_has_duplicates(m)) {
		reply_error(c, id, "duplicate key");
		return;
	}
	if (find_request(c, id) != NULL) {
		reply_error(c, id, "request id already in flight");
		return;
	}
	memset(&p, 0, sizeof(p));
	p.id = id;
	p.service = proto_get(m, "service");
	if (p.service == NULL || !proto_service_valid(p.service)) {
		reply_error(c, id, "missing or bad service");
		return;
	}
	p.rip = proto_get(m, "rip");
	p.lip = proto_get(m, "lip");
	if ((p.rip != NULL && strlen(p.rip) > AUTHD_MAX_ADDR) ||
	    (p.lip != NULL && strlen(p.lip) > AUTHD_MAX_ADDR)) {
		reply_error(c, id, "address too long");
		return;
	}
	secured = proto_get(m, "secured");
	if (secured != NULL && strcmp(secured, "yes") != 0 && strcmp(secured, "no") != 0) {
		reply_error(c, id, "secured must be yes or no");
		return;
	}
	p.secured = secured != NULL && strcmp(secured, "yes") == 0;

	mech = proto_get(m, "mech");
	if (mech != NULL) {
		const char *resp = proto_get(m, "resp");
		char passbuf[AUTH_MAX_PASSWORD + 1];

		if (strcmp(mech, "PLAIN") != 0) {
			reply_error(c, id, "unsupported mechanism");
			return;
		}
		if (resp == NULL || proto_get(m, "user") != NULL || proto_get(m, "pass") != NULL) {
			reply_error(c, id, "mech=PLAIN needs resp and no user or pass");
			return;
		}
		if (proto_sasl_plain_decode(resp, user, sizeof(user), passbuf, sizeof(passbuf),
					    &err) == -1) {
			reply_error(c, id, err);
			return;
		}
		p.passlen = strlen(passbuf);
		pw = xmalloc(p.passlen + 1);
		memcpy(pw, passbuf, p.passlen + 1);
		sodium_memzero(passbuf, sizeof(passbuf));
		p.user = user;
	} else {
		p.user = proto_get(m, "user");
		pass = proto_get(m, "pass");
		if (p.user == NULL || pass == NULL) {
			reply_error(c, id, "missing user or pass");
			return;
		}
		if (strlen(p.user) > AUTH_MAX_USER) {
			reply_error(c, id, "user name too long");
			return;
		}
		p.passlen = strlen(pass);
		if (p.passlen > AUTH_MAX_PASSWORD) {
			reply_error(c, id, "password too long");
			return;
		}
		pw = xmalloc(p.passlen + 1);
		memcpy(pw, pass, p.passlen + 1);
	}
	p.password = pw;
	req = request_new(&p, on_answer, c);
	sodium_memzero(user, sizeof(user));
	TAILQ_INSERT_TAIL(&c->requests, req, client_entry);
	c->inflight++;
	request_run(req);
}

static struct admin_wait *wait_new(struct client *c, const char *id, const char *cmd)
{
	struct admin_wait *w = xcalloc(1, sizeof(*w));

	w->serial = ++admin_serial;
	w->c = c;
	w->cmd = cmd;
	w->pending = 1;		/* the caller's own part: wait_part_done() */
	snprintf(w->id, sizeof(w->id), "%s", id);
	TAILQ_INSERT_TAIL(&admin_waits, w, entry);
	return w;
}

static struct admin_wait *wait_find(void *ctx)
{
	uint64_t serial = (uint64_t)(uintptr_t)ctx;
	struct admin_wait *w;

	TAILQ_FOREACH(w, &admin_waits, entry)
		if (w->serial == serial)
			return w;
	return NULL;		/* its client has gone */
}

/* One part of w is done; the last one sends the reply. */
static void wait_part_done(struct admin_wait *w)
{
	struct proto_line l;

	if (--w->pending > 0)
		return;
	TAILQ_REMOVE(&admin_waits, w, entry);
	if (w->l2 && w->servers_ok < w->nservers)
		log_warnx("cache: %s reached %u of %u memcached servers; hosts that poll only "
			  "the others still see it, see docs/cluster.md",
			  strcmp(w->cmd, "FLUSH") == 0 ? "flush" : "kick", w->servers_ok,
			  w->nservers);
	proto_line_start(&l, "DONE");
	proto_line_add(&l, w->id);
	if (strcmp(w->cmd, "WHO") != 0)
		proto_line_kvf(&l, "removed", "%llu", (unsigned long long)w->removed);
	if (w->masters) {
		proto_line_kvf(&l, strcmp(w->cmd, "WHO") == 0 ? "sessions" : "ended", "%llu",
			       w->sessions);
		proto_line_kvf(&l, "masters", "%u/%u", w->answered, w->asked);
	}
	if (w->l2)
		proto_line_kvf(&l, "cluster", "%u/%u", w->servers_ok, w->nservers);
	send_line(w->c, &l);
	free(w);
}

/* l2_flush_cb: the cluster-wide part of a FLUSH or KICK is done. */
static void on_flushed(void *ctx, unsigned servers_ok, unsigned nservers)
{
	struct admin_wait *w = wait_find(ctx);

	if (w == NULL)
		return;
	w->servers_ok = servers_ok;
	w->nservers = nservers;
	wait_part_done(w);
}

/* masters_done_cb: the pop3d masters have answered a KICK or WHO. */
static void on_masters_done(void *ctx, unsigned long long n, unsigned answered, unsigned asked)
{
	struct admin_wait *w = wait_find(ctx);

	if (w == NULL)
		return;
	if (strcmp(w->cmd, "WHO") != 0)
		w->sessions = n;	/* WHO: counted as passed on */
	w->answered = answered;
	w->asked = asked;
	if (strcmp(w->cmd, "KICK") == 0 && answered < asked)
		log_warnx("kick: %u of %u pop3d masters did not answer", asked - answered, asked);
	wait_part_done(w);
}

/* masters_session_cb: one session of a WHO, passed on as it comes. */
static void on_master_session(void *ctx, const struct master_session *s)
{
	struct admin_wait *w = wait_find(ctx);
	struct proto_line l;

	if (w == NULL || (w->only[0] != '\0' && strcmp(s->user, w->only) != 0))
		return;
	w->sessions++;
	proto_line_start(&l, "SESSION");
	proto_line_add(&l, w->id);
	proto_line_kv(&l, "user", s->user);
	proto_line_kv(&l, "rip", s->rip);
	proto_line_kvf(&l, "rport", "%u", s->rport);
	proto_line_kvf(&l, "start", "%lld", (long long)s->start);
	proto_line_kvf(&l, "pid", "%ld", s->pid);
	proto_line_kv(&l, "tls", s->tls ? "yes" : "no");
	proto_line_kvf(&l, "master", "%ld", s->master_pid);
	send_line(w->c, &l);
}

/* A kick another host issued (l2.c): end the user's sessions here. */
static void on_kick_done(void *ctx, unsigned long long n, unsigned answered, unsigned asked)
{
	char *user = ctx, tok[LOG_TOKEN_SIZE(AUTH_MAX_USER)];

	log_info("kick: user %s (from the cluster): ended %llu sessions (%u of %u pop3d "
		 "masters answered)", log_token(user, tok, sizeof(tok)), n, answered, asked);
	free(user);
}

static void on_cluster_kick(const char *user)
{
	tickets_revoke(user);
	masters_kick(user, on_kick_done, xstrdup(user));
}

/* FLUSH, CACHE, RELOAD, KICK and WHO: administration, only on a connection that asked
 * for it in its handshake (see handle_version).  The uid SO_PEERCRED gave
 * at connect time is not enough: a pop3d front end connects as root, then
 * drops to login-user and parses hostile client bytes. */
static void handle_admin(struct client *c, struct proto_msg *m)
{
	struct proto_line l;
	const char *id;

	if (m->nargs < 1 || !proto_id_valid(m->args[0])) {
		reply_error(c, "0", "bad or missing request id");
		return;
	}
	id = m->args[0];
	if (!c->admin) {
		log_warnx("client pid %ld uid %ld: %s refused (not an administration "
			  "connection)", (long)c->pid, (long)c->uid, m->cmd);
		reply_error(c, id, "not permitted");
		return;
	}
	if (strcmp(m->cmd, "RELOAD") == 0) {
		char err[1024];

		if (authd_reload(err, sizeof(err)) == -1) {
			reply_error(c, id, err);
			return;
		}
		proto_line_start(&l, "DONE");
		proto_line_add(&l, id);
		send_line(c, &l);
		return;
	}
	if (strcmp(m->cmd, "FLUSH") == 0) {
		const char *user = proto_get(m, "user");
		char norm[AUTH_MAX_USER + 1];

		if (user != NULL && user_normalize(conf, user, norm, sizeof(norm)) == -1) {
			reply_error(c, id, "bad user name");
			return;
		}
		char tok[LOG_TOKEN_SIZE(AUTH_MAX_USER)];
		struct admin_wait *w = wait_new(c, id, "FLUSH");
		void *ctx = (void *)(uintptr_t)w->serial;

		w->removed = requests_cache_flush(user != NULL ? norm : NULL, on_flushed, ctx,
						  &w->l2);
		log_info("cache: flushed %llu entries%s%s%s", (unsigned long long)w->removed,
			 user != NULL ? " of user " : "",
			 user != NULL ? log_token(norm, tok, sizeof(tok)) : "",
			 w->l2 ? "; flushing the cluster's L2" : "");
		w->pending += w->l2;	/* on_flushed() */
		wait_part_done(w);
		return;
	}
	if (strcmp(m->cmd, "KICK") == 0) {
		const char *user = proto_get(m, "user"), *flush = proto_get(m, "flush");
		char norm[AUTH_MAX_USER + 1], tok[LOG_TOKEN_SIZE(AUTH_MAX_USER)];

		if (user == NULL || proto_has_duplicates(m) ||
		    user_normalize(conf, user, norm, sizeof(norm)) == -1 || norm[0] == '\0') {
			reply_error(c, id, "bad user name");
			return;
		}
		if (flush != NULL && strcmp(flush, "yes") != 0 && strcmp(flush, "no") != 0) {
			reply_error(c, id, "flush must be yes or no");
			return;
		}
		struct admin_wait *w = wait_new(c, id, "KICK");
		void *ctx = (void *)(uintptr_t)w->serial;
		bool also_flush = flush != NULL && strcmp(flush, "yes") == 0;

		w->removed = requests_cache_kick(norm, also_flush, on_flushed, ctx, &w->l2);
		/* A login approved a moment ago is not a session yet: its
		 * ticket goes too. */
		unsigned revoked = tickets_revoke(norm);
		log_info("kick: user %s%s%s%s", log_token(norm, tok, sizeof(tok)),
			 also_flush ? " (and a flush of its cache entries)" : "",
			 revoked > 0 ? " (and a login not yet redeemed)" : "",
			 w->l2 ? "; telling the cluster" : "");
		w->pending += w->l2;	/* on_flushed() */
		w->masters = true;
		w->pending++;		/* on_masters_done(), perhaps at once */
		masters_kick(norm, on_masters_done, ctx);
		wait_part_done(w);
		return;
	}
	if (strcmp(m->cmd, "WHO") == 0) {
		const char *user = proto_get(m, "user");
		char norm[AUTH_MAX_USER + 1] = "";

		if (proto_has_duplicates(m) ||
		    (user != NULL && (user_normalize(conf, user, norm, sizeof(norm)) == -1 ||
				      norm[0] == '\0'))) {
			reply_error(c, id, "bad user name");
			return;
		}
		struct admin_wait *w = wait_new(c, id, "WHO");

		snprintf(w->only, sizeof(w->only), "%s", norm);
		w->masters = true;
		w->pending++;
		masters_who(on_master_session, on_masters_done, (void *)(uintptr_t)w->serial);
		wait_part_done(w);
		return;
	}
	/* CACHE */
	struct cache *cache = requests_cache();
	struct cache_summary sum;

	proto_line_start(&l, "CACHE");
	proto_line_add(&l, id);
	proto_line_kv(&l, "enabled", cache != NULL ? "yes" : "no");
	if (cache != NULL) {
		cache_summarize(cache, (int64_t)mtime_ms(), &sum);
#define KV(name, v) proto_line_kvf(&l, name, "%llu", (unsigned long long)(v))
		KV("capacity", sum.capacity);
		KV("ok_fresh", sum.ok_fresh);
		KV("ok_stale", sum.ok_stale);
		KV("fail", sum.fail);
		KV("nouser", sum.nouser);
		KV("expired", sum.expired);
		KV("empty", sum.empty);
		KV("hits", sum.stats.hits);
		KV("negative_hits", sum.stats.negative_hits);
		KV("misses", sum.stats.misses);
		KV("stale_served", sum.stats.stale_served);
		KV("refreshes", sum.stats.refreshes);
		KV("inserts", sum.stats.inserts);
		KV("evict_expired", sum.stats.evict_expired);
		KV("evict_negative", sum.stats.evict_negative);
		KV("evict_clock", sum.stats.evict_clock);
		KV("insert_busy", sum.stats.insert_busy);
		KV("insert_too_long", sum.stats.insert_too_long);
		KV("read_retries", sum.stats.read_retries);
		KV("coalesced", authd_stats.coalesced);
		KV("late_fills", authd_stats.late_fills);
#undef KV
	}
	proto_line_kv(&l, "l2", l2_enabled() ? "yes" : "no");
	if (l2_enabled()) {
		struct l2_server_info sv[CONFIG_MAX_MEMCACHED];
		struct l2_stats st;
		size_t n = l2_servers(sv, CONFIG_MAX_MEMCACHED);
		char k[32];

		l2_stats_get(&st);
		proto_line_kvf(&l, "l2_hits", "%llu", (unsigned long long)st.hits);
		proto_line_kvf(&l, "l2_misses", "%llu", (unsigned long long)st.misses);
		proto_line_kvf(&l, "l2_refused", "%llu",
			       (unsigned long long)(st.bad_version + st.bad_seal + st.bad_value));
		proto_line_kvf(&l, "l2_errors", "%llu", (unsigned long long)(st.err_timeout +
			       st.err_connect + st.err_protocol + st.err_other));
		for (size_t i = 0; i < n; i++) {
			/* server<i>=NAME,STATE,OK,ERRORS,OPENS: a name has no
			 * blank or comma (config.c checked it) */
			snprintf(k, sizeof(k), "l2_server%zu", i);
			proto_line_kvf(&l, k, "%s,%s,%llu,%llu,%llu", sv[i].name, sv[i].state,
				       (unsigned long long)sv[i].ok, (unsigned long long)sv[i].errors,
				       (unsigned long long)sv[i].opens);
		}
	}
	send_line(c, &l);
}

/* The handshake, the connection's first line and its only VERSION (a
 * second one is an unknown command and closes the connection).
 * admin=yes asks for the administration commands; they are granted if
 * the peer was root or authd's own uid when it connected.  Without it
 * (the default, and what every pop3d front end sends before it drops its
 * privileges) the connection never has them: no later line can change
 * that.  tickets=no asks for OK replies without a handoff ticket (authctl
 * test); an administration connection never gets tickets either, since
 * no pop3d front end is behind it.  Returns -1 if the connection must
 * close. */
static int handle_version(struct client *c, struct proto_msg *m)
{
	struct proto_line l;
	const char *admin, *tickets;

	if (strcmp(m->cmd, "VERSION") != 0 || m->nargs < 2) {
		log_warnx("client pid %ld: expected VERSION; closing", (long)c->pid);
		return -1;
	}
	if (strcmp(m->args[0], "1") != 0) {
		reply_error(c, "0", "unsupported version");
		return -1;
	}
	admin = proto_get(m, "admin");
	if (proto_has_duplicates(m) ||
	    (admin != NULL && strcmp(admin, "yes") != 0 && strcmp(admin, "no") != 0)) {
		reply_error(c, "0", "admin must be yes or no, once");
		return -1;
	}
	tickets = proto_get(m, "tickets");
	if (tickets != NULL && strcmp(tickets, "yes") != 0 && strcmp(tickets, "no") != 0) {
		reply_error(c, "0", "tickets must be yes or no");
		return -1;
	}
	c->handshaked = true;
	if (admin != NULL && strcmp(admin, "yes") == 0) {
		if (c->pid != -1 && (c->uid == 0 || c->uid == geteuid()))
			c->admin = true;
		else
			log_warnx("client pid %ld uid %ld: administration refused (root or "
				  "authd's uid only)", (long)c->pid, (long)c->uid);
	}
	/* The default stays yes: pop3d front ends send no tickets key. */
	c->tickets = !c->admin && (tickets == NULL || strcmp(tickets, "yes") == 0);
	proto_line_start(&l, "VERSION");
	proto_line_add(&l, "1");
	proto_line_add(&l, "2");
	proto_line_kvf(&l, "pid", "%ld", (long)getpid());
	proto_line_kv(&l, "admin", c->admin ? "yes" : "no");
	proto_line_kv(&l, "tickets", c->tickets ? "yes" : "no");
	send_line(c, &l);
	return 0;
}

/* Handles one line.  Returns -1 if the connection must close. */
static int handle_line(struct client *c, char *line, size_t len)
{
	struct proto_msg m;
	const char *err;

	if (proto_parse(line, len, &m, &err) == -1) {
		log_warnx("client pid %ld: %s; closing", (long)c->pid, err);
		return -1;
	}
	if (!c->handshaked)
		return handle_version(c, &m);
	if (strcmp(m.cmd, "AUTH") == 0) {
		handle_auth(c, &m);
		return 0;
	}
	if (strcmp(m.cmd, "FLUSH") == 0 || strcmp(m.cmd, "CACHE") == 0 ||
	    strcmp(m.cmd, "RELOAD") == 0 || strcmp(m.cmd, "KICK") == 0 ||
	    strcmp(m.cmd, "WHO") == 0) {
		handle_admin(c, &m);
		return 0;
	}
	if (strcmp(m.cmd, "CANCEL") == 0) {
		struct request *req;

		if (m.nargs >= 1 && (req = find_request(c, m.args[0])) != NULL) {
			TAILQ_REMOVE(&c->requests, req, client_entry);
			c->inflight--;
			request_cancel(req);
		}
		return 0;
	}
	log_warnx("client pid %ld: unknown command; closing", (long)c->pid);
	return -1;
}

static void client_process(struct client *c)
{
	static char line[AUTHD_MAX_LINE + 1];
	struct evbuffer *in = bufferevent_get_input(c->bev);
	enum line_status st;
	size_t len;
	bool nul;
	int rc = 0;

	c->processing = true;
	while (!c->dead && c->inflight < AUTHD_MAX_INFLIGHT) {
		st = line_read(in, line, AUTHD_MAX_LINE, &len, &nul);
		if (st == LINE_NONE)
			break;
		if (st == LINE_TOOLONG) {
			log_warnx("client pid %ld: line too long; closing", (long)c->pid);
			rc = -1;
			break;
		}
		if (nul) {
			log_warnx("client pid %ld: NUL byte in line; closing", (long)c->pid);
			rc = -1;
		} else {
			rc = handle_line(c, line, len);
		}
		sodium_memzero(line, len);
		if (rc == -1)
			break;
	}
	/* What hashing the cache key and verifier left of the password */
	memwipe_stack();
	if (c->inflight >= AUTHD_MAX_INFLIGHT)
		bufferevent_disable(c->bev, EV_READ);
	c->processing = false;
	if (rc == -1 || c->dead)
		client_free(c);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	client_process(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		client_free(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct client *c;

	if (nclients >= conf->authd.max_clients) {
		log_warnx("client: max-clients (%u) reached, refusing a connection",
			  conf->authd.max_clients);
		close(fd);
		evconnlistener_disable(l);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	TAILQ_INIT(&c->requests);
	if (sock_peer_cred(fd, &c->pid, &c->uid, NULL) == -1) {
		log_warn("client: SO_PEERCRED");
		c->pid = -1;		/* and never an administration connection */
		c->uid = (uid_t)-1;
	}
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("out of memory (bufferevent)");
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&clients, c, entry);
	nclients++;
	log_debug("client: connected, pid %ld uid %ld", (long)c->pid, (long)c->uid);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	log_warn("%s: accept", (const char *)arg);	/* EMFILE and the like: retried */
}

struct evconnlistener *authd_listen(struct event_base *b, int listen_fd, evconnlistener_cb cb,
				    const char *what)
{
	struct evconnlistener *l;

	l = evconnlistener_new(b, cb, (void *)(uintptr_t)what, LEV_OPT_CLOSE_ON_FREE |
			       LEV_OPT_CLOSE_ON_EXEC, -1, listen_fd);
	if (l == NULL)
		fatalx("%s: cannot listen", what);
	evconnlistener_set_error_cb(l, on_accept_error);
	return l;
}

void clients_init(struct event_base *b, const struct config *c, int listen_fd)
{
	base = b;
	conf = c;
	listener = authd_listen(base, listen_fd, on_accept, "client");
	l2_set_kick_handler(on_cluster_kick);
}

void clients_set_conf(const struct config *c)
{
	conf = c;
}

unsigned clients_count(void)
{
	return nclients;
}

void clients_shutdown(void)
{
	struct client *c;

	if (listener != NULL)
		evconnlistener_free(listener);
	listener = NULL;
	while ((c = TAILQ_FIRST(&clients)) != NULL)
		client_free(c);
}
