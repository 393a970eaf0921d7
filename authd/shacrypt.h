/*
 * shacrypt.h - SHA512-CRYPT checked with libcrypto (shacrypt.c); authd's
 * worker threads, authctl, the unit tests.
 */
#ifndef AUTHD_SHACRYPT_H
#define AUTHD_SHACRYPT_H

enum {
	SHACRYPT_NOT_MINE = -1,	/* not the canonical "$6$" form: ask libcrypt */
	SHACRYPT_MISMATCH = 0,
	SHACRYPT_MATCH = 1,
};

/* Checks password against the crypt string hash, in constant time for a
 * given hash and password length; SHACRYPT_NOT_MINE unless hash is
 * "$6$[rounds=N$]SALT$HASH" as shacrypt.c describes. */
int shacrypt512_verify(const char *hash, const char *password);

#endif
