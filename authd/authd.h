/*
 * authd.h - private header of the authentication daemon.
 *
 * Threads (every pthread_create in authd; all started once, for the life
 * of their generation or of the process):
 *   - the event-loop thread (main.c, client.c, request.c, redeem.c,
 *     ticket.c, stats.c) owns every client, request and ticket.  It never
 *     blocks: no hashing, no backend call, no disk I/O.
 *   - each authenticator (authenticator.c) owns a queue and `workers`
 *     threads started with its generation.  Workers only touch their
 *     queue (under its mutex), the job they took, and the completion
 *     list; results go back to the loop through an eventfd.
 *   - each passwd-file authenticator has one watcher thread
 *     (passdb_passwd_file.c, watcher_main) that checks the file once a
 *     second, swaps a changed one in under the backend's lock and flushes
 *     the cache (requests_cache_flush).  It is why a flush can come from
 *     outside the loop, while a worker's answer is on its way into the
 *     cache: cache_insert_if_epoch() (cache/cache.c's DESIGN, Flush
 *     epoch) keeps such an answer out.
 *   - with [cache] memcached, l2.c's `memcached-workers` threads (L2
 *     GETs and PUTs, each with its own memcached handle) and its control
 *     thread (cluster flushes, the flush-log poll, which flushes L1 from
 *     outside the loop like the watcher); answers go back to the loop
 *     through their own eventfd.  l2.c's DESIGN block has the rest.
 * Processes: the root configuration reader (confreader.c, forked before
 * the privilege drop), helper programs (spawn.c) and the PAM helper.
 * See docs/architecture.md for the picture.
 */
#ifndef AUTHD_H
#define AUTHD_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <event2/listener.h>

#include "common/config.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/metrics.h"
#include "cache/cache.h"

struct event_base;
struct request;
struct flight;
struct cache;

enum auth_result {
	AUTH_RESULT_OK,
	AUTH_RESULT_FAIL,	/* wrong password: ends the chain */
	AUTH_RESULT_NOUSER,	/* unknown here: try the next authenticator */
	AUTH_RESULT_TEMPFAIL,	/* no answer now */
};

enum tempfail_reason {
	TEMPFAIL_TIMEOUT,
	TEMPFAIL_OVERLOADED,
	TEMPFAIL_BUSY,		/* shed at admission: would wait past queue-wait-limit */
	TEMPFAIL_UNAVAILABLE,
	TEMPFAIL_INTERNAL,
};

#define USERDB_MAX_FIELD 512
/* The longest rip or lip a client may send: an IPv6 address with a zone
 * fits; anything longer is a malformed request. */
#define AUTHD_MAX_ADDR 63

/* The userdb fields a successful check may return.  Fixed-size so that a
 * job carries them between threads without allocation. */
struct userdb {
	bool has_uid, has_gid;
	uint32_t uid, gid;
	char home[USERDB_MAX_FIELD];
	char maildrop[USERDB_MAX_FIELD];
};

enum l2_status {
	L2_MISS,	/* nothing usable: ask the backend */
	L2_HIT,		/* a fresh entry for this password */
	L2_STALE,	/* past fresh, within stale: only if the backend fails */
};
/* What a GET found.  The writable/generation/epoch part is what a later
 * l2_put() of the backend's answer must carry (so that a flush between the
 * GET and the put makes the put's entry not count). */
struct l2_result {
	enum l2_status status;
	struct cache_entry entry;	/* HIT/STALE: kind CACHE_OK, userdb fields */
	uint64_t fresh_ms, stale_ms;	/* HIT/STALE: left, from when it was read */
	bool rewrite;			/* found under the previous cluster key */
	bool writable;			/* the server answered and has an epoch */
	uint64_t generation, epoch;
};
/*
 * One unit of work for one authenticator.  Created by the loop, pushed on
 * the authenticator's queue, taken by a worker, returned through the
 * completion list, freed by the loop.  Input fields are immutable once
 * queued; output fields are written by the worker only; `req` and the
 * TAILQ link are the loop's (the link is under the queue mutex while
 * queued).  `abandoned` is under the queue mutex.
 */
struct job {
	TAILQ_ENTRY(job) entry;
	struct authenticator *auth;
	struct fairq_source *fq_source;	/* under auth->lock: fairq.c's */
	struct flight *flight;		/* loop only; NULL once nobody waits */
	bool abandoned;			/* under auth->lock: skip if not started */
	/* the cache entry its result fills, even when it comes late */
	bool cacheable;
	uint64_t flush_epoch;		/* cache_epoch() when it was made */
	uint8_t key[32], verifier[32];
	struct l2_result l2_from;	/* the flight's L2 GET, for l2_put() */
	bool full_chain;		/* its service's chain is the whole chain */
	/* Not a request: a worker's worker_init() ended (authenticator.c
	 * counts it as a job of the generation, so that retiring the
	 * generation does not join a worker still connecting). */
	bool init_marker;

