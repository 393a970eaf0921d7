/*
 * authctl.c - talk to a running authd.
 *
 *   authctl [-s SOCKET | -c CONFIG] test USER [SERVICE]
 *       reads the password from stdin (first line), asks authd, prints
 *       OK/FAIL/TEMPFAIL and the returned fields.
 *   authctl [-s SOCKET | -c CONFIG] flush [--kick USER | USER]
 *       removes one user's cache entries, or all of them; with --kick,
 *       also ends the user's sessions, as kick does.
 *   authctl [-s SOCKET | -c CONFIG] who [USER]
 *       lists the POP3 sessions of this host (every pop3d master
 *       connected to authd's master socket).
 *   authctl [-s SOCKET | -c CONFIG] kick USER
 *       ends USER's sessions on this host and, with a shared L2 cache,
 *       on every host of the cluster.
 *   authctl [-s SOCKET | -c CONFIG] cache
 *       prints the cache's fill, entries by kind, hit ratio and counters.
 *   authctl [-s SOCKET | -c CONFIG] reload
 *       makes authd re-read its configuration (like SIGHUP), and says
 *       whether the new one was accepted.
 *   authctl [-c CONFIG] [-A AUTHD_STATS] [-P POP3D_STATS] stats [--raw]
 *           [--watch SECONDS [--count N]]
 *       reads both daemons' stats sockets and shows them as a table (or
 *       the Prometheus text with --raw), once or every SECONDS.
 *   authctl pw [-l] [-s SCHEME] [-r ROUNDS] [-u USER [-U UID] [-G GID]
 *           [-H HOME]]
 *       reads a password (twice without echo from a terminal, else one
 *       line of stdin) and prints its {SCHEME}hash (pwgen.c), or a whole
 *       passwd-file line; talks to no daemon.
 *
 * Exit status (sysexits): 0 accepted, 1 rejected, 75 temporary failure,
 * 69 authd unreachable, 2 bad command line, 64 no password on stdin (test,
 * pw).  pw: 1 for a password it refuses or two that differ.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "authd/authd.h"
#include "common/config.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/num.h"
#include "common/proto.h"
#include "common/sock.h"
#include "common/version.h"

#define EX_OK_		0
#define EX_REJECT	1
#define EX_USAGE_	2	/* a bad command line */
#define EX_NOINPUT_	64	/* test: nothing on standard input */
#define EX_UNAVAIL	69
#define EX_TEMP		75
#define AUTHCTL_TIMEOUT_MS 30000
#define STR_(x) #x
#define STR(x) STR_(x)

/* help: the whole text on stdout, exit 0; a bad command line: on
 * stderr, exit 2 (authctl(1)). */
static void usage(bool help)
{
	fprintf(help ? stdout : stderr, "usage: authctl [-s SOCKET | -c CONFIG] COMMAND\n"
		"  test USER [SERVICE]   check a password read from standard input\n"
		"  flush [USER]          drop USER's cache entries, or all\n"
		"  flush --kick USER     drop USER's cache entries and end its sessions\n"
		"  who [USER]            list the POP3 sessions of this host\n"
		"  kick USER             end USER's sessions (every host of a cluster)\n"
		"  cache                 show the cache's contents and counters\n"
		"  reload                make authd re-read its configuration\n"
		"  stats [--raw] [--watch SECONDS [--count N]]\n"
		"                        show authd's and pop3d's metrics\n"
		"  pw [-l] [-s SCHEME] [-r ROUNDS] [-u USER [-U UID] [-G GID] [-H HOME]]\n"
		"                        hash a password for a passwd-file\n"
		"options: -s SOCKET (authd protocol socket), -c CONFIG (default\n"
		"  /etc/pop3d/pop3d.conf), -A / -P authd's / pop3d's stats socket,\n"
		"  -h / --help this text, --version the version\n");
	exit(help ? EX_OK_ : EX_USAGE_);
}

/* Reads one LF-terminated line from fd into buf (size bytes) within the
 * timeout.  Returns its length without LF, or -1. */
static ssize_t read_line(int fd, char *buf, size_t size, int timeout_ms)
{
	size_t len = 0;

	while (len < size - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, timeout_ms) <= 0)
			return -1;
		n = read(fd, buf + len, 1);
		if (n <= 0)
			return -1;
		if (buf[len] == '\n') {
			buf[len] = '\0';
			return (ssize_t)len;
		}
		len++;
	}
	return -1;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Connects and completes the handshake, asking for the administration
 * commands if admin (authd grants them to root and its own uid only).
 * Returns fd or -1 (message printed). */
static int connect_authd(const char *sock, bool admin)
{
	char line[AUTHD_MAX_LINE + 1];
	struct proto_line l;
	struct proto_msg m;
	const char *err, *granted;
	ssize_t n;
	int fd;

	fd = sock_unix_connect(sock, false);
	if (fd == -1) {
		fprintf(stderr, "authctl: cannot connect to authd at %s: %s\n", sock,
			strerror(errno));
		return -1;
	}
	proto_line_start(&l, "VERSION");
	proto_line_add(&l, "1");
	proto_line_add(&l, "0");
	if (admin)
		proto_line_kv(&l, "admin", "yes");
	else
		proto_line_kv(&l, "tickets", "no");	/* nobody here would redeem one */
	proto_line_end(&l);
	if (write_all(fd, l.buf, l.len) == -1 ||
	    (n = read_line(fd, line, sizeof(line), AUTHCTL_TIMEOUT_MS)) == -1 ||
	    proto_parse(line, (size_t)n, &m, &err) == -1 || strcmp(m.cmd, "VERSION") != 0 ||
	    m.nargs < 1 || strcmp(m.args[0], "1") != 0) {
		fprintf(stderr, "authctl: authd at %s did not complete the handshake\n", sock);
		close(fd);
		return -1;
	}
	/* An older authd does not say; the command's reply will. */
	granted = proto_get(&m, "admin");
	if (admin && granted != NULL && strcmp(granted, "no") == 0)
		fprintf(stderr, "authctl: authd grants administration to root and its own "
			"user only\n");
	return fd;
}

