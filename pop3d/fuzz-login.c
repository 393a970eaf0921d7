/*
 * fuzz-login.c - libFuzzer harness for a front end's AUTHORIZATION state
 * (pop3d/login.c): the state machine of each client from its greeting to
 * its handoff or its close, with authd's answers and the passing of time
 * chosen by the input.
 *
 * login.c is included (its handlers are static) and driven through its
 * own entry points: new_client() gets one end of an AF_UNIX socketpair as
 * the master's IPC_NEWCONN would give it, the harness writes the client's
 * bytes into the other end in chunks and reads the replies there, and the
 * event loop runs without waiting (EVLOOP_NONBLOCK) until nothing moves.
 * A socketpair rather than a bufferevent pair: client_start() and
 * do_handoff() run unchanged (a socket bufferevent, a real descriptor to
 * hand over), and a socket never calls back into login.c from inside its
 * own calls, as an undeferred pair would.  Everything beyond the front
 * end is scripted here:
 *   - authd (authc.c's interface): authc_auth() records the request; the
 *     input answers the oldest or newest pending one with OK (a ticket),
 *     FAIL, TEMPFAIL, TEMPFAIL reason=overloaded, or leaves it waiting;
 *     it can drop the connection (every pending request TEMPFAIL, then
 *     the front end's lost callback) or make the next request fail to go
 *     out (authd unavailable);
 *   - the master channel (ipc_chan_*): messages are recorded, and the next
 *     send can be made to fail; a PROXY protocol client's address gets the
 *     verdict the input chose;
 *   - time: libevent's timers run on the real clock, so the harness keeps
 *     a virtual one: "time passes" fires every client timer due within
 *     the step and re-arms the others for what is left, and moves each
 *     client's login-timeout deadline closer by the same amount.
 * Not covered: TLS.  STLS is answered and a real OpenSSL filter goes on
 * (a server context without a certificate), but no handshake can
 * succeed, so a TLS login and the relay after it are not reached (the
 * integration tests cover them).
 *
 * Input: byte 0 picks the configuration (user-command, starttls,
 * require-tls, require-tls-disconnect, max-auth-failures,
 * login-max-commands, max-bad-commands), byte 1 flags (bit 0 the front
 * end runs privilege-separated, so a lost authd is not reconnected; bit 1
 * a second client; bits 2-3 PROXY protocol for client 0 / 1; bit 4 the
 * master refuses PROXY addresses), then operations, each one byte: bits
 * 0-2 the kind, bit 3 the client, bits 4-7 an argument:
 *   0, 1  the client sends the next ARG*16+N bytes, N the next byte
 *         (capped at what is left);
 *   2     authd answers the oldest (ARG bit 3 clear) or newest pending
 *         request: ARG & 7 = 0 OK, 1 FAIL, 2 TEMPFAIL, 3 overloaded, 4 OK
 *         naming another user, 5 TEMPFAIL with a hostile reason, 6 no
 *         answer yet, 7 FAIL;
 *   3     time passes: ARG 0 to the next timer, else ARG * 700 ms;
 *   4     authd's connection is lost;
 *   5     the client shuts down its sending side (EOF);
 *   6     the next authd request (ARG odd) or master message (ARG even)
 *         fails;
 *   7     the client closes its socket.
 * At the end, time passes (timer after timer, at most 64) until every
 * client is gone.  With FUZZ_LOGIN_VERBOSE set, the replies and the log
 * go to stderr (to read what a seed does).
 *
 * Properties checked:
 *   - replies: every line ends CRLF, is at most 512 bytes with it (RFC
 *     1939 section 3), is printable ASCII, and is "+OK", "-ERR", a SASL
 *     continuation "+ ", or a line of a multi-line reply (CAPA, AUTH)
 *     ended by "."; the first is the "+OK" greeting; after
 *     "+OK Begin TLS negotiation" no clear-text reply at all;
 *   - no piece of a password (PASS argument, AUTH PLAIN response, or the
 *     password inside it) in a reply or a log line (8-byte probes that
 *     hold a byte no fixed text has, as fuzz-authd-client.c);
 *   - authd requests carry a user of 1..AUTH_MAX_USER bytes and a
 *     password without LF (a bare CR is the client's: authc.c escapes
 *     it), both sent by the client; none after
 *     STLS (no handshake completes here), none after max-auth-failures
 *     failures, at most login-max-commands of them;
 *   - a client is ST_AWAITING exactly while one request of its own is
 *     pending at authd, and login.c cancels only its own pending requests;
 *   - the handoff (IPC_HANDOFF) comes only after an OK for a request of
 *     the same connection, carries that answer's ticket and method, the
 *     client's own socket, and as pipelined data exactly what the client
 *     sent before the bytes still unread in that socket (nothing lost,
 *     repeated or reordered); each connection ends with exactly one IPC_HANDOFF or
 *     IPC_CLOSED (unless that very send was made to fail);
 *   - every live client has its timer armed, and before the login never
 *     past its login-timeout deadline (within 100 ms: the harness's own
 *     re-arming drifts); failures stay within
 *     max-auth-failures and command lines within login-max-commands + 1;
 *   - every client is gone within 64 timer steps after the input, every
 *     authd request answered or cancelled, nothing leaked (ASan).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "pop3d/login.c"
#include "tests/fuzz/logcapture.h"
#include "tests/fuzz/pwleak.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CLIENTS	2
#define FZ_REQS		128
#define FZ_SENT_MAX	8192
#define FZ_REPLY_MAX	65536
#define FZ_SECRETS	64

/* ---- the harness's view of each client ------------------------------------ */

