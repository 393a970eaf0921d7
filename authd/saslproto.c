/*
 * saslproto.c - the decoders of the two foreign protocols authd speaks:
 * Dovecot's authentication protocol (served by dovecot.c, as Postfix's
 * smtpd_sasl_type = dovecot uses it) and Cyrus saslauthd's (saslauthd.c),
 * and the two SASL mechanisms they carry (PLAIN, LOGIN).
 *
 * Runs on authd's event-loop thread, as [authd] user.  Every byte decoded
 * here comes from whoever the socket's mode lets connect: hostile.  So
 * these are pure functions over bytes, with no event loop, no allocation
 * and no logging, every length checked before it is used; the fuzzers
 * (tests/fuzz/fuzz-dovecot.c, tests/fuzz/fuzz-saslauthd.c) call them
 * directly.  docs/auth-protocol.md describes both wire formats as authd
 * speaks them.
 */
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "authd/authd.h"
#include "common/proto.h"

/* ---- Dovecot ------------------------------------------------------------- */

/* Unescapes a field in place: \001 followed by '0' NUL, '1' \001, 't' TAB,
 * 'r' CR, 'n' or 'l' LF, anything else itself (the protocol's rule).  A
 * NUL (escaped or at the end after a lone \001) is refused: nothing authd
 * takes may hold one.  Returns 0 or -1. */
static int dovecot_unescape(char *field)
{
	char *r = field, *w = field;

	for (; *r != '\0'; r++) {
		if (*r != '\001') {
			*w++ = *r;
			continue;
		}
		r++;
		switch (*r) {
		case '\0':	/* a lone escape at the end */
		case '0':
			return -1;
		case '1': *w++ = '\001'; break;
		case 't': *w++ = '\t'; break;
		case 'r': *w++ = '\r'; break;
		case 'n':
		case 'l': *w++ = '\n'; break;
		default: *w++ = *r; break;
		}
	}
	*w = '\0';
	return 0;
}

int dovecot_parse(char *line, size_t len, struct dovecot_msg *m, const char **error_r)
{
	char *p = line, *tab;
	size_t n = 0;

	memset(m, 0, sizeof(*m));
	if (strlen(line) != len) {
		*error_r = "NUL byte in line";
		return -1;
	}
	for (;;) {
		if (n == DOVECOT_MAX_FIELDS + 1) {
			*error_r = "too many fields";
			return -1;
		}
		tab = strchr(p, '\t');
		if (tab != NULL)
			*tab = '\0';
		if (strpbrk(p, "\r\n") != NULL || dovecot_unescape(p) == -1) {
			*error_r = "bad escape or control character";
			return -1;
		}
		if (n == 0)
			m->cmd = p;
		else
			m->args[m->nargs++] = p;
		n++;
		if (tab == NULL)
			break;
		p = tab + 1;
	}
	if (m->cmd[0] == '\0') {
		*error_r = "empty command";
		return -1;
	}
	return 0;
}

bool dovecot_id_parse(const char *s, unsigned *id_r)
{
	unsigned long long v = 0;
	size_t n = strlen(s);

	if (n == 0 || n > 10 || s[0] == '0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (unsigned)(*s - '0');
	}
	if (v > 0xffffffffull)
		return false;
	*id_r = (unsigned)v;
	return true;
}

/* The value of parameter key= among args[from..], or NULL; *dup_r is set
 * if it is there more than once. */
static const char *param(const struct dovecot_msg *m, size_t from, const char *key, bool *dup_r)
{
	size_t klen = strlen(key);
	const char *v = NULL;

	for (size_t i = from; i < m->nargs; i++)
		if (strncmp(m->args[i], key, klen) == 0 && m->args[i][klen] == '=') {
			if (v != NULL)
				*dup_r = true;
			else
				v = m->args[i] + klen + 1;
		}
	return v;
}

