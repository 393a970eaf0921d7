/*
 * passdb_passwd_file.c - the passwd-file authenticator.
 *
 * Reads Dovecot-compatible files:
 *   user:password:uid:gid:gecos:home:shell:extra_fields
 * where every field after the password may be empty or missing, and
 * extra_fields holds blank-separated key=value pairs (maildrop=,
 * userdb_maildrop=, userdb_mail= set the maildrop; others are ignored).
 * Malformed lines are skipped with a file:line warning.
 *
 * The parsed file is an immutable, sorted array shared by all workers and
 * reference-counted; a watcher thread checks once a second whether the
 * file changed, loads the new version and swaps it in, while requests in
 * flight finish against the old one.  (The check cannot ride on requests:
 * once every answer comes from the cache, no request reaches the file.)  Unknown users are checked
 * against a real hash from the file (the first entry's) so that they cost
 * the same time as known ones.  Hash checks run only on workers, at most
 * hash-concurrency at a time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "authd/authd.h"
#include "cache/cache.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/num.h"

#define PWFILE_CHECK_INTERVAL_MS 1000
#define PWFILE_MAX_LINE 4096

struct pw_entry {
	char *user;
	char *hash;
	struct userdb udb;
};

struct pw_db {
	unsigned refs;			/* under pwfile->lock */
	struct pw_entry *entries;	/* sorted by user */
	size_t n;
	char *dummy_hash;		/* for unknown users; NULL if file empty */
	struct stat st;			/* of the file as loaded */
};

struct pwfile {
	const char *path;
	const char *name;
	pthread_mutex_t lock;		/* db swap, refs, stopping */
	struct pw_db *db;
	/* the watcher thread */
	pthread_t watcher;
	bool missing;			/* watcher only: stat failed last time */
	pthread_cond_t watcher_cond;	/* with lock; signalled to stop */
	bool stopping;
	/* hash concurrency cap */
	pthread_mutex_t hash_lock;
	pthread_cond_t hash_cond;
	unsigned hashing, hash_max;
};

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct pw_entry *)a)->user, ((const struct pw_entry *)b)->user);
}

static void db_free(struct pw_db *db)
{
	if (db == NULL)
		return;
	for (size_t i = 0; i < db->n; i++) {
		free(db->entries[i].user);
		sodium_memzero(db->entries[i].hash, strlen(db->entries[i].hash));
		free(db->entries[i].hash);
	}
	free(db->entries);
	free(db->dummy_hash);
	free(db);
}

/* Splits s at ':' into at most max fields; returns the count. */
static size_t split_colon(char *s, char **f, size_t max)
{
	size_t n = 0;

	f[n++] = s;
	for (char *p = s; *p != '\0' && n < max; p++) {
		if (*p == ':') {
			*p = '\0';
			f[n++] = p + 1;
		}
	}
	return n;
}