struct fz_client {
	bool used;
	uint64_t conn_id;
	int fd;				/* our end; -1 once closed */
	bool eof_sent;
	ino_t server_ino;		/* the front end's end, for the handoff check */
	bool ended;			/* IPC_CLOSED or IPC_HANDOFF seen */
	bool end_lost;			/* that message was made to fail */
	uint8_t sent[FZ_SENT_MAX];	/* everything the client wrote */
	size_t nsent;
	char reply[FZ_REPLY_MAX];	/* what it received, not yet parsed */
	size_t nreply;
	bool greeted, in_multi, tls_started;
	unsigned requests, failures;	/* authd requests, FAIL/overloaded answers */
	bool ok_answered;		/* the last answer was OK */
	char ok_ticket[IPC_TICKET_LEN + 1];
	const char *ok_method;
};

static struct fz_client fc[FZ_CLIENTS];
/* FUZZ_LOGIN_VERBOSE set: replies and the log on stderr (to read a seed) */
static bool verbose;

static struct fz_client *fz_by_conn(uint64_t id)
{
	for (size_t i = 0; i < FZ_CLIENTS; i++)
		if (fc[i].used && fc[i].conn_id == id)
			return &fc[i];
	return NULL;
}

static struct client *live_client(uint64_t id)
{
	struct client *c;

	LIST_FOREACH(c, &L.buckets[id % CLIENT_BUCKETS], entry)
		if (c->conn_id == id)
			return c;
	return NULL;
}

/* ---- secrets, for the leak checks ----------------------------------------- */

static char *secrets[FZ_SECRETS], *secret_users[FZ_SECRETS];
static size_t nsecrets;

static void secret_add(const char *s, size_t n, const char *user)
{
	if (n < 8 || nsecrets == FZ_SECRETS)
		return;
	secrets[nsecrets] = xstrndup(s, n);
	secret_users[nsecrets] = xstrdup(user);
	nsecrets++;
}

/* How many times the n bytes at s occur in what any client sent. */
static unsigned in_sent(const char *s, size_t n)
{
	unsigned k = 0;

	for (size_t i = 0; i < FZ_CLIENTS; i++)
		for (const uint8_t *p = fc[i].sent, *end = fc[i].sent + fc[i].nsent;
		     (p = memmem(p, (size_t)(end - p), s, n)) != NULL; p++)
			k++;
	return k;
}

/* No piece of a secret in text (pwleak.h). */
static void check_no_secret(const char *text, size_t len)
{
	for (size_t k = 0; k < nsecrets; k++)
		if (pwleak_found(text, len, secrets[k], secret_users[k], in_sent))
			abort();	/* a password in a reply or the log */
}

/* ---- scripted authd (authc.c's interface) --------------------------------- */

struct fz_req {
	uint64_t handle;
	authc_cb *cb;
	void *ctx;
	uint64_t conn_id;
	const char *method;
	char user[AUTH_MAX_USER + 1];
	bool pending;
};

static struct fz_req reqs[FZ_REQS];
static size_t nreqs;
static uint64_t next_handle;
static bool authd_up, authd_fail_next;
static int fake_authc;	/* L.authc points here: never dereferenced */

int authc_connect(const char *path)
{
	return 1000;	/* a descriptor authc_set_fd below never uses */
}

