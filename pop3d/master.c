/*
 * master.c - pop3d's master process: listeners, front ends, reload, main.
 *
 * Runs in the master, as root when started so: all of this file.  It
 * never reads a byte a client sent: it accepts, counts (conntab.c) and
 * passes connections to front ends, reads front-end messages through
 * ipc.c's strict decoder, supervises the front ends, holds and rotates the
 * TLS session-ticket keys, reloads the configuration and checks it.  What
 * happens to a login after a front end hands it over (REDEEM with authd,
 * per-user limits, spare session processes, session reports) is
 * handoff.c's; the session process's own code is session_proc.c.
 *
 * DESIGN
 * - Connections are counted here (conntab.c), from accept to the end of
 *   their session, so max-connections and max-connections-per-ip hold
 *   across all front ends; max-sessions-per-user is counted over live
 *   sessions (handoff.c).
 * - PROXY protocol listeners (proxy-protocol): at accept the peer must be
 *   in proxy-trusted-networks (an address check, no byte read), and the
 *   connection is counted under no address (conntab_new_pending), since
 *   its client is not known yet.  The front end reads the header and
 *   sends the client's address (IPC_PROXY_ADDR); proxy_addr treats it as
 *   untrusted input: one per pending connection of that front end,
 *   checked by ipc_recv, formatted here, and then max-connections-per-ip
 *   is applied to it as at accept and the verdict sent back.  A front end
 *   can thus choose which address a connection counts under, never create
 *   one: max-connections bounds them at accept.
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
 *   report when they end (handoff.c).  stats.c explains the whole scheme.
 * - Channels to front ends never block the loop: ipc.c queues what a busy
 *   front end cannot take yet and writes it when the channel is writable.
 *   While a front end's queue is full the connection being passed is
 *   refused ([SYS/TEMP]) and others get the new ones; one whose queue has
 *   not moved for POP3D_IPC_STALL_MS is wedged and replaced (fe_stalled).
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
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "common/config.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/memwipe.h"
#include "common/mtime.h"
#include "common/notify.h"
#include "common/num.h"
#include "common/privsep.h"
#include "common/proctitle.h"
#include "common/sock.h"
#include "common/version.h"
#include "pop3d/pop3d.h"

struct frontend {
	pid_t pid;
	int chan;
	struct ipc_chan *out;		/* chan's sending side and its queue */
	struct event *ev;
	bool retired;
	size_t nconns;
	uint64_t started_ms;
	struct fe_stats st;		/* its latest IPC_STATS snapshot */
	LIST_ENTRY(frontend) entry;	/* in M.fes */
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
	bool listen_proxy[2 * CONFIG_MAX_LISTEN];	/* a PROXY header comes first */
	struct netlist proxy_trusted;	/* proxy-trusted-networks (reloaded) */
	struct log_ratelimit untrusted_log;	/* refused PROXY peers */
	struct event *listen_evs[2 * CONFIG_MAX_LISTEN];
	size_t nlisten;
	char *tls_addrs[CONFIG_MAX_LISTEN];		/* listen-tls, split */
	size_t ntls_addrs;
	int stats_fd;			/* owned by stats.c once served */
	int metrics_fd;			/* metrics-listen (HTTP), likewise */
	struct slot *slots;
	unsigned nslots;
	LIST_HEAD(, frontend) fes;	/* all live front ends */
	uid_t login_uid;
	gid_t login_gid;
	uint64_t started_ms;
	struct event *ticket_ev;	/* rotates the TLS session-ticket keys */
	uint64_t ticket_lifetime_ms;	/* ... at this period */
	/* Kept here, not only in M.base: a front end frees its copy of
	 * M.base (spawn_frontend), and then LeakSanitizer in it found the
	 * copies of these events reachable from nowhere. */
	struct event *signal_evs[5];
} M;

#define NO_SLOT UINT32_MAX

static void spawn_frontend(unsigned slot);
static void fe_stalled(struct frontend *fe);
static void proxy_trusted_setup(const struct config *conf);

/* The record is released: its front end carries one connection less. */
static void conn_unload(struct conn *c)
{
	if (c->fe != NULL)
		c->fe->nconns--;
}

/* ---- accepting -------------------------------------------------------------- */

