/*
 * config.h - the one configuration file both daemons read.
 *
 * INI syntax (libinih): sections [authd], [cache], [pop3d] and one
 * [authenticator NAME] per authenticator, in chain order.  Each daemon
 * loads and validates the whole file, so `authd -t` and `pop3d -t` both
 * catch a mistake anywhere, and a start refuses what -t refuses: every
 * key's syntax and its relations to other keys are checked here, once,
 * and the daemons use the parsed values below instead of parsing again.  docs/configuration.md is the reference; the
 * key tables in config.c are the single source of truth for defaults.
 */
#ifndef COMMON_CONFIG_H
#define COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"

#define CONFIG_MAX_AUTHENTICATORS 16
/* [authenticator NAME]: NAME is 1 to this many characters of A-Z a-z 0-9 - _. */
#define CONFIG_AUTH_NAME_MAX 23
#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_ARGS 32
/* Service names in one authenticator's `services`. */
#define CONFIG_MAX_SERVICES 16
/* memcached servers of the L2 cache: a ketama ring of more is no longer
 * a small cluster's cache, and each host polls every server's flush log. */
#define CONFIG_MAX_MEMCACHED 16

/* One [cache] memcached entry, parsed. */
struct memcached_server {
	char *host;		/* IP address, DNS name, or a UNIX socket path */
	unsigned port;		/* 0 for a UNIX socket */
};

/* expire, parsed: no EXPIRE value, or NEVER. */
#define CONFIG_EXPIRE_NEVER UINT32_MAX

enum config_ldap_scope { CONFIG_LDAP_SCOPE_BASE, CONFIG_LDAP_SCOPE_ONE, CONFIG_LDAP_SCOPE_SUB };

enum auth_type {
	AUTH_TYPE_PASSWD_FILE,
	AUTH_TYPE_EXTERNAL,
	AUTH_TYPE_CHECKPASSWORD,
	AUTH_TYPE_PAM,
	AUTH_TYPE_LDAP,
};

/* Logging settings shared by the [authd] and [pop3d] sections. */
struct log_conf {
	char *level;		/* error, warn, info, debug */
	char *target;		/* stderr, syslog, file */
	char *file;		/* with target = file */
	char *syslog_facility;	/* daemon, mail, local0..local7 */
};

struct auth_conf {
	char *name;
	unsigned line;			/* of the section header */
	enum auth_type type;
	char *path;			/* passwd-file */
	char *program;			/* external, checkpassword: command line */
	char *argv[CONFIG_MAX_ARGS + 1];/* program split on blanks, NULL-ended */
	char *environment;		/* extra NAME=VALUE for helper programs */
	char *envp[CONFIG_MAX_ARGS + 1];/* environment split, NULL-ended */
	unsigned workers;
	unsigned queue_limit;
	unsigned per_source_limit;	/* requests of one client source (authd/fairq.c) */
	uint64_t queue_wait_limit_ms;	/* admission: longest expected wait (0 = none) */
	unsigned queue_wait_factor;	/* ... and at most this × mean service (0: off) */
	uint64_t timeout_ms;
	bool cache;
	bool require_secured;		/* refuse requests with secured=no */
	char *services;			/* as written; "" or unset: every service */
	char *service_list[CONFIG_MAX_SERVICES];	/* services split and checked */
	size_t nservices;		/* 0: it answers requests of every service */
	unsigned hash_concurrency;	/* passwd-file: concurrent hash checks */
	unsigned max_requests;		/* external, pam: recycle helper after N (0 = never) */
	char *default_uid, *default_gid, *default_home, *default_maildrop;
	/* pam */
	char *pam_service;
	/* ldap */
	char *ldap_uris;
	bool ldap_starttls;
	char *ldap_ca_file;
	char *ldap_bind_dn;
	char *ldap_bind_password;
	char *ldap_bind_password_file;
	char *ldap_base;
	char *ldap_scope;		/* base, one, sub */
	char *ldap_filter;
	char *ldap_attributes;		/* "uid=uidNumber, gid=gidNumber, ..." */
	char *ldap_mode;		/* bind, compare */
	char *ldap_password_attribute;	/* compare mode */
	uint64_t ldap_network_timeout_ms;
	/* ldap, as parsed and checked by config.c: the backend uses these */
	char *ldap_uri_list[LDAP_MAX_URIS];	/* uris split; scheme checked */
	size_t ldap_nuris;
	enum config_ldap_scope ldap_scope_id;
	bool ldap_compare;			/* mode = compare */
	struct {
		const char *field;		/* "uid", "gid", "home" or "maildrop" */
		char *attr;			/* an LDAP attribute name */
	} ldap_map[LDAP_MAX_MAP];		/* attributes, each field once */
	size_t ldap_nmap;
};

struct config {
	char *path;

	struct {
		char *socket;
		char *master_socket;
		char *stats_socket;
		char *stats_group;		/* group of the stats socket (mode 0660) */
		char *metrics_listen;		/* ADDR:PORT for HTTP /metrics, or "" */
		char *user;
		struct log_conf log;
		bool lowercase_usernames;
		bool strip_domain;
		char *default_domain;
		uint64_t ticket_lifetime_ms;
		unsigned max_clients;
		/* the Dovecot and saslauthd protocol sockets ("" = none) */
		char *dovecot_socket, *dovecot_socket_mode, *dovecot_socket_group;
		char *saslauthd_socket, *saslauthd_socket_mode, *saslauthd_socket_group;
		unsigned dovecot_mode, saslauthd_mode;	/* parsed: octal, <= 0777 */
		/* TEMPFAIL on the Dovecot socket: "fail" (FAIL temp) or
		 * "disconnect" (what Postfix turns into 454) */
		char *dovecot_tempfail;
	} authd;