/* Sends l, reads one reply into line and parses it into m.  Returns 0, or
 * -1 (message printed). */
static int transact(int fd, struct proto_line *l, char *line, size_t size, struct proto_msg *m)
{
	const char *err;
	ssize_t n;

	if (proto_line_end(l) == -1) {
		fprintf(stderr, "authctl: request too long\n");
		return -1;
	}
	if (write_all(fd, l->buf, l->len) == -1 ||
	    (n = read_line(fd, line, size, AUTHCTL_TIMEOUT_MS)) == -1) {
		fprintf(stderr, "authctl: no reply from authd\n");
		return -1;
	}
	if (proto_parse(line, (size_t)n, m, &err) == -1) {
		fprintf(stderr, "authctl: malformed reply: %s\n", err);
		return -1;
	}
	if (strcmp(m->cmd, "ERROR") == 0) {
		const char *why = proto_get(m, "reason");
		fprintf(stderr, "authctl: authd refused: %s\n", why != NULL ? why : "?");
		return -1;
	}
	return 0;
}

/* Sends one administration command (FLUSH, CACHE, RELOAD; with user=
 * when user is not NULL) and parses the reply into m (kept in line).
 * Returns 0, EX_UNAVAIL if authd cannot be reached, or EX_REJECT if it
 * refused (the reason printed). */
static int admin_request(const char *sock, const char *cmd, const char *user, char *line,
			 size_t size, struct proto_msg *m)
{
	struct proto_line l;
	int fd = connect_authd(sock, true), rc;

	if (fd == -1)
		return EX_UNAVAIL;
	proto_line_start(&l, cmd);
	proto_line_add(&l, "1");
	if (user != NULL)
		proto_line_kv(&l, "user", user);
	rc = transact(fd, &l, line, size, m);
	close(fd);
	return rc == -1 ? EX_REJECT : 0;
}

/* "cluster=OK/N" of a reply: prints it; returns EX_TEMP if a server
 * missed it, else 0. */
static int cluster_part(const struct proto_msg *m, const char *what)
{
	const char *cl = proto_get(m, "cluster");
	unsigned ok, n;

	if (cl == NULL || sscanf(cl, "%u/%u", &ok, &n) != 2)
		return 0;
	printf("cluster: %u of %u memcached servers took the %s\n", ok, n, what);
	if (ok < n) {
		fprintf(stderr, "authctl: warning: the %s did not reach every memcached server; "
			"see docs/cluster.md, \"When a flush does not reach every server\"\n", what);
		return EX_TEMP;
	}
	return 0;
}

/* "masters=A/N" and "ended=K" of a KICK reply: prints them; returns
 * EX_TEMP if a pop3d master did not answer, else 0. */
static int masters_part(const struct proto_msg *m, const char *user)
{
	const char *ms = proto_get(m, "masters"), *ended = proto_get(m, "ended");
	unsigned a, n;

	if (ms == NULL || sscanf(ms, "%u/%u", &a, &n) != 2)
		return 0;
	if (n == 0) {
		printf("no pop3d is connected to this authd: no session ended here\n");
		return 0;
	}
	printf("ended %s session%s of %s on this host\n", ended ? ended : "?",
	       ended && strcmp(ended, "1") == 0 ? "" : "s", user);
	if (a < n) {
		fprintf(stderr, "authctl: warning: %u of %u pop3d masters did not answer\n",
			n - a, n);
		return EX_TEMP;
	}
	return 0;
}

static int cmd_kick(const char *sock, const char *user, bool flush)
{
	char line[AUTHD_MAX_LINE + 1];
	struct proto_line l;
	struct proto_msg m;
	int fd = connect_authd(sock, true), rc, rc2;

	if (fd == -1)
		return EX_UNAVAIL;
	proto_line_start(&l, "KICK");
	proto_line_add(&l, "1");
	proto_line_kv(&l, "user", user);
	if (flush)
		proto_line_kv(&l, "flush", "yes");
	rc = transact(fd, &l, line, sizeof(line), &m);
	close(fd);
	if (rc == -1)
		return EX_REJECT;
	if (flush)
		printf("flushed %s entries of %s\n", proto_get(&m, "removed") ?
		       proto_get(&m, "removed") : "?", user);
	rc = masters_part(&m, user);
	rc2 = cluster_part(&m, flush ? "flush and kick" : "kick");
	return rc != 0 ? rc : rc2;
}

