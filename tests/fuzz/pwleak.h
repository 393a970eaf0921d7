/*
 * pwleak.h - for the fuzz harnesses: is a piece of a password in a text
 * (a reply, the log)?  Shared by fuzz-authd-client.c and pop3d/fuzz-login.c.
 *
 * Every 8-byte piece of the password is looked for, but only a piece
 * holding a byte that no fixed text of the daemons holds (a password of
 * plain words could match "Authentication" or "require-secured").  A piece
 * that is also in the user name (names are logged) or that the client
 * sent more than once (a request id, another key) does not count, nor one
 * made of 7 bytes it sent more than once and a field separator of the log.
 */
#ifndef TESTS_FUZZ_PWLEAK_H
#define TESTS_FUZZ_PWLEAK_H

#include <stdbool.h>
#include <string.h>

static bool pwleak_marked(const char *p)
{
	for (size_t i = 0; i < 8; i++)
		/* not '+': pop3d's replies start with "+OK" */
		if ((unsigned char)p[i] >= 0x80 || strchr("!#$&*<>^`{|}~", p[i]) != NULL)
			return true;
	return false;
}

/* A byte the log writes between fields ("user=NAME rip=..."). */
static bool pwleak_separator(char c)
{
	return c == ' ' || c == '=' || c == ',' || c == '\t';
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
		/* nor one that is 7 bytes the client also sent elsewhere and,
		 * at either end, a separator the log puts between its fields
		 * (another user's logged name, then the blank after it) */
		if ((pwleak_separator(pw[i + 7]) && sent(pw + i, 7) > 1) ||
		    (pwleak_separator(pw[i]) && sent(pw + i + 1, 7) > 1))
			continue;
		return true;
	}
	return false;
}

#endif
