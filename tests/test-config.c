/*
 * test-config.c - unit tests for common/config.c, the INI config loader.
 *
 * Each case writes a small file (mkstemp), loads it, and checks either the
 * values (defaults from the key tables at the top of config.c, which
 * config.h names as the source of truth) or the error, which must name the
 * file, the line and the key (config.c: "errors that name the file, line
 * and key").  Line numbers below are counted by hand from the fragments:
 *
 *     AUTHD   lines 1-3   [authd] socket master-socket
 *     POP3D   lines 4-7   [pop3d] listen auth-socket master-auth-socket
 *     FILES   lines 8-10  [authenticator files] type path
 *
 * so MINIMAL is 10 lines and whatever follows it starts on line 11.  A
 * "section line" is the line of the [header].
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "tests/unit.h"

#define AUTHD "[authd]\nsocket = /run/authd/auth\nmaster-socket = /run/authd/master\n"
#define POP3D "[pop3d]\nlisten = 127.0.0.1:110\nauth-socket = /run/authd/auth\n" \
	"master-auth-socket = /run/authd/master\n"
#define FILES "[authenticator files]\ntype = passwd-file\npath = /etc/pop3d/passwd\n"
#define MINIMAL AUTHD POP3D FILES

static char path[64];
static char err[2048];
static struct config *conf;

/* Writes n bytes of text to a fresh temporary file; its name is in path. */
static void write_file(const char *text, size_t n)
{
	const char *tmp = getenv("TMPDIR");
	int fd;

	snprintf(path, sizeof(path), "%s/test-config-XXXXXX",
		 tmp != NULL && strlen(tmp) < 40 ? tmp : "/tmp");
	fd = mkstemp(path);
	if (fd == -1) {
		perror("mkstemp");
		exit(2);
	}
	if (write(fd, text, n) != (ssize_t)n) {
		perror("write");
		exit(2);
	}
	close(fd);
}

/* Loads text as a config file; conf is the result (freed by the next load),
 * err the message.  The file is removed again.  Every case also goes
 * through config_load_buffer (authd's reload path), which must agree: the
 * same message, or a config with the same values where they are checked
 * most (a few keys from each section and the chain). */
static struct config *load_n(const char *text, size_t n)
{
	static char err2[sizeof(err)];
	struct config *c2;

	config_free(&conf);
	write_file(text, n);
	memset(err, 0, sizeof(err));
	conf = config_load(path, err, sizeof(err));
	memset(err2, 0, sizeof(err2));
	c2 = config_load_buffer(path, (const uint8_t *)text, n, err2, sizeof(err2));
	CHECK((conf == NULL) == (c2 == NULL));
	if (conf == NULL) {
		CHECK_STR(err2, err);
	} else if (c2 != NULL) {
		CHECK_STR(c2->path, conf->path);
		CHECK_STR(c2->authd.socket, conf->authd.socket);
		CHECK_STR(c2->pop3d.greeting, conf->pop3d.greeting);
		CHECK(c2->cache.size == conf->cache.size);
		CHECK(c2->nauths == conf->nauths);
		for (size_t i = 0; i < conf->nauths && i < c2->nauths; i++)
			CHECK_STR(c2->auths[i].name, conf->auths[i].name);
	}
	config_free(&c2);
	unlink(path);
	return conf;
}

static struct config *load(const char *text)
{
	return load_n(text, strlen(text));
}

/* True if err contains every string in the NULL-terminated list. */
static bool err_has_all(va_list ap)
{
	const char *s;

	while ((s = va_arg(ap, const char *)) != NULL)
		if (strstr(err, s) == NULL)
			return false;
	return true;
}

/* The load must fail with "PATH:LINE: ..." (or "PATH: ..." for line 0) and
 * the message must contain each of the given strings.  Reports the
 * detection, the line and the text separately, so a wrong line number and
 * a missed error read differently. */
static void expect_error(int at, const char *text, unsigned line, ...)
{
	char prefix[128];
	va_list ap;
	bool ok;

	if (load(text) != NULL) {
		fprintf(stderr, "  %s:%d: config accepted, expected an error on line %u\n",
			__FILE__, at, line);
		unit_failures_in_test++;
		return;
	}
	if (line > 0)
		snprintf(prefix, sizeof(prefix), "%s:%u: ", path, line);
	else
		snprintf(prefix, sizeof(prefix), "%s: ", path);
	if (strncmp(err, prefix, strlen(prefix)) != 0) {
		fprintf(stderr, "  %s:%d: error does not start with \"%s\": %s\n",
			__FILE__, at, prefix, err);
		unit_failures_in_test++;
	}
	va_start(ap, line);
	ok = err_has_all(ap);
	va_end(ap);
	if (!ok) {
		fprintf(stderr, "  %s:%d: error lacks an expected word: %s\n", __FILE__, at, err);
		unit_failures_in_test++;
	}
}

#define EXPECT_ERROR(text, line, ...) expect_error(__LINE__, text, line, __VA_ARGS__, (char *)NULL)

static void expect_ok(int at, const char *text)
{
	if (load(text) == NULL) {
		fprintf(stderr, "  %s:%d: config refused: %s\n", __FILE__, at, err);
		unit_failures_in_test++;
	}
}

#define EXPECT_OK(text) expect_ok(__LINE__, text)

/* ---- valid files --------------------------------------------------------- */

static void test_minimal_defaults(void)
{
	if (load(MINIMAL) == NULL) {
		fprintf(stderr, "  minimal config refused: %s\n", err);
		CHECK(0);
		return;
	}
	CHECK_STR(conf->path, path);

	CHECK_STR(conf->authd.socket, "/run/authd/auth");
	CHECK_STR(conf->authd.master_socket, "/run/authd/master");
	CHECK_STR(conf->authd.stats_socket, "");
	CHECK_STR(conf->authd.user, "");
	CHECK_STR(conf->authd.log.level, "info");
	CHECK_STR(conf->authd.log.target, "stderr");
	CHECK_STR(conf->authd.log.file, "");
	CHECK_STR(conf->authd.log.syslog_facility, "mail");
	CHECK(!conf->authd.lowercase_usernames);
	CHECK(!conf->authd.strip_domain);
	CHECK_STR(conf->authd.default_domain, "");
	CHECK_INT(conf->authd.ticket_lifetime_ms, 30000);
	CHECK_INT(conf->authd.max_clients, 1024);

	CHECK(conf->cache.enabled);
	CHECK_INT(conf->cache.size, 16 * 1024 * 1024);
	CHECK_INT(conf->cache.positive_ttl_ms, 5 * 60 * 1000);
	CHECK_INT(conf->cache.negative_ttl_ms, 60 * 1000);
	CHECK_INT(conf->cache.stale_ttl_ms, 3600 * 1000);
	CHECK_INT(conf->cache.refresh_ahead_pct, 25);

	CHECK_STR(conf->pop3d.listen, "127.0.0.1:110");
	CHECK_INT(conf->pop3d.nlisten, 1);
	CHECK_STR(conf->pop3d.listen_addrs[0], "127.0.0.1:110");
	CHECK_STR(conf->pop3d.auth_socket, "/run/authd/auth");
	CHECK_STR(conf->pop3d.master_auth_socket, "/run/authd/master");
	CHECK_STR(conf->pop3d.maildrop, "maildir:%h/Maildir");
	CHECK_INT(conf->pop3d.login_processes, 0);
	CHECK_STR(conf->pop3d.login_user, "pop3d");
	CHECK_STR(conf->pop3d.login_chroot, "/var/empty");
	CHECK_STR(conf->pop3d.stats_socket, "");
	CHECK_STR(conf->pop3d.log.level, "info");
	CHECK_STR(conf->pop3d.log.target, "stderr");
	CHECK_STR(conf->pop3d.log.file, "");
	CHECK_STR(conf->pop3d.log.syslog_facility, "mail");
	CHECK_INT(conf->pop3d.preauth_timeout_ms, 60000);
	CHECK_INT(conf->pop3d.session_timeout_ms, 600000);
	CHECK_INT(conf->pop3d.max_connections, 1000);
	CHECK_INT(conf->pop3d.max_connections_per_ip, 20);
	CHECK_INT(conf->pop3d.max_sessions_per_user, 10);
	CHECK_INT(conf->pop3d.session_reuse, 100);
	CHECK_INT(conf->pop3d.session_spares, 128);
	CHECK_INT(conf->pop3d.session_spare_timeout_ms, 30000);
	CHECK_INT(conf->pop3d.first_valid_uid, 1000);
	CHECK_INT(conf->pop3d.auth_failure_delay_ms, 2000);
	CHECK_INT(conf->pop3d.max_auth_failures, 3);
	CHECK_INT(conf->pop3d.max_bad_commands, 10);
	CHECK_STR(conf->pop3d.greeting, "POP3 server ready");
	CHECK(conf->pop3d.user_command);
	CHECK_STR(conf->pop3d.expire, "");
	CHECK_STR(conf->pop3d.login_delay, "");
	CHECK(!conf->pop3d.implementation);

	CHECK_INT(conf->nauths, 1);
	const struct auth_conf *a = &conf->auths[0];

	CHECK_STR(a->name, "files");
	CHECK_INT(a->line, 8);
	CHECK_INT(a->type, AUTH_TYPE_PASSWD_FILE);
	CHECK_STR(a->path, "/etc/pop3d/passwd");
	CHECK(a->program == NULL);
	CHECK(a->argv[0] == NULL);
	CHECK_INT(a->workers, 4);
	CHECK_INT(a->queue_limit, 256);
	CHECK_INT(a->timeout_ms, 5000);
	CHECK(a->cache);
	CHECK_INT(a->hash_concurrency, 2);
	CHECK_INT(a->max_requests, 0);
	CHECK_STR(a->default_uid, "");
	CHECK_STR(a->default_gid, "");
	CHECK_STR(a->default_home, "");
	CHECK_STR(a->default_maildrop, "");

	CHECK(config_find_auth(conf, "files") == a);
	CHECK(config_find_auth(conf, "FILES") == NULL);
	CHECK(config_find_auth(conf, "file") == NULL);
	CHECK(config_find_auth(conf, "") == NULL);
	CHECK_STR(auth_type_name(AUTH_TYPE_PASSWD_FILE), "passwd-file");
	CHECK_STR(auth_type_name(AUTH_TYPE_EXTERNAL), "external");
	CHECK_STR(auth_type_name(AUTH_TYPE_CHECKPASSWORD), "checkpassword");

	config_free(&conf);
	CHECK(conf == NULL);
	config_free(&conf);		/* on NULL: nothing */
}

