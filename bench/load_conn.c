/*
 * load_conn.c - one pop3-load client session: the scripted POP3 dialogue
 * and the checks of everything the server sends.
 *
 * DESIGN
 * - A session is a list of steps (connect, TLS, greeting, STLS, USER,
 *   PASS or AUTH PLAIN, STAT, LIST, RETR, UIDL, idle, QUIT, wait for the
 *   close); each sends one command and reads one reply.  No pipelining
 *   by default: a command goes out when the previous reply is complete,
 *   as most clients do.  --pipeline N keeps up to N RETR commands in
 *   flight (RFC 2449 PIPELINING; the user asserts the server has it).
 * - Input is read in one of three modes: status lines (through
 *   common/line.c's bounded reader, at most LOAD_STATUS_MAX octets),
 *   listing lines (LIST, UIDL: the same reader, un-stuffed, until "."),
 *   and message bodies (RETR), which are scanned in place in libevent's
 *   buffer without copying: the scanner counts the octets a line adds
 *   once un-stuffed (CRLF included, the stuffing dot not), finds the
 *   terminating ".\r\n" and rejects bare LFs.  The count must equal the
 *   size LIST gave (RFC 1939 section 5: the size "as transmitted", CRLF
 *   line ends, before stuffing) and the "+OK N octets" of the RETR, when
 *   the server sends that form.
 * - Every reply has a deadline, --timeout from the moment its command was
 *   sent (the connect, from the moment it started): a status line that
 *   does not come is a "timeout", a multi-line reply whose "." does not
 *   come is "unterminated".  A deadline for the whole reply, not for
 *   inactivity, so that a server that dribbles one byte a second cannot
 *   hold a session past its bound either.
 * - A session ends at its first error, counted under one kind
 *   (enum load_error); the connection is closed and the slot moves on.
 *   After the +OK to QUIT the session waits (within the deadline) for the
 *   server to close first, as RFC 1939 has it: that also leaves the
 *   TIME_WAIT state on the server's side, so a long run does not exhaust
 *   the client's ephemeral ports.
 * - Ending a session never happens inside load_conn_start(): an immediate
 *   connect failure is reported from the event loop, so a slot that keeps
 *   failing does not recurse.
 * - TLS (--tls implicit or stls): an OpenSSL filter bufferevent on top of
 *   the socket's, the way pop3d's front end does it.  After "+OK" to STLS
 *   nothing may follow in plain text (RFC 2595 section 4).  The server
 *   certificate is not checked unless --tls-ca is given: this is a load
 *   generator, not a mail client.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>

#include "bench/pop3-load.h"
#include "common/line.h"
#include "common/mtime.h"
#include "common/num.h"

enum step {
	STEP_CONNECT,		/* TCP connect in progress */
	STEP_TLS,		/* implicit TLS handshake */
	STEP_GREETING,
	STEP_STLS,		/* STLS sent */
	STEP_STLS_HANDSHAKE,
	STEP_USER,
	STEP_PASS,
	STEP_AUTH,		/* AUTH PLAIN with initial response sent */
	STEP_STAT,
	STEP_LIST,
	STEP_RETR,
	STEP_UIDL,
	STEP_IDLE,		/* holding (idle script) */
	STEP_NOOP,		/* idle script: NOOP sent */
	STEP_QUIT,
	STEP_CLOSE_WAIT,	/* +OK to QUIT received, waiting for the close */
};

enum mode {
	MODE_NONE,		/* nothing expected: input is discarded */
	MODE_STATUS,		/* a status line */
	MODE_LINES,		/* the lines of a listing, up to "." */
	MODE_BODY,		/* a message body, up to "." */
};

/* The in-place RETR body scanner's state between two reads. */
struct body_scan {
	uint64_t octets;	/* un-stuffed octets so far, CRLFs included */
	uint64_t line_len;	/* octets of the current line so far */
	uint8_t head;		/* first octet of the current line */
	uint8_t last;		/* last octet seen */
};

