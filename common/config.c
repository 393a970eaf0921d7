/*
 * config.c - load and validate the configuration (see config.h).
 *
 * inih calls back with each (section, key, value); the line number comes
 * from our own line reader, which also refuses over-long lines.  Every key
 * is described once in a table below (type, range, default); unknown keys,
 * duplicate keys, bad values and missing required keys are errors that
 * name the file, line and key.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <ini.h>

/* Where make install puts the message catalogues (Makefile: LOCALEDIR). */
#ifndef LOCALEDIR
#define LOCALEDIR "/usr/local/share/locale"
#endif

#include "common/config.h"
#include "common/limits.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/maildrop.h"
#include "common/netlist.h"
#include "common/num.h"
#include "common/proto.h"
#include "common/sock.h"

#define CONFIG_MAX_LINE 4096
#define MAX_DURATION_MS (7ull * 24 * 3600 * 1000)

enum key_type { K_STRING, K_PATH, K_BOOL, K_UINT, K_DURATION, K_SIZE, K_PERCENT, K_LOGLEVEL,
		K_LOGTARGET, K_FACILITY };

/* Which authenticator types a key applies to (bit per enum auth_type). */
#define T_PW   (1u << AUTH_TYPE_PASSWD_FILE)
#define T_EXT  (1u << AUTH_TYPE_EXTERNAL)
#define T_CHK  (1u << AUTH_TYPE_CHECKPASSWORD)
#define T_PAM  (1u << AUTH_TYPE_PAM)
#define T_LDAP (1u << AUTH_TYPE_LDAP)
#define T_ALL  (T_PW | T_EXT | T_CHK | T_PAM | T_LDAP)

struct key_def {
	const char *name;
	enum key_type type;
	size_t offset;		/* into struct config, or struct auth_conf */
	const char *def;	/* default as it would be written; NULL = required */
	uint64_t min, max;	/* K_UINT, K_SIZE, K_DURATION ranges */
	unsigned types;		/* authenticator keys: where it applies */
};

#define C(field) offsetof(struct config, field)
#define A(field) offsetof(struct auth_conf, field)
#define OPTIONAL ""

static const struct key_def authd_keys[] = {
	{ "socket", K_PATH, C(authd.socket), NULL, 0, 0, 0 },
	{ "master-socket", K_PATH, C(authd.master_socket), NULL, 0, 0, 0 },
	{ "stats-socket", K_PATH, C(authd.stats_socket), OPTIONAL, 0, 0, 0 },
	{ "stats-group", K_STRING, C(authd.stats_group), OPTIONAL, 0, 0, 0 },
	{ "metrics-listen", K_STRING, C(authd.metrics_listen), OPTIONAL, 0, 0, 0 },
	{ "user", K_STRING, C(authd.user), OPTIONAL, 0, 0, 0 },
	{ "log-level", K_LOGLEVEL, C(authd.log.level), "info", 0, 0, 0 },
	{ "log-target", K_LOGTARGET, C(authd.log.target), "stderr", 0, 0, 0 },
	{ "log-file", K_PATH, C(authd.log.file), OPTIONAL, 0, 0, 0 },
	{ "syslog-facility", K_FACILITY, C(authd.log.syslog_facility), "mail", 0, 0, 0 },
	{ "lowercase-usernames", K_BOOL, C(authd.lowercase_usernames), "no", 0, 0, 0 },
	{ "strip-domain", K_BOOL, C(authd.strip_domain), "no", 0, 0, 0 },
	{ "default-domain", K_STRING, C(authd.default_domain), OPTIONAL, 0, 0, 0 },
	{ "ticket-lifetime", K_DURATION, C(authd.ticket_lifetime_ms), "30s", 100, 600000, 0 },
	{ "max-clients", K_UINT, C(authd.max_clients), "1024", 1, 65536, 0 },
	{ "dovecot-socket", K_PATH, C(authd.dovecot_socket), OPTIONAL, 0, 0, 0 },
	{ "dovecot-socket-mode", K_STRING, C(authd.dovecot_socket_mode), "0660", 0, 0, 0 },
	{ "dovecot-socket-group", K_STRING, C(authd.dovecot_socket_group), OPTIONAL, 0, 0, 0 },
	{ "dovecot-tempfail", K_STRING, C(authd.dovecot_tempfail), "fail", 0, 0, 0 },
	{ "saslauthd-socket", K_PATH, C(authd.saslauthd_socket), OPTIONAL, 0, 0, 0 },
	{ "saslauthd-socket-mode", K_STRING, C(authd.saslauthd_socket_mode), "0660", 0, 0, 0 },
	{ "saslauthd-socket-group", K_STRING, C(authd.saslauthd_socket_group), OPTIONAL, 0, 0, 0 },
	{ NULL, 0, 0, NULL, 0, 0, 0 }
};

static const struct key_def cache_keys[] = {
	{ "enabled", K_BOOL, C(cache.enabled), "yes", 0, 0, 0 },
	{ "size", K_SIZE, C(cache.size), "16M", 64 * 1024, 16ull << 30, 0 },
	{ "positive-ttl", K_DURATION, C(cache.positive_ttl_ms), "5m", 0, MAX_DURATION_MS, 0 },
	{ "negative-ttl", K_DURATION, C(cache.negative_ttl_ms), "1m", 0, MAX_DURATION_MS, 0 },
	{ "stale-ttl", K_DURATION, C(cache.stale_ttl_ms), "1h", 0, MAX_DURATION_MS, 0 },
	{ "refresh-ahead", K_PERCENT, C(cache.refresh_ahead_pct), "25%", 0, 0, 0 },
	{ "memcached", K_STRING, C(cache.memcached), OPTIONAL, 0, 0, 0 },
	{ "cluster-key-file", K_PATH, C(cache.cluster_key_file), OPTIONAL, 0, 0, 0 },
	/* connect and poll timeout of one memcached call: a loopback or LAN
	   round trip is well under a millisecond */
	{ "memcached-timeout", K_DURATION, C(cache.memcached_timeout_ms), "50ms", 1, 5000, 0 },
	{ "memcached-workers", K_UINT, C(cache.memcached_workers), "2", 1, 64, 0 },
	{ "memcached-breaker-failures", K_UINT, C(cache.breaker_failures), "3", 1, 100, 0 },
	{ "memcached-breaker-backoff", K_DURATION, C(cache.breaker_backoff_ms), "2s", 100,
	  300000, 0 },
	/* at most 500ms: a flush must reach every host within a second */
	{ "flush-poll-interval", K_DURATION, C(cache.flush_poll_ms), "200ms", 10, 500, 0 },
	{ NULL, 0, 0, NULL, 0, 0, 0 }
};

