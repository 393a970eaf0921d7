/*
 * request.c - the life of an authentication request, on the loop thread.
 *
 *   request ─► cache ─ fresh hit ──────────────────────────────► answer
 *                │ miss
 *                ▼
 *              flight (one per user+password in progress; identical
 *                │      requests join it as waiters: coalescing)
 *                ▼
 *          L2 (memcached, off the loop; if configured) ─ hit ──► answer
 *                │ miss, error, or no answer by the L2 deadline
 *                ▼
 *          authenticator 1 ─► NOUSER ─► authenticator 2 ─► ...
 *                │ OK / FAIL / TEMPFAIL (stale entry if any) │
 *                └──────────► answer every waiter ◄──────────┘
 *
 * A flight gets one timer per stage: the authenticator's `timeout`, counted
 * from the moment its job was queued.  When it fires the waiters get
 * TEMPFAIL (or a stale positive entry) at once and the job is abandoned;
 * its result, if it still comes, only fills the cache.  A waiter that is
 * cancelled (CANCEL, or its client went away) leaves the flight; a flight
 * nobody waits for is dropped the same way.
 *
 * The cache never holds a password: the flight keeps one copy for the
 * backend, wiped when the flight ends.
 *
 * L2 (l2.c) is asked once per flight, before the first authenticator, so
 * coalescing makes one L2 GET as it makes one backend call.  Its hit goes
 * into L1 (with the epoch the flight took before the GET, so a flush that
 * came meanwhile keeps it out) and answers the waiters; a backend's OK
 * goes into L1 and, under the generation and epoch the GET read, into L2.
 * A stale L2 entry is kept by the flight for stale-if-error, like L1's.
 *
 * A flush (a passwd-file changed, `authctl flush`) must not be undone by
 * a job that was asked before it and answers after it, from what the
 * backend knew before (a password that has just been changed).  So each
 * job carries the cache's flush epoch from when it was made, and
 * cache_fill() stores its result with cache_insert_if_epoch(), which keeps
 * nothing if a flush came since (cache/cache.c's DESIGN, Flush epoch; the
 * flush may come from the passwd-file watcher thread).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "authd/authd.h"
#include "cache/cache.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"

/* Scope of every cache key: the one chain of authenticators.  (Keyed per
 * chain, not per service, so that `authctl flush USER` finds it.)  When
 * authenticators have `services`, each request binds its service's chain
 * (the names) into its verifiers instead (chain_of()): its entries are
 * under the user's one key, so a flush finds them, and match no request
 * of another chain, nor of this one after a reload changed its names. */
#define CACHE_SCOPE "chain"
/* A chain as chain_of() writes it: names and commas. */
#define CHAIN_TAG_SIZE (CONFIG_MAX_AUTHENTICATORS * (CONFIG_AUTH_NAME_MAX + 1) + 1)
#define FLIGHT_BUCKETS 1024
/* A uid or gid the backend did not give: (uid_t)-1 is never a real id
 * (userdb_set_field refuses it), so it can stand for "absent" in an entry. */
#define UID_ABSENT UINT32_MAX

struct flight {
	LIST_ENTRY(flight) hash_entry;
	bool hashed;			/* findable for coalescing */
	TAILQ_HEAD(, request) waiters;
	bool refresh;			/* background revalidation */
	bool cacheable;
	uint8_t key[CACHE_KEY_LEN], verifier[CACHE_VERIFIER_LEN];
	char user[AUTH_MAX_USER + 1];
	char *password;
	size_t passlen;
	char service[33], rip[AUTHD_MAX_ADDR + 1], lip[AUTHD_MAX_ADDR + 1];
	bool secured;
	struct generation *gen;		/* the chain it runs through */
	size_t stage;			/* index in gen's chain */
	bool full_chain;		/* its service's chain is gen's whole chain */
	struct job *job;		/* in flight, or NULL */
	struct event *timer;
	struct l2_op *l2op;		/* L2 GET in progress, or NULL */
	uint64_t l1_epoch;		/* cache_epoch() before the L2 GET */
	struct l2_result l2res;		/* what the GET found (L2_MISS if none) */
};

struct authd_stats authd_stats;

