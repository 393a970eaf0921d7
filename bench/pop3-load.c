/*
 * pop3-load.c - a POP3 load generator: options, user lists, targets and
 * the scheduler.  man/pop3-load.1 has the interface; docs/benchmarks.md
 * the scenarios it is used for.
 *
 *   pop3-load [--host H]... [--port P] [--target H:P]... [-c N] [-n N | -d D]
 *             [--users FILE | --user-pattern PAT --password PASS [--user-count N]]
 *             [--script login|retr|idle|poll] [--method user|plain]
 *             [--tls none|stls|implicit] [--slow-users FILE --slow-concurrency N]
 *             [--rate N [--open-loop]] [--timeout D] [--pipeline N] [--csv FILE] [-q] ...
 *
 * DESIGN
 * - One process, one libevent loop.  A population (the main one, and an
 *   optional "slow" one with its own users and concurrency, reported
 *   apart) has one slot per unit of concurrency; a slot runs one session
 *   after another, so the number of sessions in flight stays at -c.
 * - Users are taken round-robin from the population's list, skipping
 *   those in a session: with at least as many users as slots no user has
 *   two sessions at once (servers lock a maildrop per session).  Targets
 *   are taken round-robin.
 * - The connect rate limit (--rate) spaces connects 1/rate apart: a slot
 *   whose turn is later waits on its own timer.  A slot whose session
 *   failed waits LOAD_ERROR_BACKOFF_US before the next one.
 * - --open-loop: sessions arrive at --rate, evenly spaced from the start,
 *   whatever the server does; none waits for another to end (a closed
 *   loop slows down with the server, so it never offers more than the
 *   server takes, and hides overload).  -c bounds the sessions in
 *   flight, so that the generator itself stays bounded: an arrival that
 *   finds -c sessions in flight is not started and counts as "overflow"
 *   (the offered load was not delivered: the report says so).  Arrivals
 *   that fall due while the loop was busy start at once, late.  A failed
 *   session frees its slot at once (no back-off).  -n counts arrivals.
 * - Every run is bounded.  -d: no new session after D, sessions in flight
 *   get --grace to finish, then they are aborted.  -n: no new session
 *   after N started.  Whatever happens, --max-time (default D + grace +
 *   2 s with -d, else 300 s) aborts everything; every reply has its own
 *   --timeout.  SIGINT/SIGTERM abort at once.  In every case the summary
 *   and the JSON line are printed.  When the main population is done, the
 *   slow one's sessions in flight are aborted (they count as aborted, not
 *   as errors).
 * - Exit status: 0 if no session failed, 3 if some did, 2 on bad usage or
 *   set-up failure (after a JSON line {"error": ...}).
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "bench/pop3-load.h"
#include "common/mtime.h"
#include "common/num.h"
#include "common/version.h"

static struct load_run R;

static void check_end(void);

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "pop3-load: %s\n", msg);
	load_stats_report_error(stdout, msg);
	exit(2);
}

/* Bad usage: on standard error, then the JSON error line, exit 2; -h:
 * on standard output, exit 0. */