static const struct key_def pop3d_keys[] = {
	{ "listen", K_STRING, C(pop3d.listen), OPTIONAL, 0, 0, 0 },
	{ "auth-socket", K_PATH, C(pop3d.auth_socket), NULL, 0, 0, 0 },
	{ "master-auth-socket", K_PATH, C(pop3d.master_auth_socket), NULL, 0, 0, 0 },
	{ "maildrop", K_STRING, C(pop3d.maildrop), "maildir:%h/Maildir", 0, 0, 0 },
	{ "login-processes", K_UINT, C(pop3d.login_processes), "0", 0, 256, 0 },
	{ "login-user", K_STRING, C(pop3d.login_user), "pop3d", 0, 0, 0 },
	{ "login-chroot", K_PATH, C(pop3d.login_chroot), "/var/empty", 0, 0, 0 },
	{ "stats-socket", K_PATH, C(pop3d.stats_socket), OPTIONAL, 0, 0, 0 },
	{ "stats-group", K_STRING, C(pop3d.stats_group), OPTIONAL, 0, 0, 0 },
	{ "metrics-listen", K_STRING, C(pop3d.metrics_listen), OPTIONAL, 0, 0, 0 },
	{ "log-level", K_LOGLEVEL, C(pop3d.log.level), "info", 0, 0, 0 },
	{ "log-target", K_LOGTARGET, C(pop3d.log.target), "stderr", 0, 0, 0 },
	{ "log-file", K_PATH, C(pop3d.log.file), OPTIONAL, 0, 0, 0 },
	{ "syslog-facility", K_FACILITY, C(pop3d.log.syslog_facility), "mail", 0, 0, 0 },
	{ "preauth-timeout", K_DURATION, C(pop3d.preauth_timeout_ms), "60s", 1000, 3600000, 0 },
	/* The whole AUTHORIZATION state, whatever the client sends (a NOOP
	 * every few seconds holds a slot no longer), and its command lines. */
	{ "login-timeout", K_DURATION, C(pop3d.login_timeout_ms), "2m", 1000, 3600000, 0 },
	{ "login-max-commands", K_UINT, C(pop3d.login_max_commands), "50", 1, 100000, 0 },
	{ "session-timeout", K_DURATION, C(pop3d.session_timeout_ms), "10m", 1000, 86400000, 0 },
	{ "max-connections", K_UINT, C(pop3d.max_connections), "1000", 1, 1000000, 0 },
	{ "max-connections-per-ip", K_UINT, C(pop3d.max_connections_per_ip), "20", 1, 1000000, 0 },
	{ "max-sessions-per-user", K_UINT, C(pop3d.max_sessions_per_user), "10", 1, 100000, 0 },
	{ "first-valid-uid", K_UINT, C(pop3d.first_valid_uid), "1000", 1, 4294967294u, 0 },
	{ "session-reuse", K_UINT, C(pop3d.session_reuse), "100", 1, 1000000, 0 },
	{ "session-spares", K_UINT, C(pop3d.session_spares), "128", 0, 10000, 0 },
	{ "session-spare-timeout", K_DURATION, C(pop3d.session_spare_timeout_ms), "30s", 1000,
	  3600000, 0 },
	{ "auth-failure-delay", K_DURATION, C(pop3d.auth_failure_delay_ms), "2s", 0, 60000, 0 },
	{ "max-auth-failures", K_UINT, C(pop3d.max_auth_failures), "3", 1, 100, 0 },
	{ "max-bad-commands", K_UINT, C(pop3d.max_bad_commands), "10", 1, 1000, 0 },
	{ "greeting", K_STRING, C(pop3d.greeting), "POP3 server ready", 0, 0, 0 },
	/* The languages of responses (pop3d/lang.c): the catalogues make
	 * install puts under language-dir, and the one a client gets before
	 * it says LANG; pop3d checks both when it starts (and with -t). */
	{ "default-language", K_STRING, C(pop3d.default_language), "en", 0, 0, 0 },
	{ "language-dir", K_PATH, C(pop3d.language_dir), LOCALEDIR, 0, 0, 0 },
	{ "user-command", K_BOOL, C(pop3d.user_command), "yes", 0, 0, 0 },
	{ "expire", K_STRING, C(pop3d.expire), OPTIONAL, 0, 0, 0 },
	{ "login-delay", K_STRING, C(pop3d.login_delay), OPTIONAL, 0, 0, 0 },
	{ "implementation", K_BOOL, C(pop3d.implementation), "no", 0, 0, 0 },
	{ "listen-tls", K_STRING, C(pop3d.listen_tls), OPTIONAL, 0, 0, 0 },
	{ "starttls", K_BOOL, C(pop3d.starttls), "no", 0, 0, 0 },
	{ "require-tls", K_BOOL, C(pop3d.require_tls), "no", 0, 0, 0 },
	{ "require-tls-disconnect", K_BOOL, C(pop3d.require_tls_disconnect), "no", 0, 0, 0 },
	{ "require-tls-exempt", K_STRING, C(pop3d.require_tls_exempt), OPTIONAL, 0, 0, 0 },
	{ "tls-cert-file", K_PATH, C(pop3d.tls_cert_file), OPTIONAL, 0, 0, 0 },
	{ "tls-key-file", K_PATH, C(pop3d.tls_key_file), OPTIONAL, 0, 0, 0 },
	{ "tls-min-version", K_STRING, C(pop3d.tls_min_version), "TLSv1.2", 0, 0, 0 },
	/* Mozilla "intermediate" without the finite-field DHE suites. */
	{ "tls-ciphers", K_STRING, C(pop3d.tls_ciphers),
	  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
	  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
	  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305", 0, 0, 0 },
	{ "tls-ciphersuites", K_STRING, C(pop3d.tls_ciphersuites),
	  "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256", 0, 0, 0 },
	{ "tls-groups", K_STRING, C(pop3d.tls_groups), "X25519:P-256:X448:P-384", 0, 0, 0 },
	{ "tls-session-tickets", K_BOOL, C(pop3d.tls_session_tickets), "yes", 0, 0, 0 },
	/* How long a ticket key encrypts; it decrypts for as long again.
	 * Short keeps resumed sessions' secrets recoverable for little time
	 * (1 s is for tests); at most a day, so a ticket lives 2 days at most. */
	{ "tls-ticket-key-lifetime", K_DURATION, C(pop3d.tls_ticket_key_lifetime_ms), "1h", 1000,
	  86400000, 0 },
	/* The PROXY protocol from a load balancer (docs/cluster.md): which
	 * listeners expect it, from whom, and how long its header may take
	 * (a balancer sends it at once; 1 s at least, 1 min at most). */
	{ "proxy-protocol", K_STRING, C(pop3d.proxy_protocol), "no", 0, 0, 0 },
	{ "proxy-trusted-networks", K_STRING, C(pop3d.proxy_trusted_networks), OPTIONAL, 0, 0,
	  0 },
	{ "proxy-timeout", K_DURATION, C(pop3d.proxy_timeout_ms), "3s", 1000, 60000, 0 },
	{ NULL, 0, 0, NULL, 0, 0, 0 }
};

static const struct key_def auth_keys[] = {
	{ "type", K_STRING, 0, NULL, 0, 0, T_ALL },	/* handled specially */
	{ "path", K_PATH, A(path), NULL, 0, 0, T_PW },
	{ "program", K_STRING, A(program), NULL, 0, 0, T_EXT | T_CHK },
	{ "workers", K_UINT, A(workers), "4", 1, 256, T_ALL },
	{ "queue-limit", K_UINT, A(queue_limit), "256", 1, 1000000, T_ALL },
	/* Waiting and in a worker, per client address (IPv6: per /64): a
	 * flood from one source stays its own problem (authd/fairq.c). */
	{ "per-source-limit", K_UINT, A(per_source_limit), "32", 1, 1000000, T_ALL },
	/* Admission: a request that would wait longer than this for a worker
	 * is refused at once (authd/authenticator.c, Admission). */
	{ "queue-wait-limit", K_DURATION, A(queue_wait_limit_ms), "1s", 0, 600000, T_ALL },
	/* ... and longer than this many times the mean service time (but
	 * never less than AUTHD_QUEUE_WAIT_FLOOR_MS); 0: the limit alone. */
	{ "queue-wait-factor", K_UINT, A(queue_wait_factor), "8", 0, 1000, T_ALL },
	{ "timeout", K_DURATION, A(timeout_ms), "5s", 10, 600000, T_ALL },
	{ "cache", K_BOOL, A(cache), "yes", 0, 0, T_ALL },
	{ "require-secured", K_BOOL, A(require_secured), "no", 0, 0, T_ALL },
	/* The request services (pop3, smtp, ...) whose chain it is part of. */
	{ "services", K_STRING, A(services), OPTIONAL, 0, 0, T_ALL },
	{ "hash-concurrency", K_UINT, A(hash_concurrency), "2", 1, 256, T_PW },
	{ "max-requests", K_UINT, A(max_requests), "0", 0, 100000000, T_EXT },
	/* pam: its own max-requests default, since PAM modules leak.  A name may
	 * appear twice when the types it applies to do not overlap. */
	{ "max-requests", K_UINT, A(max_requests), "100", 0, 100000000, T_PAM },
	{ "service", K_STRING, A(pam_service), "pop3", 0, 0, T_PAM },
	{ "environment", K_STRING, A(environment), OPTIONAL, 0, 0, T_EXT | T_CHK | T_PAM },
	{ "uris", K_STRING, A(ldap_uris), NULL, 0, 0, T_LDAP },
	{ "starttls", K_BOOL, A(ldap_starttls), "no", 0, 0, T_LDAP },
	{ "ca-file", K_PATH, A(ldap_ca_file), OPTIONAL, 0, 0, T_LDAP },
	{ "bind-dn", K_STRING, A(ldap_bind_dn), OPTIONAL, 0, 0, T_LDAP },
	{ "bind-password", K_STRING, A(ldap_bind_password), OPTIONAL, 0, 0, T_LDAP },
	{ "bind-password-file", K_PATH, A(ldap_bind_password_file), OPTIONAL, 0, 0, T_LDAP },
	{ "base", K_STRING, A(ldap_base), NULL, 0, 0, T_LDAP },
	{ "scope", K_STRING, A(ldap_scope), "sub", 0, 0, T_LDAP },
	{ "filter", K_STRING, A(ldap_filter), "(&(objectClass=posixAccount)(uid=%u))", 0, 0, T_LDAP },
	{ "attributes", K_STRING, A(ldap_attributes),
	  "uid=uidNumber, gid=gidNumber, home=homeDirectory", 0, 0, T_LDAP },
	{ "mode", K_STRING, A(ldap_mode), "bind", 0, 0, T_LDAP },
	{ "password-attribute", K_STRING, A(ldap_password_attribute), "userPassword", 0, 0, T_LDAP },
	{ "network-timeout", K_DURATION, A(ldap_network_timeout_ms), "2s", 10, 600000, T_LDAP },
	{ "default-uid", K_STRING, A(default_uid), OPTIONAL, 0, 0, T_ALL },
	{ "default-gid", K_STRING, A(default_gid), OPTIONAL, 0, 0, T_ALL },
	{ "default-home", K_PATH, A(default_home), OPTIONAL, 0, 0, T_ALL },
	{ "default-maildrop", K_STRING, A(default_maildrop), OPTIONAL, 0, 0, T_ALL },
	{ NULL, 0, 0, NULL, 0, 0, 0 }
};

static const char *const type_names[] = {
	[AUTH_TYPE_PASSWD_FILE] = "passwd-file",
	[AUTH_TYPE_EXTERNAL] = "external",
	[AUTH_TYPE_CHECKPASSWORD] = "checkpassword",
	[AUTH_TYPE_PAM] = "pam",
	[AUTH_TYPE_LDAP] = "ldap",
};

const char *auth_type_name(enum auth_type type)
{
	return type_names[type];
}

/* One value as read, kept until validation. */
struct raw_entry {
	const struct key_def *def;
	char *value;
	unsigned line;
};

#define MAX_KEYS 64

struct section {
	const struct key_def *defs;
	struct raw_entry entries[MAX_KEYS];
	size_t n;
	unsigned line;
	bool seen;
	char *type;		/* authenticator: the type= value */
	unsigned type_line;
};

struct load_ctx {
	const char *path;
	unsigned line;
	char *error;
	size_t errsize;
	bool failed;
	struct section authd, cache, pop3d;
	struct section auths[CONFIG_MAX_AUTHENTICATORS];
	char *auth_names[CONFIG_MAX_AUTHENTICATORS];
	size_t nauths;
	char cur_section[256];
	struct section *cur;	/* section being read, NULL if unknown */
};

static void set_error(struct load_ctx *ctx, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(struct load_ctx *ctx, unsigned line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (ctx->failed)
		return;		/* report the first error only */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(ctx->error, ctx->errsize, "%s:%u: %s", ctx->path, line, msg);
	else
		snprintf(ctx->error, ctx->errsize, "%s: %s", ctx->path, msg);
	ctx->failed = true;
}

static struct section *enter_section(struct load_ctx *ctx, const char *name);

/* inih reports a section only with its first key, so a section with no
 * keys, or one opened twice in a row, would go unnoticed and errors would
 * name the first key's line.  Spot "[name]" lines here instead, the way
 * inih parses them (blanks skipped, up to the first ']', at most 49 bytes). */
static void note_section(struct load_ctx *ctx, const char *line)
{
	const char *p = line, *end;

	if (ctx->line == 1 && strncmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == '\v' || *p == '\f')
		p++;
	if (*p != '[' || (end = strchr(p + 1, ']')) == NULL)
		return;		/* not a header; a bad one is inih's syntax error */
	snprintf(ctx->cur_section, 50, "%.*s", (int)(end - p - 1), p + 1);
	ctx->cur = enter_section(ctx, ctx->cur_section);
}

/* fgets-like reader for inih that counts lines and spots long ones and
 * NUL bytes (which fgets would pass on as the end of the line). */
static char *counting_reader(char *str, int num, void *stream)
{
	struct load_ctx *ctx;
	FILE *f;
	size_t len = 0;
	bool nul = false, complete = false;
	int ch;

	ctx = *(struct load_ctx **)stream;
	f = *((FILE **)stream + 1);
	while (len < (size_t)num - 1 && (ch = getc(f)) != EOF) {
		nul |= ch == '\0';
		str[len++] = (char)ch;
		if (ch == '\n') {
			complete = true;
			break;
		}
	}
	if (len == 0)
		return NULL;
	str[len] = '\0';
	ctx->line++;
	if (nul) {
		set_error(ctx, ctx->line, "NUL byte in line");
		return NULL;
	}
	if (!complete && (ch = getc(f)) != EOF) {
		set_error(ctx, ctx->line, "line longer than %d bytes", CONFIG_MAX_LINE - 3);
		return NULL;
	}
	if (complete)
		len--;
	if (len > 0 && str[len - 1] == '\r')
		len--;
	/* inih needs 3 bytes beyond the text (CR, LF, NUL). */
	if (len > (size_t)CONFIG_MAX_LINE - 3) {
		set_error(ctx, ctx->line, "line longer than %d bytes", CONFIG_MAX_LINE - 3);
		return NULL;
	}
	note_section(ctx, str);
	return str;
}

/* Names fit a cache entry's authenticator field (CACHE_AUTHENTICATOR_MAX). */

static bool valid_auth_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONFIG_AUTH_NAME_MAX)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return false;
	return true;
}