static struct generation *cur;		/* new flights start here */
static const struct config *conf;	/* cur->conf (the first one until then) */
static struct event_base *loop_base;
static struct cache *cache;
static unsigned in_flight;		/* requests waiting on a flight */
static LIST_HEAD(, flight) flights[FLIGHT_BUCKETS];

static const char *const reason_names[] = {
	[TEMPFAIL_TIMEOUT] = "timeout",
	[TEMPFAIL_OVERLOADED] = "overloaded",
	[TEMPFAIL_BUSY] = "busy",
	[TEMPFAIL_UNAVAILABLE] = "unavailable",
	[TEMPFAIL_INTERNAL] = "internal",
};

const char *tempfail_reason_name(enum tempfail_reason r)
{
	return reason_names[r];
}

void requests_set_base(struct event_base *base)
{
	loop_base = base;
}

void requests_set_generation(struct generation *gen)
{
	cur = gen;
	conf = gen->conf;
}

unsigned requests_in_flight(void)
{
	return in_flight;
}

/* Every authenticator of gen has cache = yes (so "unknown to the whole
 * chain" may be cached). */
static bool chain_cacheable(const struct generation *gen)
{
	for (size_t i = 0; i < gen->nauths; i++)
		if (!gen->auths[i].conf->cache)
			return false;
	return true;
}

/* True if authenticator a is part of the chain for requests of service. */
static bool serves(const struct auth_conf *a, const char *service)
{
	if (a->nservices == 0)
		return true;
	for (size_t i = 0; i < a->nservices; i++)
		if (strcmp(a->service_list[i], service) == 0)
			return true;
	return false;
}

/* The first stage of service's chain at or after from; gen->nauths if none. */
static size_t next_stage(const struct generation *gen, const char *service, size_t from)
{
	while (from < gen->nauths && !serves(gen->auths[from].conf, service))
		from++;
	return from;
}

/* Writes service's chain in gen into tag (CHAIN_TAG_SIZE bytes) as the
 * cache verifiers take it: "" when no authenticator of gen has `services`
 * (the one chain: entries as before chains per service existed), else the
 * names of its authenticators in order, joined by commas, even when that
 * is every one (so that after a reload no entry made under another list
 * of names matches).  *full_r: it is every authenticator of gen.  Returns
 * false if it has none (then nobody is asked and nothing is cached). */
static bool chain_of(const struct generation *gen, const char *service, char *tag,
		     bool *full_r)
{
	size_t n = 0, len = 0;
	bool filtered = false;

	tag[0] = '\0';
	for (size_t i = 0; i < gen->nauths; i++) {
		n += serves(gen->auths[i].conf, service);
		filtered |= gen->auths[i].conf->nservices > 0;
	}
	*full_r = n == gen->nauths;
	if (!filtered)
		return n > 0;
	for (size_t i = 0; i < gen->nauths; i++) {
		size_t room = CHAIN_TAG_SIZE - len;
		int w;

		if (!serves(gen->auths[i].conf, service))
			continue;
		w = snprintf(tag + len, room, "%s%s", len > 0 ? "," : "", gen->auths[i].conf->name);
		if (w < 0 || (size_t)w >= room)
			fatalx("chain of service %s: names too long for the cache tag", service);
		len += (size_t)w;
	}
	return n > 0;
}

void requests_init(const struct config *c, struct event_base *base)
{
	uint8_t hash_keys[64];

	conf = c;
	for (size_t i = 0; i < FLIGHT_BUCKETS; i++)
		LIST_INIT(&flights[i]);
	if (!conf->cache.enabled) {
		log_info("cache: disabled");
		return;
	}
	struct cache_settings cs = {
		.size = conf->cache.size,
		.fail_max_per_set = 2,
		.nouser_max_per_set = 2,
		.refresh_percent = conf->cache.refresh_ahead_pct,
	};
	const char *err;
	/* With L2, the hosts of a cluster must agree on a user's key. */
	if (c->cache.nservers > 0 && l2_hash_keys(hash_keys))
		cs.hash_keys = hash_keys;
	cache = cache_create(&cs, &err);
	sodium_memzero(hash_keys, sizeof(hash_keys));
	if (cache == NULL)
		fatalx("cache: %s", err);
	l2_init(c, base, cache);
	log_info("cache: %llu bytes, positive-ttl %llums, negative-ttl %llums, stale-ttl %llums, "
		 "refresh-ahead %u%%", (unsigned long long)conf->cache.size,
		 (unsigned long long)conf->cache.positive_ttl_ms,
		 (unsigned long long)conf->cache.negative_ttl_ms,
		 (unsigned long long)conf->cache.stale_ttl_ms, conf->cache.refresh_ahead_pct);
}