	/* input */
	char user[AUTH_MAX_USER + 1];
	char user_log[LOG_TOKEN_SIZE(AUTH_MAX_USER)];	/* user as a log token */
	char *password;			/* NUL-terminated, wiped and freed with the job */
	size_t passlen;
	char service[33];
	char rip[AUTHD_MAX_ADDR + 1], lip[AUTHD_MAX_ADDR + 1];
	bool secured;
	uint64_t enqueued_us;
	uint64_t deadline_ms;

	/* output */
	enum auth_result result;
	enum tempfail_reason reason;
	struct userdb udb;
	uint64_t started_us, finished_us;
};
TAILQ_HEAD(job_list, job);

struct worker {
	pthread_t thread;
	struct authenticator *auth;
	unsigned index;
	uint64_t busy_deadline_ms;	/* under auth->lock; 0 = idle */
	void *state;			/* the backend's per-worker state */
};

/* A backend.  init/deinit run on the main thread before workers start and
 * after they stop; worker_init/verify/worker_deinit run on each worker.
 * check (optional) makes the checks init makes that config.c cannot (the
 * backend's library, files on the running system) without starting
 * anything: `authd -t` runs it, and init fails for the same reasons with
 * the same messages, since both go through the same code. */
struct passdb_ops {
	const char *type;
	int (*check)(const struct auth_conf *ac, char *error, size_t size);
	int (*init)(struct authenticator *auth, char *error, size_t size);
	void *(*worker_init)(struct authenticator *auth, unsigned index);
	void (*verify)(struct authenticator *auth, void *state, struct job *job);
	void (*worker_deinit)(struct authenticator *auth, void *state);
	void (*deinit)(struct authenticator *auth);
};

/* Why authenticator_submit() refused or pushed out a request (all are
 * TEMPFAIL reason=overloaded on the wire, but OVERLOAD_WAIT_LIMIT for a
 * source that is not suspect, which is reason=busy). */
enum overload_reason {
	OVERLOAD_QUEUE_FULL,	/* queue-limit reached, no longer source to push out */
	OVERLOAD_SOURCE_LIMIT,	/* the source has per-source-limit requests */
	OVERLOAD_STUCK,		/* every worker is past its deadline */
	OVERLOAD_PUSHED_OUT,	/* queued, then dropped for a shorter source's request */
	OVERLOAD_WAIT_LIMIT,	/* would wait for a worker past queue-wait-limit */
	OVERLOAD_COUNT
};

/* Counters of one authenticator, loop thread only.  Carried over to the
 * authenticator of the same name when the configuration is reloaded. */
struct auth_stats {
	uint64_t requests, ok, fail, nouser, tempfail, timeout, overloaded, busy, unavailable;
	uint64_t overload[OVERLOAD_COUNT];	/* authenticator_submit(), by reason */
	struct metrics_hist queue_wait;	/* queued -> taken by a worker */
	struct metrics_hist service;	/* taken -> backend answered */
};

/* One configuration and the authenticators started from it.  Reloading
 * starts a new generation for new requests; the old one stops once its
 * last job has come back. */
struct generation {
	struct config *conf;		/* owned */
	struct authenticator *auths;
	size_t nauths;
	unsigned jobs;			/* submitted, not yet completed */
	bool retired;
};

struct authenticator {
	struct generation *gen;
	const struct auth_conf *conf;
	size_t chain_pos;
	const struct passdb_ops *ops;
	void *backend;			/* the backend's shared state */

	pthread_mutex_t lock;		/* protects everything below */
	pthread_cond_t cond;
	struct fairq *queue;		/* waiting jobs, fair between sources */
	unsigned busy;
	bool stopping;
	struct worker *workers;
	unsigned nworkers;
	struct auth_stats stats;	/* loop thread only, not under lock */
	/* Admission: mean time a worker holds a job (EWMA, microseconds;
	 * 0 until the first one).  Loop thread only. */
	uint64_t service_ewma_us;
};

/* authenticator.c */
/* authd -t: each authenticator's check (passdb_ops).  Returns 0, or -1
 * with "authenticator NAME: why" in error, as generation_start() would. */
int authenticators_check(const struct config *conf, char *error, size_t size);
/* Sets up the completion wake-up on base; once, before any start. */
void authenticators_init(struct event_base *base);
/* Starts a generation: the authenticators of conf's chain and their
 * workers (taking over conf).  Returns NULL with a message in error if a
 * backend cannot start (e.g. an unreadable passwd-file). */
struct generation *generation_start(struct config *conf, char *error, size_t size);
/* True if another generation may be retired now (at most 16 wait for
 * their last jobs; past that a reload is refused, not forced). */
bool generation_can_retire(void);
/* Marks gen as replaced; it stops (and is freed) when its last job has
 * come back, maybe at once.  Call only if generation_can_retire(). */
void generation_retire(struct generation *gen);
/* Stops everything at shutdown: kills helper processes, joins workers,
 * frees the generations (the current one and any retiring). */
