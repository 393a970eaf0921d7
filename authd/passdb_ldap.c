/*
 * passdb_ldap.c - the LDAP authenticator (type = ldap).
 *
 * DESIGN
 *
 * Connections.  Each worker owns two libldap handles and shares neither
 * (libldap 2.5 is thread-safe per handle, but a bind changes the identity
 * of a whole connection):
 *   - the service connection, bound once as bind-dn (anonymous without
 *     one), runs every search;
 *   - the bind connection, used by mode = bind only, binds as each user
 *     in turn; a refused bind leaves it anonymous, which is harmless.
 * Both open on the first request that needs them, trying `uris` in order
 * (LDAPv3, referrals off; TLS for ldaps://, StartTLS on ldap:// with
 * `starttls = yes`), and then stay open for the life of the worker.
 *
 * Deadlines.  Only asynchronous calls are made, each followed by
 * ldap_result() with the time left before job->deadline_ms, so no call
 * outlives its job: the loop answers TEMPFAIL at the deadline anyway, and
 * authenticator.c counts a worker past its deadline as stuck.  Opening a
 * connection is bounded by the smaller of `network-timeout` and the time
 * left: tcp_connect() connects the socket itself (non-blocking, poll), and
 * the TLS handshake is bounded by LDAP_OPT_NETWORK_TIMEOUT, which libldap
 * 2.5 honours there only in its asynchronous mode (see handle_open()).
 *
 * Failures.  After a timeout or a transport error the operation is
 * abandoned and the handle dropped (ldap_abandon_ext, ldap_unbind_ext): a
 * handle that missed a reply is not trusted with the next request.  The
 * next request opens a new one, but not before a back-off
 * (LDAP_BACKOFF_MIN_MS, doubling to LDAP_BACKOFF_MAX_MS, reset by the
 * first answer); requests that come meanwhile get TEMPFAIL at once, so a
 * dead directory costs a worker one timeout per back-off period, not one
 * per request.  A connection opened by an earlier request and found closed
 * (directory restarted, idle timeout) is reopened at once, once, within
 * the same request.
 *
 * Results.
 *   search (service connection, sizelimit 2, the mapped attributes):
 *     no entry NOUSER; two or more FAIL, logged as "ambiguous".
 *   mode = bind: simple bind as the entry's DN with the user's password
 *     on the bind connection: success OK, invalidCredentials FAIL.
 *   mode = compare: the entry's `password-attribute` values are checked
 *     with password_verify() (the passwd-file schemes, which include
 *     LDAP's {CRYPT}); unknown users are checked against a real hash seen
 *     before, so that they cost about the same time.
 *   Busy or unavailable directories, and anything unexpected, TEMPFAIL.
 *
 * Disabled accounts: FAIL, with the reason logged (never told to the
 * client, which only sees FAIL).
 *   - bind mode: the directory decides.  The bind carries the password
 *     policy request control; a refusal that names accountLocked,
 *     passwordExpired or changeAfterReset, or an Active Directory "data
 *     533/775/532/701/773" diagnostic, or a refused bind of an entry that
 *     has pwdAccountLockedTime, is logged as such.  unwillingToPerform,
 *     inappropriateAuthentication and constraintViolation (389-DS
 *     nsAccountLock, some lockout schemes) are logged as "bind refused".
 *   - compare mode: an entry with any pwdAccountLockedTime value is
 *     locked (there is no server policy to say when a lock expires), once
 *     the password has matched: a wrong password is a plain FAIL, so the
 *     lock state is not revealed to someone who does not know it.
 *
 * Secrets.  The user's password goes to libldap as a berval pointing into
 * the job (which authenticator.c wipes); libldap copies it into its BER
 * buffer, which it frees without wiping: a known limit of the library.
 * Stored hashes copied out of entries are wiped after use.  The service
 * password (bind-password, or bind-password-file read once at start-up)
 * is wiped at shutdown.  Neither is ever logged.  Empty passwords are
 * refused before anything is sent (request.c refuses them too): an LDAP
 * simple bind with an empty password is an anonymous bind, which many
 * servers report as a success.
 *
 * Files read at start-up (bind-password-file, ca-file) are opened after
 * authd dropped privileges: they must be readable by [authd] user.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ldap.h>
#include <openldap.h>
#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"

/* Reconnection back-off: long enough that a dead directory does not cost
 * a connection attempt per request, short enough that a restarted one is
 * back in use within seconds. */
#define LDAP_BACKOFF_MIN_MS	100
#define LDAP_BACKOFF_MAX_MS	5000
/* A service password longer than this is a wrong file, not a password. */
#define LDAP_MAX_SECRET		1024
/* Longest stored password value compare mode looks at (argon2 strings
 * are about 100 bytes; anything near this is not a hash). */
#define LDAP_MAX_HASH		4096
/* Longest diagnostic message from the directory we put in a log line. */
#define LDAP_MAX_DIAG		200
/* The largest message taken from a directory: liblber allocates what a
 * message's length field announces before reading it, so a hostile or
 * broken server could make authd allocate gigabytes per answer.  An entry
 * with the few attributes asked for is far below this. */
#define LDAP_MAX_INCOMING	(1024 * 1024)
/* Password policy (draft-behera-ldap-password-policy): present when an
 * account is locked. */
#define LDAP_LOCK_ATTR		"pwdAccountLockedTime"

struct ldap_map {
	const char *field;		/* userdb key: uid, gid, home, maildrop */
	const char *attr;		/* LDAP attribute (the configuration's) */
};

/* One of `uris`, parsed at start-up. */
struct ldap_server {
	char *uri;
	char *host;			/* NULL for ldapi:// */
	char port[8];
	bool ldaps;			/* TLS from the first byte */
	bool ldapi;			/* local socket: libldap connects */
};

/* Shared by the workers; read-only once init() returned. */
struct ldap_backend {
	const char *name;
	struct ldap_server servers[LDAP_MAX_URIS];
	size_t nservers;
	bool starttls;
	const char *ca_file;		/* NULL: libldap's default (ldap.conf) */
	const char *bind_dn;		/* NULL: anonymous searches */
	char *bind_pw;			/* wiped at deinit; never logged */
	size_t bind_pwlen;
	const char *base;
	int scope;
	const char *filter;		/* template with %u %n %d %% */
	bool compare;
	const char *pw_attr;		/* compare mode */
	struct ldap_map map[LDAP_MAX_MAP];
	size_t nmap;
	char *attrs[LDAP_MAX_MAP + 3];	/* what searches ask for, NULL-ended; borrowed */
	uint64_t net_timeout_ms;
};

