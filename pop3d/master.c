/*
 * master.c - pop3d's master process: listeners, front ends, handoffs.
 *
 * Runs as root when started so (this file and privdrop.c are the only code
 * that does).  It never reads a byte a client sent: it accepts, counts
 * and passes connections to front ends, decodes front-end messages with
 * the strict checks of ipc.c, redeems tickets with authd over the master
 * socket, and starts sessions: in a spare session process of the login's
 * uid and gid if one waits, else in a new one.
 *
 * DESIGN
 * - Connections are counted here, from accept to the end of their session,
 *   so max-connections and max-connections-per-ip hold across all front
 *   ends; max-sessions-per-user is counted over live sessions.
 * - A connection's id is (generation << 32 | slot), so a stale id from a
 *   front end (a connection already ended) never names a newer one.
 * - The pid sent with REDEEM is the pid of the front end whose channel
 *   carried the handoff, as the master knows it: a front end cannot claim
 *   another's ticket.
 * - A front end that dies or retires (lost authd) is replaced, with a
 *   back-off that doubles while replacements die young.  Sessions are the
 *   master's children, so they outlive any front end.
 * - TLS lives in the front ends.  A connection from a listen-tls port
 *   goes to a front end marked as such (we cannot speak TLS, so a refused
 *   one is just closed).  A TLS login hands us one end of a socketpair
 *   that its front end relays; the connection stays counted on that front
 *   end (its load) until the session ends.  The master never loads a
 *   certificate or key (tls.c explains why); it only checks them at
 *   start-up (and before a reload) in a child that exits.  It does hold
 *   the session-ticket keys that all front ends share: drawn before the
 *   front ends are forked, rotated every tls-ticket-key-lifetime
 *   (ticket_keys_setup, on_ticket_rotate) and pushed to every front end
 *   (IPC_TICKET_KEYS); sessions wipe their copy.  Started as root, the
 *   master makes itself non-dumpable before it reads the configuration.
 * - Counters: the master counts what it sees in master_stats; front ends
 *   send snapshots of theirs over their channel (IPC_STATS) and sessions a
 *   report when they end, on one SOCK_SEQPACKET socket they all share
 *   (report_fd), the sender named by the kernel (SCM_CREDENTIALS).
 *   stats.c explains the whole scheme.
 * - Session processes serve up to session-reuse logins of their uid, one
 *   after another (a fork costs more than the rest of a cached login).
 *   Each has its own channel (struct sproc): when its session ends it says
 *   SESSION_SPARE there (after its report), the master books the end and
 *   keeps it as a spare, at most session-spares of them, each for at most
 *   session-spare-timeout; the next login with the same uid and gid gets
 *   it (struct session_job, with the client fd).  Only the master decides
 *   when a spare goes (it closes the channel), so a login is never sent to
 *   a process that has just chosen to leave.  docs/pop3d.md says why equal
 *   ids make reuse safe.
 * - Reload (SIGHUP): the file is loaded and checked in full (TLS files in
 *   a child, as at start-up) before anything changes; a bad one is refused
 *   and logged, and the running configuration stays.  What the master
 *   applies itself (limits, login-delay, logging, the maildrop template
 *   and first-valid-uid for new sessions, the stats socket's group) takes
 *   effect at once.  Front ends, whose settings were fixed when they were
 *   forked, are all replaced: each slot gets a new front end, which takes
 *   every new connection from then on and reads the certificates again,
 *   while the old ones are retired (IPC_RETIRE) and leave once their
 *   clients are done, TLS relays included.  Sessions keep running with
 *   the settings they started with.  What cannot change without a restart
 *   (listeners, socket paths, login-user, login-chroot: bound or looked up
 *   as root at start-up) keeps its running value and is named in the log.
 *   SIGUSR1 reopens the log file and, with log-target = file, replaces the
 *   front ends the same way, since they hold the old file open and cannot
 *   reopen it from their chroot.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "common/config.h"
#include "common/line.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/notify.h"
#include "common/num.h"
#include "common/privsep.h"
#include "common/proctitle.h"
#include "common/proto.h"
#include "common/sock.h"
#include "pop3d/pop3d.h"

#define COUNT_BUCKETS 4096

enum conn_state { C_FREE, C_PREAUTH, C_REDEEM, C_SESSION };

struct frontend;

struct conn {
	uint32_t gen;
	enum conn_state state;
	struct frontend *fe;		/* C_PREAUTH; later if it relays TLS */
	char rip[64];
	unsigned rport;
	/* C_REDEEM */
	int fd;
	pid_t fe_pid;
	struct event *timer;
	uint8_t *data;
	size_t data_len;
	char method[8];
	bool secured;
	char tls_info[POP3D_TLS_INFO_MAX];
	/* C_SESSION */
	pid_t pid;
	char *user;
	uint64_t started_ms;		/* fork of the session */
	bool reported;			/* its report came */
	bool opened;			/* it said its maildrop is open */
	bool maildrop_failed;		/* its report: SESSION_END_MAILDROP */
	uint32_t idx;			/* own slot in M.conns */
	uint32_t next_free;
};

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
	unsigned conf_gen;		/* M.conf_gen when it was forked */
	bool spare;
	struct sproc *next;
};

struct frontend {
	pid_t pid;
	int chan;
	struct event *ev;
	bool retired;
	size_t nconns;
	uint64_t started_ms;
	struct fe_stats st;		/* its latest IPC_STATS snapshot */
	struct frontend *next;
};

/* A string -> count table (remote addresses, user names; for
 * login-delay, user names -> time of the last login in `stamp`). */
struct count_entry {
	char *key;
	unsigned n;
	uint64_t stamp;
	struct count_entry *next;
};

struct slot {
	struct frontend *fe;		/* NULL while waiting to restart */
	struct event *restart_ev;
	uint64_t backoff_ms;
};

static struct {
	struct config *conf;		/* replaced by a reload */
	char *conf_path;		/* absolute, for reloads */
	bool foreground;
	struct event_base *base;
	int listen_fds[2 * CONFIG_MAX_LISTEN];		/* listen, then listen-tls */
	bool listen_tls[2 * CONFIG_MAX_LISTEN];
	struct event *listen_evs[2 * CONFIG_MAX_LISTEN];
	size_t nlisten;
	char *tls_addrs[CONFIG_MAX_LISTEN];		/* listen-tls, split */
	size_t ntls_addrs;
	int stats_fd;			/* owned by stats.c once served */
	int report_fd[2];		/* sessions write [1], the master reads [0] */
	struct event *report_ev;
	struct slot *slots;
	unsigned nslots;
	struct frontend *fes;		/* all live front ends */
	struct conn **conns;		/* records never move: timers point at them */
	uint32_t nconns_cap, free_head, nactive;
	struct count_entry *ips[COUNT_BUCKETS], *users[COUNT_BUCKETS];
	struct count_entry *last_login[COUNT_BUCKETS];
	size_t nlast_login;
	uint64_t login_delay_ms;	/* 0: no LOGIN-DELAY */
	struct bufferevent *authd;	/* master socket, NULL if not connected */
	bool authd_lost;		/* it was connected once and broke */
	uid_t login_uid;
	gid_t login_gid;
	uint64_t started_ms;
	struct sproc *sprocs;		/* session processes with a channel */
	unsigned nspares;
	unsigned conf_gen;		/* counts reloads: spares of an older
					 * configuration are not reused */
	struct event *ticket_ev;	/* rotates the TLS session-ticket keys */
	uint64_t ticket_lifetime_ms;	/* ... at this period */
} M;

#define NO_SLOT UINT32_MAX

static void spawn_frontend(unsigned slot);

/* ---- counters ------------------------------------------------------------- */

static unsigned count_hash(const char *s)
{
	unsigned h = 5381;

	for (; *s != '\0'; s++)
		h = h * 33 + (unsigned char)*s;
	return h % COUNT_BUCKETS;
}

