/*
 * l2.c - the shared cache tier (L2): sealed entries in memcached, shared
 * by the authd hosts of a cluster, behind each host's in-memory cache (L1,
 * cache/cache.c).  Runs in authd, unprivileged, except l2_keys_load(),
 * which main.c calls as root before the privilege drop to read the
 * cluster key file.
 *
 * DESIGN
 *
 * Threads.  The event-loop thread never waits on memcached: it only puts
 * operations on a queue (l2_get, l2_put, l2_flush) and hears the answers
 * through an eventfd, like the authenticators' completions.
 *   - `memcached-workers` threads run GETs and PUTs, each with its own
 *     memcached_st (a clone of one template: libmemcached handles are not
 *     thread-safe).  The template spreads names over the servers with
 *     ketama; a user's entry and generation go to the same server (the
 *     entry's name is the *_by_key "master key").
 *   - one control thread runs flushes and polls every server's epoch and
 *     flush log every `flush-poll-interval`, with one single-server
 *     memcached_st per server (a flush must reach every server, not the
 *     one ketama picks).
 * All shared state here (queues, breakers, counters) is under one mutex;
 * nothing is lock-free (atomics live only in cache/).  Each operation is a
 * network round trip of tens of microseconds: the mutex costs nothing next
 * to it.
 *
 * What a lookup believes.  An entry (cache/seal.h) holds the verifier of
 * the password that last logged in, its fresh and stale times (Unix ms),
 * and the user's generation and the server's epoch when it was written.
 * A GET reads the entry, the generation and the epoch in one round trip
 * (memcached_mget_by_key: all three from the entry's server), and the
 * entry counts only if it opens under our key, names this password's
 * verifier, carries the current generation and epoch, and is fresh by
 * our clock.  memcached's own expiry is never trusted.
 *
 * Flush.  `authctl flush USER` deletes the user's entry, sets a new random
 * generation (so an entry written by a request that was asked before the
 * flush, and answers after it, does not count), and then appends a record
 * naming the user key to the flush log of every server.  `authctl flush`
 * sets a new random epoch on every server.  Each host's control thread
 * reads every server's epoch and flush log each poll: a new epoch, a log
 * that went backwards (a restarted server) or a gap it cannot read flushes
 * its whole L1; a record flushes that user's L1 entries.  So within one
 * poll interval plus a round trip after `authctl flush` returns, no host
 * answers from an entry made before it (docs/cluster.md, "Consistency").
 *
 * Kicks.  `authctl kick USER` (and flush --kick) adds a kick to the
 * record: the user's name sealed under the cluster key (cache/seal.h),
 * with a random id and the time it was issued.  A host that reads it
 * hands the name to its pop3d masters (l2_set_kick_handler), once per id
 * (every server's log carries it; the issuing host knows its own), and
 * not if it was issued more than a flush record's lifetime ago (a record
 * copied back into memcached is not obeyed again).  Hosts of an older
 * version read a kick-only record as unreadable and flush their whole
 * L1: safe, and a rolling upgrade's only cost.  A kick is carried only by
 * the log: a host that finds a gap it cannot read (the flush log's own
 * limits, below) flushes its L1 but cannot know which kicks it missed;
 * it says so in its log (docs/cluster.md: kicks are then best effort).
 *
 * Faults.  Every error is a miss, never a failure.  Each server has a
 * circuit breaker: after `memcached-breaker-failures` errors in a row it
 * opens and calls to that server are skipped for `memcached-breaker-
 * backoff`; then one call probes it (half-open) and closes it again on
 * success.  libmemcached's own dead-server marking does not notice a hung
 * server (../shared/reference/dependencies.md), so it is not relied on;
 * names are never moved to another server (no REMOVE_FAILED_SERVERS), so
 * every host keeps the same map whatever it has seen fail.  After an
 * error the handle is reset (memcached_quit), so a late answer can never
 * be read as the answer to the next request.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libmemcached/memcached.h>
#include <sodium.h>

#include "authd/authd.h"
#include "cache/cache.h"
#include "cache/seal.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"
#include "common/num.h"

/* Operations waiting for a worker; past this a GET is a miss and a PUT is
 * dropped (counted): memcached that slow is better skipped. */
#define L2_QUEUE_MAX 4096
/* A flush record lives this long: a host that has not polled a server for
 * longer flushes its whole L1 when it sees the gap. */
#define FLUSH_RECORD_TTL_S 300
/* Most flush records read in one poll of one server; a longer gap flushes
 * the whole L1 instead. */
#define FLUSH_RECORDS_MAX 64
/* memcached's relative expiry limit (protocol.txt, "Expiration times"). */
#define MC_MAX_RELATIVE_S 2592000

/* The longest TTL config.c allows (7 days) and a minute of clock skew: an
 * entry fresh or stale for longer is from a broken clock, refused.  Shorter
 * ones are clamped to this host's own TTLs by request.c (hosts need not
 * agree on them). */
#define TTL_SANE_MS ((7ll * 24 * 3600 + 60) * 1000)

#define NAME_EPOCH SEAL_PREFIX "e"
#define NAME_SEQ SEAL_PREFIX "s"

/* Kick ids a host remembers (its own and those it applied): more than a
 * flush record's lifetime of kicks at any sane rate (32 KiB). */
#define KICKS_REMEMBERED 4096

enum op_kind { OP_GET, OP_PUT, OP_FLUSH, OP_KICK_IN };

struct l2_op {
	TAILQ_ENTRY(l2_op) entry;
	enum op_kind kind;
	/* loop only: NULL once nobody waits (l2_cancel) */
	l2_get_cb *get_cb;
	l2_flush_cb *flush_cb;
	void *ctx;
	uint64_t submitted_us;

	/* input */
	uint8_t key[SEAL_MAX_KEYS][CACHE_KEY_LEN];	/* per key of the keyset */
	uint8_t verifier[SEAL_MAX_KEYS][CACHE_VERIFIER_LEN];
	bool all;					/* OP_FLUSH: every user */
	bool has_keys;					/* OP_FLUSH: the user's */
	bool kick;					/* OP_FLUSH with a kick,
							   or OP_KICK_IN */
	struct seal_kick kick_msg;
	struct seal_entry put;				/* OP_PUT */
	uint32_t put_ttl_s;

	/* output */
	struct l2_result res;
	unsigned servers_ok;				/* OP_FLUSH */
};
TAILQ_HEAD(l2_op_list, l2_op);

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct server {
	char name[300];			/* host:port or the socket path */
	enum breaker_state state;
	unsigned fails;			/* errors in a row */
	uint64_t open_until_ms;
	bool probing;			/* half-open: the probe is out */
	uint64_t opens, ok, errors;
	/* the control thread's view of the server's flush log */
	bool epoch_known, seq_known;
	uint64_t epoch, seq;
};

