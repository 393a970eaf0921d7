/*
 * session.c - one POP3 session after login: TRANSACTION and UPDATE states.
 *
 * Runs in its own process, already switched to the mailbox owner.  One
 * client, so plain blocking logic on a non-blocking socket with poll()
 * deadlines: every wait for input or for the client to take output is
 * bounded by session-timeout (RFC 1939 section 3: the autologout timer,
 * at least 10 minutes).  Replies are collected in one flat output buffer
 * (allocated once per session: nothing is allocated, freed or wiped per
 * message) that is flushed with one write() before we wait for input and
 * whenever it grows past POP3D_SESSION_FLUSH, so pipelined commands get
 * batched replies and RETR of a big message streams in bounded memory.
 * Input is read straight into the input buffer, one read() per wake-up.  A dropped connection or a
 * timeout ends the session without the UPDATE state: nothing is deleted.
 * For a TLS client the descriptor is a socketpair whose other end the
 * front end relays to the TLS connection: the session speaks plain POP3
 * either way and never sees TLS state or keys.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/alloc.h"
#include "common/config.h"
#include "common/line.h"
#include "common/log.h"
#include "common/num.h"
#include "common/sock.h"
#include "pop3d/pop3d.h"

/* One token each: the logout line is key=value pairs without blanks. */
static const char *const end_names[SESSION_END_COUNT] = {
	[SESSION_END_NONE] = "none", [SESSION_END_QUIT] = "QUIT",
	[SESSION_END_DISCONNECT] = "disconnected", [SESSION_END_TIMEOUT] = "autologout",
	[SESSION_END_ERROR] = "io-error", [SESSION_END_BAD] = "bad-commands",
	[SESSION_END_MAILDROP] = "maildrop",
};

const char *session_end_name(enum session_end end)
{
	return end < SESSION_END_COUNT ? end_names[end] : "?";
}

struct counter {
	unsigned n;
	uint64_t bytes;
};

/* The output buffer: a flush starts at POP3D_SESSION_FLUSH, and what is
 * added at once (a converted chunk of a message: maildir.c's READ_CHUNK
 * doubled, or a reply line) is at most about as much again. */
#define OUT_CAP		(2 * POP3D_SESSION_FLUSH + 1024)

struct session {
	const struct session_params *p;
	struct evbuffer *in;
	char *out;		/* OUT_CAP bytes: out[out_off .. out_len) unsent */
	size_t out_off, out_len;
	struct mailbox *md;	/* Maildir or mbox (mailbox.c) */
	const struct lang *lang;	/* of the responses (LANG) */
	enum session_end end;
	unsigned bad;
	bool skipping;		/* dropping the rest of an over-long line */
	struct counter retr, top, del, expired, size;
	long expire_days;	/* the EXPIRE policy: < 0 none */
	uint64_t commands[POP3D_NCMDS];	/* command lines by keyword */
	uint64_t bytes_sent;
};

/* Waits up to session-timeout for fd to become ready for events.  Returns
 * 0 (ready, or a signal interrupted the wait), or -1 with s->end set. */
static int wait_fd(struct session *s, short events)
{
	struct pollfd pfd = { .fd = s->p->fd, .events = events };
	int r = poll(&pfd, 1, (int)s->p->conf->pop3d.session_timeout_ms);

	if (r == 0) {
		s->end = SESSION_END_TIMEOUT;
		return -1;
	}
	if (r == -1 && errno != EINTR) {
		s->end = SESSION_END_ERROR;
		return -1;
	}
	return 0;
}

/* Writes everything buffered, waiting at most session-timeout for the
 * client each time it stops taking data.  Returns 0, or -1 with s->end
 * (the buffer is then emptied: nothing more can go out). */
static int flush_out(struct session *s)
{
	int r = 0;

	while (r == 0 && s->out_off < s->out_len) {
		ssize_t n = write(s->p->fd, s->out + s->out_off, s->out_len - s->out_off);
		if (n > 0) {
			s->out_off += (size_t)n;
			s->bytes_sent += (uint64_t)n;
		} else if (n == -1 && errno == EINTR) {
			continue;
		} else if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			r = wait_fd(s, POLLOUT);
		} else {
			s->end = SESSION_END_DISCONNECT;
			r = -1;
		}
	}
	s->out_off = s->out_len = 0;
	return r;
}

/* Appends data to the output, flushing first when it would not fit.
 * Returns 0, or -1 with s->end set (the data is then dropped). */