/* One connection of one worker. */
struct ldap_conn {
	LDAP *ld;			/* NULL: closed */
	const char *role;		/* "service" or "bind", for logs */
	uint64_t retry_ms;		/* no new connection before (monotonic) */
	uint64_t backoff_ms;		/* the next back-off; 0 after an answer */
};

struct ldap_worker {
	struct ldap_conn svc, usr;
	char *dummy_hash;		/* compare mode: a real hash, for unknown users */
};

/* What a search found. */
struct ldap_found {
	LDAPMessage *entry;		/* inside the search result */
	char *dn;			/* ldap_memfree */
	struct userdb udb;
	const char *bad_attr;		/* a mapped attribute with an unusable value */
	bool locked;			/* LDAP_LOCK_ATTR present */
};

/* Ask for password policy details with every user bind.  Not critical:
 * servers without password policies ignore it.  libldap only reads it,
 * so every worker may pass the same one. */
static LDAPControl ppolicy_request = {
	.ldctl_oid = LDAP_CONTROL_PASSWORDPOLICYREQUEST,
	.ldctl_value = { 0, NULL },
	.ldctl_iscritical = 0,
};
static LDAPControl *bind_ctrls[] = { &ppolicy_request, NULL };

/* ---- time --------------------------------------------------------------- */

/* Milliseconds left before deadline (monotonic); 0 once it has passed. */
static uint64_t left_ms(uint64_t deadline)
{
	uint64_t now = mtime_ms();

	return now >= deadline ? 0 : deadline - now;
}

static void tv_from_ms(struct timeval *tv, uint64_t ms)
{
	tv->tv_sec = (time_t)(ms / 1000);
	tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

/* ---- logging helpers ---------------------------------------------------- */

/* Copies text from the directory into out (size bytes) for a log line:
 * bounded, control characters replaced. */
static void log_safe(char *out, size_t size, const char *text)
{
	size_t i = 0;

	if (text != NULL)
		for (; text[i] != '\0' && i + 1 < size; i++)
			out[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? '?' : text[i];
	out[i] = '\0';
}

/* The handle's last error and diagnostic message, for a log line. */
static void handle_error(LDAP *ld, char *out, size_t size)
{
	int err = LDAP_OTHER;
	char *diag = NULL, safe[LDAP_MAX_DIAG];

	ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &err);
	ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diag);
	log_safe(safe, sizeof(safe), diag);
	snprintf(out, size, "%s%s%s", ldap_err2string(err), safe[0] != '\0' ? ": " : "", safe);
	if (diag != NULL)
		ldap_memfree(diag);
}

/* ---- connections -------------------------------------------------------- */

/* Waits for the result of msgid until deadline.  Returns what ldap_result
 * returns: > 0 with *res_r set (the caller frees it), 0 on timeout, -1 if
 * the connection failed. */
static int wait_result(LDAP *ld, int msgid, uint64_t deadline, LDAPMessage **res_r)
{
	struct timeval tv;
	uint64_t ms = left_ms(deadline);

	*res_r = NULL;
	if (ms == 0)
		return 0;
	tv_from_ms(&tv, ms);
	return ldap_result(ld, msgid, LDAP_MSG_ALL, &tv, res_r);
}

/* Bounds what ld takes in: a message longer than LDAP_MAX_INCOMING fails
 * the read (ldap_result() then says the connection is lost) before
 * liblber allocates it.  Returns 0, or -1. */
static int set_max_incoming(LDAP *ld)
{
	ber_len_t max = LDAP_MAX_INCOMING;
	Sockbuf *sb = NULL;

	if (ldap_get_option(ld, LDAP_OPT_SOCKBUF, &sb) != LDAP_OPT_SUCCESS || sb == NULL)
		return -1;
	return ber_sockbuf_ctrl(sb, LBER_SB_OPT_SET_MAX_INCOMING, &max) == 1 ? 0 : -1;
}

/* Bounds the next connect() and TLS handshake of ld. */
static int set_net_timeout(struct ldap_backend *b, LDAP *ld, uint64_t deadline)
{
	struct timeval tv;
	uint64_t ms = left_ms(deadline);

	if (ms > b->net_timeout_ms)
		ms = b->net_timeout_ms;
	if (ms == 0)
		ms = 1;
	tv_from_ms(&tv, ms);
	return ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv) == LDAP_OPT_SUCCESS ? 0 : -1;
}

/* TLS settings of one handle: verify the server against ca-file. */
static int tls_setup(struct ldap_backend *b, LDAP *ld, const char *uri)
{
	int demand = LDAP_OPT_X_TLS_DEMAND, client = 0;
	char why[LDAP_MAX_DIAG + 64];

	if (b->ca_file != NULL &&
	    ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, b->ca_file) != LDAP_OPT_SUCCESS)
		goto fail;
	if (ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand) != LDAP_OPT_SUCCESS)
		goto fail;
	/* TLS options set on a handle only take effect in a new TLS context:
	 * without NEWCTX the CA file is silently ignored and verification
	 * fails ("Connect error"), as measured with libldap 2.5.13. */
	if (ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &client) != LDAP_OPT_SUCCESS)
		goto fail;
	return 0;
fail:
	handle_error(ld, why, sizeof(why));
	log_warnx("authenticator %s: %s: cannot set up TLS (ca-file %s): %s", b->name, uri,
		  b->ca_file != NULL ? b->ca_file : "default", why);
	return -1;
}

/* Connects a non-blocking TCP socket to srv (each address in turn) before
 * deadline, network-timeout at most.  Returns the socket, or -1 (logged).
 * Done here rather than by libldap so that the connection can be handed to
 * libldap already non-blocking: see handle_open(). */
