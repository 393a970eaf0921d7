/*
 * pwleak.h - for the fuzz harnesses: is a piece of a password in a text
 * (a reply, the log)?  Shared by fuzz-authd-client.c and pop3d/fuzz-login.c.
 *
 * Every 8-byte piece of the password is looked for, but only a piece
 * holding a byte that no fixed text of the daemons holds (a password of
 * plain words could match "Authentication" or "require-secured").  A piece
 * that is also in the user name (names are logged) or that the client
 * sent more than once (a request id, another key) does not count.  Logs
 * are looked at without the client's own words they hold (pwleak_log:
 * every "user=", "user ", "rip=" and "lip=" value blanked), since a password may
 * hold another user's name or address and the bytes the log writes beside
 * it (an escape's last digit, the blank after the field).
 */
#ifndef TESTS_FUZZ_PWLEAK_H
#define TESTS_FUZZ_PWLEAK_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool pwleak_marked(const char *p)
{
	for (size_t i = 0; i < 8; i++)
		/* not '+': pop3d's replies start with "+OK" */
		if ((unsigned char)p[i] >= 0x80 || strchr("!#$&*<>^`{|}~", p[i]) != NULL)
			return true;
	return false;
}

/* True if text (len bytes) holds a piece of pw that counts (above);
 * sent(s, n) says how many times the client sent the n bytes at s. */
static bool pwleak_found(const char *text, size_t len, const char *pw, const char *user,
			 unsigned (*sent)(const char *s, size_t n))
{
	for (size_t i = 0; i + 8 <= strlen(pw); i++) {
		if (!pwleak_marked(pw + i) || memmem(text, len, pw + i, 8) == NULL)
			continue;
		if (memmem(user, strlen(user), pw + i, 8) != NULL || sent(pw + i, 8) > 1)
			continue;
		return true;
	}
	return false;
}

/* A copy of the log text (len bytes, NUL-terminated, malloc'd) with the
 * value of every field that logs what the client sent ("user=" and "user
 * NAME", as in "flushed 3 entries of user NAME"; the addresses "rip=" and
 * "lip=", which authd's clients send), up to the next blank, tab or line
 * end (values are escaped: they hold none), replaced by NUL bytes, which
 * no password holds.  Also for authd's replies, whose "user=" is the
 * name as normalised. */
static char *pwleak_log(const char *text, size_t len)
{
	static const char *const fields[] = { "user=", "user ", "rip=", "lip=" };
	char *copy = malloc(len + 1);

	if (copy == NULL)
		abort();
	memcpy(copy, text, len);
	copy[len] = '\0';
	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		size_t fl = strlen(fields[f]);

		for (char *p = copy; (p = memmem(p, len - (size_t)(p - copy), fields[f], fl)) != NULL;) {
			p += fl;
			while (p < copy + len && *p != ' ' && *p != '\t' && *p != '\n')
				*p++ = '\0';
		}
	}
	return copy;
}

#endif