static struct section *enter_section(struct load_ctx *ctx, const char *name)
{
	struct section *s = NULL;

	if (strcmp(name, "authd") == 0) {
		s = &ctx->authd;
		s->defs = authd_keys;
	} else if (strcmp(name, "cache") == 0) {
		s = &ctx->cache;
		s->defs = cache_keys;
	} else if (strcmp(name, "pop3d") == 0) {
		s = &ctx->pop3d;
		s->defs = pop3d_keys;
	} else if (strncmp(name, "authenticator ", 14) == 0) {
		const char *an = name + 14;

		while (*an == ' ')
			an++;
		if (!valid_auth_name(an)) {
			set_error(ctx, ctx->line, "[%s]: authenticator names are 1-%d "
				  "characters of A-Z a-z 0-9 - _", name, CONFIG_AUTH_NAME_MAX);
			return NULL;
		}
		for (size_t i = 0; i < ctx->nauths; i++)
			if (strcmp(ctx->auth_names[i], an) == 0) {
				set_error(ctx, ctx->line, "authenticator \"%s\" defined twice", an);
				return NULL;
			}
		if (ctx->nauths == CONFIG_MAX_AUTHENTICATORS) {
			set_error(ctx, ctx->line, "more than %d authenticators",
				  CONFIG_MAX_AUTHENTICATORS);
			return NULL;
		}
		ctx->auth_names[ctx->nauths] = xstrdup(an);
		s = &ctx->auths[ctx->nauths++];
		s->defs = auth_keys;
	} else {
		set_error(ctx, ctx->line, "unknown section [%s] (expected [authd], [cache], "
			  "[pop3d] or [authenticator NAME])", name);
		return NULL;
	}
	if (s->seen) {
		set_error(ctx, ctx->line, "section [%s] appears twice", name);
		return NULL;
	}
	s->seen = true;
	s->line = ctx->line;
	return s;
}

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *ctx = user;
	const struct key_def *def;
	struct section *s;

	if (ctx->failed)
		return 0;
	if (name == NULL)	/* INI_CALL_HANDLER_ON_NEW_SECTION, if built so */
		return 1;
	s = section[0] == '\0' ? NULL : ctx->cur;
	if (s == NULL) {
		set_error(ctx, ctx->line, "key \"%s\" outside any section", name);
		return 0;
	}
	for (def = s->defs; def->name != NULL; def++)
		if (strcmp(def->name, name) == 0)
			break;
	if (def->name == NULL) {
		set_error(ctx, ctx->line, "[%s]: unknown key \"%s\"", section, name);
		return 0;
	}
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->entries[i].def->name, def->name) == 0) {
			set_error(ctx, ctx->line, "[%s]: key \"%s\" set twice (first on line %u)",
				  section, name, s->entries[i].line);
			return 0;
		}
	if (s->n == MAX_KEYS) {
		set_error(ctx, ctx->line, "[%s]: too many keys", section);
		return 0;
	}
	s->entries[s->n].def = def;
	s->entries[s->n].value = xstrdup(value);
	s->entries[s->n].line = ctx->line;
	s->n++;
	if (s->defs == auth_keys && strcmp(name, "type") == 0) {
		s->type = s->entries[s->n - 1].value;
		s->type_line = ctx->line;
	}
	return 1;
}