static unsigned count_get(struct count_entry **t, const char *key)
{
	for (struct count_entry *e = t[count_hash(key)]; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->n;
	return 0;
}

static void count_add(struct count_entry **t, const char *key, int delta)
{
	struct count_entry **pp = &t[count_hash(key)], *e;

	for (; *pp != NULL; pp = &(*pp)->next)
		if (strcmp((*pp)->key, key) == 0)
			break;
	if (*pp == NULL) {
		if (delta <= 0)
			return;
		e = xcalloc(1, sizeof(*e));
		e->key = xstrdup(key);
		*pp = e;
	}
	e = *pp;
	e->n = (unsigned)((int)e->n + delta);
	if (e->n == 0) {
		*pp = e->next;
		free(e->key);
		free(e);
	}
}

/* LOGIN-DELAY (RFC 2449 section 6.8): true if user logged in less than
 * login-delay ago; otherwise records this login.  Entries older than the
 * delay are swept whenever the table has doubled since the last sweep. */
static bool login_too_soon(const char *user)
{
	static size_t sweep_at = 1024;
	uint64_t now = mtime_ms();
	struct count_entry **pp = &M.last_login[count_hash(user)], *e;

	if (M.login_delay_ms == 0)
		return false;
	for (e = *pp; e != NULL; e = e->next)
		if (strcmp(e->key, user) == 0)
			break;
	if (e != NULL) {
		if (now - e->stamp < M.login_delay_ms)
			return true;
		e->stamp = now;
		return false;
	}
	if (M.nlast_login >= sweep_at) {
		for (size_t b = 0; b < COUNT_BUCKETS; b++)
			for (struct count_entry **q = &M.last_login[b]; *q != NULL;) {
				struct count_entry *x = *q;
				if (now - x->stamp >= M.login_delay_ms) {
					*q = x->next;
					free(x->key);
					free(x);
					M.nlast_login--;
				} else {
					q = &x->next;
				}
			}
		sweep_at = M.nlast_login * 2 > 1024 ? M.nlast_login * 2 : 1024;
	}
	e = xcalloc(1, sizeof(*e));
	e->key = xstrdup(user);
	e->stamp = now;
	e->next = *pp;
	*pp = e;
	M.nlast_login++;
	return false;
}

/* ---- connections ---------------------------------------------------------- */

static uint64_t conn_id(const struct conn *c)
{
	return (uint64_t)c->gen << 32 | c->idx;
}

static struct conn *conn_find(uint64_t id)
{
	uint32_t idx = (uint32_t)id;

	if (idx >= M.nconns_cap || M.conns[idx]->state == C_FREE ||
	    M.conns[idx]->gen != (uint32_t)(id >> 32))
		return NULL;
	return M.conns[idx];
}

static struct conn *conn_new(const char *rip, unsigned rport)
{
	struct conn *c;

	if (M.free_head == NO_SLOT) {
		uint32_t old = M.nconns_cap, cap = old == 0 ? 64 : old * 2;
		M.conns = realloc(M.conns, cap * sizeof(*M.conns));
		if (M.conns == NULL)
			fatal("realloc");
		for (uint32_t i = old; i < cap; i++) {
			M.conns[i] = xcalloc(1, sizeof(**M.conns));
			M.conns[i]->idx = i;
			M.conns[i]->fd = -1;
			M.conns[i]->next_free = i + 1 < cap ? i + 1 : NO_SLOT;
		}
		M.free_head = old;
		M.nconns_cap = cap;
	}
	c = M.conns[M.free_head];
	M.free_head = c->next_free;
	c->gen++;
	c->state = C_PREAUTH;
	c->fd = -1;
	snprintf(c->rip, sizeof(c->rip), "%s", rip);
	c->rport = rport;
	count_add(M.ips, rip, 1);
	M.nactive++;
	return c;
}

static void conn_release(struct conn *c)
{
	if (c->fe != NULL)
		c->fe->nconns--;
	if (c->state == C_SESSION && c->user != NULL)
		count_add(M.users, c->user, -1);
	if (c->fd != -1)
		close(c->fd);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->data != NULL) {
		sodium_memzero(c->data, c->data_len);
		free(c->data);
	}
	free(c->user);
	count_add(M.ips, c->rip, -1);
	M.nactive--;
	uint32_t gen = c->gen, idx = c->idx;
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->idx = idx;
	c->fd = -1;
	c->state = C_FREE;
	c->next_free = M.free_head;
	M.free_head = idx;
}

/* A one-line answer to a client we are not going to serve.  Best effort:
 * the socket is non-blocking and the line is far below its buffer. */
static void refuse(int fd, const char *line)
{
	ssize_t n = send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n == -1)
		log_debug("refuse: %s", strerror(errno));
	else
		master_stats.bytes_sent += (uint64_t)n;
}

/* ---- accepting -------------------------------------------------------------- */

static struct frontend *pick_frontend(void)
{
	struct frontend *best = NULL;

	for (struct frontend *fe = M.fes; fe != NULL; fe = fe->next)
		if (!fe->retired && (best == NULL || fe->nconns < best->nconns))
			best = fe;
	return best;
}

/* A one-line answer to a client we do not serve, where it can be read:
 * on a listen-tls port the client expects a TLS handshake, not text. */
static void refuse_new(int fd, bool tls, const char *line)
{
	if (!tls)
		refuse(fd, line);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	bool tls = arg != NULL;

	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct ipc_msg m;
		struct frontend *fe;
		struct conn *c;
		enum refuse_reason why;
		char rip[64];
		unsigned rport;
		int fd;

		fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED &&
			    errno != EINTR)
				log_warn("accept");
			return;
		}
		sock_addr_str((struct sockaddr *)&ss, rip, sizeof(rip), &rport);
		if (M.nactive >= M.conf->pop3d.max_connections) {
			log_warnx("refused %s: max-connections (%u) reached", rip,
				  M.conf->pop3d.max_connections);
			refuse_new(fd, tls, "-ERR [SYS/TEMP] Too many connections, try again later\r\n");
			why = REFUSE_MAX_CONNECTIONS;
			goto refused;
		}
		if (count_get(M.ips, rip) >= M.conf->pop3d.max_connections_per_ip) {
			log_warnx("refused %s: max-connections-per-ip (%u) reached", rip,
				  M.conf->pop3d.max_connections_per_ip);
			refuse_new(fd, tls, "-ERR [SYS/TEMP] Too many connections from your address\r\n");
			why = REFUSE_PER_IP;
			goto refused;
		}
		fe = pick_frontend();
		if (fe == NULL) {
			refuse_new(fd, tls, "-ERR [SYS/TEMP] Server is restarting, try again later\r\n");
			why = REFUSE_NO_FRONTEND;
			goto refused;
		}
		c = conn_new(rip, rport);
		memset(&m, 0, IPC_HEADER_LEN);
		m.type = IPC_NEWCONN;
		m.conn_id = conn_id(c);
		m.tls_port = tls;
		if (ipc_send(fe->chan, &m, fd) == -1) {
			log_warn("cannot pass a connection to front end %ld", (long)fe->pid);
			refuse_new(fd, tls, "-ERR [SYS/TEMP] Internal error, try again later\r\n");
			conn_release(c);
			why = REFUSE_INTERNAL;
			goto refused;
		}
		c->fe = fe;
		fe->nconns++;
		master_stats.accepted++;
		close(fd);
		continue;
refused:
		master_stats.refused[why]++;
		close(fd);
	}
}

/* ---- the authd master socket: REDEEM --------------------------------------------- */

