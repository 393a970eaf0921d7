/*
 * login.c - a front end: the AUTHORIZATION state of many clients in one
 * libevent loop, as login-user inside login-chroot.
 *
 * Runs in a front end process.  login_main starts as root (forked by the
 * master): it loads the TLS certificates (tls.c) and drops to login-user
 * in login-chroot (privdrop_login) before its loop starts; everything that
 * reads a client byte runs after the drop.
 *
 * DESIGN
 * - The master accepts and passes each connection here (IPC_NEWCONN), so
 *   it can count connections globally.  We report every connection that
 *   ends before login (IPC_CLOSED) and hand every login over
 *   (IPC_HANDOFF); after either, the connection is no longer ours.
 * - Each client is a small state machine.  When credentials are complete
 *   the client is AWAITING authd: its read side is disabled, so whatever
 *   it pipelined stays in its input buffer (bounded by the read
 *   watermark, POP3D_HANDOFF_MAX_DATA; over TLS see TLS input) untouched,
 *   and the loop goes on serving everyone else.  On OK, once the replies
 *   already queued for the client are flushed, the socket, the ticket and
 *   those unprocessed bytes go to the master in one message.
 * - PROXY protocol (a listener in proxy-protocol; the master has already
 *   refused peers outside proxy-trusted-networks).  The client starts in
 *   ST_PP_HEADER with no bufferevent: on_pp_readable peeks at the socket
 *   and takes only the header's bytes (proxyproto.c decodes them), so what
 *   follows, a TLS ClientHello or pipelined POP3, stays in the socket for
 *   the bufferevent made later.  A malformed header, EOF, or none within
 *   proxy-timeout closes the connection silently (counted, logged at most
 *   POP3D_PROXY_LOG_PER_SEC lines a second).  Then the client's address
 *   (or the balancer's for LOCAL / UNKNOWN) replaces rip, lip and the
 *   require-tls-exempt match, and goes to the master (IPC_PROXY_ADDR): it
 *   counts the connection under it for max-connections-per-ip, which it
 *   could not do at accept, and answers (IPC_PROXY_VERDICT).  Only then
 *   does client_start greet the client or start TLS; over the limit it
 *   gets the master's usual "-ERR [SYS/TEMP]" line (nothing on a TLS port).
 *   The proxy-timeout timer runs until the verdict, so a lost answer does
 *   not strand the client.
 * - A failed login waits auth-failure-delay on a timer (never blocking the
 *   loop) before the -ERR, and max-auth-failures closes the connection.
 *   authd's TEMPFAIL reason=overloaded (its queue refused the request:
 *   authd/fairq.c) is treated the same way, with a [SYS/TEMP] reply: an
 *   immediate answer would invite a flood to retry at once, and count
 *   nothing against it.  TEMPFAIL reason=busy (authd shed the request at
 *   admission, queue-wait-limit: the server as a whole is short of
 *   capacity, and the client's source is not one whose checks keep
 *   failing) is answered at once, so that a refused client knows within
 *   milliseconds, but counts towards max-auth-failures all the same; only
 *   the first failed attempt of a connection is answered so: a client
 *   that loops on one connection gets auth-failure-delay from the second
 *   on, as for overloaded, so that its attempts stay bounded by the delay.
 *   "login tempfail" lines are rate-limited (POP3D_TEMPFAIL_LOG_PER_SEC):
 *   under overload there is one per refused login.
 * - Pre-login limits.  Whatever the client sends, the AUTHORIZATION state
 *   (TLS handshake, commands, waiting for authd, failure delays) ends at
 *   login-timeout after the connection came: set_timer() never arms the
 *   client's one timer past that moment before the login, and remembers
 *   when it was cut short for it, so the timer knows why it fired.  The
 *   command lines before a login are counted against login-max-commands.
 *   Either limit closes the connection with an -ERR line, one log line
 *   and a counter (fe_stats.login_limit).
 * - Passwords live only in the line buffer, the authd request line,
 *   libevent's buffers and OpenSSL's records; the first two are wiped after
 *   use, the others when freed (common/memwipe.c: the master installed the
 *   hooks before forking us), and the stack after each read callback.
 * - TLS.  A connection from a listen-tls port, or one that sent STLS,
 *   gets an OpenSSL filter bufferevent (tls.c's contexts) on top of its
 *   socket bufferevent, and everything above reads and writes the filter.
 *   A filter rather than an OpenSSL socket bufferevent: STLS keeps the
 *   socket bufferevent it already has, and a filter never strands
 *   decrypted bytes inside OpenSSL when reading resumes (the socket
 *   variant only re-arms the socket, which may stay quiet).  The handshake
 *   is bounded by preauth-timeout like the rest of the AUTHORIZATION
 *   state, and a failing one costs only its own connection.
 * - TLS input: the filter defers its callbacks (BEV_OPT_DEFER_CALLBACKS)
 *   and has no read watermark; the bound is the socket's read watermark,
 *   POP3D_TLS_MAX_READ.  libevent 2.1's OpenSSL filter re-enters its
 *   reader from inside our own calls: bufferevent_enable(EV_READ), and a
 *   read watermark's resume, which runs in the middle of the evbuffer_drain
 *   that takes a line out of the input (line_read), both call its
 *   consider_reading at once, which decrypts what is pending and calls
 *   the read callback (or, on close_notify or an error, the event
 *   callback) right there, unless callbacks are deferred.  With the old
 *   read watermark (16384) on the filter, a burst of more than one TLS
 *   record that filled it ran client_process inside client_process: the
 *   inner one processed the later lines and wiped the static line buffer
 *   the outer one was about to use, so one command (a PASS) was lost and
 *   answered "-ERR NUL byte in command", and a close_notify in the same
 *   burst freed the client under the outer call (use after free).  The
 *   plain socket bufferevent has none of this: its enable only arms an
 *   event.  Deferred, every filter callback runs from the loop, never
 *   inside a call of ours; and a watermark on the socket only arms and
 *   disarms its read event.  What a pre-auth client can make us hold stays
 *   bounded: the socket holds at most POP3D_TLS_MAX_READ encrypted bytes
 *   and OpenSSL one record; whenever we stop reading (waiting for authd,
 *   replies not read) the filter stops draining the socket, and otherwise
 *   each read callback consumes every complete line.
 * - STLS: the "+OK" goes out in plain text; whatever the client sent after
 *   the STLS line is still in the input buffer and is dropped before the
 *   filter goes on, and so is what it told us before (USER): nothing sent
 *   in plain text is ever read as if it had come protected (RFC 2595
 *   section 4; the STARTTLS command injection bugs).  Bytes the client
 *   sent after STLS that had not reached us yet go to OpenSSL as handshake
 *   data, which fails.
 * - A TLS login cannot give the master the socket: the session speaks
 *   plain POP3 and must never see TLS state or keys.  We hand over one end
 *   of a socketpair instead and relay between it and the TLS connection
 *   (ST_PROXY) for the rest of the session; pipelined bytes simply flow
 *   through the relay.  Each direction stops reading at POP3D_PROXY_HIGH
 *   bytes queued for the other side and resumes at POP3D_PROXY_LOW.  The
 *   session keeps its own timeouts.  When it closes its end we flush to
 *   the client and close with close_notify; a client that takes nothing
 *   for session-timeout is dropped.  When the client goes, the bytes it
 *   sent are delivered to the session (a final QUIT still counts) and the
 *   session's end is closed (ST_DRAIN).
 * - Closing over TLS: replies pass from the filter's output through
 *   OpenSSL into the socket bufferevent's output, so "written" means both
 *   are empty; then close_notify (SSL_shutdown), then the socket's output
 *   empty again.  A callback on the socket's output buffer reports the
 *   progress (on_sock_output).
 * - TLS session-ticket keys come from the master: inherited at the fork,
 *   replaced whenever it rotates them (IPC_TICKET_KEYS); tls.c's DESIGN.
 * - Languages (RFC 6856).  Each client has a language (default-language
 *   until it says LANG), and every text in its replies goes through tr()
 *   (lang.c's catalogues, inherited from the master: nothing is opened
 *   here, chrooted).  The handoff carries the language's tag to the
 *   master and the session.  UTF8 lets USER and PASS carry UTF-8, checked
 *   here (RFC 3629) so that the client hears why; authd normalises the
 *   name (NFC) whatever the client sent.
 * - Monitoring.  The counters of struct fe_stats live in L.st, touched
 *   only by this loop.  A timer every POP3D_STATS_INTERVAL_MS sends them
 *   whole to the master (IPC_STATS) if they changed, and refreshes the
 *   process title ("pop3d: login [N connections, M awaiting auth]") if it
 *   changed; a retired front end sends a last snapshot before it leaves.
 *   Bytes sent are counted where they leave for the kernel: the callback
 *   on each client's socket output buffer (n_deleted), so a TLS client's
 *   count is of encrypted bytes, the relay to its session included.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "common/config.h"
#include "common/line.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/memwipe.h"
#include "common/mtime.h"
#include "common/proctitle.h"
#include "common/sock.h"
#include "pop3d/pop3d.h"

#define CLIENT_BUCKETS 1024

enum client_state {
	ST_TLS_HANDSHAKE,	/* TLS handshake (listen-tls port, or after STLS) */
	ST_AUTHORIZATION,	/* reading commands */
	ST_SASL,		/* AUTH PLAIN sent "+ ", waiting for the response */
	ST_AWAITING,		/* request at authd; input not processed */
	ST_DELAY,		/* failed; waiting auth-failure-delay */
	ST_HANDOFF,		/* OK, plain: flushing our replies before the handoff */
	ST_PROXY,		/* handed off, TLS: relaying client <-> session */
	ST_DRAIN,		/* relay, client gone: flushing its last bytes to the session */
	ST_CLOSING,		/* flushing the last reply, then close */
	ST_PP_HEADER,		/* PROXY protocol: reading the header */
	ST_PP_VERDICT,		/* ... read; waiting for the master's verdict */
};