/* Converts value per def and stores it at base + def->offset.  Returns 0,
 * or -1 with a message in why. */
static int store_value(const struct key_def *def, const char *value, void *base,
		       char *why, size_t whysize)
{
	char *dst = (char *)base + def->offset;
	uint64_t u;
	unsigned pct;

	switch (def->type) {
	case K_PATH:
		/* The daemons run from "/" (daemonized or not), so a relative
		 * path would name another file than the operator meant. */
		if (value[0] != '\0' && value[0] != '/') {
			snprintf(why, whysize, "expected an absolute path");
			return -1;
		}
		/* fall through */
	case K_STRING:
		free(*(char **)dst);
		*(char **)dst = xstrdup(value);
		return 0;
	case K_BOOL:
		if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 ||
		    strcmp(value, "on") == 0) {
			*(bool *)dst = true;
			return 0;
		}
		if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0 ||
		    strcmp(value, "off") == 0) {
			*(bool *)dst = false;
			return 0;
		}
		snprintf(why, whysize, "expected yes or no");
		return -1;
	case K_UINT:
		if (num_parse_u64(value, def->min, def->max, &u) == -1) {
			snprintf(why, whysize, "expected a whole number from %llu to %llu",
				 (unsigned long long)def->min, (unsigned long long)def->max);
			return -1;
		}
		*(unsigned *)dst = (unsigned)u;
		return 0;
	case K_DURATION:
		if (num_parse_duration(value, def->max, &u) == -1 || u < def->min) {
			snprintf(why, whysize, "expected a duration (e.g. 500ms, 5s, 2m, 1h) "
				 "from %llums to %llums", (unsigned long long)def->min,
				 (unsigned long long)def->max);
			return -1;
		}
		*(uint64_t *)dst = u;
		return 0;
	case K_SIZE:
		if (num_parse_size(value, def->max, &u) == -1 || u < def->min) {
			snprintf(why, whysize, "expected a size (e.g. 64K, 16M, 1G) from %llu "
				 "to %llu bytes", (unsigned long long)def->min,
				 (unsigned long long)def->max);
			return -1;
		}
		*(uint64_t *)dst = u;
		return 0;
	case K_PERCENT:
		if (num_parse_percent(value, &pct) == -1) {
			snprintf(why, whysize, "expected a percentage from 0%% to 100%%");
			return -1;
		}
		*(unsigned *)dst = pct;
		return 0;
	case K_LOGLEVEL:
		if (log_level_parse(value) == -1) {
			snprintf(why, whysize, "expected error, warn, info or debug");
			return -1;
		}
		break;
	case K_LOGTARGET:
		if (strcmp(value, "stderr") != 0 && strcmp(value, "syslog") != 0 &&
		    strcmp(value, "file") != 0) {
			snprintf(why, whysize, "expected stderr, syslog or file");
			return -1;
		}
		break;
	case K_FACILITY:
		if (log_facility_parse(value) == -1) {
			snprintf(why, whysize, "expected a syslog facility (daemon, mail, auth, "
				 "authpriv, local0..local7)");
			return -1;
		}
		break;
	}
	free(*(char **)dst);
	*(char **)dst = xstrdup(value);
	return 0;
}

/* Applies defaults then the values read, for one section.  An entry that
 * does not apply to this authenticator type is an error.  */
static void apply_section(struct load_ctx *ctx, const char *secname, struct section *s,
			  const struct key_def *defs, void *base, unsigned typebit)
{
	char why[256];

	for (const struct key_def *def = defs; def->name != NULL; def++) {
		const struct raw_entry *e = NULL;

		if (def->offset == 0 && defs == auth_keys)
			continue;	/* type */
		if (typebit != 0 && !(def->types & typebit))
			continue;
		for (size_t i = 0; i < s->n; i++)
			if (strcmp(s->entries[i].def->name, def->name) == 0)
				e = &s->entries[i];
		if (e != NULL && def->def == NULL && e->value[0] == '\0') {
			set_error(ctx, e->line, "[%s] %s: a value is required", secname, def->name);
			return;
		}
		if (e != NULL) {
			if (store_value(def, e->value, base, why, sizeof(why)) == -1) {
				set_error(ctx, e->line, "[%s] %s = %s: %s", secname, def->name,
					  e->value, why);
				return;
			}
		} else if (def->def == NULL) {
			set_error(ctx, s->line, "[%s]: required key \"%s\" is missing",
				  secname, def->name);
			return;
		} else if (def->def[0] != '\0' || def->type == K_STRING || def->type == K_PATH) {
			if (store_value(def, def->def, base, why, sizeof(why)) == -1)
				fatalx("config: bad built-in default for %s: %s", def->name, why);
		}
	}
	if (typebit != 0) {
		for (size_t i = 0; i < s->n; i++) {
			bool applies = false;
			for (const struct key_def *def = defs; def->name != NULL; def++)
				if (strcmp(def->name, s->entries[i].def->name) == 0 &&
				    (def->types & typebit))
					applies = true;
			if (!applies) {
				set_error(ctx, s->entries[i].line, "[%s]: key \"%s\" does not apply "
					  "to this authenticator type", secname,
					  s->entries[i].def->name);
				return;
			}
		}
	}
}

/* Splits a comma- or blank-separated list into at most max items. */
static int split_list(char *s, char **items, size_t max, size_t *n_r, const char *seps)
{
	size_t n = 0;

	for (char *save, *tok = strtok_r(s, seps, &save); tok != NULL;
	     tok = strtok_r(NULL, seps, &save)) {
		if (n == max)
			return -1;
		items[n++] = tok;
	}
	*n_r = n;
	return 0;
}

/* The line key was set on in s, or the section's line if it was not set. */
static const struct raw_entry *find_entry(const struct section *s, const char *key)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->entries[i].def->name, key) == 0)
			return &s->entries[i];
	return NULL;
}

static unsigned entry_line(const struct section *s, const char *key)
{
	const struct raw_entry *e = find_entry(s, key);

	return e != NULL ? e->line : s->line;
}

/* A list of comma-separated paths (tls-cert-file, tls-key-file): blanks
 * around each entry ignored, an empty entry refused.  Returns the count
 * (0 for an empty list), or -1 for an empty entry or more than max.  The
 * rule pop3d/tls.c's split_paths applies when it loads the files. */
static int count_paths(const char *s, size_t max)
{
	size_t n = 0;

	if (s[strspn(s, " \t")] == '\0')
		return 0;
	for (const char *p = s;; p++) {
		const char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		size_t blank = 0;

		for (size_t i = 0; i < len; i++)
			blank += p[i] == ' ' || p[i] == '\t';
		if (blank == len || n == max)
			return -1;
		n++;
		if (end == NULL)
			return (int)n;
		p = end;
	}
}

/* Splits listen-tls into conf->pop3d.tls_addrs, each ADDR:PORT checked. */
static int validate_listen_tls(struct load_ctx *ctx, struct section *s, struct config *conf)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char *copy, *items[CONFIG_MAX_LISTEN];
	size_t n;

	copy = xstrdup(conf->pop3d.listen_tls);
	if (split_list(copy, items, CONFIG_MAX_LISTEN, &n, ", \t") == -1) {
		set_error(ctx, entry_line(s, "listen-tls"), "[pop3d] listen-tls: at most %d "
			  "entries", CONFIG_MAX_LISTEN);
		free(copy);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (sock_parse_addrport(items[i], &ss, &sl) == -1) {
			set_error(ctx, entry_line(s, "listen-tls"), "[pop3d] listen-tls: bad "
				  "address \"%s\" (expected ADDR:PORT or [V6ADDR]:PORT)", items[i]);
			free(copy);
			return -1;
		}
		conf->pop3d.tls_addrs[i] = xstrdup(items[i]);
		conf->pop3d.ntls_addrs = i + 1;
	}
	free(copy);
	return 0;
}

