/*
 * stats.c - pop3d's metrics: the master's counters, the totals of the
 * counters front ends and sessions send it, rendered in the Prometheus
 * text format for the stats socket (common/stats_server.c serves it:
 * connect, read, EOF).  Runs in the master only, as root when started so.
 *
 * DESIGN: where each number is counted, and how it reaches the master
 * - The master counts what it sees itself (accepts and refusals, handoffs,
 *   logins it turned into sessions, session starts and ends) in
 *   master_stats, from its one event loop: one writer, no lock.
 * - A front end counts in its own memory (struct fe_stats: commands before
 *   login, failed logins, bytes written, TLS handshakes, authd losses,
 *   authd's latency) and sends the whole struct over its existing channel
 *   to the master (IPC_STATS) when it changed, at most once per
 *   POP3D_STATS_INTERVAL_MS, and a last time before a retired front end
 *   leaves.  Counters are cumulative over the front end's life, so a lost
 *   or late snapshot costs nothing but freshness.  The master keeps each
 *   live front end's latest snapshot and, when the front end ends, adds it
 *   to master_stats.fe_ended (it reads the channel to its end first, so
 *   the last snapshot is not lost).  What a crashed front end counted
 *   after its last snapshot is lost: at most one interval's worth.
 * - A session counts in its own memory (struct session_report) and sends
 *   the report once, as it ends, on a SOCK_SEQPACKET socket all sessions
 *   share with the master.  The master reads the sender's pid from
 *   SCM_CREDENTIALS (the kernel's word, not the session's), accepts one
 *   report per live session, and reads pending reports before it releases
 *   a session (reaped, or its process free for another login), so a report
 *   is never counted against the wrong one.
 *   A session's bytes therefore appear when it ends.
 * - So no counter is ever shared between processes or threads, nothing on
 *   a client's path takes a lock, and a front end or session can at worst
 *   falsify its own counts (the master clamps its gauges to what it knows).
 * - Rendering sums, at scrape time, the master's counters, fe_ended and
 *   the live snapshots (master_gauges in master.c).  Counters never go
 *   down: a front end's snapshot only replaces its own earlier one, and its
 *   last one moves into fe_ended when it ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/stats_server.h"
#include "pop3d/pop3d.h"

struct master_stats master_stats;

/* Upper bounds of the session duration buckets, in milliseconds. */
static const uint64_t duration_bounds_ms[STATS_DURATION_BUCKETS] = {
	100, 500, 1000, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
	14400000,
};

static struct stats_server *server, *http_server;	/* stats socket, metrics-listen */

/* ---- totals ------------------------------------------------------------ */

static void hist_add(struct metrics_hist *into, const struct metrics_hist *from)
{
	for (unsigned i = 0; i <= METRICS_NBUCKETS; i++)
		into->buckets[i] += from->buckets[i];
	into->count += from->count;
	into->sum_us += from->sum_us;
}

void stats_fe_add(struct fe_stats *into, const struct fe_stats *from)
{
	for (unsigned i = 0; i < POP3D_NCMDS; i++)
		into->commands[i] += from->commands[i];
	into->logins_failed += from->logins_failed;
	into->logins_tempfailed += from->logins_tempfailed;
	into->logins_overloaded += from->logins_overloaded;
	for (unsigned i = 0; i < LOGIN_LIMIT_COUNT; i++)
		into->login_limit[i] += from->login_limit[i];
	into->bytes_sent += from->bytes_sent;
	into->tls_ok += from->tls_ok;
	into->tls_failed += from->tls_failed;
	into->tls_timeout += from->tls_timeout;
	into->tls_resumed += from->tls_resumed;
	into->authd_lost += from->authd_lost;
	into->authd_reconnects += from->authd_reconnects;
	hist_add(&into->auth_latency, &from->auth_latency);
	into->proxy_ok += from->proxy_ok;
	into->proxy_local += from->proxy_local;
	into->proxy_malformed += from->proxy_malformed;
	into->proxy_timeout += from->proxy_timeout;
	into->proxy_closed += from->proxy_closed;
}

void stats_session_add(const struct session_report *r, bool plain)
{
	struct session_report *t = &master_stats.sessions;

	for (unsigned i = 0; i < POP3D_NCMDS; i++)
		t->commands[i] += r->commands[i];
	t->retr += r->retr;
	t->retr_bytes += r->retr_bytes;
	t->top += r->top;
	t->top_bytes += r->top_bytes;
	t->dele += r->dele;
	t->dele_bytes += r->dele_bytes;
	t->expired += r->expired;
	t->expired_bytes += r->expired_bytes;
	if (r->end < SESSION_END_COUNT)
		master_stats.sessions_ended[r->end]++;
	if (plain)
		master_stats.bytes_sent += r->bytes_sent;
}