/* A PROXY protocol header being read (ST_PP_HEADER); freed once read. */
struct pp_reader {
	struct event *ev;		/* the socket is readable */
	struct sockaddr_storage peer;	/* the balancer (getpeername) */
	size_t len;			/* header bytes consumed so far */
	uint8_t buf[PROXYPROTO_V2_MAX];
};

struct client {
	uint64_t conn_id;
	int fd;			/* the socket until a bufferevent owns it, else -1 */
	struct pp_reader *pp;	/* ST_PP_HEADER */
	struct bufferevent *bev;	/* what we read and write: the socket or the TLS filter */
	struct bufferevent *sock;	/* TLS: the socket bufferevent under bev (bev owns it) */
	struct evbuffer_cb_entry *sock_cb;	/* on_sock_output on the socket's output */
	struct bufferevent *pair;	/* ST_PROXY: our end of the session's socketpair */
	struct event *timer;
	struct event *kick;		/* runs closing_step outside libevent's buffer code */
	enum client_state state;
	bool tls_port;		/* accepted on a listen-tls port: TLS from the first byte */
	bool tls;		/* TLS handshake done */
	bool tls_failed;	/* TLS error: no close_notify */
	bool shutdown_sent;	/* close_notify queued */
	bool handed_off;	/* the master has the connection (no IPC_CLOSED) */
	bool exempt;		/* from require-tls (require-tls-exempt) */
	bool skipping;		/* dropping the rest of an over-long line */
	bool have_user;
	bool delay_tempfail;	/* ST_DELAY for an overloaded TEMPFAIL, not a FAIL */
	bool timer_is_login;	/* the timer was cut short for login-timeout */
	bool utf8;		/* sent UTF8 (RFC 6856): USER and PASS are UTF-8 */
	const struct lang *lang;	/* of the responses (LANG; default-language) */
	unsigned bad, failures;
	unsigned commands;	/* lines read before the login (login-max-commands) */
	uint64_t login_deadline_ms;	/* when login-timeout ends the AUTHORIZATION state */
	uint64_t auth_handle;
	uint64_t auth_sent_us;	/* when the AUTH request went to authd */
	const char *method;
	char user[AUTH_MAX_USER + 1];
	char ticket[IPC_TICKET_LEN + 1];
	char tls_info[POP3D_TLS_INFO_MAX];
	char rip[64], lip[64];
	unsigned rport, lport;
	LIST_ENTRY(client) entry;	/* hash chain */
};

struct login {
	const struct config *conf;
	struct event_base *base;
	int chan;
	struct ipc_chan *out;	/* chan's sending side and its queue */
	struct event *chan_ev;
	struct authc *authc;
	struct event *reconnect_ev;
	uint64_t reconnect_ms;
	bool asked_replacement;	/* sent IPC_RETIRE */
	bool retired;		/* the master's IPC_RETIRE came: leave when idle */
	size_t nclients;	/* including TLS relays */
	struct netlist exempt;	/* require-tls-exempt */
	struct log_ratelimit pp_log;	/* PROXY header failures */
	struct log_ratelimit tempfail_log;	/* login tempfail lines */
	struct fe_stats st;	/* our counters (the master adds them up) */
	struct fe_stats sent;	/* as last sent to the master */
	struct event *tick;	/* every POP3D_STATS_INTERVAL_MS: stats, title */
	size_t title_clients;	/* what the title shows */
	unsigned title_awaiting;
	LIST_HEAD(, client) buckets[CLIENT_BUCKETS];
};

static struct login L;

static void client_process(struct client *c);

/* The text msgid in c's language (lang.c); the response codes and the
 * status indicator around it are never translated. */
static const char *tr(const struct client *c, const char *msgid) __attribute__((format_arg(2)));

static const char *tr(const struct client *c, const char *msgid)
{
	return lang_tr(c->lang, msgid);
}

/* c's user name as a log token (log_token); valid until the next call. */
static const char *user_tok(const struct client *c)
{
	static char buf[POP3D_LOG_USER_MAX];

	return log_token(c->user, buf, sizeof(buf));
}

/* ---- bookkeeping --------------------------------------------------------- */

static void client_unlink(struct client *c)
{
	LIST_REMOVE(c, entry);
	L.nclients--;
}

static unsigned count_awaiting(void)
{
	const struct client *c;
	unsigned n = 0;

	for (size_t b = 0; b < CLIENT_BUCKETS; b++)
		LIST_FOREACH(c, &L.buckets[b], entry)
			n += c->state == ST_AWAITING;
	return n;
}

/* Sends our counters to the master if they changed since the last time. */
static void stats_flush(void)
{
	static struct ipc_msg m;

	L.st.clients = (uint32_t)L.nclients;
	L.st.awaiting = count_awaiting();
	if (memcmp(&L.st, &L.sent, sizeof(L.st)) == 0)
		return;
	memset(&m, 0, IPC_HEADER_LEN);
	m.type = IPC_STATS;
	m.data_len = sizeof(L.st);
	memcpy(m.data, &L.st, sizeof(L.st));
	if (ipc_chan_send(L.out, &m, -1) == -1) {
		log_warn("front end: cannot send counters to the master");
		return;
	}
	L.sent = L.st;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	stats_flush();
	if (L.st.clients != L.title_clients || L.st.awaiting != L.title_awaiting) {
		L.title_clients = L.st.clients;
		L.title_awaiting = L.st.awaiting;
		proctitle_set("pop3d: login [%zu connections, %u awaiting auth]", L.title_clients,
			      L.title_awaiting);
	}
}