struct cache *requests_cache(void)
{
	return cache;
}

const char *request_id(const struct request *req)
{
	return req->id;
}

static double elapsed_ms(uint64_t started_us)
{
	return (double)(mtime_us() - started_us) / 1000.0;
}

static unsigned bucket_of(const uint8_t *key, const uint8_t *verifier)
{
	/* Both are keyed hashes: their bytes are already unpredictable. */
	return ((unsigned)(key[0] ^ verifier[0]) | (unsigned)(key[1] ^ verifier[1]) << 8) %
	       FLIGHT_BUCKETS;
}

/* The flight for (key, verifier) in progress, if any.  Requests join only
 * flights of the same "secured" state (an authenticator may require it). */
static struct flight *flight_find(const uint8_t *key, const uint8_t *verifier, bool secured)
{
	struct flight *f;

	LIST_FOREACH(f, &flights[bucket_of(key, verifier)], hash_entry)
		if (f->secured == secured && sodium_memcmp(f->key, key, CACHE_KEY_LEN) == 0 &&
		    sodium_memcmp(f->verifier, verifier, CACHE_VERIFIER_LEN) == 0)
			return f;
	return NULL;
}

static void request_free(struct request *req)
{
	if (req->password != NULL) {
		sodium_memzero(req->password, req->passlen);
		free(req->password);
	}
	free(req);
}

static void flight_free(struct flight *f)
{
	if (f->l2op != NULL)
		l2_cancel(f->l2op);
	if (f->job != NULL)
		authenticator_abandon(f->job);	/* its result only fills the cache */
	if (f->hashed)
		LIST_REMOVE(f, hash_entry);
	if (f->timer != NULL)
		event_free(f->timer);
	if (f->password != NULL) {
		sodium_memzero(f->password, f->passlen);
		free(f->password);
	}
	sodium_memzero(f, sizeof(*f));
	free(f);
}

/* Answers every waiter of f through its callback: AUTH_RESULT_OK (with
 * udb, authname), AUTH_RESULT_FAIL or AUTH_RESULT_TEMPFAIL (with reason). */
static void answer_waiters(struct flight *f, enum auth_result result, enum tempfail_reason reason,
			   const struct userdb *udb, const char *authname)
{
	char user[LOG_TOKEN_SIZE(AUTH_MAX_USER)], rip[LOG_TOKEN_SIZE(AUTHD_MAX_ADDR)];
	struct request_answer ans;
	struct request *req;

	while ((req = TAILQ_FIRST(&f->waiters)) != NULL) {
		TAILQ_REMOVE(&f->waiters, req, flight_entry);
		/* The name and address as the client sent them, escaped: one
		 * field each, so the fixed formats below (authd(8)) hold. */
		log_token(req->user, user, sizeof(user));
		log_token(req->rip, rip, sizeof(rip));
		if (req->flight != NULL)
			in_flight--;
		req->flight = NULL;
		memset(&ans, 0, sizeof(ans));
		ans.result = result == AUTH_RESULT_NOUSER ? AUTH_RESULT_FAIL : result;
		ans.user = req->user;
		switch (result) {
		case AUTH_RESULT_OK:
			authd_stats.answered_ok++;
			log_info("auth ok: user=%s service=%s rip=%s authenticator=%s time=%.1fms",
				 user, req->service, rip, authname,
				 elapsed_ms(req->started_us));
			ans.udb = udb;
			ans.authname = authname;
			break;
		case AUTH_RESULT_TEMPFAIL:
			authd_stats.answered_tempfail++;
			/* one line per burst and a count per interval (ratelog.c) */
			if (ratelog_allow("auth tempfail", authname, reason_names[reason]))
				log_warnx("auth tempfail: user=%s service=%s rip=%s "
					  "authenticator=%s reason=%s time=%.1fms", user,
					  req->service, rip, authname, reason_names[reason],
					  elapsed_ms(req->started_us));
			ans.reason = reason;
			break;
		default:
			authd_stats.answered_fail++;
			/* Fixed format for fail2ban: see authd(8).  The first
			 * of a burst per address; then a summary a minute. */
			if (ratelog_fail_allow(rip, user, req->service))
				log_info("auth failed: user=%s service=%s rip=%s authenticator=%s "
					 "time=%.1fms", user, req->service, rip, authname,
					 elapsed_ms(req->started_us));
			break;
		}
		req->cb(req->cbctx, req, &ans);
		request_free(req);
	}
}