/* [cache] memcached: SERVER[, SERVER...], each HOST:PORT, [V6ADDR]:PORT
 * or an absolute UNIX socket path; and what L2 needs with it. */
static int validate_memcached(struct load_ctx *ctx, struct section *s, struct config *conf)
{
	unsigned line = entry_line(s, "memcached");
	char *copy, *items[CONFIG_MAX_MEMCACHED];
	size_t n;

	if (conf->cache.memcached[0] == '\0') {
		if (conf->cache.cluster_key_file[0] != '\0')
			set_error(ctx, entry_line(s, "cluster-key-file"), "[cache] "
				  "cluster-key-file is set but memcached is not");
		return ctx->failed ? -1 : 0;
	}
	if (!conf->cache.enabled) {
		set_error(ctx, line, "[cache] memcached needs enabled = yes (L2 sits behind the "
			  "in-memory cache)");
		return -1;
	}
	if (conf->cache.cluster_key_file[0] == '\0') {
		set_error(ctx, line, "[cache] memcached needs cluster-key-file (the key that "
			  "seals what authd writes to memcached)");
		return -1;
	}
	copy = xstrdup(conf->cache.memcached);
	if (split_list(copy, items, CONFIG_MAX_MEMCACHED, &n, ", \t") == -1 || n == 0) {
		set_error(ctx, line, "[cache] memcached: expected 1 to %d servers",
			  CONFIG_MAX_MEMCACHED);
		free(copy);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char *it = items[i], *colon, *host;
		uint64_t port;

		if (it[0] == '/') {
			if (strlen(it) >= 108) {	/* sun_path */
				set_error(ctx, line, "[cache] memcached: socket path too long: %s", it);
				goto fail;
			}
			conf->cache.servers[i].host = xstrdup(it);
			conf->cache.servers[i].port = 0;
			conf->cache.nservers = i + 1;
			continue;
		}
		colon = strrchr(it, ':');
		if (colon == NULL || num_parse_u64(colon + 1, 1, 65535, &port) == -1) {
			set_error(ctx, line, "[cache] memcached: bad server \"%s\" (expected "
				  "HOST:PORT, [V6ADDR]:PORT or /path/to/socket)", it);
			goto fail;
		}
		*colon = '\0';
		host = it;
		if (host[0] == '[') {
			size_t hl = strlen(host);
			struct sockaddr_storage ss;
			socklen_t sl;
			char probe[80];

			if (hl < 3 || host[hl - 1] != ']' ||
			    snprintf(probe, sizeof(probe), "%s:1", host) >= (int)sizeof(probe) ||
			    sock_parse_addrport(probe, &ss, &sl) == -1) {
				set_error(ctx, line, "[cache] memcached: bad IPv6 address %s", host);
				goto fail;
			}
			host[hl - 1] = '\0';
			host++;
		} else if (host[0] == '\0' || strlen(host) > 253 ||
			   strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "0123456789.-") != strlen(host)) {
			set_error(ctx, line, "[cache] memcached: bad host name \"%s\"", host);
			goto fail;
		}
		conf->cache.servers[i].host = xstrdup(host);
		conf->cache.servers[i].port = (unsigned)port;
		conf->cache.nservers = i + 1;
	}
	free(copy);
	return 0;
fail:
	free(copy);
	return -1;
}

/* proxy-protocol: "no", "yes" (every listener), or the listen and
 * listen-tls addresses that expect the header; sets proxy_listen and
 * proxy_tls.  proxy-trusted-networks: required (a list of networks) when
 * any listener expects the header. */
static int validate_proxy(struct load_ctx *ctx, struct section *s, struct config *conf)
{
	const char *v = conf->pop3d.proxy_protocol;
	struct sockaddr_storage ss, ls;
	socklen_t sl, lsl;
	struct netlist nl;
	char *copy, *items[2 * CONFIG_MAX_LISTEN], why[256];
	size_t n;
	bool any = false;

	if (strcmp(v, "yes") == 0) {
		for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++)
			conf->pop3d.proxy_listen[i] = conf->pop3d.proxy_tls[i] = true;
		any = true;
	} else if (strcmp(v, "no") != 0) {
		copy = xstrdup(v);
		if (split_list(copy, items, 2 * CONFIG_MAX_LISTEN, &n, ", \t") == -1 || n == 0)
			goto bad;	/* too many, or none ("proxy-protocol =", ", ,") */
		for (size_t i = 0; i < n; i++) {
			bool found = false;

			if (sock_parse_addrport(items[i], &ss, &sl) == -1)
				goto bad;
			for (size_t j = 0; j < conf->pop3d.nlisten; j++)
				if (sock_parse_addrport(conf->pop3d.listen_addrs[j], &ls, &lsl) == 0 &&
				    lsl == sl && memcmp(&ls, &ss, sl) == 0)
					found = conf->pop3d.proxy_listen[j] = true;
			for (size_t j = 0; j < conf->pop3d.ntls_addrs; j++)
				if (sock_parse_addrport(conf->pop3d.tls_addrs[j], &ls, &lsl) == 0 &&
				    lsl == sl && memcmp(&ls, &ss, sl) == 0)
					found = conf->pop3d.proxy_tls[j] = true;
			if (!found) {
				set_error(ctx, entry_line(s, "proxy-protocol"), "[pop3d] "
					  "proxy-protocol: \"%s\" is not a listen or listen-tls "
					  "address", items[i]);
				free(copy);
				return -1;
			}
		}
		free(copy);
		any = true;
	}
	if (netlist_parse(conf->pop3d.proxy_trusted_networks, &nl, why, sizeof(why)) == -1) {
		set_error(ctx, entry_line(s, "proxy-trusted-networks"), "[pop3d] "
			  "proxy-trusted-networks: %s", why);
		return -1;
	}
	if (any && nl.n == 0) {
		set_error(ctx, entry_line(s, "proxy-trusted-networks"), "[pop3d] "
			  "proxy-trusted-networks: required with proxy-protocol (the load "
			  "balancers' addresses)");
		return -1;
	}
	return 0;
bad:
	free(copy);
	set_error(ctx, entry_line(s, "proxy-protocol"), "[pop3d] proxy-protocol: expected yes, "
		  "no, or listen / listen-tls ADDR:PORT entries");
	return -1;
}

/* A maildrop template expands for a sample user (maildrop.c's rules). */
static int check_maildrop(struct load_ctx *ctx, unsigned line, const char *secname,
			  const char *key, const char *tmpl)
{
	char out[4096];
	const char *why;

	if (maildrop_expand(tmpl, "user@example.org", "/home/user", out, sizeof(out), &why) == -1) {
		set_error(ctx, line, "[%s] %s: %s", secname, key, why);
		return -1;
	}
	return 0;
}

/* The [pop3d] keys with a syntax of their own, and those that depend on
 * each other.  Only loading the TLS certificates and keys (OpenSSL, in
 * pop3d's tls.c) is left to pop3d, run the same at -t and at start. */
