/*
 * maildrop.c - maildrop templates ("maildir:%h/Maildir",
 * "mbox:/var/mail/%u"): the one
 * expander, used by config.c to check [pop3d] maildrop and every
 * default-maildrop (with a sample user, in both daemons, as whoever
 * starts them) and by a pop3d session, as the mailbox owner, to find its
 * maildrop.  Pure string work: no file is touched.
 */
#include <stdio.h>
#include <string.h>

#include "common/maildrop.h"

int maildrop_expand(const char *tmpl, const char *user, const char *home,
		    char *out, size_t size, const char **error_r)
{
	const char *at = strrchr(user, '@');
	size_t o = 0, path_start = 0;

	if (strncmp(tmpl, "maildir:", 8) == 0) {
		tmpl += 8;
	} else if (strncmp(tmpl, "mbox:", 5) == 0) {
		/* kept in the result: the session opens it as an mbox */
		if (size <= 5) {
			*error_r = "maildrop path too long";
			return -1;
		}
		memcpy(out, "mbox:", 5);
		o = path_start = 5;
		tmpl += 5;
	} else if (strchr(tmpl, ':') != NULL && tmpl[0] != '/' && tmpl[0] != '%') {
		*error_r = "unsupported maildrop type (only maildir and mbox)";
		return -1;
	}
	for (const char *p = tmpl; *p != '\0'; p++) {
		const char *v = NULL;
		size_t vl = 0;

		if (*p != '%') {
			v = p;
			vl = 1;
		} else {
			switch (*++p) {
			case '%': v = "%"; vl = 1; break;
			case 'u': v = user; vl = strlen(user); break;
			case 'n': v = user; vl = at != NULL ? (size_t)(at - user) : strlen(user); break;
			case 'd': v = at != NULL ? at + 1 : ""; vl = strlen(v); break;
			case 'h': v = home != NULL ? home : ""; vl = strlen(v); break;
			default:
				*error_r = "unknown %-variable in maildrop template";
				return -1;
			}
			if (vl == 0) {
				*error_r = "maildrop template needs a value the user does not have";
				return -1;
			}
			/* A user name must not walk the path: no "/" or "..". */
			if (*p != 'h' && *p != '%' &&
			    (memchr(v, '/', vl) != NULL || (vl <= 2 && strspn(v, ".") == vl))) {
				*error_r = "user name not usable in a path";
				return -1;
			}
		}
		if (o + vl >= size) {
			*error_r = "maildrop path too long";
			return -1;
		}
		memcpy(out + o, v, vl);
		o += vl;
	}
	out[o] = '\0';
	if (out[path_start] != '/') {
		*error_r = "maildrop is not an absolute path";
		return -1;
	}
	return 0;
}