static void usage(bool help)
{
	fprintf(help ? stdout : stderr,
"usage: pop3-load [options]\n"
"  --host H            server address (default 127.0.0.1; may be repeated)\n"
"  --port P            server port (default 110, 995 with --tls implicit)\n"
"  --target H:P        a server, [v6]:P for IPv6 (may be repeated)\n"
"  -c N                concurrent sessions (default 1)\n"
"  -n N                sessions to run\n"
"  -d D                run for D (30, 500ms, 2m); default 10 s without -n\n"
"  --users FILE        one \"user password\" per line\n"
"  --user-pattern PAT  user names: %%d (or %%0Nd) is 0..count-1 (+ --user-first)\n"
"  --user-count N      with --user-pattern (default 1000)\n"
"  --user-first N      first number of --user-pattern (default 0)\n"
"  --password PASS     with --user-pattern; may hold %%d as well\n"
"  --script S          login (default), retr, idle or poll\n"
"  --method M          user (USER/PASS, default) or plain (AUTH PLAIN)\n"
"  --tls T             none (default), stls or implicit\n"
"  --tls-ca FILE       verify the server certificate against FILE\n"
"  --slow-users FILE   a second population, reported apart\n"
"  --slow-concurrency N  its concurrent sessions (default 16)\n"
"  --rate N            at most N connects per second (all populations)\n"
"  --open-loop         start sessions at --rate whatever the server does; -c is\n"
"                      then the most in flight (an arrival past it is overflow)\n"
"  --timeout D         deadline of each reply (default 10s)\n"
"  --grace D           time sessions in flight get at the end (default: --timeout)\n"
"  --max-time D        hard bound of the whole run\n"
"  --idle-time D       idle script: hold each connection D, then QUIT (default: to the end)\n"
"  --noop D            idle script: send NOOP every D\n"
"  --pipeline N        retr script: keep N RETR commands in flight (default 1)\n"
"  --csv FILE          per-second time series\n"
"  -q                  no progress lines\n"
"  -h, --help          this text;  --version  the version\n");
	if (help)
		exit(0);
	load_stats_report_error(stdout, "usage");
	exit(2);
}

/* ---- users ---------------------------------------------------------------- */

static void user_add(struct load_user **users, size_t *n, size_t *cap,
		     const char *name, const char *pass, const char *where)
{
	size_t ulen = strlen(name), plen = strlen(pass);

	if (ulen == 0 || ulen > LOAD_USER_MAX || plen == 0 || plen > LOAD_PASS_MAX)
		die("%s: user name must be 1 to %d bytes, password 1 to %d", where,
		    LOAD_USER_MAX, LOAD_PASS_MAX);
	for (const char *p = name; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			die("%s: user name with a blank or control character", where);
	for (const char *p = pass; *p != '\0'; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			die("%s: password with a control character", where);
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 256;
		*users = realloc(*users, *cap * sizeof(**users));
		if (*users == NULL)
			die("out of memory");
	}
	(*users)[*n].name = strdup(name);
	(*users)[*n].pass = strdup(pass);
	(*users)[*n].busy = false;
	if ((*users)[*n].name == NULL || (*users)[*n].pass == NULL)
		die("out of memory");
	(*n)++;
}

/* "user password" per line; the password is the rest of the line (it may
 * hold blanks).  Empty lines and lines starting with '#' are skipped. */
static void users_load(const char *path, struct load_user **users_r, size_t *n_r)
{
	FILE *f = fopen(path, "r");
	char *line = NULL, where[600];
	size_t size = 0, cap = 0, lineno = 0;
	ssize_t len;

	if (f == NULL)
		die("%s: %s", path, strerror(errno));
	*users_r = NULL;
	*n_r = 0;
	while ((len = getline(&line, &size, f)) != -1) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		char *name = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
		if (*p == '\0')
			die("%s:%zu: expected \"user password\"", path, lineno);
		*p++ = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		snprintf(where, sizeof(where), "%s:%zu", path, lineno);
		user_add(users_r, n_r, &cap, name, p, where);
	}
	free(line);
	fclose(f);
	if (*n_r == 0)
		die("%s: no users", path);
}

/* Expands %d / %0Nd (N 1..9) to v and %% to '%' in pat.  Returns 0 or -1
 * (an unknown escape, or the result does not fit). */
static int expand(const char *pat, unsigned long v, char *out, size_t size)
{
	size_t o = 0;

	for (const char *p = pat; *p != '\0'; p++) {
		char num[32];
		const char *add = num;

		if (*p != '%') {
			num[0] = *p;
			num[1] = '\0';
		} else if (p[1] == '%') {
			add = "%";
			p++;
		} else if (p[1] == 'd') {
			snprintf(num, sizeof(num), "%lu", v);
			p++;
		} else if (p[1] == '0' && p[2] >= '1' && p[2] <= '9' && p[3] == 'd') {
			snprintf(num, sizeof(num), "%0*lu", p[2] - '0', v);
			p += 3;
		} else {
			return -1;
		}
		size_t len = strlen(add);
		if (o + len >= size)
			return -1;
		memcpy(out + o, add, len);
		o += len;
	}
	out[o] = '\0';
	return 0;
}