/* Answers every waiter and ends the flight. */
static void flight_answer(struct flight *f, enum auth_result result, enum tempfail_reason reason,
			  const struct userdb *udb, const char *authname)
{
	answer_waiters(f, result, reason, udb, authname);
	flight_free(f);
}

/* Converts a cached entry back into userdb fields. */
static void udb_from_entry(const struct cache_entry *e, struct userdb *udb)
{
	memset(udb, 0, sizeof(*udb));
	udb->has_uid = e->uid != UID_ABSENT;
	udb->has_gid = e->gid != UID_ABSENT;
	udb->uid = udb->has_uid ? e->uid : 0;
	udb->gid = udb->has_gid ? e->gid : 0;
	snprintf(udb->home, sizeof(udb->home), "%s", e->home);
	snprintf(udb->maildrop, sizeof(udb->maildrop), "%s", e->maildrop);
}

/* The backend could not answer: serve a matching positive entry that is
 * past fresh but within stale-ttl, else TEMPFAIL. */
static bool requires_secured(const char *name);

static void flight_tempfail(struct flight *f, struct authenticator *a, enum tempfail_reason reason)
{
	struct cache_entry e;
	struct userdb udb;

	a->stats.tempfail++;
	if (reason == TEMPFAIL_TIMEOUT)
		a->stats.timeout++;
	else if (reason == TEMPFAIL_OVERLOADED)
		a->stats.overloaded++;
	else if (reason == TEMPFAIL_BUSY)
		a->stats.busy++;
	else
		a->stats.unavailable++;
	/* A stale positive entry with this password: the one the L2 GET
	 * found, else L1's. */
	const struct cache_entry *stale = NULL;
	if (f->cacheable && !TAILQ_EMPTY(&f->waiters)) {
		if (f->l2res.status == L2_STALE &&
		    (f->secured || !requires_secured(f->l2res.entry.authenticator))) {
			stale = &f->l2res.entry;
			authd_stats.l2_stale_answers++;
		} else if (cache_lookup_stale(cache, f->key, f->verifier, (int64_t)mtime_ms(),
					      &e)) {
			stale = &e;
		}
	}
	if (stale != NULL) {
		char user[LOG_TOKEN_SIZE(AUTH_MAX_USER)];

		authd_stats.stale_answers++;
		log_warnx("authenticator %s: %s for user %s; answering from a %scache entry "
			  "(stale-if-error)", a->conf->name, reason_names[reason],
			  log_token(f->user, user, sizeof(user)), stale == &e ? "" : "shared ");
		udb_from_entry(stale, &udb);
		flight_answer(f, AUTH_RESULT_OK, 0, &udb, stale->authenticator);
		return;
	}
	flight_answer(f, AUTH_RESULT_TEMPFAIL, reason, NULL, a->conf->name);
}

static void flight_dispatch(struct flight *f);

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct flight *f = arg;

	if (f->l2op != NULL) {
		/* L2 did not answer in time: go on without it. */
		l2_cancel(f->l2op);
		f->l2op = NULL;
		authd_stats.l2_deadline++;
		flight_dispatch(f);
		return;
	}
	flight_tempfail(f, &f->gen->auths[f->stage], TEMPFAIL_TIMEOUT);
}

/* True if the authenticator called name (in the current chain) accepts
 * only secured (TLS) connections. */
static bool requires_secured(const char *name)
{
	for (size_t i = 0; i < cur->nauths; i++)
		if (strcmp(cur->auths[i].conf->name, name) == 0)
			return cur->auths[i].conf->require_secured;
	return false;
}