/* Every key set to a value other than its default lands in its own field
 * (catches a wrong offset in the key tables). */
static void test_every_key(void)
{
	static const char text[] =
		"[authd]\n"
		"socket = /s/auth\n"
		"master-socket = /s/master\n"
		"stats-socket = /s/stats\n"
		"user = authd\n"
		"log-level = debug\n"
		"log-target = file\n"
		"log-file = /var/log/authd.log\n"
		"syslog-facility = local3\n"
		"lowercase-usernames = yes\n"
		"strip-domain = true\n"
		"default-domain = example.org\n"
		"ticket-lifetime = 45s\n"
		"max-clients = 77\n"
		"[cache]\n"
		"enabled = off\n"
		"size = 64K\n"
		"positive-ttl = 7m\n"
		"negative-ttl = 90s\n"
		"stale-ttl = 2h\n"
		"refresh-ahead = 10%\n"
		"[pop3d]\n"
		"listen = 0.0.0.0:110 [::]:995\n"
		"auth-socket = /p/auth\n"
		"master-auth-socket = /p/master\n"
		"maildrop = maildir:/var/mail/%u/Maildir\n"
		"login-processes = 3\n"
		"login-user = nobody\n"
		"login-chroot = /var/lib/empty\n"
		"stats-socket = /p/stats\n"
		"log-level = warn\n"
		"log-target = syslog\n"
		"log-file = /var/log/pop3d.log\n"
		"syslog-facility = daemon\n"
		"preauth-timeout = 30s\n"
		"session-timeout = 1h\n"
		"max-connections = 5000\n"
		"max-connections-per-ip = 4\n"
		"max-sessions-per-user = 2\n"
		"session-reuse = 1\n"
		"session-spares = 0\n"
		"session-spare-timeout = 5s\n"
		"first-valid-uid = 500\n"
		"auth-failure-delay = 1500ms\n"
		"max-auth-failures = 5\n"
		"max-bad-commands = 20\n"
		"greeting = Hi there\n"
		"user-command = no\n"
		"expire = 30\n"
		"login-delay = 60\n"
		"implementation = on\n"
		"[authenticator pw]\n"
		"type = passwd-file\n"
		"path = /etc/pw\n"
		"workers = 8\n"
		"queue-limit = 1000\n"
		"timeout = 2500ms\n"
		"cache = false\n"
		"hash-concurrency = 3\n"
		"default-uid = 5000\n"
		"default-gid = 5001\n"
		"default-home = /home/%u\n"
		"default-maildrop = maildir:/srv/mail/%n\n"
		"[authenticator ext]\n"
		"type = external\n"
		"program = /usr/libexec/helper --flag x\n"
		"max-requests = 1000\n"
		"[authenticator chk]\n"
		"type = checkpassword\n"
		"program = /bin/checkpassword\n";

	if (load(text) == NULL) {
		fprintf(stderr, "  refused: %s\n", err);
		CHECK(0);
		return;
	}
	CHECK_STR(conf->authd.socket, "/s/auth");
	CHECK_STR(conf->authd.master_socket, "/s/master");
	CHECK_STR(conf->authd.stats_socket, "/s/stats");
	CHECK_STR(conf->authd.user, "authd");
	CHECK_STR(conf->authd.log.level, "debug");
	CHECK_STR(conf->authd.log.target, "file");
	CHECK_STR(conf->authd.log.file, "/var/log/authd.log");
	CHECK_STR(conf->authd.log.syslog_facility, "local3");
	CHECK(conf->authd.lowercase_usernames);
	CHECK(conf->authd.strip_domain);
	CHECK_STR(conf->authd.default_domain, "example.org");
	CHECK_INT(conf->authd.ticket_lifetime_ms, 45000);
	CHECK_INT(conf->authd.max_clients, 77);

	CHECK(!conf->cache.enabled);
	CHECK_INT(conf->cache.size, 65536);
	CHECK_INT(conf->cache.positive_ttl_ms, 420000);
	CHECK_INT(conf->cache.negative_ttl_ms, 90000);
	CHECK_INT(conf->cache.stale_ttl_ms, 7200000);
	CHECK_INT(conf->cache.refresh_ahead_pct, 10);

	CHECK_STR(conf->pop3d.listen, "0.0.0.0:110 [::]:995");
	CHECK_INT(conf->pop3d.nlisten, 2);
	CHECK_STR(conf->pop3d.auth_socket, "/p/auth");
	CHECK_STR(conf->pop3d.master_auth_socket, "/p/master");
	CHECK_STR(conf->pop3d.maildrop, "maildir:/var/mail/%u/Maildir");
	CHECK_INT(conf->pop3d.login_processes, 3);
	CHECK_STR(conf->pop3d.login_user, "nobody");
	CHECK_STR(conf->pop3d.login_chroot, "/var/lib/empty");
	CHECK_STR(conf->pop3d.stats_socket, "/p/stats");
	CHECK_STR(conf->pop3d.log.level, "warn");
	CHECK_STR(conf->pop3d.log.target, "syslog");
	CHECK_STR(conf->pop3d.log.file, "/var/log/pop3d.log");
	CHECK_STR(conf->pop3d.log.syslog_facility, "daemon");
	CHECK_INT(conf->pop3d.preauth_timeout_ms, 30000);
	CHECK_INT(conf->pop3d.session_timeout_ms, 3600000);
	CHECK_INT(conf->pop3d.max_connections, 5000);
	CHECK_INT(conf->pop3d.max_connections_per_ip, 4);
	CHECK_INT(conf->pop3d.max_sessions_per_user, 2);
	CHECK_INT(conf->pop3d.session_reuse, 1);
	CHECK_INT(conf->pop3d.session_spares, 0);
	CHECK_INT(conf->pop3d.session_spare_timeout_ms, 5000);
	CHECK_INT(conf->pop3d.first_valid_uid, 500);
	CHECK_INT(conf->pop3d.auth_failure_delay_ms, 1500);
	CHECK_INT(conf->pop3d.max_auth_failures, 5);
	CHECK_INT(conf->pop3d.max_bad_commands, 20);
	CHECK_STR(conf->pop3d.greeting, "Hi there");
	CHECK(!conf->pop3d.user_command);
	CHECK_STR(conf->pop3d.expire, "30");
	CHECK_STR(conf->pop3d.login_delay, "60");
	CHECK(conf->pop3d.implementation);

	CHECK_INT(conf->nauths, 3);
	const struct auth_conf *a = &conf->auths[0];

	CHECK_STR(a->name, "pw");
	CHECK_INT(a->type, AUTH_TYPE_PASSWD_FILE);
	CHECK_STR(a->path, "/etc/pw");
	CHECK_INT(a->workers, 8);
	CHECK_INT(a->queue_limit, 1000);
	CHECK_INT(a->timeout_ms, 2500);
	CHECK(!a->cache);
	CHECK_INT(a->hash_concurrency, 3);
	CHECK_STR(a->default_uid, "5000");
	CHECK_STR(a->default_gid, "5001");
	CHECK_STR(a->default_home, "/home/%u");
	CHECK_STR(a->default_maildrop, "maildir:/srv/mail/%n");

	a = &conf->auths[1];
	CHECK_STR(a->name, "ext");
	CHECK_INT(a->type, AUTH_TYPE_EXTERNAL);
	CHECK_STR(a->program, "/usr/libexec/helper --flag x");
	CHECK_STR(a->argv[0], "/usr/libexec/helper");
	CHECK_STR(a->argv[1], "--flag");
	CHECK_STR(a->argv[2], "x");
	CHECK(a->argv[3] == NULL);
	CHECK_INT(a->max_requests, 1000);
	CHECK(a->path == NULL);
	CHECK_INT(a->workers, 4);	/* defaults per authenticator */
	CHECK(a->cache);

	a = &conf->auths[2];
	CHECK_STR(a->name, "chk");
	CHECK_INT(a->type, AUTH_TYPE_CHECKPASSWORD);
	CHECK_STR(a->argv[0], "/bin/checkpassword");
	CHECK(a->argv[1] == NULL);
}