static int tcp_connect(struct ldap_backend *b, const struct ldap_server *srv, uint64_t deadline)
{
	struct addrinfo hints, *res, *ai;
	uint64_t by, ms = left_ms(deadline);
	int fd = -1, err = ETIMEDOUT, rc;

	by = mtime_ms() + (ms < b->net_timeout_ms ? ms : b->net_timeout_ms);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	/* Name resolution has no timeout: name directories by address or in
	 * /etc/hosts where that matters. */
	rc = getaddrinfo(srv->host, srv->port, &hints, &res);
	if (rc != 0) {
		log_warnx("authenticator %s: cannot connect to %s: %s", b->name, srv->uri,
			  gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL && fd == -1 && left_ms(by) > 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1) {
			err = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		if (err == EINPROGRESS) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			socklen_t len = sizeof(err);

			do
				rc = poll(&pfd, 1, (int)left_ms(by));
			while (rc == -1 && errno == EINTR);
			if (rc == 0)
				err = ETIMEDOUT;
			else if (rc == -1)
				err = errno;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
				err = errno;
			if (err == 0)
				break;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1) {
		errno = err;
		log_warn("authenticator %s: cannot connect to %s", b->name, srv->uri);
	}
	return fd;
}

/* Opens a handle to srv before deadline: connect, TLS (ldaps:// or
 * StartTLS) and, for the service connection, the service bind.  Returns
 * the handle, or NULL (logged).
 *
 * libldap 2.5 bounds a TLS handshake by LDAP_OPT_NETWORK_TIMEOUT only in
 * its asynchronous mode: in the default mode it spins on the non-blocking
 * socket, forever if the directory is stopped (SIGSTOP) after accepting.
 * So ldap:// and ldaps:// connections are made here, non-blocking, handed
 * over with ldap_init_fd(), and used with LDAP_OPT_CONNECT_ASYNC, which
 * libldap's reads and writes handle (EAGAIN: wait in ldap_result()).
 * ldapi:// (a local socket, never TLS) is left to libldap. */
static LDAP *handle_open(struct ldap_backend *b, const struct ldap_server *srv, bool service,
			 uint64_t deadline)
{
	LDAP *ld = NULL;
	LDAPMessage *res;
	int v3 = LDAP_VERSION3, msgid, err, rc, fd;
	char *diag = NULL, why[LDAP_MAX_DIAG + 64], safe[LDAP_MAX_DIAG];
	bool starttls = b->starttls && !srv->ldaps && !srv->ldapi;
	const char *uri = srv->uri;

	if (srv->ldapi) {
		rc = ldap_initialize(&ld, uri);
	} else {
		fd = tcp_connect(b, srv, deadline);
		if (fd == -1)
			return NULL;
		rc = ldap_init_fd(fd, LDAP_PROTO_TCP, uri, &ld);
		if (rc != LDAP_SUCCESS)
			close(fd);
	}
	if (rc != LDAP_SUCCESS) {
		log_warnx("authenticator %s: %s: %s", b->name, uri, ldap_err2string(rc));
		return NULL;
	}
	if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS ||
	    set_max_incoming(ld) == -1 ||
	    (!srv->ldapi &&
	     ldap_set_option(ld, LDAP_OPT_CONNECT_ASYNC, LDAP_OPT_ON) != LDAP_OPT_SUCCESS) ||
	    set_net_timeout(b, ld, deadline) == -1) {
		log_warnx("authenticator %s: %s: cannot set connection options", b->name, uri);
		goto out_unbind;
	}
	if ((srv->ldaps || starttls) && tls_setup(b, ld, uri) == -1)
		goto out_unbind;
	if (srv->ldapi && ldap_connect(ld) != LDAP_SUCCESS) {
		handle_error(ld, why, sizeof(why));
		log_warnx("authenticator %s: cannot connect to %s: %s", b->name, uri, why);
		goto out_unbind;
	}
	if (starttls) {
		rc = ldap_start_tls(ld, NULL, NULL, &msgid);
		if (rc != LDAP_SUCCESS) {
			log_warnx("authenticator %s: %s: StartTLS: %s", b->name, uri,
				  ldap_err2string(rc));
			goto out_unbind;
		}
		rc = wait_result(ld, msgid, deadline, &res);
		if (rc <= 0) {
			log_warnx("authenticator %s: %s: StartTLS: %s", b->name, uri,
				  rc == 0 ? "no answer before the deadline" : "connection lost");
			goto out_unbind;
		}
		err = LDAP_OTHER;
		if (ldap_parse_result(ld, res, &err, NULL, &diag, NULL, NULL, 1) != LDAP_SUCCESS ||
		    err != LDAP_SUCCESS) {
			log_safe(safe, sizeof(safe), diag);
			log_warnx("authenticator %s: %s refused StartTLS: %s %s", b->name, uri,
				  ldap_err2string(err), safe);
			goto out_unbind;
		}
	}
	if (srv->ldaps || starttls) {
		/* The handshake, bounded by LDAP_OPT_NETWORK_TIMEOUT (async mode). */
		if (set_net_timeout(b, ld, deadline) == -1 ||
		    ldap_install_tls(ld) != LDAP_SUCCESS) {
			handle_error(ld, why, sizeof(why));
			log_warnx("authenticator %s: %s: TLS handshake failed: %s", b->name, uri,
				  why);
			goto out_unbind;
		}
	}
	if (service && b->bind_dn != NULL) {
		struct berval cred = { b->bind_pwlen, b->bind_pw };

		rc = ldap_sasl_bind(ld, b->bind_dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, &msgid);
		if (rc != LDAP_SUCCESS) {
			log_warnx("authenticator %s: %s: service bind: %s", b->name, uri,
				  ldap_err2string(rc));
			goto out_unbind;
		}
		rc = wait_result(ld, msgid, deadline, &res);
		if (rc <= 0) {
			log_warnx("authenticator %s: %s: service bind: %s", b->name, uri,
				  rc == 0 ? "no answer before the deadline" : "connection lost");
			goto out_unbind;
		}
		err = LDAP_OTHER;
		if (ldap_parse_result(ld, res, &err, NULL, &diag, NULL, NULL, 1) != LDAP_SUCCESS ||
		    err != LDAP_SUCCESS) {
			log_safe(safe, sizeof(safe), diag);
			log_warnx("authenticator %s: %s refused the service bind as %s: %s %s",
				  b->name, uri, b->bind_dn, ldap_err2string(err), safe);
			goto out_unbind;
		}
	}
	if (diag != NULL)
		ldap_memfree(diag);
	return ld;

out_unbind:
	if (diag != NULL)
		ldap_memfree(diag);
	ldap_unbind_ext(ld, NULL, NULL);
	return NULL;
}

/* Closes c, first abandoning msgid if >= 0.  With backoff, no new
 * connection is tried for the back-off period, which doubles each time
 * until an answer resets it. */