static int validate_pop3d(struct load_ctx *ctx, struct section *s, struct config *conf)
{
	struct sockaddr_storage ss;
	struct netlist nl;
	socklen_t sl;
	char why[256];
	unsigned u;
	int nc, nk;

	for (size_t i = 0; i < conf->pop3d.nlisten; i++)
		if (sock_parse_addrport(conf->pop3d.listen_addrs[i], &ss, &sl) == -1) {
			set_error(ctx, entry_line(s, "listen"), "[pop3d] listen: bad address \"%s\" "
				  "(expected ADDR:PORT or [V6ADDR]:PORT)",
				  conf->pop3d.listen_addrs[i]);
			return -1;
		}
	if (validate_listen_tls(ctx, s, conf) == -1 || validate_proxy(ctx, s, conf) == -1)
		return -1;
	if (conf->pop3d.login_delay[0] != '\0') {
		if (num_parse_uint(conf->pop3d.login_delay, 0, 4294967295u, &u) == -1) {
			set_error(ctx, entry_line(s, "login-delay"), "[pop3d] login-delay: "
				  "expected a number of seconds");
			return -1;
		}
		conf->pop3d.login_delay_ms = (uint64_t)u * 1000;
	}
	conf->pop3d.expire_days = CONFIG_EXPIRE_NEVER;
	if (conf->pop3d.expire[0] != '\0' && strcmp(conf->pop3d.expire, "NEVER") != 0) {
		if (num_parse_uint(conf->pop3d.expire, 0, 4294967295u, &u) == -1) {
			set_error(ctx, entry_line(s, "expire"), "[pop3d] expire: expected a number "
				  "of days or NEVER");
			return -1;
		}
		conf->pop3d.expire_days = u;
	}
	/* RFC 1939 section 4: the greeting is one line of a response. */
	if (strlen(conf->pop3d.greeting) > 200 || strpbrk(conf->pop3d.greeting, "\r\n") != NULL) {
		set_error(ctx, entry_line(s, "greeting"), "[pop3d] greeting: at most 200 "
			  "characters on one line");
		return -1;
	}
	if (check_maildrop(ctx, entry_line(s, "maildrop"), "pop3d", "maildrop",
			   conf->pop3d.maildrop) == -1)
		return -1;
	if (netlist_parse(conf->pop3d.require_tls_exempt, &nl, why, sizeof(why)) == -1) {
		set_error(ctx, entry_line(s, "require-tls-exempt"), "[pop3d] require-tls-exempt: "
			  "%s", why);
		return -1;
	}
	if (strcmp(conf->pop3d.tls_min_version, "TLSv1.2") != 0 &&
	    strcmp(conf->pop3d.tls_min_version, "TLSv1.3") != 0) {
		set_error(ctx, entry_line(s, "tls-min-version"), "[pop3d] tls-min-version: "
			  "expected TLSv1.2 or TLSv1.3");
		return -1;
	}
	if (conf->pop3d.ntls_addrs == 0 && !conf->pop3d.starttls) {
		if (conf->pop3d.require_tls) {
			set_error(ctx, entry_line(s, "require-tls"), "[pop3d] require-tls = yes "
				  "needs starttls = yes or listen-tls");
			return -1;
		}
		return 0;
	}
	nc = count_paths(conf->pop3d.tls_cert_file, TLS_MAX_CERTS);
	nk = count_paths(conf->pop3d.tls_key_file, TLS_MAX_CERTS);
	if (nc <= 0) {
		set_error(ctx, entry_line(s, "tls-cert-file"), "[pop3d] tls-cert-file: %s",
			  nc == 0 ? "required with listen-tls or starttls = yes" :
			  "expected 1 to 8 comma-separated files");
		return -1;
	}
	if (nk != nc) {
		set_error(ctx, entry_line(s, "tls-key-file"), "[pop3d] tls-key-file: expected one "
			  "key file per tls-cert-file entry (%d), in the same order", nc);
		return -1;
	}
	conf->pop3d.ntls_certs = (size_t)nc;
	return 0;
}

/* True for an LDAP attribute description (RFC 4512 section 2.5: a name
 * or OID, with options after ';'). */
static bool ldap_attr_ok(const char *p)
{
	if (*p == '\0')
		return false;
	for (; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == ';' || *p == '.'))
			return false;
	return true;
}

/* Checks the LDAP keys and stores their parsed forms in a (ldap_uri_list,
 * ldap_scope_id, ldap_compare, ldap_map), which passdb_ldap.c uses as
 * they are.  The rest of each URI is libldap's to parse: passdb_ldap.c's
 * check does it, at -t and at start alike. */
static int validate_ldap(struct load_ctx *ctx, struct section *s, const char *secname,
			 struct auth_conf *a)
{
	static const char *const fields[] = { "uid", "gid", "home", "maildrop" };
	char *copy, *items[LDAP_MAX_URIS > LDAP_MAX_MAP ? LDAP_MAX_URIS : LDAP_MAX_MAP];
	size_t n;

	copy = xstrdup(a->ldap_uris);
	if (split_list(copy, items, LDAP_MAX_URIS, &n, ", \t") == -1 || n == 0) {
		set_error(ctx, entry_line(s, "uris"), "[%s]: uris: expected 1 to %d URIs", secname,
			  LDAP_MAX_URIS);
		free(copy);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (strncasecmp(items[i], "ldap://", 7) != 0 &&
		    strncasecmp(items[i], "ldaps://", 8) != 0 &&
		    strncasecmp(items[i], "ldapi://", 8) != 0) {
			set_error(ctx, entry_line(s, "uris"), "[%s]: uris: %s is not an ldap://, "
				  "ldaps:// or ldapi:// URI", secname, items[i]);
			free(copy);
			return -1;
		}
		a->ldap_uri_list[i] = xstrdup(items[i]);
		a->ldap_nuris = i + 1;
	}
	free(copy);

	if (strcmp(a->ldap_scope, "base") == 0)
		a->ldap_scope_id = CONFIG_LDAP_SCOPE_BASE;
	else if (strcmp(a->ldap_scope, "one") == 0)
		a->ldap_scope_id = CONFIG_LDAP_SCOPE_ONE;
	else if (strcmp(a->ldap_scope, "sub") == 0)
		a->ldap_scope_id = CONFIG_LDAP_SCOPE_SUB;
	else {
		set_error(ctx, entry_line(s, "scope"), "[%s]: scope must be base, one or sub",
			  secname);
		return -1;
	}
	if (strcmp(a->ldap_mode, "bind") != 0 && strcmp(a->ldap_mode, "compare") != 0) {
		set_error(ctx, entry_line(s, "mode"), "[%s]: mode must be bind or compare",
			  secname);
		return -1;
	}
	a->ldap_compare = strcmp(a->ldap_mode, "compare") == 0;
	if (a->ldap_bind_password[0] != '\0' && a->ldap_bind_password_file[0] != '\0') {
		set_error(ctx, s->line, "[%s]: set bind-password or bind-password-file, not both",
			  secname);
		return -1;
	}
	if (strstr(a->ldap_filter, "%u") == NULL && strstr(a->ldap_filter, "%n") == NULL) {
		set_error(ctx, entry_line(s, "filter"), "[%s]: filter must contain %%u or %%n",
			  secname);
		return -1;
	}
	/* every '%' starts %u, %n, %d or %% (passdb_ldap.c's filter_build
	 * relies on it) */
	for (const char *p = strchr(a->ldap_filter, '%'); p != NULL; p = strchr(p + 2, '%')) {
		if (p[1] != 'u' && p[1] != 'n' && p[1] != 'd' && p[1] != '%') {
			set_error(ctx, entry_line(s, "filter"), "[%s]: filter: %%%c is not one of "
				  "%%u, %%n, %%d, %%%%", secname, p[1] != '\0' ? p[1] : ' ');
			return -1;
		}
	}
	bool has_pw = a->ldap_bind_password[0] != '\0' || a->ldap_bind_password_file[0] != '\0';
	if (has_pw != (a->ldap_bind_dn[0] != '\0')) {
		set_error(ctx, s->line, "[%s]: bind-dn and bind-password (or bind-password-file) "
			  "go together", secname);
		return -1;
	}
	/* On the running system, but cheap and the same at -t and start. */
	if (a->ldap_ca_file[0] != '\0' && access(a->ldap_ca_file, R_OK) == -1) {
		set_error(ctx, entry_line(s, "ca-file"), "[%s]: ca-file %s: %s", secname,
			  a->ldap_ca_file, strerror(errno));
		return -1;
	}
	copy = xstrdup(a->ldap_attributes);
	if (split_list(copy, items, LDAP_MAX_MAP, &n, ", \t") == -1) {
		set_error(ctx, entry_line(s, "attributes"), "[%s]: attributes: at most %d "
			  "entries", secname, LDAP_MAX_MAP);
		free(copy);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		char *eq = strchr(items[i], '=');
		const char *field = NULL;

		if (eq != NULL) {
			*eq = '\0';
			for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++)
				if (strcmp(items[i], fields[k]) == 0)
					field = fields[k];
		}
		if (field == NULL || !ldap_attr_ok(eq + 1)) {
			if (eq != NULL)
				*eq = '=';
			set_error(ctx, entry_line(s, "attributes"), "[%s]: attributes: expected "
				  "FIELD=ldapAttribute with FIELD one of uid, gid, home, maildrop; "
				  "got \"%s\"", secname, items[i]);
			free(copy);
			return -1;
		}
		for (size_t k = 0; k < a->ldap_nmap; k++)
			if (a->ldap_map[k].field == field) {
				set_error(ctx, entry_line(s, "attributes"), "[%s]: attributes: %s "
					  "mapped twice", secname, field);
				free(copy);
				return -1;
			}
		a->ldap_map[a->ldap_nmap].field = field;
		a->ldap_map[a->ldap_nmap].attr = xstrdup(eq + 1);
		a->ldap_nmap++;
	}
	free(copy);
	return 0;
}