static int cmd_who(const char *sock, const char *only)
{
	char line[AUTHD_MAX_LINE + 1];
	struct proto_line l;
	struct proto_msg m;
	const char *err;
	int fd = connect_authd(sock, true), rc = EX_OK_;
	unsigned long long shown = 0;
	ssize_t n;

	if (fd == -1)
		return EX_UNAVAIL;
	proto_line_start(&l, "WHO");
	proto_line_add(&l, "1");
	if (only != NULL)
		proto_line_kv(&l, "user", only);	/* authd normalises it */
	if (proto_line_end(&l) == -1 || write_all(fd, l.buf, l.len) == -1) {
		fprintf(stderr, "authctl: cannot send the request\n");
		close(fd);
		return EX_UNAVAIL;
	}
	for (;;) {
		if ((n = read_line(fd, line, sizeof(line), AUTHCTL_TIMEOUT_MS)) == -1) {
			fprintf(stderr, "authctl: no reply from authd\n");
			rc = EX_UNAVAIL;
			break;
		}
		if (proto_parse(line, (size_t)n, &m, &err) == -1) {
			fprintf(stderr, "authctl: malformed reply: %s\n", err);
			rc = EX_REJECT;
			break;
		}
		if (strcmp(m.cmd, "ERROR") == 0) {
			const char *why = proto_get(&m, "reason");
			fprintf(stderr, "authctl: authd refused: %s\n", why != NULL ? why : "?");
			rc = EX_REJECT;
			break;
		}
		if (strcmp(m.cmd, "SESSION") == 0) {
			const char *user = proto_get(&m, "user"), *rip = proto_get(&m, "rip");
			const char *start = proto_get(&m, "start");
			char when[32] = "?", addr[80];
			time_t t;
			struct tm tm;

			if (user == NULL || rip == NULL)
				continue;
			if (start != NULL && (t = (time_t)strtoll(start, NULL, 10)) > 0 &&
			    localtime_r(&t, &tm) != NULL)
				strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
			snprintf(addr, sizeof(addr), strchr(rip, ':') ? "[%s]:%s" : "%s:%s", rip,
				 proto_get(&m, "rport") ? proto_get(&m, "rport") : "?");
			if (shown++ == 0)
				printf("%-24s %-28s %-19s %8s %-3s %8s\n", "USER", "CLIENT", "SINCE",
				       "PID", "TLS", "MASTER");
			printf("%-24s %-28s %-19s %8s %-3s %8s\n", user, addr, when,
			       proto_get(&m, "pid") ? proto_get(&m, "pid") : "?",
			       proto_get(&m, "tls") ? proto_get(&m, "tls") : "?",
			       proto_get(&m, "master") ? proto_get(&m, "master") : "?");
			continue;
		}
		if (strcmp(m.cmd, "DONE") != 0)
			continue;
		const char *ms = proto_get(&m, "masters");
		unsigned a, nm;
		if (ms != NULL && sscanf(ms, "%u/%u", &a, &nm) == 2) {
			if (nm == 0)
				printf("no pop3d is connected to this authd\n");
			else
				printf("%llu session%s\n", shown, shown == 1 ? "" : "s");
			if (a < nm) {
				fprintf(stderr, "authctl: warning: %u of %u pop3d masters did not "
					"answer\n", nm - a, nm);
				rc = EX_TEMP;
			}
		}
		break;
	}
	close(fd);
	return rc;
}

static int cmd_flush(const char *sock, const char *user)
{
	char line[AUTHD_MAX_LINE + 1];
	struct proto_msg m;
	int rc = admin_request(sock, "FLUSH", user, line, sizeof(line), &m);

	if (rc != 0)
		return rc;
	printf("flushed %s entries%s%s\n", proto_get(&m, "removed") ? proto_get(&m, "removed") : "?",
	       user ? " of " : "", user ? user : "");
	/* With a shared L2: how many memcached servers took it.  A flush that
	 * reached none is local only: the other hosts' caches keep the old
	 * password until positive-ttl (docs/cluster.md). */
	return cluster_part(&m, "flush");
}

static unsigned long long kvnum(const struct proto_msg *m, const char *key)
{
	const char *v = proto_get(m, key);

	return v != NULL ? strtoull(v, NULL, 10) : 0;
}

static int cmd_cache(const char *sock)
{
	char line[AUTHD_MAX_LINE + 1];
	struct proto_msg m;
	int rc = admin_request(sock, "CACHE", NULL, line, sizeof(line), &m);

	if (rc != 0)
		return rc;
	if (proto_get(&m, "enabled") == NULL || strcmp(proto_get(&m, "enabled"), "yes") != 0) {
		printf("cache: disabled\n");
		return EX_OK_;
	}
	unsigned long long cap = kvnum(&m, "capacity"), empty = kvnum(&m, "empty");
	unsigned long long hits = kvnum(&m, "hits") + kvnum(&m, "negative_hits");
	unsigned long long lookups = hits + kvnum(&m, "misses");
	printf("cache: %llu of %llu slots used (%.1f%%), hit ratio %.1f%% (%llu of %llu lookups)\n",
	       cap - empty, cap, cap ? 100.0 * (double)(cap - empty) / (double)cap : 0.0,
	       lookups ? 100.0 * (double)hits / (double)lookups : 0.0, hits, lookups);
	printf("entries: %llu ok fresh, %llu ok stale-usable, %llu wrong-password, "
	       "%llu unknown-user, %llu expired\n", kvnum(&m, "ok_fresh"), kvnum(&m, "ok_stale"),
	       kvnum(&m, "fail"), kvnum(&m, "nouser"), kvnum(&m, "expired"));
	if (proto_get(&m, "l2") != NULL && strcmp(proto_get(&m, "l2"), "yes") == 0) {
		unsigned long long l2h = kvnum(&m, "l2_hits"), l2m = kvnum(&m, "l2_misses");
		printf("L2 (memcached): hit ratio %.1f%% (%llu of %llu lookups), %llu refused "
		       "values, %llu errors\n", l2h + l2m ? 100.0 * (double)l2h / (double)(l2h + l2m) :
		       0.0, l2h, l2h + l2m, kvnum(&m, "l2_refused"), kvnum(&m, "l2_errors"));
		for (size_t i = 0; i < m.nkv; i++) {
			char name[300], state[16];
			unsigned long long ok, err, opens;

			if (strncmp(m.kv[i].key, "l2_server", 9) != 0)
				continue;
			if (sscanf(m.kv[i].value, "%299[^,],%15[^,],%llu,%llu,%llu", name, state, &ok,
				   &err, &opens) == 5)
				printf("  server %-28s %-8s %llu ok, %llu errors, breaker opened %llu "
				       "times\n", name, state, ok, err, opens);
		}
	}
	for (size_t i = 0; i < m.nkv; i++)
		if (strcmp(m.kv[i].key, "enabled") != 0 && strncmp(m.kv[i].key, "l2", 2) != 0)
			printf("  %-16s %s\n", m.kv[i].key, m.kv[i].value);
	return EX_OK_;
}

static int cmd_reload(const char *sock)
{
	char line[AUTHD_MAX_LINE + 1];
	struct proto_msg m;
	int rc = admin_request(sock, "RELOAD", NULL, line, sizeof(line), &m);

	if (rc != 0)
		return rc;
	printf("authd: configuration reloaded\n");
	return EX_OK_;
}