static void test_value_forms(void)
{
	/* every boolean spelling */
	static const char *const yes[] = { "yes", "true", "on" };
	static const char *const no[] = { "no", "false", "off" };
	char text[512];

	for (size_t i = 0; i < 3; i++) {
		snprintf(text, sizeof(text), AUTHD "strip-domain = %s\n" POP3D FILES, yes[i]);
		if (load(text) != NULL)
			CHECK(conf->authd.strip_domain);
		else
			CHECK(!"boolean yes refused");
		snprintf(text, sizeof(text), AUTHD POP3D "user-command = %s\n" FILES, no[i]);
		if (load(text) != NULL)
			CHECK(!conf->pop3d.user_command);
		else
			CHECK(!"boolean no refused");
	}

	/* range ends are inclusive */
	EXPECT_OK(AUTHD "max-clients = 1\n" POP3D FILES);
	EXPECT_OK(AUTHD "max-clients = 65536\n" POP3D FILES);
	EXPECT_OK(AUTHD "ticket-lifetime = 100ms\n" POP3D FILES);
	EXPECT_OK(AUTHD "ticket-lifetime = 10m\n" POP3D FILES);
	EXPECT_OK(MINIMAL "[cache]\nsize = 64K\n");
	EXPECT_OK(MINIMAL "[cache]\nsize = 16G\n");
	EXPECT_OK(MINIMAL "[cache]\npositive-ttl = 168h\nnegative-ttl = 0\nstale-ttl = 0s\n");
	EXPECT_OK(MINIMAL "[cache]\nrefresh-ahead = 0\n");
	EXPECT_OK(MINIMAL "[cache]\nrefresh-ahead = 100%\n");
	EXPECT_OK(AUTHD POP3D "first-valid-uid = 4294967294\n" FILES);
	EXPECT_OK(AUTHD POP3D "login-processes = 256\n" FILES);
	EXPECT_OK(MINIMAL "workers = 256\ntimeout = 10ms\n");
	EXPECT_OK(AUTHD "log-level = warning\n" POP3D FILES);	/* log.c alias */

	/* blanks around the key and the value are not part of them */
	if (load(AUTHD POP3D "   greeting   =    Hello  world   \n" FILES) != NULL)
		CHECK_STR(conf->pop3d.greeting, "Hello  world");
	else
		CHECK(!"padded key refused");

	/* an empty optional string is allowed and stays empty */
	if (load(AUTHD "default-domain =\n" POP3D FILES) != NULL)
		CHECK_STR(conf->authd.default_domain, "");
	else
		CHECK(!"empty optional value refused");

	/* last line without LF, and a UTF-8 byte order mark */
	EXPECT_OK(AUTHD POP3D "[authenticator files]\ntype = passwd-file\npath = /x");
	EXPECT_OK("\xef\xbb\xbf" MINIMAL);
}

static void test_crlf(void)
{
	static const char text[] =
		"[authd]\r\nsocket = /run/a\r\nmaster-socket = /run/m\r\n"
		"[pop3d]\r\nlisten = 127.0.0.1:110\r\nauth-socket = /run/a\r\n"
		"master-auth-socket = /run/m\r\ngreeting = crlf ok\r\n"
		"[authenticator files]\r\ntype = passwd-file\r\npath = /etc/p\r\n";

	if (load(text) == NULL) {
		fprintf(stderr, "  refused: %s\n", err);
		CHECK(0);
		return;
	}
	CHECK_STR(conf->authd.socket, "/run/a");
	CHECK_STR(conf->pop3d.greeting, "crlf ok");	/* no CR kept */
	CHECK_STR(conf->auths[0].path, "/etc/p");
}

static void test_comments_and_verbatim(void)
{
	static const char text[] =
		"# leading comment\n"
		"; another\n"
		"\n"
		"[authd]\n"
		"# socket = /evil\n"
		"socket = /run/authd/auth\n"
		"  ; indented comment\n"
		"\t# tab-indented comment\n"
		"master-socket = /run/authd/master\n"
		";master-socket = /evil\n"
		"default-domain = example.org ; not a comment\n"
		"[pop3d]\n"
		"listen = 127.0.0.1:110\n"
		"auth-socket = /run/authd/auth\n"
		"master-auth-socket = /run/authd/master\n"
		"greeting = Hello ; world # and more;#\n"
		"maildrop = maildir:/srv/#mail;x\n"
		"tls-groups = #5\n"
		"tls-ciphersuites = ;7\n"
		"#greeting = overridden?\n"
		"[authenticator files]\n"
		"type = passwd-file\n"
		"path = /etc/pop3d/passwd#1\n"
		"default-home = /home/a;b\n"
		"# trailing comment\n";

	if (load(text) == NULL) {
		fprintf(stderr, "  refused: %s\n", err);
		CHECK(0);
		return;
	}
	CHECK_STR(conf->authd.socket, "/run/authd/auth");
	CHECK_STR(conf->authd.master_socket, "/run/authd/master");
	CHECK_STR(conf->authd.default_domain, "example.org ; not a comment");
	CHECK_STR(conf->pop3d.greeting, "Hello ; world # and more;#");
	CHECK_STR(conf->pop3d.maildrop, "maildir:/srv/#mail;x");
	CHECK_STR(conf->pop3d.tls_groups, "#5");
	CHECK_STR(conf->pop3d.tls_ciphersuites, ";7");
	CHECK_STR(conf->auths[0].path, "/etc/pop3d/passwd#1");
	CHECK_STR(conf->auths[0].default_home, "/home/a;b");
}

static void test_listen_list(void)
{
	static const char *const want[] = {
		"127.0.0.1:110", "[::1]:110", "0.0.0.0:995", "*:1",
	};
	char text[2048], list[1024];
	size_t n;

	if (load(AUTHD "[pop3d]\nlisten = 127.0.0.1:110, [::1]:110\t0.0.0.0:995 ,  ,*:1\n"
		 "auth-socket = /a\nmaster-auth-socket = /m\n" FILES) == NULL) {
		fprintf(stderr, "  refused: %s\n", err);
		CHECK(0);
	} else {
		CHECK_STR(conf->pop3d.listen, "127.0.0.1:110, [::1]:110\t0.0.0.0:995 ,  ,*:1");
		CHECK_INT(conf->pop3d.nlisten, 4);
		for (size_t i = 0; i < 4 && i < conf->pop3d.nlisten; i++)
			CHECK_STR(conf->pop3d.listen_addrs[i], want[i]);
	}

	/* CONFIG_MAX_LISTEN entries; one more is an error naming the key on
	 * its line (listen is not the section's first key here) */
	list[0] = '\0';
	for (n = 0; n < CONFIG_MAX_LISTEN; n++) {
		size_t len = strlen(list);

		snprintf(list + len, sizeof(list) - len, "%s10.0.0.%zu:110", n ? "," : "", n);
	}
	snprintf(text, sizeof(text), AUTHD "[pop3d]\nauth-socket = /a\nlisten = %s\n"
		 "master-auth-socket = /m\n" FILES, list);
	if (load(text) == NULL) {
		fprintf(stderr, "  %d listen entries refused: %s\n", CONFIG_MAX_LISTEN, err);
		CHECK(0);
	} else {
		CHECK_INT(conf->pop3d.nlisten, CONFIG_MAX_LISTEN);
		CHECK_STR(conf->pop3d.listen_addrs[CONFIG_MAX_LISTEN - 1], "10.0.0.15:110");
	}
	snprintf(text, sizeof(text), AUTHD "[pop3d]\nauth-socket = /a\nlisten = %s,x:1\n"
		 "master-auth-socket = /m\n" FILES, list);
	EXPECT_ERROR(text, 6, "listen");

	/* nothing but separators */
	EXPECT_ERROR(AUTHD "[pop3d]\nauth-socket = /a\nlisten = , ,\n"
		     "master-auth-socket = /m\n" FILES, 6, "listen");
	EXPECT_ERROR(AUTHD "[pop3d]\nauth-socket = /a\nlisten =\n"
		     "master-auth-socket = /m\n" FILES, 6, "listen");
}

