/*
 * login.c - a front end: the AUTHORIZATION state of many clients in one
 * libevent loop, as login-user inside login-chroot.
 *
 * DESIGN
 * - The master accepts and passes each connection here (IPC_NEWCONN), so
 *   it can count connections globally.  We report every connection that
 *   ends before login (IPC_CLOSED) and hand every login over
 *   (IPC_HANDOFF); after either, the connection is no longer ours.
 * - Each client is a small state machine.  When credentials are complete
 *   the client is AWAITING authd: its read side is disabled, so whatever
 *   it pipelined stays in its input buffer (bounded by the read
 *   watermark, POP3D_HANDOFF_MAX_DATA) untouched, and the loop goes on
 *   serving everyone else.  On OK, once the replies already queued for
 *   the client are flushed, the socket, the ticket and those unprocessed
 *   bytes go to the master in one message.
 * - A failed login waits auth-failure-delay on a timer (never blocking the
 *   loop) before the -ERR, and max-auth-failures closes the connection.
 * - Passwords live only in the line buffer, the authd request line and
 *   libevent's output buffer; the first two are wiped after use.
 * - TLS (a later issue) slots in here: the front end would terminate TLS
 *   and hand the master one end of a socketpair instead of the client
 *   socket, proxying between the two; nothing after the handoff changes.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "common/config.h"
#include "common/line.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/sock.h"
#include "pop3d/pop3d.h"

#define CLIENT_BUCKETS 1024

enum client_state {
	ST_AUTHORIZATION,	/* reading commands */
	ST_SASL,		/* AUTH PLAIN sent "+ ", waiting for the response */
	ST_AWAITING,		/* request at authd; input not processed */
	ST_DELAY,		/* failed; waiting auth-failure-delay */
	ST_HANDOFF,		/* OK; flushing our replies before the handoff */
	ST_CLOSING,		/* flushing the last reply, then close */
};

struct client {
	uint64_t conn_id;
	struct bufferevent *bev;
	struct event *timer;
	enum client_state state;
	bool skipping;		/* dropping the rest of an over-long line */
	bool have_user;
	unsigned bad, failures;
	uint64_t auth_handle;
	const char *method;
	char user[AUTH_MAX_USER + 1];
	char ticket[IPC_TICKET_LEN + 1];
	char rip[64], lip[64];
	unsigned rport, lport;
	struct client *next;	/* hash chain */
};

struct login {
	const struct config *conf;
	struct event_base *base;
	int chan;
	struct event *chan_ev;
	struct authc *authc;
	struct event *reconnect_ev;
	uint64_t reconnect_ms;
	bool asked_replacement;	/* sent IPC_RETIRE */
	bool retired;		/* the master's IPC_RETIRE came: leave when idle */
	size_t nclients;
	struct client *buckets[CLIENT_BUCKETS];
};

static struct login L;

static void client_process(struct client *c);

/* ---- bookkeeping --------------------------------------------------------- */

static void client_unlink(struct client *c)
{
	struct client **pp = &L.buckets[c->conn_id % CLIENT_BUCKETS];

	while (*pp != NULL && *pp != c)
		pp = &(*pp)->next;
	if (*pp == c)
		*pp = c->next;
	L.nclients--;
}

static void maybe_exit(void)
{
	if (L.retired && L.nclients == 0) {
		log_info("front end: retired and idle, exiting");
		exit(0);
	}
}

/* Frees c; tells the master unless the connection was handed off. */
static void client_free(struct client *c, bool handed_off)
{
	if (!handed_off) {
		struct ipc_msg m = { .type = IPC_CLOSED, .conn_id = c->conn_id };
		if (ipc_send(L.chan, &m, -1) == -1)
			log_warn("front end: cannot report a closed connection");
	}
	if (c->state == ST_AWAITING && L.authc != NULL)
		authc_cancel(L.authc, c->auth_handle);
	client_unlink(c);
	event_free(c->timer);
	bufferevent_free(c->bev);
	sodium_memzero(c->user, sizeof(c->user));
	free(c);
	maybe_exit();
}