/* ---- stats ----------------------------------------------------------- */

#define STATS_MAX (1024 * 1024)

struct sample {
	char name[96];
	char labels[192];
	double value;
};

struct metrics {
	struct sample *s;
	size_t n;
	bool ok;
};

/* Reads everything a stats socket sends.  Returns a malloc'd NUL-ended
 * buffer, or NULL (message printed). */
static char *read_socket(const char *path)
{
	char *buf;
	size_t len = 0;
	int fd = sock_unix_connect(path, false);

	if (fd == -1) {
		fprintf(stderr, "authctl: cannot read %s: %s\n", path, strerror(errno));
		return NULL;
	}
	buf = xmalloc(STATS_MAX + 1);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, AUTHCTL_TIMEOUT_MS) <= 0 || len == STATS_MAX)
			break;
		n = read(fd, buf + len, STATS_MAX - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return buf;
}

/* Parses "name{labels} value" lines (comments skipped). */
static void parse_metrics(char *text, struct metrics *m)
{
	size_t cap = 256;

	m->s = xcalloc(cap, sizeof(*m->s));
	m->n = 0;
	m->ok = true;
	for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		struct sample *x;
		char *brace, *sp;

		if (line[0] == '#' || line[0] == '\0')
			continue;
		sp = strrchr(line, ' ');
		if (sp == NULL)
			continue;
		*sp = '\0';
		if (m->n == cap) {
			cap *= 2;
			m->s = realloc(m->s, cap * sizeof(*m->s));
			if (m->s == NULL)
				fatalx("out of memory");
		}
		x = &m->s[m->n++];
		memset(x, 0, sizeof(*x));
		x->value = strtod(sp + 1, NULL);
		brace = strchr(line, '{');
		if (brace != NULL) {
			*brace = '\0';
			snprintf(x->labels, sizeof(x->labels), "%.*s", (int)strcspn(brace + 1, "}"),
				 brace + 1);
		}
		snprintf(x->name, sizeof(x->name), "%s", line);
	}
}

/* The value of name whose labels contain want (or any, if NULL); sums
 * every match. */
static double get(const struct metrics *m, const char *name, const char *want)
{
	double v = 0;

	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->s[i].name, name) == 0 &&
		    (want == NULL || strstr(m->s[i].labels, want) != NULL))
			v += m->s[i].value;
	return v;
}

/* A quantile from a Prometheus histogram's cumulative buckets, in ms: the
 * upper bound of the first bucket holding the rank. */
static double quantile_ms(const struct metrics *m, const char *name, const char *want, double q)
{
	char bucket[128];
	double count = 0, best = -1;

	snprintf(bucket, sizeof(bucket), "%s_bucket", name);
	for (size_t i = 0; i < m->n; i++)
		if (strcmp(m->s[i].name, bucket) == 0 && strstr(m->s[i].labels, want) != NULL &&
		    strstr(m->s[i].labels, "le=\"+Inf\"") != NULL)
			count = m->s[i].value;
	if (count == 0)
		return 0;
	for (size_t i = 0; i < m->n; i++) {
		const char *le;
		if (strcmp(m->s[i].name, bucket) != 0 || strstr(m->s[i].labels, want) == NULL ||
		    (le = strstr(m->s[i].labels, "le=\"")) == NULL)
			continue;
		double bound = strncmp(le + 4, "+Inf", 4) == 0 ? 1e9 : strtod(le + 4, NULL);
		if (m->s[i].value >= q * count && (best < 0 || bound < best))
			best = bound;
	}
	return best < 0 ? 0 : best * 1000;
}

static void show_authd(const struct metrics *m)
{
	char want[96];

	printf("authd: %.0f clients, %.0f requests in flight, %.0f requests "
	       "(%.0f ok, %.0f fail, %.0f tempfail, %.0f error), %.0f reloads\n",
	       get(m, "authd_clients_connected", NULL), get(m, "authd_requests_in_flight", NULL),
	       get(m, "authd_requests_total", NULL), get(m, "authd_answers_total", "\"ok\""),
	       get(m, "authd_answers_total", "\"fail\""),
	       get(m, "authd_answers_total", "\"tempfail\""),
	       get(m, "authd_answers_total", "\"error\""),
	       get(m, "authd_reloads_total", "\"ok\""));
	printf("%-16s %6s %5s %5s %6s %8s %8s %8s %8s %8s %9s %9s\n", "authenticator", "queue",
	       "busy", "stuck", "workers", "ok", "fail", "nouser", "tempfail", "timeout",
	       "p50 ms", "p99 ms");
	for (size_t i = 0; i < m->n; i++) {
		const char *q;
		char name[32];

		if (strcmp(m->s[i].name, "authd_workers") != 0 ||
		    (q = strstr(m->s[i].labels, "authenticator=\"")) == NULL)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)strcspn(q + 15, "\""), q + 15);
		snprintf(want, sizeof(want), "authenticator=\"%s\"", name);
		char r_ok[128], r_fail[128], r_nouser[128], r_temp[128], r_to[128];
		snprintf(r_ok, sizeof(r_ok), "%s,result=\"ok\"", want);
		snprintf(r_fail, sizeof(r_fail), "%s,result=\"fail\"", want);
		snprintf(r_nouser, sizeof(r_nouser), "%s,result=\"nouser\"", want);
		snprintf(r_temp, sizeof(r_temp), "%s,result=\"tempfail\"", want);
		snprintf(r_to, sizeof(r_to), "%s,result=\"timeout\"", want);
		printf("%-16s %6.0f %5.0f %5.0f %6.0f %8.0f %8.0f %8.0f %8.0f %8.0f %9.2f %9.2f\n",
		       name, get(m, "authd_queue_depth", want), get(m, "authd_in_flight", want),
		       get(m, "authd_workers_stuck", want), m->s[i].value,
		       get(m, "authd_authenticator_results_total", r_ok),
		       get(m, "authd_authenticator_results_total", r_fail),
		       get(m, "authd_authenticator_results_total", r_nouser),
		       get(m, "authd_authenticator_results_total", r_temp),
		       get(m, "authd_authenticator_results_total", r_to),
		       quantile_ms(m, "authd_service_seconds", want, 0.5),
		       quantile_ms(m, "authd_service_seconds", want, 0.99));
	}
	if (get(m, "authd_cache_enabled", NULL) > 0) {
		double hits = get(m, "authd_cache_hits_total", NULL) +
			      get(m, "authd_cache_negative_hits_total", NULL);
		double lookups = hits + get(m, "authd_cache_misses_total", NULL);
		printf("cache: hit ratio %.1f%% (%.0f of %.0f), %.0f entries of %.0f, "
		       "%.0f stale served, %.0f coalesced, %.0f evictions\n",
		       lookups > 0 ? 100 * hits / lookups : 0.0, hits, lookups,
		       get(m, "authd_cache_entries", NULL) - get(m, "authd_cache_entries", "expired"),
		       get(m, "authd_cache_capacity", NULL),
		       get(m, "authd_cache_stale_served_total", NULL),
		       get(m, "authd_cache_coalesced_total", NULL),
		       get(m, "authd_cache_evictions_total", NULL));
	} else {
		printf("cache: disabled\n");
	}
}

