/*
 * handoff.c - the master's side of a login: from a front end's handoff to
 * the end of the session.  The ticket is redeemed with authd over the
 * master socket (REDEEM), the per-user limits are applied
 * (max-sessions-per-user, login-delay), the session is started in a spare
 * session process of the same ids or a new one (session_start), and the
 * session's reports and end are booked.
 *
 * Runs in the master, as root when started so (pop3d.h's map).  What it
 * reads from less-trusted processes goes through ipc.c's decoders: authd's
 * replies through common/proto.c's parser and parse_user's strict checks,
 * a session's reports (ipc_report_recv) and its SESSION_SPARE.  The
 * session process itself is session_proc.c; this file only forks it.
 *
 * DESIGN
 * - The pid sent with REDEEM is the pid of the front end whose channel
 *   carried the handoff, as the master knows it: a front end cannot claim
 *   another's ticket.
 * - Counters: sessions send a report when they end, on one SOCK_SEQPACKET
 *   socket they all share (report_fd), the sender named by the kernel
 *   (SCM_CREDENTIALS).  stats.c explains the whole scheme.
 * - Session processes serve up to session-reuse logins of their uid, one
 *   after another (a fork costs more than the rest of a cached login).
 *   Each has its own channel (struct sproc): when its session ends it says
 *   SESSION_SPARE there (after its report), the master books the end and
 *   keeps it as a spare, at most session-spares of them, each for at most
 *   session-spare-timeout; the next login with the same uid and gid gets
 *   it (struct session_job, with the client fd).  Only the master decides
 *   when a spare goes (it closes the channel), so a login is never sent to
 *   a process that has just chosen to leave.  docs/pop3d.md says why equal
 *   ids make reuse safe.  After a reload (handoff_configure) spares of the
 *   older configuration are not reused.
 * - The master socket connection to authd is kept open (and retried every
 *   POP3D_AUTHD_RETRY_MS while authd is away), since authd asks over it
 *   too: WHO (the sessions of this host, for `authctl who`) and KICK
 *   (end a user's sessions: `authctl kick`, or a kick from another host
 *   of the cluster).  authd is trusted no more than for REDEEM: a KICK
 *   names a user, and the master ends only sessions it started for that
 *   user, with SIGTERM; a killed session applies no DELE (that happens
 *   at QUIT only).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "common/config.h"
#include "common/line.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/num.h"
#include "common/proto.h"
#include "common/sock.h"
#include "pop3d/pop3d.h"

#define COUNT_BUCKETS CONNTAB_BUCKETS

/* A session process that may serve again (session-reuse): its own
 * channel, over which it says when its session has ended (SESSION_SPARE)
 * and gets its next login; while it waits for one it is a spare. */
struct sproc {
	pid_t pid;
	int chan;
	struct event *ev;		/* chan readable */
	struct event *timer;		/* a spare's session-spare-timeout */
	uid_t uid;
	gid_t gid;
	unsigned conf_gen;		/* H.conf_gen when it was forked */
	char user[AUTH_MAX_USER + 1];	/* whom it served last: a spare keeps
					 * that user's listing (warm) */
	bool spare;
	LIST_ENTRY(sproc) entry;	/* in H.sprocs */
};

/* login-delay: a user name and the time of its last login. */
struct count_entry {
	char *key;
	uint64_t stamp;
	LIST_ENTRY(count_entry) entry;
};
LIST_HEAD(count_list, count_entry);

static struct {
	const struct config *conf;	/* the master's, replaced by a reload */
	struct event_base *base;
	int report_fd[2];		/* sessions write [1], the master reads [0] */
	struct event *report_ev;
	struct bufferevent *authd;	/* master socket, NULL if not connected */
	bool authd_lost;		/* it was connected once and broke */
	bool authd_quiet;		/* a failed retry was logged already */
	struct event *authd_retry;	/* reconnects while authd is away */
	LIST_HEAD(, sproc) sprocs;	/* session processes with a channel */
	unsigned nspares;
	unsigned conf_gen;		/* counts reloads: spares of an older
					 * configuration are not reused */
	struct count_list last_login[COUNT_BUCKETS];
	size_t nlast_login;
	uint64_t login_delay_ms;	/* 0: no LOGIN-DELAY */
} H = { .report_fd = { -1, -1 } };

/* ---- per-user limits ------------------------------------------------------------ */