struct authc *authc_new(struct event_base *base, int fd, void (*lost)(void *), void *ctx)
{
	return (struct authc *)(void *)&fake_authc;
}

void authc_free(struct authc **acp)
{
	*acp = NULL;
}

bool authc_connected(const struct authc *ac)
{
	return authd_up;
}

void authc_set_fd(struct authc *ac, int fd)
{
	authd_up = true;
}

uint64_t authc_auth(struct authc *ac, const char *user, const char *pass,
		    const char *plain_resp, const char *rip, unsigned rport,
		    const char *lip, unsigned lport, bool secured,
		    authc_cb *cb, void *cbctx)
{
	struct client *c = cbctx;
	struct fz_client *f = fz_by_conn(c->conn_id);
	size_t ulen = strlen(user);
	struct fz_req *q;

	if (f == NULL || ac != (struct authc *)(void *)&fake_authc)
		abort();
	/* one of its own at a time, never after STLS or too many failures */
	for (size_t i = 0; i < nreqs; i++)
		if (reqs[i].pending && reqs[i].conn_id == c->conn_id)
			abort();
	if (f->tls_started || c->sock != NULL || f->failures >= L.conf->pop3d.max_auth_failures)
		abort();
	f->ok_answered = false;
	if (++f->requests > L.conf->pop3d.login_max_commands)
		abort();
	if (ulen == 0 || ulen > AUTH_MAX_USER)
		abort();
	/* USER's name goes to authd (user=): a line of the command.  With
	 * PLAIN it is only the log's label, the identity as decoded (any
	 * byte but NUL; log_token escapes it): authd decodes resp itself. */
	if (pass != NULL && strchr(user, '\n') != NULL)
		abort();
	if ((pass == NULL) == (plain_resp == NULL))
		abort();
	if (pass != NULL) {
		if (strlen(pass) > AUTH_MAX_PASSWORD || strchr(pass, '\n') != NULL ||
		    memmem(f->sent, f->nsent, user, ulen) == NULL ||
		    memmem(f->sent, f->nsent, pass, strlen(pass)) == NULL)
			abort();
		secret_add(pass, strlen(pass), user);
	} else {
		static uint8_t bin[POP3_MAX_SASL_LINE];
		size_t blen = 0;

		if (strlen(plain_resp) > POP3_MAX_SASL_LINE || strchr(plain_resp, '\n') != NULL)
			abort();
		secret_add(plain_resp, strlen(plain_resp), user);
		/* the password inside: after the second NUL */
		if (sodium_base642bin(bin, sizeof(bin), plain_resp, strlen(plain_resp), NULL,
				      &blen, NULL, sodium_base64_VARIANT_ORIGINAL) == 0) {
			const uint8_t *p = memchr(bin, '\0', blen);

			p = p != NULL ? memchr(p + 1, '\0', blen - (size_t)(p + 1 - bin)) : NULL;
			if (p != NULL)
				secret_add((const char *)p + 1, blen - (size_t)(p + 1 - bin), user);
		}
		sodium_memzero(bin, sizeof(bin));
	}
	if (!authd_up || authd_fail_next || nreqs == FZ_REQS) {
		authd_fail_next = false;
		return 0;
	}
	q = &reqs[nreqs++];
	q->handle = ++next_handle;
	q->cb = cb;
	q->ctx = cbctx;
	q->conn_id = c->conn_id;
	q->method = pass != NULL ? "USER" : "PLAIN";
	snprintf(q->user, sizeof(q->user), "%s", user);
	q->pending = true;
	return q->handle;
}

void authc_cancel(struct authc *ac, uint64_t handle)
{
	for (size_t i = 0; i < nreqs; i++) {
		if (reqs[i].handle == handle) {
			if (!reqs[i].pending)
				abort();	/* answered already: not the caller's */
			reqs[i].pending = false;
			return;
		}
	}
	abort();	/* a handle authd never gave */
}