static int out_add(struct session *s, const void *data, size_t len)
{
	while (len > 0) {
		size_t room = OUT_CAP - s->out_len, n;

		if (room == 0) {
			if (flush_out(s) == -1)
				return -1;
			continue;
		}
		n = len < room ? len : room;
		memcpy(s->out + s->out_len, data, n);
		s->out_len += n;
		data = (const char *)data + n;
		len -= n;
	}
	return 0;
}

/* Appends what fmt makes (a line of at most OUT_CAP / 2 bytes; longer is
 * cut, which no caller's format can reach). */
static int out_vprintf(struct session *s, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static int out_vprintf(struct session *s, const char *fmt, va_list ap)
{
	int n;

	if (OUT_CAP - s->out_len < OUT_CAP / 2 && flush_out(s) == -1)
		return -1;
	n = vsnprintf(s->out + s->out_len, OUT_CAP - s->out_len, fmt, ap);
	if (n < 0)
		return 0;
	if ((size_t)n >= OUT_CAP - s->out_len)
		n = (int)(OUT_CAP - s->out_len - 1);
	s->out_len += (size_t)n;
	return 0;
}

static int out_printf(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int out_printf(struct session *s, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = out_vprintf(s, fmt, ap);
	va_end(ap);
	return r;
}

/* What a helper shared with the front end (lang.c, cmd.c) wrote into an
 * evbuffer, moved to the output. */
static void out_take(struct session *s, struct evbuffer *b)
{
	char chunk[1024];
	int n;

	while ((n = evbuffer_remove(b, chunk, sizeof(chunk))) > 0)
		if (out_add(s, chunk, (size_t)n) == -1)
			break;
	evbuffer_free(b);
}

static int emit(void *ctx, const void *data, size_t len)
{
	struct session *s = ctx;

	if (out_add(s, data, len) == -1)
		return -1;
	if (s->out_len >= POP3D_SESSION_FLUSH)
		return flush_out(s);
	return 0;
}

/* Reads more input, waiting at most session-timeout: one read() straight
 * into the input buffer (evbuffer_read would ask FIONREAD first).
 * Returns 0, or -1 with s->end set. */
static int fill_in(struct session *s)
{
	for (;;) {
		struct evbuffer_iovec v;
		ssize_t n;

		if (evbuffer_reserve_space(s->in, 4096, &v, 1) < 1)
			fatalx("evbuffer_reserve_space");
		n = read(s->p->fd, v.iov_base, v.iov_len);
		if (n > 0) {
			v.iov_len = (size_t)n;
			if (evbuffer_commit_space(s->in, &v, 1) == -1)
				fatalx("evbuffer_commit_space");
			return 0;
		}
		if (n == 0 || (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)) {
			s->end = SESSION_END_DISCONNECT;
			return -1;
		}
		if (errno != EINTR && wait_fd(s, POLLIN) == -1)
			return -1;
	}
}

static void reply(struct session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void reply(struct session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)out_vprintf(s, fmt, ap);
	va_end(ap);
	(void)out_add(s, "\r\n", 2);
}

/* The text msgid in the session's language (lang.c); the response codes
 * and machine-read parts around it are never translated. */
static const char *tr(const struct session *s, const char *msgid) __attribute__((format_arg(2)));

static const char *tr(const struct session *s, const char *msgid)
{
	return lang_tr(s->lang, msgid);
}

/* status ("+OK", "-ERR [CODE]"), a space, and fmt (a translation, tr)
 * formatted: a response whose text has numbers in it. */
static void reply_text(struct session *s, const char *status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void reply_text(struct session *s, const char *status, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	reply(s, "%s %s", status, text);
}

/* msg: a msgid, marked with N_ by the caller. */
static void bad_command(struct session *s, const char *msg)
{
	reply(s, "-ERR %s", tr(s, msg));
	if (++s->bad >= s->p->conf->pop3d.max_bad_commands) {
		reply(s, "-ERR %s", tr(s, "Too many bad commands, closing"));
		s->end = SESSION_END_BAD;
	}
}

/* Message argument: a number naming a message not deleted.  Replies the
 * error itself and returns -1 when there is none. */
static int msg_arg(struct session *s, const char *arg, size_t *idx_r)
{
	unsigned n;

	if (pop3_cmd_msgnum(arg, (unsigned)mailbox_count(s->md), &n) == -1) {
		reply(s, "-ERR %s", tr(s, "No such message"));
		return -1;
	}
	if (mailbox_msg(s->md, n - 1)->deleted) {
		reply_text(s, "-ERR", tr(s, "Message %u already deleted"), n);
		return -1;
	}
	*idx_r = n - 1;
	return 0;
}

static void cmd_stat(struct session *s)
{
	unsigned n = 0;
	uint64_t bytes = 0;

	for (size_t i = 0; i < mailbox_count(s->md); i++) {
		const struct maildir_msg *m = mailbox_msg(s->md, i);
		if (!m->deleted) {
			n++;
			bytes += m->size;
		}
	}
	reply(s, "+OK %u %llu", n, (unsigned long long)bytes);
}

/* LIST and UIDL: one message, or all that are not deleted. */
static void cmd_list(struct session *s, char *arg, bool uidl)
{
	char *a, *b;
	size_t i;
	int r;

	if (pop3_cmd_split2(arg, &a, &b) != (a == NULL ? 0 : 1)) {
		bad_command(s, N_("Syntax: LIST [msg] or UIDL [msg]"));
		return;
	}
	if (a != NULL) {
		if (msg_arg(s, a, &i) == -1)
			return;
		const struct maildir_msg *m = mailbox_msg(s->md, i);
		if (uidl)
			reply(s, "+OK %zu %s", i + 1, m->uidl);
		else
			reply(s, "+OK %zu %llu", i + 1, (unsigned long long)m->size);
		return;
	}
	reply(s, "+OK %s", uidl ? tr(s, "Unique-ID listing follows") : tr(s, "Scan listing follows"));
	for (i = 0; i < mailbox_count(s->md); i++) {
		const struct maildir_msg *m = mailbox_msg(s->md, i);
		if (m->deleted)
			continue;
		if (uidl)
			r = out_printf(s, "%zu %s\r\n", i + 1, m->uidl);
		else
			r = out_printf(s, "%zu %llu\r\n", i + 1, (unsigned long long)m->size);
		if (r == -1 || (s->out_len >= POP3D_SESSION_FLUSH && flush_out(s) == -1))
			return;
	}
	reply(s, ".");
}

/* RETR msg (lines < 0) and TOP msg n. */
static void cmd_retr(struct session *s, char *arg, bool top)
{
	struct maildir_msg *m;
	const char *error;
	long lines = -1;
	char *a, *b;
	size_t i, before;
	int r;

	if (pop3_cmd_split2(arg, &a, &b) != (top ? 2 : 1) ||
	    (top && pop3_cmd_lines(b, &lines) == -1)) {
		bad_command(s, top ? N_("Syntax: TOP msg lines") : N_("Syntax: RETR msg"));
		return;
	}
	if (msg_arg(s, a, &i) == -1)
		return;
	m = mailbox_msg(s->md, i);
	/* The +OK is taken back if the message cannot be opened: it must go
	 * in without a flush in between (out_vprintf flushes a buffer over
	 * half full first), or the take-back would bring back bytes already
	 * sent. */
	if (OUT_CAP - s->out_len < OUT_CAP / 2 && flush_out(s) == -1)
		return;
	before = s->out_len;
	reply(s, "+OK %llu octets", (unsigned long long)m->size);
	r = mailbox_send(s->md, i, lines, emit, s, &error);
	if (r == -1) {
		/* nothing of the message went out (-1 comes before any
		 * emit, so no flush since): take the +OK back */
		s->out_len = before;
		reply(s, "-ERR [SYS/TEMP] %s", tr(s, error));
		return;
	}
	if (r == -2) {
		if (s->end == SESSION_END_NONE)
			s->end = SESSION_END_ERROR;
		return;
	}
	reply(s, ".");
	if (top) {
		m->topped = true;
		s->top.n++;
		s->top.bytes += m->size;
	} else {
		m->retrieved = true;
		s->retr.n++;
		s->retr.bytes += m->size;
	}
}

static void cmd_dele(struct session *s, char *arg)
{
	size_t i;

	if (msg_arg(s, arg, &i) == -1)
		return;
	mailbox_msg(s->md, i)->deleted = true;
	reply_text(s, "+OK", tr(s, "Message %zu deleted"), i + 1);
}

static void cmd_rset(struct session *s)
{
	unsigned n = 0;
	uint64_t bytes = 0;

	for (size_t i = 0; i < mailbox_count(s->md); i++) {
		struct maildir_msg *m = mailbox_msg(s->md, i);
		m->deleted = false;
		n++;
		bytes += m->size;
	}
	reply_text(s, "+OK", tr(s, "Maildrop has %u messages (%llu octets)"), n,
		   (unsigned long long)bytes);
}

static void cmd_quit(struct session *s)
{
	unsigned failed;

	for (size_t i = 0; i < mailbox_count(s->md); i++) {
		const struct maildir_msg *m = mailbox_msg(s->md, i);
		if (m->deleted) {
			s->del.n++;
			s->del.bytes += m->size;
		}
	}
	failed = mailbox_update(s->md, s->expire_days, (int64_t)time(NULL));
	for (size_t i = 0; i < mailbox_count(s->md); i++) {
		const struct maildir_msg *m = mailbox_msg(s->md, i);
		if (m->expired) {
			s->expired.n++;
			s->expired.bytes += m->size;
		}
	}
	/* Unlock before the reply: a client that logs in again right after
	 * "+OK" must not find its own finished session holding the lock.
	 * The listing stays with this process if nothing changed. */
	mailbox_park(&s->md, s->p->user, s->p->maildrop);
	if (failed > 0)
		reply_text(s, "-ERR [SYS/TEMP]", tr(s, "%u deleted messages could not be removed"),
			   failed);
	else
		reply(s, "+OK %s", tr(s, "Logging out"));
	s->end = SESSION_END_QUIT;
}

/* LANG (RFC 6856 section 3), as in the AUTHORIZATION state (lang.c). */
static void cmd_lang(struct session *s, const char *arg)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL)
		fatal("evbuffer_new");
	lang_command(b, &s->lang, arg);
	out_take(s, b);
}

static void cmd_capa(struct session *s)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL)
		fatal("evbuffer_new");
	pop3_capa(b, s->p->conf, 0, s->lang);
	out_take(s, b);
}