struct load_conn {
	struct load_slot *slot;
	struct load_run *run;
	struct load_stats *st;
	struct load_target *target;
	struct load_user *user;
	struct bufferevent *bev;	/* the socket, or the TLS filter on it */
	struct event *timer;		/* reply deadline; idle NOOP/hold timer */
	enum step step;
	enum mode mode;
	bool connected;			/* counted in st->open */
	bool holding;			/* counted in st->held */
	bool connect_failed;		/* immediate connect failure, to report */
	bool stop_idle;			/* the run ends: QUIT after the idle NOOP */
	bool logged_in;			/* the login was answered +OK */
	size_t left;			/* input bytes left unprocessed last time */
	uint64_t t_start, t_login, t_idle;
	uint64_t stat_count, stat_octets;
	uint64_t *sizes;		/* LIST: message sizes */
	size_t nsizes, cap;
	size_t retr;			/* 0-based message whose reply is read */
	size_t retr_sent;		/* RETR commands sent (--pipeline) */
	uint64_t retr_announced;	/* "+OK N octets", or UINT64_MAX */
	struct body_scan scan;
};

static SSL_CTX *tls_ctx;

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* ---- ending a session ------------------------------------------------- */

static void conn_free(struct load_conn *c)
{
	c->user->busy = false;
	if (c->holding)
		c->st->held--;
	if (c->connected)
		c->st->open--;
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	event_free(c->timer);
	free(c->sizes);
	c->slot->conn = NULL;
	free(c);
}

/* The session failed with kind.  c is freed; returns false, so that
 * callers can write "return fail(c, ERR_X);" and stop touching c. */
static bool fail(struct load_conn *c, enum load_error kind)
{
	struct load_slot *slot = c->slot;

	/* A connection refused or closed before the login was answered, or
	 * a greeting "-ERR": the server turned the client away (its answer
	 * time is what --open-loop runs measure). */
	if (!c->logged_in && (kind == ERR_CONNECT || kind == ERR_CLOSED ||
			      kind == ERR_GREETING)) {
		c->st->refused++;
		c->st->sec_refused++;
		load_stats_add(&c->st->refused_at, mtime_us() - c->t_start);
	}
	load_stats_error(c->st, kind);
	c->target->errors++;
	conn_free(c);
	load_slot_done(slot, true);
	return false;
}

static bool finish(struct load_conn *c)
{
	struct load_slot *slot = c->slot;

	c->st->completed++;
	c->st->sec_completed++;
	c->target->sessions++;
	conn_free(c);
	load_slot_done(slot, false);
	return false;
}

void load_conn_abort(struct load_slot *slot)
{
	struct load_conn *c = slot->conn;

	if (c == NULL)
		return;
	c->st->aborted++;
	conn_free(c);
}

/* ---- sending ------------------------------------------------------------- */

static void arm(struct load_conn *c, uint64_t us)
{
	struct timeval tv = { .tv_sec = (time_t)(us / 1000000),
			      .tv_usec = (suseconds_t)(us % 1000000) };

	evtimer_add(c->timer, &tv);
}

/* Sends a command line (CRLF added) and waits for its reply in mode. */
static void send_cmd(struct load_conn *c, enum step step, enum mode mode,
		     const char *cmd, const char *arg)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (arg != NULL)
		evbuffer_add_printf(out, "%s %s\r\n", cmd, arg);
	else
		evbuffer_add_printf(out, "%s\r\n", cmd);
	c->step = step;
	c->mode = mode;
	arm(c, c->run->timeout_us);
}

/* Waits for the reply to RETR of message c->retr, after sending RETR
 * commands up to --pipeline ahead of it.  The deadline runs from now:
 * with pipelining, from the end of the previous reply. */
static void retr_next(struct load_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	while (c->retr_sent < c->nsizes && c->retr_sent - c->retr < c->run->pipeline)
		evbuffer_add_printf(out, "RETR %zu\r\n", ++c->retr_sent);
	memset(&c->scan, 0, sizeof(c->scan));
	c->retr_announced = UINT64_MAX;
	c->step = STEP_RETR;
	c->mode = MODE_STATUS;
	arm(c, c->run->timeout_us);
}