/* authd answers q with answer (the input's ARG & 7). */
static void authd_answer(struct fz_req *q, unsigned answer)
{
	struct fz_client *f = fz_by_conn(q->conn_id);
	struct authc_reply r = { .result = AUTHC_FAIL };
	char user[AUTH_MAX_USER + 16], ticket[IPC_TICKET_LEN + 1];

	if (answer == 6)
		return;		/* not yet */
	switch (answer) {
	case 0:
	case 4:
		snprintf(user, sizeof(user), answer == 4 ? "other@example.org" : "%s", q->user);
		snprintf(ticket, sizeof(ticket), "%032llx", (unsigned long long)q->handle);
		r.result = AUTHC_OK;
		r.user = user;
		r.ticket = ticket;
		f->ok_answered = true;
		memcpy(f->ok_ticket, ticket, sizeof(ticket));
		f->ok_method = q->method;
		break;
	case 2:
		r.result = AUTHC_TEMPFAIL;
		r.reason = "unavailable";
		f->ok_answered = false;
		break;
	case 3:
		r.result = AUTHC_TEMPFAIL;
		r.reason = "overloaded";
		f->ok_answered = false;
		f->failures++;
		break;
	case 5:
		r.result = AUTHC_TEMPFAIL;
		r.reason = "bad\r\nreason\x1b[0m";
		f->ok_answered = false;
		break;
	default:
		f->ok_answered = false;
		f->failures++;
		break;
	}
	q->pending = false;
	q->cb(q->ctx, &r);
}

/* authc_drop(): every pending request fails, then the owner hears. */
static void authd_lose(void)
{
	if (!authd_up)
		return;
	authd_up = false;
	for (size_t i = 0; i < nreqs; i++) {
		if (!reqs[i].pending)
			continue;
		struct authc_reply r = { .result = AUTHC_TEMPFAIL, .reason = "connection lost" };
		fz_by_conn(reqs[i].conn_id)->ok_answered = false;
		reqs[i].pending = false;
		reqs[i].cb(reqs[i].ctx, &r);
	}
	on_authd_lost(NULL);
}

/* ---- the master channel (ipc.c's sending side) ----------------------------- */

static int fake_chan;
static bool chan_fail_next, privsep, proxy_refuse;
static uint64_t verdict_due[FZ_CLIENTS];
static size_t nverdicts;

struct ipc_chan *ipc_chan_new(struct event_base *base, int sock, unsigned max)
{
	return (struct ipc_chan *)(void *)&fake_chan;
}

void ipc_chan_free(struct ipc_chan **chp)
{
	*chp = NULL;
}

unsigned ipc_chan_queued(const struct ipc_chan *ch)
{
	return 0;
}

bool ipc_chan_broken(const struct ipc_chan *ch)
{
	return false;
}

int ipc_chan_flush_wait(struct ipc_chan *ch, int timeout_ms)
{
	return 0;
}

int ipc_recv(int sock, struct ipc_msg *m, int *fd_r)
{
	errno = EAGAIN;
	return -1;	/* on_chan is not driven: new_client is called directly */
}

int ipc_proxy_addr_set(struct ipc_proxy_addr *a, const struct sockaddr *sa)
{
	memset(a, 0, sizeof(*a));
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return -1;
	a->family = sa->sa_family;
	return 0;
}

static void check_handoff(const struct ipc_msg *m, int fd)
{
	struct fz_client *f = fz_by_conn(m->conn_id);
	struct client *c = live_client(m->conn_id);
	struct stat st;
	int unread;

	if (f == NULL || c == NULL || f->ended || !f->ok_answered)
		abort();	/* only after an OK for this connection */
	if (strcmp(m->ticket, f->ok_ticket) != 0 || strcmp(m->method, f->ok_method) != 0 ||
	    m->secured != 0)
		abort();
	/* the client's own socket */
	if (fd == -1 || fstat(fd, &st) == -1 || st.st_ino != f->server_ino)
		abort();
	/* what it pipelined, then what is still unread in the socket: the
	 * end of what it sent, nothing lost, nothing twice, in order */
	if (ioctl(fd, FIONREAD, &unread) == -1 || unread < 0)
		abort();
	if (m->data_len + (size_t)unread > f->nsent || m->data_len > POP3D_HANDOFF_MAX_DATA ||
	    memcmp(m->data, f->sent + f->nsent - (size_t)unread - m->data_len, m->data_len) != 0)
		abort();
	for (size_t i = 0; i < nreqs; i++)
		if (reqs[i].pending && reqs[i].conn_id == m->conn_id)
			abort();
}