/* LOGIN-DELAY (RFC 2449 section 6.8): true if user logged in less than
 * login-delay ago; otherwise records this login.  Entries older than the
 * delay are swept whenever the table has doubled since the last sweep. */
static bool login_too_soon(const char *user)
{
	static size_t sweep_at = 1024;
	uint64_t now = mtime_ms();
	struct count_list *bucket = &H.last_login[conntab_hash(user)];
	struct count_entry *e;

	if (H.login_delay_ms == 0)
		return false;
	LIST_FOREACH(e, bucket, entry)
		if (strcmp(e->key, user) == 0)
			break;
	if (e != NULL) {
		if (now - e->stamp < H.login_delay_ms)
			return true;
		e->stamp = now;
		return false;
	}
	if (H.nlast_login >= sweep_at) {
		for (size_t b = 0; b < COUNT_BUCKETS; b++) {
			struct count_entry *x, *next;

			for (x = LIST_FIRST(&H.last_login[b]); x != NULL; x = next) {
				next = LIST_NEXT(x, entry);
				if (now - x->stamp >= H.login_delay_ms) {
					LIST_REMOVE(x, entry);
					free(x->key);
					free(x);
					H.nlast_login--;
				}
			}
		}
		sweep_at = H.nlast_login * 2 > 1024 ? H.nlast_login * 2 : 1024;
	}
	e = xcalloc(1, sizeof(*e));
	e->key = xstrdup(user);
	e->stamp = now;
	LIST_INSERT_HEAD(bucket, e, entry);
	H.nlast_login++;
	return false;
}

/* ---- the authd master socket: REDEEM --------------------------------------------- */

/* "-ERR CODE text" to c's client, in the language it chose (LANG) before
 * its login; text is a msgid. */
static void refuse_conn(struct conn *c, const char *code, const char *msgid)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "-ERR %s %s\r\n", code,
			 lang_tr(lang_find(c->lang), msgid));

	if (n > 0 && (size_t)n < sizeof(line))
		conntab_refuse(c->fd, line);
}

/* A login authd accepted that we cannot carry out now. */
static void login_tempfail(struct conn *c, const char *why)
{
	log_warnx("handoff failed: rip=%s: %s", c->rip, why);
	master_stats.logins_tempfailed++;
	refuse_conn(c, "[SYS/TEMP]", N_("Login failed temporarily, try again later"));
	conntab_release(c);
}

/* The ticket could not be redeemed. */
static void redeem_fail(struct conn *c, const char *why)
{
	master_stats.handoffs_failed++;
	login_tempfail(c, why);
}

static void authd_retry_later(void)
{
	struct timeval tv;

	if (H.authd_retry == NULL)
		return;		/* before handoff_start, or stopping */
	MTIME_TV(tv, POP3D_AUTHD_RETRY_MS);
	evtimer_add(H.authd_retry, &tv);
}

static void authd_drop(const char *why)
{
	if (H.authd == NULL)
		return;
	log_warnx("authd master connection lost: %s", why);
	bufferevent_free(H.authd);
	H.authd = NULL;
	H.authd_lost = true;
	master_stats.master_authd_lost++;
	for (struct conn *c = conntab_next(NULL); c != NULL; c = conntab_next(c))
		if (c->state == C_REDEEM)
			redeem_fail(c, "authd master connection lost");
	authd_retry_later();
}

/* Fills *out from the USER reply: every field checked, numbers strict. */
struct user_info {
	const char *user, *home, *maildrop;
	uid_t uid;
	gid_t gid;
};

static int parse_user(const struct proto_msg *msg, struct user_info *u)
{
	const char *s;
	uint64_t v;

	u->user = proto_get(msg, "user");
	u->home = proto_get(msg, "home");
	u->maildrop = proto_get(msg, "maildrop");
	if (u->user == NULL || u->user[0] == '\0' || strlen(u->user) > AUTH_MAX_USER)
		return -1;
	if ((s = proto_get(msg, "uid")) == NULL)
		u->uid = getuid();	/* unprivileged: no owner to switch to */
	else if (num_parse_u64(s, 0, 4294967294u, &v) == -1)
		return -1;
	else
		u->uid = (uid_t)v;
	if ((s = proto_get(msg, "gid")) == NULL)
		u->gid = getgid();
	else if (num_parse_u64(s, 0, 4294967294u, &v) == -1)
		return -1;
	else
		u->gid = (gid_t)v;
	if (privdrop_enabled() && (proto_get(msg, "uid") == NULL || proto_get(msg, "gid") == NULL))
		return -1;	/* as root we must know whom to become */
	return 0;
}