static void conn_drop(struct ldap_conn *c, int msgid, bool backoff)
{
	if (c->ld != NULL) {
		if (msgid >= 0)
			ldap_abandon_ext(c->ld, msgid, NULL, NULL);
		ldap_unbind_ext(c->ld, NULL, NULL);
		c->ld = NULL;
	}
	if (backoff) {
		if (c->backoff_ms == 0)
			c->backoff_ms = LDAP_BACKOFF_MIN_MS;
		else if (c->backoff_ms * 2 <= LDAP_BACKOFF_MAX_MS)
			c->backoff_ms *= 2;
		else
			c->backoff_ms = LDAP_BACKOFF_MAX_MS;
		c->retry_ms = mtime_ms() + c->backoff_ms;
	}
}

/* Opens c on the first of `uris` that works, before deadline.  Returns 0,
 * or -1 with *reason_r (TIMEOUT if the deadline passed, else UNAVAILABLE;
 * also while backing off). */
static int conn_open(struct ldap_backend *b, struct ldap_conn *c, bool service,
		     uint64_t deadline, enum tempfail_reason *reason_r)
{
	if (mtime_ms() < c->retry_ms) {
		log_debug("authenticator %s: %s connection: waiting %llums before reconnecting",
			  b->name, c->role, (unsigned long long)(c->retry_ms - mtime_ms()));
		*reason_r = TEMPFAIL_UNAVAILABLE;
		return -1;
	}
	for (size_t i = 0; i < b->nservers && left_ms(deadline) > 0; i++) {
		c->ld = handle_open(b, &b->servers[i], service, deadline);
		if (c->ld != NULL) {
			log_debug("authenticator %s: %s connection to %s open", b->name, c->role,
				  b->servers[i].uri);
			return 0;
		}
	}
	*reason_r = left_ms(deadline) == 0 ? TEMPFAIL_TIMEOUT : TEMPFAIL_UNAVAILABLE;
	conn_drop(c, -1, true);
	return -1;
}

/* One request on a connection. */
struct ldap_op {
	bool bind;			/* else search */
	const char *filter;		/* search */
	const char *dn;			/* bind */
	struct berval *cred;		/* bind */
};

static int op_start(struct ldap_backend *b, LDAP *ld, const struct ldap_op *op,
		    uint64_t deadline, int *msgid_r)
{
	struct timeval limit;

	if (op->bind)
		return ldap_sasl_bind(ld, op->dn, LDAP_SASL_SIMPLE, op->cred, bind_ctrls, NULL,
				      msgid_r);
	/* The directory's own time limit, in whole seconds (at least 1: 0
	 * would mean none); ldap_result() below enforces the real deadline. */
	limit.tv_sec = (time_t)((left_ms(deadline) + 999) / 1000);
	if (limit.tv_sec == 0)
		limit.tv_sec = 1;
	limit.tv_usec = 0;
	return ldap_search_ext(ld, b->base, b->scope, op->filter, b->attrs, 0, NULL, NULL,
			       &limit, 2, msgid_r);
}

/* True for ldap_search_ext/ldap_sasl_bind errors that mean nothing was
 * sent because of the request itself (the connection is fine). */
static bool local_request_error(int rc)
{
	return rc == LDAP_FILTER_ERROR || rc == LDAP_PARAM_ERROR || rc == LDAP_ENCODING_ERROR ||
	       rc == LDAP_NO_MEMORY || rc == LDAP_NOT_SUPPORTED;
}

/* Runs op on c before deadline, opening c first if needed, and once more
 * on a new connection if a connection opened by an earlier request turns out
 * to be closed.  Returns 0 with *res_r (the caller frees it with
 * ldap_msgfree), or -1 with *reason_r; c is dropped after a timeout or a
 * transport error. */
static int conn_run(struct ldap_backend *b, struct ldap_conn *c, bool service,
		    const struct ldap_op *op, uint64_t deadline, LDAPMessage **res_r,
		    enum tempfail_reason *reason_r)
{
	char why[LDAP_MAX_DIAG + 64];
	int msgid, rc;

	*res_r = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		bool reused = c->ld != NULL;

		if (!reused && conn_open(b, c, service, deadline, reason_r) == -1)
			return -1;

		rc = op_start(b, c->ld, op, deadline, &msgid);
		if (rc == LDAP_SUCCESS) {
			rc = wait_result(c->ld, msgid, deadline, res_r);
			if (rc > 0) {
				c->backoff_ms = 0;
				return 0;
			}
			if (rc == 0) {
				log_warnx("authenticator %s: %s connection: no answer before the "
					  "deadline; dropping it", b->name, c->role);
				conn_drop(c, msgid, true);
				*reason_r = TEMPFAIL_TIMEOUT;
				return -1;
			}
		} else if (local_request_error(rc)) {
			log_warnx("authenticator %s: cannot send the %s request: %s (check the "
				  "configuration)", b->name, op->bind ? "bind" : "search",
				  ldap_err2string(rc));
			*reason_r = TEMPFAIL_INTERNAL;
			return -1;
		}
		handle_error(c->ld, why, sizeof(why));
		log_warnx("authenticator %s: %s connection lost: %s%s", b->name, c->role, why,
			  reused ? "; reconnecting" : "");
		/* A connection that worked before: the directory restarted or
		 * closed an idle connection; try a new one right away. */
		conn_drop(c, -1, !reused);
		if (!reused) {
			*reason_r = left_ms(deadline) == 0 ? TEMPFAIL_TIMEOUT :
							     TEMPFAIL_UNAVAILABLE;
			return -1;
		}
	}
	*reason_r = TEMPFAIL_UNAVAILABLE;
	return -1;
}

/* ---- filter ------------------------------------------------------------- */

/* Builds the search filter for user: the template with %u (the whole
 * normalised name), %n (its local part: before the last '@', or all of
 * it), %d (its domain, or empty) each escaped per RFC 4515 with
 * ldap_bv2escaped_filter_value, and %% as %.  Returns a string the caller
 * frees, or NULL. */