static void users_pattern(const char *pat, const char *pass, unsigned long first,
			  unsigned long count, struct load_user **users_r, size_t *n_r)
{
	char name[LOAD_USER_MAX + 1], pw[LOAD_PASS_MAX + 1];
	size_t cap = 0;

	*users_r = NULL;
	*n_r = 0;
	for (unsigned long i = first; i < first + count; i++) {
		if (expand(pat, i, name, sizeof(name)) == -1 ||
		    expand(pass, i, pw, sizeof(pw)) == -1)
			die("--user-pattern/--password: bad %% escape or too long");
		user_add(users_r, n_r, &cap, name, pw, "--user-pattern");
	}
}

/* ---- targets -------------------------------------------------------------- */

static void target_add(const char *host, const char *port)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res;
	struct load_target *t;
	int r;

	if (R.ntargets == LOAD_MAX_TARGETS)
		die("at most %d targets", LOAD_MAX_TARGETS);
	t = &R.targets[R.ntargets];
	r = getaddrinfo(host, port, &hints, &res);
	if (r != 0)
		die("%s port %s: %s", host, port, gai_strerror(r));
	memcpy(&t->ss, res->ai_addr, res->ai_addrlen);
	t->len = res->ai_addrlen;
	freeaddrinfo(res);
	snprintf(t->name, sizeof(t->name), strchr(host, ':') ? "[%s]:%s" : "%s:%s",
		 host, port);
	R.ntargets++;
}

/* "host:port" or "[v6]:port". */
static void target_parse(const char *s)
{
	char buf[300], *host, *port;

	if (strlen(s) >= sizeof(buf))
		die("--target %s: too long", s);
	snprintf(buf, sizeof(buf), "%s", s);
	if (buf[0] == '[') {
		char *end = strchr(buf, ']');
		if (end == NULL || end[1] != ':')
			die("--target %s: expected [ADDRESS]:PORT", s);
		*end = '\0';
		host = buf + 1;
		port = end + 2;
	} else {
		port = strrchr(buf, ':');
		if (port == NULL)
			die("--target %s: expected HOST:PORT", s);
		*port++ = '\0';
		host = buf;
	}
	unsigned p;
	if (num_parse_uint(port, 1, 65535, &p) == -1)
		die("--target %s: bad port", s);
	target_add(host, port);
}

/* ---- the scheduler -------------------------------------------------------- */

static void arm_us(struct event *ev, uint64_t us)
{
	struct timeval tv = { .tv_sec = (time_t)(us / 1000000),
			      .tv_usec = (suseconds_t)(us % 1000000) };

	evtimer_add(ev, &tv);
}

static void launch(struct load_slot *slot)
{
	struct load_pop *pop = slot->pop;
	struct load_user *user = NULL;
	unsigned target = R.next_target++ % R.ntargets;

	/* The next user not in a session (any, if all are). */
	for (size_t k = 0; k < pop->nusers; k++) {
		user = &pop->users[pop->next_user++ % pop->nusers];
		if (!user->busy)
			break;
	}

	pop->active++;
	load_conn_start(slot, target, user);
}

static void delay(struct load_slot *slot, uint64_t us, bool reserved)
{
	slot->reserved = reserved;
	slot->pending = true;
	slot->pop->pending++;
	arm_us(slot->timer, us);
}