static struct frontend *pick_frontend(void)
{
	struct frontend *fe, *best = NULL;
	bool best_room = false;

	/* The least loaded of those that have room in their queue, or else
	 * the least loaded: its full queue then refuses the connection. */
	LIST_FOREACH(fe, &M.fes, entry) {
		bool room = ipc_chan_queued(fe->out) < POP3D_IPC_MAX_QUEUED;

		if (fe->retired || ipc_chan_broken(fe->out))
			continue;	/* a broken one is gone once SIGCHLD says so */
		if (best == NULL || (room && !best_room) ||
		    (room == best_room && fe->nconns < best->nconns)) {
			best = fe;
			best_room = room;
		}
	}
	return best;
}

/* A one-line answer to a client we do not serve, where it can be read:
 * on a listen-tls port the client expects a TLS handshake, not text. */
static void refuse_new(int fd, bool tls, const char *code, const char *text)
{
	char line[512];
	int n;

	if (tls)
		return;
	/* in the default language: the client could not say LANG yet */
	n = snprintf(line, sizeof(line), "-ERR %s %s\r\n", code, text);
	if (n > 0 && (size_t)n < sizeof(line))
		conntab_refuse(fd, line);
}

/* A PROXY protocol listener: the peer must be a trusted balancer (else it
 * is refused at once, unread); its connection is counted under no address
 * until the front end has read the header (IPC_PROXY_ADDR, proxy_addr),
 * so the balancer's address is never limited as one client.
 * max-connections holds all the same.  Returns 0 (go on), or -1 with the
 * refusal reason in *why_r. */
static int accept_proxy_peer(const struct sockaddr *sa, const char *peer,
			     enum refuse_reason *why_r)
{
	uint64_t suppressed;
	char more[64] = "";