int ipc_chan_send(struct ipc_chan *ch, const struct ipc_msg *m, int fd)
{
	struct fz_client *f;

	if (ch != (struct ipc_chan *)(void *)&fake_chan)
		abort();
	if (m->type == IPC_HANDOFF)
		check_handoff(m, fd);
	else if (fd != -1)
		abort();
	f = fz_by_conn(m->conn_id);
	/* not IPC_RETIRE: a front end that cannot ask for its replacement
	 * exits (authd_unreachable), which ends the input */
	if (chan_fail_next && m->type != IPC_RETIRE) {
		chan_fail_next = false;
		if (f != NULL && (m->type == IPC_CLOSED || m->type == IPC_HANDOFF))
			f->end_lost = m->type == IPC_CLOSED;
		errno = ENOBUFS;
		return -1;
	}
	switch (m->type) {
	case IPC_CLOSED:
	case IPC_HANDOFF:
		if (f == NULL || f->ended)
			abort();	/* one end per connection */
		f->ended = true;
		break;
	case IPC_PROXY_ADDR:
		if (f == NULL || nverdicts == FZ_CLIENTS)
			abort();
		verdict_due[nverdicts++] = m->conn_id;
		break;
	case IPC_STATS:
	case IPC_RETIRE:
		break;
	default:
		abort();
	}
	return 0;
}

/* The master's answers to the PROXY addresses sent. */
static void deliver_verdicts(void)
{
	static struct ipc_msg m;
	struct ipc_proxy_verdict v = { proxy_refuse ? IPC_PROXY_PER_IP : IPC_PROXY_OK };

	for (size_t i = 0; i < nverdicts; i++) {
		memset(&m, 0, sizeof(m));
		m.type = IPC_PROXY_VERDICT;
		m.conn_id = verdict_due[i];
		m.data_len = sizeof(v);
		memcpy(m.data, &v, sizeof(v));
		on_proxy_verdict(&m);
	}
	nverdicts = 0;
}

/* ---- the rest of the front end's world -------------------------------------- */

static SSL_CTX *fz_ssl_ctx;

bool privdrop_enabled(void)
{
	return privsep;
}

int privdrop_login(const char *chroot_dir, uid_t uid, gid_t gid)
{
	return 0;
}

void proctitle_set(const char *fmt, ...)
{
}

bool tls_configured(const struct config *conf)
{
	return conf->pop3d.starttls;
}

int tls_server_init(const struct config *conf)
{
	return 0;
}

/* A server context without a certificate: every handshake fails. */
struct ssl_st *tls_ssl_new(void)
{
	return SSL_new(fz_ssl_ctx);
}

void tls_describe(const struct ssl_st *ssl, char *buf, size_t size)
{
	snprintf(buf, size, "none");
}

const char *tls_error_string(unsigned long err, char *buf, size_t size)
{
	ERR_error_string_n(err, buf, size);
	return buf;
}

void tls_ticket_keys_set(const struct tls_ticket_keys *keys)
{
}

/* ---- replies ------------------------------------------------------------------- */

/* Checks the complete lines f has received; keeps a partial last one. */
static void check_replies(struct fz_client *f)
{
	size_t pos = 0;

	check_no_secret(f->reply, f->nreply);
	if (f->tls_started) {
		/* TLS records only from here on (an alert): no clear text */
		if (memmem(f->reply, f->nreply, "+OK", 3) != NULL ||
		    memmem(f->reply, f->nreply, "-ERR", 4) != NULL)
			abort();
		f->nreply = 0;
		return;
	}
	while (pos < f->nreply) {
		char *line = f->reply + pos;
		char *lf = memchr(line, '\n', f->nreply - pos);
		size_t len;

		if (lf == NULL)
			break;
		len = (size_t)(lf - line) + 1;
		if (len < 2 || line[len - 2] != '\r' || len > 512)
			abort();
		line[len - 2] = '\0';
		if (verbose)
			fprintf(stderr, "S%llu: %s\n", (unsigned long long)f->conn_id, line);
		for (size_t i = 0; i + 2 < len; i++)
			if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] >= 0x7f)
				abort();
		if (!f->greeted) {
			/* the greeting, or the master's refusal of a PROXY
			 * client's address */
			if (strncmp(line, "+OK ", 4) != 0 &&
			    !(proxy_refuse && strcmp(line, "-ERR [SYS/TEMP] Too many "
						     "connections from your address") == 0))
				abort();
			f->greeted = true;
		} else if (f->in_multi) {
			if (strcmp(line, ".") == 0)
				f->in_multi = false;
			else if (line[0] == '.')
				abort();	/* not dot-stuffed */
		} else if (strcmp(line, "+OK Capability list follows") == 0 ||
			   strcmp(line, "+OK SASL mechanisms follow") == 0 ||
			   /* LANG without an argument (English: no catalogs
			    * are loaded here) */
			   strcmp(line, "+OK Language listing follows:") == 0) {
			f->in_multi = true;
		} else if (strcmp(line, "+OK Begin TLS negotiation") == 0) {
			f->tls_started = true;
		} else if (strcmp(line, "+ ") != 0 && strcmp(line, "+OK") != 0 &&
			   strncmp(line, "+OK ", 4) != 0 && strncmp(line, "-ERR ", 5) != 0) {
			abort();
		}
		pos += len;
		if (f->tls_started) {
			memmove(f->reply, f->reply + pos, f->nreply - pos);
			f->nreply -= pos;
			check_replies(f);
			return;
		}
	}
	memmove(f->reply, f->reply + pos, f->nreply - pos);
	f->nreply -= pos;
	if (f->nreply >= 512)
		abort();	/* a line without its end, too long already */
}