static void send_quit(struct load_conn *c)
{
	send_cmd(c, STEP_QUIT, MODE_STATUS, "QUIT", NULL);
}

/* AUTH PLAIN with an initial response (RFC 4616, RFC 5034 section 4):
 * base64 of "" NUL user NUL password. */
static void send_auth_plain(struct load_conn *c)
{
	size_t ulen = strlen(c->user->name), plen = strlen(c->user->pass);
	size_t rawlen = 2 + ulen + plen;
	uint8_t raw[2 + LOAD_USER_MAX + LOAD_PASS_MAX];
	char b64[sodium_base64_ENCODED_LEN(sizeof(raw), sodium_base64_VARIANT_ORIGINAL)];
	char arg[sizeof(b64) + 8];

	raw[0] = 0;
	memcpy(raw + 1, c->user->name, ulen);
	raw[1 + ulen] = 0;
	memcpy(raw + 2 + ulen, c->user->pass, plen);
	sodium_bin2base64(b64, sizeof(b64), raw, rawlen, sodium_base64_VARIANT_ORIGINAL);
	snprintf(arg, sizeof(arg), "PLAIN %s", b64);
	send_cmd(c, STEP_AUTH, MODE_STATUS, "AUTH", arg);
	sodium_memzero(raw, sizeof(raw));
	sodium_memzero(arg, sizeof(arg));
}

static void start_login(struct load_conn *c)
{
	c->t_login = mtime_us();
	if (c->run->method == METHOD_PLAIN)
		send_auth_plain(c);
	else
		send_cmd(c, STEP_USER, MODE_STATUS, "USER", c->user->name);
}

static void start_idle(struct load_conn *c)
{
	c->step = STEP_IDLE;
	c->mode = MODE_NONE;
	if (!c->holding) {
		c->holding = true;
		if (++c->st->held > c->st->held_peak)
			c->st->held_peak = c->st->held;
		c->t_idle = mtime_us();
	}
	if (c->stop_idle) {
		send_quit(c);
		return;
	}
	uint64_t now = mtime_us(), wait = UINT64_MAX;
	if (c->run->idle_us != 0) {
		uint64_t end = c->t_idle + c->run->idle_us;
		wait = end > now ? end - now : 0;
	}
	if (c->run->noop_us != 0 && c->run->noop_us < wait)
		wait = c->run->noop_us;
	if (wait != UINT64_MAX)
		arm(c, wait);
	else
		evtimer_del(c->timer);
}

void load_conn_stop_idle(struct load_conn *c)
{
	c->stop_idle = true;
	if (c->step == STEP_IDLE)
		send_quit(c);
}

/* ---- TLS ---------------------------------------------------------------- */

int load_conn_tls_init(const char *ca_file)
{
	tls_ctx = SSL_CTX_new(TLS_client_method());
	if (tls_ctx == NULL ||
	    SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION) != 1) {
		fprintf(stderr, "pop3-load: cannot create a TLS context\n");
		return -1;
	}
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(tls_ctx, ca_file, NULL) != 1) {
			fprintf(stderr, "pop3-load: %s: cannot load CA certificates\n",
				ca_file);
			return -1;
		}
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
	}
	return 0;
}

/* Puts a TLS client filter on the connection and starts the handshake;
 * on_event sees BEV_EVENT_CONNECTED when it is done. */