void authenticators_shutdown(struct generation *current);
/* Queues job on its authenticator, in the turn of its source (job->rip;
 * fairq.c).  Returns 0, or -1 with *reason_r set when the job is not
 * queued (it stays the caller's): TEMPFAIL_OVERLOADED when the source has
 * per-source-limit requests, the queue is full, or every worker is stuck;
 * TEMPFAIL_BUSY when the job would wait past queue-wait-limit (a suspect
 * source gets TEMPFAIL_OVERLOADED for that too: see fairq.c).
 * Queuing it may push out another source's newest waiting job, which then
 * comes back through request_job_done() as TEMPFAIL overloaded. */
int authenticator_submit(struct authenticator *auth, struct job *job,
			 enum tempfail_reason *reason_r);
/* Requests waiting in auth's queue, and sources with requests waiting or
 * in a worker (for the stats; takes the lock). */
void authenticator_queue_depth(struct authenticator *auth, unsigned *waiting_r,
			       unsigned *sources_r, uint64_t *table_full_r);
const char *overload_reason_name(enum overload_reason r);
/* Marks a job the loop no longer waits for; a worker skips it if it has
 * not started it yet. */
void authenticator_abandon(struct job *job);
/* Workers past their deadline right now. */
unsigned authenticator_stuck(struct authenticator *auth, uint64_t now_ms);
void job_free(struct job *job);

/* fairq.c: an authenticator's queue, fair between client sources (its
 * DESIGN).  Every function but fairq_key() is called under the owning
 * authenticator's lock. */
struct fairq;
struct fairq_source;
/* A source: address family tag + IPv4 address, IPv6 /64, or a hash. */
struct fairq_key {
	uint8_t b[17];
};
/* The source a request from rip ("" or NULL: no address) belongs to. */
void fairq_key(const char *rip, struct fairq_key *key_r);
/* A queue of at most capacity waiting jobs, limit per source (waiting and
 * running), for an authenticator with `workers` workers. */
struct fairq *fairq_new(unsigned capacity, unsigned limit, unsigned workers);
/* Frees q (jobs still in it are not freed: pop them first). */
void fairq_free(struct fairq **qp);
enum fairq_push { FAIRQ_QUEUED, FAIRQ_SOURCE_LIMIT, FAIRQ_FULL };
/* Queues job for source key.  FAIRQ_QUEUED: queued, and *evicted_r is
 * NULL or a job of the longest source that was pushed out to make room
 * (now the caller's).  Otherwise the job was not queued. */
enum fairq_push fairq_push(struct fairq *q, struct job *job, const struct fairq_key *key,
			   struct job **evicted_r);
/* The jobs that would be taken before a new one of source key, by the
 * turns (one per source with jobs waiting in its ring, per round), and
 * whether that source is suspect.  Nothing is changed. */
unsigned fairq_ahead(const struct fairq *q, const struct fairq_key *key, bool *suspect_r);
/* The next job in turn, or NULL if none waits.  Its source counts it as
 * running until fairq_done(). */
struct job *fairq_pop(struct fairq *q);
/* A popped job is finished (or skipped): its source no longer counts it. */
void fairq_done(struct fairq *q, struct job *job);
unsigned fairq_waiting(const struct fairq *q);
/* Sources with a job waiting or running. */
unsigned fairq_sources(const struct fairq *q);
/* Requests put in the shared overflow source because the source table
 * was full (see DESIGN). */
uint64_t fairq_table_full(const struct fairq *q);

/* ratelog.c: warnings about overload, rate-limited and summarised */
/* How often a summary is written. */
#define RATELOG_INTERVAL_MS 10000
/* Starts the summary timer on base (once, at start-up). */
void ratelog_init(struct event_base *base);
void ratelog_shutdown(void);
/* One event of kind (what, name, reason): `what` a static string such as
 * "auth tempfail", name and reason copied.  Returns true if the caller
 * should log this one in full (the first of a burst); false if it was
 * only counted: a line "WHAT: authenticator=NAME reason=REASON: N more in
 * the last 10s" is written at the end of each interval that counted any,
 * and the next full line comes after an interval without one. */
bool ratelog_allow(const char *what, const char *name, const char *reason);
/* Events counted and not logged in full, since start (for the stats). */
uint64_t ratelog_suppressed(void);
/* `auth failed` lines, per client address: the first failure from rip
 * (escaped, as logged) is logged in full; further ones within a burst are
 * counted, and "auth failed: N more in the last 60s, last user=USER
 * service=SERVICE rip=RIP" is written every FAILLOG_INTERVAL_MS while
 * they go on; an interval without one ends the burst.  Returns true if
 * the caller should log this one in full.  user and service are copied
 * (escaped, as logged), for the summary. */
#define FAILLOG_INTERVAL_MS 60000
bool ratelog_fail_allow(const char *rip, const char *user, const char *service);
/* auth failed lines counted and not logged in full, since start. */
uint64_t ratelog_fail_suppressed(void);

/* request.c */
/* Creates the cache from conf's [cache]: before the first generation
 * starts, since workers may flush it. */