/* Reads what the front end wrote to each client.  Returns the bytes read. */
static size_t drain_clients(void)
{
	size_t total = 0;

	for (size_t i = 0; i < FZ_CLIENTS; i++) {
		struct fz_client *f = &fc[i];
		ssize_t n;

		if (!f->used || f->fd == -1)
			continue;
		while ((n = recv(f->fd, f->reply + f->nreply, sizeof(f->reply) - f->nreply,
				 MSG_DONTWAIT)) > 0) {
			f->nreply += (size_t)n;
			total += (size_t)n;
			check_replies(f);
		}
	}
	return total;
}

/* ---- time, the loop, invariants ------------------------------------------------- */

/* ms until ev fires, or -1 if it is not armed. */
static void probe_fired(evutil_socket_t fd, short what, void *arg)
{
}

/* Milliseconds until ev fires, or -1.  Measured against a probe timer
 * armed for now: evtimer_pending gives libevent's monotonic time plus an
 * offset to the wall clock that it refreshes only now and then, so
 * against gettimeofday the answer was off by as much as the wall clock had
 * moved (102 ms once, on a virtual machine: a false alarm). */
static int64_t timer_left(const struct event *ev)
{
	static struct event *probe;
	static const struct timeval zero;
	struct timeval tv, now;
	int64_t left;

	if (!evtimer_pending(ev, &tv))
		return -1;
	if (probe == NULL && (probe = evtimer_new(L.base, probe_fired, NULL)) == NULL)
		abort();
	evtimer_add(probe, &zero);
	if (!evtimer_pending(probe, &now))
		abort();
	event_del(probe);
	left = (int64_t)(tv.tv_sec - now.tv_sec) * 1000 + (tv.tv_usec - now.tv_usec) / 1000;
	return left < 0 ? 0 : left;
}

static void check_invariants(void)
{
	const struct config *conf = L.conf;
	struct client *c;

	for (size_t b = 0; b < CLIENT_BUCKETS; b++) {
		LIST_FOREACH(c, &L.buckets[b], entry) {
			struct fz_client *f = fz_by_conn(c->conn_id);
			int64_t left = timer_left(c->timer);
			bool pending = false;

			if (f == NULL || f->ended)
				abort();
			if (left < 0)
				abort();	/* a client nothing would ever end */
			if (before_login(c)) {
				uint64_t now = mtime_ms();
				int64_t to_deadline = c->login_deadline_ms > now ?
					(int64_t)(c->login_deadline_ms - now) : 0;
				/* slack: re-arming timers in time_passes() drifts by
				 * the microseconds each step takes */
				if (left > to_deadline + 100) {
					fprintf(stderr, "timer in %lld ms, login-timeout in %lld ms "
						"(state %d)\n", (long long)left, (long long)to_deadline,
						(int)c->state);
					abort();	/* past login-timeout */
				}
			}
			if (c->failures > conf->pop3d.max_auth_failures ||
			    c->commands > conf->pop3d.login_max_commands + 1)
				abort();
			for (size_t i = 0; i < nreqs; i++)
				if (reqs[i].pending && reqs[i].conn_id == c->conn_id)
					pending = reqs[i].handle == c->auth_handle;
			if (pending != (c->state == ST_AWAITING))
				abort();
		}
	}
}

/* Runs the loop until nothing moves, reading replies as they come. */
static void settle(void)
{
	for (int i = 0; i < 64; i++) {
		size_t n;

		if (nverdicts > 0)
			deliver_verdicts();
		event_base_loop(L.base, EVLOOP_NONBLOCK);
		n = drain_clients();
		if (n == 0 && nverdicts == 0 &&
		    event_base_get_num_events(L.base, EVENT_BASE_COUNT_ACTIVE) == 0 &&
		    i > 0)
			break;
	}
	check_invariants();
}