static void test_chain_order(void)
{
	static const char text[] =
		AUTHD POP3D
		"[authenticator zeta]\n"		/* 8 */
		"type = external\n"
		"program = /bin/z\n"
		"\n"
		"[authenticator alpha]\n"		/* 12 */
		"# a comment before the first key\n"
		"type = passwd-file\n"
		"path = /etc/a\n"
		"[authenticator   mid_1-x]\n"		/* 16 */
		"type = checkpassword\n"
		"program = /bin/c a b\n";

	if (load(text) == NULL) {
		fprintf(stderr, "  refused: %s\n", err);
		CHECK(0);
		return;
	}
	CHECK_INT(conf->nauths, 3);
	CHECK_STR(conf->auths[0].name, "zeta");
	CHECK_STR(conf->auths[1].name, "alpha");
	CHECK_STR(conf->auths[2].name, "mid_1-x");
	CHECK_INT(conf->auths[0].type, AUTH_TYPE_EXTERNAL);
	CHECK_INT(conf->auths[1].type, AUTH_TYPE_PASSWD_FILE);
	CHECK_INT(conf->auths[2].type, AUTH_TYPE_CHECKPASSWORD);
	/* config.h: line "of the section header" */
	CHECK_INT(conf->auths[0].line, 8);
	CHECK_INT(conf->auths[1].line, 12);
	CHECK_INT(conf->auths[2].line, 16);
	CHECK(config_find_auth(conf, "alpha") == &conf->auths[1]);
	CHECK(config_find_auth(conf, "mid_1-x") == &conf->auths[2]);
}

static void test_many_authenticators(void)
{
	char text[8192];
	size_t len;

	/* CONFIG_MAX_AUTHENTICATORS is fine */
	snprintf(text, sizeof(text), AUTHD POP3D);
	for (int i = 0; i < CONFIG_MAX_AUTHENTICATORS; i++) {
		len = strlen(text);
		snprintf(text + len, sizeof(text) - len,
			 "[authenticator a%d]\ntype = passwd-file\npath = /p%d\n", i, i);
	}
	if (load(text) == NULL) {
		fprintf(stderr, "  refused: %s\n", err);
		CHECK(0);
	} else {
		CHECK_INT(conf->nauths, CONFIG_MAX_AUTHENTICATORS);
		CHECK_STR(conf->auths[CONFIG_MAX_AUTHENTICATORS - 1].name, "a15");
		CHECK_STR(conf->auths[CONFIG_MAX_AUTHENTICATORS - 1].path, "/p15");
	}

	/* one more: the error is on its header, 7 + 16 * 3 + 1 */
	len = strlen(text);
	snprintf(text + len, sizeof(text) - len,
		 "[authenticator extra]\ntype = passwd-file\npath = /p\n");
	EXPECT_ERROR(text, 7 + CONFIG_MAX_AUTHENTICATORS * 3 + 1, "authenticators", "16");
}

static void test_program_argv(void)
{
	char text[4096], words[2048];

	if (load(MINIMAL "[authenticator e]\ntype = external\n"
		 "program =   /usr/bin/helper  -a\t\tb   c  \n") == NULL) {
		fprintf(stderr, "  refused: %s\n", err);
		CHECK(0);
	} else {
		const struct auth_conf *a = &conf->auths[1];

		CHECK_STR(a->argv[0], "/usr/bin/helper");
		CHECK_STR(a->argv[1], "-a");
		CHECK_STR(a->argv[2], "b");
		CHECK_STR(a->argv[3], "c");
		CHECK(a->argv[4] == NULL);
		CHECK_STR(a->program, "/usr/bin/helper  -a\t\tb   c");
	}

	/* a command and CONFIG_MAX_ARGS - 1 arguments */
	words[0] = '\0';
	for (int i = 1; i < CONFIG_MAX_ARGS; i++) {
		size_t len = strlen(words);

		snprintf(words + len, sizeof(words) - len, " a%d", i);
	}
	snprintf(text, sizeof(text), MINIMAL "[authenticator e]\ntype = external\n"
		 "program = /bin/h%s\n", words);
	if (load(text) == NULL) {
		fprintf(stderr, "  %d words refused: %s\n", CONFIG_MAX_ARGS, err);
		CHECK(0);
	} else {
		CHECK_STR(conf->auths[1].argv[CONFIG_MAX_ARGS - 1], "a31");
		CHECK(conf->auths[1].argv[CONFIG_MAX_ARGS] == NULL);
	}
}

/* One argument too many.  Run in a child: the error path has crashed
 * (double free), and a crash must fail this test, not end the run. */