/* ---- session processes that serve again ----------------------------------------------- */

static void reports_read(void);

/* Books the end of c's session (its process has exited, killed by a
 * signal if killed, or has said it is free) and releases c. */
static void session_ended(struct conn *c, bool killed)
{
	/* Its report, if it sent one, is queued already (it was sent before
	 * the exit or SESSION_SPARE we are looking at): count it before the
	 * slot, and with it the pid, is released. */
	reports_read();
	stats_duration_add(mtime_ms() - c->started_ms);
	if (!c->opened && !c->maildrop_failed)
		master_stats.logins_session_error++;	/* ended before either word */
	if (c->kicked)
		;	/* counted as sessions_kicked */
	else if (!c->reported && killed)
		master_stats.sessions_killed++;
	else if (!c->reported)
		master_stats.sessions_failed++;
	conntab_release(c);
}

static struct sproc *sproc_of(pid_t pid)
{
	struct sproc *p;

	LIST_FOREACH(p, &H.sprocs, entry)
		if (p->pid == pid)
			return p;
	return NULL;
}

/* Forgets p and closes its channel: a spare then leaves (it sees EOF), a
 * busy one at the end of its session.  Its exit is reaped as any other. */
static void sproc_drop(struct sproc *p)
{
	LIST_REMOVE(p, entry);
	if (p->spare)
		H.nspares--;
	event_free(p->ev);
	if (p->timer != NULL)
		event_free(p->timer);
	close(p->chan);
	free(p);
}

static void drop_spares(void)
{
	struct sproc *p, *next;

	for (p = LIST_FIRST(&H.sprocs); p != NULL; p = next) {
		next = LIST_NEXT(p, entry);
		if (p->spare)
			sproc_drop(p);
	}
}

static void on_spare_timeout(evutil_socket_t fd, short what, void *arg)
{
	sproc_drop(arg);
}

static void on_sproc_chan(evutil_socket_t fd, short what, void *arg)
{
	struct sproc *p = arg;
	struct conn *c;
	struct timeval tv;
	int r;

	r = ipc_spare_recv(p->chan);
	if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (r != 1 || p->spare) {
		if (r != 0)
			log_warnx("session %ld: unexpected message; not reused", (long)p->pid);
		sproc_drop(p);		/* its session ends when it exits */
		return;
	}
	/* A session kicked just as it ended (the SIGTERM is on its way):
	 * its process must not serve anyone again. */
	bool kicked = false;
	if ((c = conntab_session(p->pid)) != NULL) {
		kicked = c->kicked;
		session_ended(c, false);
	}
	if (kicked || p->conf_gen != H.conf_gen ||
	    H.nspares >= H.conf->pop3d.session_spares) {
		sproc_drop(p);
		return;
	}
	p->spare = true;
	H.nspares++;
	MTIME_TV(tv, H.conf->pop3d.session_spare_timeout_ms);
	evtimer_add(p->timer, &tv);
}

/* Gives the login to a spare running as uid/gid, if there is one: first
 * one that last served the same user (it may still hold a true listing of
 * the maildrop: session.c, mailbox_open_warm), else any.  Returns its
 * pid, or -1. */
static pid_t spare_take(const struct session_job *j, int fd)
{
	struct sproc *p, *any = NULL;

	LIST_FOREACH(p, &H.sprocs, entry) {
		if (!p->spare || p->uid != j->uid || p->gid != j->gid)
			continue;
		if (strcmp(p->user, j->user) == 0)
			break;
		if (any == NULL)
			any = p;
	}
	if (p == NULL)
		p = any;
	if (p != NULL) {
		if (session_job_send(p->chan, j, fd) == -1) {
			log_warn("session %ld: cannot hand it a login", (long)p->pid);
			sproc_drop(p);
			return -1;
		}
		p->spare = false;
		H.nspares--;
		evtimer_del(p->timer);
		snprintf(p->user, sizeof(p->user), "%s", j->user);
		master_stats.session_reuses++;
		return p->pid;
	}
	return -1;
}

/* Starts the session of login j on fd: in a spare of the same ids, or in a
 * new process (with a channel, if processes serve more than one login).
 * Returns the pid, or -1 (logged). */