static struct {
	bool enabled;
	/* [cache] as at the start (a reload does not change L2: main.c
	 * says so); copied, since a reload frees the configuration */
	struct {
		uint64_t timeout_ms, backoff_ms, poll_ms;
		unsigned failures;
	} cfg;
	memcached_st *one[CONFIG_MAX_MEMCACHED];	/* the control thread's */
	struct cache *l1;
	struct seal_keyset *keys;	/* sodium_malloc'd, read-only */
	memcached_st *tmpl;		/* all servers, ketama */
	struct server servers[CONFIG_MAX_MEMCACHED];
	size_t nservers;

	pthread_mutex_t lock;		/* everything below */
	pthread_cond_t work_cond, ctl_cond;
	struct l2_op_list work, ctl, done;
	unsigned queued;
	bool stopping;
	struct l2_stats stats;
	pthread_t *workers;
	unsigned nworkers;
	pthread_t ctl_thread;
	bool first_round;		/* the control thread has polled once */

	int done_fd;
	struct event *done_ev;
	l2_kick_fn *kick_fn;			/* loop only */
	/* the control thread's only */
	uint64_t kicks_seen[KICKS_REMEMBERED];
	unsigned kicks_next;
} l2 = { .lock = PTHREAD_MUTEX_INITIALIZER, .work_cond = PTHREAD_COND_INITIALIZER,
	 .ctl_cond = PTHREAD_COND_INITIALIZER, .done_fd = -1 };

/* ---- keys (root, before the privilege drop) ---------------------------- */

int l2_keys_load(const char *path, char *error, size_t size)
{
	uint8_t buf[2 * SEAL_KEY_LEN + 1];
	struct stat st;
	const char *why;
	ssize_t n;
	int fd, rc = -1;

	if (sodium_init() < 0)
		fatalx("libsodium initialisation failed");
	if (l2.keys == NULL) {
		l2.keys = sodium_malloc(sizeof(*l2.keys));
		if (l2.keys == NULL)
			fatalx("out of memory (cluster key)");
	} else if (sodium_mprotect_readwrite(l2.keys) == -1) {
		fatal("sodium_mprotect_readwrite");
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		snprintf(error, size, "[cache] cluster-key-file %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) == -1) {
		snprintf(error, size, "[cache] cluster-key-file %s: %s", path, strerror(errno));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(error, size, "[cache] cluster-key-file %s: not a regular file", path);
		goto out_close;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(error, size, "[cache] cluster-key-file %s: mode %04o: must not be "
			 "accessible by group or others (chmod 600)", path,
			 (unsigned)(st.st_mode & 07777));
		goto out_close;
	}
	n = read(fd, buf, sizeof(buf));
	if (n == -1) {
		snprintf(error, size, "[cache] cluster-key-file %s: %s", path, strerror(errno));
		goto out_close;
	}
	if (seal_keyset_from_bytes(buf, (size_t)n, l2.keys, &why) == -1) {
		snprintf(error, size, "[cache] cluster-key-file %s: %s (make one with: head -c "
			 "32 /dev/urandom > FILE)", path, why);
		goto out_close;
	}
	rc = 0;
out_close:
	close(fd);
out:
	sodium_memzero(buf, sizeof(buf));
	if (sodium_mprotect_readonly(l2.keys) == -1)
		fatal("sodium_mprotect_readonly");
	return rc;
}

void l2_keys_free(void)
{
	if (l2.keys != NULL)
		sodium_free(l2.keys);	/* wipes */
	l2.keys = NULL;
}

bool l2_hash_keys(uint8_t out[64])
{
	if (l2.keys == NULL || l2.keys->n == 0)
		return false;
	memcpy(out, l2.keys->k[0].name, 32);
	memcpy(out + 32, l2.keys->k[0].verifier, 32);
	return true;
}

/* ---- breakers (under l2.lock) ------------------------------------------ */

/* May a call go to server i now?  Takes the half-open probe if due. */
static bool breaker_allow(size_t i, uint64_t now)
{
	struct server *s = &l2.servers[i];

	switch (s->state) {
	case BREAKER_CLOSED:
		return true;
	case BREAKER_OPEN:
		if (now < s->open_until_ms)
			return false;
		s->state = BREAKER_HALF_OPEN;
		s->probing = true;
		return true;
	case BREAKER_HALF_OPEN:
		if (s->probing)
			return false;
		s->probing = true;
		return true;
	}
	return false;
}

static void breaker_result(size_t i, bool ok, uint64_t now, memcached_return_t rc)
{
	struct server *s = &l2.servers[i];

	if (ok) {
		s->ok++;
		s->fails = 0;
		if (s->state != BREAKER_CLOSED)
			log_info("cache: memcached %s answers again; using it", s->name);
		s->state = BREAKER_CLOSED;
		s->probing = false;
		return;
	}
	s->errors++;
	s->fails++;
	if (s->state == BREAKER_HALF_OPEN ||
	    (s->state == BREAKER_CLOSED && s->fails >= l2.cfg.failures)) {
		if (s->state == BREAKER_CLOSED)
			log_warnx("cache: memcached %s: %u errors in a row (last: %s); skipping it "
				  "for %llums", s->name, s->fails, memcached_strerror(NULL, rc),
				  (unsigned long long)l2.cfg.backoff_ms);
		s->state = BREAKER_OPEN;
		s->probing = false;
		s->open_until_ms = now + l2.cfg.backoff_ms;
		s->opens++;
	}
}

/* Success, "not there" and "not stored" are answers; the rest are faults
 * of the server or the path to it. */
static bool rc_is_answer(memcached_return_t rc)
{
	return rc == MEMCACHED_SUCCESS || rc == MEMCACHED_NOTFOUND || rc == MEMCACHED_END ||
	       rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_STORED || rc == MEMCACHED_DELETED ||
	       rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_BUFFERED;
}

static void count_error(memcached_return_t rc)
{
	switch (rc) {
	case MEMCACHED_TIMEOUT:
		l2.stats.err_timeout++;
		break;
	case MEMCACHED_CONNECTION_FAILURE:
	case MEMCACHED_SERVER_TEMPORARILY_DISABLED:
	case MEMCACHED_SERVER_MARKED_DEAD:
	case MEMCACHED_HOST_LOOKUP_FAILURE:
	case MEMCACHED_ERRNO:
	case MEMCACHED_ERROR:
	case MEMCACHED_NO_SERVERS:
		l2.stats.err_connect++;
		break;
	case MEMCACHED_PROTOCOL_ERROR:
	case MEMCACHED_UNKNOWN_READ_FAILURE:
	case MEMCACHED_READ_FAILURE:
	case MEMCACHED_WRITE_FAILURE:
	case MEMCACHED_CLIENT_ERROR:
	case MEMCACHED_SERVER_ERROR:
	case MEMCACHED_PARTIAL_READ:
		l2.stats.err_protocol++;
		break;
	default:
		l2.stats.err_other++;
		break;
	}
}

/* Records the outcome of one call to server i (l2.lock not held). */
static void server_done(size_t i, memcached_return_t rc)
{
	bool ok = rc_is_answer(rc);

	pthread_mutex_lock(&l2.lock);
	if (!ok)
		count_error(rc);
	breaker_result(i, ok, mtime_ms(), rc);
	pthread_mutex_unlock(&l2.lock);
}

/* ---- libmemcached handles ---------------------------------------------- */

static void set_behaviours(memcached_st *m)
{
	uint64_t ms = l2.cfg.timeout_ms;


	/* Text protocol (the binary one is deprecated and stores negative
	 * expiry times); every call bounded by the poll timeout. */
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 0);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms);
	/* Our breaker decides when to skip a server; libmemcached's own
	 * back-off after a refused connect is kept short under it. */
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 1);
	memcached_behavior_set(m, MEMCACHED_BEHAVIOR_VERIFY_KEY, 1);
}