static void maybe_exit(void)
{
	if (L.retired && L.nclients == 0) {
		stats_flush();	/* the master adds our last counts to its totals */
		/* the loop ends here: waiting for the master is now allowed */
		if (ipc_chan_flush_wait(L.out, POP3D_IPC_FLUSH_MS) == -1)
			log_warn("front end: cannot send the last counters to the master");
		log_info("front end: retired and idle, exiting");
		exit(0);
	}
}

/* Frees c (and, over TLS, its socket and relay); tells the master unless
 * the connection was handed off. */
static void client_free(struct client *c)
{
	if (!c->handed_off) {
		struct ipc_msg m = { .type = IPC_CLOSED, .conn_id = c->conn_id };
		if (ipc_chan_send(L.out, &m, -1) == -1)
			log_warn("front end: cannot report a closed connection");
	}
	if (c->state == ST_AWAITING && L.authc != NULL)
		authc_cancel(L.authc, c->auth_handle);
	client_unlink(c);
	event_free(c->timer);
	event_free(c->kick);
	if (c->sock_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->sock != NULL ? c->sock : c->bev),
					 c->sock_cb);
	if (c->pair != NULL)
		bufferevent_free(c->pair);
	if (c->pp != NULL) {
		event_free(c->pp->ev);
		free(c->pp);
	}
	if (c->bev != NULL)
		bufferevent_free(c->bev);	/* a TLS filter frees the socket under it */
	else if (c->fd != -1)
		close(c->fd);			/* PROXY header: no bufferevent yet */
	sodium_memzero(c->user, sizeof(c->user));
	free(c);
	maybe_exit();
}

/* Not logged in yet: the states login-timeout bounds. */
static bool before_login(const struct client *c)
{
	switch (c->state) {
	case ST_TLS_HANDSHAKE: case ST_AUTHORIZATION: case ST_SASL: case ST_AWAITING:
	case ST_DELAY:
		return true;
	default:
		return false;
	}
}

/* Arms c's timer for ms from now; before the login (set c->state first),
 * never past login-timeout. */
static void set_timer(struct client *c, uint64_t ms)
{
	struct timeval tv;

	c->timer_is_login = false;
	if (before_login(c)) {
		uint64_t now = mtime_ms();
		uint64_t left = c->login_deadline_ms > now ? c->login_deadline_ms - now : 0;

		if (ms >= left) {
			ms = left;
			c->timer_is_login = true;
		}
	}
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

/* Bytes queued for the client: in bev, and over TLS also the encrypted
 * ones in the socket bufferevent. */
static size_t client_queued(const struct client *c)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));

	if (c->sock != NULL)
		n += evbuffer_get_length(bufferevent_get_output(c->sock));
	return n;
}

/* Advances a close: once our replies are written (over TLS: then
 * close_notify, written too), arms the timer to free c at once.  Never
 * frees synchronously, so callers may still look at c. */
static void closing_step(struct client *c)
{
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
		return;		/* on_client_write calls again */
	if (c->sock != NULL) {
		if (c->tls && !c->tls_failed && !c->shutdown_sent) {
			SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
			int r;

			ERR_clear_error();
			r = SSL_shutdown(ssl);
			if (r < 0 && SSL_get_error(ssl, r) == SSL_ERROR_WANT_WRITE)
				return;	/* socket output full: on_sock_output calls again */
			c->shutdown_sent = true;
		}
		if (evbuffer_get_length(bufferevent_get_output(c->sock)) > 0)
			return;	/* on_sock_output calls again */
	}
	set_timer(c, 0);
}

/* Sends the last reply and closes once it is written, within
 * preauth-timeout (session-timeout for a relay). */
static void client_close(struct client *c)
{
	c->state = ST_CLOSING;
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	set_timer(c, c->handed_off ? L.conf->pop3d.session_timeout_ms :
		  L.conf->pop3d.preauth_timeout_ms);
	closing_step(c);
}

/* A pre-login limit (enum login_limit) ends the connection: one -ERR
 * line, one log line, one count. */
static void login_limit_close(struct client *c, enum login_limit which)
{
	static const char *const why[LOGIN_LIMIT_COUNT] = {
		[LOGIN_LIMIT_TIME] = "login-timeout",
		[LOGIN_LIMIT_COMMANDS] = "login-max-commands",
	};

	L.st.login_limit[which]++;
	log_info("login limit: rip=%s user=%s limit=%s commands=%u, closing", c->rip,
		 c->have_user || c->state == ST_AWAITING || c->state == ST_DELAY ? user_tok(c) : "-",
		 why[which], c->commands);
	if (c->state == ST_TLS_HANDSHAKE) {
		client_free(c);		/* nothing can be said in clear text */
		return;
	}
	if (c->state == ST_AWAITING) {
		authc_cancel(L.authc, c->auth_handle);
		c->state = ST_AUTHORIZATION;	/* client_free must not cancel again */
	}
	if (which == LOGIN_LIMIT_TIME)
		reply(c, "-ERR %s", tr(c, "Login time limit exceeded, closing"));
	else
		reply(c, "-ERR %s", tr(c, "Too many commands before login, closing"));
	client_close(c);
}

/* A bad command: "-ERR", code (NULL: none) and msg (a msgid, marked with
 * N_ by the caller) in c's language; max-bad-commands closes. */
static void bad_command_code(struct client *c, const char *code, const char *msg)
{
	if (code != NULL)
		reply(c, "-ERR %s %s", code, tr(c, msg));
	else
		reply(c, "-ERR %s", tr(c, msg));
	if (++c->bad >= L.conf->pop3d.max_bad_commands) {
		reply(c, "-ERR %s", tr(c, "Too many bad commands, closing"));
		client_close(c);
	}
}

static void bad_command(struct client *c, const char *msg)
{
	bad_command_code(c, NULL, msg);
}

/* Back to reading commands (after a failure, a tempfail or a cancel). */
static void resume(struct client *c)
{
	c->state = ST_AUTHORIZATION;
	set_timer(c, L.conf->pop3d.preauth_timeout_ms);
	bufferevent_enable(c->bev, EV_READ);
	client_process(c);
}

/* ---- TLS ---------------------------------------------------------------------- */

static void on_client_read(struct bufferevent *bev, void *arg);
static void on_client_write(struct bufferevent *bev, void *arg);
static void on_client_event(struct bufferevent *bev, short what, void *arg);

/* Progress on the socket's output (bytes written to the kernel: over TLS
 * encrypted ones).  Called from inside libevent's buffer code: only
 * counters, timers and events are touched here. */
static void on_sock_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct client *c = arg;

	if (info->n_deleted == 0)
		return;
	L.st.bytes_sent += info->n_deleted;
	if (c->sock == NULL)
		return;		/* plain: on_client_write drives everything */
	if (c->state == ST_CLOSING) {
		event_active(c->kick, EV_TIMEOUT, 0);
	} else if (c->state == ST_PROXY) {
		/* the client takes data: restart its session-timeout */
		if (client_queued(c) > 0)
			set_timer(c, L.conf->pop3d.session_timeout_ms);
		else
			evtimer_del(c->timer);
	}
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	if (c->state == ST_CLOSING)
		closing_step(c);
}

/* Puts TLS on c: an OpenSSL filter over its socket bufferevent, accepting.
 * The handshake runs by itself; on_client_event hears BEV_EVENT_CONNECTED
 * when it is done. */