static void dispatch(struct session *s, char *line)
{
	struct pop3_cmd cmd;

	pop3_cmd_parse(line, &cmd);
	s->commands[cmd.id]++;
	switch (cmd.id) {
	case CMD_STAT:
		if (cmd.arg != NULL)
			bad_command(s, N_("Syntax: STAT"));
		else
			cmd_stat(s);
		break;
	case CMD_LIST:
		cmd_list(s, cmd.arg, false);
		break;
	case CMD_UIDL:
		cmd_list(s, cmd.arg, true);
		break;
	case CMD_RETR:
		cmd_retr(s, cmd.arg, false);
		break;
	case CMD_TOP:
		cmd_retr(s, cmd.arg, true);
		break;
	case CMD_DELE:
		cmd_dele(s, cmd.arg);
		break;
	case CMD_RSET:
		cmd_rset(s);
		break;
	case CMD_NOOP:
		reply(s, "+OK");
		break;
	case CMD_QUIT:
		cmd_quit(s);
		break;
	case CMD_CAPA:
		cmd_capa(s);
		break;
	case CMD_LANG:
		cmd_lang(s, cmd.arg);
		break;
	case CMD_USER: case CMD_PASS: case CMD_AUTH: case CMD_APOP: case CMD_STLS:
	case CMD_UTF8:
		bad_command(s, N_("Already logged in"));
		break;
	default:
		bad_command(s, N_("Unknown command"));
		break;
	}
}