	if (netlist_match(&M.proxy_trusted, sa))
		return 0;
	if (log_ratelimit(&M.untrusted_log, POP3D_PROXY_LOG_PER_SEC, mtime_ms(), &suppressed)) {
		if (suppressed > 0)
			snprintf(more, sizeof(more), " (%llu more not logged)",
				 (unsigned long long)suppressed);
		log_warnx("refused %s: not in proxy-trusted-networks, on a PROXY protocol "
			  "listener%s", peer, more);
	}
	*why_r = REFUSE_PROXY_UNTRUSTED;
	return -1;
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
	size_t idx = (size_t)(uintptr_t)arg;
	bool tls = M.listen_tls[idx], proxy = M.listen_proxy[idx];

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
		if (conntab_active() >= M.conf->pop3d.max_connections) {
			log_warnx("refused %s: max-connections (%u) reached", rip,
				  M.conf->pop3d.max_connections);
			refuse_new(fd, tls, "[SYS/TEMP]",
				   lang_tr(NULL, "Too many connections, try again later"));
			why = REFUSE_MAX_CONNECTIONS;
			goto refused;
		}
		if (proxy && accept_proxy_peer((struct sockaddr *)&ss, rip, &why) == -1)
			goto refused;
		if (!proxy && conntab_per_ip(rip) >= M.conf->pop3d.max_connections_per_ip) {
			log_warnx("refused %s: max-connections-per-ip (%u) reached", rip,
				  M.conf->pop3d.max_connections_per_ip);
			refuse_new(fd, tls, "[SYS/TEMP]",
				   lang_tr(NULL, "Too many connections from your address"));
			why = REFUSE_PER_IP;
			goto refused;
		}
		fe = pick_frontend();
		if (fe == NULL) {
			refuse_new(fd, tls, "[SYS/TEMP]",
				   lang_tr(NULL, "Server is restarting, try again later"));
			why = REFUSE_NO_FRONTEND;
			goto refused;
		}
		c = proxy ? conntab_new_pending(rip, rport) : conntab_new(rip, rport);
		memset(&m, 0, IPC_HEADER_LEN);
		m.type = IPC_NEWCONN;
		m.conn_id = conntab_id(c);
		m.tls_port = tls;
		m.proxy = proxy;
		if (ipc_chan_send(fe->out, &m, fd) == -1) {
			int e = errno;
			log_warn("cannot pass a connection to front end %ld", (long)fe->pid);
			refuse_new(fd, tls, "[SYS/TEMP]",
				   lang_tr(NULL, "Internal error, try again later"));
			conntab_release(c);
			if (e == ENOBUFS && ipc_chan_stalled(fe->out, POP3D_IPC_STALL_MS))
				fe_stalled(fe);
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

/* ---- the PROXY protocol ------------------------------------------------------------- */

/* IPC_PROXY_ADDR from fe: the address a PROXY header gave for one of its
 * connections still without one.  The front end's word is taken for
 * what it is (the client's address) but nothing more: once per such
 * connection of its own, a checked address (ipc_recv) that we format
 * ourselves.  Then max-connections-per-ip applies to it as at accept;
 * the verdict goes back to fe, which refuses the client or greets it. */
static void proxy_addr(struct frontend *fe, const struct ipc_msg *m)
{
	struct conn *c = conntab_find(m->conn_id);
	struct ipc_proxy_addr a;
	struct ipc_proxy_verdict v = { .verdict = IPC_PROXY_OK };
	struct sockaddr_storage ss;
	static struct ipc_msg r;
	char rip[64];
	unsigned rport;

	if (c == NULL || c->state != C_PREAUTH || c->fe != fe || !c->addr_pending) {
		log_warnx("front end %ld sent an address for a connection that has none "
			  "pending", (long)fe->pid);
		return;
	}
	memcpy(&a, m->data, sizeof(a));		/* size checked by ipc_recv */
	ipc_proxy_addr_get(&a, &ss);
	sock_addr_str((struct sockaddr *)&ss, rip, sizeof(rip), &rport);
	if (conntab_per_ip(rip) >= M.conf->pop3d.max_connections_per_ip) {
		log_warnx("refused %s (through %s): max-connections-per-ip (%u) reached", rip,
			  c->rip, M.conf->pop3d.max_connections_per_ip);
		master_stats.refused[REFUSE_PER_IP]++;
		v.verdict = IPC_PROXY_PER_IP;
		/* still pending, under no address: the front end closes it
		 * and its IPC_CLOSED releases it */
	} else {
		conntab_set_addr(c, rip, rport);
	}
	memset(&r, 0, IPC_HEADER_LEN);
	r.type = IPC_PROXY_VERDICT;
	r.conn_id = m->conn_id;
	r.data_len = sizeof(v);
	memcpy(r.data, &v, sizeof(v));
	if (ipc_chan_send(fe->out, &r, -1) == -1) {
		/* the front end's timer closes the client (proxy-timeout) */
		log_warn("cannot send a verdict to front end %ld", (long)fe->pid);
		if (errno == ENOBUFS && ipc_chan_stalled(fe->out, POP3D_IPC_STALL_MS))
			fe_stalled(fe);
	}
}

/* ---- handoffs ------------------------------------------------------------------------ */

/* IPC_HANDOFF from fe: the connection must be one of fe's before login;
 * then handoff.c redeems the ticket.  Takes fd. */
static void handoff(struct frontend *fe, const struct ipc_msg *m, int fd)
{
	struct conn *c = conntab_find(m->conn_id);

	if (c == NULL || c->state != C_PREAUTH || c->fe != fe || c->addr_pending) {
		log_warnx("front end %ld handed off an unknown connection", (long)fe->pid);
		close(fd);
		return;
	}
	if (!m->secured) {
		/* a TLS connection stays on fe, which relays it */
		fe->nconns--;
		c->fe = NULL;
	}
	handoff_redeem(c, m, fd, fe->pid);
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
	if (ipc_chan_send(fe->out, &m, -1) == -1)
		kill(fe->pid, SIGTERM);
}

static int fe_read(struct frontend *fe, int max);

/* fe has been reaped: reads what it sent last (its final counters, any
 * handoff), adds its counters to the totals, releases its connections
 * and, if it still had a slot, restarts it. */
static void fe_gone(struct frontend *fe)
{
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
	for (struct conn *c = conntab_next(NULL); c != NULL; c = conntab_next(c)) {
		if (c->fe != fe)
			continue;
		if (c->state == C_PREAUTH) {
			conntab_release(c);
		} else {
			/* its relay is gone; the session sees EOF and ends */
			c->fe = NULL;
		}
	}
	LIST_REMOVE(fe, entry);
	event_free(fe->ev);
	ipc_chan_free(&fe->out);
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
			c = conntab_find(m.conn_id);
			if (c != NULL && c->state == C_PREAUTH && c->fe == fe)
				conntab_release(c);
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
			/* the ticket and the client's pipelined bytes: not left
			 * for the next fork (a front end, a session) to inherit */
			sodium_memzero(&m, sizeof(m));
			break;
		case IPC_STATS:
			memcpy(&fe->st, m.data, sizeof(fe->st));	/* size checked */
			break;
		case IPC_PROXY_ADDR:
			proxy_addr(fe, &m);
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
		privdrop_child_signals();
		ipc_chan_forget_all();
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
	fe->out = ipc_chan_new(M.base, sv[0], POP3D_IPC_MAX_QUEUED);
	event_add(fe->ev, NULL);
	LIST_INSERT_HEAD(&M.fes, fe, entry);
	if (M.slots[slot].fe != NULL)
		fe_retire(M.slots[slot].fe);	/* replaced: it lost authd */
	M.slots[slot].fe = fe;
	log_debug("front end %ld started", (long)pid);
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
	spawn_frontend((unsigned)(uintptr_t)arg);
}

/* fe's queue is full and has not moved for POP3D_IPC_STALL_MS: it is
 * wedged.  Its slot gets a new front end now, and fe is
 * retired; the RETIRE cannot be queued, so it is stopped (fe_retire). */
static void fe_stalled(struct frontend *fe)
{
	unsigned slot = slot_of(fe);

	log_warnx("front end %ld does not read its channel (%u messages queued); replacing it",
		  (long)fe->pid, ipc_chan_queued(fe->out));
	if (slot == NO_SLOT) {
		fe->retired = true;
		kill(fe->pid, SIGTERM);
		return;
	}
	evtimer_del(M.slots[slot].restart_ev);
	spawn_frontend(slot);
}

/* ---- TLS session-ticket keys (tls.c's DESIGN) ------------------------------------------- */

/* Sends the key ring to every live front end, retired ones included (they
 * must drop the old keys too).  One that cannot take it would go on with
 * a key the others dropped: it is stopped, and its slot restarts. */
static void ticket_keys_push(void)
{
	static struct ipc_msg m;
	struct tls_ticket_keys k;
	struct frontend *fe;

	if (!tls_ticket_keys_get(&k))
		return;
	memset(&m, 0, IPC_HEADER_LEN);
	m.type = IPC_TICKET_KEYS;
	m.data_len = sizeof(k);
	memcpy(m.data, &k, sizeof(k));
	sodium_memzero(&k, sizeof(k));
	LIST_FOREACH(fe, &M.fes, entry) {
		if (ipc_chan_send(fe->out, &m, -1) == -1) {
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
		struct tls_ticket_keys k;

		if (M.ticket_ev != NULL)
			evtimer_del(M.ticket_ev);
		/* Front ends already running (retired ones serve their relays
		 * for hours) hold both keys: two rotations pushed to them
		 * overwrite both with keys that opened no ticket. */
		if (tls_ticket_keys_get(&k)) {
			sodium_memzero(&k, sizeof(k));
			tls_ticket_keys_rotate();
			tls_ticket_keys_rotate();
			ticket_keys_push();
		}
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

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct frontend *fe;

		LIST_FOREACH(fe, &M.fes, entry)
			if (fe->pid == pid)
				break;
		if (fe != NULL) {
			if (!fe->retired || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
				log_warnx("front end %ld ended (status %d)", (long)pid, status);
			fe_gone(fe);
			continue;
		}
		handoff_child_exited(pid, status);
	}
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	struct frontend *fe;

	log_info("stopping on signal %d", (int)sig);
	LIST_FOREACH(fe, &M.fes, entry)
		kill(fe->pid, SIGTERM);
	handoff_stop();
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

/* Swaps two split address lists (config.c's listen_addrs, tls_addrs). */
static void swap_addrs(char **a, size_t *na, char **b, size_t *nb)
{
	size_t t = *na;

	for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
		char *p = a[i];

		a[i] = b[i];
		b[i] = p;
	}
	*na = *nb;
	*nb = t;
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
	swap_addrs(n->pop3d.listen_addrs, &n->pop3d.nlisten, o->pop3d.listen_addrs,
		   &o->pop3d.nlisten);
	KEEP(listen_tls, "listen-tls");
	swap_addrs(n->pop3d.tls_addrs, &n->pop3d.ntls_addrs, o->pop3d.tls_addrs,
		   &o->pop3d.ntls_addrs);
	KEEP(auth_socket, "auth-socket");
	KEEP(master_auth_socket, "master-auth-socket");
	KEEP(stats_socket, "stats-socket");
	KEEP(metrics_listen, "metrics-listen");
	KEEP(login_user, "login-user");
	KEEP(login_chroot, "login-chroot");
	KEEP(proxy_protocol, "proxy-protocol");
#undef KEEP
	return k;
}

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
	struct lang_set *langs = NULL;
	gid_t gid;

	n = config_load(M.conf_path, err, sizeof(err));
	if (n == NULL)
		goto refused;
	nchanged = keep_fixed(n, o, changed, sizeof(changed) / sizeof(changed[0]));
	if (check_log(n, err, sizeof(err)) == -1 ||
	    stats_group(n, &gid, err, sizeof(err)) == -1)
		goto refused_free;
	if (tls_configured(n) && check_tls_files(n, false) == -1) {
		snprintf(err, sizeof(err), "TLS certificates or keys unusable (see above)");
		goto refused_free;
	}
	langs = lang_load(n->pop3d.language_dir, n->pop3d.default_language, err, sizeof(err));
	if (langs == NULL)
		goto refused_free;
	/* the last step that may fail, and the first that changes anything */
	if (!same(n->pop3d.stats_group, o->pop3d.stats_group) &&
	    stats_chgrp(n, gid, err, sizeof(err)) == -1) {
		lang_set_free(&langs);
		goto refused_free;
	}

	/* From here on nothing can fail: apply. */
	if (setup_log(n) == -1)
		log_warn("reload: cannot open log file %s", n->pop3d.log.file);
	M.conf = n;
	lang_use(&langs);		/* front ends and sessions forked from now */
	proxy_trusted_setup(n);
	handoff_configure(n, n->pop3d.login_delay_ms);
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

/* proxy-trusted-networks into M.proxy_trusted (checked by config.c). */
static void proxy_trusted_setup(const struct config *conf)
{
	char err[256];

	if (netlist_parse(conf->pop3d.proxy_trusted_networks, &M.proxy_trusted, err,
			  sizeof(err)) == -1)
		fatalx("proxy-trusted-networks: %s", err);	/* checked by config.c */
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
	handoff_reports_read();
	memset(g, 0, sizeof(*g));
	for (const struct conn *c = conntab_next(NULL); c != NULL; c = conntab_next(c)) {
		preauth += c->state == C_PREAUTH;
		redeem += c->state == C_REDEEM;
		g->sessions += c->state == C_SESSION;
	}
	g->spares = handoff_spares();
	g->fe = master_stats.fe_ended;
	const struct frontend *fe;
	LIST_FOREACH(fe, &M.fes, entry) {
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

/* libevent's own messages go through our log. */
static void libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN)
		log_warnx("libevent: %s", msg);
	else
		log_debug("libevent: %s", msg);
}

/* -h: the whole text on stdout, exit 0; a bad command line: on stderr,
 * exit 2 (pop3d(8)). */
static void usage(bool help)
{
	fprintf(help ? stdout : stderr, "usage: pop3d -c FILE [-f] [-t]\n"
		"  -c FILE    configuration file\n"
		"  -f         stay in the foreground\n"
		"  -t         check the configuration and exit (0 valid, 1 not)\n"
		"  -h, --help this text;  --version  the version\n");
	exit(help ? 0 : 2);
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
	struct lang_set *langs;
	gid_t stats_gid;
	int opt;

	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	while ((opt = getopt_long(argc, argv, "c:fth", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': M.conf_path = optarg; break;
		case 'f': M.foreground = true; break;
		case 't': test = true; break;
		case 'h': usage(true); break;
		case 'V': printf("pop3d %s\n", PROJECT_VERSION); return 0;
		default: usage(false);
		}
	}
	if (M.conf_path == NULL || optind != argc)
		usage(false);
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
	/* Before any libevent or OpenSSL call; inherited by the front ends,
	 * which see passwords (common/memwipe.c). */
	event_set_mem_functions(malloc, memwipe_realloc, memwipe_free);
	tls_wipe_freed();
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
	if (check_log(conf, err, sizeof(err)) == -1 ||
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
	/* Read here, as root and before any fork: front ends (chrooted) and
	 * sessions (the mailbox owner) inherit them (lang.c, DESIGN). */
	langs = lang_load(conf->pop3d.language_dir, conf->pop3d.default_language, err,
			  sizeof(err));
	if (langs == NULL)
		fatalx("%s: %s", path, err);
	lang_use(&langs);
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
	proxy_trusted_setup(conf);
	M.stats_fd = -1;
	M.metrics_fd = -1;
	conntab_init(conn_unload);
	handoff_configure(conf, conf->pop3d.login_delay_ms);
	M.started_ms = mtime_ms();
	for (size_t i = 0; i < conf->pop3d.nlisten; i++) {
		struct sockaddr_storage ss;
		socklen_t sl;

		sock_parse_addrport(conf->pop3d.listen_addrs[i], &ss, &sl);
		M.listen_fds[i] = sock_tcp_listen(&ss, sl, 511);
		if (M.listen_fds[i] == -1)
			fatal("cannot listen on %s", conf->pop3d.listen_addrs[i]);
		M.listen_proxy[i] = conf->pop3d.proxy_listen[i];
		M.nlisten++;
	}
	for (size_t i = 0; i < M.ntls_addrs; i++) {
		struct sockaddr_storage ss;
		socklen_t sl;

		sock_parse_addrport(M.tls_addrs[i], &ss, &sl);
		M.listen_fds[M.nlisten] = sock_tcp_listen(&ss, sl, 511);
		if (M.listen_fds[M.nlisten] == -1)
			fatal("cannot listen on %s (listen-tls)", M.tls_addrs[i]);
		M.listen_proxy[M.nlisten] = conf->pop3d.proxy_tls[i];
		M.listen_tls[M.nlisten++] = true;
	}
	if (conf->pop3d.stats_socket[0] != '\0') {
		M.stats_fd = sock_unix_listen(conf->pop3d.stats_socket, 0660);
		if (M.stats_fd == -1)
			fatal("cannot listen on %s", conf->pop3d.stats_socket);
		if (stats_chgrp(conf, stats_gid, err, sizeof(err)) == -1)
			fatalx("%s: %s", path, err);
	}
	if (conf->pop3d.metrics_listen[0] != '\0') {
		M.metrics_fd = sock_tcp_listen_str(conf->pop3d.metrics_listen, 64);
		if (M.metrics_fd == -1)
			fatal("[pop3d] metrics-listen: cannot listen on %s",
			      conf->pop3d.metrics_listen);
	}
	handoff_init();		/* the session report socket */
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
		/* on_accept's argument: the listener's index */
		M.listen_evs[i] = event_new(M.base, M.listen_fds[i], EV_READ | EV_PERSIST,
					    on_accept, (void *)(uintptr_t)i);
		if (M.listen_evs[i] == NULL)
			fatalx("event_new");
		event_add(M.listen_evs[i], NULL);
	}
	stats_init(M.base, M.stats_fd, M.metrics_fd);
	handoff_start(M.base);
	M.signal_evs[0] = evsignal_new(M.base, SIGCHLD, on_sigchld, NULL);
	M.signal_evs[1] = evsignal_new(M.base, SIGTERM, on_sigterm, NULL);
	M.signal_evs[2] = evsignal_new(M.base, SIGINT, on_sigterm, NULL);
	M.signal_evs[3] = evsignal_new(M.base, SIGUSR1, on_sigusr1, NULL);
	M.signal_evs[4] = evsignal_new(M.base, SIGHUP, on_sighup, NULL);
	for (size_t i = 0; i < sizeof(M.signal_evs) / sizeof(M.signal_evs[0]); i++) {
		if (M.signal_evs[i] == NULL)
			fatalx("evsignal_new");
		event_add(M.signal_evs[i], NULL);
	}

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
