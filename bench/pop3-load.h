/*
 * pop3-load.h - the private header of pop3-load, the POP3 load generator.
 *
 * One process, one libevent loop, thousands of client connections
 * (man/pop3-load.1 has the interface, docs/benchmarks.md the scenarios).
 *
 *   pop3-load.c   options, user lists, targets, the scheduler: concurrency
 *                 slots per population, the connect rate limit, the run's
 *                 bounds (-n, -d, --max-time, --grace), signals
 *   load_conn.c   one client session: the scripted POP3 dialogue, the
 *                 checks of everything received, timeouts, TLS
 *   load_stats.c  counters and latency histograms per population, the
 *                 per-second progress line and CSV row, the summary and
 *                 the final JSON line
 *
 * Latencies are kept in microseconds in common/histogram.h's log-linear
 * histograms: a percentile is the upper bound of its bucket, at most
 * 1/32 (about 3 %) above the true value and never below it.
 */
#ifndef BENCH_POP3_LOAD_H
#define BENCH_POP3_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "common/histogram.h"

struct event;
struct event_base;
struct ssl_ctx_st;

/* ---- limits, each with its reason ---------------------------------------- */

/* RFC 2449 section 4: a response line is at most 512 octets with CRLF. */
#define LOAD_STATUS_MAX		512
/* Lines of LIST and UIDL listings: "n size" / "n uid" (RFC 1939 section
 * 7: a unique-id is at most 70 characters); the status limit is ample. */
#define LOAD_LISTING_MAX	LOAD_STATUS_MAX
/* Messages one session will list: bounds memory against a hostile or
 * broken server (pop3d lists at most 1,000,000). */
#define LOAD_MAX_MESSAGES	1000000
/* User names and passwords from --users: as authd's limits (320 + 1024). */
#define LOAD_USER_MAX		320
#define LOAD_PASS_MAX		1024
/* Hosts given with --host / --target. */
#define LOAD_MAX_TARGETS	16
/* Connections at once, all populations together. */
#define LOAD_MAX_CONCURRENCY	200000
/* Wait before a slot that just failed starts its next session, so that a
 * refused connection does not turn into a busy loop. */
#define LOAD_ERROR_BACKOFF_US	10000

/* ---- what a session does ------------------------------------------------- */

enum load_script {
	SCRIPT_LOGIN,	/* greeting, login, STAT, QUIT */
	SCRIPT_RETR,	/* greeting, login, STAT, LIST, RETR every message, QUIT */
	SCRIPT_IDLE,	/* greeting, then hold (pre-auth) until the end or --idle-time */
	SCRIPT_POLL,	/* greeting, login, UIDL, QUIT */
};

enum load_method { METHOD_USER, METHOD_PLAIN };
enum load_tls { TLS_NONE, TLS_STLS, TLS_IMPLICIT };

/* Every kind of failure is counted apart; a session ends at its first. */
enum load_error {
	ERR_CONNECT,		/* connect() failed (refused, unreachable, no ports) */
	ERR_TIMEOUT,		/* no complete status line within --timeout */
	ERR_CLOSED,		/* the server closed (or reset) while a reply was due */
	ERR_IO,			/* another read or write error */
	ERR_TLS,		/* TLS handshake or record failure */
	ERR_GREETING,		/* greeting not "+OK" */
	ERR_BAD_STATUS,		/* a status line neither "+OK" nor "-ERR" */
	ERR_BAD_LINE,		/* over-long line, bare LF, NUL byte */
	ERR_AUTH_FAILED,	/* "-ERR" to the login (wrong password, [AUTH]) */
	ERR_AUTH_TEMPFAIL,	/* "-ERR [SYS/TEMP]" to the login */
	ERR_IN_USE,		/* "-ERR [IN-USE]" (maildrop locked) */
	ERR_ERR_REPLY,		/* "-ERR" to any other command */
	ERR_UNTERMINATED,	/* multi-line reply without its "." within --timeout */
	ERR_BAD_LISTING,	/* malformed LIST/UIDL/STAT/RETR reply content */
	ERR_LIST_MISMATCH,	/* LIST count or total differs from STAT */
	ERR_SIZE_MISMATCH,	/* RETR octets differ from the LIST size */
	ERR_NO_CLOSE,		/* the server kept the connection open after QUIT */
	ERR_KINDS
};

/* ---- load_stats.c -------------------------------------------------------- */

struct load_hist {
	struct histogram run;		/* the whole run */
	struct histogram second;	/* the current second (progress, CSV) */
};

struct load_stats {
	uint64_t started, completed, failed, aborted;
	uint64_t errors[ERR_KINDS];
	uint64_t bytes_in;		/* bytes read from the servers */
	uint64_t retr_octets;		/* message octets retrieved (LIST sizes) */
	uint64_t messages;		/* messages retrieved */
	uint64_t open, held, held_peak;	/* connections now; idling now; most idling */
	uint64_t sec_completed, sec_errors, sec_bytes;
	uint64_t logins_ok;		/* logins answered +OK (goodput) */
	uint64_t refused;		/* refused before a login: connect, greeting, close */
	uint64_t overflow;		/* --open-loop: arrivals not started, -c in flight */
	uint64_t sec_logins, sec_tempfail, sec_refused;
	struct load_hist connect;	/* connect start to greeting */
	struct load_hist login;		/* first login command to its final +OK */
	struct load_hist session;	/* connect start to the +OK of QUIT */
	struct load_hist tempfail;	/* first login command to its "-ERR [SYS/TEMP]" */
	struct load_hist refused_at;	/* connect start to the refusal (refused) */
};