static void test_program_too_many_args(void)
{
	char text[4096], words[2048];
	pid_t pid;
	int status;

	words[0] = '\0';
	for (int i = 1; i <= CONFIG_MAX_ARGS; i++) {
		size_t len = strlen(words);

		snprintf(words + len, sizeof(words) - len, " a%d", i);
	}
	snprintf(text, sizeof(text), MINIMAL "[authenticator e]\ntype = external\n"
		 "program = /bin/h%s\n", words);
	fflush(NULL);
	pid = fork();
	if (pid == -1) {
		perror("fork");
		CHECK(0);
		return;
	}
	if (pid == 0) {
		bool ok = load(text) == NULL && strstr(err, "program") != NULL &&
			strncmp(err, path, strlen(path)) == 0;

		if (!ok)
			fprintf(stderr, "  %d arguments: %s\n", CONFIG_MAX_ARGS,
				conf != NULL ? "accepted" : err);
		_exit(ok ? 0 : 1);
	}
	if (waitpid(pid, &status, 0) == -1) {
		perror("waitpid");
		CHECK(0);
		return;
	}
	if (WIFSIGNALED(status))
		fprintf(stderr, "  config_load crashed with signal %d on a program with "
			"%d arguments\n", WTERMSIG(status), CONFIG_MAX_ARGS);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- errors ----------------------------------------------------------- */

static void test_error_unknown_key(void)
{
	EXPECT_ERROR(AUTHD "bogus = 1\n" POP3D FILES, 4, "bogus", "authd");
	EXPECT_ERROR(AUTHD POP3D "bogus = 1\n" FILES, 8, "bogus", "pop3d");
	EXPECT_ERROR(MINIMAL "bogus = 1\n", 11, "bogus", "files");
	EXPECT_ERROR(MINIMAL "[cache]\nbogus = 1\n", 12, "bogus", "cache");
	/* a key of another section */
	EXPECT_ERROR(AUTHD POP3D "ticket-lifetime = 5s\n" FILES, 8, "ticket-lifetime");
	EXPECT_ERROR(AUTHD "greeting = hi\n" POP3D FILES, 4, "greeting");
	EXPECT_ERROR(AUTHD "type = external\n" POP3D FILES, 4, "type");
	/* keys are case-sensitive, no underscores for dashes */
	EXPECT_ERROR(AUTHD "Socket = /x\n" POP3D FILES, 4, "Socket");
	EXPECT_ERROR(AUTHD "max_clients = 5\n" POP3D FILES, 4, "max_clients");
}

static void test_error_unknown_section(void)
{
	/* the error names the section on its header line */
	EXPECT_ERROR(MINIMAL "[bogus]\nx = 1\n", 11, "bogus");
	EXPECT_ERROR(MINIMAL "\n[bogus]\n# comment\nx = 1\n", 12, "bogus");
	EXPECT_ERROR("[AUTHD]\nsocket = /x\n" POP3D FILES, 1, "AUTHD");
	EXPECT_ERROR("[ authd ]\nsocket = /x\n" POP3D FILES, 1, " authd ");
	EXPECT_ERROR(MINIMAL "[authenticator]\ntype = passwd-file\n", 11, "authenticator");
	/* a misspelt section is a mistake even before it holds a key */
	EXPECT_ERROR(MINIMAL "[cahce]\n", 11, "cahce");
}

static void test_error_duplicate_key(void)
{
	EXPECT_ERROR(AUTHD "socket = /other\n" POP3D FILES, 4, "socket", "line 2");
	EXPECT_ERROR(AUTHD POP3D "greeting = a\n\ngreeting = b\n" FILES, 10, "greeting", "line 8");
	EXPECT_ERROR(MINIMAL "type = external\n", 11, "type", "line 9");
	EXPECT_ERROR(MINIMAL "[cache]\nsize = 1M\nsize = 1M\n", 13, "size", "line 12");
	/* the same value twice is still twice */
	EXPECT_ERROR(MINIMAL "path = /etc/pop3d/passwd\n", 11, "path");
}

static void test_error_duplicate_section(void)
{
	/* reopened later */
	EXPECT_ERROR(MINIMAL "[authd]\nuser = x\n", 11, "authd", "twice");
	EXPECT_ERROR(MINIMAL "[cache]\nsize = 1M\n[cache]\nenabled = no\n", 13, "cache");
	/* reopened straight away, with different keys (nothing "set twice") */
	EXPECT_ERROR(AUTHD "[authd]\nuser = x\n" POP3D FILES, 4, "authd", "twice");
	EXPECT_ERROR(AUTHD POP3D "[pop3d]\ngreeting = x\n" FILES, 8, "pop3d", "twice");
	/* an authenticator name used twice */
	EXPECT_ERROR(MINIMAL "[authenticator files]\ntype = passwd-file\npath = /b\n", 11, "files");
	EXPECT_ERROR(MINIMAL "[authenticator   files]\ntype = passwd-file\npath = /b\n", 11,
		     "files");
}

static void test_error_missing_required(void)
{
	/* on the section's header line, naming the key */
	EXPECT_ERROR("[authd]\nmaster-socket = /m\n" POP3D FILES, 1, "socket");
	EXPECT_ERROR("[authd]\nsocket = /s\n" POP3D FILES, 1, "master-socket");
	EXPECT_ERROR(AUTHD "[pop3d]\nauth-socket = /a\nmaster-auth-socket = /m\n" FILES,
		     4, "listen");
	EXPECT_ERROR(AUTHD "[pop3d]\nlisten = x:1\nmaster-auth-socket = /m\n" FILES,
		     4, "auth-socket");
	EXPECT_ERROR(AUTHD "[pop3d]\nlisten = 127.0.0.1:1\nauth-socket = /a\n" FILES,
		     4, "master-auth-socket");
	EXPECT_ERROR(AUTHD POP3D "[authenticator f]\ntype = passwd-file\n", 8, "path");
	EXPECT_ERROR(AUTHD POP3D "[authenticator e]\ntype = external\n", 8, "program");
	EXPECT_ERROR(AUTHD POP3D "[authenticator c]\ntype = checkpassword\n", 8, "program");
	EXPECT_ERROR(AUTHD POP3D "[authenticator f]\n# no type\npath = /x\n", 8, "type");

	/* whole sections (no line to name) */
	EXPECT_ERROR(POP3D FILES, 0, "[authd]");
	EXPECT_ERROR(AUTHD FILES, 0, "[pop3d]");
	EXPECT_ERROR(AUTHD POP3D, 0, "authenticator");
	EXPECT_ERROR("", 0, "[authd]");
	EXPECT_ERROR("# only a comment\n", 0, "[authd]");
}

static void test_error_bad_values(void)
{
	static const struct { const char *key, *value; } authd_bad[] = {
		{ "max-clients", "0" }, { "max-clients", "65537" }, { "max-clients", "abc" },
		{ "max-clients", "-1" }, { "max-clients", "1 0" }, { "max-clients", "" },
		{ "max-clients", "18446744073709551616" }, { "max-clients", "4294967297" },
		{ "ticket-lifetime", "99ms" }, { "ticket-lifetime", "601s" },
		{ "ticket-lifetime", "10x" }, { "ticket-lifetime", "5 s" },
		{ "ticket-lifetime", "" }, { "ticket-lifetime", "-5s" },
		{ "lowercase-usernames", "maybe" }, { "lowercase-usernames", "YES" },
		{ "lowercase-usernames", "1" }, { "lowercase-usernames", "" },
		{ "strip-domain", "y" }, { "log-level", "loud" }, { "log-level", "INFO" },
		{ "log-level", "notice" }, { "log-target", "pipe" }, { "log-target", "" },
		{ "syslog-facility", "local8" }, { "syslog-facility", "LOCAL0" },
		{ "syslog-facility", "kern" },
	};
	static const struct { const char *key, *value; } cache_bad[] = {
		{ "size", "63K" }, { "size", "65535" }, { "size", "17G" }, { "size", "16Q" },
		{ "size", "16 M" }, { "size", "-1" }, { "positive-ttl", "169h" },
		{ "positive-ttl", "1d" }, { "negative-ttl", "x" }, { "stale-ttl", "604800001ms" },
		{ "refresh-ahead", "101%" }, { "refresh-ahead", "50%%" }, { "refresh-ahead", "-1" },
		{ "enabled", "2" },
	};
	static const struct { const char *key, *value; } pop3d_bad[] = {
		{ "login-processes", "257" }, { "first-valid-uid", "0" },
		{ "first-valid-uid", "4294967295" }, { "preauth-timeout", "999ms" },
		{ "preauth-timeout", "61m" }, { "session-timeout", "25h" },
		{ "auth-failure-delay", "61s" }, { "max-auth-failures", "101" },
		{ "max-auth-failures", "0" }, { "max-bad-commands", "1001" },
		{ "max-connections", "0" }, { "max-connections-per-ip", "1000001" },
		{ "max-sessions-per-user", "100001" }, { "user-command", "nope" },
		{ "implementation", "True" }, { "session-reuse", "0" },
		{ "session-spares", "10001" }, { "session-spare-timeout", "999ms" },
	};
	static const struct { const char *key, *value; } auth_bad[] = {
		{ "workers", "0" }, { "workers", "257" }, { "queue-limit", "0" },
		{ "queue-limit", "1000001" }, { "timeout", "9ms" }, { "timeout", "601s" },
		{ "timeout", "5" "x" }, { "cache", "sometimes" }, { "hash-concurrency", "0" },
		{ "hash-concurrency", "257" },
	};
	char text[1024];

	for (size_t i = 0; i < sizeof(authd_bad) / sizeof(authd_bad[0]); i++) {
		snprintf(text, sizeof(text), AUTHD "%s = %s\n" POP3D FILES,
			 authd_bad[i].key, authd_bad[i].value);
		EXPECT_ERROR(text, 4, authd_bad[i].key, authd_bad[i].value);
	}
	for (size_t i = 0; i < sizeof(cache_bad) / sizeof(cache_bad[0]); i++) {
		snprintf(text, sizeof(text), MINIMAL "[cache]\n\n%s = %s\n",
			 cache_bad[i].key, cache_bad[i].value);
		EXPECT_ERROR(text, 13, cache_bad[i].key, cache_bad[i].value);
	}
	for (size_t i = 0; i < sizeof(pop3d_bad) / sizeof(pop3d_bad[0]); i++) {
		snprintf(text, sizeof(text), AUTHD POP3D "%s = %s\n" FILES,
			 pop3d_bad[i].key, pop3d_bad[i].value);
		EXPECT_ERROR(text, 8, pop3d_bad[i].key, pop3d_bad[i].value);
	}
	for (size_t i = 0; i < sizeof(auth_bad) / sizeof(auth_bad[0]); i++) {
		snprintf(text, sizeof(text), MINIMAL "%s = %s\n",
			 auth_bad[i].key, auth_bad[i].value);
		EXPECT_ERROR(text, 11, auth_bad[i].key, auth_bad[i].value);
	}
	EXPECT_ERROR(MINIMAL "[authenticator e]\ntype = external\nprogram = /x\n"
		     "max-requests = 100000001\n", 14, "max-requests");
}

static void test_error_not_applicable(void)
{
	EXPECT_ERROR(MINIMAL "[authenticator e]\ntype = external\nprogram = /bin/x\n"
		     "hash-concurrency = 2\n", 14, "hash-concurrency", "does not apply");
	EXPECT_ERROR(MINIMAL "[authenticator e]\ntype = external\nprogram = /bin/x\n"
		     "path = /etc/p\n", 14, "path", "does not apply");
	EXPECT_ERROR(MINIMAL "max-requests = 5\n", 11, "max-requests", "does not apply");
	EXPECT_ERROR(MINIMAL "program = /bin/x\n", 11, "program", "does not apply");
	EXPECT_ERROR(MINIMAL "[authenticator c]\ntype = checkpassword\nprogram = /bin/x\n"
		     "max-requests = 5\n", 14, "max-requests", "does not apply");
	EXPECT_ERROR(MINIMAL "[authenticator c]\ntype = checkpassword\nprogram = /bin/x\n"
		     "hash-concurrency = 1\n", 14, "hash-concurrency");
	/* even with a value that would be invalid anyway */
	EXPECT_ERROR(MINIMAL "[authenticator e]\ntype = external\nprogram = /bin/x\n"
		     "hash-concurrency = 0\n", 14, "hash-concurrency");
}

static void test_error_type(void)
{
	EXPECT_ERROR(MINIMAL "[authenticator l]\n\ntype = kerberos5\n", 13, "type", "kerberos5");
	EXPECT_ERROR(MINIMAL "[authenticator l]\ntype = Passwd-File\n", 12, "type");
	EXPECT_ERROR(MINIMAL "[authenticator l]\ntype =\n", 12, "type");
	EXPECT_ERROR(MINIMAL "[authenticator l]\ntype = passwd-file \\\n", 12, "type");
	/* missing type: on the header line */
	EXPECT_ERROR(MINIMAL "[authenticator l]\nworkers = 2\n", 11, "type");
}

/* The name limit is config.c's (it follows the cache's authenticator field,
 * so it may change): read it from the loader's own message, then check
 * both sides of it. */
static void test_error_auth_name(void)
{
	char text[1024], name[64];
	const char *p;
	unsigned max = 0;

	EXPECT_ERROR(MINIMAL "[authenticator ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh0]\n"
		     "type = passwd-file\npath = /x\n", 11, "authenticator names are 1-");
	p = strstr(err, "names are 1-");
	if (p == NULL || sscanf(p, "names are 1-%u", &max) != 1 || max < 8 || max > 32) {
		fprintf(stderr, "  no usable name limit in: %s\n", err);
		CHECK(0);
		return;
	}
	/* max characters, every allowed kind: fine */
	for (unsigned i = 0; i < max; i++)
		name[i] = "Az09-_"[i % 6];
	name[max] = '\0';
	snprintf(text, sizeof(text), MINIMAL "[authenticator %s]\ntype = passwd-file\n"
		 "path = /x\n", name);
	if (load(text) == NULL) {
		fprintf(stderr, "  %u-character name refused: %s\n", max, err);
		CHECK(0);
	} else {
		CHECK_STR(conf->auths[1].name, name);
	}
	/* one more: refused on the header line, naming it */
	name[max] = 'x';
	name[max + 1] = '\0';
	snprintf(text, sizeof(text), MINIMAL "[authenticator %s]\ntype = passwd-file\n"
		 "path = /x\n", name);
	EXPECT_ERROR(text, 11, name);

	static const char *const bad[] = {
		"bad.name", "a b", "a/b", "a:b", "caf\xc3\xa9", "x ", "a=b",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), MINIMAL "[authenticator %s]\n\n"
			 "type = passwd-file\npath = /x\n", bad[i]);
		EXPECT_ERROR(text, 11, "authenticator", bad[i]);
	}
	/* an empty name */
	EXPECT_ERROR(MINIMAL "[authenticator ]\ntype = passwd-file\npath = /x\n", 11,
		     "authenticator");
	EXPECT_ERROR(MINIMAL "[authenticator    ]\ntype = passwd-file\npath = /x\n", 11,
		     "authenticator");
}