static pid_t session_start(const struct session_job *j, int fd)
{
	bool reuse = H.conf->pop3d.session_reuse > 1 && H.conf->pop3d.session_spares > 0;
	struct sproc *p;
	int sv[2] = { -1, -1 };
	pid_t pid;

	if (reuse && (pid = spare_take(j, fd)) != -1)
		return pid;
	if (reuse && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("socketpair");	/* this session then serves once */
		reuse = false;
	}
	pid = fork();
	if (pid == -1) {
		log_warn("fork");
		if (reuse) {
			close(sv[0]);
			close(sv[1]);
		}
		return -1;
	}
	if (pid == 0) {
		if (reuse)
			close(sv[0]);
		session_main(H.conf, j, fd, reuse ? sv[1] : -1, H.report_fd[1]);
	}
	master_stats.session_forks++;
	if (!reuse)
		return pid;
	close(sv[1]);
	sock_set_nonblock(sv[0], true);
	p = xcalloc(1, sizeof(*p));
	p->pid = pid;
	p->chan = sv[0];
	p->uid = j->uid;
	p->gid = j->gid;
	p->conf_gen = H.conf_gen;
	snprintf(p->user, sizeof(p->user), "%s", j->user);
	p->ev = event_new(H.base, sv[0], EV_READ | EV_PERSIST, on_sproc_chan, p);
	p->timer = evtimer_new(H.base, on_spare_timeout, p);
	if (p->ev == NULL || p->timer == NULL)
		fatalx("event_new");
	event_add(p->ev, NULL);
	LIST_INSERT_HEAD(&H.sprocs, p, entry);
	return pid;
}

/* What the session process needs of c and u, in one block. */
static void job_fill(struct session_job *j, const struct conn *c, const struct user_info *u)
{
	memset(j, 0, SESSION_JOB_HEADER_LEN);
	j->uid = (uint32_t)u->uid;
	j->gid = (uint32_t)u->gid;
	j->secured = c->secured;
	snprintf(j->method, sizeof(j->method), "%s", c->method);
	/* Each fits: AUTH_MAX_USER was checked, and no field of authd's
	 * reply is longer than the reply. */
	snprintf(j->user, sizeof(j->user), "%s", u->user);
	snprintf(j->home, sizeof(j->home), "%s", u->home != NULL ? u->home : "");
	snprintf(j->maildrop, sizeof(j->maildrop), "%s", u->maildrop != NULL ? u->maildrop : "");
	snprintf(j->rip, sizeof(j->rip), "%s", c->rip);
	snprintf(j->tls_info, sizeof(j->tls_info), "%s", c->secured ? c->tls_info : "");
	snprintf(j->lang, sizeof(j->lang), "%s", c->lang);
	j->data_len = (uint32_t)c->data_len;
	if (c->data_len > 0)
		memcpy(j->data, c->data, c->data_len);
}

static void redeem_done(struct conn *c, const struct proto_msg *msg)
{
	static struct session_job job;
	char user[POP3D_LOG_USER_MAX];
	struct user_info u;
	pid_t pid;

	if (strcmp(msg->cmd, "USER") != 0) {
		redeem_fail(c, "ticket not accepted by authd");
		return;
	}
	if (parse_user(msg, &u) == -1) {
		redeem_fail(c, "malformed USER reply");
		return;
	}
	master_stats.handoffs_ok++;
	log_token(u.user, user, sizeof(user));
	if (conntab_per_user(u.user) >= H.conf->pop3d.max_sessions_per_user) {
		log_warnx("refused user=%s rip=%s: max-sessions-per-user (%u) reached",
			  user, c->rip, H.conf->pop3d.max_sessions_per_user);
		master_stats.logins_refused[LOGIN_REFUSED_PER_USER]++;
		refuse_conn(c, "[IN-USE]", N_("Too many sessions for this user"));
		conntab_release(c);
		return;
	}
	if (login_too_soon(u.user)) {
		log_info("refused user=%s rip=%s: login-delay (%s s) not over", user, c->rip,
			 H.conf->pop3d.login_delay);
		master_stats.logins_refused[LOGIN_REFUSED_DELAY]++;
		refuse_conn(c, "[LOGIN-DELAY]", N_("Too soon since your last login"));
		conntab_release(c);
		return;
	}
	job_fill(&job, c, &u);
	pid = session_start(&job, c->fd);
	sodium_memzero(job.data, job.data_len);
	if (pid == -1) {
		login_tempfail(c, "cannot start a session");
		return;
	}
	/* The session process logs the login: before its logout, always.  It
	 * counts as ok once the session says its maildrop is open
	 * (SESSION_REPORT_OPENED), as a maildrop error if its report says so,
	 * and as a session error if it ends before either (session_ended). */
	c->started_ms = mtime_ms();
	c->reported = false;
	c->opened = false;
	c->maildrop_failed = false;
	close(c->fd);
	c->fd = -1;
	event_free(c->timer);
	c->timer = NULL;
	sodium_memzero(c->data, c->data_len);
	free(c->data);
	c->data = NULL;
	conntab_set_session(c, pid, u.user);
}