/* Starts the slot's next session now, or when the rate limit allows. */
static void slot_next(struct load_slot *slot)
{
	struct load_pop *pop = slot->pop;

	if (R.stopping || (pop->limit != 0 && pop->reserved >= pop->limit))
		return;
	pop->reserved++;
	if (R.rate > 0) {
		double now = (double)mtime_us();
		double at = R.next_connect_us > now ? R.next_connect_us : now;
		R.next_connect_us = at + 1e6 / R.rate;
		if (at - now >= 1.0) {
			delay(slot, (uint64_t)(at - now), true);
			return;
		}
	}
	launch(slot);
}

static void on_slot_timer(evutil_socket_t fd, short what, void *arg)
{
	struct load_slot *slot = arg;

	slot->pending = false;
	slot->pop->pending--;
	if (!R.stopping) {
		if (slot->reserved)
			launch(slot);
		else
			slot_next(slot);
	}
	check_end();
}

static void pop_cancel_pending(struct load_pop *pop)
{
	for (unsigned i = 0; i < pop->concurrency; i++) {
		struct load_slot *slot = &pop->slots[i];
		if (slot->pending) {
			evtimer_del(slot->timer);
			slot->pending = false;
			pop->pending--;
			if (slot->reserved)
				pop->reserved--;
		}
	}
}

static void pop_abort(struct load_pop *pop)
{
	for (unsigned i = 0; i < pop->concurrency; i++) {
		if (pop->slots[i].conn != NULL) {
			load_conn_abort(&pop->slots[i]);
			pop->active--;
		}
	}
}

/* Leaves the loop: whatever is still running is aborted. */
static void end_run(void)
{
	if (R.ended)
		return;
	R.ended = true;
	R.stopping = true;
	R.end_us = mtime_us();
	if (R.window_end_us == 0)
		R.window_end_us = R.end_us;
	if (R.arrival != NULL)
		evtimer_del(R.arrival);
	pop_cancel_pending(&R.main);
	pop_cancel_pending(&R.slow);
	pop_abort(&R.main);
	pop_abort(&R.slow);
	event_base_loopbreak(R.base);
}

static void check_end(void)
{
	struct load_pop *m = &R.main;
	uint64_t done = R.open_loop ? R.scheduled : m->reserved;

	if (R.ended || m->active != 0 || m->pending != 0)
		return;
	if (R.stopping || (m->limit != 0 && done >= m->limit)) {
		if (R.stop_reason == NULL)
			R.stop_reason = "sessions";
		end_run();
	}
}

/* No new sessions; idling ones say QUIT; the others get --grace. */
static void stop_run(const char *reason)
{
	if (R.stopping)
		return;
	R.stopping = true;
	if (R.stop_reason == NULL)
		R.stop_reason = reason;
	if (R.window_end_us == 0)
		R.window_end_us = mtime_us();
	if (R.arrival != NULL)
		evtimer_del(R.arrival);
	pop_cancel_pending(&R.main);
	pop_cancel_pending(&R.slow);
	for (int p = 0; p < 2; p++) {
		struct load_pop *pop = p ? &R.slow : &R.main;
		for (unsigned i = 0; i < pop->concurrency; i++)
			if (pop->slots[i].conn != NULL)
				load_conn_stop_idle(pop->slots[i].conn);
	}
	arm_us(R.grace, R.grace_us);
	check_end();
}

void load_slot_done(struct load_slot *slot, bool failed)
{
	struct load_pop *pop = slot->pop;

	pop->active--;
	if (R.open_loop) {
		R.free_slots[R.nfree++] = slot->idx;
		check_end();
		return;
	}
	if (!R.stopping && (pop->limit == 0 || pop->reserved < pop->limit)) {
		if (failed)
			delay(slot, LOAD_ERROR_BACKOFF_US, false);
		else
			slot_next(slot);
	}
	check_end();
}

/* ---- the open loop ------------------------------------------------------- */

/* When arrival number n (0-based) is due: n / rate after the start. */
static uint64_t arrival_due_us(uint64_t n)
{
	return R.start_us + (uint64_t)((double)n * 1e6 / R.rate);
}