static void set_timer(struct client *c, uint64_t ms)
{
	struct timeval tv;

	MTIME_TV(tv, ms);
	evtimer_add(c->timer, &tv);
}

static void reply(struct client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void reply(struct client *c, const char *fmt, ...)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(out, fmt, ap);
	va_end(ap);
	evbuffer_add(out, "\r\n", 2);
}

/* Sends the last reply and closes once it is written (from the write
 * callback or the timer: never synchronously, so callers may still look
 * at c). */
static void client_close(struct client *c)
{
	c->state = ST_CLOSING;
	bufferevent_disable(c->bev, EV_READ);
	set_timer(c, evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 ? 0 :
		  L.conf->pop3d.preauth_timeout_ms);
}

static void bad_command(struct client *c, const char *msg)
{
	reply(c, "-ERR %s", msg);
	if (++c->bad >= L.conf->pop3d.max_bad_commands) {
		reply(c, "-ERR Too many bad commands, closing");
		client_close(c);
	}
}

/* Back to reading commands (after a failure, a tempfail or a cancel). */
static void resume(struct client *c)
{
	c->state = ST_AUTHORIZATION;
	set_timer(c, L.conf->pop3d.preauth_timeout_ms);
	bufferevent_enable(c->bev, EV_READ);
	client_process(c);
}

/* ---- the handoff ------------------------------------------------------------ */

static void do_handoff(struct client *c)
{
	static struct ipc_msg m;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t n = evbuffer_get_length(in);

	if (n > POP3D_HANDOFF_MAX_DATA) {
		/* cannot happen: the read watermark stops at this size */
		log_warnx("front end: %zu pipelined bytes, more than the handoff carries", n);
		reply(c, "-ERR [SYS/TEMP] Too much pipelined input");
		client_close(c);
		return;
	}
	memset(&m, 0, IPC_HEADER_LEN);
	m.type = IPC_HANDOFF;
	m.conn_id = c->conn_id;
	m.data_len = (uint32_t)n;
	snprintf(m.method, sizeof(m.method), "%s", c->method);
	memcpy(m.ticket, c->ticket, sizeof(m.ticket));
	if (n > 0)
		evbuffer_remove(in, m.data, n);
	if (ipc_send(L.chan, &m, bufferevent_getfd(c->bev)) == -1) {
		log_warn("front end: handoff of %s failed", c->user);
		reply(c, "-ERR [SYS/TEMP] Internal error, try again");
		client_close(c);
		return;
	}
	sodium_memzero(m.data, n);
	client_free(c, true);
}

/* ---- authd replies ------------------------------------------------------------ */

static void on_auth_reply(void *ctx, const struct authc_reply *r)
{
	struct client *c = ctx;

	evtimer_del(c->timer);
	switch (r->result) {
	case AUTHC_OK:
		snprintf(c->user, sizeof(c->user), "%s", r->user);
		snprintf(c->ticket, sizeof(c->ticket), "%s", r->ticket);
		c->state = ST_HANDOFF;
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			do_handoff(c);
		else
			set_timer(c, L.conf->pop3d.preauth_timeout_ms);
		return;
	case AUTHC_FAIL:
		c->failures++;
		log_info("login failed: user=%s rip=%s method=%s", c->user, c->rip, c->method);
		c->state = ST_DELAY;
		set_timer(c, L.conf->pop3d.auth_failure_delay_ms);
		return;
	case AUTHC_TEMPFAIL:
		log_warnx("login tempfail: user=%s rip=%s reason=%s", c->user, c->rip,
			  r->reason);
		reply(c, "-ERR [SYS/TEMP] Temporary authentication failure, try again later");
		resume(c);
		return;
	}
}

