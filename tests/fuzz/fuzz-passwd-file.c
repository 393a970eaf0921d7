/*
 * fuzz-passwd-file.c - libFuzzer harness for the passwd-file parser
 * (authd/passdb_passwd_file.c: db_read, split_colon, parse_extra, the
 * duplicate removal) and, on what it loads, the password scheme dispatch
 * of authd/password.c (password_verify through every scheme).
 *
 * Input: the file's text (fed from memory through fmemopen), then
 * optionally a NUL and a password to try.  The file is included here (it
 * keeps its parser static) with stubs for the cache flush it can call.
 *
 * Properties checked on the loaded db:
 *   - entries are sorted and unique, each found by bsearch as
 *     pwfile_verify finds it; no entry without a user or a usable hash
 *     (password_scheme_known); no ':' in a user or hash; "user:hash" is in
 *     the input; the dummy hash (for unknown users) is a usable one;
 *   - userdb fields: home and maildrop terminated, without control bytes;
 *   - the log never holds 8 bytes of a password field (the probes hold
 *     '$', '+' or '=', never in the fixed texts), unless that text is also
 *     in a user field of the input, which the log may name;
 *   - scheme dispatch, for the hashes cheap enough (tests/fuzz/pwcost.h:
 *     argon2 m <= 64 KiB, sha-crypt rounds <= 1000, bcrypt cost 04,
 *     PBKDF2 <= 1000 rounds; never SCRAM, yescrypt and the like, which are
 *     only decoded): password_verify never says PW_BAD_HASH for a hash the
 *     load accepted (crypt strings aside: libcrypt may refuse what
 *     crypt_checksalt accepted), and a {PLAIN}/{CLEAR}/{CLEARTEXT} entry
 *     matches its own password and not another.
 * Expensive hashes are the harness's choice to skip (a cost read from the
 * string), not password.c's: the daemon verifies whatever the file holds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authd/passdb_passwd_file.c"
#include "tests/fuzz/logcapture.h"
#include "tests/fuzz/pwcost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the file's code calls outside this harness. */
struct cache *requests_cache(void)
{
	return NULL;
}

uint64_t requests_cache_flush(const char *user, l2_flush_cb *cb, void *ctx, bool *l2_r)
{
	if (l2_r != NULL)
		*l2_r = false;
	return 0;
}

void config_check_private(const char *what, const char *path)
{
}

/* True if s (n bytes) occurs as a substring of a user field (before the
 * first ':' of a line) of text. */
/* Does the log's rendering of u (n bytes) equal s?  The log writes a
 * control character as '?' (common/log.c). */
static bool logged_as(const char *u, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)u[i];

		if ((c < 0x20 || c == 0x7f ? '?' : (char)c) != s[i])
			return false;
	}
	return true;
}

static bool in_a_user_field(const char *text, const char *s, size_t n)
{
	for (const char *line = text; *line != '\0';) {
		size_t len = strcspn(line, "\n"), ulen = strcspn(line, ":\n");

		for (size_t i = 0; i + n <= ulen; i++)
			if (logged_as(line + i, s, n))
				return true;
		line += len + (line[len] != '\0');
	}
	return false;
}

/* What password.c's reasons say, whole: "not a valid $argon2id$ string"
 * holds "id $argo" as well as "$argon2id$". */
#define REASONS "not a valid $argon2id$ string, not a valid $argon2i$ string, " \
		"not $1$salt$rounds$hash"

/* The log must not quote a password field: every 8-byte window of each
 * line's second field holding '$', '+' or '=' is looked for, except a
 * window of what password.c's reasons quote ("not a valid $argon2id$
 * string", "not $1$salt$rounds$hash"), in the log with the user names it
 * names blanked ("user NAME:": names are logged by design, and a password
 * field may hold another line's name with the blank the log puts before
 * it). */
