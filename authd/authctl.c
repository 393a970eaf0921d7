/*
 * authctl.c - talk to a running authd.
 *
 *   authctl [-s SOCKET | -c CONFIG] test USER [SERVICE]
 *       reads the password from stdin (first line), asks authd, prints
 *       OK/FAIL/TEMPFAIL and the returned fields.
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
	fprintf(stderr, "usage: authctl [-s SOCKET | -c CONFIG] test USER [SERVICE]\n"
		"  test   reads the password from standard input\n");
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

static int cmd_test(const char *sock, const char *user, const char *service)
{
	char pass[AUTH_MAX_PASSWORD + 2];
	char line[AUTHD_MAX_LINE + 1];
	struct proto_line l;
	struct proto_msg m;
	const char *err;
	ssize_t n;
	size_t plen;
	int fd, rc;

	if (fgets(pass, sizeof(pass), stdin) == NULL) {
		fprintf(stderr, "authctl: no password on standard input\n");
		return EX_USAGE_;
	}
	plen = strcspn(pass, "\r\n");
	pass[plen] = '\0';

	fd = sock_unix_connect(sock, false);
	if (fd == -1) {
		fprintf(stderr, "authctl: cannot connect to authd at %s: %s\n", sock,
			strerror(errno));
		sodium_memzero(pass, sizeof(pass));
		return EX_UNAVAIL;
	}
	proto_line_start(&l, "VERSION");
	proto_line_add(&l, "1");
	proto_line_add(&l, "0");
	proto_line_end(&l);
	if (write_all(fd, l.buf, l.len) == -1 ||
	    (n = read_line(fd, line, sizeof(line), AUTHCTL_TIMEOUT_MS)) == -1 ||
	    strncmp(line, "VERSION\t1\t", 10) != 0) {
		fprintf(stderr, "authctl: authd at %s did not complete the handshake\n", sock);
		sodium_memzero(pass, sizeof(pass));
		close(fd);
		return EX_UNAVAIL;
	}
	proto_line_start(&l, "AUTH");
	proto_line_add(&l, "1");
	proto_line_kv(&l, "service", service);
	proto_line_kv(&l, "user", user);
	proto_line_kv(&l, "pass", pass);
	proto_line_kv(&l, "rip", "127.0.0.1");
	sodium_memzero(pass, sizeof(pass));
	if (proto_line_end(&l) == -1) {
		fprintf(stderr, "authctl: user or password too long\n");
		proto_line_wipe(&l);
		close(fd);
		return EX_USAGE_;
	}
	rc = write_all(fd, l.buf, l.len);
	proto_line_wipe(&l);
	if (rc == -1 || (n = read_line(fd, line, sizeof(line), AUTHCTL_TIMEOUT_MS)) == -1) {
		fprintf(stderr, "authctl: no reply from authd\n");
		close(fd);
		return EX_UNAVAIL;
	}
	close(fd);
	if (proto_parse(line, (size_t)n, &m, &err) == -1) {
		fprintf(stderr, "authctl: malformed reply: %s\n", err);
		return EX_UNAVAIL;
	}
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
	} else {
		usage();
	}
	config_free(&conf);
	return rc;
}