/* Queues the flight on its chain's authenticator number f->stage. */
static void flight_dispatch(struct flight *f)
{
	struct authenticator *a = &f->gen->auths[f->stage];
	enum tempfail_reason reason;
	struct job *job;
	struct timeval tv;

	a->stats.requests++;
	if (a->conf->require_secured && !f->secured) {
		/* Not even asked: a password sent in clear text is refused
		 * here whether it is right or not. */
		char user[LOG_TOKEN_SIZE(AUTH_MAX_USER)];

		log_info("authenticator %s: user %s: refused, the connection is not secured "
			 "(require-secured = yes)", a->conf->name,
			 log_token(f->user, user, sizeof(user)));
		a->stats.fail++;
		flight_answer(f, AUTH_RESULT_FAIL, 0, NULL, a->conf->name);
		return;
	}
	job = xcalloc(1, sizeof(*job));
	job->flight = f;
	job->cacheable = f->cacheable;
	job->flush_epoch = cache != NULL ? cache_epoch(cache) : 0;
	memcpy(job->key, f->key, sizeof(job->key));
	memcpy(job->verifier, f->verifier, sizeof(job->verifier));
	memcpy(job->user, f->user, sizeof(job->user));
	log_token(job->user, job->user_log, sizeof(job->user_log));
	job->password = xmalloc(f->passlen + 1);
	memcpy(job->password, f->password, f->passlen + 1);
	job->passlen = f->passlen;
	memcpy(job->service, f->service, sizeof(job->service));
	memcpy(job->rip, f->rip, sizeof(job->rip));
	memcpy(job->lip, f->lip, sizeof(job->lip));
	job->secured = f->secured;
	job->full_chain = f->full_chain;
	job->l2_from = f->l2res;
	if (authenticator_submit(a, job, &reason) == -1) {
		job_free(job);
		flight_tempfail(f, a, reason);
		return;
	}
	f->job = job;
	MTIME_TV(tv, a->conf->timeout_ms);
	event_add(f->timer, &tv);
}

/* Stores a definite result in the cache (never TEMPFAIL). */
static void cache_fill(struct job *job)
{
	struct authenticator *a = job->auth;
	struct cache_user cu;
	enum cache_insert_result r = CACHE_INSERT_BUSY;	/* nothing stored yet */
	int64_t now = (int64_t)mtime_ms();
	uint32_t pos = (uint32_t)conf->cache.positive_ttl_ms;
	uint32_t neg = (uint32_t)conf->cache.negative_ttl_ms;
	uint32_t stale = (uint32_t)conf->cache.stale_ttl_ms;

	if (!job->cacheable || !a->conf->cache)
		return;
	switch (job->result) {
	case AUTH_RESULT_OK:
		cu.uid = job->udb.has_uid ? job->udb.uid : UID_ABSENT;
		cu.gid = job->udb.has_gid ? job->udb.gid : UID_ABSENT;
		cu.home = job->udb.home;
		cu.maildrop = job->udb.maildrop;
		cu.authenticator = a->conf->name;
		r = cache_insert_if_epoch(cache, job->key, job->verifier, CACHE_OK, &cu, now, pos,
					  stale, job->flush_epoch);
		/* Shared only if no flush came since it was asked: the
		 * generation in the entry covers the other hosts' flushes. */
		if (r == CACHE_INSERTED || r == CACHE_INSERT_BUSY)
			l2_put(job->key, job->verifier, &job->l2_from, &cu, pos, stale);
		break;
	case AUTH_RESULT_FAIL:
		r = cache_insert_if_epoch(cache, job->key, job->verifier, CACHE_FAIL, NULL, now,
					  neg, 0, job->flush_epoch);
		break;
	case AUTH_RESULT_NOUSER:
		/* Unknown to the whole chain only when the last one says so,
		 * all having been asked: then to every service's too. */
		if (job->full_chain && a->chain_pos + 1 == a->gen->nauths &&
		    chain_cacheable(a->gen))
			r = cache_insert_if_epoch(cache, job->key, NULL, CACHE_NOUSER, NULL,
						  now, neg, 0, job->flush_epoch);
		break;
	case AUTH_RESULT_TEMPFAIL:
		break;	/* never cached */
	}
	if (r == CACHE_INSERT_TOO_LONG)
		log_debug("cache: userdb fields of %s too long for an entry; not cached", job->user);
	else if (r == CACHE_INSERT_FLUSHED)
		log_debug("cache: result for %s not cached: the cache was flushed since it "
			  "was asked", job->user);
}

