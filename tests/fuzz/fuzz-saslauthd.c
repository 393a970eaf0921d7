/*
 * fuzz-saslauthd.c - libFuzzer harness for authd's saslauthd protocol
 * decoder (authd/saslproto.c: saslauthd_decode), which authd/saslauthd.c
 * runs on the bytes a client of [authd] saslauthd-socket has sent so far.
 * Build and run with tests/fuzz/run.
 *
 * Properties checked, besides crashes and sanitizer reports:
 *   - DONE: the four (or five) strings, counted again, are exactly the
 *     input; each is within its bound and holds no NUL; passlen is the
 *     password's length;
 *   - BAD: a reason, and the request structure wiped (it may have held a
 *     password);
 *   - MORE: the input is no longer than SASLAUTHD_MAX_REQUEST, and some
 *     string is still incomplete (adding its missing bytes cannot make
 *     the decoder refuse what it has seen);
 *   - the input's bytes, cut into five strings and counted (a request a
 *     client could send), decode to those strings when within the bounds.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authd/authd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t put(uint8_t *out, const char *s, size_t n)
{
	out[0] = (uint8_t)(n >> 8);
	out[1] = (uint8_t)n;
	memcpy(out + 2, s, n);
	return n + 2;
}

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return false;
	return true;
}

static void check_decode(const uint8_t *data, size_t size)
{
	static struct saslauthd_req r;
	static uint8_t again[SASLAUTHD_MAX_REQUEST + 16];
	const char *err = NULL;
	size_t n = 0;

	switch (saslauthd_decode(data, size, &r, &err)) {
	case SASLAUTHD_DONE:
		if (strlen(r.login) > AUTH_MAX_USER || r.passlen > AUTH_MAX_PASSWORD ||
		    strlen(r.password) != r.passlen || strlen(r.service) > SASLAUTHD_MAX_FIELD ||
		    strlen(r.realm) > SASLAUTHD_MAX_FIELD || strlen(r.addr) > SASLAUTHD_MAX_FIELD)
			abort();
		n += put(again + n, r.login, strlen(r.login));
		n += put(again + n, r.password, r.passlen);
		n += put(again + n, r.service, strlen(r.service));
		n += put(again + n, r.realm, strlen(r.realm));
		if (r.has_addr)
			n += put(again + n, r.addr, strlen(r.addr));
		else if (r.addr[0] != '\0')
			abort();
		if (n != size || memcmp(again, data, size) != 0)
			abort();
		break;
	case SASLAUTHD_BAD:
		if (err == NULL || !all_zero(&r, sizeof(r)))
			abort();
		break;
	case SASLAUTHD_MORE:
		if (size > SASLAUTHD_MAX_REQUEST)
			abort();
		break;
	}
}

static void check_encode(const uint8_t *data, size_t size)
{
	static uint8_t req[5 * 2 + 5 * 65536];
	static struct saslauthd_req r;
	const size_t max[5] = { AUTH_MAX_USER, AUTH_MAX_PASSWORD, SASLAUTHD_MAX_FIELD,
				SASLAUTHD_MAX_FIELD, SASLAUTHD_MAX_FIELD };
	const char *f[5];
	size_t flen[5], n = 0, pos = 0;
	bool fits = true;
	const char *err;

	if (size < 5)
		return;
	/* the first five bytes choose the lengths, the rest are the bytes */
	for (int i = 0; i < 5; i++) {
		size_t want = data[i] % 64 * (i == 1 ? 20 : 5);
		size_t left = size - 5 - pos;

		flen[i] = want < left ? want : left;
		f[i] = (const char *)data + 5 + pos;
		pos += flen[i];
		if (flen[i] > max[i] || memchr(f[i], '\0', flen[i]) != NULL)
			fits = false;
		n += put(req + n, f[i], flen[i]);
	}
	enum saslauthd_status st = saslauthd_decode(req, n, &r, &err);
	if (!fits || n > SASLAUTHD_MAX_REQUEST)
		return;
	if (st != SASLAUTHD_DONE || !r.has_addr || strlen(r.login) != flen[0] ||
	    memcmp(r.login, f[0], flen[0]) != 0 || r.passlen != flen[1] ||
	    memcmp(r.password, f[1], flen[1]) != 0 || memcmp(r.addr, f[4], flen[4]) != 0)
		abort();
	/* every proper prefix is MORE, never BAD or DONE short of four */
	for (size_t cut = 0; cut < n; cut += n / 64 + 1) {
		st = saslauthd_decode(req, cut, &r, &err);
		if (st == SASLAUTHD_BAD)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_decode(data, size);
	check_encode(data, size);
	return 0;
}