static void send_auth(struct client *c, const char *pass, const char *plain)
{
	c->method = plain != NULL ? "PLAIN" : "USER";
	c->auth_handle = L.authc == NULL ? 0 :
		authc_auth(L.authc, c->user, pass, plain, c->rip, c->rport, c->lip,
			   c->lport, false, on_auth_reply, c);
	if (c->auth_handle == 0) {
		reply(c, "-ERR [SYS/TEMP] Authentication service unavailable, try again later");
		return;
	}
	c->state = ST_AWAITING;
	bufferevent_disable(c->bev, EV_READ);
	set_timer(c, POP3D_AUTH_TIMEOUT_MS);
}

/* ---- commands ----------------------------------------------------------------- */

static void cmd_auth(struct client *c, char *arg)
{
	char *mech, *ir;
	int n = pop3_cmd_split2(arg, &mech, &ir);

	if (n == 0) {
		reply(c, "+OK SASL mechanisms follow\r\nPLAIN\r\n.");
		return;
	}
	if (n == -1) {
		bad_command(c, "Syntax: AUTH mechanism [initial-response]");
		return;
	}
	if (strcasecmp(mech, "PLAIN") != 0) {
		reply(c, "-ERR Unsupported authentication mechanism");
		return;
	}
	snprintf(c->user, sizeof(c->user), "(sasl)");
	if (ir == NULL) {
		c->state = ST_SASL;
		reply(c, "+ ");
		return;
	}
	/* RFC 5034: "=" is an empty initial response. */
	send_auth(c, NULL, strcmp(ir, "=") == 0 ? "" : ir);
}

static void sasl_response(struct client *c, char *line)
{
	c->state = ST_AUTHORIZATION;
	if (strcmp(line, "*") == 0) {
		reply(c, "-ERR Authentication cancelled");
		return;
	}
	send_auth(c, NULL, line);
}

static void dispatch(struct client *c, char *line, size_t len)
{
	struct pop3_cmd cmd;

	if (c->state == ST_SASL) {
		sasl_response(c, line);
		return;
	}
	pop3_cmd_parse(line, &cmd);
	/* Only AUTH (with an initial response) may exceed the RFC's 255. */
	if (len + 2 > POP3_MAX_COMMAND && cmd.id != CMD_AUTH) {
		bad_command(c, "Line too long");
		return;
	}
	switch (cmd.id) {
	case CMD_CAPA:
		pop3_capa(bufferevent_get_output(c->bev), L.conf, true);
		break;
	case CMD_NOOP:
		reply(c, "+OK");
		break;
	case CMD_QUIT:
		reply(c, "+OK Bye");
		client_close(c);
		break;
	case CMD_USER:
		if (!L.conf->pop3d.user_command) {
			reply(c, "-ERR USER is disabled; use AUTH PLAIN");
		} else if (cmd.arg == NULL || cmd.arg[0] == '\0' ||
			   strlen(cmd.arg) > AUTH_MAX_USER) {
			bad_command(c, "Syntax: USER name");
		} else {
			snprintf(c->user, sizeof(c->user), "%s", cmd.arg);
			c->have_user = true;
			reply(c, "+OK");
		}
		break;
	case CMD_PASS:
		if (!c->have_user) {
			bad_command(c, "USER first");
		} else if (cmd.arg == NULL || strlen(cmd.arg) > AUTH_MAX_PASSWORD) {
			bad_command(c, "Syntax: PASS password");
		} else {
			c->have_user = false;
			send_auth(c, cmd.arg, NULL);
		}
		break;
	case CMD_AUTH:
		cmd_auth(c, cmd.arg);
		break;
	case CMD_APOP:
		reply(c, "-ERR APOP is not supported");
		break;
	case CMD_STLS:
		reply(c, "-ERR STLS is not available");
		break;
	case CMD_STAT: case CMD_LIST: case CMD_UIDL: case CMD_RETR: case CMD_TOP:
	case CMD_DELE: case CMD_RSET: case CMD_LAST:
		bad_command(c, "Not logged in");
		break;
	default:
		bad_command(c, "Unknown command");
		break;
	}
}