/* The value of label key in a sample's labels ("" if absent) into buf. */
static const char *show_pop3d_label(const struct sample *x, const char *key, char *buf,
				    size_t size)
{
	char want[64];
	const char *p;

	snprintf(want, sizeof(want), "%s=\"", key);
	p = strstr(x->labels, want);
	if (p == NULL) {
		snprintf(buf, size, "%s", "");
		return buf;
	}
	p += strlen(want);
	snprintf(buf, size, "%.*s", (int)strcspn(p, "\""), p);
	return buf;
}

/* One line of "NAME count" pairs for the non-zero series of name whose
 * labels contain want, named by label key. */
static void show_pop3d_list(const struct metrics *m, const char *title, const char *name,
			    const char *want, const char *key)
{
	char v[64];
	bool any = false;

	printf("  %-22s", title);
	for (size_t i = 0; i < m->n; i++) {
		if (strcmp(m->s[i].name, name) != 0 || strstr(m->s[i].labels, want) == NULL ||
		    m->s[i].value == 0)
			continue;
		printf(" %s %.0f", show_pop3d_label(&m->s[i], key, v, sizeof(v)), m->s[i].value);
		any = true;
	}
	printf("%s\n", any ? "" : " -");
}

static void show_pop3d(const struct metrics *m)
{
	double up = get(m, "pop3d_uptime_seconds", NULL);

	printf("pop3d: %.0f connections (%.0f pre-auth, %.0f awaiting auth, %.0f in session), "
	       "%.0f front ends (%.0f retiring), up %.0fh%02.0fm\n",
	       get(m, "pop3d_connections", NULL),
	       get(m, "pop3d_connections", "state=\"preauth\""),
	       get(m, "pop3d_connections", "state=\"awaiting_auth\""),
	       get(m, "pop3d_connections", "state=\"session\""),
	       get(m, "pop3d_frontends", "state=\"active\""),
	       get(m, "pop3d_frontends", "state=\"retiring\""), (double)((long)up / 3600),
	       (double)(((long)up % 3600) / 60));
	printf("  %-22s %.0f accepted, %.0f refused (%.0f max-connections, %.0f per-ip, "
	       "%.0f no front end, %.0f internal)\n", "connections:",
	       get(m, "pop3d_connections_accepted_total", NULL),
	       get(m, "pop3d_connections_refused_total", NULL),
	       get(m, "pop3d_connections_refused_total", "\"max_connections\""),
	       get(m, "pop3d_connections_refused_total", "\"max_connections_per_ip\""),
	       get(m, "pop3d_connections_refused_total", "\"no_frontend\""),
	       get(m, "pop3d_connections_refused_total", "\"internal\""));
	printf("  %-22s %.0f ok, %.0f failed, %.0f tempfailed, %.0f refused; handoffs %.0f ok, "
	       "%.0f failed; authd p50 %.2f ms, p99 %.2f ms\n", "logins:",
	       get(m, "pop3d_logins_total", "\"ok\""), get(m, "pop3d_logins_total", "\"failed\""),
	       get(m, "pop3d_logins_total", "\"tempfailed\""),
	       get(m, "pop3d_logins_total", "\"refused\""),
	       get(m, "pop3d_handoffs_total", "\"ok\""), get(m, "pop3d_handoffs_total", "\"failed\""),
	       quantile_ms(m, "pop3d_auth_seconds", "", 0.5),
	       quantile_ms(m, "pop3d_auth_seconds", "", 0.99));
	printf("  %-22s %.0f running, %.0f ended; duration p50 %.1f s, p99 %.1f s\n", "sessions:",
	       get(m, "pop3d_sessions", NULL), get(m, "pop3d_sessions_ended_total", NULL),
	       quantile_ms(m, "pop3d_session_duration_seconds", "", 0.5) / 1000,
	       quantile_ms(m, "pop3d_session_duration_seconds", "", 0.99) / 1000);
	show_pop3d_list(m, "sessions ended:", "pop3d_sessions_ended_total", "", "reason");
	printf("  %-22s %.0f retrieved, %.0f TOP, %.0f deleted; %.0f bytes sent\n", "messages:",
	       get(m, "pop3d_messages_total", "\"retr\""), get(m, "pop3d_messages_total", "\"top\""),
	       get(m, "pop3d_messages_total", "\"dele\""), get(m, "pop3d_bytes_sent_total", NULL));
	printf("  %-22s %.0f ok, %.0f failed, %.0f timed out, %.0f resumed\n", "TLS handshakes:",
	       get(m, "pop3d_tls_handshakes_total", "\"ok\""),
	       get(m, "pop3d_tls_handshakes_total", "\"failed\""),
	       get(m, "pop3d_tls_handshakes_total", "\"timeout\""),
	       get(m, "pop3d_tls_resumed_total", NULL));
	printf("  %-22s %.0f disconnects, %.0f reconnects; %.0f front-end restarts; "
	       "%.0f reloads, %.0f refused\n", "authd:",
	       get(m, "pop3d_authd_disconnects_total", NULL),
	       get(m, "pop3d_authd_reconnects_total", NULL),
	       get(m, "pop3d_frontend_restarts_total", NULL),
	       get(m, "pop3d_reloads_total", "\"ok\""), get(m, "pop3d_reloads_total", "\"failed\""));
	show_pop3d_list(m, "commands before login:", "pop3d_commands_total",
			"state=\"authorization\"", "command");
	show_pop3d_list(m, "commands after login:", "pop3d_commands_total",
			"state=\"transaction\"", "command");
}