static void test_error_program(void)
{
	/* named by key, on the key's line */
	EXPECT_ERROR(MINIMAL "[authenticator e]\ntype = external\nworkers = 1\n"
		     "program = bin/helper\n", 14, "program", "absolute");
	EXPECT_ERROR(MINIMAL "[authenticator e]\ntype = checkpassword\nworkers = 1\n"
		     "program = ./check /x\n", 14, "program");
	EXPECT_ERROR(MINIMAL "[authenticator e]\ntype = external\nworkers = 1\n"
		     "program = \n", 14, "program");
	EXPECT_ERROR(MINIMAL "default-uid = abc\n", 11, "default-uid");
	EXPECT_ERROR(MINIMAL "default-gid = -1\n", 11, "default-gid");
	EXPECT_ERROR(MINIMAL "default-uid = 4294967295\n", 11, "default-uid");
	EXPECT_OK(MINIMAL "default-uid = 0\ndefault-gid = 4294967294\n");
}

static void test_error_log_file(void)
{
	EXPECT_ERROR("[authd]\nsocket = /s\nmaster-socket = /m\nlog-target = file\n" POP3D FILES,
		     1, "log-file");
	EXPECT_ERROR(AUTHD "[pop3d]\nlisten = 127.0.0.1:1\nauth-socket = /a\n"
		     "master-auth-socket = /m\nlog-target = file\n" FILES, 4, "log-file");
	EXPECT_OK(AUTHD "log-target = file\nlog-file = /var/log/a\n" POP3D FILES);
}

/* A line of exactly n bytes before its terminator: "tls-ciphers = xxx..."
 * (a key config.c sets no length limit on; greeting has one of its own). */
static char *long_line_config(size_t n, const char *eol)
{
	static char text[16384];
	char line[8192];

	memcpy(line, "tls-ciphers = ", 14);
	memset(line + 14, 'g', n - 14);
	line[n] = '\0';
	snprintf(text, sizeof(text), AUTHD POP3D "%s%s" FILES, line, eol);
	return text;
}

static void test_long_lines(void)
{
	/* the limit config.c announces: "line longer than 4093 bytes" */
	static const size_t ok_len[] = { 198, 199, 200, 255, 256, 1000, 4093 };

	for (size_t i = 0; i < sizeof(ok_len) / sizeof(ok_len[0]); i++) {
		if (load(long_line_config(ok_len[i], "\n")) == NULL) {
			fprintf(stderr, "  line of %zu bytes refused: %s\n", ok_len[i], err);
			CHECK(0);
		} else {
			CHECK_INT(strlen(conf->pop3d.tls_ciphers), ok_len[i] - 14);
		}
		if (load(long_line_config(ok_len[i], "\r\n")) == NULL) {
			fprintf(stderr, "  CRLF line of %zu bytes refused: %s\n", ok_len[i], err);
			CHECK(0);
		}
	}
	/* longer: an error on that line, and the file is not read on */
	EXPECT_ERROR(long_line_config(4094, "\r\n"), 8, "line", "4093");
	EXPECT_ERROR(long_line_config(4095, "\n"), 8, "line", "4093");
	EXPECT_ERROR(long_line_config(4096, "\n"), 8, "line");
	EXPECT_ERROR(long_line_config(8000, "\n"), 8, "line");
	/* a long comment line counts too */
	static char text[8192];

	memset(text, '#', 5000);
	text[5000] = '\0';
	strcat(text, "\n" MINIMAL);
	EXPECT_ERROR(text, 1, "line");
}

static void test_error_outside_section(void)
{
	EXPECT_ERROR("user = x\n" MINIMAL, 1, "user", "outside");
	EXPECT_ERROR("# c\n; c\n\nsocket = /x\n" MINIMAL, 4, "socket", "outside");
	EXPECT_ERROR("bogus = 1\n" MINIMAL, 1, "bogus");
}

static void test_error_syntax(void)
{
	EXPECT_ERROR(AUTHD "this line has no equals sign\n" POP3D FILES, 4, "syntax");
	EXPECT_ERROR(AUTHD POP3D "[authenticator x\n", 8, "syntax");
	/* continuation lines are off: an indented line is not appended */
	EXPECT_ERROR(AUTHD POP3D "greeting = hello\n  world\n" FILES, 9, "syntax");
	/* missing file */
	config_free(&conf);
	conf = config_load("/nonexistent/dir/pop3d.conf", err, sizeof(err));
	CHECK(conf == NULL);
	CHECK(strncmp(err, "/nonexistent/dir/pop3d.conf: ", 29) == 0);
	CHECK(strstr(err, "No such file") != NULL);
}

