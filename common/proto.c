/*
 * proto.c - authd protocol codec (see proto.h and docs/auth-protocol.md).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "common/proto.h"

/* Unescapes field in place; returns -1 on a bad escape or a raw control
 * character that must have been escaped. */
static int unescape(char *field)
{
	char *r = field, *w = field;

	for (; *r != '\0'; r++) {
		if (*r == '\r' || *r == '\n')
			return -1;
		if (*r != '\\') {
			*w++ = *r;
			continue;
		}
		switch (*++r) {
		case '\\': *w++ = '\\'; break;
		case 't': *w++ = '\t'; break;
		case 'n': *w++ = '\n'; break;
		case 'r': *w++ = '\r'; break;
		default: return -1;	/* includes a trailing lone backslash */
		}
	}
	*w = '\0';
	return 0;
}

int proto_parse(char *line, size_t len, struct proto_msg *msg, const char **error_r)
{
	char *p = line, *tab;
	size_t nfields = 0;
	char *fields[AUTHD_MAX_FIELDS];

	if (memchr(line, '\0', len) != NULL || line[len] != '\0') {
		*error_r = "NUL byte in line";
		return -1;
	}
	for (;;) {
		if (nfields == AUTHD_MAX_FIELDS) {
			*error_r = "too many fields";
			return -1;
		}
		fields[nfields++] = p;
		tab = strchr(p, '\t');
		if (tab == NULL)
			break;
		*tab = '\0';
		p = tab + 1;
	}
	memset(msg, 0, sizeof(*msg));
	for (size_t i = 0; i < nfields; i++) {
		if (unescape(fields[i]) == -1) {
			*error_r = "bad escape or raw control character";
			return -1;
		}
	}
	msg->cmd = fields[0];
	for (size_t i = 1; i < nfields; i++) {
		char *eq;

		msg->args[msg->nargs++] = fields[i];
		if (i >= 2 && (eq = strchr(fields[i], '=')) != NULL) {
			*eq = '\0';
			msg->kv[msg->nkv].key = fields[i];
			msg->kv[msg->nkv].value = eq + 1;
			msg->nkv++;
		}
	}
	return 0;
}

const char *proto_get(const struct proto_msg *msg, const char *key)
{
	for (size_t i = 0; i < msg->nkv; i++)
		if (strcmp(msg->kv[i].key, key) == 0)
			return msg->kv[i].value;
	return NULL;
}

bool proto_has_duplicates(const struct proto_msg *msg)
{
	for (size_t i = 0; i < msg->nkv; i++)
		for (size_t j = i + 1; j < msg->nkv; j++)
			if (strcmp(msg->kv[i].key, msg->kv[j].key) == 0)
				return true;
	return false;
}

bool proto_service_valid(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 32)
		return false;
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
			return false;
	return true;
}

bool proto_id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > AUTHD_MAX_ID)
		return false;
	for (const char *p = id; *p != '\0'; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

static void put(struct proto_line *l, const char *s, size_t n)
{
	if (l->overflow || n > sizeof(l->buf) - 1 - l->len) {
		l->overflow = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	l->buf[l->len] = '\0';
}

static void put_escaped(struct proto_line *l, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '\\': put(l, "\\\\", 2); break;
		case '\t': put(l, "\\t", 2); break;
		case '\n': put(l, "\\n", 2); break;
		case '\r': put(l, "\\r", 2); break;
		default: put(l, s, 1); break;
		}
	}
}

void proto_line_start(struct proto_line *l, const char *cmd)
{
	l->len = 0;
	l->overflow = false;
	l->buf[0] = '\0';
	put(l, cmd, strlen(cmd));
}

void proto_line_add(struct proto_line *l, const char *s)
{
	put(l, "\t", 1);
	put_escaped(l, s);
}

void proto_line_kv(struct proto_line *l, const char *key, const char *value)
{
	put(l, "\t", 1);
	put(l, key, strlen(key));
	put(l, "=", 1);
	put_escaped(l, value);
}

void proto_line_kvf(struct proto_line *l, const char *key, const char *fmt, ...)
{
	char value[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(value, sizeof(value), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(value)) {
		l->overflow = true;
		return;
	}
	proto_line_kv(l, key, value);
}

int proto_line_end(struct proto_line *l)
{
	put(l, "\n", 1);
	return l->overflow ? -1 : 0;
}

void proto_line_wipe(struct proto_line *l)
{
	sodium_memzero(l->buf, sizeof(l->buf));
	l->len = 0;
}

int proto_sasl_plain_decode(const char *b64, char *user, size_t usersize,
			    char *pass, size_t passsize, const char **error_r)
{
	unsigned char bin[AUTH_MAX_USER * 2 + AUTH_MAX_PASSWORD + 3];
	size_t binlen, b64len = strlen(b64);
	const unsigned char *authzid, *authcid, *pw, *end, *nul1, *nul2;
	int ret = -1;

	if (b64len > sodium_base64_ENCODED_LEN(sizeof(bin), sodium_base64_VARIANT_ORIGINAL)) {
		*error_r = "response too long";
		return -1;
	}
	if (sodium_base642bin(bin, sizeof(bin), b64, b64len, NULL, &binlen, NULL,
			      sodium_base64_VARIANT_ORIGINAL) != 0) {
		*error_r = "invalid base64";
		return -1;
	}
	end = bin + binlen;
	authzid = bin;
	nul1 = memchr(authzid, '\0', binlen);
	if (nul1 == NULL) {
		*error_r = "malformed PLAIN response";
		goto out_wipe;
	}
	authcid = nul1 + 1;
	nul2 = memchr(authcid, '\0', (size_t)(end - authcid));
	if (nul2 == NULL) {
		*error_r = "malformed PLAIN response";
		goto out_wipe;
	}
	pw = nul2 + 1;
	if (memchr(pw, '\0', (size_t)(end - pw)) != NULL) {
		*error_r = "malformed PLAIN response";
		goto out_wipe;
	}
	size_t zlen = (size_t)(nul1 - authzid), clen = (size_t)(nul2 - authcid);
	size_t plen = (size_t)(end - pw);
	if (clen == 0) {
		*error_r = "empty user name";
		goto out_wipe;
	}
	if (zlen != 0 && (zlen != clen || memcmp(authzid, authcid, clen) != 0)) {
		*error_r = "authorization identity not supported";
		goto out_wipe;
	}
	if (clen >= usersize || plen >= passsize) {
		*error_r = "user or password too long";
		goto out_wipe;
	}
	memcpy(user, authcid, clen);
	user[clen] = '\0';
	memcpy(pass, pw, plen);
	pass[plen] = '\0';
	ret = 0;
out_wipe:
	sodium_memzero(bin, sizeof(bin));
	return ret;
}