/* A login authd accepted that we cannot carry out now. */
static void login_tempfail(struct conn *c, const char *why)
{
	log_warnx("handoff failed: rip=%s: %s", c->rip, why);
	master_stats.logins_tempfailed++;
	refuse(c->fd, "-ERR [SYS/TEMP] Login failed temporarily, try again later\r\n");
	conn_release(c);
}

/* The ticket could not be redeemed. */
static void redeem_fail(struct conn *c, const char *why)
{
	master_stats.handoffs_failed++;
	login_tempfail(c, why);
}

static void authd_drop(const char *why)
{
	if (M.authd == NULL)
		return;
	log_warnx("authd master connection lost: %s", why);
	bufferevent_free(M.authd);
	M.authd = NULL;
	M.authd_lost = true;
	master_stats.master_authd_lost++;
	for (uint32_t i = 0; i < M.nconns_cap; i++)
		if (M.conns[i]->state == C_REDEEM)
			redeem_fail(M.conns[i], "authd master connection lost");
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

static void child_signals(void)
{
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	/* Reload and log rotation are the master's business: a signal sent
	 * to every pop3d process (pkill -HUP pop3d) must not end the others. */
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
}

/* Session: sends its report to the master, waiting at most
 * POP3D_REPORT_TIMEOUT_MS for room (the socket is shared by all sessions
 * and the master may be busy; the counts are not worth more). */
static void send_report(const struct session_report *r)
{
	for (int tries = 0; tries < 2; tries++) {
		struct pollfd pfd = { .fd = M.report_fd[1], .events = POLLOUT };

		if (send(M.report_fd[1], r, sizeof(*r), MSG_DONTWAIT | MSG_NOSIGNAL) ==
		    (ssize_t)sizeof(*r))
			return;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
			break;
		if (tries == 0 && poll(&pfd, 1, POP3D_REPORT_TIMEOUT_MS) == -1)
			break;
	}
	log_debug("session: report to the master lost: %s", strerror(errno));
}

/* Session: tells the master its maildrop is open (a login that counts as
 * ok).  The report socket orders it before the session's final report. */
static void send_opened(void *ctx)
{
	struct session_report r;

	memset(&r, 0, sizeof(r));
	r.kind = SESSION_REPORT_OPENED;
	send_report(&r);
}

/* One login in a session process: returns when the session has ended and
 * its report is sent.  A maildrop template that cannot be expanded is a
 * maildrop error like any other (session_run answers and logs it). */
static void session_serve(const struct session_job *j, int fd)
{
	struct session_params p;
	struct session_report report;
	char path[4096];
	char user[POP3D_LOG_USER_MAX];
	const char *err;

	log_token(j->user, user, sizeof(user));
	proctitle_set("pop3d: session %s %s", user, j->rip);
	/* fixed format, documented in pop3d(8) (LOGGING) */
	log_info("login: user=%s rip=%s method=%s secured=%s%s%s pid=%ld", user, j->rip,
		 j->method, j->secured ? "yes" : "no", j->secured ? " tls=" : "",
		 j->secured ? j->tls_info : "", (long)getpid());
	memset(&p, 0, sizeof(p));
	if (maildir_expand(j->maildrop[0] != '\0' ? j->maildrop : M.conf->pop3d.maildrop,
			   j->user, j->home[0] != '\0' ? j->home : NULL, path, sizeof(path),
			   &err) == -1) {
		p.maildrop = NULL;
		p.maildrop_error = err;
	} else {
		p.maildrop = path;
	}
	p.fd = fd;
	p.user = j->user;
	p.opened = send_opened;
	p.rip = j->rip;
	p.data = j->data;
	p.data_len = j->data_len;
	p.secured = j->secured != 0;
	p.tls_info = j->tls_info;
	p.conf = M.conf;
	session_run(&p, &report);	/* closes fd */
	send_report(&report);
}

/* A session process that may serve again: says its session has ended and
 * waits for the next login the master gives it, or for the end of the
 * channel (the master has enough spares, this one waited too long, a
 * reload, the master is gone).  Returns 0 with *j and *fd_r, or -1. */
static int spare_wait(int chan, struct session_job *j, int *fd_r)
{
	uint32_t spare = SESSION_SPARE;

	if (send(chan, &spare, sizeof(spare), MSG_NOSIGNAL) != (ssize_t)sizeof(spare))
		return -1;
	proctitle_set("pop3d: session (spare)");
	switch (session_job_recv(chan, j, fd_r)) {
	case 1:
		break;
	case 0:
		return -1;
	default:
		log_warn("session: bad login from the master");
		return -1;
	}
	/* The master picked us for these ids; a mismatch is a bug, and must
	 * not become another owner's session. */
	if (privdrop_enabled() && (j->uid != getuid() || j->gid != getgid())) {
		log_warnx("session: given uid %lu gid %lu, running as %lu/%lu",
			  (unsigned long)j->uid, (unsigned long)j->gid,
			  (unsigned long)getuid(), (unsigned long)getgid());
		close(*fd_r);
		return -1;
	}
	return 0;
}

/* The session process: from here on, one mailbox owner, one client at a
 * time.  chan is its channel to the master, or -1 if it serves only this
 * login (session-reuse = 1). */
static void __attribute__((noreturn)) session_child(const struct session_job *first, int fd,
						     int chan)
{
	static struct session_job job;
	const struct session_job *j = first;
	char user[POP3D_LOG_USER_MAX];
	const char *err;
	int keep[] = { fd, M.report_fd[1], chan };

	child_signals();
	tls_ticket_keys_wipe();
	/* Nothing of the master's: not its listeners, not its connections
	 * to authd, to front ends, to stats readers, to other sessions. */
	privsep_close_fds(keep, sizeof(keep) / sizeof(keep[0]));
	if (privdrop_session(j->uid, j->gid, M.conf->pop3d.first_valid_uid, &err) == -1) {
		log_warnx("session: user=%s uid=%lu: %s",
			  log_token(j->user, user, sizeof(user)), (unsigned long)j->uid, err);
		refuse(fd, "-ERR [SYS/PERM] Login not permitted for this account\r\n");
		_exit(1);
	}
	for (unsigned served = 1;; served++) {
		session_serve(j, fd);
		if (chan == -1 || served >= M.conf->pop3d.session_reuse ||
		    spare_wait(chan, &job, &fd) == -1)
			_exit(0);
		j = &job;
	}
}

/* ---- session processes that serve again ----------------------------------------------- */

static void reports_read(void);
static struct conn *session_of(pid_t pid);

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
	if (!c->reported && killed)
		master_stats.sessions_killed++;
	else if (!c->reported)
		master_stats.sessions_failed++;
	conn_release(c);
}

static struct sproc *sproc_of(pid_t pid)
{
	for (struct sproc *p = M.sprocs; p != NULL; p = p->next)
		if (p->pid == pid)
			return p;
	return NULL;
}

/* Forgets p and closes its channel: a spare then leaves (it sees EOF), a
 * busy one at the end of its session.  Its exit is reaped as any other. */
static void sproc_drop(struct sproc *p)
{
	struct sproc **pp;

	for (pp = &M.sprocs; *pp != p; pp = &(*pp)->next)
		;
	*pp = p->next;
	if (p->spare)
		M.nspares--;
	event_free(p->ev);
	if (p->timer != NULL)
		event_free(p->timer);
	close(p->chan);
	free(p);
}

