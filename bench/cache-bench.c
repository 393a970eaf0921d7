/*
 * cache-bench.c - throughput and latency of cache/cache.c, side by side
 * with the two things it must be judged against, in one run:
 *
 *   floor         the keyed hashes alone (cache_key + cache_verifier): every
 *                 authentication pays them, hit or miss, so they bound any
 *                 lookup from below;
 *   full          hashes + cache_lookup: the real hit path in authd;
 *   table         cache_lookup on precomputed key and verifier: the table
 *                 alone, where the concurrency design shows;
 *   ... mutex     the same two with a single-mutex table of the same layout
 *                 (sets of 8 slots, same entry, same copy-out, CLOCK),
 *                 written below.
 *
 * Each cell runs 1, 2, ... threads (up to the number of CPUs, at least 2)
 * at hit ratios 100 %, 90 % and 50 %, with 1 % of operations followed by an
 * insert (a re-insert of a present user, as a background refresh does).
 * Cells are run in several short rounds, interleaved, and the median round
 * is kept: these machines are noisy, and interleaving exposes every variant
 * to the same noise.  Latency is sampled on every 8th operation.
 *
 *   cache-bench [-d SECONDS] [-k KEYS] [-r ROUNDS]
 *
 * Prints a table and, last, one JSON line with every number and the ratios.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

#include <sodium.h>

#include "cache/cache.h"
#include "common/histogram.h"

#define WAYS CACHE_WAYS
#define INSERT_PER_MILLE 10		/* 1 % of operations insert */
#define SAMPLE_MASK 7			/* time one operation in 8 */
#define MAX_THREADS 16
#define T0 ((int64_t)1 << 40)		/* the bench's fake "now", ms */
#define TTL_MS (3600u * 1000u)

/* ---- the comparison: one mutex over a table of the same layout ---------- */

struct mtx_entry {
	uint8_t key[CACHE_KEY_LEN];
	uint8_t verifier[CACHE_VERIFIER_LEN];
	int64_t fresh_until, stale_until, refresh_at;
	uint32_t uid, gid;
	uint8_t kind, ref;
	char home[CACHE_HOME_MAX + 1];
	char maildrop[CACHE_MAILDROP_MAX + 1];
	char authenticator[CACHE_AUTHENTICATOR_MAX + 1];
};

struct mtx_set {
	struct mtx_entry e[WAYS];
	unsigned hand;
};

struct mtx_table {
	pthread_mutex_t lock;
	struct mtx_set *sets;
	uint64_t nsets;
};

static struct mtx_set *mtx_set_of(struct mtx_table *t, const uint8_t *key)
{
	uint64_t h;

	memcpy(&h, key, sizeof(h));
	return &t->sets[(uint64_t)(((unsigned __int128)h * t->nsets) >> 64)];
}

static enum cache_result mtx_lookup(struct mtx_table *t, const uint8_t *key,
				    const uint8_t *verifier, int64_t now,
				    struct cache_entry *entry_r)
{
	struct mtx_set *set = mtx_set_of(t, key);
	enum cache_result r = CACHE_MISS;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < WAYS; i++) {
		struct mtx_entry *e = &set->e[i];

		if (e->kind == 0 || crypto_verify_32(e->key, key) != 0 ||
		    (e->kind != CACHE_NOUSER &&
		     crypto_verify_32(e->verifier, verifier) != 0) ||
		    now >= e->fresh_until)
			continue;
		e->ref = 1;
		entry_r->kind = e->kind;
		entry_r->fresh_until = e->fresh_until;
		entry_r->stale_until = e->stale_until;
		entry_r->uid = e->uid;
		entry_r->gid = e->gid;
		memcpy(entry_r->home, e->home, sizeof(e->home));
		memcpy(entry_r->maildrop, e->maildrop, sizeof(e->maildrop));
		memcpy(entry_r->authenticator, e->authenticator,
		       sizeof(e->authenticator));
		r = CACHE_HIT;
		break;
	}
	pthread_mutex_unlock(&t->lock);
	return r;
}