static int add_server(memcached_st *m, const struct memcached_server *s)
{
	memcached_return_t rc = s->port == 0 ? memcached_server_add_unix_socket(m, s->host) :
					       memcached_server_add(m, s->host, (in_port_t)s->port);
	return rc == MEMCACHED_SUCCESS ? 0 : -1;
}

/* The index in l2.servers of the server ketama maps name to, or -1. */
static ssize_t server_of(memcached_st *m, const char *name)
{
	memcached_return_t rc;
	const memcached_instance_st *inst = memcached_server_by_key(m, name, strlen(name), &rc);

	if (inst == NULL)
		return -1;
	for (size_t i = 0; i < l2.nservers; i++)
		if (memcached_server_instance_by_position(m, (uint32_t)i) == inst)
			return (ssize_t)i;
	return -1;
}

/* ---- worker: GET -------------------------------------------------------- */

enum got { GOT_ENTRY, GOT_GEN, GOT_EPOCH, GOT_N };

struct fetched {
	bool have[GOT_N];
	uint8_t entry[SEAL_VALUE_MAX];
	size_t entry_len;
	uint64_t gen, epoch;
	bool bad_number;	/* a generation or epoch that is not 16 hex digits */
};

/* Called for each value an mget found, with the index of its name. */
typedef void each_value_fn(void *ctx, size_t which, const char *v, size_t vl);

/* Gets the n names, from master's server (or from m's only server when
 * master is NULL), and calls fn for each value found.  Returns
 * MEMCACHED_SUCCESS whatever was missing, or the error. */
static memcached_return_t mget_each(memcached_st *m, const char *master,
				    const char *const *keys, const size_t *lens, size_t n,
				    each_value_fn *fn, void *ctx)
{
	memcached_result_st res;
	memcached_return_t rc;

	rc = master != NULL ? memcached_mget_by_key(m, master, strlen(master), keys, lens, n) :
			      memcached_mget(m, keys, lens, n);
	if (rc != MEMCACHED_SUCCESS)
		return rc;
	if (memcached_result_create(m, &res) == NULL)
		return MEMCACHED_MEMORY_ALLOCATION_FAILURE;
	for (size_t guard = 0; guard < 2 * n + 2; guard++) {	/* at most n results */
		if (memcached_fetch_result(m, &res, &rc) == NULL)
			break;
		const char *k = memcached_result_key_value(&res);
		size_t kl = memcached_result_key_length(&res);

		for (size_t w = 0; w < n; w++)
			if (kl == lens[w] && memcmp(k, keys[w], kl) == 0) {
				fn(ctx, w, memcached_result_value(&res),
				   memcached_result_length(&res));
				break;
			}
	}
	memcached_result_free(&res);
	sodium_memzero(&res, sizeof(res));
	if (rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND)
		rc = MEMCACHED_SUCCESS;
	return rc;
}

/* each_value_fn of fetch_three: which is an enum got. */
static void got_value(void *ctx, size_t which, const char *v, size_t vl)
{
	struct fetched *f = ctx;

	f->have[which] = true;
	switch (which) {
	case GOT_ENTRY:
		if (vl > SEAL_VALUE_MAX)
			vl = SEAL_VALUE_MAX + 1;	/* refused by seal_entry_open */
		f->entry_len = vl;
		memcpy(f->entry, v, vl > SEAL_VALUE_MAX ? SEAL_VALUE_MAX : vl);
		break;
	case GOT_GEN:
		f->bad_number |= seal_parse_u64hex(v, vl, &f->gen) == -1;
		break;
	case GOT_EPOCH:
		f->bad_number |= seal_parse_u64hex(v, vl, &f->epoch) == -1;
		break;
	}
}

/* Reads the entry, generation and epoch of one key from its server. */
static memcached_return_t fetch_three(memcached_st *m, const char *ename, const char *gname,
				      struct fetched *f)
{
	const char *keys[GOT_N] = { ename, gname, NAME_EPOCH };
	size_t lens[GOT_N] = { strlen(ename), strlen(gname), strlen(NAME_EPOCH) };

	memset(f, 0, sizeof(*f));
	return mget_each(m, ename, keys, lens, GOT_N, got_value, f);
}

/* Looks key number ki of the op up.  Returns true if it found an answer
 * (a hit, a stale entry, or a definite miss of a readable server) that
 * ends the lookup; false to try the next key. */
static bool get_one(memcached_st *m, struct l2_op *op, unsigned ki)
{
	const struct seal_key *k = &l2.keys->k[ki];
	char ename[SEAL_NAME_SIZE], gname[SEAL_NAME_SIZE];
	struct l2_result *r = &op->res;
	struct fetched *f = xmalloc(sizeof(*f));
	struct seal_entry e;
	memcached_return_t rc;
	ssize_t si;
	bool done = true;

	seal_name('a', op->key[ki], ename);
	seal_name('g', op->key[ki], gname);
	si = server_of(m, ename);
	pthread_mutex_lock(&l2.lock);
	bool allowed = si >= 0 && breaker_allow((size_t)si, mtime_ms());
	if (!allowed)
		l2.stats.breaker_skips++;
	pthread_mutex_unlock(&l2.lock);
	if (!allowed) {
		free(f);
		return true;		/* a miss, and nothing written back */
	}
	rc = fetch_three(m, ename, gname, f);
	server_done((size_t)si, rc);
	if (rc != MEMCACHED_SUCCESS) {
		memcached_quit(m);
		goto out;
	}
	pthread_mutex_lock(&l2.lock);
	if (f->bad_number) {
		l2.stats.bad_value++;
		pthread_mutex_unlock(&l2.lock);
		goto out;
	}
	if (!f->have[GOT_EPOCH]) {
		/* A server the control thread has not set up yet (or that
		 * has just restarted): nothing on it can be trusted or
		 * written until it has an epoch. */
		l2.stats.miss_no_epoch++;
		pthread_mutex_unlock(&l2.lock);
		goto out;
	}
	if (ki == 0) {
		r->writable = true;
		r->generation = f->have[GOT_GEN] ? f->gen : 0;
		r->epoch = f->epoch;
	}
	if (!f->have[GOT_ENTRY]) {
		l2.stats.miss_absent++;
		pthread_mutex_unlock(&l2.lock);
		done = ki + 1 >= l2.keys->n;
		goto out;
	}
	pthread_mutex_unlock(&l2.lock);

	enum seal_open_result orc = seal_entry_open(k, ename, f->entry, f->entry_len, &e);
	int64_t now = (int64_t)mtime_wall_ms();

	pthread_mutex_lock(&l2.lock);
	if (orc == SEAL_BAD_VERSION)
		l2.stats.bad_version++;
	else if (orc == SEAL_BAD_SEAL)
		l2.stats.bad_seal++;
	else if (orc == SEAL_BAD_CONTENT)
		l2.stats.bad_value++;
	else if (sodium_memcmp(e.verifier, op->verifier[ki], CACHE_VERIFIER_LEN) != 0)
		l2.stats.miss_verifier++;	/* another password's entry */
	else if (e.generation != (f->have[GOT_GEN] ? f->gen : 0) || e.epoch != f->epoch)
		l2.stats.miss_generation++;	/* written before a flush */
	else if (now >= e.stale_until || e.fresh_until - now > TTL_SANE_MS ||
		 e.stale_until - e.fresh_until > TTL_SANE_MS)
		l2.stats.miss_expired++;	/* or from a clock far ahead of ours */
	else {
		r->status = now < e.fresh_until ? L2_HIT : L2_STALE;
		if (r->status == L2_HIT)
			l2.stats.hits++;
		else
			l2.stats.stale_found++;
		r->fresh_ms = now < e.fresh_until ? (uint64_t)(e.fresh_until - now) : 0;
		r->stale_ms = (uint64_t)(e.stale_until - now);
		r->entry.kind = CACHE_OK;
		r->entry.uid = e.uid;
		r->entry.gid = e.gid;
		memcpy(r->entry.home, e.home, sizeof(r->entry.home));
		memcpy(r->entry.maildrop, e.maildrop, sizeof(r->entry.maildrop));
		memcpy(r->entry.authenticator, e.authenticator, sizeof(r->entry.authenticator));
		r->rewrite = ki > 0;
	}
	pthread_mutex_unlock(&l2.lock);
	done = orc == SEAL_OPENED || ki + 1 >= l2.keys->n;
out:
	sodium_memzero(&e, sizeof(e));
	sodium_memzero(f, sizeof(*f));
	free(f);
	return done;
}

