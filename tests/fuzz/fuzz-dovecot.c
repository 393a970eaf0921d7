/*
 * fuzz-dovecot.c - libFuzzer harness for authd's Dovecot authentication
 * protocol decoders (authd/saslproto.c): dovecot_parse, dovecot_id_parse,
 * dovecot_parse_auth and the PLAIN / LOGIN exchanges of sasl_mech_step,
 * which authd/dovecot.c runs on every line a client (Postfix's smtpd, or
 * anybody the socket lets in) sends.  Build and run with tests/fuzz/run.
 *
 * Input: lines separated by LF.  The first is parsed as a protocol line
 * (and, when it is an AUTH, decoded as one); each further line is the
 * client's next CONT response to that exchange.
 * Properties checked, besides crashes and sanitizer reports:
 *   - a parsed line's fields, escaped again and joined, parse back to the
 *     same fields;
 *   - dovecot_id_parse agrees with a direct reading of its rule;
 *   - a decoded AUTH has an id >= 1, a valid service, addresses within
 *     AUTHD_MAX_ADDR, and a mechanism of the two;
 *   - an exchange ends (DONE or FAIL) within three responses, a DONE has a
 *     non-empty user of at most AUTH_MAX_USER bytes and a password of
 *     exactly passlen bytes (at most AUTH_MAX_PASSWORD), a CONTINUE has a
 *     challenge and a FAIL a reason.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "authd/authd.h"
#include "common/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool id_rule(const char *s)
{
	size_t n = strlen(s);
	unsigned long long v;

	if (n < 1 || n > 10 || s[0] == '0' || strspn(s, "0123456789") != n)
		return false;
	v = strtoull(s, NULL, 10);
	return v >= 1 && v <= 0xffffffffull;
}

/* Escapes s as the protocol does (\001 before 1, t, r, n; NUL cannot be
 * in a parsed field). */
static size_t escape(const char *s, char *out)
{
	size_t n = 0;

	for (; *s != '\0'; s++) {
		switch (*s) {
		case '\001': out[n++] = '\001'; out[n++] = '1'; break;
		case '\t': out[n++] = '\001'; out[n++] = 't'; break;
		case '\r': out[n++] = '\001'; out[n++] = 'r'; break;
		case '\n': out[n++] = '\001'; out[n++] = 'n'; break;
		default: out[n++] = *s; break;
		}
	}
	return n;
}

static void check_roundtrip(const struct dovecot_msg *m)
{
	size_t cap = 2 * DOVECOT_MAX_LINE + 2 * (DOVECOT_MAX_FIELDS + 1) + 1, n;
	char *again = malloc(cap), *copy;
	struct dovecot_msg m2;
	const char *err;

	if (again == NULL)
		abort();
	n = escape(m->cmd, again);
	for (size_t i = 0; i < m->nargs; i++) {
		again[n++] = '\t';
		n += escape(m->args[i], again + n);
	}
	again[n] = '\0';
	copy = strdup(again);
	if (copy == NULL || dovecot_parse(copy, n, &m2, &err) == -1)
		abort();
	if (strcmp(m2.cmd, m->cmd) != 0 || m2.nargs != m->nargs)
		abort();
	for (size_t i = 0; i < m->nargs; i++)
		if (strcmp(m2.args[i], m->args[i]) != 0)
			abort();
	free(copy);
	free(again);
}

static void check_exchange(const struct dovecot_auth *a, const char *rest, size_t restlen)
{
	struct sasl_exchange x;
	const char *challenge, *err, *resp = a->resp, *p = rest, *end = rest + restlen;
	char buf[DOVECOT_MAX_LINE + 1];
	bool initial = true;

	memset(&x, 0, sizeof(x));
	x.mech = a->mech;
	for (int steps = 0;; steps++) {
		if (steps > 3)
			abort();	/* PLAIN: 2 at most, LOGIN: 3 */
		challenge = err = NULL;
		switch (sasl_mech_step(&x, resp, initial, &challenge, &err)) {
		case SASL_STEP_CONTINUE:
			if (challenge == NULL)
				abort();
			break;
		case SASL_STEP_DONE:
			if (x.user[0] == '\0' || strlen(x.user) > AUTH_MAX_USER ||
			    x.passlen > AUTH_MAX_PASSWORD || strlen(x.password) != x.passlen)
				abort();
			sodium_memzero(&x, sizeof(x));
			return;
		case SASL_STEP_FAIL:
			if (err == NULL)
				abort();
			return;
		}
		initial = false;
		/* the next line is the client's CONT data */
		if (p >= end)
			return;
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = (size_t)((nl != NULL ? nl : end) - p);
		if (n > DOVECOT_MAX_LINE)
			n = DOVECOT_MAX_LINE;
		memcpy(buf, p, n);
		buf[n] = '\0';
		if (strlen(buf) != n)
			return;		/* the line reader refuses a NUL */
		resp = buf;
		p = nl != NULL ? nl + 1 : end;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t len = nl != NULL ? (size_t)(nl - data) : size;
	struct dovecot_msg m;
	struct dovecot_auth a;
	const char *err = NULL;
	char *line;
	unsigned id;

	if (len > DOVECOT_MAX_LINE)
		return 0;	/* the line reader refuses it first */
	line = malloc(len + 1);
	if (line == NULL)
		abort();
	memcpy(line, data, len);
	line[len] = '\0';
	if (dovecot_parse(line, len, &m, &err) == -1) {
		if (err == NULL)
			abort();
		free(line);
		return 0;
	}
	if (m.cmd == NULL || m.cmd[0] == '\0' || m.nargs > DOVECOT_MAX_FIELDS)
		abort();
	check_roundtrip(&m);
	for (size_t i = 0; i < m.nargs; i++)
		if (dovecot_id_parse(m.args[i], &id) != id_rule(m.args[i]))
			abort();
	err = NULL;
	switch (dovecot_parse_auth(&m, &a, &err)) {
	case DOVECOT_AUTH_OK:
		if (a.id == 0 || a.service == NULL || !proto_service_valid(a.service) ||
		    (a.rip != NULL && strlen(a.rip) > AUTHD_MAX_ADDR) ||
		    (a.lip != NULL && strlen(a.lip) > AUTHD_MAX_ADDR) ||
		    (a.mech != SASL_MECH_PLAIN && a.mech != SASL_MECH_LOGIN))
			abort();
		check_exchange(&a, nl != NULL ? (const char *)nl + 1 : "",
			       nl != NULL ? size - len - 1 : 0);
		break;
	case DOVECOT_AUTH_FAIL:
		if (err == NULL || a.id == 0)
			abort();
		break;
	case DOVECOT_AUTH_BROKEN:
		if (err == NULL)
			abort();
		break;
	}
	free(line);
	return 0;
}