static bool start_tls(struct load_conn *c, enum step step)
{
	SSL *ssl = SSL_new(tls_ctx);
	struct bufferevent *f;

	if (ssl == NULL)
		return fail(c, ERR_TLS);
	f = bufferevent_openssl_filter_new(c->run->base, c->bev, ssl,
					   BUFFEREVENT_SSL_CONNECTING,
					   BEV_OPT_CLOSE_ON_FREE);
	if (f == NULL) {
		SSL_free(ssl);
		return fail(c, ERR_TLS);
	}
	c->bev = f;	/* owns the socket bufferevent now */
	bufferevent_openssl_set_allow_dirty_shutdown(f, 1);
	bufferevent_setcb(f, on_read, NULL, on_event, c);
	bufferevent_enable(f, EV_READ | EV_WRITE);
	c->step = step;
	c->mode = MODE_NONE;
	c->left = 0;
	arm(c, c->run->timeout_us);
	return true;
}

/* ---- replies -------------------------------------------------------------- */

enum status { ST_OK, ST_ERR, ST_BAD };

static enum status classify(const char *line)
{
	if (strncmp(line, "+OK", 3) == 0 && (line[3] == '\0' || line[3] == ' '))
		return ST_OK;
	if (strncmp(line, "-ERR", 4) == 0 && (line[4] == '\0' || line[4] == ' '))
		return ST_ERR;
	return ST_BAD;
}

/* "+OK <count> <octets>..." (STAT) or "+OK <octets> octets" (RETR): the
 * numbers after "+OK ", strictly parsed. */
static int parse_two(const char *line, uint64_t *a_r, uint64_t *b_r)
{
	char buf[LOAD_STATUS_MAX + 1], *sp, *end;

	snprintf(buf, sizeof(buf), "%s", line + 3);
	if (buf[0] != ' ')
		return -1;
	sp = strchr(buf + 1, ' ');
	if (sp == NULL)
		return -1;
	*sp = '\0';
	end = strchr(sp + 1, ' ');
	if (end != NULL)
		*end = '\0';
	if (num_parse_u64(buf + 1, 0, UINT64_MAX, a_r) == -1 ||
	    num_parse_u64(sp + 1, 0, UINT64_MAX, b_r) == -1)
		return -1;
	return 0;
}

static bool retr_announced(const char *line, uint64_t *octets_r)
{
	char buf[LOAD_STATUS_MAX + 1], *sp;

	snprintf(buf, sizeof(buf), "%s", line + 3);
	if (buf[0] != ' ')
		return false;
	sp = strchr(buf + 1, ' ');
	if (sp == NULL || strncmp(sp, " octets", 7) != 0 ||
	    (sp[7] != '\0' && sp[7] != ' '))
		return false;
	*sp = '\0';
	return num_parse_u64(buf + 1, 0, UINT64_MAX, octets_r) == 0;
}

/* The step after the login (and after each reply of the script). */
static bool after_login(struct load_conn *c)
{
	switch (c->run->script) {
	case SCRIPT_LOGIN:
	case SCRIPT_RETR:
		send_cmd(c, STEP_STAT, MODE_STATUS, "STAT", NULL);
		return true;
	case SCRIPT_POLL:
		c->nsizes = 0;
		send_cmd(c, STEP_UIDL, MODE_STATUS, "UIDL", NULL);
		return true;
	case SCRIPT_IDLE:
		break;
	}
	send_quit(c);
	return true;
}

static bool login_refused(struct load_conn *c, const char *line, uint64_t now)
{
	if (strstr(line, "[SYS/TEMP]") != NULL) {
		c->st->sec_tempfail++;
		load_stats_add(&c->st->tempfail, now - c->t_login);
		return fail(c, ERR_AUTH_TEMPFAIL);
	}
	if (strstr(line, "[IN-USE]") != NULL)
		return fail(c, ERR_IN_USE);
	return fail(c, ERR_AUTH_FAILED);
}