/* services: the names a request's service= is compared with (each as
 * proto_service_valid() takes it), kept in a->service_list. */
static int validate_services(struct load_ctx *ctx, struct section *s, const char *secname,
			     struct auth_conf *a)
{
	char *copy = xstrdup(a->services), *items[CONFIG_MAX_SERVICES];
	size_t n;

	if (split_list(copy, items, CONFIG_MAX_SERVICES, &n, ", \t") == -1 || n == 0) {
		set_error(ctx, entry_line(s, "services"), "[%s]: services: expected 1 to %d "
			  "service names (leave the key out for every service)", secname,
			  CONFIG_MAX_SERVICES);
		free(copy);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!proto_service_valid(items[i])) {
			set_error(ctx, entry_line(s, "services"), "[%s]: services: \"%s\" is not a "
				  "service name (1-32 characters of a-z 0-9 -)", secname, items[i]);
			free(copy);
			return -1;
		}
		a->service_list[i] = xstrdup(items[i]);
		a->nservices = i + 1;
	}
	free(copy);
	return 0;
}

static void validate_auth(struct load_ctx *ctx, struct config *conf, size_t i)
{
	struct section *s = &ctx->auths[i];
	struct auth_conf *a = &conf->auths[i];
	char secname[64];
	size_t argc;
	int t = -1;

	snprintf(secname, sizeof(secname), "authenticator %s", ctx->auth_names[i]);
	a->name = xstrdup(ctx->auth_names[i]);
	a->line = s->line;
	if (s->type == NULL) {
		set_error(ctx, s->line, "[%s]: required key \"type\" is missing", secname);
		return;
	}
	for (size_t k = 0; k < sizeof(type_names) / sizeof(type_names[0]); k++)
		if (strcmp(s->type, type_names[k]) == 0)
			t = (int)k;
	if (t == -1) {
		set_error(ctx, s->type_line, "[%s] type = %s: expected passwd-file, external, "
			  "checkpassword, pam or ldap", secname, s->type);
		return;
	}
	a->type = (enum auth_type)t;
	apply_section(ctx, secname, s, auth_keys, a, 1u << t);
	if (ctx->failed)
		return;
	if (a->program != NULL) {
		char *copy = xstrdup(a->program), *words[CONFIG_MAX_ARGS];
		if (split_list(copy, words, CONFIG_MAX_ARGS, &argc, " \t") == -1 || argc == 0) {
			set_error(ctx, entry_line(s, "program"), "[%s]: program: expected a command "
				  "and at most %d arguments", secname, CONFIG_MAX_ARGS - 1);
			free(copy);
			return;
		}
		for (size_t k = 0; k < argc; k++)
			a->argv[k] = xstrdup(words[k]);
		a->argv[argc] = NULL;
		free(copy);
		if (a->argv[0][0] != '/') {
			set_error(ctx, entry_line(s, "program"), "[%s]: program must be an absolute "
				  "path", secname);
			return;
		}
	}
	if (a->type == AUTH_TYPE_LDAP && validate_ldap(ctx, s, secname, a) == -1)
		return;
	/* written, even empty: an empty list is refused */
	if (find_entry(s, "services") != NULL && validate_services(ctx, s, secname, a) == -1)
		return;
	if (a->environment != NULL && a->environment[0] != '\0') {
		char *copy = xstrdup(a->environment), *items[CONFIG_MAX_ARGS];
		size_t n;
		if (split_list(copy, items, CONFIG_MAX_ARGS - 1, &n, " \t") == -1) {
			set_error(ctx, s->line, "[%s]: environment: at most %d NAME=VALUE entries",
				  secname, CONFIG_MAX_ARGS - 1);
			free(copy);
			return;
		}
		for (size_t k = 0; k < n; k++) {
			if (strchr(items[k], '=') == NULL || items[k][0] == '=') {
				set_error(ctx, s->line, "[%s]: environment: expected NAME=VALUE, got "
					  "\"%s\"", secname, items[k]);
				free(copy);
				return;
			}
			a->envp[k] = xstrdup(items[k]);
		}
		a->envp[n] = NULL;
		free(copy);
	}
	if (a->default_uid != NULL && a->default_uid[0] != '\0' &&
	    num_parse_u64(a->default_uid, 0, 4294967294u, &(uint64_t){0}) == -1) {
		set_error(ctx, entry_line(s, "default-uid"), "[%s]: default-uid must be a number",
			  secname);
		return;
	}
	if (a->default_gid != NULL && a->default_gid[0] != '\0' &&
	    num_parse_u64(a->default_gid, 0, 4294967294u, &(uint64_t){0}) == -1) {
		set_error(ctx, entry_line(s, "default-gid"), "[%s]: default-gid must be a number",
			  secname);
		return;
	}
	/* pop3d expands it as it does [pop3d] maildrop */
	if (a->default_maildrop != NULL && a->default_maildrop[0] != '\0')
		check_maildrop(ctx, entry_line(s, "default-maildrop"), secname, "default-maildrop",
			       a->default_maildrop);
}

/* metrics-listen: "" (off), ADDR:PORT, [V6ADDR]:PORT, or a bare PORT,
 * which means 127.0.0.1:PORT (loopback unless an address is written). */
static int validate_metrics_listen(struct load_ctx *ctx, struct section *s, const char *sec,
				   char **v)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	unsigned port;

	if ((*v)[0] == '\0')
		return 0;
	if (num_parse_uint(*v, 1, 65535, &port) == 0) {
		char buf[32];

		snprintf(buf, sizeof(buf), "127.0.0.1:%u", port);
		free(*v);
		*v = xstrdup(buf);
	}
	if (sock_parse_addrport(*v, &ss, &sl) == -1) {
		set_error(ctx, entry_line(s, "metrics-listen"), "[%s] metrics-listen: bad address "
			  "\"%s\" (expected PORT, ADDR:PORT or [V6ADDR]:PORT)", sec, *v);
		return -1;
	}
	return 0;
}

/* An [authd] *-socket-mode: octal, 0 to 0777 (no set-id or sticky bits,
 * which mean nothing on a socket). */
static int validate_mode(struct load_ctx *ctx, const char *key, const char *v, unsigned *mode_r)
{
	unsigned m = 0;
	size_t n = strlen(v);

	if (n == 0 || n > 4)
		goto bad;
	for (const char *p = v; *p != '\0'; p++) {
		if (*p < '0' || *p > '7')
			goto bad;
		m = m * 8 + (unsigned)(*p - '0');
	}
	if (m > 0777)
		goto bad;
	*mode_r = m;
	return 0;
bad:
	set_error(ctx, entry_line(&ctx->authd, key), "[authd] %s: expected an octal mode such as "
		  "0660, got \"%s\"", key, v);
	return -1;
}