static char *filter_build(const char *tmpl, char *user)
{
	char *at = strrchr(user, '@');
	size_t ulen = strlen(user);
	struct berval in[3], esc[3] = { { 0, NULL }, { 0, NULL }, { 0, NULL } };
	char *out = NULL;
	size_t len = 0, pos = 0;

	in[0].bv_val = user;
	in[0].bv_len = ulen;
	in[1].bv_val = user;
	in[1].bv_len = at != NULL ? (size_t)(at - user) : ulen;
	in[2].bv_val = at != NULL ? at + 1 : user + ulen;
	in[2].bv_len = at != NULL ? ulen - (size_t)(at + 1 - user) : 0;
	for (int i = 0; i < 3; i++)
		if (in[i].bv_len > 0 && ldap_bv2escaped_filter_value(&in[i], &esc[i]) != 0)
			goto out;
	/* Two passes over the template: measure, then copy. */
	for (int pass = 0; pass < 2; pass++) {
		for (const char *p = tmpl; *p != '\0'; p++) {
			const struct berval *v = NULL;
			char ch = *p;

			if (ch == '%') {
				p++;
				if (*p == 'u')
					v = &esc[0];
				else if (*p == 'n')
					v = &esc[1];
				else if (*p == 'd')
					v = &esc[2];
				else if (*p == '%')
					ch = '%';
				else
					goto out;	/* config.c checked the template */
			}
			if (v != NULL) {
				if (pass == 1 && v->bv_len > 0)
					memcpy(out + pos, v->bv_val, v->bv_len);
				pos += v->bv_len;
			} else {
				if (pass == 1)
					out[pos] = ch;
				pos++;
			}
		}
		if (pass == 0) {
			len = pos;
			out = xmalloc(len + 1);
			pos = 0;
		}
	}
	out[len] = '\0';
out:
	for (int i = 0; i < 3; i++)
		if (esc[i].bv_val != NULL)
			ber_memfree(esc[i].bv_val);
	if (out != NULL && pos != len) {
		free(out);
		out = NULL;
	}
	return out;
}

/* ---- results ------------------------------------------------------------ */

/* Reads entry's mapped attributes into f->udb; the first unusable one
 * (multi-line, too long, not a number) is noted in f->bad_attr. */
static void read_fields(struct ldap_backend *b, LDAP *ld, struct ldap_found *f)
{
	char value[USERDB_MAX_FIELD];

	for (size_t i = 0; i < b->nmap; i++) {
		struct berval **vals = ldap_get_values_len(ld, f->entry, b->map[i].attr);

		if (vals == NULL)
			continue;	/* missing: default-* applies */
		if (vals[0] == NULL || vals[0]->bv_len >= sizeof(value) ||
		    memchr(vals[0]->bv_val, '\0', vals[0]->bv_len) != NULL) {
			if (f->bad_attr == NULL)
				f->bad_attr = b->map[i].attr;
		} else {
			memcpy(value, vals[0]->bv_val, vals[0]->bv_len);
			value[vals[0]->bv_len] = '\0';
			if (userdb_set_field(&f->udb, b->map[i].field, value) == -1 &&
			    f->bad_attr == NULL)
				f->bad_attr = b->map[i].attr;
		}
		ldap_value_free_len(vals);
	}
	struct berval **lock = ldap_get_values_len(ld, f->entry, LDAP_LOCK_ATTR);
	if (lock != NULL) {
		f->locked = lock[0] != NULL;
		ldap_value_free_len(lock);
	}
}

/* Interprets a search result (res stays the caller's; user is the name as
 * a log token, for messages only).  Returns OK with
 * f filled (exactly one entry), NOUSER, FAIL (ambiguous) or TEMPFAIL
 * (*reason_r set); *drop_r asks the caller to drop the connection. */
static enum auth_result search_result(struct ldap_backend *b, LDAP *ld, LDAPMessage *res,
				      const char *user, const char *filter,
				      struct ldap_found *f, enum tempfail_reason *reason_r,
				      bool *drop_r)
{
	int err = LDAP_OTHER, n;
	char *diag = NULL, safe[LDAP_MAX_DIAG];

	*drop_r = false;
	if (ldap_parse_result(ld, res, &err, NULL, &diag, NULL, NULL, 0) != LDAP_SUCCESS) {
		log_warnx("authenticator %s: user %s: unreadable search result", b->name, user);
		*reason_r = TEMPFAIL_UNAVAILABLE;
		*drop_r = true;
		return AUTH_RESULT_TEMPFAIL;
	}
	log_safe(safe, sizeof(safe), diag);
	if (diag != NULL)
		ldap_memfree(diag);
	n = ldap_count_entries(ld, res);
	if (n > 1 || err == LDAP_SIZELIMIT_EXCEEDED) {
		/* The filter holds the client's name, LDAP-escaped only. */
		size_t tsize = LOG_TOKEN_SIZE(strlen(filter));
		char *ftok = xmalloc(tsize);

		log_warnx("authenticator %s: user %s: ambiguous: %s matches more than one entry "
			  "under %s; refused", b->name, user, log_token(filter, ftok, tsize),
			  b->base);
		free(ftok);
		return AUTH_RESULT_FAIL;
	}
	if (err == LDAP_NO_SUCH_OBJECT) {
		log_warnx("authenticator %s: base %s does not exist", b->name, b->base);
		return AUTH_RESULT_NOUSER;
	}
	if (err != LDAP_SUCCESS) {
		log_warnx("authenticator %s: user %s: search failed: %s %s", b->name, user,
			  ldap_err2string(err), safe);
		*reason_r = TEMPFAIL_UNAVAILABLE;
		return AUTH_RESULT_TEMPFAIL;
	}
	if (n <= 0)
		return AUTH_RESULT_NOUSER;
	f->entry = ldap_first_entry(ld, res);
	f->dn = f->entry != NULL ? ldap_get_dn(ld, f->entry) : NULL;
	if (f->dn == NULL) {
		log_warnx("authenticator %s: user %s: entry without a DN", b->name, user);
		*reason_r = TEMPFAIL_UNAVAILABLE;
		return AUTH_RESULT_TEMPFAIL;
	}
	read_fields(b, ld, f);
	return AUTH_RESULT_OK;
}

/* Why a directory refused a bind, if it says: password policy error,
 * Active Directory's "data NNN" sub-code, or the lock attribute.  Returns
 * a static string, or NULL for a plain wrong password. */
static const char *refusal_reason(LDAPPasswordPolicyError pperr, const char *diag, bool locked)
{
	static const struct { const char *code, *text; } ad[] = {
		{ "533", "account disabled (Active Directory)" },
		{ "775", "account locked (Active Directory)" },
		{ "532", "password expired (Active Directory)" },
		{ "701", "account expired (Active Directory)" },
		{ "773", "password must be changed (Active Directory)" },
		{ "530", "not permitted at this time (Active Directory)" },
	};
	const char *p;

	if (pperr == PP_accountLocked)
		return "account locked (password policy)";
	if (pperr == PP_passwordExpired)
		return "password expired (password policy)";
	if (pperr == PP_changeAfterReset)
		return "password must be changed (password policy)";
	if (diag != NULL && (p = strstr(diag, " data ")) != NULL)
		for (size_t i = 0; i < sizeof(ad) / sizeof(ad[0]); i++)
			if (strncmp(p + 6, ad[i].code, 3) == 0)
				return ad[i].text;
	if (locked)
		return "account locked (" LDAP_LOCK_ATTR " is set)";
	return NULL;
}