/* One status line; returns false once c is gone. */
static bool on_status(struct load_conn *c, const char *line)
{
	enum status s = classify(line);
	uint64_t now = mtime_us();

	evtimer_del(c->timer);
	if (c->step == STEP_GREETING) {
		if (s == ST_BAD)
			return fail(c, ERR_BAD_STATUS);
		if (s == ST_ERR)
			return fail(c, ERR_GREETING);
		load_stats_add(&c->st->connect, now - c->t_start);
		if (c->run->tls == TLS_STLS) {
			send_cmd(c, STEP_STLS, MODE_STATUS, "STLS", NULL);
			return true;
		}
		if (c->run->script == SCRIPT_IDLE) {
			start_idle(c);
			return true;
		}
		start_login(c);
		return true;
	}
	if (s == ST_BAD)
		return fail(c, ERR_BAD_STATUS);
	switch (c->step) {
	case STEP_STLS:
		if (s == ST_ERR)
			return fail(c, ERR_ERR_REPLY);
		/* Plain text after the +OK would be read as if protected. */
		if (evbuffer_get_length(bufferevent_get_input(c->bev)) != 0)
			return fail(c, ERR_TLS);
		return start_tls(c, STEP_STLS_HANDSHAKE);
	case STEP_USER:
		if (s == ST_ERR)
			return fail(c, ERR_ERR_REPLY);
		send_cmd(c, STEP_PASS, MODE_STATUS, "PASS", c->user->pass);
		return true;
	case STEP_PASS:
	case STEP_AUTH:
		if (s == ST_ERR)
			return login_refused(c, line, now);
		load_stats_add(&c->st->login, now - c->t_login);
		c->logged_in = true;
		c->st->logins_ok++;
		c->st->sec_logins++;
		return after_login(c);
	case STEP_STAT:
		if (s == ST_ERR)
			return fail(c, ERR_ERR_REPLY);
		if (parse_two(line, &c->stat_count, &c->stat_octets) == -1 ||
		    c->stat_count > LOAD_MAX_MESSAGES)
			return fail(c, ERR_BAD_LISTING);
		if (c->run->script == SCRIPT_RETR) {
			c->nsizes = 0;
			send_cmd(c, STEP_LIST, MODE_STATUS, "LIST", NULL);
			return true;
		}
		send_quit(c);
		return true;
	case STEP_LIST:
	case STEP_UIDL:
		if (s == ST_ERR)
			return fail(c, ERR_ERR_REPLY);
		c->mode = MODE_LINES;
		arm(c, c->run->timeout_us);
		return true;
	case STEP_RETR:
		if (s == ST_ERR)
			return fail(c, ERR_ERR_REPLY);
		if (retr_announced(line, &c->retr_announced) &&
		    c->retr_announced != c->sizes[c->retr])
			return fail(c, ERR_SIZE_MISMATCH);
		c->mode = MODE_BODY;
		arm(c, c->run->timeout_us);
		return true;
	case STEP_NOOP:
		if (s == ST_ERR)
			return fail(c, ERR_ERR_REPLY);
		start_idle(c);
		return true;
	case STEP_QUIT:
		if (s == ST_ERR)
			return fail(c, ERR_ERR_REPLY);
		if (c->run->script != SCRIPT_IDLE)
			load_stats_add(&c->st->session, now - c->t_start);
		c->step = STEP_CLOSE_WAIT;
		c->mode = MODE_NONE;
		arm(c, c->run->timeout_us);
		return true;
	default:
		/* A status line nobody asked for. */
		return fail(c, ERR_BAD_STATUS);
	}
}

/* One line of a LIST or UIDL listing ("n size" / "n unique-id"). */
static bool on_listing_line(struct load_conn *c, const char *line)
{
	char buf[LOAD_LISTING_MAX + 1], *sp;
	uint64_t n, size;

	snprintf(buf, sizeof(buf), "%s", line);
	sp = strchr(buf, ' ');
	if (sp == NULL)
		return fail(c, ERR_BAD_LISTING);
	*sp = '\0';
	if (num_parse_u64(buf, 1, LOAD_MAX_MESSAGES, &n) == -1 || n != c->nsizes + 1)
		return fail(c, ERR_BAD_LISTING);
	if (c->step == STEP_UIDL) {
		size_t len = strlen(sp + 1);
		if (len < 1 || len > 70)
			return fail(c, ERR_BAD_LISTING);
		for (const char *p = sp + 1; *p != '\0'; p++)
			if (*p < 0x21 || *p > 0x7e)
				return fail(c, ERR_BAD_LISTING);
		c->nsizes++;
		return true;
	}
	if (num_parse_u64(sp + 1, 0, UINT64_MAX, &size) == -1)
		return fail(c, ERR_BAD_LISTING);
	if (c->nsizes == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		uint64_t *p = realloc(c->sizes, cap * sizeof(*p));
		if (p == NULL) {
			fprintf(stderr, "pop3-load: out of memory\n");
			exit(1);
		}
		c->sizes = p;
		c->cap = cap;
	}
	c->sizes[c->nsizes++] = size;
	return true;
}