static void tls_start(struct client *c)
{
	SSL *ssl = tls_ssl_new();
	struct bufferevent *f;

	if (ssl == NULL)
		fatalx("front end: SSL_new failed (out of memory)");
	/* BEV_OPT_DEFER_CALLBACKS: see DESIGN (TLS input) */
	f = bufferevent_openssl_filter_new(L.base, c->bev, ssl, BUFFEREVENT_SSL_ACCEPTING,
					   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (f == NULL)
		fatalx("front end: bufferevent_openssl_filter_new failed (out of memory)");
	c->sock = c->bev;
	c->bev = f;
	c->state = ST_TLS_HANDSHAKE;
	/* a TCP close without close_notify is an EOF, not an error: POP3
	 * has its own end (QUIT), so no truncation attack to guard against */
	bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
	bufferevent_setcb(f, on_client_read, on_client_write, on_client_event, c);
	/* The input bound sits on the socket, never on the filter (DESIGN,
	 * TLS input); the filter's constructor has just cleared it. */
	bufferevent_setwatermark(c->sock, EV_READ, 0, POP3D_TLS_MAX_READ);
	bufferevent_setwatermark(c->sock, EV_WRITE, 0, POP3D_TLS_MAX_QUEUED);
	bufferevent_enable(f, EV_READ | EV_WRITE);
	set_timer(c, L.conf->pop3d.preauth_timeout_ms);
}

static void tls_connected(struct client *c)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

	c->tls = true;
	L.st.tls_ok++;
	if (SSL_session_reused(ssl))
		L.st.tls_resumed++;
	tls_describe(ssl, c->tls_info, sizeof(c->tls_info));
	log_debug("TLS: rip=%s %s%s", c->rip, c->tls_info,
		  SSL_session_reused(ssl) ? " resumed" : "");
	if (c->tls_port)
		reply(c, "+OK %s", L.conf->pop3d.greeting);
	c->state = ST_AUTHORIZATION;
	set_timer(c, L.conf->pop3d.preauth_timeout_ms);
	client_process(c);
}

/* The earliest OpenSSL error libevent kept for bev (usually the cause),
 * or a generic text.  libevent also keeps SSL_get_error's code among
 * them (small numbers, library 0). */
static const char *tls_bev_error(struct bufferevent *bev, char *buf, size_t size)
{
	unsigned long e, first = 0, code = 0;

	while ((e = bufferevent_get_openssl_error(bev)) != 0) {
		if (ERR_GET_LIB(e) == 0 && e <= SSL_ERROR_WANT_CLIENT_HELLO_CB)
			code = e;
		else
			first = e;	/* handed out latest first */
	}
	if (first != 0)
		return tls_error_string(first, buf, size);
	snprintf(buf, size, "%s", code == SSL_ERROR_SSL ? "TLS protocol error" :
		 "connection closed or reset");
	return buf;
}

/* STLS: reply in plain text, forget everything the client sent so far,
 * and start the handshake. */
static void cmd_stls(struct client *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t junk = evbuffer_get_length(in);

	reply(c, "+OK %s", tr(c, "Begin TLS negotiation"));
	if (junk > 0) {
		log_info("STLS: rip=%s: dropped %zu byte%s sent in plain text after STLS",
			 c->rip, junk, junk == 1 ? "" : "s");
		evbuffer_drain(in, junk);
	}
	c->have_user = false;
	sodium_memzero(c->user, sizeof(c->user));
	tls_start(c);
}

/* require-tls: logins need TLS unless the client's network is exempt. */
static bool login_allowed(const struct client *c)
{
	return !L.conf->pop3d.require_tls || c->tls || c->exempt;
}

static bool stls_offered(const struct client *c)
{
	return L.conf->pop3d.starttls && c->sock == NULL;
}

/* USER, PASS or AUTH without TLS where TLS is required. */
static void refuse_plaintext(struct client *c)
{
	log_info("login without TLS refused: rip=%s", c->rip);
	if (L.conf->pop3d.require_tls_disconnect) {
		reply(c, "-ERR [AUTH] %s", tr(c, "TLS is required to log in; closing"));
		client_close(c);
	} else {
		bad_command_code(c, "[AUTH]", stls_offered(c) ?
				 N_("TLS is required to log in: use STLS first") :
				 N_("TLS is required to log in: use the POP3S port"));
	}
}

/* ---- the TLS relay (after a TLS login's handoff) --------------------------------- */

static void on_pair_read(struct bufferevent *bev, void *arg);
static void on_pair_write(struct bufferevent *bev, void *arg);
static void on_pair_event(struct bufferevent *bev, short what, void *arg);

/* Client -> session: everything decrypted so far. */
static void relay_to_session(struct client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->pair);

	evbuffer_add_buffer(out, bufferevent_get_input(c->bev));
	if (evbuffer_get_length(out) >= POP3D_PROXY_HIGH)
		bufferevent_disable(c->bev, EV_READ);	/* on_pair_write resumes */
}

/* Session -> client. */
static void relay_to_client(struct client *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	evbuffer_add_buffer(out, bufferevent_get_input(c->pair));
	if (evbuffer_get_length(out) >= POP3D_PROXY_HIGH)
		bufferevent_disable(c->pair, EV_READ);	/* on_client_write resumes */
	/* bounded: the client must take something within session-timeout
	 * (on_sock_output restarts it on progress) */
	if (client_queued(c) > 0 && !evtimer_pending(c->timer, NULL))
		set_timer(c, L.conf->pop3d.session_timeout_ms);
}

/* Turns c into a relay between its TLS connection and fd, the front
 * end's end of the socketpair whose other end went to the master. */
static void relay_start(struct client *c, int fd)
{
	c->pair = bufferevent_socket_new(L.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->pair == NULL)
		fatalx("front end: bufferevent_socket_new failed (out of memory)");
	c->handed_off = true;
	c->state = ST_PROXY;
	evtimer_del(c->timer);
	bufferevent_setcb(c->pair, on_pair_read, on_pair_write, on_pair_event, c);
	bufferevent_setwatermark(c->pair, EV_WRITE, POP3D_PROXY_LOW, 0);
	bufferevent_setwatermark(c->bev, EV_WRITE, POP3D_PROXY_LOW, 0);
	bufferevent_enable(c->pair, EV_READ | EV_WRITE);
	bufferevent_enable(c->bev, EV_READ);
	relay_to_session(c);	/* what the client pipelined after its login */
}

/* The client went away (EOF or error): deliver what it sent, then close
 * the session's end. */
static void relay_client_gone(struct client *c)
{
	evbuffer_add_buffer(bufferevent_get_output(c->pair), bufferevent_get_input(c->bev));
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	c->state = ST_DRAIN;
	bufferevent_setwatermark(c->pair, EV_WRITE, 0, 0);
	bufferevent_enable(c->pair, EV_READ);	/* to see the session go, too */
	set_timer(c, evbuffer_get_length(bufferevent_get_output(c->pair)) == 0 ? 0 :
		  L.conf->pop3d.session_timeout_ms);
}

static void on_pair_read(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;

	if (c->state == ST_PROXY)
		relay_to_client(c);
	else
		evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(
				       bufferevent_get_input(bev)));
}