/* Virtual time passes: by ms, or (ms < 0) to the next client timer. */
static void time_passes(int64_t ms)
{
	struct client *c, *next;

	if (ms < 0) {
		ms = INT64_MAX;
		for (size_t b = 0; b < CLIENT_BUCKETS; b++)
			LIST_FOREACH(c, &L.buckets[b], entry) {
				int64_t left = timer_left(c->timer);
				if (left >= 0 && left < ms)
					ms = left;
			}
		if (ms == INT64_MAX)
			return;
	}
	for (size_t b = 0; b < CLIENT_BUCKETS; b++) {
		for (c = LIST_FIRST(&L.buckets[b]); c != NULL; c = next) {
			int64_t left = timer_left(c->timer);

			next = LIST_NEXT(c, entry);
			c->login_deadline_ms = c->login_deadline_ms > (uint64_t)ms ?
				c->login_deadline_ms - (uint64_t)ms : 0;
			if (left < 0)
				continue;
			if (left <= ms) {
				event_del(c->timer);
				event_active(c->timer, EV_TIMEOUT, 1);
			} else {
				struct timeval tv;
				MTIME_TV(tv, (uint64_t)(left - ms));
				evtimer_add(c->timer, &tv);
			}
		}
	}
	settle();
}

/* ---- set-up ---------------------------------------------------------------------- */

static struct config *confs[256];

static const struct config *conf_for(uint8_t sel)
{
	char text[2048], err[512];
	bool starttls = (sel & 2) || (sel & 4);

	if (confs[sel] != NULL)
		return confs[sel];
	snprintf(text, sizeof(text),
		 "[authd]\n"
		 "socket = /run/authd/auth\n"
		 "master-socket = /run/authd/master\n"
		 "[authenticator files]\n"
		 "type = passwd-file\n"
		 "path = /etc/pop3d/passwd\n"
		 "[pop3d]\n"
		 "listen = 127.0.0.1:110\n"
		 "auth-socket = /run/authd/auth\n"
		 "master-auth-socket = /run/authd/master\n"
		 "greeting = POP3 fuzz ready\n"
		 "user-command = %s\n"
		 "starttls = %s\n"
		 "%s"
		 "require-tls = %s\n"
		 "require-tls-disconnect = %s\n"
		 "max-auth-failures = %u\n"
		 "login-max-commands = %u\n"
		 "max-bad-commands = %u\n"
		 "auth-failure-delay = 2s\n"
		 "preauth-timeout = 60s\n"
		 "login-timeout = 2m\n"
		 "login-delay = 30\n"
		 "implementation = yes\n",
		 sel & 1 ? "no" : "yes", starttls ? "yes" : "no",
		 starttls ? "tls-cert-file = /fuzz/cert.pem\ntls-key-file = /fuzz/key.pem\n" : "",
		 sel & 4 ? "yes" : "no", sel & 8 ? "yes" : "no", 1 + (sel >> 4 & 3) % 3,
		 sel & 0x40 ? 6 : 50, sel & 0x80 ? 3 : 10);
	confs[sel] = config_load_buffer("/fuzz/pop3d.conf", (const uint8_t *)text, strlen(text),
					err, sizeof(err));
	if (confs[sel] == NULL) {
		fprintf(stderr, "fuzz config: %s\n", err);
		abort();
	}
	return confs[sel];
}

static void setup(void)
{
	if (sodium_init() == -1)
		abort();
	signal(SIGPIPE, SIG_IGN);
	verbose = getenv("FUZZ_LOGIN_VERBOSE") != NULL;
	logcap_init();
	memset(&L, 0, sizeof(L));
	L.base = event_base_new();
	fz_ssl_ctx = SSL_CTX_new(TLS_server_method());
	if (L.base == NULL || fz_ssl_ctx == NULL)
		abort();
	L.chan = -1;
	L.out = ipc_chan_new(L.base, -1, POP3D_IPC_MAX_QUEUED);
	L.reconnect_ev = evtimer_new(L.base, try_reconnect, NULL);
	L.authc = authc_new(L.base, 1000, on_authd_lost, NULL);
	if (L.reconnect_ev == NULL)
		abort();
	/* require-tls-exempt is empty: L.exempt matches nothing */
}