enum dovecot_auth_status dovecot_parse_auth(const struct dovecot_msg *m, struct dovecot_auth *a,
					    const char **error_r)
{
	bool dup = false;
	const char *secured;

	memset(a, 0, sizeof(*a));
	if (m->nargs < 1 || !dovecot_id_parse(m->args[0], &a->id)) {
		*error_r = "bad or missing request id";
		return DOVECOT_AUTH_BROKEN;
	}
	if (m->nargs < 2) {
		*error_r = "missing mechanism";
		return DOVECOT_AUTH_FAIL;
	}
	if (strcasecmp(m->args[1], "PLAIN") == 0)
		a->mech = SASL_MECH_PLAIN;
	else if (strcasecmp(m->args[1], "LOGIN") == 0)
		a->mech = SASL_MECH_LOGIN;
	else {
		*error_r = "Unsupported authentication mechanism";
		return DOVECOT_AUTH_FAIL;
	}
	/* Dovecot 2.3 and Postfix send service=, Dovecot 2.4 protocol= */
	a->service = param(m, 2, "service", &dup);
	if (a->service == NULL)
		a->service = param(m, 2, "protocol", &dup);
	a->rip = param(m, 2, "rip", &dup);
	a->lip = param(m, 2, "lip", &dup);
	a->resp = param(m, 2, "resp", &dup);
	secured = param(m, 2, "secured", &dup);
	/* A bare "secured" (Postfix, Dovecot 2.3) or secured=tls and the like
	 * (2.4): either way the client's connection is protected. */
	a->secured = secured != NULL;
	for (size_t i = 2; i < m->nargs; i++)
		if (strcmp(m->args[i], "secured") == 0)
			a->secured = true;
	if (dup) {
		*error_r = "parameter given twice";
		return DOVECOT_AUTH_FAIL;
	}
	if (a->service == NULL || !proto_service_valid(a->service)) {
		*error_r = "missing or bad service";
		return DOVECOT_AUTH_FAIL;
	}
	if ((a->rip != NULL && strlen(a->rip) > AUTHD_MAX_ADDR) ||
	    (a->lip != NULL && strlen(a->lip) > AUTHD_MAX_ADDR)) {
		*error_r = "address too long";
		return DOVECOT_AUTH_FAIL;
	}
	return DOVECOT_AUTH_OK;
}

/* ---- the mechanisms ------------------------------------------------------ */

/* "Username:" and "Password:" in base64, LOGIN's challenges. */
#define LOGIN_USER_CHALLENGE "VXNlcm5hbWU6"
#define LOGIN_PASS_CHALLENGE "UGFzc3dvcmQ6"

/* Decodes base64 text into out (size bytes, NUL-terminated).  Refuses
 * invalid base64, a NUL in the text, text of size bytes or more.  Returns
 * its length, or -1 (out wiped). */
