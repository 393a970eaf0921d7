/*
 * shacrypt.h - SHA512-CRYPT checked with libcrypto (shacrypt.c); authd's
 * worker threads, authctl, the unit tests.
 */
#ifndef AUTHD_SHACRYPT_H
#define AUTHD_SHACRYPT_H

enum shacrypt_check {
	SHACRYPT_NOT_MINE,	/* not the canonical "$6$" form: ask libcrypt */
	SHACRYPT_MISMATCH,
	SHACRYPT_MATCH,
};

/* Checks password against the crypt string hash; SHACRYPT_NOT_MINE unless
 * hash is "$6$[rounds=N$]SALT$HASH" as shacrypt.c describes.  The time
 * taken depends on the rounds, the password's length and one byte of an
 * intermediate digest (the salt's repetitions), as libcrypt's does; the
 * final compare is constant-time. */
enum shacrypt_check shacrypt512_verify(const char *hash, const char *password);

#endif