/* Interprets the result of the user's bind (res is freed) into job. */
static void bind_result(struct authenticator *auth, LDAP *ld, LDAPMessage *res,
			const struct ldap_found *f, struct job *job, bool *drop_r)
{
	struct ldap_backend *b = auth->backend;
	int err = LDAP_OTHER;
	char *diag = NULL, safe[LDAP_MAX_DIAG];
	LDAPControl **ctrls = NULL, *pp;
	ber_int_t expire = -1, grace = -1;
	LDAPPasswordPolicyError pperr = PP_noError;
	const char *why;

	*drop_r = false;
	if (ldap_parse_result(ld, res, &err, NULL, &diag, NULL, &ctrls, 1) != LDAP_SUCCESS) {
		log_warnx("authenticator %s: user %s: unreadable bind result", b->name, job->user_log);
		job->reason = TEMPFAIL_UNAVAILABLE;
		*drop_r = true;
		return;
	}
	if (ctrls != NULL &&
	    (pp = ldap_control_find(LDAP_CONTROL_PASSWORDPOLICYRESPONSE, ctrls, NULL)) != NULL &&
	    ldap_parse_passwordpolicy_control(ld, pp, &expire, &grace, &pperr) != LDAP_SUCCESS)
		pperr = PP_noError;
	log_safe(safe, sizeof(safe), diag);

	switch (err) {
	case LDAP_SUCCESS:
		if (pperr == PP_changeAfterReset) {
			job->result = AUTH_RESULT_FAIL;
			log_info("authenticator %s: user %s refused: %s", b->name, job->user_log,
				 refusal_reason(pperr, NULL, false));
			break;
		}
		if (expire >= 0)
			log_info("authenticator %s: user %s: password expires in %ds", b->name,
				 job->user_log, (int)expire);
		if (grace >= 0)
			log_info("authenticator %s: user %s: password expired, %d grace logins "
				 "left", b->name, job->user_log, (int)grace);
		if (f->bad_attr != NULL) {
			log_warnx("authenticator %s: user %s: unusable value of %s in %s",
				  b->name, job->user_log, f->bad_attr, f->dn);
			job->reason = TEMPFAIL_INTERNAL;
			break;
		}
		job->result = AUTH_RESULT_OK;
		job->udb = f->udb;
		break;
	case LDAP_INVALID_CREDENTIALS:
		job->result = AUTH_RESULT_FAIL;
		why = refusal_reason(pperr, diag, f->locked);
		if (why != NULL)
			log_info("authenticator %s: user %s refused: %s", b->name, job->user_log, why);
		break;
	case LDAP_UNWILLING_TO_PERFORM:
	case LDAP_INAPPROPRIATE_AUTH:
	case LDAP_CONSTRAINT_VIOLATION:
		/* Not a wrong password: the directory will not let this
		 * account in (389-DS nsAccountLock, lockout schemes). */
		job->result = AUTH_RESULT_FAIL;
		why = refusal_reason(pperr, diag, f->locked);
		log_info("authenticator %s: user %s refused: %s (bind refused: %s%s%s)", b->name,
			 job->user_log, why != NULL ? why : "account disabled", ldap_err2string(err),
			 safe[0] != '\0' ? ": " : "", safe);
		break;
	default:
		log_warnx("authenticator %s: user %s: bind as %s: %s %s", b->name, job->user_log,
			  f->dn, ldap_err2string(err), safe);
		job->reason = TEMPFAIL_UNAVAILABLE;
		break;
	}
	if (diag != NULL)
		ldap_memfree(diag);
	if (ctrls != NULL)
		ldap_controls_free(ctrls);
}

/* Keeps a copy of hash (a verifier, not a password) for unknown users. */
static void remember_hash(struct ldap_worker *w, const char *hash)
{
	if (w->dummy_hash != NULL) {
		if (strcmp(w->dummy_hash, hash) == 0)
			return;
		sodium_memzero(w->dummy_hash, strlen(w->dummy_hash));
		free(w->dummy_hash);
	}
	w->dummy_hash = xstrdup(hash);
}

/* Compare mode: checks the password against the entry's password
 * attribute (every value; any may match). */
static enum pw_check compare_check(struct ldap_backend *b, struct ldap_worker *w, LDAP *ld,
				   const struct ldap_found *f, const char *password)
{
	struct berval **vals = ldap_get_values_len(ld, f->entry, b->pw_attr);
	enum pw_check r = PW_BAD_HASH;

	if (vals == NULL)
		return PW_BAD_HASH;
	for (size_t i = 0; vals[i] != NULL && r != PW_MATCH; i++) {
		struct berval *v = vals[i];
		char *hash;

		if (v->bv_len == 0 || v->bv_len > LDAP_MAX_HASH ||
		    memchr(v->bv_val, '\0', v->bv_len) != NULL)
			continue;
		hash = xstrndup(v->bv_val, v->bv_len);
		if (password_scheme_known(hash)) {
			enum pw_check one = password_verify(hash, password);
			if (one == PW_MATCH || one == PW_MISMATCH) {
				r = one;
				remember_hash(w, hash);
			}
		}
		sodium_memzero(hash, v->bv_len);
		free(hash);
	}
	for (size_t i = 0; vals[i] != NULL; i++)
		sodium_memzero(vals[i]->bv_val, vals[i]->bv_len);
	ldap_value_free_len(vals);
	return r;
}

/* ---- the backend -------------------------------------------------------- */