static long b64_text(const char *b64, char *out, size_t size)
{
	size_t b64len = strlen(b64), binlen;

	if (size == 0 ||
	    b64len > sodium_base64_ENCODED_LEN(size - 1, sodium_base64_VARIANT_ORIGINAL) ||
	    sodium_base642bin((unsigned char *)out, size - 1, b64, b64len, NULL, &binlen, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    memchr(out, '\0', binlen) != NULL) {
		sodium_memzero(out, size);
		return -1;
	}
	out[binlen] = '\0';
	return (long)binlen;
}

enum sasl_step sasl_mech_step(struct sasl_exchange *x, const char *b64, bool initial,
			      const char **challenge_r, const char **error_r)
{
	long n;

	*challenge_r = NULL;
	if (x->mech == SASL_MECH_PLAIN) {
		if (initial && b64 == NULL) {
			*challenge_r = "";	/* an empty challenge: send the response */
			return SASL_STEP_CONTINUE;
		}
		if (b64 == NULL ||
		    proto_sasl_plain_decode(b64, x->user, sizeof(x->user), x->password,
					    sizeof(x->password), error_r) == -1) {
			if (b64 == NULL)
				*error_r = "missing response";
			sodium_memzero(x->password, sizeof(x->password));
			return SASL_STEP_FAIL;
		}
		x->passlen = strlen(x->password);
		return SASL_STEP_DONE;
	}
	/* LOGIN: an empty initial response is none (as Dovecot's) */
	if (initial && (b64 == NULL || b64[0] == '\0')) {
		*challenge_r = LOGIN_USER_CHALLENGE;
		return SASL_STEP_CONTINUE;
	}
	if (b64 == NULL) {
		*error_r = "missing response";
		return SASL_STEP_FAIL;
	}
	if (x->step == 0) {
		n = b64_text(b64, x->user, sizeof(x->user));
		if (n <= 0) {
			*error_r = n == 0 ? "empty user name" : "invalid user name";
			return SASL_STEP_FAIL;
		}
		x->step = 1;
		*challenge_r = LOGIN_PASS_CHALLENGE;
		return SASL_STEP_CONTINUE;
	}
	n = b64_text(b64, x->password, sizeof(x->password));
	if (n == -1) {
		*error_r = "invalid password response";
		return SASL_STEP_FAIL;
	}
	x->passlen = (size_t)n;
	return SASL_STEP_DONE;
}

/* ---- saslauthd ----------------------------------------------------------- */

/* One counted string at buf[*pos]: at most max bytes, no NUL, copied
 * NUL-terminated into out.  Returns SASLAUTHD_DONE (taken, *pos moved on),
 * SASLAUTHD_MORE (not all there yet) or SASLAUTHD_BAD. */
static enum saslauthd_status counted(const uint8_t *buf, size_t len, size_t *pos, char *out,
				     size_t max, size_t *len_r, const char **error_r,
				     const char *what)
{
	size_t n;

	if (len - *pos < 2)
		return SASLAUTHD_MORE;
	n = (size_t)buf[*pos] << 8 | buf[*pos + 1];
	if (n > max) {
		*error_r = what;
		return SASLAUTHD_BAD;
	}
	if (len - *pos - 2 < n)
		return SASLAUTHD_MORE;
	if (memchr(buf + *pos + 2, '\0', n) != NULL) {
		*error_r = "NUL byte in a string";
		return SASLAUTHD_BAD;
	}
	memcpy(out, buf + *pos + 2, n);
	out[n] = '\0';
	if (len_r != NULL)
		*len_r = n;
	*pos += 2 + n;
	return SASLAUTHD_DONE;
}

enum saslauthd_status saslauthd_decode(const uint8_t *buf, size_t len, struct saslauthd_req *r,
				       const char **error_r)
{
	size_t pos = 0;
	enum saslauthd_status st;

	memset(r, 0, sizeof(*r));
	if (len > SASLAUTHD_MAX_REQUEST) {
		*error_r = "request too long";
		return SASLAUTHD_BAD;
	}
#define STEP(out, max, len_r, what) \
	do { \
		st = counted(buf, len, &pos, out, max, len_r, error_r, what); \
		if (st != SASLAUTHD_DONE) \
			goto out_wipe; \
	} while (0)
	STEP(r->login, AUTH_MAX_USER, NULL, "login too long");
	STEP(r->password, AUTH_MAX_PASSWORD, &r->passlen, "password too long");
	STEP(r->service, SASLAUTHD_MAX_FIELD, NULL, "service too long");
	STEP(r->realm, SASLAUTHD_MAX_FIELD, NULL, "realm too long");
	/* Cyrus SASL 2.1.28 (Debian 12) sends four strings; its development
	 * branch and some distributions' patches a fifth, the client's
	 * address.  A client writes its request at once, so a fifth string
	 * is either there already or not coming. */
	if (pos == len)
		return SASLAUTHD_DONE;
	STEP(r->addr, SASLAUTHD_MAX_FIELD, NULL, "client address too long");
#undef STEP
	r->has_addr = true;
	if (pos == len)
		return SASLAUTHD_DONE;
	*error_r = "bytes after the request";
	st = SASLAUTHD_BAD;
out_wipe:
	sodium_memzero(r, sizeof(*r));
	return st;
}