/* The logout line; its format is documented in pop3d(8) (LOGGING). */
static void log_logout(const struct session *s)
{
	char user[POP3D_LOG_USER_MAX];

	char expired[64] = "";

	if (s->expire_days >= 0)
		snprintf(expired, sizeof(expired), " expired=%u/%llu", s->expired.n,
			 (unsigned long long)s->expired.bytes);
	log_info("logout: user=%s rip=%s reason=%s retr=%u/%llu top=%u/%llu del=%u/%llu%s "
		 "size=%u/%llu secured=%s%s%s", log_token(s->p->user, user, sizeof(user)),
		 s->p->rip, end_names[s->end],
		 s->retr.n, (unsigned long long)s->retr.bytes,
		 s->top.n, (unsigned long long)s->top.bytes,
		 s->del.n, (unsigned long long)s->del.bytes, expired,
		 s->size.n, (unsigned long long)s->size.bytes,
		 s->p->secured ? "yes" : "no", s->p->secured ? " tls=" : "",
		 s->p->secured && s->p->tls_info != NULL ? s->p->tls_info : "");
}

static void fill_report(const struct session *s, struct session_report *r)
{
	memset(r, 0, sizeof(*r));
	r->end = s->end;
	memcpy(r->commands, s->commands, sizeof(r->commands));
	r->bytes_sent = s->bytes_sent;
	r->retr = s->retr.n;
	r->retr_bytes = s->retr.bytes;
	r->top = s->top.n;
	r->top_bytes = s->top.bytes;
	r->dele = s->del.n;
	r->dele_bytes = s->del.bytes;
	r->expired = s->expired.n;
	r->expired_bytes = s->expired.bytes;
}