/* The name used in the JSON line and the summary ("connect", "closed"...). */
const char *load_stats_error_name(enum load_error kind);
void load_stats_init(struct load_stats *st);
/* Records one latency in microseconds in both histograms of h. */
void load_stats_add(struct load_hist *h, uint64_t us);
/* Counts one failed session of kind. */
void load_stats_error(struct load_stats *st, enum load_error kind);
uint64_t load_stats_error_total(const struct load_stats *st);

struct load_run;	/* pop3-load.c: the whole run, read-only here */

/* Once a second: one progress line on err (unless NULL) and one CSV row
 * on csv (unless NULL); then starts a new second.  t_s is seconds since
 * the start. */
void load_stats_second(struct load_run *run, double t_s, FILE *err, FILE *csv);
/* The CSV header line. */
void load_stats_csv_header(const struct load_run *run, FILE *csv);
/* The human summary, then the JSON line (always last, one line) on out. */
void load_stats_report(const struct load_run *run, FILE *out);
/* Only the JSON line {"error": msg}: for failures before the run. */
void load_stats_report_error(FILE *out, const char *msg);

/* ---- load_conn.c --------------------------------------------------------- */

struct load_user {
	char *name;
	char *pass;
	bool busy;			/* in a session now */
};

struct load_pop;
struct load_conn;
struct load_slot;

/* Starts one session in slot: connects to target (an index into the
 * run's targets), then runs the script as user (which must outlive the
 * run, and is marked busy until the session ends).  Sets slot->conn; the session reports its end, whatever it is,
 * through load_slot_done() from the event loop, never from here. */
void load_conn_start(struct load_slot *slot, unsigned target,
		     struct load_user *user);
/* Ends the session now without counting an error (the run is over): it
 * counts as aborted.  Frees it and clears slot->conn; load_slot_done() is
 * not called. */
void load_conn_abort(struct load_slot *slot);
/* The run is ending: an idling session sends QUIT and finishes; others
 * carry on.  Does nothing to a session that is not idling. */
void load_conn_stop_idle(struct load_conn *c);
/* Client TLS context for --tls (no verification unless --tls-ca). Returns
 * 0 or -1 with a message on stderr. */
int load_conn_tls_init(const char *ca_file);

/* ---- pop3-load.c --------------------------------------------------------- */

/* A concurrency slot: runs one session after another. */
struct load_slot {
	struct load_pop *pop;
	unsigned idx;
	struct load_conn *conn;		/* the session running, or NULL */
	struct event *timer;		/* a delayed start (rate limit, back-off) */
	bool pending;			/* timer armed */
	bool reserved;			/* the delayed start already counts in reserved */
};

struct load_pop {
	const char *name;		/* "main" or "slow" */
	struct load_user *users;
	size_t nusers, next_user;
	unsigned concurrency;
	struct load_slot *slots;	/* concurrency of them */
	unsigned active, pending;	/* slots with a session; with a delayed start */
	uint64_t limit;			/* sessions to start, 0 = unlimited (-n) */
	uint64_t reserved;		/* sessions started or about to be */
	struct load_stats st;
	struct load_run *run;
};

struct load_target {
	char name[80];			/* "host:port" as given */
	struct sockaddr_storage ss;
	socklen_t len;
	uint64_t sessions, errors;
};

struct load_run {
	struct event_base *base;
	enum load_script script;
	enum load_method method;
	enum load_tls tls;
	struct load_target targets[LOAD_MAX_TARGETS];
	unsigned ntargets, next_target;
	struct load_pop main, slow;
	bool have_slow;
	uint64_t timeout_us;		/* per reply */
	uint64_t idle_us;		/* idle script: hold this long (0 = to the end) */
	uint64_t noop_us;		/* idle script: NOOP this often (0 = never) */
	unsigned pipeline;		/* retr script: RETR commands in flight */
	double rate;			/* connects per second (0 = unlimited) */
	bool open_loop;			/* --open-loop: sessions start at --rate, whatever */
	uint64_t scheduled;		/* --open-loop: arrivals so far (started or overflow) */
	unsigned *free_slots, nfree;	/* --open-loop: slots without a session */
	uint64_t window_end_us;		/* --open-loop: when arrivals stopped */
	struct event *arrival;		/* --open-loop: the next arrival */
	double next_connect_us;		/* rate limit: earliest next connect */
	uint64_t start_us, end_us;	/* run start; when the last session ended */
	uint64_t duration_us;		/* -d (0 = none) */
	uint64_t max_time_us;		/* hard bound of the whole run */
	uint64_t grace_us;		/* after the end, how long sessions may finish */
	bool stopping;			/* no new sessions anywhere */
	bool ended;			/* the loop is being left */
	const char *stop_reason;	/* what ended the run (first cause) */
	bool quiet;
	FILE *csv;
	struct event *deadline, *hard_deadline, *grace, *tick, *sigint, *sigterm;
};

/* The session of slot ended (its connection is freed, slot->conn NULL);
 * failed says whether it ended with an error.  Starts the slot's next
 * session, or ends the run when nothing is left to do. */
void load_slot_done(struct load_slot *slot, bool failed);

#endif