/* config_load_buffer: an empty buffer, and exactly len bytes read. */
static void test_load_buffer(void)
{
	static const char text[] = AUTHD POP3D "greeting = hi\n" FILES;
	struct config *c;

	c = config_load_buffer("/etc/x.conf", (const uint8_t *)"", 0, err, sizeof(err));
	CHECK(c == NULL);
	CHECK(strstr(err, "/etc/x.conf: ") == err && strstr(err, "[authd]") != NULL);
	c = config_load_buffer("/etc/x.conf", (const uint8_t *)text, sizeof(text) - 1, err,
			       sizeof(err));
	CHECK(c != NULL);
	if (c != NULL) {
		CHECK_STR(c->path, "/etc/x.conf");
		CHECK_STR(c->pop3d.greeting, "hi");
	}
	config_free(&c);
	/* not NUL-terminated: only len bytes are read */
	c = config_load_buffer("/etc/x.conf", (const uint8_t *)MINIMAL "bogus = 1\n",
			       strlen(MINIMAL), err, sizeof(err));
	CHECK(c != NULL);
	config_free(&c);
}

static void test_error_buffer_small(void)
{
	char small[24];

	write_file(AUTHD "bogus = 1\n" POP3D FILES, strlen(AUTHD "bogus = 1\n" POP3D FILES));
	memset(small, 'Z', sizeof(small));
	CHECK(config_load(path, small, 16) == NULL);
	CHECK(memchr(small, '\0', 16) != NULL);		/* terminated within size */
	CHECK(small[16] == 'Z');			/* nothing written past it */
	CHECK(strncmp(small, path, 15) == 0);
	memset(small, 'Z', sizeof(small));
	CHECK(config_load(path, small, 1) == NULL);
	CHECK(small[0] == '\0' && small[1] == 'Z');
	unlink(path);
}

static void test_check_private(void)
{
	char logpath[64], buf[1024];
	int fd;
	ssize_t n;

	/* log to a file so the warning can be read back */
	snprintf(logpath, sizeof(logpath), "/tmp/test-config-log-XXXXXX");
	fd = mkstemp(logpath);
	if (fd == -1) {
		perror("mkstemp");
		CHECK(0);
		return;
	}
	close(fd);
	CHECK_INT(log_init("test-config", LOG_LEVEL_INFO, LOG_TARGET_FILE, logpath, 0), 0);

	write_file("x", 1);
	CHECK_INT(chmod(path, 0600), 0);
	config_check_private("config file", path);
	CHECK_INT(chmod(path, 0640), 0);
	config_check_private("config file", path);
	CHECK_INT(chmod(path, 0644), 0);
	config_check_private("config file", path);	/* this one warns */
	CHECK_INT(chmod(path, 0602), 0);
	config_check_private("config file", path);	/* and this one */
	config_check_private("config file", "/nonexistent/file");	/* silent */
	unlink(path);

	log_init("test-config", LOG_LEVEL_INFO, LOG_TARGET_STDERR, NULL, 0);
	fd = open(logpath, O_RDONLY);
	n = fd == -1 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (fd != -1)
		close(fd);
	unlink(logpath);
	CHECK(n > 0);
	if (n <= 0)
		return;
	buf[n] = '\0';
	/* two warnings, each naming the file and the mode */
	size_t lines = 0;

	for (char *p = buf; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	CHECK_INT(lines, 2);
	CHECK(strstr(buf, path) != NULL);
	CHECK(strstr(buf, "0644") != NULL);
	CHECK(strstr(buf, "0602") != NULL);
	CHECK(strstr(buf, "0640") == NULL);
}

static void test_nul_byte(void)
{
	static const char head[] = AUTHD POP3D "greeting = he";
	static char text[512];
	size_t n = 0;

	/* named as what it is, on its line, wherever it is in the line */
	memcpy(text, head, sizeof(head) - 1);
	n = sizeof(head) - 1;
	text[n++] = '\0';
	memcpy(text + n, "llo\n" FILES, sizeof("llo\n" FILES) - 1);
	n += sizeof("llo\n" FILES) - 1;
	CHECK(load_n(text, n) == NULL);
	CHECK(strstr(err, "NUL byte") != NULL && strstr(err, ":8:") != NULL);
	CHECK(strstr(err, "longer") == NULL);
	/* on the last line, without a line end: not silently cut there */
	n = 0;
	memcpy(text, MINIMAL "# x", sizeof(MINIMAL "# x") - 1);
	n = sizeof(MINIMAL "# x") - 1;
	text[n++] = '\0';
	text[n++] = 'y';
	CHECK(load_n(text, n) == NULL);
	CHECK(strstr(err, "NUL byte") != NULL && strstr(err, ":11:") != NULL);
}

static void test_paths_absolute(void)
{
	/* the daemons run from "/": a relative path would name another file */
	EXPECT_ERROR("[authd]\nsocket = run/auth\nmaster-socket = /run/m\n" POP3D FILES, 2,
		     "socket", "absolute");
	EXPECT_ERROR(AUTHD POP3D "[authenticator files]\ntype = passwd-file\npath = passwd\n",
		     10, "path", "absolute");
	EXPECT_ERROR(AUTHD POP3D "tls-cert-file = cert.pem\n" FILES, 8, "tls-cert-file",
		     "absolute");
	EXPECT_ERROR(AUTHD "log-file = authd.log\n" POP3D FILES, 4, "log-file", "absolute");
	CHECK(load(AUTHD "log-file = /var/log/authd.log\n" POP3D FILES) != NULL);
}

static void test_ldap_uris(void)
{
	static const char *const bad[] = { "http://x", "ldap:/x", "x", "ldap://a, https://b",
		"ldap://1 ldap://2 ldap://3 ldap://4 ldap://5 ldap://6 ldap://7 ldap://8 ldap://9" };
	static char text[1024];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), AUTHD POP3D "[authenticator dir]\ntype = ldap\n"
			 "uris = %s\nbase = dc=example\n", bad[i]);
		EXPECT_ERROR(text, 10, "uris");
	}
	snprintf(text, sizeof(text), AUTHD POP3D "[authenticator dir]\ntype = ldap\n"
		 "uris = ldap://127.0.0.1:389, LDAPS://h, ldapi://%%2Frun%%2Fs\nbase = dc=e\n");
	CHECK(load(text) != NULL);
}

/* The [pop3d] keys pop3d used to check itself: checked here, the parsed
 * values stored for the daemon. */
static void test_pop3d_parsed(void)
{
	if (load(AUTHD POP3D "listen-tls = 127.0.0.1:995 [::1]:995\nlogin-delay = 900\n"
		 "expire = 30\nstarttls = yes\ntls-cert-file = /c1, /c2\n"
		 "tls-key-file = /k1,/k2\n" FILES) == NULL) {
		fprintf(stderr, "  refused: %s\n", err);
		CHECK(0);
		return;
	}
	CHECK_INT(conf->pop3d.ntls_addrs, 2);
	CHECK_STR(conf->pop3d.tls_addrs[0], "127.0.0.1:995");
	CHECK_STR(conf->pop3d.tls_addrs[1], "[::1]:995");
	CHECK(conf->pop3d.login_delay_ms == 900000);
	CHECK(conf->pop3d.expire_days == 30);
	CHECK_INT(conf->pop3d.ntls_certs, 2);
	CHECK(load(MINIMAL) != NULL);
	CHECK(conf->pop3d.login_delay_ms == 0 && conf->pop3d.expire_days == CONFIG_EXPIRE_NEVER);
	CHECK_INT(conf->pop3d.ntls_addrs, 0);
	CHECK(load(AUTHD POP3D "expire = NEVER\n" FILES) != NULL);
	CHECK(conf->pop3d.expire_days == CONFIG_EXPIRE_NEVER);

	/* each named by key, on its line (line 8: the first after POP3D) */
	EXPECT_ERROR(AUTHD POP3D "listen-tls = 127.0.0.1\n" FILES, 8, "listen-tls", "bad address");
	EXPECT_ERROR(AUTHD POP3D "login-delay = 1m\n" FILES, 8, "login-delay", "seconds");
	EXPECT_ERROR(AUTHD POP3D "expire = never\n" FILES, 8, "expire", "NEVER");
	EXPECT_ERROR(AUTHD POP3D "greeting = a\n" "tls-min-version = TLSv1\n" FILES, 9,
		     "tls-min-version");
	EXPECT_ERROR(AUTHD POP3D "require-tls = yes\n" FILES, 8, "require-tls", "starttls");
	EXPECT_ERROR(AUTHD POP3D "starttls = yes\n" FILES, 4, "tls-cert-file", "required");
	EXPECT_ERROR(AUTHD POP3D "starttls = yes\ntls-cert-file = /c, \ntls-key-file = /k\n"
		     FILES, 9, "tls-cert-file", "1 to 8");
	EXPECT_ERROR(AUTHD POP3D "starttls = yes\ntls-cert-file = /c\n" FILES, 4,
		     "tls-key-file", "one key file per");
	EXPECT_ERROR(AUTHD "[pop3d]\nlisten = 127.0.0.1:110 localhost:110\nauth-socket = /a\n"
		     "master-auth-socket = /m\n" FILES, 5, "listen", "localhost:110");
}