/* The EXPIRE policy config.c validated: days, or -1 for none (unset or
 * NEVER). */
static long expire_days(const struct config *conf)
{
	return conf->pop3d.expire_days == CONFIG_EXPIRE_NEVER ? -1 : (long)conf->pop3d.expire_days;
}

int session_run(const struct session_params *p, struct session_report *report_r)
{
	struct session s = { .p = p, .expire_days = expire_days(p->conf),
			     .lang = p->lang != NULL ? p->lang : lang_default() };
	char line[POP3_MAX_COMMAND + 1];
	const char *error;
	enum maildir_status st;
	bool warm = false;

	signal(SIGPIPE, SIG_IGN);
	s.in = evbuffer_new();
	s.out = xmalloc(OUT_CAP);
	if (s.in == NULL)
		fatal("evbuffer_new");
	sock_set_nonblock(p->fd, true);
	/* Each flush is a whole batch of replies: its tail must not wait for
	 * the client's (delayed) acknowledgement of the segment before it
	 * (Nagle), which stalled pipelined RETRs.  A TLS client's socketpair
	 * says no; nothing to do then. */
	(void)setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	if (p->data_len > 0)
		evbuffer_add(s.in, p->data, p->data_len);

	if (p->maildrop == NULL) {
		st = MAILDIR_PERM;
		error = N_("mailbox is not configured correctly");
	} else {
		st = mailbox_open_warm(p->maildrop, p->user, &s.md, &error, &warm);
	}
	if (st != MAILDIR_OK) {
		static const char *const code[] = {
			[MAILDIR_IN_USE] = "IN-USE", [MAILDIR_TEMP] = "SYS/TEMP",
			[MAILDIR_PERM] = "SYS/PERM",
		};
		char user[POP3D_LOG_USER_MAX];

		log_warnx("session: user=%s maildrop %s: %s",
			  log_token(p->user, user, sizeof(user)),
			  p->maildrop != NULL ? p->maildrop : "-",
			  p->maildrop != NULL ? error : p->maildrop_error);
		reply(&s, "-ERR [%s] %s", code[st], tr(&s, error));
		flush_out(&s);
		s.end = SESSION_END_MAILDROP;
		log_logout(&s);		/* every login line has its end */
		goto out;
	}
	if (p->opened != NULL)
		p->opened(p->opened_ctx, warm);
	if (warm)
		log_debug("session: the listing kept from the last session is still true");
	for (size_t i = 0; i < mailbox_count(s.md); i++) {
		s.size.n++;
		s.size.bytes += mailbox_msg(s.md, i)->size;
	}
	reply_text(&s, "+OK", tr(&s, "Logged in, %u messages (%llu octets)"), s.size.n,
		   (unsigned long long)s.size.bytes);

	while (s.end == SESSION_END_NONE) {
		size_t len;
		bool has_nul;
		enum line_status ls;

		if (s.skipping) {
			if (line_skip(s.in))
				s.skipping = false;
			else if (flush_out(&s) == -1 || fill_in(&s) == -1)
				break;
			continue;
		}
		ls = line_read(s.in, line, POP3_MAX_COMMAND, &len, &has_nul);
		if (ls == LINE_NONE) {
			if (flush_out(&s) == -1 || fill_in(&s) == -1)
				break;
			continue;
		}
		if (ls == LINE_TOOLONG) {
			s.skipping = true;
			s.commands[CMD_UNKNOWN]++;
			bad_command(&s, N_("Line too long"));
			continue;
		}
		if (has_nul) {
			s.commands[CMD_UNKNOWN]++;
			bad_command(&s, N_("NUL byte in command"));
			continue;
		}
		dispatch(&s, line);
	}
	flush_out(&s);
	log_logout(&s);
out:
	fill_report(&s, report_r);
	if (s.md != NULL)
		mailbox_park(&s.md, p->user, p->maildrop);
	evbuffer_free(s.in);
	free(s.out);
	close(p->fd);
	return s.end == SESSION_END_QUIT || s.end == SESSION_END_DISCONNECT ? 0 : 1;
}