void requests_init(const struct config *conf, struct event_base *base);
/* New requests go to gen from now on. */
void requests_set_generation(struct generation *gen);
/* Requests waiting for an answer right now (for the process title). */
unsigned requests_in_flight(void);
/* Called by authenticator.c on the loop thread for each finished job. */
void request_job_done(struct job *job);

/* l2.c: the shared cache tier in memcached (its DESIGN block says how) */
struct l2_op;
struct cache_user;
struct l2_stats {
	uint64_t gets, hits, stale_found, misses;
	uint64_t miss_absent, miss_verifier, miss_generation, miss_expired, miss_no_epoch;
	uint64_t bad_version, bad_seal, bad_value;
	uint64_t err_timeout, err_connect, err_protocol, err_other;
	uint64_t breaker_skips, queue_full;
	uint64_t puts, put_errors;
	uint64_t flush_user_sent, flush_all_sent, cluster_flush_users, cluster_flush_all;
	uint64_t polls;
	uint64_t kicks_sent, kicks_received, kicks_stale;
	struct metrics_hist get_latency;	/* submitted -> answered, on the loop */
};
struct l2_server_info {
	char name[300];
	const char *state;		/* "up", "skipped" (breaker open), "probing" */
	uint64_t ok, errors, opens;
};
typedef void l2_get_cb(void *ctx, const struct l2_result *r);
/* servers_ok of nservers took the flush. */
typedef void l2_flush_cb(void *ctx, unsigned servers_ok, unsigned nservers);
/* As root before the privilege drop (and at -t): reads and checks the
 * cluster key file (regular, mode without group/other bits, 32 or 64
 * bytes) and keeps the derived keys.  Returns 0, or -1 with the reason. */
int l2_keys_load(const char *path, char *error, size_t size);
void l2_keys_free(void);
/* The L1 hashing keys derived from the current cluster key (64 bytes, for
 * cache_settings.hash_keys).  False if no key was loaded. */
bool l2_hash_keys(uint8_t out[64]);
/* Starts the L2 threads if conf has [cache] memcached (keys loaded). */
void l2_init(const struct config *conf, struct event_base *base, struct cache *l1);
bool l2_enabled(void);
/* Loop only.  Looks (key, verifier) up off the loop; cb(ctx, result) runs
 * on the loop later, unless l2_cancel(op) came first.  password and chain
 * (for the previous key's verifier: cache_verifier()'s) are only read
 * during the call.  Returns NULL
 * if L2 is off or its queue is full (a miss: ask the backend). */
struct l2_op *l2_get(const uint8_t key[CACHE_KEY_LEN], const uint8_t verifier[CACHE_VERIFIER_LEN],
		     const char *scope, const char *user, const char *password, const char *chain,
		     l2_get_cb *cb, void *ctx);
/* Loop only: the op's callback will not run (the op frees itself). */
void l2_cancel(struct l2_op *op);
/* Loop only: shares a backend's positive answer, fresh for fresh_ms and
 * usable if the backend fails for stale_ms more, under the generation and
 * epoch that `from` (the GET before the backend call) read.  Nothing is
 * written unless from->writable.  Fire and forget. */
void l2_put(const uint8_t key[CACHE_KEY_LEN], const uint8_t verifier[CACHE_VERIFIER_LEN],
	    const struct l2_result *from, const struct cache_user *u, uint64_t fresh_ms,
	    uint64_t stale_ms);
/* Any thread: flushes one user (key = its L1 key; scope and user for the
 * previous cluster key) or, with key NULL, everyone, cluster-wide.  cb
 * (may be NULL) runs on the loop when every server has been tried; ctx
 * is only handed back to it (not a pointer the caller may free: client.c
 * passes a serial number).
 * Returns -1 if L2 is off. */
int l2_flush(const uint8_t *key, const char *scope, const char *user, l2_flush_cb *cb,
	     void *ctx);
/* Any thread: ends user's sessions on every host (a sealed kick in the
 * flush log, see l2.c), and with key not NULL flushes the user as
 * l2_flush does, in the same record.  cb as l2_flush's.  Returns -1 if L2
 * is off or the name is too long for a kick. */
int l2_kick(const char *user, const uint8_t *key, const char *scope, l2_flush_cb *cb,
	    void *ctx);
/* Loop only: fn(user) runs on the loop for each kick another host issued. */
typedef void l2_kick_fn(const char *user);
void l2_set_kick_handler(l2_kick_fn *fn);
void l2_stats_get(struct l2_stats *st);
/* The servers and their breaker states; returns how many were written. */
size_t l2_servers(struct l2_server_info *out, size_t max);
/* Stops the threads (each call is bounded by memcached-timeout). */
void l2_shutdown(void);

/* client.c */
void clients_init(struct event_base *base, const struct config *conf, int listen_fd);
/* A listener on listen_fd calling cb for each connection (its ctx: what),
 * whose accept errors are logged as "WHAT: accept"; fatal when libevent
 * cannot make one.  Loop thread, at start. */