/* Processes complete lines while the client is in a state that reads. */
static void client_process(struct client *c)
{
	static char line[POP3_MAX_SASL_LINE + 1];
	struct evbuffer *in = bufferevent_get_input(c->bev);

	while (c->state == ST_AUTHORIZATION || c->state == ST_SASL) {
		size_t len;
		bool has_nul;
		enum line_status st;

		if (evbuffer_get_length(bufferevent_get_output(c->bev)) >=
		    POP3D_PREAUTH_MAX_OUTPUT) {
			/* the client does not read its replies: wait for it */
			bufferevent_disable(c->bev, EV_READ);
			return;
		}
		if (c->skipping) {
			if (!line_skip(in))
				return;
			c->skipping = false;
			continue;
		}
		st = line_read(in, line, POP3_MAX_SASL_LINE, &len, &has_nul);
		if (st == LINE_NONE)
			return;
		set_timer(c, L.conf->pop3d.preauth_timeout_ms);
		if (st == LINE_TOOLONG) {
			c->skipping = true;
			if (c->state == ST_SASL) {
				c->state = ST_AUTHORIZATION;
				reply(c, "-ERR Authentication response too long");
			} else {
				bad_command(c, "Line too long");
			}
			continue;
		}
		if (has_nul)
			bad_command(c, "NUL byte in command");
		else
			dispatch(c, line, len);
		sodium_memzero(line, len);
	}
}

/* ---- libevent callbacks ---------------------------------------------------------- */

static void on_client_read(struct bufferevent *bev, void *arg)
{
	client_process(arg);
}

static void on_client_write(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;

	/* output drained (the low write watermark is 0) */
	switch (c->state) {
	case ST_CLOSING:
		client_free(c, false);
		break;
	case ST_HANDOFF:
		do_handoff(c);
		break;
	case ST_AUTHORIZATION:
	case ST_SASL:
		bufferevent_enable(c->bev, EV_READ);
		client_process(c);
		break;
	default:
		break;
	}
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
	client_free(arg, false);
}

static void on_client_timer(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	switch (c->state) {
	case ST_DELAY:
		reply(c, "-ERR [AUTH] Authentication failed");
		if (c->failures >= L.conf->pop3d.max_auth_failures) {
			reply(c, "-ERR Too many failed logins, closing");
			client_close(c);
		} else {
			resume(c);
		}
		break;
	case ST_AWAITING:
		authc_cancel(L.authc, c->auth_handle);
		log_warnx("login tempfail: user=%s rip=%s reason=no answer from authd",
			  c->user, c->rip);
		reply(c, "-ERR [SYS/TEMP] Authentication timed out, try again later");
		resume(c);
		break;
	case ST_CLOSING:
	case ST_HANDOFF:
		client_free(c, false);	/* the client does not read */
		break;
	default:
		reply(c, "-ERR Disconnected for inactivity");
		client_close(c);
		break;
	}
}