/* Starts every arrival due by now (in a free slot, or counts it as
 * overflow), then waits for the next one. */
static void on_arrival(evutil_socket_t fd, short what, void *arg)
{
	struct load_pop *pop = &R.main;
	uint64_t now = mtime_us();

	while (!R.stopping && (pop->limit == 0 || R.scheduled < pop->limit) &&
	       arrival_due_us(R.scheduled) <= now) {
		R.scheduled++;
		if (R.nfree == 0) {
			pop->st.overflow++;
			continue;
		}
		pop->reserved++;
		launch(&pop->slots[R.free_slots[--R.nfree]]);
	}
	if (R.stopping)
		return;
	if (pop->limit != 0 && R.scheduled >= pop->limit) {
		/* The last arrival: its time ends the offered window. */
		R.window_end_us = arrival_due_us(R.scheduled);
		check_end();
		return;
	}
	uint64_t due = arrival_due_us(R.scheduled);
	arm_us(R.arrival, due > now ? due - now : 0);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	stop_run("duration");
}

static void on_hard_deadline(evutil_socket_t fd, short what, void *arg)
{
	if (R.stop_reason == NULL)
		R.stop_reason = "max-time";
	end_run();
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
	end_run();
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	if (R.stop_reason == NULL)
		R.stop_reason = "signal";
	end_run();
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	double t = (double)(mtime_us() - R.start_us) / 1e6;

	load_stats_second(&R, t, R.quiet ? NULL : stderr, R.csv);
}

static void pop_init(struct load_pop *pop, const char *name, unsigned concurrency)
{
	pop->name = name;
	pop->concurrency = concurrency;
	pop->run = &R;
	load_stats_init(&pop->st);
	pop->slots = calloc(concurrency ? concurrency : 1, sizeof(*pop->slots));
	if (pop->slots == NULL)
		die("out of memory");
	for (unsigned i = 0; i < concurrency; i++) {
		pop->slots[i].pop = pop;
		pop->slots[i].idx = i;
		pop->slots[i].timer = evtimer_new(R.base, on_slot_timer, &pop->slots[i]);
		if (pop->slots[i].timer == NULL)
			die("out of memory");
	}
}

/* Makes room for one descriptor per connection (and some). */
static void raise_nofile(uint64_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= want)
		return;
	if (rl.rlim_max < want) {
		struct rlimit up = { .rlim_cur = want, .rlim_max = want };
		if (setrlimit(RLIMIT_NOFILE, &up) != -1)
			return;
	}
	rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur < want)
		fprintf(stderr, "pop3-load: warning: only %llu descriptors (ulimit -n) "
			"for %llu wanted: connects will fail\n",
			(unsigned long long)rl.rlim_cur, (unsigned long long)want);
}

/* ---- options -------------------------------------------------------------- */

static uint64_t opt_duration(const char *name, const char *s)
{
	uint64_t ms;

	if (num_parse_duration(s, 7ull * 24 * 3600 * 1000, &ms) == -1 || ms == 0)
		die("%s %s: expected a duration such as 30, 500ms, 2m", name, s);
	return ms * 1000;
}

static unsigned opt_uint(const char *name, const char *s, unsigned min, unsigned max)
{
	unsigned v;

	if (num_parse_uint(s, min, max, &v) == -1)
		die("%s %s: expected a number from %u to %u", name, s, min, max);
	return v;
}

enum {
	OPT_HOST = 256, OPT_PORT, OPT_TARGET, OPT_USERS, OPT_PATTERN, OPT_COUNT,
	OPT_FIRST, OPT_PASSWORD, OPT_SCRIPT, OPT_METHOD, OPT_TLS, OPT_TLS_CA,
	OPT_SLOW_USERS, OPT_SLOW_C, OPT_RATE, OPT_TIMEOUT, OPT_GRACE, OPT_MAX_TIME,
	OPT_IDLE_TIME, OPT_NOOP, OPT_CSV, OPT_PIPELINE, OPT_OPEN_LOOP,
};