void stats_duration_add(uint64_t ms)
{
	struct duration_hist *h = &master_stats.durations;
	unsigned i = 0;

	while (i < STATS_DURATION_BUCKETS && ms > duration_bounds_ms[i])
		i++;
	h->buckets[i]++;
	h->count++;
	h->sum_ms += ms;
}

/* ---- rendering ------------------------------------------------------------ */

/* The duration histogram with its own bounds (metrics_hist's are fixed
 * latency buckets that end at 5 s). */
static void render_durations(struct evbuffer *out, const char *name)
{
	const struct duration_hist *h = &master_stats.durations;
	uint64_t cum = 0;

	for (unsigned i = 0; i < STATS_DURATION_BUCKETS; i++) {
		cum += h->buckets[i];
		evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %llu\n", name,
				    (double)duration_bounds_ms[i] / 1e3, (unsigned long long)cum);
	}
	cum += h->buckets[STATS_DURATION_BUCKETS];
	evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.3f\n%s_count %llu\n",
			    name, (unsigned long long)cum, name, (double)h->sum_ms / 1e3, name,
			    (unsigned long long)h->count);
}

static void one(struct evbuffer *out, const char *name, const char *type, const char *help,
		uint64_t v)
{
	metrics_header(out, name, type, help);
	metrics_value(out, name, NULL, v);
}

static void render_commands(struct evbuffer *out, const struct fe_stats *fe)
{
	char labels[64];

	metrics_header(out, "pop3d_commands_total", "counter",
		       "Command lines by state and keyword (unknown: no known command).");
	for (unsigned i = 0; i < POP3D_NCMDS; i++) {
		snprintf(labels, sizeof(labels), "state=\"authorization\",command=\"%s\"",
			 pop3_cmd_name((enum pop3_cmd_id)i));
		metrics_value(out, "pop3d_commands_total", labels, fe->commands[i]);
	}
	for (unsigned i = 0; i < POP3D_NCMDS; i++) {
		snprintf(labels, sizeof(labels), "state=\"transaction\",command=\"%s\"",
			 pop3_cmd_name((enum pop3_cmd_id)i));
		metrics_value(out, "pop3d_commands_total", labels,
			      master_stats.sessions.commands[i]);
	}
}