static void drop_spares(void)
{
	struct sproc *p, *next;

	for (p = M.sprocs; p != NULL; p = next) {
		next = p->next;
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
	uint32_t msg;
	ssize_t n;
	int xfd;

	n = sock_recv_fd(p->chan, &msg, sizeof(msg), &xfd);
	if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (xfd != -1)
		close(xfd);
	if (n != (ssize_t)sizeof(msg) || xfd != -1 || msg != SESSION_SPARE || p->spare) {
		if (n != 0)
			log_warnx("session %ld: unexpected message; not reused", (long)p->pid);
		sproc_drop(p);		/* its session ends when it exits */
		return;
	}
	if ((c = session_of(p->pid)) != NULL)
		session_ended(c, false);
	if (p->conf_gen != M.conf_gen || M.nspares >= M.conf->pop3d.session_spares) {
		sproc_drop(p);
		return;
	}
	p->spare = true;
	M.nspares++;
	MTIME_TV(tv, M.conf->pop3d.session_spare_timeout_ms);
	evtimer_add(p->timer, &tv);
}

/* Gives the login to a spare running as uid/gid, if there is one.
 * Returns its pid, or -1. */
static pid_t spare_take(const struct session_job *j, int fd)
{
	for (struct sproc *p = M.sprocs; p != NULL; p = p->next) {
		if (!p->spare || p->uid != j->uid || p->gid != j->gid)
			continue;
		if (session_job_send(p->chan, j, fd) == -1) {
			log_warn("session %ld: cannot hand it a login", (long)p->pid);
			sproc_drop(p);
			return -1;
		}
		p->spare = false;
		M.nspares--;
		evtimer_del(p->timer);
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
	bool reuse = M.conf->pop3d.session_reuse > 1 && M.conf->pop3d.session_spares > 0;
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
		session_child(j, fd, reuse ? sv[1] : -1);
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
	p->conf_gen = M.conf_gen;
	p->ev = event_new(M.base, sv[0], EV_READ | EV_PERSIST, on_sproc_chan, p);
	p->timer = evtimer_new(M.base, on_spare_timeout, p);
	if (p->ev == NULL || p->timer == NULL)
		fatalx("event_new");
	event_add(p->ev, NULL);
	p->next = M.sprocs;
	M.sprocs = p;
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
	if (count_get(M.users, u.user) >= M.conf->pop3d.max_sessions_per_user) {
		log_warnx("refused user=%s rip=%s: max-sessions-per-user (%u) reached",
			  user, c->rip, M.conf->pop3d.max_sessions_per_user);
		master_stats.logins_refused[LOGIN_REFUSED_PER_USER]++;
		refuse(c->fd, "-ERR [IN-USE] Too many sessions for this user\r\n");
		conn_release(c);
		return;
	}
	if (login_too_soon(u.user)) {
		log_info("refused user=%s rip=%s: login-delay (%s s) not over", user, c->rip,
			 M.conf->pop3d.login_delay);
		master_stats.logins_refused[LOGIN_REFUSED_DELAY]++;
		refuse(c->fd, "-ERR [LOGIN-DELAY] Too soon since your last login\r\n");
		conn_release(c);
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
	c->state = C_SESSION;
	c->pid = pid;
	c->user = xstrdup(u.user);
	count_add(M.users, u.user, 1);
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
		if (msg.nargs < 1 || num_parse_u64(msg.args[0], 0, UINT64_MAX, &id) == -1) {
			authd_drop("reply without a request id");
			return;
		}
		c = conn_find(id);
		if (c == NULL || c->state != C_REDEEM)
			continue;	/* timed out meanwhile */
		redeem_done(c, &msg);
	}
}

static void on_authd_event(struct bufferevent *bev, short what, void *arg)
{
	authd_drop((what & BEV_EVENT_EOF) ? "closed by authd" : "I/O error");
}

static int authd_connect(void)
{
	struct proto_line l;
	int fd;

	if (M.authd != NULL)
		return 0;
	fd = sock_unix_connect(M.conf->pop3d.master_auth_socket, false);
	if (fd == -1) {
		log_warn("cannot connect to authd master socket %s",
			 M.conf->pop3d.master_auth_socket);
		return -1;
	}
	evutil_make_socket_nonblocking(fd);
	M.authd = bufferevent_socket_new(M.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (M.authd == NULL)
		fatalx("bufferevent_socket_new");
	bufferevent_setcb(M.authd, on_authd_read, NULL, on_authd_event, NULL);
	bufferevent_enable(M.authd, EV_READ);
	proto_line_start(&l, "VERSION");
	proto_line_add(&l, "1");
	proto_line_add(&l, "0");
	proto_line_end(&l);
	bufferevent_write(M.authd, l.buf, l.len);
	if (M.authd_lost) {
		M.authd_lost = false;
		master_stats.master_authd_reconnects++;
	}
	return 0;
}

static void on_redeem_timeout(evutil_socket_t fd, short what, void *arg)
{
	redeem_fail(arg, "authd did not answer the REDEEM in time");
}

static void handoff(struct frontend *fe, const struct ipc_msg *m, int fd)
{
	struct conn *c = conn_find(m->conn_id);
	struct proto_line l;
	struct timeval tv;
	char id[24];

	if (c == NULL || c->state != C_PREAUTH || c->fe != fe) {
		log_warnx("front end %ld handed off an unknown connection", (long)fe->pid);
		close(fd);
		return;
	}
	if (!m->secured) {
		/* a TLS connection stays on fe, which relays it */
		fe->nconns--;
		c->fe = NULL;
	}
	c->state = C_REDEEM;
	c->fd = fd;
	c->fe_pid = fe->pid;
	c->secured = m->secured != 0;
	snprintf(c->tls_info, sizeof(c->tls_info), "%s", m->tls_info);
	snprintf(c->method, sizeof(c->method), "%s", m->method);
	if (m->data_len > 0) {
		c->data = xmalloc(m->data_len);
		memcpy(c->data, m->data, m->data_len);
		c->data_len = m->data_len;
	}
	c->timer = evtimer_new(M.base, on_redeem_timeout, c);
	if (c->timer == NULL)
		fatalx("evtimer_new");
	if (authd_connect() == -1) {
		redeem_fail(c, "authd master socket unavailable");
		return;
	}
	snprintf(id, sizeof(id), "%llu", (unsigned long long)conn_id(c));
	proto_line_start(&l, "REDEEM");
	proto_line_add(&l, id);
	proto_line_kv(&l, "ticket", m->ticket);
	proto_line_kvf(&l, "pid", "%ld", (long)c->fe_pid);
	if (proto_line_end(&l) == -1 || bufferevent_write(M.authd, l.buf, l.len) == -1) {
		redeem_fail(c, "cannot send REDEEM");
		return;
	}
	MTIME_TV(tv, POP3D_REDEEM_TIMEOUT_MS);
	evtimer_add(c->timer, &tv);
}

/* ---- front ends ----------------------------------------------------------------------- */

/* Arms the slot's restart timer, with a back-off that doubles while front
 * ends of this slot live less than 10 s (a crash loop, or authd down). */
static void fe_schedule_restart(unsigned slot, uint64_t lived_ms)
{
	struct slot *s = &M.slots[slot];
	struct timeval tv;

	if (evtimer_pending(s->restart_ev, NULL))
		return;
	if (lived_ms > 10000 || s->backoff_ms == 0)
		s->backoff_ms = POP3D_RESTART_MIN_MS;
	else
		s->backoff_ms = s->backoff_ms * 2 > POP3D_RESTART_MAX_MS ? POP3D_RESTART_MAX_MS
									 : s->backoff_ms * 2;
	MTIME_TV(tv, s->backoff_ms);
	evtimer_add(s->restart_ev, &tv);
	master_stats.fe_restarts++;
}

static unsigned slot_of(const struct frontend *fe)
{
	for (unsigned i = 0; i < M.nslots; i++)
		if (M.slots[i].fe == fe)
			return i;
	return NO_SLOT;
}

/* Takes fe out of service: no new connections; it leaves once idle.  The
 * RETIRE we send it follows every NEWCONN we sent it on the same ordered
 * channel, so when it reads this it knows no more are coming. */
static void fe_retire(struct frontend *fe)
{
	struct ipc_msg m;

	if (fe->retired)
		return;
	fe->retired = true;
	memset(&m, 0, IPC_HEADER_LEN);
	m.type = IPC_RETIRE;
	if (ipc_send(fe->chan, &m, -1) == -1)
		kill(fe->pid, SIGTERM);
}

static int fe_read(struct frontend *fe, int max);

/* fe has been reaped: reads what it sent last (its final counters, any
 * handoff), adds its counters to the totals, releases its connections
 * and, if it still had a slot, restarts it. */
static void fe_gone(struct frontend *fe)
{
	struct frontend **pp;
	unsigned slot;

	for (int i = 0; i < 1024 && fe_read(fe, 64) == 1; i++)
		;	/* a dead peer sent a finite amount: bounded anyway */
	fe->st.clients = fe->st.awaiting = 0;
	stats_fe_add(&master_stats.fe_ended, &fe->st);
	slot = slot_of(fe);
	if (slot != NO_SLOT) {
		M.slots[slot].fe = NULL;
		fe_schedule_restart(slot, mtime_ms() - fe->started_ms);
	}
	for (uint32_t i = 0; i < M.nconns_cap; i++) {
		if (M.conns[i]->fe != fe)
			continue;
		if (M.conns[i]->state == C_PREAUTH) {
			conn_release(M.conns[i]);
		} else {
			/* its relay is gone; the session sees EOF and ends */
			M.conns[i]->fe = NULL;
		}
	}
	for (pp = &M.fes; *pp != fe; pp = &(*pp)->next)
		;
	*pp = fe->next;
	event_free(fe->ev);
	close(fe->chan);
	free(fe);
}

/* Handles up to max messages from fe.  Returns 1 if more may be pending,
 * 0 if none is, -1 at EOF or on a malformed message. */
static int fe_read(struct frontend *fe, int max)
{
	static struct ipc_msg m;

	for (int i = 0; i < max; i++) {
		int cfd, r = ipc_recv(fe->chan, &m, &cfd);
		struct conn *c;

		if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (r <= 0) {
			if (r == -1)
				log_warnx("front end %ld sent a malformed message; stopping it",
					  (long)fe->pid);
			return -1;
		}
		switch (m.type) {
		case IPC_CLOSED:
			c = conn_find(m.conn_id);
			if (c != NULL && c->state == C_PREAUTH && c->fe == fe)
				conn_release(c);
			break;
		case IPC_RETIRE:
			/* It stays in service (answering [SYS/TEMP]) until its
			 * replacement, which connects to authd afresh, is up. */
			if (slot_of(fe) != NO_SLOT) {
				log_info("front end %ld lost authd; replacing it", (long)fe->pid);
				master_stats.authd_replacements++;
				fe_schedule_restart(slot_of(fe), mtime_ms() - fe->started_ms);
			}
			break;
		case IPC_HANDOFF:
			handoff(fe, &m, cfd);
			break;
		case IPC_STATS:
			memcpy(&fe->st, m.data, sizeof(fe->st));	/* size checked */
			break;
		default:
			if (cfd != -1)
				close(cfd);
			break;
		}
	}
	return 1;
}

static void on_fe_chan(evutil_socket_t fd, short what, void *arg)
{
	struct frontend *fe = arg;

	if (fe_read(fe, 64) == -1) {
		kill(fe->pid, SIGTERM);
		event_del(fe->ev);
		fe->retired = true;	/* released when waitpid reaps it */
	}
}

static void spawn_frontend(unsigned slot)
{
	struct frontend *fe;
	int sv[2], authfd;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		log_warn("socketpair");
		fe_schedule_restart(slot, 0);
		return;
	}
	pid = fork();
	if (pid == -1) {
		log_warn("fork");
		close(sv[0]);
		close(sv[1]);
		fe_schedule_restart(slot, 0);
		return;
	}
	if (pid == 0) {
		child_signals();
		close(sv[0]);
		/* The front end gets an event base of its own (libevent keeps
		 * one signal base per process).  Re-initialised first, while
		 * every fd it watches is still open: the epoll instance is
		 * shared with the master across fork, and freeing the base as
		 * it is would unregister the master's events from it. */
		event_reinit(M.base);
		event_base_free(M.base);
		privsep_close_fds(&sv[1], 1);
		/* Connected by the front end itself (authd binds tickets to
		 * the connecting pid) and before the drop: the socket may be
		 * out of reach for login-user inside the chroot.  The
		 * handshake goes with it, giving up authd's administration
		 * commands before any client byte is read. */
		authfd = authc_connect(M.conf->pop3d.auth_socket);
		login_main(M.conf, sv[1], authfd, M.login_uid, M.login_gid);
	}
	close(sv[1]);
	sock_set_nonblock(sv[0], true);
	fe = xcalloc(1, sizeof(*fe));
	fe->pid = pid;
	fe->chan = sv[0];
	fe->started_ms = mtime_ms();
	fe->ev = event_new(M.base, sv[0], EV_READ | EV_PERSIST, on_fe_chan, fe);
	if (fe->ev == NULL)
		fatalx("event_new");
	event_add(fe->ev, NULL);
	fe->next = M.fes;
	M.fes = fe;
	if (M.slots[slot].fe != NULL)
		fe_retire(M.slots[slot].fe);	/* replaced: it lost authd */
	M.slots[slot].fe = fe;
	log_debug("front end %ld started", (long)pid);
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
	spawn_frontend((unsigned)(uintptr_t)arg);
}

/* ---- TLS session-ticket keys (tls.c's DESIGN) ------------------------------------------- */

/* Sends the key ring to every live front end, retired ones included (they
 * must drop the old keys too).  One that cannot take it would go on with
 * a key the others dropped: it is stopped, and its slot restarts. */
static void ticket_keys_push(void)
{
	static struct ipc_msg m;
	struct tls_ticket_keys k;

	if (!tls_ticket_keys_get(&k))
		return;
	memset(&m, 0, IPC_HEADER_LEN);
	m.type = IPC_TICKET_KEYS;
	m.data_len = sizeof(k);
	memcpy(m.data, &k, sizeof(k));
	sodium_memzero(&k, sizeof(k));
	for (struct frontend *fe = M.fes; fe != NULL; fe = fe->next) {
		if (ipc_send(fe->chan, &m, -1) == -1) {
			log_warn("front end %ld: cannot send it the new TLS ticket keys; stopping it",
				 (long)fe->pid);
			kill(fe->pid, SIGTERM);
		}
	}
	sodium_memzero(m.data, sizeof(k));
}

static void on_ticket_rotate(evutil_socket_t fd, short what, void *arg)
{
	tls_ticket_keys_rotate();
	/* logged first: a front end may use the new key as soon as it is sent */
	log_debug("TLS session-ticket keys rotated");
	ticket_keys_push();
}

/* Start-up and reload, before front ends are forked: with TLS session
 * tickets on, holds the keys (drawn once) and rotates them every
 * tls-ticket-key-lifetime; with them off, holds none. */
static void ticket_keys_setup(const struct config *conf)
{
	struct timeval tv;

	if (!tls_configured(conf) || !conf->pop3d.tls_session_tickets) {
		if (M.ticket_ev != NULL)
			evtimer_del(M.ticket_ev);
		tls_ticket_keys_wipe();
		return;
	}
	tls_ticket_keys_init();
	if (M.ticket_ev == NULL) {
		M.ticket_ev = event_new(M.base, -1, EV_PERSIST, on_ticket_rotate, NULL);
		if (M.ticket_ev == NULL)
			fatalx("event_new");
	}
	/* A reload that keeps the period keeps the schedule: frequent
	 * reloads must not put rotation off for ever. */
	if (evtimer_pending(M.ticket_ev, NULL) &&
	    M.ticket_lifetime_ms == conf->pop3d.tls_ticket_key_lifetime_ms)
		return;
	M.ticket_lifetime_ms = conf->pop3d.tls_ticket_key_lifetime_ms;
	MTIME_TV(tv, M.ticket_lifetime_ms);
	evtimer_add(M.ticket_ev, &tv);
}

/* ---- session reports, signals --------------------------------------------------------- */

static struct conn *session_of(pid_t pid)
{
	for (uint32_t i = 0; i < M.nconns_cap; i++)
		if (M.conns[i]->state == C_SESSION && M.conns[i]->pid == pid)
			return M.conns[i];
	return NULL;
}

/* Reads the session reports queued on the report socket.  The sender is
 * the pid the kernel names (SCM_CREDENTIALS); one report per live session
 * counts, anything else is dropped. */
static void reports_read(void)
{
	for (int i = 0; i < 256; i++) {
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(struct ucred))];
		} cm;
		struct session_report r;
		struct iovec iov = { .iov_base = &r, .iov_len = sizeof(r) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
				     .msg_controllen = sizeof(cm.buf) };
		const struct ucred *cred = NULL;
		struct ucred uc;
		struct conn *c;
		ssize_t n;

		n = recvmsg(M.report_fd[0], &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return;		/* EAGAIN: all read */
		for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h != NULL; h = CMSG_NXTHDR(&mh, h)) {
			if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_CREDENTIALS &&
			    h->cmsg_len == CMSG_LEN(sizeof(uc))) {
				memcpy(&uc, CMSG_DATA(h), sizeof(uc));
				cred = &uc;
			} else if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
				/* nobody should send us descriptors: close them */
				size_t nfd = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				for (size_t k = 0; k < nfd; k++) {
					int fd;
					memcpy(&fd, CMSG_DATA(h) + k * sizeof(int), sizeof(fd));
					close(fd);
				}
			}
		}
		if (n != (ssize_t)sizeof(r) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
		    cred == NULL || r.end >= SESSION_END_COUNT ||
		    (r.kind != SESSION_REPORT_END && r.kind != SESSION_REPORT_OPENED)) {
			log_debug("session report: malformed, dropped");
			continue;
		}
		c = session_of(cred->pid);
		if (c == NULL || c->reported)
			continue;
		if (r.kind == SESSION_REPORT_OPENED) {
			/* once per session, and never after a maildrop error */
			if (!c->opened)
				master_stats.logins_ok++;
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

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct frontend *fe;
		struct sproc *p;
		struct conn *c;

		for (fe = M.fes; fe != NULL; fe = fe->next)
			if (fe->pid == pid)
				break;
		if (fe != NULL) {
			if (!fe->retired || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
				log_warnx("front end %ld ended (status %d)", (long)pid, status);
			fe_gone(fe);
			continue;
		}
		if ((p = sproc_of(pid)) != NULL)
			sproc_drop(p);
		c = session_of(pid);
		if (c == NULL)
			continue;
		if (WIFSIGNALED(status))
			log_warnx("session user=%s pid=%ld killed by signal %d", c->user, (long)pid,
				  WTERMSIG(status));
		session_ended(c, WIFSIGNALED(status));
	}
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	log_info("stopping on signal %d", (int)sig);
	for (struct frontend *fe = M.fes; fe != NULL; fe = fe->next)
		kill(fe->pid, SIGTERM);
	for (uint32_t i = 0; i < M.nconns_cap; i++)
		if (M.conns[i]->state == C_SESSION)
			kill(M.conns[i]->pid, SIGTERM);
	for (struct sproc *p = M.sprocs; p != NULL; p = p->next)
		if (p->spare)
			kill(p->pid, SIGTERM);
	event_base_loopbreak(M.base);
}

