/*
 * proto.h - codec for the authd protocol (docs/auth-protocol.md).
 *
 * A line is fields separated by TAB and ended by LF.  Inside a field a
 * backslash escapes: "\\" backslash, "\t" TAB, "\n" LF, "\r" CR.  The first
 * field is the command, the second (for most commands) the request id, the
 * rest are key=value pairs.
 */
#ifndef COMMON_PROTO_H
#define COMMON_PROTO_H

#include <stdbool.h>
#include <stddef.h>

#include "common/limits.h"

#define PROTO_VERSION_MAJOR 1
#define PROTO_VERSION_MINOR 0

struct proto_kv {
	char *key;
	char *value;
};

struct proto_msg {
	char *cmd;			/* first field */
	char *args[AUTHD_MAX_FIELDS];	/* every field after cmd */
	size_t nargs;
	/* fields after the first argument that contain '=', in order */
	struct proto_kv kv[AUTHD_MAX_FIELDS];
	size_t nkv;
};

/* Splits line (without its LF, NUL-terminated, modified in place) into msg.
 * Field pointers point into line.  Returns 0, or -1 with *error_r set to a
 * static string for: a bad escape, an embedded NUL, CR or LF that was not
 * escaped, or too many fields. */
int proto_parse(char *line, size_t len, struct proto_msg *msg, const char **error_r);

/* The value of key in msg, or NULL.  Duplicate keys: the first wins (the
 * request parsers reject duplicates with proto_has_duplicates()). */
const char *proto_get(const struct proto_msg *msg, const char *key);
bool proto_has_duplicates(const struct proto_msg *msg);

/* True if s is a service name authd takes: 1..32 characters of [a-z0-9-]
 * (it goes into log lines and to helper programs as is). */
bool proto_service_valid(const char *s);
/* True if id is 1..AUTHD_MAX_ID characters of [A-Za-z0-9._-]. */
bool proto_id_valid(const char *id);

/* A line being built in a fixed buffer.  Functions that overflow set
 * `overflow`; check it (proto_line_end returns -1) before sending. */
struct proto_line {
	char buf[AUTHD_MAX_LINE];
	size_t len;
	bool overflow;
};

void proto_line_start(struct proto_line *l, const char *cmd);
/* Appends TAB and s escaped. */
void proto_line_add(struct proto_line *l, const char *s);
/* Appends TAB key=value with value escaped (key is taken as is). */
void proto_line_kv(struct proto_line *l, const char *key, const char *value);
void proto_line_kvf(struct proto_line *l, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Appends LF.  Returns 0, or -1 if the line overflowed. */
int proto_line_end(struct proto_line *l);
/* Wipes the buffer (it may have held a password). */
void proto_line_wipe(struct proto_line *l);

/* Decodes SASL PLAIN (RFC 4616): base64 of authzid NUL authcid NUL passwd.
 * Writes NUL-terminated user and password into the caller's buffers.
 * An authzid different from the authcid is refused (no proxy logins).
 * Returns 0, or -1 with *error_r set (invalid base64, bad format, too long). */
int proto_sasl_plain_decode(const char *b64, char *user, size_t usersize,
			    char *pass, size_t passsize, const char **error_r);

#endif
