/*
 * limits.h - every fixed limit of authd and pop3d, with its reason.
 * Tunables that operators change live in the config file instead.
 */
#ifndef COMMON_LIMITS_H
#define COMMON_LIMITS_H

/* authd protocol: longest line either side may send, LF included.  Holds a
 * request with a 1 KiB user, 1 KiB password and addresses, escaped; a peer
 * that exceeds it is broken or hostile and loses its connection. */
#define AUTHD_MAX_LINE		8192
/* Dovecot authentication protocol (authd/dovecot.c): its specification
 * expects a line to fit in 16384 bytes, LF included; a PLAIN response of
 * the longest user and password is under 2 KiB of base64. */
#define DOVECOT_MAX_LINE	16384
/* Fields of one Dovecot protocol line: AUTH, id, mechanism and the
 * parameters Postfix and Dovecot's own clients send (about a dozen). */
#define DOVECOT_MAX_FIELDS	48
/* Requests one Dovecot-protocol connection may have open at once (waiting
 * for the client's continuation or for their answer).  Postfix's smtpd has
 * one at a time; past this the new AUTH gets FAIL at once. */
#define DOVECOT_MAX_PENDING	64
/* How long a request may wait for the client's next CONT line (a LOGIN
 * exchange): an SMTP client that stops typing is Postfix's to time out,
 * and this keeps a request that the client forgot from living forever. */
#define DOVECOT_CONT_TIMEOUT_MS	120000
/* saslauthd protocol (authd/saslauthd.c): Cyrus saslauthd refuses strings
 * longer than 256 bytes (MAX_REQ_LEN); the login and password may use our
 * own bounds, which are larger. */
#define SASLAUTHD_MAX_FIELD	256
/* A saslauthd client sends its whole request at once; one that has not
 * within this time is gone or hostile. */
#define SASLAUTHD_READ_TIMEOUT_MS	10000
/* authd's admission (authd/authenticator.c): queue-wait-factor never
 * brings the wait limit below this, so that a burst a fast backend drains
 * in a fraction of a second (128 pipelined LDAP binds on 4 workers) is
 * queued, not refused. */
#define AUTHD_QUEUE_WAIT_FLOOR_MS	250
/* Fields (command, id and key=value pairs) in one authd protocol line. */
#define AUTHD_MAX_FIELDS	32
/* Longest request id a client may choose. */
#define AUTHD_MAX_ID		32
/* User names: RFC 5321 allows 64+1+255 for an address; generous but bounded. */
#define AUTH_MAX_USER		320
/* Passwords: long passphrases are fine, megabytes of "password" are not. */
#define AUTH_MAX_PASSWORD	1024
/* Requests one client connection may have in flight before authd stops
 * reading from it (back-pressure, not an error). */
#define AUTHD_MAX_INFLIGHT	1024
/* Client sources (addresses, IPv6 /64s) one authenticator's queue tells
 * apart at a time (authd/fairq.c): a source lives while it has a request
 * waiting or in a worker, so this many is reached only with queue-limit
 * near it; past it, new sources share one turn.  Bounds the table at
 * about 256 KiB per authenticator. */
#define AUTHD_MAX_SOURCES	4096
/* A source of an authenticator's queue whose last this many checks failed
 * (wrong password, unknown user) with no success since waits behind the
 * others (authd/fairq.c): a password-guessing flood gets there within a
 * few checks per address; a user who mistypes once or twice does not. */
#define FAIRQ_SUSPECT_FAILS	3
/* ... but gets one pop in this many even when others wait, so that it is
 * never starved (a busy NAT shared with one guesser still logs in). */
#define FAIRQ_SUSPECT_SHARE	8
/* How long a source with nothing queued keeps its count of failures (while
 * the pool has room): a flood refused at admission does not come back
 * clean, nor with a count started again. */
#define FAIRQ_SUSPECT_MEMORY_MS	60000
/* Stack zeroed below the request loops once a password has been checked
 * (common/memwipe.c): deeper than the deepest call a password reaches
 * (Argon2 and BLAKE2b in libsodium, libcrypt, OpenSSL's digests and TLS
 * record layer, libldap's BER encoder: each well under 16 KiB). */
#define MEMWIPE_STACK_BYTES	(64 * 1024)
/* What glibc's perturb writes over a freed block (memwipe_perturb, and
 * the PAM helper's GLIBC_TUNABLES in authd/passdb_external.c): any
 * non-zero byte; 0xa5 is easy to tell in a core image. */
#define MEMWIPE_PERTURB_BYTE	0xa5
/* Single-use handoff tickets: random bytes, hex-encoded on the wire. */
#define AUTHD_TICKET_BYTES	16

/* POP3 (RFC 1939 section 3 / RFC 2449 section 4): a command line is at
 * most 255 octets with CRLF; SASL responses (AUTH PLAIN) may be longer. */
#define POP3_MAX_COMMAND	255
#define POP3_MAX_SASL_LINE	2048

/* Networks in pop3d's require-tls-exempt. */
#define NETLIST_MAX_NETS	32

/* LDAP `uris`: a primary and a few replicas. */
#define LDAP_MAX_URIS		8
/* LDAP `attributes`: one per userdb field an entry can supply (uid, gid,
 * home, maildrop). */
#define LDAP_MAX_MAP		4

/* pop3d tls-cert-file / tls-key-file: certificates one front end serves,
 * chosen by SNI (a handful of names; each is a full OpenSSL context).
 * pop3d.h's POP3D_TLS_MAX_CERTS is the same limit. */
#define TLS_MAX_CERTS		8

#endif