void request_job_done(struct job *job)
{
	struct flight *f = job->flight;
	struct authenticator *a = job->auth;

	if (job->result == AUTH_RESULT_OK)
		userdb_apply_defaults(&job->udb, a->conf);
	if (cache != NULL)
		cache_fill(job);
	if (f == NULL) {
		if (job->result != AUTH_RESULT_TEMPFAIL)
			authd_stats.late_fills++;
		return;		/* timed out or cancelled: nobody waits */
	}
	f->job = NULL;
	event_del(f->timer);

	switch (job->result) {
	case AUTH_RESULT_OK:
		a->stats.ok++;
		flight_answer(f, AUTH_RESULT_OK, 0, &job->udb, a->conf->name);
		return;
	case AUTH_RESULT_FAIL:
		a->stats.fail++;
		break;
	case AUTH_RESULT_NOUSER:
		a->stats.nouser++;
		size_t next = next_stage(f->gen, f->service, f->stage + 1);
		if (next < f->gen->nauths) {
			f->stage = next;
			flight_dispatch(f);
			return;
		}
		break;
	case AUTH_RESULT_TEMPFAIL:
		flight_tempfail(f, a, job->reason);
		return;
	}
	flight_answer(f, AUTH_RESULT_FAIL, 0, NULL, a->conf->name);
}

/* The L2 GET of f answered (on the loop). */
static void on_l2(void *ctx, const struct l2_result *r)
{
	struct flight *f = ctx;
	const struct cache_entry *e = &r->entry;
	uint64_t pos = conf->cache.positive_ttl_ms;
	struct cache_user cu;
	struct userdb udb;

	f->l2op = NULL;
	event_del(f->timer);
	f->l2res = *r;
	if (r->status != L2_HIT || (!f->secured && requires_secured(e->authenticator)) ||
	    /* a revalidation wants an entry newer than the one it renews */
	    (f->refresh && r->fresh_ms * 100 <= pos * conf->cache.refresh_ahead_pct)) {
		flight_dispatch(f);
		return;
	}
	uint64_t fresh = r->fresh_ms < pos ? r->fresh_ms : pos;
	uint64_t stale = r->stale_ms - r->fresh_ms;
	if (stale > conf->cache.stale_ttl_ms)
		stale = conf->cache.stale_ttl_ms;
	cu.uid = e->uid;
	cu.gid = e->gid;
	cu.home = e->home;
	cu.maildrop = e->maildrop;
	cu.authenticator = e->authenticator;
	(void)cache_insert_if_epoch(cache, f->key, f->verifier, CACHE_OK, &cu, (int64_t)mtime_ms(),
				    (uint32_t)fresh, (uint32_t)stale, f->l1_epoch);
	if (r->rewrite)		/* read under the previous cluster key */
		l2_put(f->key, f->verifier, r, &cu, fresh, stale);
	authd_stats.l2_answers++;
	udb_from_entry(e, &udb);
	flight_answer(f, AUTH_RESULT_OK, 0, &udb, e->authenticator);
}

/* Starts f: through L2 if there is one, else at its first authenticator.
 * chain: its service's, as chain_of() wrote it. */
static void flight_start(struct flight *f, const char *chain)
{
	struct timeval tv;

	if (f->cacheable && l2_enabled()) {
		f->l1_epoch = cache_epoch(cache);
		f->l2op = l2_get(f->key, f->verifier, CACHE_SCOPE, f->user, f->password, chain,
				 on_l2, f);
		if (f->l2op != NULL) {
			/* A GET is up to two round trips (one per cluster key)
			 * of up to three timeouts each (connect, write, read)
			 * plus the queue: past this, the backend it is. */
			uint64_t ms = 6 * conf->cache.memcached_timeout_ms + 20;
			MTIME_TV(tv, ms);
			event_add(f->timer, &tv);
			return;
		}
	}
	flight_dispatch(f);
}

/* A flight for req through service's chain in cur (it has an
 * authenticator; full: it is every one, chain_of()'s *full_r). */