static void show_generic(const char *who, const struct metrics *m)
{
	/* pop3d's own metrics get a table; anything else (an older pop3d)
	 * the plain list below */
	if (strcmp(who, "pop3d") == 0 && m->n > 0 && strncmp(m->s[0].name, "pop3d_", 6) == 0) {
		show_pop3d(m);
		return;
	}
	printf("%s:\n", who);
	for (size_t i = 0; i < m->n; i++) {
		if (strstr(m->s[i].name, "_bucket") != NULL)
			continue;
		if (m->s[i].labels[0] != '\0')
			printf("  %s{%s} %.0f\n", m->s[i].name, m->s[i].labels, m->s[i].value);
		else
			printf("  %-40s %.0f\n", m->s[i].name, m->s[i].value);
	}
}

static int show_stats_once(const char *authd_sock, const char *pop3d_sock, bool raw)
{
	int shown = 0;
	const char *paths[2] = { authd_sock, pop3d_sock };

	for (int k = 0; k < 2; k++) {
		struct metrics m;
		char *text;

		if (paths[k] == NULL || paths[k][0] == '\0')
			continue;
		text = read_socket(paths[k]);
		if (text == NULL)
			continue;
		shown++;
		if (raw) {
			fputs(text, stdout);
		} else {
			parse_metrics(text, &m);
			if (k == 0)
				show_authd(&m);
			else
				show_generic("pop3d", &m);
			free(m.s);
		}
		free(text);
	}
	fflush(stdout);
	return shown;
}

static int cmd_stats(const char *authd_sock, const char *pop3d_sock, int argc, char **argv)
{
	bool raw = false;
	unsigned watch = 0, count = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--raw") == 0)
			raw = true;
		else if (strcmp(argv[i], "--watch") == 0 && i + 1 < argc &&
			 num_parse_uint(argv[i + 1], 1, 3600, &watch) == 0)
			i++;
		else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc &&
			 num_parse_uint(argv[i + 1], 1, 1000000, &count) == 0)
			i++;
		else
			usage(false);
	}
	if ((authd_sock == NULL || authd_sock[0] == '\0') &&
	    (pop3d_sock == NULL || pop3d_sock[0] == '\0')) {
		fprintf(stderr, "authctl: no stats socket configured (set stats-socket in "
			"[authd] or [pop3d], or use -A / -P)\n");
		return EX_UNAVAIL;
	}
	for (unsigned round = 0;; round++) {
		if (watch != 0 && !raw)
			printf("\033[H\033[2J");	/* clear the terminal */
		if (show_stats_once(authd_sock, pop3d_sock, raw) == 0)
			return EX_UNAVAIL;
		if (watch == 0 || (count != 0 && round + 1 >= count))
			return EX_OK_;
		sleep(watch);
	}
}

static int cmd_test(const char *sock, const char *user, const char *service)
{
	char pass[AUTH_MAX_PASSWORD + 2];
	char line[AUTHD_MAX_LINE + 1];
	struct proto_line l;
	struct proto_msg m;
	size_t plen;
	int fd, rc;

	if (fgets(pass, sizeof(pass), stdin) == NULL) {
		fprintf(stderr, "authctl: no password on standard input\n");
		return EX_NOINPUT_;
	}
	plen = strcspn(pass, "\r\n");
	pass[plen] = '\0';
	fd = connect_authd(sock, false);
	if (fd == -1) {
		sodium_memzero(pass, sizeof(pass));
		return EX_UNAVAIL;
	}
	proto_line_start(&l, "AUTH");
	proto_line_add(&l, "1");
	proto_line_kv(&l, "service", service);
	proto_line_kv(&l, "user", user);
	proto_line_kv(&l, "pass", pass);
	proto_line_kv(&l, "rip", "127.0.0.1");
	sodium_memzero(pass, sizeof(pass));
	rc = transact(fd, &l, line, sizeof(line), &m);
	proto_line_wipe(&l);
	close(fd);
	if (rc == -1)
		return EX_UNAVAIL;
	printf("%s\n", m.cmd);
	for (size_t i = 0; i < m.nkv; i++) {
		if (strcmp(m.kv[i].key, "ticket") == 0)
			continue;	/* single-use handoff secret: not for a terminal */
		printf("  %s=%s\n", m.kv[i].key, m.kv[i].value);
	}
	if (strcmp(m.cmd, "OK") == 0)
		return EX_OK_;
	if (strcmp(m.cmd, "FAIL") == 0)
		return EX_REJECT;
	if (strcmp(m.cmd, "TEMPFAIL") == 0)
		return EX_TEMP;
	return EX_UNAVAIL;
}

/* ---- pw ------------------------------------------------------------- */

/* The terminal's settings while echo is off, for the signal handler. */
static struct termios pw_saved_tio;
static volatile sig_atomic_t pw_echo_off;