/* LDAP keys: one set of rules, the parsed values for passdb_ldap.c. */
static void test_ldap_parsed(void)
{
	static char text[2048];
	const struct auth_conf *a;

#define LDAP_AUTH AUTHD POP3D "[authenticator dir]\ntype = ldap\nuris = ldap://h\nbase = o=x\n"
	if (load(LDAP_AUTH "uris = ldap://a, ldaps://b\nscope = one\nmode = compare\n"
		 "attributes = home=homeDirectory;x-y,uid=1.2.3\n") != NULL) {
		CHECK(0);	/* uris twice */
	}
	snprintf(text, sizeof(text), AUTHD POP3D "[authenticator dir]\ntype = ldap\n"
		 "uris = ldap://a, ldaps://b\nbase = o=x\nscope = one\nmode = compare\n"
		 "attributes = home=homeDirectory;x-y,uid=1.2.3\n");
	if (load(text) == NULL) {
		fprintf(stderr, "  refused: %s\n", err);
		CHECK(0);
		return;
	}
	a = &conf->auths[0];
	CHECK_INT(a->ldap_nuris, 2);
	CHECK_STR(a->ldap_uri_list[1], "ldaps://b");
	CHECK(a->ldap_scope_id == CONFIG_LDAP_SCOPE_ONE);
	CHECK(a->ldap_compare);
	CHECK_INT(a->ldap_nmap, 2);
	CHECK_STR(a->ldap_map[0].field, "home");
	CHECK_STR(a->ldap_map[0].attr, "homeDirectory;x-y");
	CHECK_STR(a->ldap_map[1].field, "uid");
	CHECK_STR(a->ldap_map[1].attr, "1.2.3");

	EXPECT_ERROR(LDAP_AUTH "attributes = uid=a, uid=b\n", 12, "attributes", "twice");
	EXPECT_ERROR(LDAP_AUTH "attributes = uid=a gid=b home=c maildrop=d uid=e\n", 12,
		     "attributes", "at most 4");
	EXPECT_ERROR(LDAP_AUTH "attributes = home=a:b\n", 12, "attributes", "home=a:b");
	EXPECT_ERROR(LDAP_AUTH "attributes = shell=loginShell\n", 12, "attributes");
	EXPECT_ERROR(LDAP_AUTH "filter = (uid=%u)%\n", 12, "filter");
	EXPECT_ERROR(LDAP_AUTH "scope = all\n", 12, "scope");
#undef LDAP_AUTH
}

/* Checked here, once, for both daemons: what pop3d's sessions and front
 * ends would refuse (maildrop.c, netlist.c). */
static void test_pop3d_templates_and_nets(void)
{
	EXPECT_ERROR(AUTHD POP3D "maildrop = mmdf:/var/mail/%u\n" FILES, 8, "maildrop",
		     "only maildir and mbox");
	EXPECT_ERROR(AUTHD POP3D "maildrop = mbox:var/mail/%u\n" FILES, 8, "maildrop",
		     "absolute");
	EXPECT_ERROR(AUTHD POP3D "maildrop = ~/Maildir\n" FILES, 8, "maildrop", "absolute");
	EXPECT_ERROR(AUTHD POP3D "maildrop = /m/%x\n" FILES, 8, "maildrop");
	EXPECT_ERROR(AUTHD POP3D FILES "default-maildrop = Maildir\n", 11, "default-maildrop");
	EXPECT_ERROR(AUTHD POP3D "require-tls-exempt = 10.1.2.3/8\n" FILES, 8,
		     "require-tls-exempt");
	CHECK(load(AUTHD POP3D "maildrop = /var/mail/%d/%n\nrequire-tls-exempt = "
		   "127.0.0.0/8, ::1\n" FILES "default-maildrop = maildir:%h/Mail\n") != NULL);
}

/* [cache] memcached: the three server forms, parsed once here; and the
 * L2 defaults. */
static void test_memcached_servers(void)
{
	CHECK(load(MINIMAL "[cache]\nmemcached = 10.0.0.1:11211, [::1]:11212,"
		   "mc.example.org:1 /run/memcached.sock\ncluster-key-file = /etc/k\n") != NULL);
	if (conf == NULL) {
		fprintf(stderr, "  %s\n", err);
		return;
	}
	CHECK_INT(conf->cache.nservers, 4);
	CHECK_STR(conf->cache.servers[0].host, "10.0.0.1");
	CHECK_INT(conf->cache.servers[0].port, 11211);
	CHECK_STR(conf->cache.servers[1].host, "::1");
	CHECK_INT(conf->cache.servers[1].port, 11212);
	CHECK_STR(conf->cache.servers[2].host, "mc.example.org");
	CHECK_INT(conf->cache.servers[2].port, 1);
	CHECK_STR(conf->cache.servers[3].host, "/run/memcached.sock");
	CHECK_INT(conf->cache.servers[3].port, 0);
	CHECK_INT(conf->cache.memcached_timeout_ms, 50);
	CHECK_INT(conf->cache.memcached_workers, 2);
	CHECK_INT(conf->cache.breaker_failures, 3);
	CHECK_INT(conf->cache.breaker_backoff_ms, 2000);
	CHECK_INT(conf->cache.flush_poll_ms, 200);
	/* no L2 by default */
	CHECK(load(MINIMAL) != NULL);
	CHECK_INT(conf->cache.nservers, 0);
	/* refusals, each naming the key's line */
	CHECK(load(MINIMAL "[cache]\nmemcached = 10.0.0.1:0\ncluster-key-file = /k\n") == NULL);
	CHECK(strstr(err, ":12:") != NULL && strstr(err, "bad server") != NULL);
	CHECK(load(MINIMAL "[cache]\nmemcached = [zz]:1\ncluster-key-file = /k\n") == NULL);
	CHECK(strstr(err, "bad IPv6 address") != NULL);
	CHECK(load(MINIMAL "[cache]\nmemcached = a_b:1\ncluster-key-file = /k\n") == NULL);
	CHECK(strstr(err, "bad host name") != NULL);
	CHECK(load(MINIMAL "[cache]\nenabled = no\nmemcached = a:1\ncluster-key-file = /k\n")
	      == NULL);
	CHECK(strstr(err, "enabled = yes") != NULL);
	CHECK(load(MINIMAL "[cache]\nmemcached = a:1\ncluster-key-file = k\n") == NULL);
	CHECK(load(MINIMAL "[cache]\nmemcached = 1:1,2:2,3:3,4:4,5:5,6:6,7:7,8:8,9:9,10:10,"
		   "11:11,12:12,13:13,14:14,15:15,16:16,17:17\ncluster-key-file = /k\n") == NULL);
	CHECK(strstr(err, "1 to 16 servers") != NULL);
}

int main(void)
{
	UNIT_RUN(test_memcached_servers);
	UNIT_RUN(test_minimal_defaults);
	UNIT_RUN(test_every_key);
	UNIT_RUN(test_value_forms);
	UNIT_RUN(test_crlf);
	UNIT_RUN(test_comments_and_verbatim);
	UNIT_RUN(test_listen_list);
	UNIT_RUN(test_chain_order);
	UNIT_RUN(test_many_authenticators);
	UNIT_RUN(test_program_argv);
	UNIT_RUN(test_program_too_many_args);
	UNIT_RUN(test_error_unknown_key);
	UNIT_RUN(test_error_unknown_section);
	UNIT_RUN(test_error_duplicate_key);
	UNIT_RUN(test_error_duplicate_section);
	UNIT_RUN(test_error_missing_required);
	UNIT_RUN(test_error_bad_values);
	UNIT_RUN(test_error_not_applicable);
	UNIT_RUN(test_error_type);
	UNIT_RUN(test_error_auth_name);
	UNIT_RUN(test_error_program);
	UNIT_RUN(test_error_log_file);
	UNIT_RUN(test_long_lines);
	UNIT_RUN(test_error_outside_section);
	UNIT_RUN(test_error_syntax);
	UNIT_RUN(test_load_buffer);
	UNIT_RUN(test_error_buffer_small);
	UNIT_RUN(test_check_private);
	UNIT_RUN(test_nul_byte);
	UNIT_RUN(test_paths_absolute);
	UNIT_RUN(test_ldap_uris);
	UNIT_RUN(test_pop3d_templates_and_nets);
	UNIT_RUN(test_pop3d_parsed);
	UNIT_RUN(test_ldap_parsed);
	config_free(&conf);
	return unit_finish();
}