/* Replaces every front end: each slot gets a new one (forked now, so with
 * the current configuration and log file), which takes the new
 * connections, and the old one is retired and leaves once its clients
 * are done.  A slot waiting out a restart back-off is left to its timer. */
static void fe_replace_all(void)
{
	for (unsigned i = 0; i < M.nslots; i++) {
		if (M.slots[i].fe == NULL)
			continue;
		evtimer_del(M.slots[i].restart_ev);
		spawn_frontend(i);
	}
}

static void on_sigusr1(evutil_socket_t sig, short what, void *arg)
{
	log_reopen();
	if (strcmp(M.conf->pop3d.log.target, "file") == 0) {
		/* they write to the file they inherited, and cannot reopen it
		 * from their chroot */
		log_info("log file reopened; replacing the front ends");
		fe_replace_all();
	}
}

/* ---- start-up and reload -------------------------------------------------------------- */

/* Sets up logging as the configuration says.  Returns 0, or -1 (errno
 * set) if the log file cannot be opened. */
static int setup_log(const struct config *conf)
{
	/* In the background (no -f), log-target = stderr means syslog. */
	return config_log_init("pop3d", &conf->pop3d.log, M.foreground);
}

/* Whether setup_log would succeed, without changing anything: opens and
 * closes the log file.  Returns 0, or -1 with a message in err. */