/* A signal while echo is off: turn it back on, then die of the signal. */
static void pw_on_signal(int sig)
{
	if (pw_echo_off)
		(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &pw_saved_tio);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Reads one line (up to LF or end of file) from fd into buf (size bytes)
 * byte by byte, so that nothing after it is consumed.  Returns its length
 * without the LF, -1 on end of file before any byte, or -2 with *why_r set
 * for a NUL byte, an over-long line or a read error. */
static ssize_t pw_read_line(int fd, char *buf, size_t size, const char **why_r)
{
	size_t len = 0;
	bool any = false, nul = false;

	for (;;) {
		char ch;
		ssize_t n = read(fd, &ch, 1);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			*why_r = "cannot read the password";
			return -2;
		}
		if (n == 0) {
			if (!any)
				return -1;
			break;
		}
		any = true;
		if (ch == '\n')
			break;
		if (ch == '\0')
			nul = true;
		if (len + 1 >= size) {
			*why_r = "password over " STR(AUTH_MAX_PASSWORD) " bytes (the longest "
				 "authd takes)";
			sodium_memzero(&ch, sizeof(ch));
			return -2;
		}
		buf[len++] = ch;
		sodium_memzero(&ch, sizeof(ch));
	}
	buf[len] = '\0';
	if (nul) {
		*why_r = "the password holds a NUL byte, which no login can send";
		return -2;
	}
	return (ssize_t)len;
}

/* Reads the password twice from the terminal on stdin with echo off,
 * prompting on stderr.  Returns as pw_read_line(), or -3 if the two
 * differ. */
static ssize_t pw_read_tty(char *a, char *b, size_t size, const char **why_r)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa, old[4];
	struct termios tio;
	ssize_t n, m = -1;

	if (tcgetattr(STDIN_FILENO, &pw_saved_tio) == -1) {
		*why_r = "cannot read the terminal's settings";
		return -2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = pw_on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < 4; i++)
		if (sigaction(sigs[i], &sa, &old[i]) == -1)
			fatal("sigaction");
	tio = pw_saved_tio;
	tio.c_lflag &= ~(tcflag_t)ECHO;
	tio.c_lflag |= ECHONL;	/* the Enter key still ends the line on screen */
	pw_echo_off = 1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &tio) == -1) {
		pw_echo_off = 0;
		*why_r = "cannot turn the terminal's echo off";
		n = -2;
		goto out_signals;
	}
	fprintf(stderr, "Password: ");
	fflush(stderr);
	n = pw_read_line(STDIN_FILENO, a, size, why_r);
	if (n >= 0) {
		fprintf(stderr, "Retype password: ");
		fflush(stderr);
		m = pw_read_line(STDIN_FILENO, b, size, why_r);
	}
	(void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &pw_saved_tio);
	pw_echo_off = 0;
	if (n >= 0 && m < 0)
		n = m;
	else if (n >= 0 && ((size_t)m != (size_t)n || sodium_memcmp(a, b, (size_t)n) != 0))
		n = -3;
out_signals:
	for (size_t i = 0; i < 4; i++)
		(void)sigaction(sigs[i], &old[i], NULL);
	return n;
}