static void authd_send(struct proto_line *l)
{
	if (H.authd != NULL && proto_line_end(l) == 0)
		bufferevent_write(H.authd, l->buf, l->len);
}

/* WHO <serial>: a SESSION line per live session, then END. */
static void authd_who(const char *serial)
{
	uint64_t now_ms = mtime_ms(), n = 0;
	time_t now = time(NULL);
	struct proto_line l;

	for (struct conn *c = conntab_next(NULL); c != NULL; c = conntab_next(c)) {
		if (c->state != C_SESSION || c->user == NULL)
			continue;
		proto_line_start(&l, "SESSION");
		proto_line_add(&l, serial);
		proto_line_kv(&l, "user", c->user);
		proto_line_kv(&l, "rip", c->rip);
		proto_line_kvf(&l, "rport", "%u", c->rport);
		proto_line_kvf(&l, "start", "%lld",
			       (long long)(now - (time_t)((now_ms - c->started_ms) / 1000)));
		proto_line_kvf(&l, "pid", "%ld", (long)c->pid);
		proto_line_kv(&l, "tls", c->secured ? "yes" : "no");
		authd_send(&l);
		n++;
	}
	proto_line_start(&l, "END");
	proto_line_add(&l, serial);
	proto_line_kvf(&l, "n", "%llu", (unsigned long long)n);
	authd_send(&l);
}

/* KICK <serial> user=U: ends U's sessions (SIGTERM), then KICKED. */
static void authd_kick(const char *serial, const char *user)
{
	char tok[LOG_TOKEN_SIZE(AUTH_MAX_USER)];
	struct proto_line l;
	unsigned n = 0;

	for (struct conn *c = conntab_next(NULL); c != NULL; c = conntab_next(c)) {
		if (c->state != C_SESSION || c->user == NULL || strcmp(c->user, user) != 0)
			continue;
		if (!c->kicked && kill(c->pid, SIGTERM) == -1) {
			log_warn("kick: session pid=%ld", (long)c->pid);
			continue;
		}
		c->kicked = true;
		n++;
	}
	log_info("kick: user=%s: %u session%s ended",
		 log_token(user, tok, sizeof(tok)), n, n == 1 ? "" : "s");
	proto_line_start(&l, "KICKED");
	proto_line_add(&l, serial);
	proto_line_kvf(&l, "n", "%u", n);
	authd_send(&l);
}

/* authd's own questions.  Returns 0, or -1 if malformed. */
static int authd_question(const struct proto_msg *msg)
{
	const char *user;

	if (msg->nargs < 1 || !proto_id_valid(msg->args[0]))
		return -1;
	if (strcmp(msg->cmd, "WHO") == 0) {
		authd_who(msg->args[0]);
		return 0;
	}
	user = proto_get(msg, "user");
	if (user == NULL || user[0] == '\0' || strlen(user) > AUTH_MAX_USER ||
	    proto_has_duplicates(msg))
		return -1;
	authd_kick(msg->args[0], user);
	return 0;
}

static void on_authd_read(struct bufferevent *bev, void *arg)
{
	static char line[AUTHD_MAX_LINE + 1];
	size_t len;
	bool has_nul;

	for (;;) {
		struct proto_msg msg;
		const char *err;
		uint64_t id;
		struct conn *c;
		enum line_status st = line_read(bufferevent_get_input(bev), line, AUTHD_MAX_LINE,
						&len, &has_nul);
		if (st == LINE_NONE)
			return;
		if (st == LINE_TOOLONG || has_nul || proto_parse(line, len, &msg, &err) == -1) {
			authd_drop("malformed line");
			return;
		}
		if (strcmp(msg.cmd, "VERSION") == 0)
			continue;
		if (strcmp(msg.cmd, "WHO") == 0 || strcmp(msg.cmd, "KICK") == 0) {
			if (authd_question(&msg) == -1) {
				authd_drop("malformed request");
				return;
			}
			if (H.authd == NULL)
				return;
			continue;
		}
		if (msg.nargs < 1 || num_parse_u64(msg.args[0], 0, UINT64_MAX, &id) == -1) {
			authd_drop("reply without a request id");
			return;
		}
		c = conntab_find(id);
		if (c == NULL || c->state != C_REDEEM)
			continue;	/* timed out meanwhile */
		redeem_done(c, &msg);
	}
}