static void ldap_verify(struct authenticator *auth, void *state, struct job *job)
{
	struct ldap_backend *b = auth->backend;
	struct ldap_worker *w = state;
	struct ldap_found f;
	struct ldap_op op;
	struct berval cred;
	LDAPMessage *res = NULL, *bres = NULL;
	enum tempfail_reason reason = TEMPFAIL_UNAVAILABLE;
	enum auth_result r;
	char *filter;
	bool drop;

	memset(&f, 0, sizeof(f));
	job->result = AUTH_RESULT_TEMPFAIL;
	job->reason = TEMPFAIL_UNAVAILABLE;
	/* An empty simple-bind password is an anonymous bind: many servers
	 * call it a success.  request.c refuses it; so do we. */
	if (job->password == NULL || job->passlen == 0 || job->password[0] == '\0' ||
	    strlen(job->password) != job->passlen) {
		log_debug("authenticator %s: user %s: empty password refused", b->name, job->user_log);
		job->result = AUTH_RESULT_FAIL;
		return;
	}
	filter = filter_build(b->filter, job->user);
	if (filter == NULL) {
		log_warnx("authenticator %s: user %s: cannot build the filter", b->name, job->user_log);
		job->reason = TEMPFAIL_INTERNAL;
		return;
	}

	memset(&op, 0, sizeof(op));
	op.filter = filter;
	if (conn_run(b, &w->svc, true, &op, job->deadline_ms, &res, &reason) == -1) {
		job->reason = reason;
		goto out;
	}
	r = search_result(b, w->svc.ld, res, job->user_log, filter, &f, &job->reason, &drop);
	if (drop)
		conn_drop(&w->svc, -1, false);
	if (r != AUTH_RESULT_OK) {
		if (r == AUTH_RESULT_NOUSER && b->compare && w->dummy_hash != NULL)
			(void)password_verify(w->dummy_hash, job->password);
		job->result = r;
		goto out;
	}
	log_debug("authenticator %s: user %s is %s", b->name, job->user_log, f.dn);

	if (b->compare) {
		switch (compare_check(b, w, w->svc.ld, &f, job->password)) {
		case PW_MATCH:
			if (f.locked) {
				log_info("authenticator %s: user %s refused: account locked "
					 "(" LDAP_LOCK_ATTR " is set)", b->name, job->user_log);
				job->result = AUTH_RESULT_FAIL;
			} else if (f.bad_attr != NULL) {
				log_warnx("authenticator %s: user %s: unusable value of %s in %s",
					  b->name, job->user_log, f.bad_attr, f.dn);
				job->reason = TEMPFAIL_INTERNAL;
			} else {
				job->result = AUTH_RESULT_OK;
				job->udb = f.udb;
			}
			break;
		case PW_MISMATCH:
			job->result = AUTH_RESULT_FAIL;
			break;
		case PW_BAD_HASH:
			log_warnx("authenticator %s: user %s: no usable password hash in %s of %s",
				  b->name, job->user_log, b->pw_attr, f.dn);
			job->result = AUTH_RESULT_FAIL;
			break;
		}
		goto out;
	}

	/* Bind mode: the user's password against the DN found.  cred points
	 * into the job, which authenticator.c wipes. */
	cred.bv_len = job->passlen;
	cred.bv_val = job->password;
	op.bind = true;
	op.dn = f.dn;
	op.cred = &cred;
	if (conn_run(b, &w->usr, false, &op, job->deadline_ms, &bres, &reason) == -1) {
		job->reason = reason;
		goto out;
	}
	bind_result(auth, w->usr.ld, bres, &f, job, &drop);
	if (drop)
		conn_drop(&w->usr, -1, false);
out:
	if (f.dn != NULL)
		ldap_memfree(f.dn);
	if (res != NULL)
		ldap_msgfree(res);
	free(filter);
}

static void *ldap_worker_init(struct authenticator *auth, unsigned index)
{
	struct ldap_backend *b = auth->backend;
	struct ldap_worker *w = xcalloc(1, sizeof(*w));
	enum tempfail_reason reason;

	w->svc.role = "service";
	w->usr.role = "bind";
	/* Connections open with the first request that needs them, but the
	 * first worker opens its service connection now, so that a wrong
	 * service password or CA shows at start-up rather than at the first
	 * login.  (Here, not in init(), which a reload runs on the event
	 * loop.)  A directory that is down is not fatal: requests get
	 * TEMPFAIL until it is back. */
	if (index == 0) {
		if (conn_open(b, &w->svc, true, mtime_ms() + b->net_timeout_ms, &reason) == 0)
			log_info("authenticator %s: connected to the directory as %s", b->name,
				 b->bind_dn != NULL ? b->bind_dn : "anonymous");
		else
			log_warnx("authenticator %s: directory not reachable; answering TEMPFAIL "
				  "until it is", b->name);
	}
	return w;
}

static void ldap_worker_deinit(struct authenticator *auth, void *state)
{
	struct ldap_worker *w = state;

	conn_drop(&w->svc, -1, false);
	conn_drop(&w->usr, -1, false);
	if (w->dummy_hash != NULL) {
		sodium_memzero(w->dummy_hash, strlen(w->dummy_hash));
		free(w->dummy_hash);
	}
	free(w);
}

/* Reads the service password from path: one line, its newline dropped.
 * Returns 0 with *pw_r (xmalloc'd, NUL-terminated) and *len_r, or -1. */
static int read_secret(const char *path, char **pw_r, size_t *len_r, char *error, size_t size)
{
	char buf[LDAP_MAX_SECRET + 2];
	size_t len = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		snprintf(error, size, "bind-password-file %s: %s", path, strerror(errno));
		return -1;
	}
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) != 0) {
		if (n == -1) {
			if (errno == EINTR)
				continue;
			snprintf(error, size, "bind-password-file %s: %s", path, strerror(errno));
			goto out_wipe;
		}
		len += (size_t)n;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0 || len > LDAP_MAX_SECRET || memchr(buf, '\0', len) != NULL ||
	    memchr(buf, '\n', len) != NULL) {
		snprintf(error, size, "bind-password-file %s: expected one line of at most %d "
			 "bytes", path, LDAP_MAX_SECRET);
		goto out_wipe;
	}
	*pw_r = xmalloc(len + 1);
	memcpy(*pw_r, buf, len);
	(*pw_r)[len] = '\0';
	*len_r = len;
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	config_check_private("bind password file", path);
	return 0;
out_wipe:
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	return -1;
}

/* True for a host name that never leaves the machine. */
static bool host_is_local(const char *host)
{
	return host == NULL || host[0] == '\0' || strcmp(host, "localhost") == 0 ||
	       strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0;
}

/* Parses each of `uris` (config.c split them and checked the scheme) with
 * libldap into b->servers. */