static bool on_listing_end(struct load_conn *c)
{
	evtimer_del(c->timer);
	c->mode = MODE_NONE;
	if (c->step == STEP_UIDL) {
		send_quit(c);
		return true;
	}
	uint64_t total = 0;
	for (size_t i = 0; i < c->nsizes; i++)
		total += c->sizes[i];
	if (c->nsizes != c->stat_count || total != c->stat_octets)
		return fail(c, ERR_LIST_MISMATCH);
	c->retr = c->retr_sent = 0;
	if (c->nsizes == 0) {
		send_quit(c);
		return true;
	}
	retr_next(c);
	return true;
}

static bool on_body_end(struct load_conn *c)
{
	evtimer_del(c->timer);
	c->mode = MODE_NONE;
	if (c->scan.octets != c->sizes[c->retr])
		return fail(c, ERR_SIZE_MISMATCH);
	c->st->retr_octets += c->scan.octets;
	c->st->messages++;
	if (++c->retr < c->nsizes) {
		retr_next(c);
		return true;
	}
	send_quit(c);
	return true;
}

/* ---- the body scanner ------------------------------------------------------ */

enum scan_result { SCAN_MORE, SCAN_DONE, SCAN_BAD };

/* Scans len bytes at p; *used_r is how many belong to the body (all of
 * them unless SCAN_DONE, where the terminator is the last one used). */
static enum scan_result scan_chunk(struct body_scan *s, const uint8_t *p, size_t len,
				   size_t *used_r)
{
	const uint8_t *start = p, *end = p + len;

	while (p < end) {
		const uint8_t *nl;
		size_t seg;

		if (s->line_len == 0)
			s->head = *p;
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			s->line_len += (uint64_t)(end - p);
			s->last = end[-1];
			p = end;
			break;
		}
		seg = (size_t)(nl - p) + 1;
		uint64_t total = s->line_len + seg;
		uint8_t before_lf = seg >= 2 ? nl[-1] : s->last;
		if (total < 2 || before_lf != '\r')
			return SCAN_BAD;	/* a bare LF */
		p = nl + 1;
		s->line_len = 0;
		if (s->head == '.') {
			if (total == 3) {	/* ".\r\n" */
				*used_r = (size_t)(p - start);
				return SCAN_DONE;
			}
			s->octets += total - 1;	/* the stuffing dot */
		} else {
			s->octets += total;
		}
	}
	*used_r = (size_t)(p - start);
	return SCAN_MORE;
}

static enum scan_result scan_body(struct load_conn *c, struct evbuffer *in)
{
	struct evbuffer_iovec vec[16];

	for (;;) {
		int n = evbuffer_peek(in, -1, NULL, vec, 16);
		size_t drained = 0;

		if (n <= 0)
			return SCAN_MORE;
		if (n > 16)
			n = 16;
		for (int i = 0; i < n; i++) {
			size_t used = 0;
			enum scan_result r = scan_chunk(&c->scan, vec[i].iov_base,
							vec[i].iov_len, &used);
			drained += used;
			if (r != SCAN_MORE) {
				evbuffer_drain(in, drained);
				return r;
			}
		}
		evbuffer_drain(in, drained);
	}
}