static void new_client(int fd, uint64_t conn_id)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct client *c;

	c = xcalloc(1, sizeof(*c));
	c->conn_id = conn_id;
	sl = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		sock_addr_str((struct sockaddr *)&ss, c->rip, sizeof(c->rip), &c->rport);
	else
		snprintf(c->rip, sizeof(c->rip), "?");
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		sock_addr_str((struct sockaddr *)&ss, c->lip, sizeof(c->lip), &c->lport);
	else
		snprintf(c->lip, sizeof(c->lip), "?");
	evutil_make_socket_nonblocking(fd);
	c->bev = bufferevent_socket_new(L.base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(L.base, on_client_timer, c);
	if (c->bev == NULL || c->timer == NULL)
		fatalx("front end: out of memory");
	bufferevent_setcb(c->bev, on_client_read, on_client_write, on_client_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, POP3D_HANDOFF_MAX_DATA);
	c->next = L.buckets[conn_id % CLIENT_BUCKETS];
	L.buckets[conn_id % CLIENT_BUCKETS] = c;
	L.nclients++;
	reply(c, "+OK %s", L.conf->pop3d.greeting);
	c->state = ST_AUTHORIZATION;
	set_timer(c, L.conf->pop3d.preauth_timeout_ms);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- the master channel and authd --------------------------------------------------- */

static void on_chan(evutil_socket_t fd, short what, void *arg)
{
	static struct ipc_msg m;
	int cfd;

	for (int i = 0; i < 64; i++) {
		int r = ipc_recv(L.chan, &m, &cfd);
		if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (r <= 0) {
			log_info("front end: master went away, exiting");
			exit(0);
		}
		if (m.type == IPC_RETIRE) {
			/* replaced; nothing more will come from the master */
			L.retired = true;
			maybe_exit();
			continue;
		}
		if (m.type != IPC_NEWCONN) {
			if (cfd != -1)
				close(cfd);
			continue;
		}
		new_client(cfd, m.conn_id);
	}
}

static void try_reconnect(evutil_socket_t fd, short what, void *arg)
{
	int afd = sock_unix_connect(L.conf->pop3d.auth_socket, false);

	if (afd != -1) {
		log_info("front end: reconnected to authd");
		L.reconnect_ms = 0;
		authc_set_fd(L.authc, afd);
		return;
	}
	L.reconnect_ms = L.reconnect_ms == 0 ? POP3D_RESTART_MIN_MS :
		(L.reconnect_ms * 2 > POP3D_RESTART_MAX_MS ? POP3D_RESTART_MAX_MS
							   : L.reconnect_ms * 2);
	struct timeval tv;
	MTIME_TV(tv, L.reconnect_ms);
	evtimer_add(L.reconnect_ev, &tv);
}

/* authd went away.  Unprivileged we can reconnect ourselves; chrooted, as
 * login-user, the socket is (usually) out of reach, so we ask the master
 * for a replacement, which connects before it drops its privileges.  We
 * keep serving (logins get [SYS/TEMP]) until the master says we have been
 * replaced, then leave once our clients are done. */
static void on_authd_lost(void *arg)
{
	struct ipc_msg m = { .type = IPC_RETIRE };

	if (!privdrop_enabled()) {
		try_reconnect(-1, 0, NULL);
		return;
	}
	if (L.asked_replacement)
		return;
	L.asked_replacement = true;
	if (ipc_send(L.chan, &m, -1) == -1)
		exit(1);
}

static void on_term(evutil_socket_t fd, short what, void *arg)
{
	exit(0);
}

void login_main(const struct config *conf, int chan, int authfd, uid_t uid, gid_t gid)
{
	struct event *sig;

	memset(&L, 0, sizeof(L));
	L.conf = conf;
	L.chan = chan;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	if (privdrop_login(conf->pop3d.login_chroot, uid, gid) == -1)
		exit(1);
	L.base = event_base_new();
	if (L.base == NULL)
		fatalx("front end: event_base_new");
	sock_set_nonblock(chan, true);
	L.chan_ev = event_new(L.base, chan, EV_READ | EV_PERSIST, on_chan, NULL);
	L.reconnect_ev = evtimer_new(L.base, try_reconnect, NULL);
	sig = evsignal_new(L.base, SIGTERM, on_term, NULL);
	if (L.chan_ev == NULL || L.reconnect_ev == NULL || sig == NULL)
		fatalx("front end: event_new");
	event_add(L.chan_ev, NULL);
	event_add(sig, NULL);
	L.authc = authc_new(L.base, authfd, on_authd_lost, NULL);
	if (authfd == -1)
		on_authd_lost(NULL);
	event_base_dispatch(L.base);
	exit(0);
}