struct evconnlistener *authd_listen(struct event_base *base, int listen_fd,
				    evconnlistener_cb cb, const char *what);
void clients_set_conf(const struct config *conf);
unsigned clients_count(void);
void clients_shutdown(void);

/* dovecot.c: the Dovecot authentication protocol on [authd]
 * dovecot-socket (docs/auth-protocol.md) */
/* Serves listen_fd ([authd] max-clients connections at most). */
void dovecot_init(struct event_base *base, const struct config *conf, int listen_fd);
void dovecot_set_conf(const struct config *conf);
void dovecot_shutdown(void);

/* saslauthd.c: Cyrus saslauthd's protocol on [authd] saslauthd-socket */
void saslauthd_init(struct event_base *base, const struct config *conf, int listen_fd);
void saslauthd_set_conf(const struct config *conf);
void saslauthd_shutdown(void);

/* saslproto.c: the decoders of both (pure functions over hostile bytes;
 * the fuzzers call them directly) */
struct dovecot_msg {
	char *cmd;			/* first field, unescaped */
	char *args[DOVECOT_MAX_FIELDS];	/* the fields after it, unescaped */
	size_t nargs;
};
/* Splits line (len bytes without its LF, NUL-terminated, modified in
 * place; pointers point into it) at TABs and unescapes each field (the
 * protocol's \001 escapes).  Returns 0, or -1 with *error_r (static) for
 * a NUL byte (raw or escaped), a raw CR or LF, more than
 * DOVECOT_MAX_FIELDS fields after the command, or an empty command. */
int dovecot_parse(char *line, size_t len, struct dovecot_msg *m, const char **error_r);
/* A request id: decimal 1..4294967295, no sign, no leading zero. */
bool dovecot_id_parse(const char *s, unsigned *id_r);
enum sasl_mech { SASL_MECH_PLAIN, SASL_MECH_LOGIN };
/* An AUTH line, decoded.  Pointers point into the dovecot_msg's line. */
struct dovecot_auth {
	unsigned id;
	enum sasl_mech mech;
	const char *service;		/* service= (or 2.4's protocol=), checked */
	const char *rip, *lip;		/* NULL if absent; at most AUTHD_MAX_ADDR */
	bool secured;			/* "secured" or secured=ANY */
	const char *resp;		/* the initial response (base64), or NULL */
};
enum dovecot_auth_status {
	DOVECOT_AUTH_OK,
	DOVECOT_AUTH_FAIL,	/* a good id, a bad request: reply FAIL (*error_r) */
	DOVECOT_AUTH_BROKEN,	/* no usable id: a protocol error, close */
};
/* Decodes m (cmd "AUTH") into a.  Unknown parameters are ignored, as the
 * protocol asks; a known one given twice is refused. */
enum dovecot_auth_status dovecot_parse_auth(const struct dovecot_msg *m, struct dovecot_auth *a,
					    const char **error_r);
/* One SASL exchange (PLAIN or LOGIN) in progress.  Holds the password
 * once decoded: the owner wipes it (sodium_memzero of the whole struct). */
struct sasl_exchange {
	enum sasl_mech mech;
	unsigned step;			/* LOGIN: 0 wants the user, 1 the password */
	char user[AUTH_MAX_USER + 1];
	char password[AUTH_MAX_PASSWORD + 1];
	size_t passlen;
};
enum sasl_step {
	SASL_STEP_CONTINUE,	/* send *challenge_r (base64, static) and wait */
	SASL_STEP_DONE,		/* user and password are in x */
	SASL_STEP_FAIL,		/* malformed: *error_r (static) */
};
/* Takes the client's next response b64 (NULL: none; initial: it came with
 * the AUTH line).  PLAIN (RFC 4616, through proto_sasl_plain_decode: an
 * authzid other than the user is refused) and LOGIN (base64 user, then
 * password; no NUL, within AUTH_MAX_USER and AUTH_MAX_PASSWORD). */
enum sasl_step sasl_mech_step(struct sasl_exchange *x, const char *b64, bool initial,
			      const char **challenge_r, const char **error_r);

/* The most a saslauthd request can be: five counted strings. */
#define SASLAUTHD_MAX_REQUEST (5 * 2 + AUTH_MAX_USER + AUTH_MAX_PASSWORD + 3 * SASLAUTHD_MAX_FIELD)
struct saslauthd_req {
	char login[AUTH_MAX_USER + 1];
	char password[AUTH_MAX_PASSWORD + 1];
	size_t passlen;
	char service[SASLAUTHD_MAX_FIELD + 1];
	char realm[SASLAUTHD_MAX_FIELD + 1];
	char addr[SASLAUTHD_MAX_FIELD + 1];	/* the fifth string, if sent */
	bool has_addr;
};
enum saslauthd_status {
	SASLAUTHD_MORE,		/* not all there yet */
	SASLAUTHD_DONE,		/* r holds the request (the caller wipes it) */
	SASLAUTHD_BAD,		/* *error_r (static); r wiped */
};
/* Decodes the len bytes a client has sent so far: login, password,
 * service, realm and, if the client sends it, its address, each a 2-byte
 * big-endian length and that many bytes (no NUL).  DONE only when buf
 * holds exactly four or five strings. */