static int parse_uris(struct ldap_backend *b, const struct auth_conf *ac, char *error,
		      size_t size)
{
	for (size_t i = 0; i < ac->ldap_nuris; i++) {
		const char *u = ac->ldap_uri_list[i];
		struct ldap_server *srv = &b->servers[b->nservers];
		LDAPURLDesc *lud = NULL;

		if (ldap_url_parse(u, &lud) != LDAP_URL_SUCCESS) {
			snprintf(error, size, "uris: %s is not an ldap://, ldaps:// or ldapi:// "
				 "URI", u);
			return -1;
		}
		srv->ldaps = strcasecmp(lud->lud_scheme, "ldaps") == 0;
		srv->ldapi = strcasecmp(lud->lud_scheme, "ldapi") == 0;
		if (!srv->ldapi) {
			srv->host = xstrdup(lud->lud_host != NULL && lud->lud_host[0] != '\0' ?
					    lud->lud_host : "localhost");
			snprintf(srv->port, sizeof(srv->port), "%d",
				 lud->lud_port != 0 ? lud->lud_port : srv->ldaps ? 636 : 389);
		}
		if (!srv->ldaps && !srv->ldapi && !b->starttls && !host_is_local(srv->host))
			log_warnx("authenticator %s: %s without starttls: passwords cross the "
				  "network in clear text", b->name, u);
		ldap_free_urldesc(lud);
		srv->uri = xstrdup(u);
		b->nservers++;
	}
	return 0;
}

/* The `attributes` map config.c parsed, and what searches ask for. */
static void set_attributes(struct ldap_backend *b, const struct auth_conf *ac)
{
	size_t n = 0;

	for (size_t i = 0; i < ac->ldap_nmap; i++) {
		b->map[i].field = ac->ldap_map[i].field;
		b->map[i].attr = ac->ldap_map[i].attr;
		b->attrs[n++] = ac->ldap_map[i].attr;
	}
	b->nmap = ac->ldap_nmap;
	if (b->compare)
		b->attrs[n++] = (char *)(uintptr_t)b->pw_attr;
	b->attrs[n++] = (char *)(uintptr_t)LDAP_LOCK_ATTR;
	b->attrs[n] = NULL;
}

static void backend_free(struct ldap_backend **bp)
{
	struct ldap_backend *b = *bp;

	if (b == NULL)
		return;
	for (size_t i = 0; i < b->nservers; i++) {
		free(b->servers[i].uri);
		free(b->servers[i].host);
	}
	if (b->bind_pw != NULL) {
		sodium_memzero(b->bind_pw, b->bind_pwlen);
		free(b->bind_pw);
	}
	free(b);
	*bp = NULL;
}

/* Builds the shared state from ac: what config.c parsed, the URIs through
 * libldap, the service password read, and libldap's and its TLS library's
 * set-up with ca-file.  Connects to nothing, so it runs at `authd -t` as
 * at start.  Returns the backend (free with backend_free), or NULL with a
 * message in error. */
static struct ldap_backend *backend_new(const struct auth_conf *ac, char *error, size_t size)
{
	struct ldap_backend *b = xcalloc(1, sizeof(*b));
	bool tls_used = false;
	LDAP *ld;

	b->name = ac->name;
	b->starttls = ac->ldap_starttls;
	b->ca_file = ac->ldap_ca_file[0] != '\0' ? ac->ldap_ca_file : NULL;
	b->bind_dn = ac->ldap_bind_dn[0] != '\0' ? ac->ldap_bind_dn : NULL;
	b->base = ac->ldap_base;
	b->filter = ac->ldap_filter;
	b->compare = ac->ldap_compare;
	b->pw_attr = ac->ldap_password_attribute;
	b->net_timeout_ms = ac->ldap_network_timeout_ms;
	b->scope = ac->ldap_scope_id == CONFIG_LDAP_SCOPE_BASE ? LDAP_SCOPE_BASE :
		   ac->ldap_scope_id == CONFIG_LDAP_SCOPE_ONE ? LDAP_SCOPE_ONELEVEL :
		   LDAP_SCOPE_SUBTREE;
	set_attributes(b, ac);
	if (parse_uris(b, ac, error, size) == -1)
		goto fail;
	/* config.c saw to it that bind-dn comes with exactly one of these */
	if (ac->ldap_bind_password_file[0] != '\0') {
		if (read_secret(ac->ldap_bind_password_file, &b->bind_pw, &b->bind_pwlen,
				error, size) == -1)
			goto fail;
	} else if (ac->ldap_bind_password[0] != '\0') {
		b->bind_pw = xstrdup(ac->ldap_bind_password);
		b->bind_pwlen = strlen(b->bind_pw);
	}

	/* libldap's and the TLS library's one-time initialisation run on
	 * first use, and libldap 2.5 does not lock all of it (tls_init()):
	 * run them here, on one thread, before the workers start.  This also
	 * checks that the CA file loads. */
	if (ldap_initialize(&ld, b->servers[0].uri) != LDAP_SUCCESS) {
		snprintf(error, size, "cannot initialise libldap");
		goto fail;
	}
	for (size_t i = 0; i < b->nservers; i++)
		tls_used |= b->servers[i].ldaps || (b->starttls && !b->servers[i].ldapi);
	if (tls_used && tls_setup(b, ld, b->servers[0].uri) == -1) {
		ldap_unbind_ext(ld, NULL, NULL);
		snprintf(error, size, "cannot set up TLS (ca-file %s)",
			 b->ca_file != NULL ? b->ca_file : "default");
		goto fail;
	}
	ldap_unbind_ext(ld, NULL, NULL);
	return b;
fail:
	backend_free(&b);
	return NULL;
}

static int ldap_check(const struct auth_conf *ac, char *error, size_t size)
{
	struct ldap_backend *b = backend_new(ac, error, size);

	if (b == NULL)
		return -1;
	backend_free(&b);
	return 0;
}

static void ldap_deinit(struct authenticator *auth)
{
	struct ldap_backend *b = auth->backend;

	backend_free(&b);
	auth->backend = NULL;
}

/* Runs on the main thread: at start-up, and on the event loop for a
 * reload, so nothing here waits for the network. */
static int ldap_init(struct authenticator *auth, char *error, size_t size)
{
	auth->backend = backend_new(auth->conf, error, size);
	return auth->backend != NULL ? 0 : -1;
}

const struct passdb_ops passdb_ldap = {
	.type = "ldap",
	.check = ldap_check,
	.init = ldap_init,
	.worker_init = ldap_worker_init,
	.verify = ldap_verify,
	.worker_deinit = ldap_worker_deinit,
	.deinit = ldap_deinit,
};