static int parse_extra(struct userdb *udb, char *extra)
{
	for (char *save, *tok = strtok_r(extra, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(tok, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		if (strcmp(tok, "maildrop") == 0 || strcmp(tok, "userdb_maildrop") == 0 ||
		    strcmp(tok, "userdb_mail") == 0) {
			if (userdb_set_field(udb, "maildrop", eq + 1) == -1)
				return -1;
		}
	}
	return 0;
}

/* Parses the lines of f (path names it in messages) into db's entries
 * and dummy hash: sorted, one entry per user.  Pure text work, no I/O but
 * f's (tests/fuzz/fuzz-passwd-file.c feeds it from memory). */
static void db_read(struct pw_db *db, FILE *f, const char *name, const char *path)
{
	char line[PWFILE_MAX_LINE + 2];
	unsigned lineno = 0, plain = 0, skipped = 0;
	size_t cap = 64;

	db->entries = xcalloc(cap, sizeof(*db->entries));
	while (fgets(line, sizeof(line), f) != NULL) {
		char *fields[8], why[256];
		size_t nf, len = strlen(line);
		struct pw_entry e;

		lineno++;
		if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
			log_warnx("%s:%u: line too long, skipped", path, lineno);
			skipped++;
			int ch;
			while ((ch = fgetc(f)) != EOF && ch != '\n')
				;
			continue;
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		memset(&e, 0, sizeof(e));
		nf = split_colon(line, fields, 8);
		if (nf < 2 || fields[0][0] == '\0') {
			log_warnx("%s:%u: expected user:password[:uid:gid:gecos:home:shell:extra], "
				  "skipped", path, lineno);
			skipped++;
			continue;
		}
		if (!password_scheme_check(fields[1], why, sizeof(why))) {
			log_warnx("%s:%u: user %s: %s, skipped", path, lineno, fields[0], why);
			skipped++;
			continue;
		}
		if ((nf > 2 && fields[2][0] != '\0' && userdb_set_field(&e.udb, "uid", fields[2]) == -1) ||
		    (nf > 3 && fields[3][0] != '\0' && userdb_set_field(&e.udb, "gid", fields[3]) == -1) ||
		    (nf > 5 && fields[5][0] != '\0' && userdb_set_field(&e.udb, "home", fields[5]) == -1) ||
		    (nf > 7 && parse_extra(&e.udb, fields[7]) == -1)) {
			log_warnx("%s:%u: user %s: bad uid, gid, home or maildrop, skipped",
				  path, lineno, fields[0]);
			skipped++;
			continue;
		}
		if (password_is_plain(fields[1]))
			plain++;
		if (db->n == cap) {
			cap *= 2;
			db->entries = realloc(db->entries, cap * sizeof(*db->entries));
			if (db->entries == NULL)
				fatalx("out of memory");
		}
		e.user = xstrdup(fields[0]);
		e.hash = xstrdup(fields[1]);
		db->entries[db->n++] = e;
		sodium_memzero(line, sizeof(line));
	}
	sodium_memzero(line, sizeof(line));
	if (db->n > 0) {
		db->dummy_hash = xstrdup(db->entries[0].hash);
		qsort(db->entries, db->n, sizeof(*db->entries), cmp_entry);
		/* Duplicates: keep the first in file order is not knowable after
		 * qsort; refuse ambiguity by dropping all but one and warning. */
		size_t w = 0;
		for (size_t r = 0; r < db->n; r++) {
			if (w > 0 && strcmp(db->entries[w - 1].user, db->entries[r].user) == 0) {
				log_warnx("%s: user %s listed more than once; using one entry",
					  path, db->entries[r].user);
				free(db->entries[r].user);
				free(db->entries[r].hash);
				continue;
			}
			db->entries[w++] = db->entries[r];
		}
		db->n = w;
	}
	if (plain > 0)
		log_warnx("authenticator %s: %s holds %u {PLAIN} passwords; prefer {ARGON2ID} "
			  "or {SHA512-CRYPT}", name, path, plain);
	log_info("authenticator %s: loaded %zu users from %s%s", name, db->n, path,
		 skipped ? " (some lines skipped, see above)" : "");
}

/* Loads path.  Returns the db or NULL (error logged). */
static struct pw_db *db_load(const char *name, const char *path)
{
	struct pw_db *db;
	FILE *f;

	f = fopen(path, "re");
	if (f == NULL) {
		log_warn("authenticator %s: cannot open %s", name, path);
		return NULL;
	}
	db = xcalloc(1, sizeof(*db));
	if (fstat(fileno(f), &db->st) == -1) {
		log_warn("authenticator %s: fstat %s", name, path);
		fclose(f);
		free(db);
		return NULL;
	}
	db_read(db, f, name, path);
	fclose(f);
	return db;
}

static void maybe_reload(struct pwfile *pf);

static void *watcher_main(void *arg)
{
	struct pwfile *pf = arg;
	struct timespec ts;

	pthread_mutex_lock(&pf->lock);
	while (!pf->stopping) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += PWFILE_CHECK_INTERVAL_MS / 1000;
		pthread_cond_timedwait(&pf->watcher_cond, &pf->lock, &ts);
		if (pf->stopping)
			break;
		pthread_mutex_unlock(&pf->lock);
		maybe_reload(pf);
		pthread_mutex_lock(&pf->lock);
	}
	pthread_mutex_unlock(&pf->lock);
	return NULL;
}

/* authd -t: loads the file as pwfile_init() does, and drops it. */
static int pwfile_check(const struct auth_conf *ac, char *error, size_t size)
{
	struct pw_db *db = db_load(ac->name, ac->path);

	if (db == NULL) {
		snprintf(error, size, "cannot load %s", ac->path);
		return -1;
	}
	db_free(db);
	return 0;
}

static int pwfile_init(struct authenticator *auth, char *error, size_t size)
{
	struct pwfile *pf = xcalloc(1, sizeof(*pf));

	pf->path = auth->conf->path;
	pf->name = auth->conf->name;
	pthread_mutex_init(&pf->lock, NULL);
	pthread_mutex_init(&pf->hash_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pf->hash_cond, &ca);
	pthread_cond_init(&pf->watcher_cond, &ca);
	pthread_condattr_destroy(&ca);
	pf->hash_max = auth->conf->hash_concurrency;
	pf->db = db_load(pf->name, pf->path);
	if (pf->db == NULL) {
		snprintf(error, size, "cannot load %s", pf->path);
		free(pf);
		return -1;
	}
	pf->db->refs = 1;
	config_check_private("password file", pf->path);
	auth->backend = pf;
	if (pthread_create(&pf->watcher, NULL, watcher_main, pf) != 0)
		fatalx("authenticator %s: cannot start the file watcher", pf->name);
	return 0;
}

static void db_unref(struct pwfile *pf, struct pw_db *db)
{
	bool last;

	pthread_mutex_lock(&pf->lock);
	last = --db->refs == 0;
	pthread_mutex_unlock(&pf->lock);
	if (last)
		db_free(db);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reloads the file if it changed (watcher thread only). */
static void maybe_reload(struct pwfile *pf)
{
	struct pw_db *cur, *db;
	struct stat st;

	pthread_mutex_lock(&pf->lock);
	cur = pf->db;
	cur->refs++;
	pthread_mutex_unlock(&pf->lock);

	db = NULL;
	if (stat(pf->path, &st) == -1) {
		/* Said once, not every second. */
		if (!pf->missing)
			log_warn("authenticator %s: stat %s (keeping the loaded version)",
				 pf->name, pf->path);
		pf->missing = true;
	} else {
		if (pf->missing)
			log_info("authenticator %s: %s is back", pf->name, pf->path);
		pf->missing = false;
		if (!same_file(&st, &cur->st))
			db = db_load(pf->name, pf->path);
	}
	db_unref(pf, cur);

	pthread_mutex_lock(&pf->lock);
	if (db != NULL) {
		db->refs = 1;
		cur = pf->db;
		pf->db = db;
	} else {
		cur = NULL;
	}
	pthread_mutex_unlock(&pf->lock);
	if (cur != NULL) {
		db_unref(pf, cur);
		/* Cached answers may contradict the new file (a password tried
		 * before the change and cached as wrong): start afresh. */
		if (requests_cache() != NULL)
			log_info("authenticator %s: %s changed; cache flushed (%llu entries)",
				 pf->name, pf->path,
				 (unsigned long long)requests_cache_flush(NULL, NULL, NULL,
									      NULL));
	}
}

/* Waits for a hashing slot until deadline.  Returns 0 or -1 (timed out). */
static int hash_slot_get(struct pwfile *pf, uint64_t deadline_ms)
{
	struct timespec ts;
	int rc = 0;

	ts.tv_sec = (time_t)(deadline_ms / 1000);
	ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000;
	pthread_mutex_lock(&pf->hash_lock);
	while (pf->hashing >= pf->hash_max && rc == 0)
		rc = pthread_cond_timedwait(&pf->hash_cond, &pf->hash_lock, &ts);
	if (pf->hashing < pf->hash_max) {
		pf->hashing++;
		rc = 0;
	} else {
		rc = -1;
	}
	pthread_mutex_unlock(&pf->hash_lock);
	return rc;
}

static void hash_slot_put(struct pwfile *pf)
{
	pthread_mutex_lock(&pf->hash_lock);
	pf->hashing--;
	pthread_cond_signal(&pf->hash_cond);
	pthread_mutex_unlock(&pf->hash_lock);
}

static void pwfile_verify(struct authenticator *auth, void *state, struct job *job)
{
	struct pwfile *pf = auth->backend;
	struct pw_db *db;
	struct pw_entry key, *e;
	const char *hash;
	enum pw_check r;

	pthread_mutex_lock(&pf->lock);
	db = pf->db;
	db->refs++;
	pthread_mutex_unlock(&pf->lock);

	key.user = job->user;
	e = db->n > 0 ? bsearch(&key, db->entries, db->n, sizeof(*e), cmp_entry) : NULL;
	hash = e != NULL ? e->hash : db->dummy_hash;
	if (hash == NULL) {
		job->result = AUTH_RESULT_NOUSER;
		goto out;
	}
	if (hash_slot_get(pf, job->deadline_ms) == -1) {
		job->result = AUTH_RESULT_TEMPFAIL;
		job->reason = TEMPFAIL_TIMEOUT;
		goto out;
	}
	r = password_verify(hash, job->password);
	hash_slot_put(pf);
	if (e == NULL) {
		job->result = AUTH_RESULT_NOUSER;
	} else if (r == PW_MATCH) {
		job->result = AUTH_RESULT_OK;
		job->udb = e->udb;
	} else if (r == PW_MISMATCH) {
		job->result = AUTH_RESULT_FAIL;
	} else {
		log_warnx("authenticator %s: user %s: unusable password hash", pf->name, job->user_log);
		job->result = AUTH_RESULT_FAIL;
	}
out:
	db_unref(pf, db);
}

static void pwfile_deinit(struct authenticator *auth)
{
	struct pwfile *pf = auth->backend;

	if (pf == NULL)
		return;
	pthread_mutex_lock(&pf->lock);
	pf->stopping = true;
	pthread_cond_signal(&pf->watcher_cond);
	pthread_mutex_unlock(&pf->lock);
	pthread_join(pf->watcher, NULL);
	pthread_cond_destroy(&pf->watcher_cond);
	db_free(pf->db);
	pthread_mutex_destroy(&pf->lock);
	pthread_mutex_destroy(&pf->hash_lock);
	pthread_cond_destroy(&pf->hash_cond);
	free(pf);
	auth->backend = NULL;
}

const struct passdb_ops passdb_passwd_file = {
	.type = "passwd-file",
	.check = pwfile_check,
	.init = pwfile_init,
	.verify = pwfile_verify,
	.deinit = pwfile_deinit,
};