enum saslauthd_status saslauthd_decode(const uint8_t *buf, size_t len, struct saslauthd_req *r,
				       const char **error_r);

/* main.c */
/* Re-reads the configuration file.  Returns 0, or -1 with the reason in
 * error (the running configuration is kept). */
int authd_reload(char *error, size_t size);
/* The generation new requests go to. */
struct generation *authd_generation(void);

/* stats.c */
/* Serves the metrics on the stats socket (listening fd). */
/* Serves the stats socket listen_fd and the metrics-listen socket
 * http_fd (HTTP /metrics); either may be -1. */
void stats_init(struct event_base *base, int listen_fd, int http_fd);
void stats_shutdown(void);

/* request.c: the request's lifecycle.  The layer above (client.c) creates
 * requests and hears their answer through a callback; request.c never
 * calls it by name. */
struct request_params {
	const char *id, *service, *user, *rip, *lip;
	char *password;		/* taken over by the request (wiped, freed) */
	size_t passlen;
	bool secured;
};

/* What a request ended with.  Pointers are valid during the callback only. */
struct request_answer {
	enum auth_result result;	/* OK, FAIL or TEMPFAIL (never NOUSER) */
	enum tempfail_reason reason;	/* TEMPFAIL */
	const char *user;		/* the normalised name */
	const struct userdb *udb;	/* OK */
	const char *authname;		/* OK: the authenticator that said so */
};
/* Called once per request that is not cancelled, on the loop thread; req
 * is freed when it returns. */
typedef void request_cb(void *ctx, struct request *req, const struct request_answer *answer);

struct request {
	TAILQ_ENTRY(request) client_entry;	/* the owner's list (client.c) */
	TAILQ_ENTRY(request) flight_entry;	/* its flight's waiters */
	request_cb *cb;
	void *cbctx;
	struct flight *flight;		/* NULL once answered */
	char id[AUTHD_MAX_ID + 1];
	char user[AUTH_MAX_USER + 1];	/* normalised */
	char rip[AUTHD_MAX_ADDR + 1];
	char service[33];
	uint64_t started_us;
	/* kept until request_run() has handed them to a flight */
	char *password;
	size_t passlen;
	char lip[AUTHD_MAX_ADDR + 1];
	bool secured;
	bool invalid;			/* no such name can exist, or no password */
};
TAILQ_HEAD(request_list, request);

/* Creates a request (taking over p->password) answered through cb(cbctx,
 * ...).  request_run() answers it at once (FAIL for a name nobody can
 * have or an empty password), from the cache, joins an identical request
 * in flight (coalescing), or starts a new flight through the chain: cb may
 * run before request_run() returns. */
struct request *request_new(const struct request_params *p, request_cb *cb, void *cbctx);
void request_run(struct request *req);
/* Drops a request without a reply (CANCEL, client gone). */
void request_cancel(struct request *req);
const char *request_id(const struct request *req);
const char *tempfail_reason_name(enum tempfail_reason r);
void requests_set_base(struct event_base *base);
/* Removes a user's cache entries (user already normalised by the caller
 * with user_normalize), or all when user is NULL, from L1 at once, and
 * with L2 from the whole cluster (l2_flush: cb(ctx, ...) runs on the
 * loop when that is done, and *l2_r says whether it will).  Any thread
 * (the passwd-file watcher calls it with cb NULL).  Returns how many L1
 * entries went. */
uint64_t requests_cache_flush(const char *user, l2_flush_cb *cb, void *ctx, bool *l2_r);
/* A kick of user (normalised): with flush, its L1 entries go first (the
 * count is returned); with L2, the kick (and flush) goes to every host
 * (l2_kick: cb as above, *l2_r true).  The pop3d masters of this host are
 * the caller's to ask (masters_kick). */
uint64_t requests_cache_kick(const char *user, bool flush, l2_flush_cb *cb, void *ctx,
			     bool *l2_r);
struct cache *requests_cache(void);
/* Shutdown: drops every flight; then, once no worker runs (they may
 * flush the cache), requests_cache_free(). */
void requests_shutdown(void);
void requests_cache_free(void);

struct authd_stats {
	uint64_t requests;		/* AUTH requests accepted */
	uint64_t answered_ok, answered_fail, answered_tempfail;
	uint64_t errors;		/* ERROR replies (malformed requests) */
	uint64_t invalid;		/* refused before any backend (bad name) */
	uint64_t no_chain;		/* refused: no authenticator serves the service */
	uint64_t reloads, reload_failures;
	uint64_t coalesced;		/* requests that joined one in flight */
	uint64_t cache_answers;		/* answered from a fresh entry */
	uint64_t stale_answers;		/* answered from a stale entry */
	uint64_t refreshes;		/* background revalidations started */
	uint64_t late_fills;		/* results that came after the answer */
	uint64_t l2_answers;		/* answered from an L2 (memcached) hit */
	uint64_t l2_stale_answers;	/* ... from a stale L2 entry */
	uint64_t l2_deadline;		/* L2 GETs given up on by the loop */
};
extern struct authd_stats authd_stats;