/* A passwd-file user name: what authd's normalised name can be. */
static bool pw_user_ok(const char *user)
{
	size_t n = strlen(user);

	if (n == 0 || n > AUTH_MAX_USER || user[0] == '#' || user[0] == ' ' ||
	    user[0] == '\t' || user[n - 1] == ' ' || user[n - 1] == '\t')
		return false;
	for (const char *p = user; *p != '\0'; p++)
		if (*p == ':' || (unsigned char)*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static void pw_list(void)
{
	for (size_t i = 0; i < pwgen_count(); i++) {
		unsigned rounds;
		const char *weak, *name = pwgen_scheme(i, &rounds, &weak);
		char r[32] = "";

		if (rounds != 0)
			snprintf(r, sizeof(r), "rounds %u", rounds);
		printf("%-14s %-16s%s%s\n", name, r, i == 0 ? "default" : "",
		       weak != NULL ? "weak" : "");
	}
}

/* why NULL: -h, the usage on stdout and exit 0; else on stderr, exit 2. */
__attribute__((noreturn)) static void pw_usage(const char *why)
{
	if (why != NULL)
		fprintf(stderr, "authctl pw: %s\n", why);
	fprintf(why == NULL ? stdout : stderr, "usage: authctl pw [-l] [-s SCHEME] [-r ROUNDS] "
		"[-u USER [-U UID] [-G GID] [-H HOME]]\n");
	exit(why == NULL ? EX_OK_ : EX_USAGE_);
}

static int cmd_pw(int argc, char **argv)
{
	const char *scheme = "ARGON2ID", *user = NULL, *uid = NULL, *gid = NULL, *home = NULL;
	const char *why = NULL, *warn;
	char a[AUTH_MAX_PASSWORD + 2], b[AUTH_MAX_PASSWORD + 2], msg[256];
	unsigned rounds = 0;
	char *hash = NULL;
	struct userdb udb;
	ssize_t n;
	int ch, rc = EX_OK_;

	optind = 0;	/* glibc: start afresh, at argv[1] */
	while ((ch = getopt(argc, argv, "+:hls:r:u:U:G:H:")) != -1) {
		switch (ch) {
		case 'h': pw_usage(NULL);
		case 'l': pw_list(); return EX_OK_;
		case 's': scheme = optarg; break;
		case 'r':
			if (num_parse_uint(optarg, 1, PW_MAX_ROUNDS, &rounds) == -1)
				pw_usage("-r: not a number of rounds");
			break;
		case 'u': user = optarg; break;
		case 'U': uid = optarg; break;
		case 'G': gid = optarg; break;
		case 'H': home = optarg; break;
		case ':':
			snprintf(msg, sizeof(msg), "-%c needs a value", optopt);
			pw_usage(msg);
		default:
			snprintf(msg, sizeof(msg), "unknown option -%c", optopt);
			pw_usage(msg);
		}
	}
	if (optind != argc)
		pw_usage("unexpected argument");
	if (pwgen_canonical(scheme) == NULL) {
		snprintf(msg, sizeof(msg), "unknown scheme %.40s (authctl pw -l lists them)",
			 scheme);
		pw_usage(msg);
	}
	scheme = pwgen_canonical(scheme);
	if (!pwgen_args_ok(scheme, rounds, msg, sizeof(msg)))
		pw_usage(msg);
	if (user != NULL && !pw_user_ok(user))
		pw_usage("-u: not a passwd-file user name (empty, over " STR(AUTH_MAX_USER)
			 " bytes, a ':', a control character, a leading '#' or blank)");
	if (user == NULL && (uid != NULL || gid != NULL || home != NULL))
		pw_usage("-U, -G and -H need -u");
	memset(&udb, 0, sizeof(udb));
	if ((uid != NULL && userdb_set_field(&udb, "uid", uid) == -1) ||
	    (gid != NULL && userdb_set_field(&udb, "gid", gid) == -1))
		pw_usage("-U / -G: not a number from 0 to 4294967294");
	if (home != NULL && (home[0] != '/' || strchr(home, ':') != NULL ||
			     userdb_set_field(&udb, "home", home) == -1))
		pw_usage("-H: not an absolute path without ':' or control characters");

	if (isatty(STDIN_FILENO))
		n = pw_read_tty(a, b, sizeof(a), &why);
	else
		n = pw_read_line(STDIN_FILENO, a, sizeof(a), &why);
	sodium_memzero(b, sizeof(b));
	if (n == -1 || n == 0) {
		fprintf(stderr, "authctl: %s\n", n == -1 ? "no password on standard input" :
			"empty password (authd refuses every empty password)");
		rc = EX_NOINPUT_;
		goto out;
	}
	if (n == -3) {
		fprintf(stderr, "authctl: the passwords differ\n");
		rc = EX_REJECT;
		goto out;
	}
	if (n < 0) {
		fprintf(stderr, "authctl: %s\n", why);
		rc = EX_REJECT;
		goto out;
	}
	switch (pwgen_hash(scheme, a, rounds, &hash, msg, sizeof(msg))) {
	case PWGEN_OK:
		break;
	case PWGEN_BAD_ARGS:
		sodium_memzero(a, sizeof(a));
		pw_usage(msg);
		break;
	case PWGEN_BAD_PASSWORD:
	case PWGEN_FAILED:
		fprintf(stderr, "authctl: %s\n", msg);
		rc = EX_REJECT;
		goto out;
	}
	if ((warn = pwgen_warning(scheme)) != NULL)
		fprintf(stderr, "authctl: warning: %s: %s\n", scheme, warn);
	if (user != NULL)
		printf("%s:%s", user, hash);
	else
		printf("%s", hash);
	if (uid != NULL || gid != NULL || home != NULL)
		printf(":%s:%s::%s::", uid ? uid : "", gid ? gid : "", home ? home : "");
	printf("\n");
	if (fflush(stdout) == EOF) {
		fprintf(stderr, "authctl: cannot write the hash: %s\n", strerror(errno));
		rc = EX_REJECT;
	}
	sodium_memzero(hash, strlen(hash));
	free(hash);
out:
	sodium_memzero(a, sizeof(a));
	return rc;
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *confpath = NULL, *astats = NULL, *pstats = NULL;
	struct config *conf = NULL;
	char err[1024];
	int ch, rc;

	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	while ((ch = getopt_long(argc, argv, "+s:c:A:P:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': sock = optarg; break;
		case 'c': confpath = optarg; break;
		case 'A': astats = optarg; break;
		case 'P': pstats = optarg; break;
		case 'h': usage(true); break;
		case 'V': printf("authctl %s\n", PROJECT_VERSION); return EX_OK_;
		default: usage(false);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage(false);
	if (sodium_init() < 0)
		return EX_UNAVAIL;
	if (strcmp(argv[0], "pw") == 0)
		return cmd_pw(argc, argv);	/* no configuration, no daemon */
	bool need_conf = strcmp(argv[0], "stats") == 0 ? (astats == NULL && pstats == NULL)
						       : sock == NULL;
	if (need_conf || confpath != NULL) {
		if (confpath == NULL)
			confpath = "/etc/pop3d/pop3d.conf";
		conf = config_load(confpath, err, sizeof(err));
		if (conf == NULL) {
			fprintf(stderr, "authctl: %s (use -s SOCKET, or -A/-P for stats)\n", err);
			return EX_UNAVAIL;
		}
		if (sock == NULL)
			sock = conf->authd.socket;
		if (astats == NULL && pstats == NULL) {
			astats = conf->authd.stats_socket;
			pstats = conf->pop3d.stats_socket;
		}
	}
	if (strcmp(argv[0], "test") == 0) {
		if (argc < 2 || argc > 3)
			usage(false);
		rc = cmd_test(sock, argv[1], argc == 3 ? argv[2] : "authctl");
	} else if (strcmp(argv[0], "flush") == 0 && argc == 3 && strcmp(argv[1], "--kick") == 0) {
		rc = cmd_kick(sock, argv[2], true);
	} else if (strcmp(argv[0], "flush") == 0 && argc <= 2 &&
		   (argc == 1 || argv[1][0] != '-')) {
		rc = cmd_flush(sock, argc == 2 ? argv[1] : NULL);
	} else if (strcmp(argv[0], "kick") == 0 && argc == 2) {
		rc = cmd_kick(sock, argv[1], false);
	} else if (strcmp(argv[0], "who") == 0 && argc <= 2) {
		rc = cmd_who(sock, argc == 2 ? argv[1] : NULL);
	} else if (strcmp(argv[0], "cache") == 0 && argc == 1) {
		rc = cmd_cache(sock);
	} else if (strcmp(argv[0], "reload") == 0 && argc == 1) {
		rc = cmd_reload(sock);
	} else if (strcmp(argv[0], "stats") == 0) {
		rc = cmd_stats(astats, pstats, argc, argv);
	} else {
		usage(false);
	}
	config_free(&conf);
	return rc;
}