static void check_log(const char *text, const char *logtext)
{
	size_t loglen = strlen(logtext);
	char *log = xstrdup(logtext);

	for (char *p = log; (p = strstr(p, "user ")) != NULL;) {
		p += 5;
		while (*p != '\0' && *p != ':' && *p != '\n')
			*p++ = '\n';	/* in no password field */
	}
	for (const char *line = text; *line != '\0';) {
		size_t len = strcspn(line, "\n"), ulen = strcspn(line, ":\n");

		if (ulen < len) {
			const char *pw = line + ulen + 1;
			size_t plen = strcspn(pw, ":\n\r");

			for (size_t i = 0; i + 8 <= plen; i++) {
				char probe[9];

				memcpy(probe, pw + i, 8);
				probe[8] = '\0';
				if (strlen(probe) == 8 && strpbrk(probe, "$+=") != NULL &&
				    memmem(log, loglen, probe, 8) != NULL &&
				    !in_a_user_field(text, probe, 8) &&
				    strstr(REASONS, probe) == NULL)
					abort();
			}
		}
		line += len + (line[len] != '\0');
	}
	free(log);
}

static bool clean_path(const char *s)
{
	size_t n = strnlen(s, USERDB_MAX_FIELD);

	if (n == USERDB_MAX_FIELD)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool is_plain(const char *hash)
{
	return strncasecmp(hash, "{PLAIN}", 7) == 0 || strncasecmp(hash, "{CLEAR}", 7) == 0 ||
	       strncasecmp(hash, "{CLEARTEXT}", 11) == 0;
}

static void check_entry(const struct pw_db *db, const struct pw_entry *e, const char *text,
			const char *password)
{
	struct pw_entry key;
	const struct pw_entry *found;
	char *pair;
	size_t n;
	enum pw_check r;

	if (e->user[0] == '\0' || strchr(e->user, ':') != NULL || strchr(e->hash, ':') != NULL)
		abort();
	if (!password_scheme_known(e->hash))
		abort();
	if (!clean_path(e->udb.home) || !clean_path(e->udb.maildrop))
		abort();
	n = strlen(e->user) + 1 + strlen(e->hash);
	pair = malloc(n + 1);
	snprintf(pair, n + 1, "%s:%s", e->user, e->hash);
	if (strstr(text, pair) == NULL)
		abort();
	free(pair);
	key.user = e->user;
	found = bsearch(&key, db->entries, db->n, sizeof(*e), cmp_entry);
	if (found != e)
		abort();

	if (password == NULL || !pwcost_cheap(e->hash))
		return;
	r = password_verify(e->hash, password);
	if (r == PW_BAD_HASH && e->hash[0] != '$' && strcasestr(e->hash, "CRYPT}") == NULL &&
	    strncasecmp(e->hash, "{MD5}$", 6) != 0 && e->hash[0] == '{')
		abort();
	if (is_plain(e->hash) && strchr(e->hash, '.') == NULL) {
		const char *own = strchr(e->hash, '}') + 1;

		if (password_verify(e->hash, own) != PW_MATCH)
			abort();
		if (strcmp(own, password) != 0 && r != PW_MISMATCH)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	const char *nul;
	char *text, *password;
	size_t tlen;
	struct pw_db *db;
	FILE *f;

	if (!init) {
		if (sodium_init() == -1)
			abort();
		logcap_init();
		init = true;
	}
	if (size > 16384)
		return 0;
	nul = memchr(data, '\0', size);
	tlen = nul != NULL ? (size_t)(nul - (const char *)data) : size;
	text = malloc(tlen + 1);
	memcpy(text, data, tlen);
	text[tlen] = '\0';
	if (nul != NULL) {
		password = strndup(nul + 1, size - tlen - 1);
	} else {
		password = strdup("correct horse battery staple");
	}

	logcap_reset();
	f = fmemopen(text, tlen, "r");
	if (f == NULL) {	/* glibc refuses a zero-length buffer */
		free(text);
		free(password);
		return 0;
	}
	db = xcalloc(1, sizeof(*db));
	db_read(db, f, "fuzz", "/fuzz/passwd");
	fclose(f);

	for (size_t i = 0; i < db->n; i++) {
		if (i > 0 && strcmp(db->entries[i - 1].user, db->entries[i].user) >= 0)
			abort();
		/* the expensive part only for the first few entries */
		check_entry(db, &db->entries[i], text, i < 8 ? password : NULL);
	}
	if ((db->n == 0) != (db->dummy_hash == NULL))
		abort();
	/* the first line's hash, maybe of a duplicate that was dropped */
	if (db->dummy_hash != NULL && !password_scheme_known(db->dummy_hash))
		abort();
	check_log(text, logcap_text());
	db_free(db);
	free(text);
	free(password);
	return 0;
}