static const struct option longopts[] = {
	{ "host", required_argument, NULL, OPT_HOST },
	{ "port", required_argument, NULL, OPT_PORT },
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "concurrency", required_argument, NULL, 'c' },
	{ "sessions", required_argument, NULL, 'n' },
	{ "duration", required_argument, NULL, 'd' },
	{ "users", required_argument, NULL, OPT_USERS },
	{ "user-pattern", required_argument, NULL, OPT_PATTERN },
	{ "user-count", required_argument, NULL, OPT_COUNT },
	{ "user-first", required_argument, NULL, OPT_FIRST },
	{ "password", required_argument, NULL, OPT_PASSWORD },
	{ "script", required_argument, NULL, OPT_SCRIPT },
	{ "method", required_argument, NULL, OPT_METHOD },
	{ "tls", required_argument, NULL, OPT_TLS },
	{ "tls-ca", required_argument, NULL, OPT_TLS_CA },
	{ "slow-users", required_argument, NULL, OPT_SLOW_USERS },
	{ "slow-concurrency", required_argument, NULL, OPT_SLOW_C },
	{ "rate", required_argument, NULL, OPT_RATE },
	{ "open-loop", no_argument, NULL, OPT_OPEN_LOOP },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "grace", required_argument, NULL, OPT_GRACE },
	{ "max-time", required_argument, NULL, OPT_MAX_TIME },
	{ "idle-time", required_argument, NULL, OPT_IDLE_TIME },
	{ "noop", required_argument, NULL, OPT_NOOP },
	{ "csv", required_argument, NULL, OPT_CSV },
	{ "pipeline", required_argument, NULL, OPT_PIPELINE },
	{ "quiet", no_argument, NULL, 'q' },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