static void run_get(memcached_st *m, struct l2_op *op)
{
	op->res.status = L2_MISS;
	for (unsigned ki = 0; ki < l2.keys->n; ki++)
		if (get_one(m, op, ki))
			break;
	if (op->res.status == L2_MISS) {
		pthread_mutex_lock(&l2.lock);
		l2.stats.misses++;
		pthread_mutex_unlock(&l2.lock);
	}
}

static void run_put(memcached_st *m, struct l2_op *op)
{
	char ename[SEAL_NAME_SIZE];
	uint8_t value[SEAL_VALUE_MAX];
	size_t len;
	memcached_return_t rc;
	ssize_t si;

	seal_name('a', op->key[0], ename);
	if (seal_entry_seal(&l2.keys->k[0], ename, &op->put, value, &len) == -1)
		return;		/* a userdb string too long: not shared */
	si = server_of(m, ename);
	pthread_mutex_lock(&l2.lock);
	bool allowed = si >= 0 && breaker_allow((size_t)si, mtime_ms());
	if (!allowed)
		l2.stats.breaker_skips++;
	pthread_mutex_unlock(&l2.lock);
	if (!allowed)
		return;
	rc = memcached_set_by_key(m, ename, strlen(ename), ename, strlen(ename),
				  (const char *)value, len, (time_t)op->put_ttl_s, 0);
	server_done((size_t)si, rc);
	pthread_mutex_lock(&l2.lock);
	if (rc == MEMCACHED_SUCCESS || rc == MEMCACHED_STORED)
		l2.stats.puts++;
	else
		l2.stats.put_errors++;
	pthread_mutex_unlock(&l2.lock);
	if (!rc_is_answer(rc))
		memcached_quit(m);
}

/* ---- completions -------------------------------------------------------- */

static void complete(struct l2_op *op)
{
	uint64_t one = 1;

	pthread_mutex_lock(&l2.lock);
	TAILQ_INSERT_TAIL(&l2.done, op, entry);
	pthread_mutex_unlock(&l2.lock);
	if (write(l2.done_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		log_warn("cache: cannot wake the event loop");
}

static void op_free(struct l2_op *op)
{
	sodium_memzero(op, sizeof(*op));
	free(op);
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct l2_op_list batch = TAILQ_HEAD_INITIALIZER(batch);
	struct l2_op *op;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) == -1 && errno != EAGAIN)
		log_warn("cache: eventfd read");
	pthread_mutex_lock(&l2.lock);
	TAILQ_CONCAT(&batch, &l2.done, entry);
	pthread_mutex_unlock(&l2.lock);
	while ((op = TAILQ_FIRST(&batch)) != NULL) {
		TAILQ_REMOVE(&batch, op, entry);
		if (op->kind == OP_GET) {
			pthread_mutex_lock(&l2.lock);
			metrics_hist_add(&l2.stats.get_latency, mtime_us() - op->submitted_us);
			pthread_mutex_unlock(&l2.lock);
			if (op->get_cb != NULL)
				op->get_cb(op->ctx, &op->res);
		} else if (op->kind == OP_FLUSH && op->flush_cb != NULL) {
			op->flush_cb(op->ctx, op->servers_ok, (unsigned)l2.nservers);
		} else if (op->kind == OP_KICK_IN && l2.kick_fn != NULL) {
			l2.kick_fn(op->kick_msg.user);
		}
		op_free(op);
	}
}

static void *worker_main(void *arg)
{
	memcached_st *m = arg;
	struct l2_op *op;

	pthread_mutex_lock(&l2.lock);
	for (;;) {
		while (!l2.stopping && TAILQ_EMPTY(&l2.work))
			pthread_cond_wait(&l2.work_cond, &l2.lock);
		if (l2.stopping)
			break;
		op = TAILQ_FIRST(&l2.work);
		TAILQ_REMOVE(&l2.work, op, entry);
		l2.queued--;
		pthread_mutex_unlock(&l2.lock);
		if (op->kind == OP_GET) {
			run_get(m, op);
			complete(op);
		} else {
			run_put(m, op);
			op_free(op);	/* nobody waits for a PUT */
		}
		pthread_mutex_lock(&l2.lock);
	}
	pthread_mutex_unlock(&l2.lock);
	memcached_free(m);
	return NULL;
}

/* ---- control thread: flushes and the flush-log poll --------------------- */

static void random_hex64(char out[17])
{
	uint64_t v;

	do
		randombytes_buf(&v, sizeof(v));
	while (v == 0);		/* 0 stands for "no generation yet" */
	snprintf(out, 17, "%016llx", (unsigned long long)v);
}

/* May the control thread call server i now? */
static bool ctl_allow(size_t i)
{
	pthread_mutex_lock(&l2.lock);
	bool ok = breaker_allow(i, mtime_ms());
	if (!ok)
		l2.stats.breaker_skips++;
	pthread_mutex_unlock(&l2.lock);
	return ok;
}

/* Remembers a kick id (control thread). */
static void kick_remember(uint64_t id)
{
	l2.kicks_seen[l2.kicks_next] = id;
	l2.kicks_next = (l2.kicks_next + 1) % KICKS_REMEMBERED;
}