static void on_authd_event(struct bufferevent *bev, short what, void *arg)
{
	authd_drop((what & BEV_EVENT_EOF) ? "closed by authd" : "I/O error");
}

/* Connects to authd's master socket unless connected.  quiet: a retry in
 * the background, logged once until it succeeds (a login that needs the
 * connection always logs).  Returns 0 or -1 (a retry is scheduled). */
static int authd_connect(bool quiet)
{
	struct proto_line l;
	int fd;

	if (H.authd != NULL)
		return 0;
	fd = sock_unix_connect(H.conf->pop3d.master_auth_socket, false);
	if (fd == -1) {
		if (!quiet || !H.authd_quiet)
			log_warn("cannot connect to authd master socket %s%s",
				 H.conf->pop3d.master_auth_socket,
				 quiet ? " (retrying in the background)" : "");
		H.authd_quiet |= quiet;
		authd_retry_later();
		return -1;
	}
	H.authd_quiet = false;
	evutil_make_socket_nonblocking(fd);
	H.authd = bufferevent_socket_new(H.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (H.authd == NULL)
		fatalx("bufferevent_socket_new");
	bufferevent_setcb(H.authd, on_authd_read, NULL, on_authd_event, NULL);
	bufferevent_enable(H.authd, EV_READ);
	proto_line_start(&l, "VERSION");
	proto_line_add(&l, "1");
	proto_line_add(&l, "0");
	proto_line_kv(&l, "sessions", "yes");	/* we answer WHO and KICK */
	proto_line_end(&l);
	bufferevent_write(H.authd, l.buf, l.len);
	if (H.authd_lost) {
		H.authd_lost = false;
		master_stats.master_authd_reconnects++;
	}
	return 0;
}

static void on_redeem_timeout(evutil_socket_t fd, short what, void *arg)
{
	redeem_fail(arg, "authd did not answer the REDEEM in time");
}

void handoff_redeem(struct conn *c, const struct ipc_msg *m, int fd, pid_t fe_pid)
{
	struct proto_line l;
	struct timeval tv;
	char id[24];

	c->state = C_REDEEM;
	c->fd = fd;
	c->fe_pid = fe_pid;
	c->secured = m->secured != 0;
	snprintf(c->tls_info, sizeof(c->tls_info), "%s", m->tls_info);
	snprintf(c->method, sizeof(c->method), "%s", m->method);
	snprintf(c->lang, sizeof(c->lang), "%s", m->lang);
	if (m->data_len > 0) {
		c->data = xmalloc(m->data_len);
		memcpy(c->data, m->data, m->data_len);
		c->data_len = m->data_len;
	}
	c->timer = evtimer_new(H.base, on_redeem_timeout, c);
	if (c->timer == NULL)
		fatalx("evtimer_new");
	if (authd_connect(false) == -1) {
		redeem_fail(c, "authd master socket unavailable");
		return;
	}
	snprintf(id, sizeof(id), "%llu", (unsigned long long)conntab_id(c));
	proto_line_start(&l, "REDEEM");
	proto_line_add(&l, id);
	proto_line_kv(&l, "ticket", m->ticket);
	proto_line_kvf(&l, "pid", "%ld", (long)c->fe_pid);
	if (proto_line_end(&l) == -1 || bufferevent_write(H.authd, l.buf, l.len) == -1) {
		redeem_fail(c, "cannot send REDEEM");
		return;
	}
	MTIME_TV(tv, POP3D_REDEEM_TIMEOUT_MS);
	evtimer_add(c->timer, &tv);
}

/* ---- session reports ----------------------------------------------------------------- */

/* Reads the session reports queued on the report socket (decoded by
 * ipc_report_recv).  The sender is the pid the kernel names
 * (SCM_CREDENTIALS); one report per live session counts, anything else is
 * dropped. */
static void reports_read(void)
{
	for (int i = 0; i < 256; i++) {
		struct session_report r;
		struct conn *c;
		pid_t pid;
		int n;

		n = ipc_report_recv(H.report_fd[0], &r, &pid);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EPROTO) {
			log_debug("session report: malformed, dropped");
			continue;
		}
		if (n <= 0)
			return;		/* EAGAIN: all read */
		c = conntab_session(pid);
		if (c == NULL || c->reported)
			continue;
		if (r.kind == SESSION_REPORT_OPENED || r.kind == SESSION_REPORT_OPENED_WARM) {
			/* once per session, and never after a maildrop error */
			if (!c->opened) {
				master_stats.logins_ok++;
				if (r.kind == SESSION_REPORT_OPENED_WARM)
					master_stats.warm_listings++;
			}
			c->opened = true;
			continue;
		}
		c->reported = true;
		if (r.end == SESSION_END_MAILDROP && !c->opened) {
			c->maildrop_failed = true;
			master_stats.logins_maildrop_error++;
		} else if (!c->opened) {
			/* it served, but its SESSION_REPORT_OPENED was lost
			 * (send_report gives up on a busy master) */
			c->opened = true;
			master_stats.logins_ok++;
		}
		stats_session_add(&r, !c->secured);
	}
}