static void on_pair_write(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;

	if (c->state == ST_PROXY)
		bufferevent_enable(c->bev, EV_READ);
	else if (c->state == ST_DRAIN && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		set_timer(c, 0);
}

/* The session closed its end (or it broke): flush to the client, then
 * close the TLS connection cleanly. */
static void on_pair_event(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;

	if (c->state != ST_PROXY) {
		set_timer(c, 0);
		return;
	}
	evbuffer_add_buffer(bufferevent_get_output(c->bev), bufferevent_get_input(bev));
	bufferevent_free(c->pair);
	c->pair = NULL;
	client_close(c);
}

/* ---- the handoff ------------------------------------------------------------ */

static void do_handoff(struct client *c)
{
	static struct ipc_msg m;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	/* Over TLS the pipelined bytes flow through the relay instead. */
	size_t n = c->tls ? 0 : evbuffer_get_length(in);
	int sv[2] = { -1, -1 }, fd;

	if (n > POP3D_HANDOFF_MAX_DATA) {
		/* cannot happen: the read watermark stops at this size */
		log_warnx("front end: %zu pipelined bytes, more than the handoff carries", n);
		reply(c, "-ERR [SYS/TEMP] %s", tr(c, "Too much pipelined input"));
		client_close(c);
		return;
	}
	if (c->tls) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == -1) {
			log_warn("front end: socketpair for the TLS relay of %s", user_tok(c));
			reply(c, "-ERR [SYS/TEMP] %s", tr(c, "Internal error, try again"));
			client_close(c);
			return;
		}
		fd = sv[1];
	} else {
		fd = bufferevent_getfd(c->bev);
	}
	memset(&m, 0, IPC_HEADER_LEN);
	m.type = IPC_HANDOFF;
	m.conn_id = c->conn_id;
	m.data_len = (uint32_t)n;
	m.secured = c->tls;
	if (c->tls)
		snprintf(m.tls_info, sizeof(m.tls_info), "%s", c->tls_info);
	snprintf(m.method, sizeof(m.method), "%s", c->method);
	snprintf(m.lang, sizeof(m.lang), "%s", lang_tag(c->lang));
	memcpy(m.ticket, c->ticket, sizeof(m.ticket));
	if (n > 0)
		evbuffer_remove(in, m.data, n);
	if (ipc_chan_send(L.out, &m, fd) == -1) {
		log_warn("front end: handoff of %s failed", user_tok(c));
		sodium_memzero(&m, IPC_HEADER_LEN + n);	/* ticket, client bytes */
		if (sv[0] != -1) {
			close(sv[0]);
			close(sv[1]);
		}
		reply(c, "-ERR [SYS/TEMP] %s", tr(c, "Internal error, try again"));
		client_close(c);
		return;
	}
	sodium_memzero(&m, IPC_HEADER_LEN + n);	/* ticket, client bytes */
	if (!c->tls) {
		c->handed_off = true;
		client_free(c);
		return;
	}
	close(sv[1]);
	relay_start(c, sv[0]);
}

/* ---- authd replies ------------------------------------------------------------ */

static void on_auth_reply(void *ctx, const struct authc_reply *r)
{
	struct client *c = ctx;
	char reason[128];

	evtimer_del(c->timer);
	metrics_hist_add(&L.st.auth_latency, mtime_us() - c->auth_sent_us);
	switch (r->result) {
	case AUTHC_OK:
		snprintf(c->user, sizeof(c->user), "%s", r->user);
		snprintf(c->ticket, sizeof(c->ticket), "%s", r->ticket);
		c->state = ST_HANDOFF;
		/* Over TLS our replies stay queued in front of the session's
		 * on the same connection, so there is nothing to wait for. */
		if (c->tls || evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			do_handoff(c);
		else
			set_timer(c, L.conf->pop3d.preauth_timeout_ms);
		return;
	case AUTHC_FAIL:
		c->failures++;
		L.st.logins_failed++;
		/* fixed format, documented in pop3d(8) (LOGGING) for fail2ban */
		log_info("login failed: user=%s rip=%s method=%s",
			 user_tok(c), c->rip, c->method);
		c->state = ST_DELAY;
		set_timer(c, L.conf->pop3d.auth_failure_delay_ms);
		return;
	case AUTHC_TEMPFAIL: {
		uint64_t suppressed;

		L.st.logins_tempfailed++;
		if (log_ratelimit(&L.tempfail_log, POP3D_TEMPFAIL_LOG_PER_SEC, mtime_ms(),
				  &suppressed)) {
			char more[64] = "";

			if (suppressed > 0)
				snprintf(more, sizeof(more), " (%llu more not logged)",
					 (unsigned long long)suppressed);
			log_warnx("login tempfail: user=%s rip=%s method=%s reason=%s%s",
				  user_tok(c), c->rip, c->method,
				  log_token(r->reason, reason, sizeof(reason)), more);
		}
		if (strcmp(r->reason, "busy") == 0 && c->failures == 0) {
			/* shed at admission: at once, but counted; a second
			 * attempt on the connection is delayed as below */
			L.st.logins_overloaded++;
			if (++c->failures >= L.conf->pop3d.max_auth_failures) {
				reply(c, "-ERR [SYS/TEMP] %s", tr(c, "Server busy, try again later"));
				reply(c, "-ERR %s", tr(c, "Too many failed logins, closing"));
				client_close(c);
				return;
			}
			reply(c, "-ERR [SYS/TEMP] %s", tr(c, "Server busy, try again later"));
			resume(c);
			return;
		}
		if (strcmp(r->reason, "overloaded") == 0 || strcmp(r->reason, "busy") == 0) {
			/* as a failure: counted, and answered after the delay */
			L.st.logins_overloaded++;
			c->failures++;
			c->delay_tempfail = true;
			c->state = ST_DELAY;
			set_timer(c, L.conf->pop3d.auth_failure_delay_ms);
			return;
		}
		reply(c, "-ERR [SYS/TEMP] %s", tr(c, "Temporary authentication failure, try again later"));
		resume(c);
		return;
	}
	}
}

/* For the log lines only: the authentication identity in an AUTH PLAIN
 * response (RFC 4616: authzid NUL authcid NUL passwd, base64), or
 * "(sasl)" if it cannot be read.  authd decodes and checks the response
 * itself; the decoded copy here, password included, is wiped at once. */
static void plain_user(struct client *c, const char *resp)
{
	static uint8_t bin[POP3_MAX_SASL_LINE];
	size_t len = 0;
	const uint8_t *id, *end;

	snprintf(c->user, sizeof(c->user), "(sasl)");
	if (sodium_base642bin(bin, sizeof(bin), resp, strlen(resp), NULL, &len, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0)
		goto out_wipe;
	id = memchr(bin, '\0', len);
	if (id == NULL)
		goto out_wipe;
	id++;
	end = memchr(id, '\0', len - (size_t)(id - bin));
	if (end != NULL && end > id && (size_t)(end - id) <= AUTH_MAX_USER)
		snprintf(c->user, sizeof(c->user), "%.*s", (int)(end - id), (const char *)id);
out_wipe:
	sodium_memzero(bin, sizeof(bin));
}

static void send_auth(struct client *c, const char *pass, const char *plain)
{
	c->method = plain != NULL ? "PLAIN" : "USER";
	if (plain != NULL) {
		/* c->user becomes the SASL identity: a later PASS must not
		 * send it as if it were the name USER gave */
		c->have_user = false;
		plain_user(c, plain);
	}
	c->auth_handle = L.authc == NULL ? 0 :
		authc_auth(L.authc, c->user, pass, plain, c->rip, c->rport, c->lip,
			   c->lport, c->tls, on_auth_reply, c);
	if (c->auth_handle == 0) {
		L.st.logins_tempfailed++;
		log_warnx("login tempfail: user=%s rip=%s method=%s reason=authd-unavailable",
			  user_tok(c), c->rip, c->method);
		reply(c, "-ERR [SYS/TEMP] %s", tr(c, "Authentication service unavailable, try again later"));
		return;
	}
	c->auth_sent_us = mtime_us();
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
		reply(c, "+OK %s\r\nPLAIN\r\n.", tr(c, "SASL mechanisms follow"));
		return;
	}
	if (n == -1) {
		bad_command(c, N_("Syntax: AUTH mechanism [initial-response]"));
		return;
	}
	if (strcasecmp(mech, "PLAIN") != 0) {
		reply(c, "-ERR %s", tr(c, "Unsupported authentication mechanism"));
		return;
	}
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
		reply(c, "-ERR %s", tr(c, "Authentication cancelled"));
		return;
	}
	send_auth(c, NULL, line);
}