/* ---- input ------------------------------------------------------------------ */

/* Takes one line for MODE_STATUS or MODE_LINES.  Returns 1 with the line,
 * 0 if none is complete yet, -1 after failing c (bad line). */
static int take_line(struct load_conn *c, struct evbuffer *in, char *line, size_t max)
{
	struct evbuffer_ptr eol;
	size_t len, eol_len;
	bool has_nul;
	char cr;

	eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_LF);
	if (eol.pos == -1) {
		if (evbuffer_get_length(in) >= max) {
			fail(c, ERR_BAD_LINE);
			return -1;
		}
		return 0;
	}
	/* A bare LF is not a POP3 line end (RFC 1939 section 3). */
	struct evbuffer_ptr before;
	if (eol.pos == 0 ||
	    evbuffer_ptr_set(in, &before, (size_t)eol.pos - 1, EVBUFFER_PTR_SET) == -1 ||
	    evbuffer_copyout_from(in, &before, &cr, 1) != 1 || cr != '\r') {
		fail(c, ERR_BAD_LINE);
		return -1;
	}
	switch (line_read(in, line, max, &len, &has_nul)) {
	case LINE_OK:
		if (has_nul) {
			fail(c, ERR_BAD_LINE);
			return -1;
		}
		return 1;
	case LINE_TOOLONG:
		fail(c, ERR_BAD_LINE);
		return -1;
	case LINE_NONE:
		break;
	}
	return 0;
}

/* Processes everything buffered; returns false once c is gone. */
static bool process(struct load_conn *c)
{
	char line[LOAD_STATUS_MAX + 1];

	for (;;) {
		/* Fetched again each time: STLS replaces c->bev. */
		struct evbuffer *in = bufferevent_get_input(c->bev);
		int r;

		switch (c->mode) {
		case MODE_NONE:
			/* Idle or waiting for the close: anything the server
			 * says now is not a reply to us.  (During a TLS
			 * handshake the filter holds nothing to read.) */
			if (c->step == STEP_IDLE || c->step == STEP_CLOSE_WAIT)
				evbuffer_drain(in, evbuffer_get_length(in));
			return true;
		case MODE_STATUS:
			r = take_line(c, in, line, LOAD_STATUS_MAX);
			if (r <= 0)
				return r == 0;
			if (!on_status(c, line))
				return false;
			break;
		case MODE_LINES:
			r = take_line(c, in, line, LOAD_LISTING_MAX);
			if (r <= 0)
				return r == 0;
			if (strcmp(line, ".") == 0) {
				if (!on_listing_end(c))
					return false;
			} else if (!on_listing_line(c, line[0] == '.' ? line + 1 : line)) {
				return false;
			}
			break;
		case MODE_BODY:
			switch (scan_body(c, in)) {
			case SCAN_MORE:
				return true;
			case SCAN_BAD:
				return fail(c, ERR_BAD_LINE);
			case SCAN_DONE:
				if (!on_body_end(c))
					return false;
				break;
			}
			break;
		}
	}
}