/* normalize.c */
/* Normalises user per [authd] (trim, lower-case, domain).  Returns 0, or -1
 * for a name that cannot belong to anyone (empty, control characters, too
 * long). */
int user_normalize(const struct config *conf, const char *in, char *out, size_t size);

/* ticket.c */
void tickets_init(const struct config *conf);
/* At a reload: the new ticket-lifetime, outstanding tickets kept. */
void tickets_set_lifetime(const struct config *conf);
/* Issues a ticket for (user, udb) bound to pid; writes its hex form into
 * hex (2 * AUTHD_TICKET_BYTES + 1 bytes). */
void ticket_issue(const char *user, const struct userdb *udb, pid_t pid, char *hex);
/* Redeems a ticket once.  Returns 0 and fills user/udb, or -1. */
int ticket_redeem(const char *hex, pid_t pid, char *user, size_t usersize,
		  struct userdb *udb);
/* Tickets issued, not yet redeemed or expired (for the stats). */
unsigned tickets_outstanding(void);
/* A kick: drops user's outstanding tickets, so that a login approved just
 * before it does not become a session after it.  Returns how many. */
unsigned tickets_revoke(const char *user);
void tickets_shutdown(void);

/* confreader.c */
/* A configuration file larger than this is refused at a reload: many times
 * the largest real one (16 authenticators of a few dozen keys), and it
 * bounds what the root reader sends and authd holds. */
#define AUTHD_CONF_MAX (1024 * 1024)
/* How long a reload waits for the root reader before giving it up. */
#define AUTHD_CONF_READ_MS 5000
/* As root, before the privilege drop: forks the reader of path (absolute,
 * kept by the reader; authd's copy is not used again by it).  fatal() if
 * it cannot. */
void confreader_start(const char *path);
/* Loads the configuration for a reload: through the reader if one was
 * started, else with config_load(path).  Returns as config_load() (NULL
 * and a message naming path in error); never blocks longer than
 * AUTHD_CONF_READ_MS. */
struct config *confreader_load(const char *path, char *error, size_t size);
/* Shutdown: closes our end, so the reader exits. */
void confreader_stop(void);

/* redeem.c: the REDEEM listener on [authd] master-socket */
/* Serves ticket redemption on listen_fd (root's and authd's uid only). */
void redeem_init(struct event_base *base, int listen_fd);
void redeem_shutdown(void);
/* A session a pop3d master listed (WHO); valid during the callback. */
struct master_session {
	const char *user;
	char rip[64];
	unsigned rport;
	int64_t start;		/* Unix seconds */
	long pid, master_pid;
	bool tls;
};
typedef void masters_session_cb(void *ctx, const struct master_session *s);
/* n: sessions listed or ended; answered of asked masters (the others
 * did not answer within MASTER_ASK_TIMEOUT_MS, or left). */
typedef void masters_done_cb(void *ctx, unsigned long long n, unsigned answered, unsigned asked);
/* Lists the sessions of every pop3d master connected to the master
 * socket: session_cb per session, then done_cb once (at once if no master
 * is connected).  A NULL done_cb or ctx is allowed. */
void masters_who(masters_session_cb *session_cb, masters_done_cb *done_cb, void *ctx);
/* Ends user's sessions in every connected pop3d master; done_cb as above. */
void masters_kick(const char *user, masters_done_cb *done_cb, void *ctx);

/* password.c */
/* Most PBKDF2 / SCRAM iterations, and SHA256-/SHA512-CRYPT rounds,
 * accepted: 10 million PBKDF2-HMAC-SHA1 rounds cost seconds of CPU per
 * login (Dovecot writes 5000 and 4096; OWASP's 2023 advice is 1.3
 * million).  Above it is a typo or a denial of service planted in the
 * file or the directory. */
#define PW_MAX_ROUNDS 10000000u
/* SCRAM: Dovecot refuses fewer than 4096 iterations (RFC 5802 §5.1). */
#define PW_SCRAM_MIN_ROUNDS 4096u
enum pw_check { PW_MATCH, PW_MISMATCH, PW_BAD_HASH };
/* First thing in main(), before any other libcrypto call: libcrypto's
 * freed blocks (digest contexts over a password) are wiped first
 * (common/memwipe.c).  Fatal if libcrypto has allocated already. */
void password_wipe_freed(void);
/* Checks password against a stored hash in any supported scheme.  Blocking
 * and possibly slow (argon2): workers only. */
enum pw_check password_verify(const char *stored, const char *password);
/* True if stored names a scheme password_verify() understands and is
 * well-formed for it (decoded, lengths and parameters checked; no hashing).
 * If not, writes into why (size bytes) the reason for a log line: it names
 * the scheme, never any part of the hash. */
