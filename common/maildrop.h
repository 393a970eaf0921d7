/*
 * maildrop.h - maildrop templates (maildrop.c).
 */
#ifndef COMMON_MAILDROP_H
#define COMMON_MAILDROP_H

#include <stddef.h>

/* Expands a maildrop template ("maildir:%h/Maildir", "mbox:/var/mail/%u";
 * %u user, %n its local part, %d its domain, %h home, %% a percent sign)
 * into out.  The "maildir:" prefix is optional and dropped; "mbox:" is
 * kept ("mbox:/var/mail/bob"), so the session knows the type.  A user
 * name may not walk the path (no "/", no "." or "..").  Returns 0, or -1
 * (*error_r static) if the type is neither maildir nor mbox, a variable is
 * unknown or empty, the path is not absolute, or it does not fit. */
int maildrop_expand(const char *tmpl, const char *user, const char *home,
		    char *out, size_t size, const char **error_r);

#endif