static struct flight *flight_new(const struct request *req, bool full, bool cacheable,
				 const uint8_t *key, const uint8_t *verifier)
{
	struct flight *f = xcalloc(1, sizeof(*f));

	TAILQ_INIT(&f->waiters);
	f->gen = cur;
	f->stage = next_stage(cur, req->service, 0);
	f->full_chain = full;
	f->cacheable = cacheable;
	if (cacheable) {
		memcpy(f->key, key, CACHE_KEY_LEN);
		memcpy(f->verifier, verifier, CACHE_VERIFIER_LEN);
		LIST_INSERT_HEAD(&flights[bucket_of(key, verifier)], f, hash_entry);
		f->hashed = true;
	}
	memcpy(f->user, req->user, sizeof(f->user));
	f->password = xmalloc(req->passlen + 1);
	memcpy(f->password, req->password, req->passlen + 1);
	f->passlen = req->passlen;
	memcpy(f->service, req->service, sizeof(f->service));
	memcpy(f->rip, req->rip, sizeof(f->rip));
	memcpy(f->lip, req->lip, sizeof(f->lip));
	f->secured = req->secured;
	f->timer = evtimer_new(loop_base, on_timeout, f);
	if (f->timer == NULL)
		fatalx("out of memory (timer)");
	return f;
}

struct request *request_new(const struct request_params *p, request_cb *cb, void *cbctx)
{
	struct request *req = xcalloc(1, sizeof(*req));

	authd_stats.requests++;
	req->cb = cb;
	req->cbctx = cbctx;
	req->started_us = mtime_us();
	snprintf(req->id, sizeof(req->id), "%s", p->id);
	snprintf(req->service, sizeof(req->service), "%s", p->service);
	snprintf(req->rip, sizeof(req->rip), "%s", p->rip != NULL ? p->rip : "");
	snprintf(req->lip, sizeof(req->lip), "%s", p->lip != NULL ? p->lip : "");
	req->secured = p->secured;
	req->password = p->password;
	req->passlen = p->passlen;
	req->invalid = user_normalize(conf, p->user, req->user, sizeof(req->user)) == -1 ||
		       req->passlen == 0;
	return req;
}

/* No such name can exist, or an empty password: rejected without asking
 * any backend, logged like any other failure. */
static void answer_invalid(struct request *req)
{
	char rip[LOG_TOKEN_SIZE(AUTHD_MAX_ADDR)];
	struct request_answer ans = { .result = AUTH_RESULT_FAIL, .user = "" };

	authd_stats.invalid++;
	log_token(req->rip, rip, sizeof(rip));
	if (ratelog_fail_allow(rip, "(invalid)", req->service))
		log_info("auth failed: user=(invalid) service=%s rip=%s authenticator=none "
			 "time=0.0ms", req->service, rip);
	req->cb(req->cbctx, req, &ans);
	request_free(req);
}

/* Answers req alone, through a one-waiter flight on the stack: the
 * answer path (log lines, counters, callback) is the flights'. */
static void answer_alone(struct request *req, enum auth_result result, const struct userdb *udb,
			 const char *authname)
{
	struct flight tmp;

	memset(&tmp, 0, sizeof(tmp));
	TAILQ_INIT(&tmp.waiters);
	TAILQ_INSERT_TAIL(&tmp.waiters, req, flight_entry);
	answer_waiters(&tmp, result, 0, udb, authname);
}

/* No authenticator serves req's service: FAIL without asking anyone. */
static void answer_no_chain(struct request *req)
{
	char service[LOG_TOKEN_SIZE(32)];

	authd_stats.no_chain++;
	log_debug("service %s: no authenticator has it in its services; refused",
		  log_token(req->service, service, sizeof(service)));
	answer_alone(req, AUTH_RESULT_FAIL, NULL, "none");
}

/* Answers req from a fresh cache entry. */
static void answer_from_cache(struct request *req, const struct cache_entry *e)
{
	struct userdb udb;

	authd_stats.cache_answers++;
	if (e->kind == CACHE_OK) {
		udb_from_entry(e, &udb);
		answer_alone(req, AUTH_RESULT_OK, &udb, e->authenticator);
	} else {
		answer_alone(req, AUTH_RESULT_FAIL, NULL, "cache");
	}
}