static void render(struct evbuffer *out)
{
	const struct master_stats *s = &master_stats;
	const struct session_report *r = &s->sessions;
	struct master_gauges g;
	char labels[64];

	master_gauges(&g);
	one(out, "pop3d_uptime_seconds", "gauge", "Seconds since the master started.",
	    g.uptime_s);
	metrics_header(out, "pop3d_connections", "gauge",
		       "Client connections by state (awaiting_auth: waiting for authd).");
	metrics_value(out, "pop3d_connections", "state=\"preauth\"", g.preauth);
	metrics_value(out, "pop3d_connections", "state=\"awaiting_auth\"", g.awaiting);
	metrics_value(out, "pop3d_connections", "state=\"session\"", g.sessions);
	one(out, "pop3d_sessions", "gauge", "Sessions running.", g.sessions);
	one(out, "pop3d_session_spares", "gauge",
	    "Session processes waiting for another login of their uid.", g.spares);
	metrics_header(out, "pop3d_session_starts_total", "counter",
		       "Sessions started, in a new process (fork) or a spare (reuse).");
	metrics_value(out, "pop3d_session_starts_total", "process=\"fork\"", s->session_forks);
	metrics_value(out, "pop3d_session_starts_total", "process=\"reuse\"", s->session_reuses);
	metrics_header(out, "pop3d_session_warm_listings_total", "counter",
		       "Logins to a spare that last served the same user, whose listing of the "
		       "maildrop was still true (no directory read).");
	metrics_value(out, "pop3d_session_warm_listings_total", NULL, s->warm_listings);
	metrics_header(out, "pop3d_frontends", "gauge", "Front-end processes by state.");
	metrics_value(out, "pop3d_frontends", "state=\"active\"", g.frontends);
	metrics_value(out, "pop3d_frontends", "state=\"retiring\"", g.frontends_retiring);

	one(out, "pop3d_connections_accepted_total", "counter",
	    "Connections passed to a front end.", s->accepted);
	metrics_header(out, "pop3d_connections_refused_total", "counter",
		       "Connections closed at once, by reason.");
	metrics_value(out, "pop3d_connections_refused_total", "reason=\"max_connections\"",
		      s->refused[REFUSE_MAX_CONNECTIONS]);
	metrics_value(out, "pop3d_connections_refused_total",
		      "reason=\"max_connections_per_ip\"", s->refused[REFUSE_PER_IP]);
	metrics_value(out, "pop3d_connections_refused_total", "reason=\"no_frontend\"",
		      s->refused[REFUSE_NO_FRONTEND]);
	metrics_value(out, "pop3d_connections_refused_total", "reason=\"internal\"",
		      s->refused[REFUSE_INTERNAL]);
	metrics_value(out, "pop3d_connections_refused_total", "reason=\"proxy_untrusted\"",
		      s->refused[REFUSE_PROXY_UNTRUSTED]);
	metrics_header(out, "pop3d_proxy_headers_total", "counter",
		       "PROXY protocol headers read, by result (local: LOCAL or UNKNOWN, the "
		       "balancer's own connection).");
	metrics_value(out, "pop3d_proxy_headers_total", "result=\"ok\"", g.fe.proxy_ok);
	metrics_value(out, "pop3d_proxy_headers_total", "result=\"local\"", g.fe.proxy_local);
	metrics_value(out, "pop3d_proxy_headers_total", "result=\"malformed\"",
		      g.fe.proxy_malformed);
	metrics_value(out, "pop3d_proxy_headers_total", "result=\"timeout\"",
		      g.fe.proxy_timeout);
	metrics_value(out, "pop3d_proxy_headers_total", "result=\"closed\"", g.fe.proxy_closed);

	metrics_header(out, "pop3d_logins_total", "counter",
		       "Login attempts by outcome (ok: a session opened its maildrop).");
	metrics_value(out, "pop3d_logins_total", "result=\"ok\"", s->logins_ok);
	metrics_value(out, "pop3d_logins_total", "result=\"maildrop_error\"",
		      s->logins_maildrop_error);
	metrics_value(out, "pop3d_logins_total", "result=\"session_error\"",
		      s->logins_session_error);
	metrics_value(out, "pop3d_logins_total", "result=\"failed\"", g.fe.logins_failed);
	metrics_value(out, "pop3d_logins_total", "result=\"tempfailed\"",
		      g.fe.logins_tempfailed + s->logins_tempfailed);
	metrics_value(out, "pop3d_logins_total", "result=\"refused\"",
		      s->logins_refused[LOGIN_REFUSED_PER_USER] +
		      s->logins_refused[LOGIN_REFUSED_DELAY]);
	metrics_header(out, "pop3d_logins_overloaded_total", "counter",
		       "Of the tempfailed logins, those authd refused as overloaded "
		       "(delayed and counted against max-auth-failures like a failure).");
	metrics_value(out, "pop3d_logins_overloaded_total", NULL, g.fe.logins_overloaded);
	metrics_header(out, "pop3d_login_limits_total", "counter",
		       "Connections closed before their login by a limit, by limit.");
	metrics_value(out, "pop3d_login_limits_total", "limit=\"login_timeout\"",
		      g.fe.login_limit[LOGIN_LIMIT_TIME]);
	metrics_value(out, "pop3d_login_limits_total", "limit=\"login_max_commands\"",
		      g.fe.login_limit[LOGIN_LIMIT_COMMANDS]);
	metrics_header(out, "pop3d_logins_refused_total", "counter",
		       "Logins authd accepted but a limit refused, by limit.");
	metrics_value(out, "pop3d_logins_refused_total", "reason=\"max_sessions_per_user\"",
		      s->logins_refused[LOGIN_REFUSED_PER_USER]);
	metrics_value(out, "pop3d_logins_refused_total", "reason=\"login_delay\"",
		      s->logins_refused[LOGIN_REFUSED_DELAY]);
	metrics_header(out, "pop3d_handoffs_total", "counter",
		       "Logins handed to the master, by whether authd redeemed the ticket.");
	metrics_value(out, "pop3d_handoffs_total", "result=\"ok\"", s->handoffs_ok);
	metrics_value(out, "pop3d_handoffs_total", "result=\"failed\"", s->handoffs_failed);
	metrics_header(out, "pop3d_auth_seconds", "histogram",
		       "Time from a front end's AUTH request to authd's answer.");
	metrics_hist(out, "pop3d_auth_seconds", NULL, &g.fe.auth_latency);

	metrics_header(out, "pop3d_sessions_ended_total", "counter", "Sessions ended, by reason.");
	for (unsigned i = SESSION_END_QUIT; i < SESSION_END_COUNT; i++) {
		snprintf(labels, sizeof(labels), "reason=\"%s\"",
			 session_end_name((enum session_end)i));
		metrics_value(out, "pop3d_sessions_ended_total", labels, s->sessions_ended[i]);
	}
	metrics_value(out, "pop3d_sessions_ended_total", "reason=\"killed\"", s->sessions_killed);
	metrics_value(out, "pop3d_sessions_ended_total", "reason=\"kicked\"", s->sessions_kicked);
	metrics_value(out, "pop3d_sessions_ended_total", "reason=\"failed\"", s->sessions_failed);
	metrics_header(out, "pop3d_session_duration_seconds", "histogram",
		       "Session lifetimes, from login to the end of the session.");
	render_durations(out, "pop3d_session_duration_seconds");
	metrics_header(out, "pop3d_messages_total", "counter",
		       "Messages retrieved (RETR), listed with TOP, deleted at QUIT (DELE), "
		       "removed at QUIT by the EXPIRE policy.");
	metrics_value(out, "pop3d_messages_total", "op=\"retr\"", r->retr);
	metrics_value(out, "pop3d_messages_total", "op=\"top\"", r->top);
	metrics_value(out, "pop3d_messages_total", "op=\"dele\"", r->dele);
	metrics_value(out, "pop3d_messages_total", "op=\"expire\"", r->expired);
	metrics_header(out, "pop3d_message_bytes_total", "counter",
		       "Octets (RFC 1939 sizes) of those messages.");
	metrics_value(out, "pop3d_message_bytes_total", "op=\"retr\"", r->retr_bytes);
	metrics_value(out, "pop3d_message_bytes_total", "op=\"top\"", r->top_bytes);
	metrics_value(out, "pop3d_message_bytes_total", "op=\"dele\"", r->dele_bytes);
	metrics_value(out, "pop3d_message_bytes_total", "op=\"expire\"", r->expired_bytes);
	one(out, "pop3d_bytes_sent_total", "counter",
	    "Bytes written to clients (TLS: as sent on the wire; a session's when it ends).",
	    s->bytes_sent + g.fe.bytes_sent);
	render_commands(out, &g.fe);

	metrics_header(out, "pop3d_tls_handshakes_total", "counter", "TLS handshakes by outcome.");
	metrics_value(out, "pop3d_tls_handshakes_total", "result=\"ok\"", g.fe.tls_ok);
	metrics_value(out, "pop3d_tls_handshakes_total", "result=\"failed\"", g.fe.tls_failed);
	metrics_value(out, "pop3d_tls_handshakes_total", "result=\"timeout\"", g.fe.tls_timeout);
	one(out, "pop3d_tls_resumed_total", "counter", "TLS handshakes that resumed a session.",
	    g.fe.tls_resumed);
	metrics_header(out, "pop3d_authd_disconnects_total", "counter",
		       "Connections to authd lost (protocol: a front end's; master: REDEEM).");
	metrics_value(out, "pop3d_authd_disconnects_total", "socket=\"protocol\"",
		      g.fe.authd_lost);
	metrics_value(out, "pop3d_authd_disconnects_total", "socket=\"master\"",
		      s->master_authd_lost);
	metrics_header(out, "pop3d_authd_reconnects_total", "counter",
		       "Connections to authd made again after a loss (protocol: by the front "
		       "end, or by its replacement).");
	metrics_value(out, "pop3d_authd_reconnects_total", "socket=\"protocol\"",
		      g.fe.authd_reconnects + s->authd_replacements);
	metrics_value(out, "pop3d_authd_reconnects_total", "socket=\"master\"",
		      s->master_authd_reconnects);
	one(out, "pop3d_frontend_restarts_total", "counter",
	    "Front ends restarted after a crash or an authd loss.", s->fe_restarts);
	metrics_header(out, "pop3d_reloads_total", "counter", "Configuration reloads by result.");
	metrics_value(out, "pop3d_reloads_total", "result=\"ok\"", s->reloads_ok);
	metrics_value(out, "pop3d_reloads_total", "result=\"failed\"", s->reloads_failed);
}

/* ---- the socket --------------------------------------------------------------- */

/* stats_server_fill_cb */
static void fill(struct evbuffer *out, void *ctx)
{
	render(out);
}

void stats_init(struct event_base *b, int listen_fd, int http_fd)
{
	if (listen_fd != -1)
		server = stats_server_new(b, listen_fd, POP3D_STATS_MAX_CONNS, fill, NULL);
	if (http_fd != -1)
		http_server = stats_server_new_http(b, http_fd, POP3D_STATS_MAX_CONNS, fill, NULL);
}

void stats_shutdown(void)
{
	stats_server_free(&server);
	stats_server_free(&http_server);
}