bool password_scheme_check(const char *stored, char *why, size_t size);
/* password_scheme_check() without the reason. */
bool password_scheme_known(const char *stored);
/* True if stored is {PLAIN}, {CLEAR}, {CLEARTEXT} or {PLAIN-TRUNC} (any
 * encoding suffix): the password is in the file. */
bool password_is_plain(const char *stored);
/* Dovecot's {CRAM-MD5} context of password into out: MD5's state after
 * HMAC-MD5's outer pad block, then after the inner one (the caller wipes
 * out).  Returns false only if libcrypto fails. */
bool password_cram_md5(const char *password, uint8_t out[32]);

/* pwgen.c (authctl pw) */
enum pwgen_result {
	PWGEN_OK,
	PWGEN_BAD_ARGS,		/* unknown scheme, rounds out of range */
	PWGEN_BAD_PASSWORD,	/* empty, CR/LF, too long (for the scheme) */
	PWGEN_FAILED,		/* hashing failed (memory) */
};
/* Hashes password (NUL-terminated) in scheme (a name of password.c's,
 * case-insensitive, without braces), with rounds (0: the default; see
 * pwgen.c's head for each scheme's meaning and range) and a fresh random
 * salt.  On PWGEN_OK *hash_r is "{SCHEME}..." as password.c verifies it
 * (checked before it is returned): malloc'd, the caller wipes and frees
 * it.  Otherwise *hash_r is NULL and why (size bytes) says what is
 * wrong; it never holds the password.  Blocking and slow (argon2, PBKDF2:
 * up to a second). */
enum pwgen_result pwgen_hash(const char *scheme, const char *password, unsigned rounds,
			     char **hash_r, char *why, size_t size);
/* True if pwgen_hash() takes scheme and rounds; if not, why says why. */
bool pwgen_args_ok(const char *scheme, unsigned rounds, char *why, size_t size);
/* The number of schemes pwgen_hash() writes, and the i-th one's name
 * (NULL past the end) with its default rounds (0 if it takes none, or
 * takes libxcrypt's default) and a warning for weak schemes (else NULL);
 * static strings. */
size_t pwgen_count(void);
const char *pwgen_scheme(size_t i, unsigned *default_rounds_r, const char **weak_r);
/* The canonical spelling of scheme, or NULL if pwgen_hash() cannot write
 * it; its warning (static), or NULL. */
const char *pwgen_canonical(const char *scheme);
const char *pwgen_warning(const char *scheme);

/* spawn.c */
struct child {
	pid_t pid;
	int pidfd;
};
/* Starts argv in a new session (so the whole group can be killed), with
 * stdin/stdout/fd3 as given (-1 = /dev/null for 0 and 1, closed for 3),
 * stderr inherited, every other descriptor closed, signals default and
 * unblocked, and a small environment.  Returns 0 or -1 (errno set). */
int child_spawn(struct child *ch, char *const argv[], int in_fd, int out_fd, int fd3,
		char *const envp[]);
/* True if the child has exited (not yet reaped): never blocks. */
bool child_exited(const struct child *ch);
/* Kills the process group of every child still running (shutdown). */
void children_kill_all(void);
/* Kills the child's process group and reaps the child. */
void child_kill(struct child *ch);
/* Waits for the child to exit until deadline_ms (monotonic).  Returns 0
 * with *status_r as from waitid (si_code/si_status folded: exit code, or
 * 128 + signal), or -1 on timeout (child still running). */
int child_wait(struct child *ch, uint64_t deadline_ms, int *status_r);

/* passdb_passwd_file.c, passdb_external.c, passdb_pam.c, passdb_ldap.c */
extern const struct passdb_ops passdb_passwd_file;
extern const struct passdb_ops passdb_external;
extern const struct passdb_ops passdb_checkpassword;
extern const struct passdb_ops passdb_pam;	/* passdb_pam.c */
/* The persistent-helper machinery of passdb_external.c, shared with PAM:
 * the helper's command line is auth->backend (a NULL-ended argv) if set,
 * else the `program` key. */
void *external_worker_init(struct authenticator *auth, unsigned index);
void external_verify(struct authenticator *auth, void *state, struct job *job);
void external_worker_deinit(struct authenticator *auth, void *state);
extern const struct passdb_ops passdb_ldap;	/* passdb_ldap.c */

/* userdb.c: helpers for every backend */
/* Parses "uid=", "gid=", "home=", "maildrop=" into udb; other keys are
 * ignored.  Returns 0, or -1 for a bad value (a uid or gid that is not a
 * number below 4294967295, a path too long or with control characters). */
int userdb_set_field(struct userdb *udb, const char *key, const char *value);
/* Fills the fields udb lacks from ac's default-uid, -gid, -home and
 * -maildrop (config.c checked them). */
void userdb_apply_defaults(struct userdb *udb, const struct auth_conf *ac);

#endif
