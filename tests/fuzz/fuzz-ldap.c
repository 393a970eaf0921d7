/*
 * fuzz-ldap.c - libFuzzer harness for what authd/passdb_ldap.c does with
 * a user name and a directory's words without a directory: the search
 * filter built from the template and the normalised name (filter_build:
 * %u, %n, %d, %% with RFC 4515 escaping), the reason read out of a
 * refused bind's diagnostic message (refusal_reason: Active Directory's
 * "data NNN"), and the copy of a diagnostic for a log line (log_safe).
 * The file is included (these are static).  Search and bind results
 * themselves (LDAPMessage) come only from libldap's reading of a
 * connection, and are not fuzzed here.
 *
 * Input: byte 0 picks the template (one of a few, or with bit 7 the text
 * up to the first NUL, kept only if it is what config.c accepts: %u, %n,
 * %d and %% only), the rest is the user name (up to a NUL) and then the
 * diagnostic text.
 * Properties checked:
 *   - filter_build fails only on a bad template; with "%u" alone the
 *     result unescapes to the name exactly, holds no NUL, '(' ')' '*'
 *     unescaped, and every '\' starts two hex digits; with "%n@%d" it
 *     unescapes to the name (plus '@' if it had none);
 *   - refusal_reason returns NULL or one of its own texts; log_safe is
 *     bounded and leaves no control byte.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authd/passdb_ldap.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called by the start-up code of the file, which is not fuzzed. */
void config_check_private(const char *what, const char *path)
{
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Undoes RFC 4515 escaping into out; -1 if malformed or unescaped
 * specials. */
static ssize_t unescape(const char *s, char *out)
{
	size_t o = 0;

	for (; *s != '\0'; s++) {
		if (*s == '(' || *s == ')' || *s == '*')
			return -1;
		if (*s == '\\') {
			int h = hexval(s[1]), l = h < 0 ? -1 : hexval(s[2]);
			if (h < 0 || l < 0)
				return -1;
			out[o++] = (char)(h << 4 | l);
			s += 2;
		} else {
			out[o++] = *s;
		}
	}
	return (ssize_t)o;
}

static bool template_ok(const char *t)
{
	for (; *t != '\0'; t++)
		if (*t == '%' && (t[1] == 'u' || t[1] == 'n' || t[1] == 'd' || t[1] == '%'))
			t++;
		else if (*t == '%')
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const templates[] = {
		"%u", "%n@%d", "(&(objectClass=posixAccount)(uid=%u))",
		"(|(mail=%u)(uid=%n))", "(cn=%%%n%%)", "(dc=%d)",
	};
	static char user[AUTH_MAX_USER + 1], tmpl[256], diag[1024], un[8 * AUTH_MAX_USER + 8];
	const char *p = (const char *)data + 1, *end = (const char *)data + size, *t, *nul;
	char safe[LDAP_MAX_DIAG], *f;
	size_t n;

	if (size < 1 || size > 4096)
		return 0;
	if (data[0] & 0x80) {
		nul = memchr(p, '\0', (size_t)(end - p));
		n = nul != NULL ? (size_t)(nul - p) : (size_t)(end - p);
		if (n >= sizeof(tmpl))
			return 0;
		memcpy(tmpl, p, n);
		tmpl[n] = '\0';
		if (!template_ok(tmpl))
			return 0;	/* config.c refuses it */
		t = tmpl;
		p += n + (nul != NULL);
	} else {
		t = templates[data[0] % (sizeof(templates) / sizeof(templates[0]))];
	}
	nul = memchr(p, '\0', (size_t)(end - p));
	n = nul != NULL ? (size_t)(nul - p) : (size_t)(end - p);
	if (n > AUTH_MAX_USER)
		n = AUTH_MAX_USER;
	memcpy(user, p, n);
	user[n] = '\0';
	p = nul != NULL ? nul + 1 : end;

	f = filter_build(t, user);
	if (f == NULL)
		abort();	/* every template here is one config.c accepts */
	if (strcmp(t, "%u") == 0) {
		ssize_t k = unescape(f, un);
		if (k != (ssize_t)strlen(user) || memcmp(un, user, (size_t)k) != 0)
			abort();
	} else if (strcmp(t, "%n@%d") == 0) {
		ssize_t k = unescape(f, un);
		bool has_at = strchr(user, '@') != NULL;
		if (k != (ssize_t)(strlen(user) + !has_at) || memcmp(un, user, strlen(user)) != 0)
			abort();
	}
	free(f);

	n = (size_t)(end - p) < sizeof(diag) - 1 ? (size_t)(end - p) : sizeof(diag) - 1;
	memcpy(diag, p, n);
	diag[n] = '\0';
	log_safe(safe, sizeof(safe), diag);
	if (strlen(safe) >= sizeof(safe))
		abort();
	for (const char *s = safe; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			abort();
	for (int pp = 0; pp < 3; pp++) {
		const char *why = refusal_reason(pp == 0 ? PP_noError : pp == 1 ? PP_accountLocked
								     : PP_passwordExpired,
						 diag, data[0] & 1);
		if (why != NULL && strstr(why, "(") == NULL)
			abort();	/* all of its texts say where they come from */
	}
	return 0;
}