static void mtx_insert(struct mtx_table *t, const uint8_t *key,
		       const uint8_t *verifier, const struct cache_user *u,
		       int64_t now)
{
	struct mtx_set *set = mtx_set_of(t, key);
	int target = -1;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < WAYS && target < 0; i++) {
		struct mtx_entry *e = &set->e[i];
		if (e->kind != 0 && crypto_verify_32(e->key, key) == 0 &&
		    crypto_verify_32(e->verifier, verifier) == 0)
			target = (int)i;
	}
	for (unsigned i = 0; i < WAYS && target < 0; i++)
		if (set->e[i].kind == 0 || now >= set->e[i].stale_until)
			target = (int)i;
	while (target < 0) {
		unsigned i = set->hand;
		set->hand = (i + 1) % WAYS;
		if (set->e[i].ref == 0)
			target = (int)i;
		set->e[i].ref = 0;
	}
	struct mtx_entry *e = &set->e[target];
	memset(e, 0, sizeof(*e));
	memcpy(e->key, key, CACHE_KEY_LEN);
	memcpy(e->verifier, verifier, CACHE_VERIFIER_LEN);
	e->kind = CACHE_OK;
	e->fresh_until = e->stale_until = now + TTL_MS;
	e->refresh_at = INT64_MAX;
	e->uid = u->uid;
	e->gid = u->gid;
	snprintf(e->home, sizeof(e->home), "%s", u->home);
	snprintf(e->maildrop, sizeof(e->maildrop), "%s", u->maildrop);
	snprintf(e->authenticator, sizeof(e->authenticator), "%s", u->authenticator);
	pthread_mutex_unlock(&t->lock);
}

/* ---- workload ------------------------------------------------------------ */

enum mode { FLOOR, FULL_SEQLOCK, FULL_MUTEX, TABLE_SEQLOCK, TABLE_MUTEX, MODES };

static const char *const mode_name[MODES] = {
	"floor", "full_seqlock", "full_mutex", "table_seqlock", "table_mutex",
};
static const char *const mode_label[MODES] = {
	"hash floor (key+verifier)", "full hit path, seqlock",
	"full hit path, mutex", "table only, seqlock", "table only, mutex",
};

/* Two cache lines; the workers prefetch the next user one operation
   ahead, so the benchmark's own arrays add no cache miss to the timings. */
struct user {
	_Alignas(64) char name[32];
	uint8_t key[CACHE_KEY_LEN];
	uint8_t verifier[CACHE_VERIFIER_LEN];
};

static struct cache *cache;
static struct mtx_table mtx;
static struct user *present, *absent;
static unsigned nkeys = 100000;
static const char *const password = "correct horse battery staple";
static const struct cache_user userdb = {
	.uid = 1000, .gid = 100, .home = "/home/vmail/example.org/someone",
	.maildrop = "/var/mail/example.org/someone", .authenticator = "passwd-file",
};

struct cell {
	enum mode mode;
	unsigned threads, hit_percent;
	double *mops;			/* one per round */
	uint64_t ops, hits;
	struct histogram lat;		/* ns, all rounds */
};

struct worker {
	pthread_t thread;
	const struct cell *cell;
	unsigned id;
	uint64_t ops, hits;
	struct histogram lat;
};

/* Written before the start barrier, read-only while workers run. */
static uint64_t deadline_ns;
static pthread_barrier_t start_barrier;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One authentication as authd would do it, in the cell's mode. */
static bool one_op(enum mode mode, const struct user *u, uint64_t r)
{
	uint8_t key[CACHE_KEY_LEN], verifier[CACHE_VERIFIER_LEN];
	const uint8_t *k = u->key, *v = u->verifier;
	struct cache_entry e;
	bool hit = false;

	if (mode == FLOOR || mode == FULL_SEQLOCK || mode == FULL_MUTEX) {
		cache_key(cache, "pop3", u->name, key);
		/* cache_key() prefetched the seqlock table's set; give the
		   mutex table the same head start. */
		if (mode == FULL_MUTEX)
			__builtin_prefetch(mtx_set_of(&mtx, key));
		cache_verifier(cache, key, password, NULL, verifier);
		k = key;
		v = verifier;
	}
	switch (mode) {
	case FLOOR:
		hit = key[0] == u->key[0];	/* keeps the hashes live */
		break;
	case FULL_SEQLOCK:
	case TABLE_SEQLOCK:
		hit = cache_lookup(cache, k, v, T0, &e) != CACHE_MISS;
		break;
	case FULL_MUTEX:
	case TABLE_MUTEX:
		hit = mtx_lookup(&mtx, k, v, T0, &e) != CACHE_MISS;
		break;
	case MODES:
		abort();
	}
	if (mode != FLOOR && (r >> 40) % 1000 < INSERT_PER_MILLE) {
		const struct user *w = &present[(r >> 20) % nkeys];
		if (mode == FULL_SEQLOCK || mode == TABLE_SEQLOCK)
			cache_insert(cache, w->key, w->verifier, CACHE_OK, &userdb,
				     T0, TTL_MS, 0);
		else
			mtx_insert(&mtx, w->key, w->verifier, &userdb, T0);
	}
	return hit;
}