static bool kick_seen(uint64_t id)
{
	for (unsigned i = 0; i < KICKS_REMEMBERED; i++)
		if (l2.kicks_seen[i] == id)
			return true;
	return false;
}

/* A sealed kick read from a flush record (control thread): opened under
 * any key of the keyset, checked, and handed to the loop once.  Returns
 * 0, or -1 if it cannot be read. */
static int kick_read(const char *hex, size_t len)
{
	struct seal_kick k;
	enum seal_open_result r = SEAL_BAD_SEAL;
	int64_t now = (int64_t)mtime_wall_ms();

	for (unsigned i = 0; i < l2.keys->n && r != SEAL_OPENED; i++)
		r = seal_kick_open(&l2.keys->k[i], hex, len, &k);
	if (r != SEAL_OPENED) {
		pthread_mutex_lock(&l2.lock);
		if (r == SEAL_BAD_SEAL)
			l2.stats.bad_seal++;
		else
			l2.stats.bad_value++;
		pthread_mutex_unlock(&l2.lock);
		return -1;
	}
	if (k.id == 0 || kick_seen(k.id))
		return 0;
	kick_remember(k.id);
	/* A minute of clock skew either way, as for entries. */
	if (k.issued < now - (FLUSH_RECORD_TTL_S + 60) * 1000ll || k.issued > now + 60000) {
		pthread_mutex_lock(&l2.lock);
		l2.stats.kicks_stale++;
		pthread_mutex_unlock(&l2.lock);
		return 0;
	}
	struct l2_op *op = xcalloc(1, sizeof(*op));
	op->kind = OP_KICK_IN;
	op->kick = true;
	op->kick_msg = k;
	sodium_memzero(&k, sizeof(k));
	pthread_mutex_lock(&l2.lock);
	l2.stats.kicks_received++;
	pthread_mutex_unlock(&l2.lock);
	complete(op);
	return 0;
}

/* Appends a record naming the op's user keys to server i's flush log.
 * Returns 0 or -1. */
static int append_flush_record(memcached_st *one, size_t i, const struct l2_op *op)
{
	char name[64], value[SEAL_MAX_KEYS * (2 * CACHE_KEY_LEN + 1) + 2 + SEAL_KICK_HEX_MAX + 1];
	memcached_return_t rc;
	uint64_t seq = 0;
	size_t vl = 0;

	rc = memcached_increment(one, NAME_SEQ, strlen(NAME_SEQ), 1, &seq);
	if (rc == MEMCACHED_NOTFOUND) {
		rc = memcached_add(one, NAME_SEQ, strlen(NAME_SEQ), "0", 1, 0, 0);
		if (rc_is_answer(rc))
			rc = memcached_increment(one, NAME_SEQ, strlen(NAME_SEQ), 1, &seq);
	}
	if (rc != MEMCACHED_SUCCESS) {
		server_done(i, rc == MEMCACHED_NOTFOUND ? MEMCACHED_PROTOCOL_ERROR : rc);
		memcached_quit(one);
		return -1;
	}
	for (unsigned k = 0; op->has_keys && k < l2.keys->n; k++) {
		if (k > 0)
			value[vl++] = ' ';
		sodium_bin2hex(value + vl, sizeof(value) - vl, op->key[k], CACHE_KEY_LEN);
		vl += 2 * CACHE_KEY_LEN;
	}
	if (op->kick) {
		int n;

		if (vl > 0)
			value[vl++] = ' ';
		memcpy(value + vl, "k=", 2);
		vl += 2;
		n = seal_kick_seal(&l2.keys->k[0], &op->kick_msg, value + vl);
		if (n < 0)
			return -1;	/* l2_kick checked the name */
		vl += (size_t)n;
	}
	snprintf(name, sizeof(name), SEAL_PREFIX "f:%llu", (unsigned long long)seq);
	rc = memcached_set(one, name, strlen(name), value, vl, FLUSH_RECORD_TTL_S, 0);
	server_done(i, rc);
	if (!rc_is_answer(rc)) {
		memcached_quit(one);
		return -1;
	}
	return 0;
}

static void run_flush(memcached_st *ring, memcached_st **one, struct l2_op *op)
{
	char gen[17];
	memcached_return_t rc;

	op->servers_ok = 0;
	if (op->kick)
		kick_remember(op->kick_msg.id);		/* our own: not again */
	if (op->all) {
		/* A new epoch on every server: every entry written before it
		 * stops counting, and every host's poll flushes its L1. */
		for (size_t i = 0; i < l2.nservers; i++) {
			if (!ctl_allow(i))
				continue;
			random_hex64(gen);
			rc = memcached_set(one[i], NAME_EPOCH, strlen(NAME_EPOCH), gen, 16, 0, 0);
			server_done(i, rc);
			if (rc_is_answer(rc))
				op->servers_ok++;
			else
				memcached_quit(one[i]);
		}
		return;
	}
	/* First the user's entry and generation, so that a host that reads
	 * the record finds memcached already without the old entry. */
	bool entry_done = true;
	for (unsigned k = 0; op->has_keys && k < l2.keys->n; k++) {
		char ename[SEAL_NAME_SIZE], gname[SEAL_NAME_SIZE];
		ssize_t si;

		seal_name('a', op->key[k], ename);
		seal_name('g', op->key[k], gname);
		si = server_of(ring, ename);
		if (si < 0 || !ctl_allow((size_t)si)) {
			entry_done = false;
			continue;
		}
		random_hex64(gen);
		rc = memcached_set_by_key(ring, ename, strlen(ename), gname, strlen(gname), gen, 16,
					  0, 0);
		if (rc_is_answer(rc))
			rc = memcached_delete_by_key(ring, ename, strlen(ename), ename,
						     strlen(ename), 0);
		server_done((size_t)si, rc);
		if (!rc_is_answer(rc)) {
			entry_done = false;
			memcached_quit(ring);
		}
	}
	for (size_t i = 0; i < l2.nservers; i++)
		if (ctl_allow(i) && append_flush_record(one[i], i, op) == 0)
			op->servers_ok++;
	/* The user's own server kept the old entry: authctl must not say
	 * that every server took the flush (docs/cluster.md). */
	if (!entry_done && op->servers_ok == l2.nservers)
		op->servers_ok--;
}

/* Flushes L1 as the cluster asks, from the control thread. */
static void l1_flush_all(const char *why, const char *server)
{
	uint64_t n = cache_flush_all(l2.l1);

	if (n == 0 && strcmp(why, "first contact") == 0)
		return;		/* start-up: nothing to say */
	log_info("cache: cluster flush (%s on memcached %s): removed %llu entries", why, server,
		 (unsigned long long)n);
	pthread_mutex_lock(&l2.lock);
	l2.stats.cluster_flush_all++;
	pthread_mutex_unlock(&l2.lock);
}

struct records {
	size_t found;
	size_t users;		/* records that named user keys */
	bool unreadable;
};