static int check_log(const struct config *conf, char *err, size_t size)
{
	int fd;

	if (strcmp(conf->pop3d.log.target, "file") != 0)
		return 0;
	fd = open(conf->pop3d.log.file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1) {
		snprintf(err, size, "[pop3d] log-file %s: cannot open: %s", conf->pop3d.log.file,
			 strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

/* The group of the stats socket.  Returns 0 with *gid_r ((gid_t)-1 for
 * none), or -1 with a message in err. */
static int stats_group(const struct config *conf, gid_t *gid_r, char *err, size_t size)
{
	*gid_r = (gid_t)-1;
	if (conf->pop3d.stats_group[0] == '\0')
		return 0;
	if (privsep_lookup_group(conf->pop3d.stats_group, gid_r) == -1) {
		snprintf(err, size, "[pop3d] stats-group %s: no such group",
			 conf->pop3d.stats_group);
		return -1;
	}
	return 0;
}

/* Gives the stats socket file to group gid (if set).  Returns 0 or -1
 * with a message in err. */
static int stats_chgrp(const struct config *conf, gid_t gid, char *err, size_t size)
{
	if (M.stats_fd == -1 || gid == (gid_t)-1)
		return 0;
	if (chown(conf->pop3d.stats_socket, (uid_t)-1, gid) == -1) {
		snprintf(err, size, "[pop3d] stats-group: cannot chgrp %s: %s",
			 conf->pop3d.stats_socket, strerror(errno));
		return -1;
	}
	return 0;
}

static bool same(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* What cannot change while pop3d runs (bound, connected or looked up as
 * root at start-up): n gets the running values, swapped with o's so that
 * each configuration still owns its strings.  The keys that differed are
 * named in changed (at most max).  Returns their count. */
static size_t keep_fixed(struct config *n, struct config *o, const char **changed, size_t max)
{
	size_t k = 0;

#define KEEP(field, key) do { \
	char *t_ = n->pop3d.field; \
	if (!same(n->pop3d.field, o->pop3d.field) && k < max) \
		changed[k++] = key; \
	n->pop3d.field = o->pop3d.field; \
	o->pop3d.field = t_; \
} while (0)
	KEEP(listen, "listen");
	for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
		char *t = n->pop3d.listen_addrs[i];
		n->pop3d.listen_addrs[i] = o->pop3d.listen_addrs[i];
		o->pop3d.listen_addrs[i] = t;
	}
	{
		size_t t = n->pop3d.nlisten;
		n->pop3d.nlisten = o->pop3d.nlisten;
		o->pop3d.nlisten = t;
	}
	KEEP(listen_tls, "listen-tls");
	for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
		char *t = n->pop3d.tls_addrs[i];
		n->pop3d.tls_addrs[i] = o->pop3d.tls_addrs[i];
		o->pop3d.tls_addrs[i] = t;
	}
	{
		size_t t = n->pop3d.ntls_addrs;
		n->pop3d.ntls_addrs = o->pop3d.ntls_addrs;
		o->pop3d.ntls_addrs = t;
	}
	KEEP(auth_socket, "auth-socket");
	KEEP(master_auth_socket, "master-auth-socket");
	KEEP(stats_socket, "stats-socket");
	KEEP(login_user, "login-user");
	KEEP(login_chroot, "login-chroot");
#undef KEEP
	return k;
}

static int check_conf(const struct config *conf, char *err, size_t size);
static int check_tls_files(const struct config *conf, bool test);

/* Changes the number of front-end slots to n: new slots get a front end
 * at once, removed ones have theirs retired. */
static void slots_resize(unsigned n)
{
	unsigned old = M.nslots;

	for (unsigned i = n; i < old; i++) {
		if (M.slots[i].fe != NULL)
			fe_retire(M.slots[i].fe);
		event_free(M.slots[i].restart_ev);
	}
	M.slots = realloc(M.slots, n * sizeof(*M.slots));
	if (M.slots == NULL)
		fatal("realloc");
	M.nslots = n;
	for (unsigned i = old; i < n; i++) {
		memset(&M.slots[i], 0, sizeof(M.slots[i]));
		M.slots[i].restart_ev = evtimer_new(M.base, on_restart, (void *)(uintptr_t)i);
		if (M.slots[i].restart_ev == NULL)
			fatalx("evtimer_new");
		spawn_frontend(i);
	}
}

static unsigned slot_count(const struct config *conf)
{
	long n;

	if (conf->pop3d.login_processes != 0)
		return conf->pop3d.login_processes;
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 64 ? 64 : (unsigned)n;
}

/* SIGHUP: loads the configuration file again and, if all of it is good,
 * applies it (see DESIGN at the top).  Returns 0, or -1 (logged; the
 * running configuration stays). */
static int reload(void)
{
	const char *changed[16];
	struct config *n, *o = M.conf;
	char err[1024];
	size_t nchanged;
	unsigned old_slots = M.nslots;
	gid_t gid;

	n = config_load(M.conf_path, err, sizeof(err));
	if (n == NULL)
		goto refused;
	nchanged = keep_fixed(n, o, changed, sizeof(changed) / sizeof(changed[0]));
	if (check_conf(n, err, sizeof(err)) == -1 || check_log(n, err, sizeof(err)) == -1 ||
	    stats_group(n, &gid, err, sizeof(err)) == -1)
		goto refused_free;
	if (tls_configured(n) && check_tls_files(n, false) == -1) {
		snprintf(err, sizeof(err), "TLS certificates or keys unusable (see above)");
		goto refused_free;
	}
	/* the last step that may fail, and the first that changes anything */
	if (!same(n->pop3d.stats_group, o->pop3d.stats_group) &&
	    stats_chgrp(n, gid, err, sizeof(err)) == -1)
		goto refused_free;

	/* From here on nothing can fail: apply. */
	if (setup_log(n) == -1)
		log_warn("reload: cannot open log file %s", n->pop3d.log.file);
	M.conf = n;
	M.login_delay_ms = n->pop3d.login_delay_ms;
	/* Spares run with the old settings: the next logins fork anew. */
	M.conf_gen++;
	drop_spares();
	ticket_keys_setup(n);		/* STLS or tickets may just have been turned on */
	if (slot_count(n) != old_slots)
		slots_resize(slot_count(n));
	for (unsigned i = 0; i < old_slots && i < M.nslots; i++) {
		if (M.slots[i].fe == NULL)
			continue;	/* its restart timer forks with the new settings */
		evtimer_del(M.slots[i].restart_ev);
		spawn_frontend(i);
	}
	for (size_t i = 0; i < nchanged; i++)
		log_warnx("reload: [pop3d] %s changed; restart pop3d to apply", changed[i]);
	config_free(&o);
	master_stats.reloads_ok++;
	log_info("configuration reloaded from %s; %u front end(s) replaced, running sessions "
		 "keep their settings", M.conf_path, M.nslots);
	return 0;

refused_free:
	keep_fixed(n, o, changed, 0);	/* the running values back to o */
	config_free(&n);
refused:
	master_stats.reloads_failed++;
	log_error("reload refused, running configuration kept: %s", err);
	return -1;
}

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
	log_info("SIGHUP: reloading %s", M.conf_path);
	reload();
}