int main(int argc, char **argv)
{
	const char *hosts[LOAD_MAX_TARGETS], *port = NULL, *targets[LOAD_MAX_TARGETS];
	const char *users_file = NULL, *pattern = NULL, *password = NULL;
	const char *slow_file = NULL, *csv_file = NULL, *tls_ca = NULL;
	unsigned nhosts = 0, ntargets = 0, conc = 1, slow_conc = 16;
	unsigned long user_count = 1000, user_first = 0;
	uint64_t sessions = 0;
	bool have_grace = false, have_max = false;
	int opt;

	R.script = SCRIPT_LOGIN;
	R.timeout_us = 10000000;
	R.pipeline = 1;
	while ((opt = getopt_long(argc, argv, "c:n:d:qh", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_HOST:
			if (nhosts == LOAD_MAX_TARGETS)
				die("at most %d hosts", LOAD_MAX_TARGETS);
			hosts[nhosts++] = optarg;
			break;
		case OPT_PORT:
			opt_uint("--port", optarg, 1, 65535);
			port = optarg;
			break;
		case OPT_TARGET:
			if (ntargets == LOAD_MAX_TARGETS)
				die("at most %d targets", LOAD_MAX_TARGETS);
			targets[ntargets++] = optarg;
			break;
		case 'c':
			conc = opt_uint("-c", optarg, 1, LOAD_MAX_CONCURRENCY);
			break;
		case 'n':
			if (num_parse_u64(optarg, 1, UINT64_MAX / 2, &sessions) == -1)
				die("-n %s: expected a number of sessions", optarg);
			break;
		case 'd':
			R.duration_us = opt_duration("-d", optarg);
			break;
		case OPT_USERS:
			users_file = optarg;
			break;
		case OPT_PATTERN:
			pattern = optarg;
			break;
		case OPT_COUNT:
			user_count = opt_uint("--user-count", optarg, 1, 10000000);
			break;
		case OPT_FIRST:
			user_first = opt_uint("--user-first", optarg, 0, 1000000000);
			break;
		case OPT_PASSWORD:
			password = optarg;
			break;
		case OPT_SCRIPT:
			if (strcmp(optarg, "login") == 0)
				R.script = SCRIPT_LOGIN;
			else if (strcmp(optarg, "retr") == 0)
				R.script = SCRIPT_RETR;
			else if (strcmp(optarg, "idle") == 0)
				R.script = SCRIPT_IDLE;
			else if (strcmp(optarg, "poll") == 0)
				R.script = SCRIPT_POLL;
			else
				die("--script %s: expected login, retr, idle or poll", optarg);
			break;
		case OPT_METHOD:
			if (strcmp(optarg, "user") == 0)
				R.method = METHOD_USER;
			else if (strcmp(optarg, "plain") == 0)
				R.method = METHOD_PLAIN;
			else
				die("--method %s: expected user or plain", optarg);
			break;
		case OPT_TLS:
			if (strcmp(optarg, "none") == 0)
				R.tls = TLS_NONE;
			else if (strcmp(optarg, "stls") == 0)
				R.tls = TLS_STLS;
			else if (strcmp(optarg, "implicit") == 0)
				R.tls = TLS_IMPLICIT;
			else
				die("--tls %s: expected none, stls or implicit", optarg);
			break;
		case OPT_TLS_CA:
			tls_ca = optarg;
			break;
		case OPT_SLOW_USERS:
			slow_file = optarg;
			break;
		case OPT_SLOW_C:
			slow_conc = opt_uint("--slow-concurrency", optarg, 1, LOAD_MAX_CONCURRENCY);
			break;
		case OPT_RATE:
			R.rate = opt_uint("--rate", optarg, 1, 10000000);
			break;
		case OPT_OPEN_LOOP:
			R.open_loop = true;
			break;
		case OPT_TIMEOUT:
			R.timeout_us = opt_duration("--timeout", optarg);
			break;
		case OPT_GRACE:
			R.grace_us = opt_duration("--grace", optarg);
			have_grace = true;
			break;
		case OPT_MAX_TIME:
			R.max_time_us = opt_duration("--max-time", optarg);
			have_max = true;
			break;
		case OPT_IDLE_TIME:
			R.idle_us = opt_duration("--idle-time", optarg);
			break;
		case OPT_NOOP:
			R.noop_us = opt_duration("--noop", optarg);
			break;
		case OPT_CSV:
			csv_file = optarg;
			break;
		case OPT_PIPELINE:
			R.pipeline = opt_uint("--pipeline", optarg, 1, 1000);
			break;
		case 'q':
			R.quiet = true;
			break;
		case 'h':
			usage(true);
			break;
		case 'V':
			printf("pop3-load %s\n", PROJECT_VERSION);
			return 0;
		default:
			usage(false);
		}
	}
	if (optind != argc)
		usage(false);
	if (sessions == 0 && R.duration_us == 0)
		R.duration_us = 10000000;
	if (!have_grace)
		R.grace_us = R.timeout_us;
	if (!have_max)
		R.max_time_us = R.duration_us != 0 ? R.duration_us + R.grace_us + 2000000
			: 300000000;
	if (R.open_loop && R.rate == 0)
		die("--open-loop needs --rate");
	if (R.open_loop && (slow_file != NULL || R.script == SCRIPT_IDLE))
		die("--open-loop runs one population and no idle script");
	if (conc + (slow_file ? slow_conc : 0) > LOAD_MAX_CONCURRENCY)
		die("at most %d connections at once", LOAD_MAX_CONCURRENCY);

	/* Users. */
	if (users_file != NULL && pattern != NULL)
		die("--users and --user-pattern exclude each other");
	if (users_file != NULL)
		users_load(users_file, &R.main.users, &R.main.nusers);
	else if (pattern != NULL) {
		if (password == NULL)
			die("--user-pattern needs --password");
		users_pattern(pattern, password, user_first, user_count, &R.main.users,
			      &R.main.nusers);
	} else if (R.script == SCRIPT_IDLE) {
		user_add(&R.main.users, &R.main.nusers, &(size_t){ 0 }, "nobody", "-", "idle");
	} else {
		die("--users FILE or --user-pattern is required (except with --script idle)");
	}
	if (slow_file != NULL) {
		users_load(slow_file, &R.slow.users, &R.slow.nusers);
		R.have_slow = true;
	}

	/* Targets. */
	if (port == NULL)
		port = R.tls == TLS_IMPLICIT ? "995" : "110";
	for (unsigned i = 0; i < ntargets; i++)
		target_parse(targets[i]);
	if (nhosts == 0 && ntargets == 0)
		hosts[nhosts++] = "127.0.0.1";
	for (unsigned i = 0; i < nhosts; i++)
		target_add(hosts[i], port);

	if (R.tls != TLS_NONE && load_conn_tls_init(tls_ca) == -1)
		die("TLS set-up failed");
	raise_nofile((uint64_t)conc + (R.have_slow ? slow_conc : 0) + 64);
	signal(SIGPIPE, SIG_IGN);

	R.base = event_base_new();
	if (R.base == NULL)
		die("event_base_new failed");
	pop_init(&R.main, "main", conc);
	pop_init(&R.slow, "slow", R.have_slow ? slow_conc : 0);
	R.main.limit = sessions;
	if (csv_file != NULL) {
		R.csv = fopen(csv_file, "w");
		if (R.csv == NULL)
			die("%s: %s", csv_file, strerror(errno));
		load_stats_csv_header(&R, R.csv);
	}
	R.deadline = evtimer_new(R.base, on_deadline, NULL);
	R.hard_deadline = evtimer_new(R.base, on_hard_deadline, NULL);
	R.grace = evtimer_new(R.base, on_grace, NULL);
	R.tick = event_new(R.base, -1, EV_PERSIST, on_tick, NULL);
	if (R.open_loop) {
		R.arrival = evtimer_new(R.base, on_arrival, NULL);
		R.free_slots = calloc(conc, sizeof(*R.free_slots));
		if (R.arrival == NULL || R.free_slots == NULL)
			die("out of memory");
		for (unsigned i = 0; i < conc; i++)	/* slot 0 on top */
			R.free_slots[R.nfree++] = conc - 1 - i;
	}
	R.sigint = evsignal_new(R.base, SIGINT, on_signal, NULL);
	R.sigterm = evsignal_new(R.base, SIGTERM, on_signal, NULL);
	if (R.deadline == NULL || R.hard_deadline == NULL || R.grace == NULL ||
	    R.tick == NULL || R.sigint == NULL || R.sigterm == NULL ||
	    evsignal_add(R.sigint, NULL) == -1 || evsignal_add(R.sigterm, NULL) == -1)
		die("cannot set up events");

	R.start_us = mtime_us();
	R.next_connect_us = (double)R.start_us;
	if (R.duration_us != 0)
		arm_us(R.deadline, R.duration_us);
	arm_us(R.hard_deadline, R.max_time_us);
	arm_us(R.tick, 1000000);
	if (R.open_loop)
		on_arrival(-1, 0, NULL);
	for (unsigned i = 0; i < R.main.concurrency && !R.stopping && !R.open_loop; i++)
		slot_next(&R.main.slots[i]);
	for (unsigned i = 0; i < R.slow.concurrency && !R.stopping; i++)
		slot_next(&R.slow.slots[i]);
	check_end();
	if (!R.ended)
		event_base_dispatch(R.base);
	if (R.end_us == 0)
		R.end_us = mtime_us();
	if (R.stop_reason == NULL)
		R.stop_reason = "sessions";

	load_stats_report(&R, stdout);
	if (R.csv != NULL)
		fclose(R.csv);
	return R.main.st.failed + R.slow.st.failed == 0 ? 0 : 3;
}
