/*
 * normalize.c - user name normalisation, applied before anything else
 * (cache keys, backends, logs), so that every later step sees one name.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "authd/authd.h"

int user_normalize(const struct config *conf, const char *in, char *out, size_t size)
{
	const char *start = in, *end = in + strlen(in);
	size_t n;

	while (*start == ' ' || *start == '\t')
		start++;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	n = (size_t)(end - start);
	if (n == 0 || n >= size)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)start[i];
		if (ch < 0x20 || ch == 0x7f)
			return -1;
	}
	memcpy(out, start, n);
	out[n] = '\0';

	if (conf->authd.lowercase_usernames)
		for (char *p = out; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
	if (conf->authd.strip_domain) {
		char *at = strchr(out, '@');
		if (at != NULL)
			*at = '\0';
		/* "alice @example.org" is "alice", as "alice" is. */
		for (size_t len = strlen(out); len > 0 && (out[len - 1] == ' ' ||
							    out[len - 1] == '\t'); len--)
			out[len - 1] = '\0';
		if (out[0] == '\0')
			return -1;
	} else if (conf->authd.default_domain != NULL && conf->authd.default_domain[0] != '\0' &&
		   strchr(out, '@') == NULL) {
		size_t len = strlen(out);
		int w = snprintf(out + len, size - len, "@%s", conf->authd.default_domain);
		if (w < 0 || (size_t)w >= size - len)
			return -1;
		if (conf->authd.lowercase_usernames)
			for (char *p = out + len; *p != '\0'; p++)
				*p = (char)tolower((unsigned char)*p);
	}
	return 0;
}