void master_gauges(struct master_gauges *g)
{
	unsigned preauth = 0, redeem = 0, fe_awaiting = 0;

	/* Reports sessions sent before this scrape count in it: a client
	 * that has its "+OK Logged in" sees its login in the next scrape. */
	reports_read();
	memset(g, 0, sizeof(*g));
	for (uint32_t i = 0; i < M.nconns_cap; i++) {
		preauth += M.conns[i]->state == C_PREAUTH;
		redeem += M.conns[i]->state == C_REDEEM;
		g->sessions += M.conns[i]->state == C_SESSION;
	}
	g->spares = M.nspares;
	g->fe = master_stats.fe_ended;
	for (const struct frontend *fe = M.fes; fe != NULL; fe = fe->next) {
		if (fe->retired)
			g->frontends_retiring++;
		else
			g->frontends++;
		stats_fe_add(&g->fe, &fe->st);
		/* a front end's word, bounded by what we know */
		fe_awaiting += fe->st.awaiting < fe->nconns ? fe->st.awaiting : (unsigned)fe->nconns;
	}
	if (fe_awaiting > preauth)
		fe_awaiting = preauth;	/* a snapshot older than a connection's end */
	g->preauth = preauth - fe_awaiting;
	g->awaiting = fe_awaiting + redeem;
	g->uptime_s = (mtime_ms() - M.started_ms) / 1000;
}

/* Checks what needs pop3d's own code (config.c checked every key's syntax
 * and the keys' relations), changing nothing; -t, a start and a reload run
 * it.  Returns 0 or -1 with a message in err. */
static int check_conf(const struct config *conf, char *err, size_t size)
{
	char out[4096];
	const char *e;

	/* tls-min-version, require-tls and the certificate lists were
	 * config.c's; require-tls-exempt is parsed by netlist.c here */
	if (tls_check_conf(conf, err, size) == -1)
		return -1;
	if (maildir_expand(conf->pop3d.maildrop, "user@example.org", "/home/user", out,
			   sizeof(out), &e) == -1) {
		snprintf(err, size, "[pop3d] maildrop: %s", e);
		return -1;
	}
	return 0;
}

/* libevent's own messages go through our log. */
static void libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN)
		log_warnx("libevent: %s", msg);
	else
		log_debug("libevent: %s", msg);
}

static void usage(void)
{
	fprintf(stderr, "usage: pop3d -c FILE [-f] [-t]\n"
		"  -c FILE  configuration file\n"
		"  -f       stay in the foreground\n"
		"  -t       check the configuration and exit\n");
	exit(2);
}

/* Loads and checks the certificates and keys in a child, so that the
 * master never holds key material (tls.c).  With -t the process exits
 * right after, so it checks in place.  Returns 0 or -1 (logged). */
static int check_tls_files(const struct config *conf, bool test)
{
	int status;
	pid_t pid;

	if (test)
		return tls_check_files(conf);
	pid = fork();
	if (pid == -1)
		fatal("fork");
	if (pid == 0)
		_exit(tls_check_files(conf) == 0 ? 0 : 1);
	while (waitpid(pid, &status, 0) == -1)
		if (errno != EINTR)
			fatal("waitpid");
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static void daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid == -1)
		fatal("fork");
	if (pid > 0)
		_exit(0);
	if (setsid() == -1)
		fatal("setsid");
	if (chdir("/") == -1)
		fatal("chdir /");
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
}