static void client_connect(size_t i, bool proxy)
{
	static uint64_t next_id = 1;
	struct fz_client *f = &fc[i];
	struct stat st;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
		abort();
	if (fstat(sv[0], &st) == -1)
		abort();
	memset(f, 0, sizeof(*f));
	f->used = true;
	f->conn_id = next_id++;
	f->fd = sv[1];
	f->server_ino = st.st_ino;
	new_client(sv[0], f->conn_id, false, proxy);
}

static void client_send(struct fz_client *f, const uint8_t *p, size_t n)
{
	ssize_t w;

	if (!f->used || f->fd == -1 || f->eof_sent)
		return;
	if (n > FZ_SENT_MAX - f->nsent)
		n = FZ_SENT_MAX - f->nsent;
	if (n == 0)
		return;
	w = send(f->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (w <= 0)
		return;		/* the front end closed: nobody reads */
	memcpy(f->sent + f->nsent, p, (size_t)w);
	f->nsent += (size_t)w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	const uint8_t *p = data + 2, *end = data + size;
	size_t nclients;

	if (!init) {
		setup();
		init = true;
	}
	if (size < 2 || size > 4 * FZ_SENT_MAX)
		return 0;
	logcap_reset();
	L.conf = conf_for(data[0]);
	privsep = data[1] & 1;
	proxy_refuse = data[1] & 0x10;
	nclients = data[1] & 2 ? 2 : 1;
	nreqs = 0;
	nsecrets = 0;
	nverdicts = 0;
	authd_up = true;
	authd_fail_next = chan_fail_next = false;
	L.asked_replacement = false;
	memset(fc, 0, sizeof(fc));

	for (size_t i = 0; i < nclients; i++)
		client_connect(i, data[1] & (4u << i));
	settle();

	while (p < end) {
		uint8_t op = *p++;
		struct fz_client *f = &fc[(op >> 3 & 1) % nclients];
		unsigned arg = op >> 4;

		switch (op & 7) {
		case 0:
		case 1: {
			size_t n = arg * 16u + (p < end ? *p++ : 0);
			if (n > (size_t)(end - p))
				n = (size_t)(end - p);
			client_send(f, p, n);
			p += n;
			settle();
			break;
		}
		case 2: {
			struct fz_req *q = NULL;
			for (size_t i = 0; i < nreqs; i++)
				if (reqs[i].pending && (q == NULL || (arg & 8)))
					q = &reqs[i];
			if (q != NULL)
				authd_answer(q, arg & 7);
			settle();
			break;
		}
		case 3:
			time_passes(arg == 0 ? -1 : (int64_t)arg * 700);
			break;
		case 4:
			authd_lose();
			settle();
			break;
		case 5:
			if (f->fd != -1 && !f->eof_sent) {
				shutdown(f->fd, SHUT_WR);
				f->eof_sent = true;
			}
			settle();
			break;
		case 6:
			if (arg & 1)
				authd_fail_next = true;
			else
				chan_fail_next = true;
			break;
		default:
			if (f->fd != -1) {
				close(f->fd);
				f->fd = -1;
			}
			settle();
			break;
		}
	}

	/* Time passes until every client is gone (login-timeout at most). */
	chan_fail_next = false;
	for (int i = 0; i < 64 && L.nclients > 0; i++)
		time_passes(-1);
	if (L.nclients != 0)
		abort();	/* a client that outlives its limits */
	for (size_t i = 0; i < nclients; i++)
		if (!fc[i].ended && !fc[i].end_lost)
			abort();	/* the master never heard of its end */
	for (size_t i = 0; i < nreqs; i++)
		if (reqs[i].pending)
			abort();	/* a request nobody cancelled */
	drain_clients();
	for (size_t i = 0; i < nclients; i++)
		if (fc[i].fd != -1)
			close(fc[i].fd);
	/* libevent frees bufferevents in a finalizer the loop runs */
	event_base_loop(L.base, EVLOOP_NONBLOCK);
	{
		const char *log = logcap_text();
		char *names_out = pwleak_log(log, strlen(log));

		check_no_secret(names_out, strlen(log));
		free(names_out);
		if (verbose)
			fprintf(stderr, "log:\n%s", log);
	}
	for (size_t k = 0; k < nsecrets; k++) {
		free(secrets[k]);
		free(secret_users[k]);
	}
	/* the reconnect timer of a non-privsep front end: authd is back */
	event_del(L.reconnect_ev);
	return 0;
}