static bool ascii(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return false;
	return true;
}

/* RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF. */
static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		unsigned char b = *p;
		unsigned cp, n;

		if (b < 0x80) {
			p++;
			continue;
		}
		if (b >= 0xc2 && b <= 0xdf) {
			n = 1;
			cp = b & 0x1f;
		} else if (b >= 0xe0 && b <= 0xef) {
			n = 2;
			cp = b & 0x0f;
		} else if (b >= 0xf0 && b <= 0xf4) {
			n = 3;
			cp = b & 0x07;
		} else {
			return false;
		}
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;	/* a NUL ends the check here too */
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10ffff)))
			return false;
		p += n + 1;
	}
	return true;
}

/* LANG (RFC 6856 section 3): without an argument the languages offered,
 * with one a basic language range (or "*") that picks the language of
 * the responses from now on, through the session after the login.  The
 * answer starts with the tag of the language it is in; an unknown range
 * leaves the language as it was. */
static void cmd_lang(struct client *c, const char *arg)
{
	lang_command(bufferevent_get_output(c->bev), &c->lang, arg);
}

static void dispatch(struct client *c, char *line, size_t len)
{
	struct pop3_cmd cmd;

	if (c->state == ST_SASL) {
		sasl_response(c, line);
		return;
	}
	pop3_cmd_parse(line, &cmd);
	L.st.commands[cmd.id]++;
	/* Only AUTH (with an initial response) may exceed the RFC's 255. */
	if (len + 2 > POP3_MAX_COMMAND && cmd.id != CMD_AUTH) {
		bad_command(c, N_("Line too long"));
		return;
	}
	switch (cmd.id) {
	case CMD_CAPA:
		pop3_capa(bufferevent_get_output(c->bev), L.conf,
			  (login_allowed(c) ? POP3_CAPA_LOGIN : 0) |
			  (stls_offered(c) ? POP3_CAPA_STLS : 0) | POP3_CAPA_UTF8, c->lang);
		break;
	case CMD_LANG:
		cmd_lang(c, cmd.arg);
		break;
	case CMD_UTF8:
		if (cmd.arg != NULL) {
			bad_command(c, N_("Syntax: UTF8"));
		} else {
			c->utf8 = true;
			reply(c, "+OK %s", tr(c, "UTF-8 mode enabled"));
		}
		break;
	case CMD_NOOP:
		reply(c, "+OK");
		break;
	case CMD_QUIT:
		reply(c, "+OK %s", tr(c, "Bye"));
		client_close(c);
		break;
	case CMD_USER:
		if (!login_allowed(c)) {
			refuse_plaintext(c);
		} else if (!L.conf->pop3d.user_command) {
			reply(c, "-ERR %s", tr(c, "USER is disabled; use AUTH PLAIN"));
		} else if (cmd.arg == NULL || cmd.arg[0] == '\0' ||
			   strlen(cmd.arg) > AUTH_MAX_USER) {
			bad_command(c, N_("Syntax: USER name"));
		} else if (!ascii(cmd.arg) && !c->utf8) {
			bad_command(c, N_("Non-ASCII user names need the UTF8 command first"));
		} else if (!ascii(cmd.arg) && !utf8_valid(cmd.arg)) {
			bad_command(c, N_("User name is not valid UTF-8"));
		} else {
			snprintf(c->user, sizeof(c->user), "%s", cmd.arg);
			c->have_user = true;
			reply(c, "+OK");
		}
		break;
	case CMD_PASS:
		if (!login_allowed(c)) {
			refuse_plaintext(c);
		} else if (!c->have_user) {
			bad_command(c, N_("USER first"));
		} else if (cmd.arg == NULL || strlen(cmd.arg) > AUTH_MAX_PASSWORD) {
			bad_command(c, N_("Syntax: PASS password"));
		} else if (c->utf8 && !utf8_valid(cmd.arg)) {
			c->have_user = false;
			bad_command(c, N_("Password is not valid UTF-8"));
		} else {
			c->have_user = false;
			send_auth(c, cmd.arg, NULL);
		}
		break;
	case CMD_AUTH:
		if (!login_allowed(c))
			refuse_plaintext(c);
		else
			cmd_auth(c, cmd.arg);
		break;
	case CMD_APOP:
		reply(c, "-ERR %s", tr(c, "APOP is not supported"));
		break;
	case CMD_STLS:
		if (c->sock != NULL)
			reply(c, "-ERR %s", tr(c, "Already using TLS"));
		else if (!L.conf->pop3d.starttls)
			reply(c, "-ERR %s", tr(c, "STLS is not available"));
		else if (cmd.arg != NULL)
			bad_command(c, N_("Syntax: STLS"));
		else
			cmd_stls(c);
		break;
	case CMD_STAT: case CMD_LIST: case CMD_UIDL: case CMD_RETR: case CMD_TOP:
	case CMD_DELE: case CMD_RSET: case CMD_LAST:
		bad_command(c, N_("Not logged in"));
		break;
	default:
		bad_command(c, N_("Unknown command"));
		break;
	}
}

/* Processes complete lines while the client is in a state that reads. */
static void client_process(struct client *c)
{
	static char line[POP3_MAX_SASL_LINE + 1];

	while (c->state == ST_AUTHORIZATION || c->state == ST_SASL) {
		struct evbuffer *in = bufferevent_get_input(c->bev);
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
		if (++c->commands > L.conf->pop3d.login_max_commands) {
			sodium_memzero(line, len);	/* not read: it may be a PASS */
			login_limit_close(c, LOGIN_LIMIT_COMMANDS);
			return;
		}
		set_timer(c, L.conf->pop3d.preauth_timeout_ms);
		if (st == LINE_TOOLONG) {
			c->skipping = true;
			if (c->state != ST_SASL)
				L.st.commands[CMD_UNKNOWN]++;
			if (c->state == ST_SASL) {
				c->state = ST_AUTHORIZATION;
				reply(c, "-ERR %s", tr(c, "Authentication response too long"));
			} else {
				bad_command(c, N_("Line too long"));
			}
			continue;
		}
		if (has_nul) {
			if (c->state != ST_SASL)
				L.st.commands[CMD_UNKNOWN]++;
			bad_command(c, N_("NUL byte in command"));
		} else {
			dispatch(c, line, len);
		}
		sodium_memzero(line, len);
	}
}

/* ---- libevent callbacks ---------------------------------------------------------- */

static void on_client_read(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;

	if (c->state == ST_PROXY) {
		relay_to_session(c);
	} else {
		client_process(c);
		memwipe_stack();	/* what parsing a PASS or AUTH left there */
	}
}

static void on_client_write(struct bufferevent *bev, void *arg)
{
	struct client *c = arg;

	/* output drained to the low write watermark */
	switch (c->state) {
	case ST_CLOSING:
		closing_step(c);
		break;
	case ST_HANDOFF:
		do_handoff(c);
		break;
	case ST_AUTHORIZATION:
	case ST_SASL:
		bufferevent_enable(c->bev, EV_READ);
		client_process(c);
		break;
	case ST_PROXY:
		bufferevent_enable(c->pair, EV_READ);
		break;
	default:
		break;
	}
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
	struct client *c = arg;
	char ebuf[256];

	if (what & BEV_EVENT_CONNECTED) {
		tls_connected(c);
		return;
	}
	if (c->state == ST_TLS_HANDSHAKE)
		L.st.tls_failed++;	/* an error, or the client left mid-way */
	if (c->sock != NULL && (what & BEV_EVENT_ERROR)) {
		c->tls_failed = true;
		if (c->state == ST_TLS_HANDSHAKE)
			log_info("TLS handshake failed: rip=%s: %s", c->rip,
				 tls_bev_error(bev, ebuf, sizeof(ebuf)));
		else
			log_debug("TLS connection failed: rip=%s: %s", c->rip,
				  tls_bev_error(bev, ebuf, sizeof(ebuf)));
	}
	if (c->state == ST_PROXY)
		relay_client_gone(c);
	else if (c->state != ST_DRAIN)
		client_free(c);
}

