/*
 * normalize.c - user name normalisation, applied before anything else
 * (cache keys, backends, per-user limits, logs), so that every later step
 * sees one name.
 *
 * Runs in authd's threads (request.c, for every AUTH and CHECK) and its
 * loop (client.c, for the administration commands WHO and KICK), as
 * authd's user.  Pure: no I/O, no shared state; libunistring's functions
 * are reentrant.
 *
 * DESIGN
 * - A user name is UTF-8 (RFC 6856 section 2: after UTF8, POP3 user names
 *   are UTF-8; SASL PLAIN's are by definition, RFC 4616).  A name that is
 *   not valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 *   past U+10FFFF) is refused like an empty one: it can belong to no one,
 *   and two byte strings that display alike must not become two users.
 * - Control characters are refused: C0 (below 0x20), DEL, and C1
 *   (U+0080..U+009F), which a terminal would act upon in a log; so are
 *   invisible ones (default-ignorable code points), which would give one
 *   account unlimited spellings against a backend that ignores them.
 * - Blanks at either end are trimmed, before and after the mapping.
 * - Unicode NFC, always: a client that sends "jo\u0308rg" (NFD, as macOS
 *   input methods produce) and one that sends "j\u00f6rg" reach the same
 *   cache entry, the same backend record and the same per-user limit.
 * - With lowercase-usernames, the mapping of RFC 8265's UsernameCaseMapped
 *   profile (section 3.3): width mapping (fullwidth and halfwidth forms to
 *   their usual ones, the decomposition Unicode tags <wide> and <narrow>),
 *   then case mapping to lower case (Unicode toLowerCase, language-neutral),
 *   then NFC.  Its other rules (the IdentifierClass's refusal of spaces
 *   and symbols, the directionality rule) are not applied: names that
 *   worked before ("john smith") keep working.
 * - The tables are libunistring's (a Debian package, kept current with
 *   Unicode), never written by hand here.
 * - strip-domain and default-domain apply to the mapped name, so the
 *   domain added is mapped the same way as the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#include "authd/authd.h"

/* The width mapping of RFC 8265 section 3.3.1 applied to the n valid
 * UTF-8 bytes at s: every code point whose decomposition is tagged <wide>
 * or <narrow> becomes that decomposition.  Returns a malloc'd buffer of
 * *len_r bytes (the caller frees it), or NULL (out of memory). */
static uint8_t *width_map(const uint8_t *s, size_t n, size_t *len_r)
{
	/* A <wide>/<narrow> decomposition is one code point (at most 4
	 * bytes) for a code point of at least 2 bytes: the result is never
	 * more than twice the input. */
	uint8_t *out = malloc(2 * n + 1);
	size_t o = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n;) {
		ucs4_t uc, dec[UC_DECOMPOSITION_MAX_LENGTH];
		int tag, len = u8_mbtouc(&uc, s + i, n - i);
		int dn = uc_decomposition(uc, &tag, dec);

		if (dn > 0 && (tag == UC_DECOMP_WIDE || tag == UC_DECOMP_NARROW)) {
			for (int k = 0; k < dn; k++) {
				int w = u8_uctomb(out + o, dec[k], (int)(2 * n + 1 - o));
				if (w < 0) {
					free(out);
					return NULL;
				}
				o += (size_t)w;
			}
		} else {
			memcpy(out + o, s + i, (size_t)len);
			o += (size_t)len;
		}
		i += (size_t)len;
	}
	*len_r = o;
	return out;
}

/* Valid UTF-8 without control characters (C0, DEL, C1) or invisible
 * ones (default-ignorable code points: U+00AD, U+200B, U+FEFF, ...),
 * which display as nothing and which LDAP's matching rules drop (RFC 4518
 * section 2.2): "ali\u200Bce" must not be a second name for alice. */