/* each_value_fn of apply_records: hex user keys separated by single
 * spaces, each flushed from L1, then perhaps "k=" and a sealed kick; at
 * least one of the two. */
static void record_value(void *ctx, size_t which, const char *v, size_t vl)
{
	struct records *r = ctx;
	uint8_t key[CACHE_KEY_LEN];
	unsigned applied = 0;
	size_t p;

	r->found++;
	for (p = 0; p + 2 * CACHE_KEY_LEN <= vl; p += 2 * CACHE_KEY_LEN + 1) {
		if (seal_parse_keyhex(v + p, 2 * CACHE_KEY_LEN, key) == -1)
			break;
		cache_flush_key(l2.l1, key);
		applied++;
	}
	if (applied > 0)
		r->users++;
	if (p < vl && vl - p > 2 && memcmp(v + p, "k=", 2) == 0 &&
	    kick_read(v + p + 2, vl - p - 2) == 0)
		applied++;
	if (applied == 0)
		r->unreadable = true;	/* a record we cannot read: be safe */
}

/* Reads the records seq_from+1 .. seq_to of server i's flush log and
 * flushes their users from L1.  Returns -1 if one could not be read (the
 * caller flushes everything instead). */
static int apply_records(memcached_st *one, size_t i, uint64_t from, uint64_t to)
{
	char names[FLUSH_RECORDS_MAX][32];
	const char *keys[FLUSH_RECORDS_MAX];
	size_t lens[FLUSH_RECORDS_MAX], n = (size_t)(to - from);
	struct records r = { 0, 0, false };
	memcached_return_t rc;

	for (size_t k = 0; k < n; k++) {
		snprintf(names[k], sizeof(names[k]), SEAL_PREFIX "f:%llu",
			 (unsigned long long)(from + 1 + k));
		keys[k] = names[k];
		lens[k] = strlen(names[k]);
	}
	rc = mget_each(one, NULL, keys, lens, n, record_value, &r);
	server_done(i, rc);
	if (rc != MEMCACHED_SUCCESS) {
		memcached_quit(one);
		return -1;
	}
	pthread_mutex_lock(&l2.lock);
	l2.stats.cluster_flush_users += r.users;
	pthread_mutex_unlock(&l2.lock);
	return r.found == n && !r.unreadable ? 0 : -1;	/* evicted or unreadable: be safe */
}

struct poll_values {
	bool have_epoch, have_seq, bad;
	uint64_t epoch, seq;
};

/* each_value_fn of poll_server: 0 the epoch, 1 the flush log's counter. */
static void poll_value(void *ctx, size_t which, const char *v, size_t vl)
{
	struct poll_values *pv = ctx;
	char num[24];

	if (which == 0) {
		pv->have_epoch = seal_parse_u64hex(v, vl, &pv->epoch) == 0;
		pv->bad |= !pv->have_epoch;
		return;
	}
	/* memcached's counters are decimal, up to 20 digits */
	if (vl == 0 || vl >= sizeof(num)) {
		pv->bad = true;
		return;
	}
	memcpy(num, v, vl);
	num[vl] = '\0';
	while (vl > 0 && num[vl - 1] == ' ')	/* incr pads */
		num[--vl] = '\0';
	pv->have_seq = num_parse_u64(num, 0, UINT64_MAX, &pv->seq) == 0;
	pv->bad |= !pv->have_seq;
}

/* One poll of server i: its epoch and flush log. */
static void poll_server(memcached_st *one, size_t i)
{
	struct server *s = &l2.servers[i];
	const char *keys[2] = { NAME_EPOCH, NAME_SEQ };
	size_t lens[2] = { strlen(NAME_EPOCH), strlen(NAME_SEQ) };
	struct poll_values pv = { false, false, false, 0, 0 };
	memcached_return_t rc;

	if (!ctl_allow(i))
		return;
	rc = mget_each(one, NULL, keys, lens, 2, poll_value, &pv);
	server_done(i, rc);
	pthread_mutex_lock(&l2.lock);
	l2.stats.polls++;
	pthread_mutex_unlock(&l2.lock);
	if (rc != MEMCACHED_SUCCESS) {
		memcached_quit(one);
		return;
	}
	if (pv.bad) {
		/* Not what any authd writes: someone else uses these names.
		 * Treat it as a restart: flush, and start over. */
		pthread_mutex_lock(&l2.lock);
		l2.stats.bad_value++;
		pthread_mutex_unlock(&l2.lock);
		if (s->epoch_known)
			l1_flush_all("unreadable epoch or flush log", s->name);
		s->epoch_known = s->seq_known = false;
		return;
	}
	/* The flush log first: records since the last poll. */
	if (!pv.have_seq)
		pv.seq = 0;
	if (!s->seq_known) {
		/* Records written before this moment are never read: anything
		 * L1 holds may predate one of them.  At start-up L1 is empty
		 * and this costs nothing; later (the server was unreachable,
		 * or answered garbage) it costs one round of backend calls. */
		s->seq = pv.seq;
		s->seq_known = true;
		l1_flush_all("first contact", s->name);
	} else if (pv.seq != s->seq) {
		if (pv.seq < s->seq || pv.seq - s->seq > FLUSH_RECORDS_MAX ||
		    apply_records(one, i, s->seq, pv.seq) == -1) {
			l1_flush_all(pv.seq < s->seq ? "the flush log went back" : "flush log gap",
				     s->name);
			if (pv.seq > s->seq)
				log_warnx("cache: records of memcached %s's flush log could not "
					  "be read: a kick (authctl kick) among them was missed "
					  "here", s->name);
		}
		s->seq = pv.seq;
	}
	/* Then the epoch: a new one is a flush of everyone. */
	if (!pv.have_epoch) {
		char gen[17];

		/* New or restarted server: give it an epoch (add: one host
		 * wins, the others read the winner's at the next poll). */
		random_hex64(gen);
		rc = memcached_add(one, NAME_EPOCH, strlen(NAME_EPOCH), gen, 16, 0, 0);
		server_done(i, rc);
		if (s->epoch_known)
			l1_flush_all("the epoch is gone: restarted", s->name);
		s->epoch_known = false;
		return;
	}
	if (s->epoch_known && pv.epoch != s->epoch)
		l1_flush_all("new epoch", s->name);
	s->epoch = pv.epoch;
	s->epoch_known = true;
}

/* The monotonic time ms from now, for pthread_cond_timedwait on
 * l2.ctl_cond (which waits on CLOCK_MONOTONIC: l2_init). */
