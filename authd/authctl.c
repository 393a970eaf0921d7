/*
 * authctl.c - talk to a running authd.
 *
 *   authctl [-s SOCKET | -c CONFIG] test USER [SERVICE]
 *       reads the password from stdin (first line), asks authd, prints
 *       OK/FAIL/TEMPFAIL and the returned fields.
 *   authctl [-s SOCKET | -c CONFIG] flush [USER]
 *       removes one user's cache entries, or all of them.
 *   authctl [-s SOCKET | -c CONFIG] cache
 *       prints the cache's fill, entries by kind, hit ratio and counters.
 *
 * Exit status (sysexits): 0 accepted, 1 rejected, 75 temporary failure,
 * 69 authd unreachable, 64 usage.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/config.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/sock.h"

#define EX_OK_		0
#define EX_REJECT	1
#define EX_USAGE_	64
#define EX_UNAVAIL	69
#define EX_TEMP		75
#define AUTHCTL_TIMEOUT_MS 30000

static void usage(void)
{
	fprintf(stderr, "usage: authctl [-s SOCKET | -c CONFIG] COMMAND\n"
		"  test USER [SERVICE]   check a password read from standard input\n"
		"  flush [USER]          drop USER's cache entries, or all\n"
		"  cache                 show the cache's contents and counters\n");
	exit(EX_USAGE_);
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

/* Connects and completes the handshake.  Returns fd or -1 (message
 * printed). */
static int connect_authd(const char *sock)
{
	char line[AUTHD_MAX_LINE + 1];
	struct proto_line l;
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
	proto_line_end(&l);
	if (write_all(fd, l.buf, l.len) == -1 ||
	    read_line(fd, line, sizeof(line), AUTHCTL_TIMEOUT_MS) == -1 ||
	    strncmp(line, "VERSION\t1\t", 10) != 0) {
		fprintf(stderr, "authctl: authd at %s did not complete the handshake\n", sock);
		close(fd);
		return -1;
	}
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

static int cmd_flush(const char *sock, const char *user)
{
	char line[AUTHD_MAX_LINE + 1];
	struct proto_line l;
	struct proto_msg m;
	int fd = connect_authd(sock), rc;

	if (fd == -1)
		return EX_UNAVAIL;
	proto_line_start(&l, "FLUSH");
	proto_line_add(&l, "1");
	if (user != NULL)
		proto_line_kv(&l, "user", user);
	rc = transact(fd, &l, line, sizeof(line), &m);
	close(fd);
	if (rc == -1)
		return EX_UNAVAIL;
	printf("flushed %s entries%s%s\n", proto_get(&m, "removed") ? proto_get(&m, "removed") : "?",
	       user ? " of " : "", user ? user : "");
	return EX_OK_;
}

static unsigned long long kvnum(const struct proto_msg *m, const char *key)
{
	const char *v = proto_get(m, key);

	return v != NULL ? strtoull(v, NULL, 10) : 0;
}

static int cmd_cache(const char *sock)
{
	char line[AUTHD_MAX_LINE + 1];
	struct proto_line l;
	struct proto_msg m;
	int fd = connect_authd(sock), rc;

	if (fd == -1)
		return EX_UNAVAIL;
	proto_line_start(&l, "CACHE");
	proto_line_add(&l, "1");
	rc = transact(fd, &l, line, sizeof(line), &m);
	close(fd);
	if (rc == -1)
		return EX_UNAVAIL;
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
	for (size_t i = 0; i < m.nkv; i++)
		if (strcmp(m.kv[i].key, "enabled") != 0)
			printf("  %-16s %s\n", m.kv[i].key, m.kv[i].value);
	return EX_OK_;
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
		return EX_USAGE_;
	}
	plen = strcspn(pass, "\r\n");
	pass[plen] = '\0';
	fd = connect_authd(sock);
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

int main(int argc, char **argv)
{
	const char *sock = NULL, *confpath = NULL;
	struct config *conf = NULL;
	char err[1024];
	int ch, rc;

	while ((ch = getopt(argc, argv, "s:c:")) != -1) {
		switch (ch) {
		case 's': sock = optarg; break;
		case 'c': confpath = optarg; break;
		default: usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	if (sodium_init() < 0)
		return EX_UNAVAIL;
	if (sock == NULL) {
		if (confpath == NULL)
			confpath = "/etc/pop3d/pop3d.conf";
		conf = config_load(confpath, err, sizeof(err));
		if (conf == NULL) {
			fprintf(stderr, "authctl: %s (use -s SOCKET)\n", err);
			return EX_UNAVAIL;
		}
		sock = conf->authd.socket;
	}
	if (strcmp(argv[0], "test") == 0) {
		if (argc < 2 || argc > 3)
			usage();
		rc = cmd_test(sock, argv[1], argc == 3 ? argv[2] : "authctl");
	} else if (strcmp(argv[0], "flush") == 0 && argc <= 2) {
		rc = cmd_flush(sock, argc == 2 ? argv[1] : NULL);
	} else if (strcmp(argv[0], "cache") == 0 && argc == 1) {
		rc = cmd_cache(sock);
	} else {
		usage();
	}
	config_free(&conf);
	return rc;
}