static bool name_chars_ok(const uint8_t *s, size_t n)
{
	if (u8_check(s, n) != NULL)
		return false;
	for (size_t i = 0; i < n;) {
		ucs4_t uc;
		int len = u8_mbtouc(&uc, s + i, n - i);

		if (uc < 0x20 || (uc >= 0x7f && uc <= 0x9f) ||
		    uc_is_property_default_ignorable_code_point(uc))
			return false;
		i += (size_t)len;
	}
	return true;
}

/* NFC, or with case mapping the UsernameCaseMapped mapping, of the n
 * valid UTF-8 bytes at s.  Returns a malloc'd buffer of *len_r bytes, or
 * NULL (out of memory). */
static uint8_t *unicode_map(const uint8_t *s, size_t n, bool casemap, size_t *len_r)
{
	uint8_t *wide, *r;
	size_t wlen;

	if (!casemap)
		return u8_normalize(UNINORM_NFC, s, n, NULL, len_r);
	wide = width_map(s, n, &wlen);
	if (wide == NULL)
		return NULL;
	r = u8_tolower(wide, wlen, NULL, UNINORM_NFC, NULL, len_r);
	free(wide);
	return r;
}

int user_normalize(const struct config *conf, const char *in, char *out, size_t size)
{
	const char *start = in, *end = in + strlen(in);
	const char *domain = conf->authd.default_domain;
	char buf[AUTH_MAX_USER * 2 + 2];
	uint8_t *mapped;
	size_t n, mlen;
	int w;

	while (*start == ' ' || *start == '\t')
		start++;
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	n = (size_t)(end - start);
	if (n == 0 || n >= size || !name_chars_ok((const uint8_t *)start, n))
		return -1;

	/* The name, and the default domain if it gets one, mapped as one. */
	if (!conf->authd.strip_domain && domain != NULL && domain[0] != '\0' &&
	    memchr(start, '@', n) == NULL)
		w = snprintf(buf, sizeof(buf), "%.*s@%s", (int)n, start, domain);
	else
		w = snprintf(buf, sizeof(buf), "%.*s", (int)n, start);
	if (w < 0 || (size_t)w >= sizeof(buf) || (size_t)w >= size ||
	    !name_chars_ok((const uint8_t *)buf, (size_t)w))
		return -1;
	mapped = unicode_map((const uint8_t *)buf, (size_t)w, conf->authd.lowercase_usernames,
			     &mlen);
	/* RFC 8264 section 7: the result must be stable under the same
	 * rules (normalisation is idempotent: a name authd hands out comes
	 * back the same).  Re-applied a few times at most; a name that
	 * never settles is refused. */
	for (int round = 0; mapped != NULL; round++) {
		size_t again_len;
		uint8_t *again = unicode_map(mapped, mlen, conf->authd.lowercase_usernames,
					     &again_len);
		bool stable = again != NULL && again_len == mlen &&
			      memcmp(again, mapped, mlen) == 0;

		free(mapped);
		mapped = again;
		mlen = again_len;
		if (stable)
			break;
		if (round == 3) {
			free(mapped);
			mapped = NULL;
		}
	}
	if (mapped == NULL)
		return -1;	/* out of memory, or unstable: refused */
	/* The width mapping can make a blank of an ideographic space (U+3000):
	 * trimmed here as the ASCII ones were above, so that "alice\u3000" is
	 * "alice", not a second name "alice ". */
	size_t skip = 0;
	while (skip < mlen && (mapped[skip] == ' ' || mapped[skip] == '\t'))
		skip++;
	while (mlen > skip && (mapped[mlen - 1] == ' ' || mapped[mlen - 1] == '\t'))
		mlen--;
	mlen -= skip;
	if (mlen == 0 || mlen >= size || memchr(mapped + skip, '\0', mlen) != NULL) {
		free(mapped);
		return -1;
	}
	memcpy(out, mapped + skip, mlen);
	out[mlen] = '\0';
	free(mapped);

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
	}
	return 0;
}