	struct {
		bool enabled;
		uint64_t size;
		uint64_t positive_ttl_ms;
		uint64_t negative_ttl_ms;
		uint64_t stale_ttl_ms;
		unsigned refresh_ahead_pct;
		/* L2: memcached shared by the hosts of a cluster (authd/l2.c) */
		char *memcached;		/* as written; "" = no L2 */
		struct memcached_server servers[CONFIG_MAX_MEMCACHED];
		size_t nservers;
		char *cluster_key_file;
		uint64_t memcached_timeout_ms;
		unsigned memcached_workers;
		unsigned breaker_failures;
		uint64_t breaker_backoff_ms;
		uint64_t flush_poll_ms;
	} cache;

	struct {
		char *listen;			/* as written */
		char *listen_addrs[CONFIG_MAX_LISTEN];
		size_t nlisten;
		char *auth_socket;
		char *master_auth_socket;
		char *maildrop;
		unsigned login_processes;	/* 0 = one per core */
		char *login_user;
		char *login_chroot;
		char *stats_socket;
		char *metrics_listen;		/* ADDR:PORT for HTTP /metrics, or "" */
		char *stats_group;		/* group of the stats socket (mode 0660) */
		struct log_conf log;
		uint64_t preauth_timeout_ms;
		uint64_t login_timeout_ms;	/* whole AUTHORIZATION state */
		unsigned login_max_commands;	/* command lines before login */
		uint64_t session_timeout_ms;
		unsigned max_connections;
		unsigned max_connections_per_ip;
		unsigned max_sessions_per_user;
		unsigned session_reuse;		/* logins per session process */
		unsigned session_spares;	/* most processes waiting for one */
		uint64_t session_spare_timeout_ms;
		unsigned first_valid_uid;
		uint64_t auth_failure_delay_ms;
		unsigned max_auth_failures;
		unsigned max_bad_commands;
		char *greeting;
		char *default_language;		/* a tag (pop3d/lang.c) */
		char *language_dir;		/* LL/LC_MESSAGES/pop3d.mo under it */
		bool user_command;		/* allow USER/PASS */
		char *expire;			/* EXPIRE capability value, empty = not sent */
		char *login_delay;		/* LOGIN-DELAY capability value */
		bool implementation;		/* IMPLEMENTATION capability */
		/* TLS (pop3d/tls.c; docs/pop3d.md has the reasons) */
		char *listen_tls;		/* implicit-TLS ADDR:PORT list, as written */
		bool starttls;			/* offer STLS on the listen ports */
		bool require_tls;		/* no USER/PASS/AUTH before TLS */
		bool require_tls_disconnect;	/* ... and close the connection */
		char *require_tls_exempt;	/* CIDR list exempt from require-tls */
		char *tls_cert_file;		/* PEM chain list, one per certificate */
		char *tls_key_file;		/* PEM key list, paired with tls_cert_file */
		char *tls_min_version;		/* TLSv1.2 or TLSv1.3 */
		char *tls_ciphers;		/* TLS 1.2 cipher list (OpenSSL syntax) */
		char *tls_ciphersuites;		/* TLS 1.3 ciphersuites */
		char *tls_groups;		/* key exchange groups */
		bool tls_session_tickets;	/* stateless resumption */
		uint64_t tls_ticket_key_lifetime_ms;	/* ticket key rotation period */
		/* parsed and checked by config.c */
		char *tls_addrs[CONFIG_MAX_LISTEN];	/* listen-tls split */
		size_t ntls_addrs;
		uint64_t login_delay_ms;	/* login-delay; 0 = none */
		uint32_t expire_days;		/* expire; CONFIG_EXPIRE_NEVER if unset or NEVER */
		size_t ntls_certs;		/* tls-cert-file entries (= tls-key-file's) */
		/* the PROXY protocol (docs/cluster.md) */
		char *proxy_protocol;		/* yes, no, or listener addresses */
		char *proxy_trusted_networks;	/* CIDR list of the balancers */
		uint64_t proxy_timeout_ms;	/* for the header to arrive */
		bool proxy_listen[CONFIG_MAX_LISTEN];	/* parsed: listen_addrs[i] expects it */
		bool proxy_tls[CONFIG_MAX_LISTEN];	/* ... tls_addrs[i] */
	} pop3d;

	struct auth_conf auths[CONFIG_MAX_AUTHENTICATORS];
	size_t nauths;
};

/* Loads and validates path: every key of every section, whichever daemon
 * reads it, with every check that needs neither the running system's
 * users nor a daemon's own libraries (libldap's URI parser, OpenSSL's
 * certificate loading; those run in the daemon, in the same function at
 * -t and at start).  On success returns a config the caller frees
 * with config_free().  On failure returns NULL and writes one message
 * naming the file, line and key into error (size bytes). */
struct config *config_load(const char *path, char *error, size_t size);
/* The same from len bytes at buf (the file's contents, read elsewhere: by
 * authd's root helper at a reload); path only names it in messages and in
 * conf->path.  buf is not kept.  Returns as config_load(). */
struct config *config_load_buffer(const char *path, const uint8_t *buf, size_t len,
				  char *error, size_t size);
void config_free(struct config **confp);

/* Finds an authenticator by name; NULL if none. */
const struct auth_conf *config_find_auth(const struct config *conf, const char *name);
const char *auth_type_name(enum auth_type type);

/* Sets up logging for ident from a [authd] or [pop3d] log_conf; with
 * foreground false, target stderr becomes syslog.  Returns log_init()'s
 * result (-1: the log file cannot be opened). */
int config_log_init(const char *ident, const struct log_conf *lc, bool foreground);

/* Warns (through log_warnx) if path is readable or writable by others. */
void config_check_private(const char *what, const char *path);

#endif