static void validate(struct load_ctx *ctx, struct config *conf)
{
	struct section none = { 0 };

	if (!ctx->authd.seen) {
		set_error(ctx, 0, "section [authd] is missing");
		return;
	}
	if (!ctx->pop3d.seen) {
		set_error(ctx, 0, "section [pop3d] is missing");
		return;
	}
	apply_section(ctx, "authd", &ctx->authd, authd_keys, conf, 0);
	apply_section(ctx, "cache", ctx->cache.seen ? &ctx->cache : &none, cache_keys, conf, 0);
	apply_section(ctx, "pop3d", &ctx->pop3d, pop3d_keys, conf, 0);
	if (ctx->failed)
		return;
	if (validate_memcached(ctx, &ctx->cache, conf) == -1 ||
	    validate_metrics_listen(ctx, &ctx->authd, "authd", &conf->authd.metrics_listen) == -1 ||
	    validate_metrics_listen(ctx, &ctx->pop3d, "pop3d", &conf->pop3d.metrics_listen) == -1 ||
	    validate_mode(ctx, "dovecot-socket-mode", conf->authd.dovecot_socket_mode,
			  &conf->authd.dovecot_mode) == -1 ||
	    validate_mode(ctx, "saslauthd-socket-mode", conf->authd.saslauthd_socket_mode,
			  &conf->authd.saslauthd_mode) == -1)
		return;
	if (strcmp(conf->authd.dovecot_tempfail, "fail") != 0 &&
	    strcmp(conf->authd.dovecot_tempfail, "disconnect") != 0) {
		set_error(ctx, entry_line(&ctx->authd, "dovecot-tempfail"), "[authd] "
			  "dovecot-tempfail: expected fail or disconnect, got \"%s\"",
			  conf->authd.dovecot_tempfail);
		return;
	}

	/* A POP3S-only server needs no plain port; one of the two is required. */
	if (conf->pop3d.listen[0] == '\0' && conf->pop3d.listen_tls[0] == '\0') {
		set_error(ctx, entry_line(&ctx->pop3d, "listen"), "[pop3d]: set listen (plain "
			  "POP3), listen-tls (POP3S) or both");
		return;
	}
	char *copy = xstrdup(conf->pop3d.listen);
	if (split_list(copy, conf->pop3d.listen_addrs, CONFIG_MAX_LISTEN,
		       &conf->pop3d.nlisten, ", \t") == -1 ||
	    (conf->pop3d.nlisten == 0 && conf->pop3d.listen[0] != '\0')) {
		set_error(ctx, entry_line(&ctx->pop3d, "listen"), "[pop3d] listen: expected 1 to "
			  "%d ADDR:PORT entries", CONFIG_MAX_LISTEN);
		free(copy);
		return;
	}
	for (size_t i = 0; i < conf->pop3d.nlisten; i++)
		conf->pop3d.listen_addrs[i] = xstrdup(conf->pop3d.listen_addrs[i]);
	free(copy);
	if (validate_pop3d(ctx, &ctx->pop3d, conf) == -1)
		return;

	if (strcmp(conf->authd.log.target, "file") == 0 && conf->authd.log.file[0] == '\0')
		set_error(ctx, ctx->authd.line, "[authd]: log-target = file needs log-file");
	if (strcmp(conf->pop3d.log.target, "file") == 0 && conf->pop3d.log.file[0] == '\0')
		set_error(ctx, ctx->pop3d.line, "[pop3d]: log-target = file needs log-file");

	if (ctx->nauths == 0) {
		set_error(ctx, 0, "no [authenticator NAME] section: authd needs at least one");
		return;
	}
	for (size_t i = 0; i < ctx->nauths && !ctx->failed; i++)
		validate_auth(ctx, conf, i);
	conf->nauths = ctx->nauths;
}

static void free_ctx(struct load_ctx *ctx)
{
	struct section *all[3 + CONFIG_MAX_AUTHENTICATORS];
	size_t n = 0;

	all[n++] = &ctx->authd;
	all[n++] = &ctx->cache;
	all[n++] = &ctx->pop3d;
	for (size_t i = 0; i < ctx->nauths; i++) {
		all[n++] = &ctx->auths[i];
		free(ctx->auth_names[i]);
	}
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < all[i]->n; k++)
			free(all[i]->entries[k].value);
}

/* The one parser: reads f (a file, or a buffer through fmemopen) as the
 * configuration called path in messages. */
static struct config *parse_stream(const char *path, FILE *f, char *error, size_t size)
{
	struct load_ctx *ctx;
	struct config *conf;
	void *stream[2];
	int rc;

	ctx = xcalloc(1, sizeof(*ctx));
	ctx->path = path;
	ctx->error = error;
	ctx->errsize = size;
	conf = xcalloc(1, sizeof(*conf));
	conf->path = xstrdup(path);

	/* Comments only at the start of a line (values may contain ';' and '#'),
	 * no continuation lines, and a heap buffer of CONFIG_MAX_LINE bytes. */
	ini_allow_multiline = false;
	ini_allow_inline_comments = false;
	ini_use_stack = false;
	ini_max_line = CONFIG_MAX_LINE;
	ini_initial_alloc = CONFIG_MAX_LINE;
	ini_stop_on_first_error = true;

	stream[0] = ctx;
	stream[1] = f;
	rc = ini_parse_stream(counting_reader, stream, on_ini_entry, ctx);
	if (rc > 0 && !ctx->failed)
		set_error(ctx, (unsigned)rc, "syntax error (expected [section] or key = value)");
	else if (rc < 0 && !ctx->failed)
		set_error(ctx, 0, "cannot parse (out of memory)");
	if (!ctx->failed)
		validate(ctx, conf);
	free_ctx(ctx);
	if (ctx->failed) {
		free(ctx);
		config_free(&conf);
		return NULL;
	}
	free(ctx);
	return conf;
}

struct config *config_load(const char *path, char *error, size_t size)
{
	struct config *conf;
	FILE *f;

	f = fopen(path, "re");
	if (f == NULL) {
		snprintf(error, size, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	conf = parse_stream(path, f, error, size);
	fclose(f);
	return conf;
}

struct config *config_load_buffer(const char *path, const uint8_t *buf, size_t len,
				  char *error, size_t size)
{
	static const uint8_t empty[1];
	struct config *conf;
	FILE *f;

	/* glibc (2.22 and later) reads a size of 0 as an empty file; the
	 * buffer must still be a valid pointer. */
	f = fmemopen((void *)(uintptr_t)(len > 0 ? buf : empty), len, "r");
	if (f == NULL) {
		snprintf(error, size, "%s: cannot read from memory: %s", path, strerror(errno));
		return NULL;
	}
	conf = parse_stream(path, f, error, size);
	fclose(f);
	return conf;
}

static void free_strings(const struct key_def *defs, void *base)
{
	for (const struct key_def *def = defs; def->name != NULL; def++) {
		if (def->type == K_STRING || def->type == K_PATH || def->type == K_LOGLEVEL ||
		    def->type == K_LOGTARGET || def->type == K_FACILITY) {
			if (def->offset == 0 && defs == auth_keys)
				continue;
			char **p = (char **)((char *)base + def->offset);
			free(*p);
			*p = NULL;
		}
	}
}

void config_free(struct config **confp)
{
	struct config *conf = *confp;

	if (conf == NULL)
		return;
	free_strings(authd_keys, conf);
	free_strings(cache_keys, conf);
	for (size_t i = 0; i < conf->cache.nservers; i++)
		free(conf->cache.servers[i].host);
	free_strings(pop3d_keys, conf);
	for (size_t i = 0; i < conf->pop3d.nlisten; i++)
		free(conf->pop3d.listen_addrs[i]);
	for (size_t i = 0; i < conf->pop3d.ntls_addrs; i++)
		free(conf->pop3d.tls_addrs[i]);
	for (size_t i = 0; i < CONFIG_MAX_AUTHENTICATORS; i++) {
		struct auth_conf *a = &conf->auths[i];
		free_strings(auth_keys, a);
		free(a->name);
		for (size_t k = 0; a->argv[k] != NULL; k++)
			free(a->argv[k]);
		for (size_t k = 0; a->envp[k] != NULL; k++)
			free(a->envp[k]);
		for (size_t k = 0; k < a->ldap_nuris; k++)
			free(a->ldap_uri_list[k]);
		for (size_t k = 0; k < a->ldap_nmap; k++)
			free(a->ldap_map[k].attr);
		for (size_t k = 0; k < a->nservices; k++)
			free(a->service_list[k]);
	}
	free(conf->path);
	free(conf);
	*confp = NULL;
}

const struct auth_conf *config_find_auth(const struct config *conf, const char *name)
{
	for (size_t i = 0; i < conf->nauths; i++)
		if (strcmp(conf->auths[i].name, name) == 0)
			return &conf->auths[i];
	return NULL;
}

int config_log_init(const char *ident, const struct log_conf *lc, bool foreground)
{
	enum log_target target = LOG_TARGET_STDERR;

	/* A daemon in the background has no stderr: stderr means syslog. */
	if (strcmp(lc->target, "syslog") == 0 || (!foreground && strcmp(lc->target, "stderr") == 0))
		target = LOG_TARGET_SYSLOG;
	else if (strcmp(lc->target, "file") == 0)
		target = LOG_TARGET_FILE;
	return log_init(ident, (enum log_level)log_level_parse(lc->level), target, lc->file,
			log_facility_parse(lc->syslog_facility));
}

void config_check_private(const char *what, const char *path)
{
	struct stat st;

	if (stat(path, &st) == -1)
		return;
	if (st.st_mode & (S_IROTH | S_IWOTH))
		log_warnx("%s %s is readable or writable by others (mode %04o); "
			  "chmod o-rw it", what, path, (unsigned)(st.st_mode & 07777));
}