void request_run(struct request *req)
{
	uint8_t key[CACHE_KEY_LEN], verifier[CACHE_VERIFIER_LEN];
	char chain[CHAIN_TAG_SIZE];
	struct cache_entry e;
	struct flight *f = NULL;
	enum cache_result cr;
	bool full;

	if (req->invalid) {
		answer_invalid(req);
		return;
	}
	if (!chain_of(cur, req->service, chain, &full)) {
		answer_no_chain(req);
		return;
	}
	if (cache != NULL) {
		cache_key(cache, CACHE_SCOPE, req->user, key);
		cache_verifier(cache, key, req->password, chain, verifier);
		cr = cache_lookup(cache, key, verifier, (int64_t)mtime_ms(), &e);
		if (cr != CACHE_MISS && e.kind == CACHE_OK && !req->secured &&
		    requires_secured(e.authenticator))
			cr = CACHE_MISS;	/* let that authenticator refuse it */
		if (cr == CACHE_HIT_REFRESH && flight_find(key, verifier, req->secured) == NULL) {
			/* Hot user near the end of its fresh time: answer now,
			 * revalidate behind its back so it never sees a miss. */
			struct flight *rf = flight_new(req, full, true, key, verifier);
			rf->refresh = true;
			authd_stats.refreshes++;
			flight_start(rf, chain);
		}
		if (cr != CACHE_MISS) {
			answer_from_cache(req, &e);
			sodium_memzero(verifier, sizeof(verifier));
			return;
		}
		f = flight_find(key, verifier, req->secured);
		if (f != NULL)
			authd_stats.coalesced++;
	}
	in_flight++;
	if (f == NULL) {
		f = flight_new(req, full, cache != NULL, key, verifier);
		TAILQ_INSERT_TAIL(&f->waiters, req, flight_entry);
		req->flight = f;
		sodium_memzero(req->password, req->passlen);
		flight_start(f, chain);	/* may answer req before it returns */
	} else {
		TAILQ_INSERT_TAIL(&f->waiters, req, flight_entry);
		req->flight = f;
		sodium_memzero(req->password, req->passlen);
	}
	sodium_memzero(verifier, sizeof(verifier));
}

void request_cancel(struct request *req)
{
	struct flight *f = req->flight;

	if (f != NULL) {
		in_flight--;
		TAILQ_REMOVE(&f->waiters, req, flight_entry);
		if (TAILQ_EMPTY(&f->waiters) && !f->refresh)
			flight_free(f);
	}
	request_free(req);
}

uint64_t requests_cache_flush(const char *user, l2_flush_cb *cb, void *ctx, bool *l2_r)
{
	uint8_t key[CACHE_KEY_LEN];
	uint64_t n;

	if (l2_r != NULL)
		*l2_r = false;
	if (cache == NULL)
		return 0;
	/* Both count the flush epoch up: see cache_fill(). */
	if (user == NULL) {
		n = cache_flush_all(cache);
		if (l2_flush(NULL, NULL, NULL, cb, ctx) == 0 && l2_r != NULL)
			*l2_r = true;
		return n;
	}
	cache_key(cache, CACHE_SCOPE, user, key);
	n = cache_flush_key(cache, key);
	if (l2_flush(key, CACHE_SCOPE, user, cb, ctx) == 0 && l2_r != NULL)
		*l2_r = true;
	return n;
}

uint64_t requests_cache_kick(const char *user, bool flush, l2_flush_cb *cb, void *ctx,
			     bool *l2_r)
{
	uint8_t key[CACHE_KEY_LEN];
	uint64_t n = 0;

	*l2_r = false;
	if (cache == NULL)
		return 0;	/* no cache, no L2 */
	cache_key(cache, CACHE_SCOPE, user, key);
	if (flush)
		n = cache_flush_key(cache, key);
	if (l2_kick(user, flush ? key : NULL, CACHE_SCOPE, cb, ctx) == 0)
		*l2_r = true;
	return n;
}

void requests_shutdown(void)
{
	for (size_t i = 0; i < FLIGHT_BUCKETS; i++)
		while (!LIST_EMPTY(&flights[i]))
			flight_free(LIST_FIRST(&flights[i]));
}

void requests_cache_free(void)
{
	cache_free(&cache);
}