static void deadline_in(uint64_t ms, struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *ctl_main(void *arg)
{
	memcached_st *ring = arg, **one = l2.one;
	uint64_t next_poll = 0;
	struct l2_op *op;

	pthread_mutex_lock(&l2.lock);
	while (!l2.stopping) {
		uint64_t now = mtime_ms();

		if ((op = TAILQ_FIRST(&l2.ctl)) != NULL) {
			TAILQ_REMOVE(&l2.ctl, op, entry);
			pthread_mutex_unlock(&l2.lock);
			run_flush(ring, one, op);
			complete(op);
			pthread_mutex_lock(&l2.lock);
			continue;
		}
		if (now >= next_poll) {
			pthread_mutex_unlock(&l2.lock);
			for (size_t i = 0; i < l2.nservers; i++)
				poll_server(one[i], i);
			next_poll = mtime_ms() + l2.cfg.poll_ms;
			pthread_mutex_lock(&l2.lock);
			if (!l2.first_round) {
				l2.first_round = true;
				pthread_cond_broadcast(&l2.ctl_cond);
			}
			continue;
		}
		struct timespec ts;
		deadline_in(next_poll - now, &ts);
		pthread_cond_timedwait(&l2.ctl_cond, &l2.lock, &ts);
	}
	pthread_mutex_unlock(&l2.lock);
	for (size_t i = 0; i < l2.nservers; i++)
		memcached_free(one[i]);
	memcached_free(ring);
	return NULL;
}

/* ---- the loop's side ----------------------------------------------------- */

bool l2_enabled(void)
{
	return l2.enabled;
}

void l2_init(const struct config *conf, struct event_base *base, struct cache *l1)
{
	pthread_condattr_t ca;

	if (conf->cache.nservers == 0)
		return;
	if (l2.keys == NULL)
		fatalx("cache: memcached is set but no cluster key was loaded");
	l2.cfg.timeout_ms = conf->cache.memcached_timeout_ms;
	l2.cfg.backoff_ms = conf->cache.breaker_backoff_ms;
	l2.cfg.poll_ms = conf->cache.flush_poll_ms;
	l2.cfg.failures = conf->cache.breaker_failures;
	l2.l1 = l1;
	l2.nservers = conf->cache.nservers;
	TAILQ_INIT(&l2.work);
	TAILQ_INIT(&l2.ctl);
	TAILQ_INIT(&l2.done);
	l2.tmpl = memcached_create(NULL);
	if (l2.tmpl == NULL)
		fatalx("out of memory (memcached handle)");
	set_behaviours(l2.tmpl);
	/* Consistent hashing: a server that comes or goes moves only its
	 * own share of the names. */
	memcached_behavior_set(l2.tmpl, MEMCACHED_BEHAVIOR_DISTRIBUTION,
			       MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA);
	memcached_behavior_set(l2.tmpl, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1);
	for (size_t i = 0; i < l2.nservers; i++) {
		const struct memcached_server *s = &conf->cache.servers[i];

		if (s->port == 0)
			snprintf(l2.servers[i].name, sizeof(l2.servers[i].name), "%s", s->host);
		else if (strchr(s->host, ':') != NULL)
			snprintf(l2.servers[i].name, sizeof(l2.servers[i].name), "[%s]:%u",
				 s->host, s->port);
		else
			snprintf(l2.servers[i].name, sizeof(l2.servers[i].name), "%s:%u", s->host,
				 s->port);
		l2.one[i] = memcached_create(NULL);
		if (l2.one[i] == NULL)
			fatalx("out of memory (memcached handle)");
		set_behaviours(l2.one[i]);
		if (add_server(l2.tmpl, s) == -1 || add_server(l2.one[i], s) == -1)
			fatalx("cache: memcached %s: cannot add the server", l2.servers[i].name);
	}
	l2.done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (l2.done_fd == -1)
		fatal("eventfd");
	l2.done_ev = event_new(base, l2.done_fd, EV_READ | EV_PERSIST, on_done, NULL);
	if (l2.done_ev == NULL || event_add(l2.done_ev, NULL) == -1)
		fatalx("cannot watch the L2 completions");
	/* The control thread's waits are on the monotonic clock. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_destroy(&l2.ctl_cond);
	pthread_cond_init(&l2.ctl_cond, &ca);
	pthread_condattr_destroy(&ca);

	l2.nworkers = conf->cache.memcached_workers;
	l2.workers = xcalloc(l2.nworkers, sizeof(*l2.workers));
	for (unsigned i = 0; i < l2.nworkers; i++) {
		memcached_st *m = memcached_clone(NULL, l2.tmpl);
		if (m == NULL)
			fatalx("out of memory (memcached handle)");
		if (pthread_create(&l2.workers[i], NULL, worker_main, m) != 0)
			fatalx("cannot start an L2 worker thread");
	}
	memcached_st *ring = memcached_clone(NULL, l2.tmpl);
	if (ring == NULL)
		fatalx("out of memory (memcached handle)");
	if (pthread_create(&l2.ctl_thread, NULL, ctl_main, ring) != 0)
		fatalx("cannot start the L2 control thread");
	/* Start-up, before the loop serves anyone: let the control thread
	 * read every server's flush log once, so that L1 starts from a known
	 * point of each log (a record written later is always applied).
	 * Bounded: each call gives up after memcached-timeout; past the
	 * bound, a server read later flushes L1 at that first contact. */
	struct timespec ts;
	deadline_in(4 * l2.nservers * l2.cfg.timeout_ms + 100, &ts);
	pthread_mutex_lock(&l2.lock);
	while (!l2.first_round)
		if (pthread_cond_timedwait(&l2.ctl_cond, &l2.lock, &ts) != 0)
			break;
	pthread_mutex_unlock(&l2.lock);
	l2.enabled = true;
	log_info("cache: L2 in memcached (%zu server%s), %u key%s, timeout %llums, "
		 "flush poll %llums", l2.nservers, l2.nservers == 1 ? "" : "s", l2.keys->n,
		 l2.keys->n == 1 ? "" : "s (rotation: reading the previous one too)",
		 (unsigned long long)conf->cache.memcached_timeout_ms,
		 (unsigned long long)conf->cache.flush_poll_ms);
}

/* Fills the op's keys and verifiers for every key of the keyset: [0] are
 * the caller's (L1's key is the current key's), the others computed. */
static void op_keys(struct l2_op *op, const uint8_t key[CACHE_KEY_LEN],
		    const uint8_t *verifier, const char *scope, const char *user,
		    const char *password, const char *chain)
{
	memcpy(op->key[0], key, CACHE_KEY_LEN);
	if (verifier != NULL)
		memcpy(op->verifier[0], verifier, CACHE_VERIFIER_LEN);
	for (unsigned k = 1; k < l2.keys->n; k++) {
		seal_user_key(&l2.keys->k[k], scope, user, op->key[k]);
		if (verifier != NULL && password != NULL)
			seal_verifier(&l2.keys->k[k], op->key[k], password, chain,
				      op->verifier[k]);
	}
}

/* Queues op for a worker.  Returns -1 (op not queued) if the queue is full. */
static int submit_work(struct l2_op *op)
{
	pthread_mutex_lock(&l2.lock);
	if (l2.queued >= L2_QUEUE_MAX) {
		l2.stats.queue_full++;
		pthread_mutex_unlock(&l2.lock);
		return -1;
	}
	if (op->kind == OP_GET)
		l2.stats.gets++;
	TAILQ_INSERT_TAIL(&l2.work, op, entry);
	l2.queued++;
	pthread_cond_signal(&l2.work_cond);
	pthread_mutex_unlock(&l2.lock);
	return 0;
}

struct l2_op *l2_get(const uint8_t key[CACHE_KEY_LEN], const uint8_t verifier[CACHE_VERIFIER_LEN],
		     const char *scope, const char *user, const char *password, const char *chain,
		     l2_get_cb *cb, void *ctx)
{
	struct l2_op *op;

	if (!l2.enabled)
		return NULL;
	op = xcalloc(1, sizeof(*op));
	op->kind = OP_GET;
	op->get_cb = cb;
	op->ctx = ctx;
	op->submitted_us = mtime_us();
	op_keys(op, key, verifier, scope, user, password, chain);
	if (submit_work(op) == -1) {
		op_free(op);
		return NULL;
	}
	return op;
}

void l2_cancel(struct l2_op *op)
{
	if (op != NULL)
		op->get_cb = NULL;	/* loop only: the worker never reads it */
}

void l2_put(const uint8_t key[CACHE_KEY_LEN], const uint8_t verifier[CACHE_VERIFIER_LEN],
	    const struct l2_result *from, const struct cache_user *u, uint64_t fresh_ms,
	    uint64_t stale_ms)
{
	struct l2_op *op;
	int64_t now = (int64_t)mtime_wall_ms();
	uint64_t ttl_s = (fresh_ms + stale_ms) / 1000 + 2;

	if (!l2.enabled || !from->writable)
		return;
	op = xcalloc(1, sizeof(*op));
	op->kind = OP_PUT;
	memcpy(op->key[0], key, CACHE_KEY_LEN);
	memcpy(op->put.verifier, verifier, CACHE_VERIFIER_LEN);
	op->put.fresh_until = now + (int64_t)fresh_ms;
	op->put.stale_until = now + (int64_t)(fresh_ms + stale_ms);
	op->put.generation = from->generation;
	op->put.epoch = from->epoch;
	op->put.uid = u->uid;
	op->put.gid = u->gid;
	if (snprintf(op->put.home, sizeof(op->put.home), "%s", u->home ? u->home : "") >=
		    (int)sizeof(op->put.home) ||
	    snprintf(op->put.maildrop, sizeof(op->put.maildrop), "%s",
		     u->maildrop ? u->maildrop : "") >= (int)sizeof(op->put.maildrop) ||
	    snprintf(op->put.authenticator, sizeof(op->put.authenticator), "%s",
		     u->authenticator ? u->authenticator : "") >=
		    (int)sizeof(op->put.authenticator)) {
		op_free(op);	/* too long for an entry: not shared, as in L1 */
		return;
	}
	op->put_ttl_s = (uint32_t)(ttl_s > MC_MAX_RELATIVE_S ? MC_MAX_RELATIVE_S : ttl_s);
	if (submit_work(op) == -1)
		op_free(op);
}

int l2_flush(const uint8_t *key, const char *scope, const char *user, l2_flush_cb *cb,
	     void *ctx)
{
	struct l2_op *op;

	if (!l2.enabled)
		return -1;
	op = xcalloc(1, sizeof(*op));
	op->kind = OP_FLUSH;
	op->flush_cb = cb;
	op->ctx = ctx;
	op->all = key == NULL;
	op->has_keys = key != NULL;
	if (key != NULL)
		op_keys(op, key, NULL, scope, user, NULL, NULL);
	pthread_mutex_lock(&l2.lock);
	if (op->all)
		l2.stats.flush_all_sent++;
	else
		l2.stats.flush_user_sent++;
	TAILQ_INSERT_TAIL(&l2.ctl, op, entry);
	pthread_cond_signal(&l2.ctl_cond);
	pthread_mutex_unlock(&l2.lock);
	return 0;
}

int l2_kick(const char *user, const uint8_t *key, const char *scope, l2_flush_cb *cb,
	    void *ctx)
{
	struct l2_op *op;

	if (!l2.enabled || user == NULL || user[0] == '\0' || strlen(user) > SEAL_KICK_USER_MAX)
		return -1;
	op = xcalloc(1, sizeof(*op));
	op->kind = OP_FLUSH;
	op->flush_cb = cb;
	op->ctx = ctx;
	op->kick = true;
	op->has_keys = key != NULL;
	if (key != NULL)
		op_keys(op, key, NULL, scope, user, NULL, NULL);
	do
		randombytes_buf(&op->kick_msg.id, sizeof(op->kick_msg.id));
	while (op->kick_msg.id == 0);
	op->kick_msg.issued = (int64_t)mtime_wall_ms();
	snprintf(op->kick_msg.user, sizeof(op->kick_msg.user), "%s", user);
	pthread_mutex_lock(&l2.lock);
	l2.stats.kicks_sent++;
	if (key != NULL)
		l2.stats.flush_user_sent++;
	TAILQ_INSERT_TAIL(&l2.ctl, op, entry);
	pthread_cond_signal(&l2.ctl_cond);
	pthread_mutex_unlock(&l2.lock);
	return 0;
}

void l2_set_kick_handler(l2_kick_fn *fn)
{
	l2.kick_fn = fn;
}

void l2_stats_get(struct l2_stats *st)
{
	pthread_mutex_lock(&l2.lock);
	*st = l2.stats;
	pthread_mutex_unlock(&l2.lock);
}

size_t l2_servers(struct l2_server_info *out, size_t max)
{
	size_t n = 0;
	uint64_t now = mtime_ms();

	pthread_mutex_lock(&l2.lock);
	for (; n < l2.nservers && n < max; n++) {
		const struct server *s = &l2.servers[n];

		snprintf(out[n].name, sizeof(out[n].name), "%s", s->name);
		out[n].state = s->state == BREAKER_CLOSED ? "up" :
			       s->state == BREAKER_HALF_OPEN ? "probing" : "skipped";
		if (s->state == BREAKER_OPEN && now >= s->open_until_ms)
			out[n].state = "probing";
		out[n].ok = s->ok;
		out[n].errors = s->errors;
		out[n].opens = s->opens;
	}
	pthread_mutex_unlock(&l2.lock);
	return n;
}

void l2_shutdown(void)
{
	struct l2_op *op;

	if (!l2.enabled)
		return;
	pthread_mutex_lock(&l2.lock);
	l2.stopping = true;
	pthread_cond_broadcast(&l2.work_cond);
	pthread_cond_broadcast(&l2.ctl_cond);
	pthread_mutex_unlock(&l2.lock);
	/* Each call is bounded by memcached-timeout: the joins end soon. */
	for (unsigned i = 0; i < l2.nworkers; i++)
		pthread_join(l2.workers[i], NULL);
	pthread_join(l2.ctl_thread, NULL);
	free(l2.workers);
	l2.workers = NULL;
	for (struct l2_op_list *q = &l2.work; q != NULL; q = q == &l2.work ? &l2.ctl :
		     q == &l2.ctl ? &l2.done : NULL)
		while ((op = TAILQ_FIRST(q)) != NULL) {
			TAILQ_REMOVE(q, op, entry);
			op_free(op);
		}
	event_free(l2.done_ev);
	close(l2.done_fd);
	memcached_free(l2.tmpl);
	l2.enabled = false;
	l2_keys_free();
}