int main(int argc, char **argv)
{
	bool test = false;
	struct config *conf;
	const char *path;
	char err[1024], *real;
	struct event *ev;
	gid_t stats_gid;
	int opt;

	while ((opt = getopt(argc, argv, "c:ft")) != -1) {
		switch (opt) {
		case 'c': M.conf_path = optarg; break;
		case 'f': M.foreground = true; break;
		case 't': test = true; break;
		default: usage();
		}
	}
	if (M.conf_path == NULL || optind != argc)
		usage();
	/* Until the event loop handles them: a reload or log rotation asked
	 * for during start-up must not kill us (their default action). */
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	/* Copied before the process title overwrites argv; absolute, since
	 * a reload happens after daemonize() went to "/". */
	real = realpath(M.conf_path, NULL);
	M.conf_path = real != NULL ? real : xstrdup(M.conf_path);
	path = M.conf_path;
	log_init("pop3d", LOG_LEVEL_INFO, LOG_TARGET_STDERR, NULL, 0);
	event_set_log_callback(libevent_log);
	if (sodium_init() == -1)
		fatalx("sodium_init");
	/* Secrets from here on (the configuration, the TLS ticket keys): no
	 * core file, no /proc/PID/mem for another process of our uid.  As
	 * root only, like the front ends' and sessions' drops (privdrop.c). */
	privdrop_init();
	if (privdrop_enabled())
		privsep_no_core();
	conf = config_load(path, err, sizeof(err));
	if (conf == NULL)
		fatalx("%s", err);
	if (check_conf(conf, err, sizeof(err)) == -1 || check_log(conf, err, sizeof(err)) == -1 ||
	    stats_group(conf, &stats_gid, err, sizeof(err)) == -1)
		fatalx("%s: %s", path, err);
	for (size_t i = 0; i < conf->pop3d.ntls_addrs; i++)
		M.tls_addrs[i] = xstrdup(conf->pop3d.tls_addrs[i]);
	M.ntls_addrs = conf->pop3d.ntls_addrs;
	if (privdrop_enabled()) {
		struct stat st;

		if (privsep_lookup(conf->pop3d.login_user, &M.login_uid, &M.login_gid) == -1)
			fatalx("%s: [pop3d] login-user \"%s\" does not exist", path,
			       conf->pop3d.login_user);
		if (M.login_uid == 0 || M.login_gid == 0)
			fatalx("%s: [pop3d] login-user must not be root", path);
		if (stat(conf->pop3d.login_chroot, &st) == -1 || !S_ISDIR(st.st_mode))
			fatalx("%s: [pop3d] login-chroot %s is not a directory", path,
			       conf->pop3d.login_chroot);
		if (st.st_uid == M.login_uid || (st.st_mode & 0022))
			fatalx("%s: [pop3d] login-chroot %s must not be writable by the "
			       "login user or others", path, conf->pop3d.login_chroot);
	}
	if (tls_configured(conf) && check_tls_files(conf, test) == -1)
		fatalx("%s: TLS certificates or keys unusable (see above)", path);
	if (test) {
		printf("%s: configuration OK\n", path);
		config_free(&conf);
		return 0;
	}
	/* Before daemonize(): once detached, stderr is /dev/null, and a
	 * daemon that logs nowhere must not start. */
	if (setup_log(conf) == -1)
		fatal("%s: [pop3d] log-file %s: cannot open", path, conf->pop3d.log.file);
	config_check_private("configuration file", path);
	proctitle_init(argc, argv);
	if (!privdrop_enabled())
		log_warnx("not running as root: privilege separation is off (no chroot, no "
			  "user switch); sessions run as uid %lu", (unsigned long)getuid());

	M.conf = conf;
	M.stats_fd = -1;
	M.login_delay_ms = conf->pop3d.login_delay_ms;
	M.free_head = NO_SLOT;
	M.started_ms = mtime_ms();
	for (size_t i = 0; i < conf->pop3d.nlisten; i++) {
		struct sockaddr_storage ss;
		socklen_t sl;

		sock_parse_addrport(conf->pop3d.listen_addrs[i], &ss, &sl);
		M.listen_fds[i] = sock_tcp_listen(&ss, sl, 511);
		if (M.listen_fds[i] == -1)
			fatal("cannot listen on %s", conf->pop3d.listen_addrs[i]);
		M.nlisten++;
	}
	for (size_t i = 0; i < M.ntls_addrs; i++) {
		struct sockaddr_storage ss;
		socklen_t sl;

		sock_parse_addrport(M.tls_addrs[i], &ss, &sl);
		M.listen_fds[M.nlisten] = sock_tcp_listen(&ss, sl, 511);
		if (M.listen_fds[M.nlisten] == -1)
			fatal("cannot listen on %s (listen-tls)", M.tls_addrs[i]);
		M.listen_tls[M.nlisten++] = true;
	}
	if (conf->pop3d.stats_socket[0] != '\0') {
		M.stats_fd = sock_unix_listen(conf->pop3d.stats_socket, 0660);
		if (M.stats_fd == -1)
			fatal("cannot listen on %s", conf->pop3d.stats_socket);
		if (stats_chgrp(conf, stats_gid, err, sizeof(err)) == -1)
			fatalx("%s: %s", path, err);
	}
	/* The sessions' reports (stats.c): a connection-oriented socket, so
	 * many sessions ending at once queue up to the send buffer instead
	 * of a datagram queue's ten; SO_PASSCRED makes the kernel name each
	 * sender. */
	{
		int on = 1;

		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, M.report_fd) == -1 ||
		    setsockopt(M.report_fd[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) == -1 ||
		    sock_set_nonblock(M.report_fd[0], true) == -1)
			fatal("session report socket");
	}
	/* In the foreground too: a session inherits the master's directory,
	 * which must not be wherever the operator happened to start it. */
	if (!M.foreground)
		daemonize();
	else if (chdir("/") == -1)
		fatal("chdir /");
	signal(SIGPIPE, SIG_IGN);
	proctitle_set("pop3d: master");

	M.base = event_base_new();
	if (M.base == NULL)
		fatalx("event_base_new");
	for (size_t i = 0; i < M.nlisten; i++) {
		/* on_accept's argument: non-NULL for a listen-tls port */
		M.listen_evs[i] = event_new(M.base, M.listen_fds[i], EV_READ | EV_PERSIST,
					    on_accept, M.listen_tls[i] ? &M : NULL);
		if (M.listen_evs[i] == NULL)
			fatalx("event_new");
		event_add(M.listen_evs[i], NULL);
	}
	if (M.stats_fd != -1)
		stats_init(M.base, M.stats_fd);
	M.report_ev = event_new(M.base, M.report_fd[0], EV_READ | EV_PERSIST, on_report, NULL);
	if (M.report_ev == NULL)
		fatalx("event_new");
	event_add(M.report_ev, NULL);
	ev = evsignal_new(M.base, SIGCHLD, on_sigchld, NULL);
	event_add(ev, NULL);
	ev = evsignal_new(M.base, SIGTERM, on_sigterm, NULL);
	event_add(ev, NULL);
	ev = evsignal_new(M.base, SIGINT, on_sigterm, NULL);
	event_add(ev, NULL);
	ev = evsignal_new(M.base, SIGUSR1, on_sigusr1, NULL);
	event_add(ev, NULL);
	ev = evsignal_new(M.base, SIGHUP, on_sighup, NULL);
	event_add(ev, NULL);

	ticket_keys_setup(conf);	/* before the front ends: they inherit the keys */
	M.nslots = 0;
	slots_resize(slot_count(conf));
	log_info("pop3d started: %zu listener(s) (%zu TLS), %u front end(s)%s", M.nlisten,
		 M.ntls_addrs, M.nslots, conf->pop3d.starttls ? ", STLS offered" : "");
	notify_systemd("READY=1");
	event_base_dispatch(M.base);
	stats_shutdown();
	log_info("pop3d stopped");
	return 0;
}