static void on_report(evutil_socket_t fd, short what, void *arg)
{
	reports_read();
}

/* ---- the master's calls ----------------------------------------------------------------- */

void handoff_init(void)
{
	/* The sessions' reports (stats.c): a connection-oriented socket, so
	 * many sessions ending at once queue up to the send buffer instead
	 * of a datagram queue's ten; SO_PASSCRED makes the kernel name each
	 * sender. */
	int on = 1;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, H.report_fd) == -1 ||
	    setsockopt(H.report_fd[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == -1 ||
	    sock_set_nonblock(H.report_fd[0], true) == -1)
		fatal("session report socket");
}

static void on_authd_retry(evutil_socket_t fd, short what, void *arg)
{
	authd_connect(true);
}

void handoff_start(struct event_base *base)
{
	H.base = base;
	H.report_ev = event_new(base, H.report_fd[0], EV_READ | EV_PERSIST, on_report, NULL);
	if (H.report_ev == NULL)
		fatalx("event_new");
	event_add(H.report_ev, NULL);
	H.authd_retry = evtimer_new(base, on_authd_retry, NULL);
	if (H.authd_retry == NULL)
		fatalx("evtimer_new");
	/* Now rather than at the first login: authd's kicks come this way.
	 * authd may start after us; then the retry finds it. */
	H.authd_quiet = true;	/* not worth a warning yet */
	authd_connect(true);
}

void handoff_configure(const struct config *conf, uint64_t login_delay_ms)
{
	H.conf = conf;
	H.login_delay_ms = login_delay_ms;
	/* Spares run with the old settings: the next logins fork anew. */
	H.conf_gen++;
	drop_spares();
}

void handoff_child_exited(pid_t pid, int status)
{
	struct sproc *p;
	struct conn *c;

	if ((p = sproc_of(pid)) != NULL)
		sproc_drop(p);
	c = conntab_session(pid);
	if (c == NULL)
		return;
	if (c->kicked) {
		char tok[LOG_TOKEN_SIZE(AUTH_MAX_USER)];

		log_info("session user=%s pid=%ld ended by a kick",
			 log_token(c->user, tok, sizeof(tok)), (long)pid);
		master_stats.sessions_kicked++;
	} else if (WIFSIGNALED(status)) {
		log_warnx("session user=%s pid=%ld killed by signal %d", c->user, (long)pid,
			  WTERMSIG(status));
	}
	session_ended(c, WIFSIGNALED(status));
}

void handoff_stop(void)
{
	if (H.authd_retry != NULL) {
		event_free(H.authd_retry);
		H.authd_retry = NULL;
	}
	for (struct conn *c = conntab_next(NULL); c != NULL; c = conntab_next(c))
		if (c->state == C_SESSION)
			kill(c->pid, SIGTERM);
	struct sproc *p;

	LIST_FOREACH(p, &H.sprocs, entry)
		if (p->spare)
			kill(p->pid, SIGTERM);
}

void handoff_reports_read(void)
{
	reports_read();
}

unsigned handoff_spares(void)
{
	return H.nspares;
}