enum pp_failure { PP_MALFORMED, PP_TIMEOUT, PP_CLOSED };
static void pp_fail(struct client *c, enum pp_failure f, const char *why);

static void on_client_timer(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	if (c->timer_is_login && before_login(c)) {
		login_limit_close(c, LOGIN_LIMIT_TIME);
		return;
	}
	switch (c->state) {
	case ST_PP_HEADER:
		pp_fail(c, PP_TIMEOUT, "no complete header within proxy-timeout");
		break;
	case ST_PP_VERDICT:
		log_warnx("front end: no answer from the master about rip=%s; closing", c->rip);
		client_free(c);
		break;
	case ST_DELAY:
		if (c->delay_tempfail)
			reply(c, "-ERR [SYS/TEMP] %s", tr(c, "Server busy, try again later"));
		else
			reply(c, "-ERR [AUTH] %s", tr(c, "Authentication failed"));
		c->delay_tempfail = false;
		if (c->failures >= L.conf->pop3d.max_auth_failures) {
			reply(c, "-ERR %s", tr(c, "Too many failed logins, closing"));
			client_close(c);
		} else {
			resume(c);
		}
		break;
	case ST_AWAITING:
		authc_cancel(L.authc, c->auth_handle);
		L.st.logins_tempfailed++;
		log_warnx("login tempfail: user=%s rip=%s method=%s reason=authd-timeout",
			  user_tok(c), c->rip, c->method);
		reply(c, "-ERR [SYS/TEMP] %s", tr(c, "Authentication timed out, try again later"));
		resume(c);
		break;
	case ST_TLS_HANDSHAKE:
		L.st.tls_timeout++;
		log_info("TLS handshake timed out: rip=%s", c->rip);
		client_free(c);
		break;
	case ST_PROXY:
		log_info("TLS relay: rip=%s user=%s: client took nothing for session-timeout, "
			 "closing", c->rip, user_tok(c));
		client_free(c);
		break;
	case ST_CLOSING:
	case ST_HANDOFF:
	case ST_DRAIN:
		client_free(c);	/* done, or the client does not read */
		break;
	default:
		reply(c, "-ERR %s", tr(c, "Disconnected for inactivity"));
		client_close(c);
		break;
	}
}

/* c's connection may go on (its PROXY header, if any, is read and the
 * master agreed): the greeting, or on a listen-tls port the handshake. */
static void client_start(struct client *c)
{
	c->bev = bufferevent_socket_new(L.base, c->fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("front end: out of memory");
	c->fd = -1;		/* the bufferevent's now */
	bufferevent_setcb(c->bev, on_client_read, on_client_write, on_client_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, POP3D_HANDOFF_MAX_DATA);
	/* stays on the socket's output when a TLS filter goes on top */
	c->sock_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), on_sock_output, c);
	if (c->sock_cb == NULL)
		fatalx("front end: evbuffer_add_cb failed (out of memory)");
	if (c->tls_port) {
		/* POP3S: the greeting waits for the handshake */
		tls_start(c);
		return;
	}
	reply(c, "+OK %s", L.conf->pop3d.greeting);
	c->state = ST_AUTHORIZATION;
	set_timer(c, L.conf->pop3d.preauth_timeout_ms);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- the PROXY protocol header -------------------------------------------------------- */

/* A header refused, cut short or not sent in time: counted, logged (at
 * most POP3D_PROXY_LOG_PER_SEC lines a second), and the connection
 * closed without a word (the peer is a balancer, or someone posing as
 * one). */
static void pp_fail(struct client *c, enum pp_failure f, const char *why)
{
	static const char *const names[] = { "malformed", "timeout", "closed" };
	uint64_t suppressed;

	if (f == PP_MALFORMED)
		L.st.proxy_malformed++;
	else if (f == PP_TIMEOUT)
		L.st.proxy_timeout++;
	else
		L.st.proxy_closed++;
	if (log_ratelimit(&L.pp_log, POP3D_PROXY_LOG_PER_SEC, mtime_ms(), &suppressed)) {
		char more[64] = "";

		if (suppressed > 0)
			snprintf(more, sizeof(more), " (%llu more not logged)",
				 (unsigned long long)suppressed);
		log_info("PROXY header refused: peer=%s reason=%s: %s%s", c->rip, names[f], why,
			 more);
	}
	client_free(c);
}

/* The header is read: the client's address (or, LOCAL or UNKNOWN, the
 * balancer's own) becomes c's for everything (logs, authd's rip and lip,
 * require-tls-exempt), and goes to the master, which counts it against
 * max-connections-per-ip and answers (on_proxy_verdict). */
static void pp_done(struct client *c, const struct proxyproto_header *h)
{
	static struct ipc_msg m;
	struct ipc_proxy_addr a;
	const struct sockaddr *src;

	if (h->local) {
		L.st.proxy_local++;
		src = (const struct sockaddr *)&c->pp->peer;
		c->exempt = netlist_match(&L.exempt, src);
	} else {
		L.st.proxy_ok++;
		src = (const struct sockaddr *)&h->src;
		sock_addr_str(src, c->rip, sizeof(c->rip), &c->rport);
		sock_addr_str((const struct sockaddr *)&h->dst, c->lip, sizeof(c->lip), &c->lport);
		c->exempt = netlist_match(&L.exempt, src);
	}
	log_debug("PROXY v%d header: rip=%s rport=%u lip=%s lport=%u%s", h->version, c->rip,
		  c->rport, c->lip, c->lport, h->local ? " (local: the balancer's own)" : "");
	if (ipc_proxy_addr_set(&a, src) == -1) {
		pp_fail(c, PP_MALFORMED, "the balancer's own address is not IPv4 or IPv6");
		return;
	}
	event_free(c->pp->ev);
	free(c->pp);
	c->pp = NULL;
	c->state = ST_PP_VERDICT;
	memset(&m, 0, IPC_HEADER_LEN);
	m.type = IPC_PROXY_ADDR;
	m.conn_id = c->conn_id;
	m.data_len = sizeof(a);
	memcpy(m.data, &a, sizeof(a));
	if (ipc_chan_send(L.out, &m, -1) == -1) {
		log_warn("front end: cannot send a client address to the master");
		client_free(c);
	}
	/* the timer set for the header bounds the wait for the verdict */
}

/* The socket is readable while the header is not complete.  Bytes are
 * peeked, and only those of the header are taken: what follows is the
 * client's (a TLS handshake, POP3), for the bufferevent to read.  An
 * incomplete prefix is taken too (proxyproto_parse's promise: all of it is
 * header), so a slow balancer does not make the socket read as ready again
 * and again. */