static const struct user *pick_user(const struct cell *c, uint64_t r)
{
	bool want_hit = r % 100 < c->hit_percent;

	return want_hit ? &present[(r >> 8) % nkeys] : &absent[(r >> 8) % nkeys];
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const struct cell *c = w->cell;
	uint64_t seed = 0x9e3779b97f4a7c15ull * (w->id + 1) ^ now_ns();

	seed |= 1;
	histogram_reset(&w->lat);
	pthread_barrier_wait(&start_barrier);
	uint64_t r = rnd(&seed);
	const struct user *u = pick_user(c, r);
	for (;;) {
		uint64_t r_next = rnd(&seed);
		const struct user *u_next = pick_user(c, r_next);

		__builtin_prefetch(u_next);
		__builtin_prefetch((const char *)u_next + 64);
		if ((w->ops & SAMPLE_MASK) == 0) {
			uint64_t t = now_ns();
			if (t >= deadline_ns)
				break;
			w->hits += one_op(c->mode, u, r);
			histogram_add(&w->lat, now_ns() - t);
		} else {
			w->hits += one_op(c->mode, u, r);
		}
		w->ops++;
		r = r_next;
		u = u_next;
	}
	return NULL;
}

static void run_cell(struct cell *c, unsigned round, double seconds)
{
	struct worker w[MAX_THREADS];

	pthread_barrier_init(&start_barrier, NULL, c->threads + 1);
	for (unsigned i = 0; i < c->threads; i++) {
		w[i] = (struct worker){ .cell = c, .id = i };
		if (pthread_create(&w[i].thread, NULL, worker_main, &w[i]) != 0) {
			perror("pthread_create");
			exit(1);
		}
	}
	uint64_t t0 = now_ns();
	deadline_ns = t0 + (uint64_t)(seconds * 1e9);
	pthread_barrier_wait(&start_barrier);	/* publishes deadline_ns */
	uint64_t ops = 0;
	for (unsigned i = 0; i < c->threads; i++) {
		pthread_join(w[i].thread, NULL);
		ops += w[i].ops;
		c->ops += w[i].ops;
		c->hits += w[i].hits;
		histogram_merge(&c->lat, &w[i].lat);
	}
	double elapsed = (double)(now_ns() - t0) / 1e9;
	c->mops[round] = (double)ops / elapsed / 1e6;
	pthread_barrier_destroy(&start_barrier);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n)
{
	double s[64];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static struct cell *find(struct cell *cells, unsigned n, enum mode m,
			 unsigned threads, unsigned hit)
{
	for (unsigned i = 0; i < n; i++)
		if (cells[i].mode == m && cells[i].threads == threads &&
		    (m == FLOOR || cells[i].hit_percent == hit))
			return &cells[i];
	return NULL;
}

static void setup(void)
{
	struct cache_settings set = {
		/* Twice as many slots as users, as a sized deployment would. */
		.size = (size_t)nkeys * 2 * CACHE_ENTRY_BYTES,
		.fail_max_per_set = 2, .nouser_max_per_set = 2,
		.refresh_percent = 20,
	};
	const char *error;

	cache = cache_create(&set, &error);
	if (cache == NULL) {
		fprintf(stderr, "cache_create: %s\n", error);
		exit(1);
	}
	/* Same number of sets, and huge pages like the cache's table. */
	mtx.nsets = set.size / (WAYS * CACHE_ENTRY_BYTES);
	size_t bytes = (mtx.nsets * sizeof(*mtx.sets) + (2 << 20) - 1) &
		~(size_t)((2 << 20) - 1);
	mtx.sets = aligned_alloc(2 << 20, bytes);
	if (mtx.sets != NULL) {
		(void)madvise(mtx.sets, bytes, MADV_HUGEPAGE);
		memset(mtx.sets, 0, bytes);
	}
	present = aligned_alloc(64, nkeys * sizeof(*present));
	absent = aligned_alloc(64, nkeys * sizeof(*absent));
	if (mtx.sets == NULL || present == NULL || absent == NULL) {
		perror("calloc");
		exit(1);
	}
	pthread_mutex_init(&mtx.lock, NULL);
	for (unsigned i = 0; i < nkeys; i++) {
		struct user *u = &present[i], *a = &absent[i];

		snprintf(u->name, sizeof(u->name), "user%u@example.org", i);
		snprintf(a->name, sizeof(a->name), "nobody%u@example.org", i);
		cache_key(cache, "pop3", u->name, u->key);
		cache_verifier(cache, u->key, password, NULL, u->verifier);
		cache_key(cache, "pop3", a->name, a->key);
		cache_verifier(cache, a->key, password, NULL, a->verifier);
		cache_insert(cache, u->key, u->verifier, CACHE_OK, &userdb, T0,
			     TTL_MS, 0);
		mtx_insert(&mtx, u->key, u->verifier, &userdb, T0);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: cache-bench [-d SECONDS] [-k KEYS] [-r ROUNDS]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const unsigned hit_ratios[] = { 100, 90, 50 };
	double seconds = 5;
	unsigned rounds = 5, nthreads = 0, thread_counts[8];
	int opt;

	while ((opt = getopt(argc, argv, "d:k:r:")) != -1) {
		char *end;
		errno = 0;
		switch (opt) {
		case 'd':
			seconds = strtod(optarg, &end);
			if (*end != '\0' || !(seconds > 0 && seconds <= 3600))
				usage();
			break;
		case 'k':
			nkeys = (unsigned)strtoul(optarg, &end, 10);
			if (*end != '\0' || errno != 0 || nkeys < 100 || nkeys > 10000000)
				usage();
			break;
		case 'r':
			rounds = (unsigned)strtoul(optarg, &end, 10);
			if (*end != '\0' || rounds < 1 || rounds > 63)
				usage();
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	for (unsigned t = 1; nthreads < 8 && t <= MAX_THREADS &&
	     (t <= 2 || t <= (unsigned)cpus); t *= 2)
		thread_counts[nthreads++] = t;

	setup();

	/* The cells, in the order they are run within each round. */
	unsigned ncells = 0, max_cells = nthreads * (1 + 4 * 3);
	struct cell *cells = calloc(max_cells, sizeof(*cells));
	double *mops = calloc((size_t)max_cells * rounds, sizeof(*mops));
	if (cells == NULL || mops == NULL) {
		perror("calloc");
		return 1;
	}
	for (unsigned ti = 0; ti < nthreads; ti++) {
		for (int m = 0; m < MODES; m++) {
			for (unsigned h = 0; h < 3; h++) {
				if (m == FLOOR && h > 0)
					break;
				struct cell *c = &cells[ncells];
				c->mode = (enum mode)m;
				c->threads = thread_counts[ti];
				c->hit_percent = m == FLOOR ? 0 : hit_ratios[h];
				c->mops = &mops[ncells * rounds];
				histogram_reset(&c->lat);
				ncells++;
			}
		}
	}
	double per_cell = seconds / (ncells * rounds);

	printf("cache-bench: %u users in %" PRIu64 " slots (%.1f MiB per table), "
	       "%ld CPUs, %u rounds x %.0f ms per cell, %d%% inserts, "
	       "latency sampled 1 op in %d\n", nkeys,
	       (uint64_t)mtx.nsets * WAYS,
	       (double)mtx.nsets * WAYS * CACHE_ENTRY_BYTES / (1 << 20), cpus,
	       rounds, per_cell * 1000, INSERT_PER_MILLE / 10, SAMPLE_MASK + 1);
	double load[2][1];
	if (getloadavg(load[0], 1) != 1)
		load[0][0] = -1;
	for (unsigned r = 0; r < rounds; r++)
		for (unsigned i = 0; i < ncells; i++)
			run_cell(&cells[i], r, per_cell);
	if (getloadavg(load[1], 1) != 1)
		load[1][0] = -1;
	/* Other processes skew everything, most of all the 2-thread cells. */
	printf("load average (1 min) before %.2f, after %.2f%s\n", load[0][0],
	       load[1][0], load[1][0] > 0.5 * (double)cpus + 1 ?
	       ": the machine was busy, numbers are unreliable" : "");

	printf("\n%-7s %-5s %-27s %9s %7s %7s %7s %6s\n", "threads", "hit%",
	       "variant", "Mops/s", "p50 ns", "p95 ns", "p99 ns", "hits%");
	for (unsigned i = 0; i < ncells; i++) {
		struct cell *c = &cells[i];
		char hit[8] = "-";
		if (c->mode != FLOOR)
			snprintf(hit, sizeof(hit), "%u", c->hit_percent);
		printf("%-7u %-5s %-27s %9.3f %7" PRIu64 " %7" PRIu64 " %7" PRIu64
		       " %6.1f\n", c->threads, hit, mode_label[c->mode],
		       median(c->mops, rounds), histogram_quantile(&c->lat, 0.50),
		       histogram_quantile(&c->lat, 0.95),
		       histogram_quantile(&c->lat, 0.99),
		       c->mode == FLOOR ? 0.0 : 100.0 * (double)c->hits / (double)c->ops);
	}

	/* The ratios the design is judged by (targets in brackets). */
	unsigned t2 = nthreads > 1 ? thread_counts[1] : 1;
#define M(mode, t, h) median(find(cells, ncells, mode, t, h)->mops, rounds)
	double floor_vs_full_1 = M(FLOOR, 1, 0) / M(FULL_SEQLOCK, 1, 100);
	double floor_vs_full_2 = M(FLOOR, t2, 0) / M(FULL_SEQLOCK, t2, 100);
	double scale_full = M(FULL_SEQLOCK, t2, 100) / M(FULL_SEQLOCK, 1, 100);
	double scale_table = M(TABLE_SEQLOCK, t2, 100) / M(TABLE_SEQLOCK, 1, 100);
	double scale_floor = M(FLOOR, t2, 0) / M(FLOOR, 1, 0);
	double vs_mutex_table = M(TABLE_SEQLOCK, t2, 100) / M(TABLE_MUTEX, t2, 100);
	double vs_mutex_full = M(FULL_SEQLOCK, t2, 100) / M(FULL_MUTEX, t2, 100);
	printf("\nfull hit path / hash floor, time per op:  %.2fx at 1 thread, "
	       "%.2fx at %u  [<= 1.3]\n", floor_vs_full_1, floor_vs_full_2, t2);
	printf("%u threads / 1 thread, 100%% hits:         full %.2fx, table %.2fx, "
	       "floor %.2fx  [>= 1.8]\n", t2, scale_full, scale_table, scale_floor);
	printf("seqlock / mutex at %u threads, 100%% hits:  table %.2fx  [>= 3], "
	       "full path %.2fx\n", t2, vs_mutex_table, vs_mutex_full);
	/* The hashes share nothing: if they do not scale, another process
	   had the CPUs, and every multi-thread number above is suspect. */
	bool noisy = t2 > 1 && scale_floor < 0.85 * t2;
	if (noisy)
		printf("WARNING: the hash floor scaled only %.2fx on %u threads: "
		       "the CPUs were shared, rerun on a quiet machine\n",
		       scale_floor, t2);

	printf("{\"bench\":\"cache\",\"users\":%u,\"slots\":%" PRIu64 ",\"cpus\":%ld,"
	       "\"rounds\":%u,\"ms_per_cell\":%.1f,\"insert_percent\":%d,"
	       "\"loadavg_before\":%.2f,\"loadavg_after\":%.2f,\"cells\":[",
	       nkeys, (uint64_t)mtx.nsets * WAYS, cpus, rounds, per_cell * 1000,
	       INSERT_PER_MILLE / 10, load[0][0], load[1][0]);
	for (unsigned i = 0; i < ncells; i++) {
		struct cell *c = &cells[i];
		printf("%s{\"variant\":\"%s\",\"threads\":%u,\"hit_percent\":%u,"
		       "\"mops\":%.4f,\"p50_ns\":%" PRIu64 ",\"p95_ns\":%" PRIu64
		       ",\"p99_ns\":%" PRIu64 ",\"measured_hit_percent\":%.2f}",
		       i ? "," : "", mode_name[c->mode], c->threads, c->hit_percent,
		       median(c->mops, rounds), histogram_quantile(&c->lat, 0.50),
		       histogram_quantile(&c->lat, 0.95),
		       histogram_quantile(&c->lat, 0.99),
		       c->mode == FLOOR ? 0.0 : 100.0 * (double)c->hits / (double)c->ops);
	}
	printf("],\"ratios\":{\"full_over_floor_time_1t\":%.3f,"
	       "\"full_over_floor_time_%ut\":%.3f,\"scaling_full_%ut\":%.3f,"
	       "\"scaling_table_%ut\":%.3f,\"scaling_floor_%ut\":%.3f,"
	       "\"seqlock_over_mutex_table_%ut\":%.3f,"
	       "\"seqlock_over_mutex_full_%ut\":%.3f},"
	       "\"cpus_shared\":%s,\"targets_met\":{\"full_within_1.3x_floor\":%s,"
	       "\"scaling_ge_1.8x\":%s,\"seqlock_ge_3x_mutex\":%s}}\n",
	       floor_vs_full_1, t2, floor_vs_full_2, t2, scale_full, t2,
	       scale_table, t2, scale_floor, t2, vs_mutex_table, t2, vs_mutex_full,
	       noisy ? "true" : "false", floor_vs_full_1 <= 1.3 ? "true" : "false",
	       scale_full >= 1.8 ? "true" : "false",
	       vs_mutex_table >= 3 ? "true" : "false");
#undef M
	cache_free(&cache);
	free(mtx.sets);
	free(present);
	free(absent);
	free(cells);
	free(mops);
	return 0;
}