/* Counts and processes what is buffered; returns false once c is gone. */
static bool take_input(struct load_conn *c)
{
	size_t len = evbuffer_get_length(bufferevent_get_input(c->bev));

	if (len > c->left) {
		c->st->bytes_in += len - c->left;
		c->st->sec_bytes += len - c->left;
	}
	if (!process(c))
		return false;
	c->left = evbuffer_get_length(bufferevent_get_input(c->bev));
	return true;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	take_input(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct load_conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		if (c->step == STEP_CONNECT) {
			c->connected = true;
			c->st->open++;
			if (c->run->tls == TLS_IMPLICIT) {
				start_tls(c, STEP_TLS);
				return;
			}
			c->step = STEP_GREETING;
			c->mode = MODE_STATUS;
			/* The greeting's deadline runs from the connect's start. */
			return;
		}
		if (c->step == STEP_TLS) {
			c->step = STEP_GREETING;
			c->mode = MODE_STATUS;
			arm(c, c->run->timeout_us);
			take_input(c);
			return;
		}
		if (c->step == STEP_STLS_HANDSHAKE) {
			evtimer_del(c->timer);
			if (c->run->script == SCRIPT_IDLE)
				start_idle(c);
			else
				start_login(c);
			return;
		}
		return;
	}
	/* Read right away: libevent calls us just after the failed call. */
	int err = EVUTIL_SOCKET_ERROR();

	/* The TLS filter may report the close with decrypted bytes still
	 * unread (the reply to QUIT, typically): those come first. */
	if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) && c->step != STEP_CONNECT &&
	    evbuffer_get_length(bufferevent_get_input(c->bev)) != 0 && !take_input(c))
		return;
	if (what & BEV_EVENT_ERROR) {
		if (c->step == STEP_CONNECT)
			fail(c, ERR_CONNECT);
		else if (c->step == STEP_TLS || c->step == STEP_STLS_HANDSHAKE ||
			 (c->run->tls != TLS_NONE && bufferevent_get_openssl_error(bev) != 0))
			fail(c, ERR_TLS);
		else if (c->step == STEP_CLOSE_WAIT)
			finish(c);	/* a reset after our QUIT: closed all the same */
		else
			/* A reset is how a server that closed with our command
			 * unread ends the connection: closed all the same. */
			fail(c, err == ECONNRESET || err == EPIPE ? ERR_CLOSED : ERR_IO);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* Whatever came with the close was read already. */
		if (c->step == STEP_CLOSE_WAIT)
			finish(c);
		else if (c->step == STEP_TLS || c->step == STEP_STLS_HANDSHAKE)
			fail(c, ERR_TLS);
		else
			fail(c, ERR_CLOSED);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct load_conn *c = arg;

	if (c->connect_failed) {
		fail(c, ERR_CONNECT);
		return;
	}
	switch (c->step) {
	case STEP_CONNECT:
		fail(c, ERR_CONNECT);
		return;
	case STEP_TLS:
	case STEP_STLS_HANDSHAKE:
		fail(c, ERR_TLS);
		return;
	case STEP_IDLE: {
		uint64_t now = mtime_us();
		if (c->run->idle_us != 0 && now - c->t_idle >= c->run->idle_us) {
			c->stop_idle = true;
			send_quit(c);
		} else {
			send_cmd(c, STEP_NOOP, MODE_STATUS, "NOOP", NULL);
		}
		return;
	}
	case STEP_CLOSE_WAIT:
		fail(c, ERR_NO_CLOSE);
		return;
	default:
		break;
	}
	if (c->mode == MODE_LINES || c->mode == MODE_BODY)
		fail(c, ERR_UNTERMINATED);
	else
		fail(c, ERR_TIMEOUT);
}

/* ---- start ------------------------------------------------------------------ */

void load_conn_start(struct load_slot *slot, unsigned target,
		     struct load_user *user)
{
	struct load_pop *pop = slot->pop;
	struct load_run *run = pop->run;
	struct load_conn *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		fprintf(stderr, "pop3-load: out of memory\n");
		exit(1);
	}
	c->slot = slot;
	c->run = run;
	c->st = &pop->st;
	c->target = &run->targets[target];
	c->user = user;
	user->busy = true;
	c->step = STEP_CONNECT;
	c->mode = MODE_NONE;
	c->t_start = mtime_us();
	c->timer = evtimer_new(run->base, on_timer, c);
	c->bev = bufferevent_socket_new(run->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->timer == NULL || c->bev == NULL) {
		fprintf(stderr, "pop3-load: out of memory\n");
		exit(1);
	}
	slot->conn = c;
	pop->st.started++;
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&c->target->ss,
				       (int)c->target->len) == -1) {
		/* No socket, no port: reported from the loop, not from here. */
		c->connect_failed = true;
		event_active(c->timer, EV_TIMEOUT, 0);
		return;
	}
	arm(c, run->timeout_us);
}