static void on_pp_readable(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	struct pp_reader *pp = c->pp;
	struct proxyproto_header h;
	const char *why;
	ssize_t n;
	size_t take;
	int r;

	n = recv(fd, pp->buf + pp->len, sizeof(pp->buf) - pp->len, MSG_PEEK);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		pp_fail(c, PP_CLOSED, strerror(errno));
		return;
	}
	if (n == 0) {
		pp_fail(c, PP_CLOSED, "connection closed before the header's end");
		return;
	}
	r = proxyproto_parse(pp->buf, pp->len + (size_t)n, &h, &why);
	if (r == -1) {
		pp_fail(c, PP_MALFORMED, why);
		return;
	}
	if (r > 0 && (size_t)r <= pp->len) {
		/* cannot happen: what was taken before was incomplete */
		pp_fail(c, PP_MALFORMED, "inconsistent header");
		return;
	}
	take = r == 0 ? (size_t)n : (size_t)r - pp->len;
	if (recv(fd, pp->buf + pp->len, take, 0) != (ssize_t)take) {
		pp_fail(c, PP_CLOSED, "the peeked bytes could not be read");
		return;
	}
	pp->len += take;
	if (r > 0)
		pp_done(c, &h);
}

/* The master's verdict on a client address we sent. */
static void on_proxy_verdict(const struct ipc_msg *m)
{
	struct ipc_proxy_verdict v;
	struct client *c;

	memcpy(&v, m->data, sizeof(v));		/* size and value checked by ipc_recv */
	LIST_FOREACH(c, &L.buckets[m->conn_id % CLIENT_BUCKETS], entry)
		if (c->conn_id == m->conn_id)
			break;
	if (c == NULL || c->state != ST_PP_VERDICT)
		return;		/* ended meanwhile (its timer) */
	if (v.verdict != IPC_PROXY_OK) {
		char line[512];
		int n = snprintf(line, sizeof(line), "-ERR [SYS/TEMP] %s\r\n",
				 tr(c, "Too many connections from your address"));

		/* best effort, as the master's refusals: far below the
		 * socket's buffer; on a listen-tls port nothing (the client
		 * expects a handshake) */
		if (!c->tls_port && n > 0 && (size_t)n < sizeof(line) &&
		    send(c->fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
			L.st.bytes_sent += (size_t)n;
		client_free(c);
		return;
	}
	client_start(c);
}

/* A new connection from the master: fd is ours now. */
static void new_client(int fd, uint64_t conn_id, bool tls_port, bool proxy)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct client *c;

	c = xcalloc(1, sizeof(*c));
	c->conn_id = conn_id;
	c->lang = lang_default();
	c->fd = fd;
	c->tls_port = tls_port;
	c->login_deadline_ms = mtime_ms() + L.conf->pop3d.login_timeout_ms;
	sl = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		sock_addr_str((struct sockaddr *)&ss, c->rip, sizeof(c->rip), &c->rport);
		c->exempt = !proxy && netlist_match(&L.exempt, (struct sockaddr *)&ss);
	} else {
		snprintf(c->rip, sizeof(c->rip), "?");
	}
	sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		sock_addr_str((struct sockaddr *)&ss, c->lip, sizeof(c->lip), &c->lport);
	else
		snprintf(c->lip, sizeof(c->lip), "?");
	evutil_make_socket_nonblocking(fd);
	c->timer = evtimer_new(L.base, on_client_timer, c);
	c->kick = event_new(L.base, -1, 0, on_kick, c);
	if (c->timer == NULL || c->kick == NULL)
		fatalx("front end: out of memory");
	LIST_INSERT_HEAD(&L.buckets[conn_id % CLIENT_BUCKETS], c, entry);
	L.nclients++;
	if (!proxy) {
		client_start(c);
		return;
	}
	c->pp = xcalloc(1, sizeof(*c->pp));
	c->state = ST_PP_HEADER;
	sl = sizeof(c->pp->peer);
	c->pp->ev = event_new(L.base, fd, EV_READ | EV_PERSIST, on_pp_readable, c);
	if (c->pp->ev == NULL)
		fatalx("front end: out of memory");
	if (getpeername(fd, (struct sockaddr *)&c->pp->peer, &sl) == -1) {
		pp_fail(c, PP_CLOSED, strerror(errno));
		return;
	}
	event_add(c->pp->ev, NULL);
	set_timer(c, L.conf->pop3d.proxy_timeout_ms);
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
			/* replaced; no more connections will come from the master */
			L.retired = true;
			maybe_exit();
			continue;
		}
		if (m.type == IPC_TICKET_KEYS) {
			struct tls_ticket_keys k;

			memcpy(&k, m.data, sizeof(k));	/* size checked by ipc_recv */
			sodium_memzero(m.data, sizeof(k));
			tls_ticket_keys_set(&k);
			sodium_memzero(&k, sizeof(k));
			log_debug("front end: new TLS session-ticket keys");
			continue;
		}
		if (m.type == IPC_PROXY_VERDICT) {
			on_proxy_verdict(&m);
			continue;
		}
		if (m.type != IPC_NEWCONN) {
			if (cfd != -1)
				close(cfd);
			continue;
		}
		new_client(cfd, m.conn_id, m.tls_port != 0, m.proxy != 0);
	}
}

static void try_reconnect(evutil_socket_t fd, short what, void *arg)
{
	int afd = authc_connect(L.conf->pop3d.auth_socket);

	if (afd != -1) {
		log_info("front end: reconnected to authd");
		L.st.authd_reconnects++;
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
static void authd_unreachable(void)
{
	struct ipc_msg m = { .type = IPC_RETIRE };

	if (!privdrop_enabled()) {
		try_reconnect(-1, 0, NULL);
		return;
	}
	if (L.asked_replacement)
		return;
	L.asked_replacement = true;
	if (ipc_chan_send(L.out, &m, -1) == -1)
		exit(1);
}

static void on_authd_lost(void *arg)
{
	L.st.authd_lost++;
	authd_unreachable();
}

static void on_term(evutil_socket_t fd, short what, void *arg)
{
	exit(0);
}

void login_main(const struct config *conf, int chan, int authfd, uid_t uid, gid_t gid)
{
	struct event *sig;
	struct timeval tick;

	memset(&L, 0, sizeof(L));
	L.conf = conf;
	L.chan = chan;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGCHLD, SIG_DFL);
	{
		char err[256];
		if (netlist_parse(conf->pop3d.require_tls_exempt, &L.exempt, err,
				  sizeof(err)) == -1)
			fatalx("front end: require-tls-exempt: %s", err);	/* checked */
	}
	/* Certificates and keys are read as root, before the chroot: they
	 * need not be reachable from login-chroot nor readable by login-user. */
	if (tls_configured(conf) && tls_server_init(conf) == -1) {
		log_warnx("front end: cannot set up TLS; exiting");
		exit(1);
	}
	if (privdrop_login(conf->pop3d.login_chroot, uid, gid) == -1)
		exit(1);
	L.base = event_base_new();
	if (L.base == NULL)
		fatalx("front end: event_base_new");
	sock_set_nonblock(chan, true);
	L.chan_ev = event_new(L.base, chan, EV_READ | EV_PERSIST, on_chan, NULL);
	L.out = ipc_chan_new(L.base, chan, POP3D_IPC_MAX_QUEUED);
	L.reconnect_ev = evtimer_new(L.base, try_reconnect, NULL);
	L.tick = event_new(L.base, -1, EV_PERSIST, on_tick, NULL);
	sig = evsignal_new(L.base, SIGTERM, on_term, NULL);
	if (L.chan_ev == NULL || L.reconnect_ev == NULL || L.tick == NULL || sig == NULL)
		fatalx("front end: event_new");
	event_add(L.chan_ev, NULL);
	event_add(sig, NULL);
	MTIME_TV(tick, POP3D_STATS_INTERVAL_MS);
	event_add(L.tick, &tick);
	proctitle_set("pop3d: login [0 connections, 0 awaiting auth]");
	L.authc = authc_new(L.base, authfd, on_authd_lost, NULL);
	if (authfd == -1)
		authd_unreachable();
	event_base_dispatch(L.base);
	exit(0);
}
