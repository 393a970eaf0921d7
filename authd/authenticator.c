/*
 * authenticator.c - one bounded queue and one worker pool per authenticator.
 *
 * The loop submits jobs; `workers` threads (started once) take them in
 * turn between client sources (fairq.c: round robin over addresses, a
 * per-source limit, the longest source pushed out when the queue is
 * full) and run the backend's verify(), which may block up to the job's
 * deadline.  Finished jobs go on one completion list and an eventfd
 * wakes the loop, which hands them to request.c.  Workers never touch a
 * client or a request.
 *
 * Authenticators belong to a generation (one configuration).  A reload
 * starts a new generation; the old one keeps its workers until its last
 * job has come back, then stops, so nothing in flight is dropped.
 *
 * A worker whose job is more than STUCK_GRACE_MS past its deadline is
 * "stuck".  While every worker of an authenticator is stuck, submit()
 * refuses new jobs at once (they would only wait out their own timeout in
 * the queue); as soon as one worker comes back, jobs are accepted again.
 * The grace covers a backend that honours the deadline itself (LDAP,
 * helpers killed at the deadline): its worker returns a moment after the
 * loop has answered the client, and a request arriving in that moment
 * must be queued, not refused.
 *
 * Admission (queue-wait-limit, queue-wait-factor).  A request that would
 * wait longer than the wait limit for a worker is refused at once, before
 * it is queued.  The limit is queue-wait-factor times the mean service
 * time, at least AUTHD_QUEUE_WAIT_FLOOR_MS and at most queue-wait-limit:
 * with argon2 (tens of ms; default factor 8) that keeps an accepted
 * login's wait under overload within a few hundred ms, so its latency
 * stays within a small multiple of the one at capacity, while a closed
 * loop of a few dozen clients is still served without refusals, a slow
 * backend (seconds) still gets up to queue-wait-limit, and a fast one (a
 * plain compare) is not refused for a burst it drains in milliseconds.
 * The expected wait is the jobs that would be taken before it
 * (fairq_ahead(), by the turns of the fair queue) times the mean time a
 * worker holds a job (an EWMA of the jobs that ran, which includes a
 * passwd-file worker's wait for its hash turn), divided by the workers.
 * So under overload the queue holds about the wait limit of work: the
 * workers never run dry (goodput stays at capacity), an accepted request
 * waits at most about that long whatever the offered load, and the
 * others get their answer at once instead of waiting out `timeout` in a
 * queue that only grows.  (A deadline checked when a worker takes the
 * job, which is what `timeout` was alone, and a CoDel-like drop on the
 * measured queue time both answer a refused request only after it has
 * waited: docs/benchmarks.md has the run before this policy, where the
 * refused waited out `timeout`.)  Such a refusal is TEMPFAIL
 * reason=busy, which pop3d answers at once; for a suspect source
 * (fairq.c: its checks keep failing) it is reason=overloaded, which
 * pop3d delays like a failure, so that a guessing flood cannot retry at
 * once.
 *
 * Refusals (queue full, per-source limit, every worker stuck) and
 * push-outs are answered TEMPFAIL reason=overloaded, counted per reason
 * (auth_stats.overload) and logged through ratelog.c: one line when a
 * burst starts, then a count every RATELOG_INTERVAL_MS, never a line per
 * request.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/memwipe.h"
#include "common/mtime.h"

static const char *const overload_names[OVERLOAD_COUNT] = {
	[OVERLOAD_QUEUE_FULL] = "queue-full",
	[OVERLOAD_SOURCE_LIMIT] = "source-limit",
	[OVERLOAD_STUCK] = "workers-stuck",
	[OVERLOAD_PUSHED_OUT] = "pushed-out",
	[OVERLOAD_WAIT_LIMIT] = "wait-limit",
};

const char *overload_reason_name(enum overload_reason r)
{
	return overload_names[r];
}

/* Finished jobs, from any worker to the loop. */
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static struct job_list done_list = TAILQ_HEAD_INITIALIZER(done_list);
static int done_fd = -1;
static struct event *done_ev;
/* Generations replaced by a reload whose jobs are still out. */
#define MAX_RETIRING 16
/* How long past its job's deadline a worker may take to come back before
 * it counts as stuck. */
#define STUCK_GRACE_MS 100
static struct generation *retiring[MAX_RETIRING];

static void generation_stop(struct generation *gen, bool kill_children);

void job_free(struct job *job)
{
	if (job == NULL)
		return;
	if (job->password != NULL) {
		sodium_memzero(job->password, job->passlen);
		free(job->password);
	}
	sodium_memzero(job, sizeof(*job));
	free(job);
}

static void completion_push(struct job *job)
{
	uint64_t one = 1;

	pthread_mutex_lock(&done_lock);
	TAILQ_INSERT_TAIL(&done_list, job, entry);
	pthread_mutex_unlock(&done_lock);
	/* An eventfd counter only fails to accept a write when it would
	 * overflow, which cannot happen with the loop reading it. */
	if (write(done_fd, &one, sizeof(one)) == -1 && errno != EAGAIN)
		log_warn("authenticator: cannot wake the event loop");
}

/* One of gen's jobs is over: the last one of a retired generation stops
 * it (its workers are all idle then, so the joins do not wait). */
static void generation_job_ended(struct generation *gen)
{
	if (--gen->jobs == 0 && gen->retired) {
		for (size_t i = 0; i < MAX_RETIRING; i++)
			if (retiring[i] == gen)
				retiring[i] = NULL;
		generation_stop(gen, false);
	}
}

static void on_completions(evutil_socket_t fd, short what, void *arg)
{
	struct job_list batch = TAILQ_HEAD_INITIALIZER(batch);
	struct job *job;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) == -1 && errno != EAGAIN)
		log_warn("authenticator: eventfd read");
	pthread_mutex_lock(&done_lock);
	TAILQ_CONCAT(&batch, &done_list, entry);
	pthread_mutex_unlock(&done_lock);
	while ((job = TAILQ_FIRST(&batch)) != NULL) {
		struct authenticator *a = job->auth;
		struct generation *gen = a->gen;

		TAILQ_REMOVE(&batch, job, entry);
		if (job->init_marker) {
			job_free(job);
			generation_job_ended(gen);
			continue;
		}
		metrics_hist_add(&a->stats.queue_wait, job->started_us - job->enqueued_us);
		metrics_hist_add(&a->stats.service, job->finished_us - job->started_us);
		if (job->finished_us > job->started_us) {	/* it ran (not skipped) */
			int64_t d = (int64_t)(job->finished_us - job->started_us) -
				    (int64_t)a->service_ewma_us;
			a->service_ewma_us = a->service_ewma_us == 0 ?
				job->finished_us - job->started_us :
				(uint64_t)((int64_t)a->service_ewma_us + d / 8);
		}
		/* May submit the next stage (jobs++) before this one counts off. */
		request_job_done(job);
		job_free(job);
		generation_job_ended(gen);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct authenticator *auth = w->auth;
	struct job *job;

	if (auth->ops->worker_init != NULL) {
		/* It may wait for the network (LDAP's first connection):
		 * generation_start() counted it as a job, ended here. */
		struct job *marker = xcalloc(1, sizeof(*marker));

		w->state = auth->ops->worker_init(auth, w->index);
		marker->auth = auth;
		marker->init_marker = true;
		completion_push(marker);
	}
	pthread_mutex_lock(&auth->lock);
	for (;;) {
		/* Under the lock: stopping is false whenever a job was taken. */
		job = NULL;
		while (!auth->stopping && (job = fairq_pop(auth->queue)) == NULL)
			pthread_cond_wait(&auth->cond, &auth->lock);
		if (job == NULL)
			break;
		uint64_t now = mtime_ms();
		if (job->abandoned || now >= job->deadline_ms) {
			/* Nobody waits for it any more, or it waited out its
			 * timeout in the queue: do not spend a backend call. */
			job->result = AUTH_RESULT_TEMPFAIL;
			job->reason = TEMPFAIL_TIMEOUT;
			job->started_us = job->finished_us = mtime_us();
			fairq_done(auth->queue, job);
			pthread_mutex_unlock(&auth->lock);
			completion_push(job);
			pthread_mutex_lock(&auth->lock);
			continue;
		}
		w->busy_deadline_ms = job->deadline_ms;
		auth->busy++;
		pthread_mutex_unlock(&auth->lock);

		job->started_us = mtime_us();
		job->result = AUTH_RESULT_TEMPFAIL;
		job->reason = TEMPFAIL_INTERNAL;
		auth->ops->verify(auth, w->state, job);
		job->finished_us = mtime_us();
		if (job->password != NULL)
			sodium_memzero(job->password, job->passlen);
		memwipe_stack();	/* what the backend's calls left of it */

		pthread_mutex_lock(&auth->lock);
		w->busy_deadline_ms = 0;
		auth->busy--;
		fairq_done(auth->queue, job);
		pthread_mutex_unlock(&auth->lock);
		completion_push(job);
		pthread_mutex_lock(&auth->lock);
	}
	pthread_mutex_unlock(&auth->lock);
	if (auth->ops->worker_deinit != NULL)
		auth->ops->worker_deinit(auth, w->state);
	return NULL;
}

static const struct passdb_ops *ops_for(enum auth_type type)
{
	switch (type) {
	case AUTH_TYPE_PASSWD_FILE: return &passdb_passwd_file;
	case AUTH_TYPE_EXTERNAL: return &passdb_external;
	case AUTH_TYPE_CHECKPASSWORD: return &passdb_checkpassword;
	case AUTH_TYPE_PAM: return &passdb_pam;
	case AUTH_TYPE_LDAP: return &passdb_ldap;
	}
	return NULL;
}

void authenticators_init(struct event_base *base)
{
	done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (done_fd == -1)
		fatal("eventfd");
	done_ev = event_new(base, done_fd, EV_READ | EV_PERSIST, on_completions, NULL);
	if (done_ev == NULL || event_add(done_ev, NULL) == -1)
		fatalx("cannot watch the completion eventfd");
}

/* Stops the workers of gen's first n authenticators and frees gen. */
static void stop_auths(struct generation *gen, size_t n, bool kill_children)
{
	struct job *job;

	for (size_t i = 0; i < n; i++) {
		pthread_mutex_lock(&gen->auths[i].lock);
		gen->auths[i].stopping = true;
		pthread_cond_broadcast(&gen->auths[i].cond);
		pthread_mutex_unlock(&gen->auths[i].lock);
	}
	/* At shutdown, workers blocked on a helper return as soon as it is
	 * gone.  (A retired generation has no job out, so nothing to kill.) */
	if (kill_children)
		children_kill_all();
	for (size_t i = 0; i < n; i++) {
		struct authenticator *a = &gen->auths[i];

		for (unsigned w = 0; w < a->nworkers; w++)
			pthread_join(a->workers[w].thread, NULL);
		while ((job = fairq_pop(a->queue)) != NULL) {
			fairq_done(a->queue, job);
			job_free(job);
		}
		fairq_free(&a->queue);
		if (a->ops->deinit != NULL)
			a->ops->deinit(a);
		free(a->workers);
		pthread_mutex_destroy(&a->lock);
		pthread_cond_destroy(&a->cond);
	}
	free(gen->auths);
	config_free(&gen->conf);
	free(gen);
}

static void generation_stop(struct generation *gen, bool kill_children)
{
	log_info("authd: configuration generation with %zu authenticators stopped",
		 gen->nauths);
	stop_auths(gen, gen->nauths, kill_children);
}

int authenticators_check(const struct config *conf, char *error, size_t size)
{
	char err[512];

	for (size_t i = 0; i < conf->nauths; i++) {
		const struct passdb_ops *ops = ops_for(conf->auths[i].type);

		if (ops->check != NULL && ops->check(&conf->auths[i], err, sizeof(err)) == -1) {
			snprintf(error, size, "authenticator %s: %s", conf->auths[i].name, err);
			return -1;
		}
	}
	return 0;
}

struct generation *generation_start(struct config *conf, char *error, size_t size)
{
	struct generation *gen = xcalloc(1, sizeof(*gen));
	sigset_t all, old;
	char err[512];

	gen->conf = conf;
	gen->auths = xcalloc(conf->nauths, sizeof(*gen->auths));
	/* Workers never take signals: the loop thread handles them. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (size_t i = 0; i < conf->nauths; i++) {
		struct authenticator *a = &gen->auths[i];

		a->gen = gen;
		a->conf = &conf->auths[i];
		a->chain_pos = i;
		a->ops = ops_for(a->conf->type);
		pthread_mutex_init(&a->lock, NULL);
		pthread_cond_init(&a->cond, NULL);
		if (a->ops->init != NULL && a->ops->init(a, err, sizeof(err)) == -1) {
			snprintf(error, size, "authenticator %s: %s", a->conf->name, err);
			pthread_mutex_destroy(&a->lock);
			pthread_cond_destroy(&a->cond);
			pthread_sigmask(SIG_SETMASK, &old, NULL);
			gen->conf = NULL;	/* the caller keeps it */
			stop_auths(gen, i, false);	/* no worker started yet: no join */
			return NULL;
		}
		a->queue = fairq_new(a->conf->queue_limit, a->conf->per_source_limit,
				     a->conf->workers);
		a->workers = xcalloc(a->conf->workers, sizeof(*a->workers));
	}
	/* Every backend set up: now the workers (a failed init above has
	 * none to join, which would wait for their backend). */
	for (size_t i = 0; i < conf->nauths; i++) {
		struct authenticator *a = &gen->auths[i];

		a->nworkers = a->conf->workers;
		for (unsigned w = 0; w < a->nworkers; w++) {
			a->workers[w].auth = a;
			a->workers[w].index = w;
			if (a->ops->worker_init != NULL)
				gen->jobs++;	/* until its marker comes back */
			int rc = pthread_create(&a->workers[w].thread, NULL, worker_main,
						&a->workers[w]);
			if (rc != 0) {
				errno = rc;
				fatal("authenticator %s: cannot start worker", a->conf->name);
			}
		}
		log_info("authenticator %s: type %s, %u workers, queue limit %u, per-source limit %u, "
			 "timeout %llums", a->conf->name, a->ops->type, a->nworkers,
			 a->conf->queue_limit, a->conf->per_source_limit,
			 (unsigned long long)a->conf->timeout_ms);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	gen->nauths = conf->nauths;
	return gen;
}

bool generation_can_retire(void)
{
	for (size_t i = 0; i < MAX_RETIRING; i++)
		if (retiring[i] == NULL)
			return true;
	return false;
}

void generation_retire(struct generation *gen)
{
	gen->retired = true;
	if (gen->jobs == 0) {
		generation_stop(gen, false);
		return;
	}
	for (size_t i = 0; i < MAX_RETIRING; i++)
		if (retiring[i] == NULL) {
			retiring[i] = gen;
			return;
		}
	fatalx("generation_retire: no free slot (callers check generation_can_retire)");
}

void authenticators_shutdown(struct generation *current)
{
	struct job *job;

	for (size_t i = 0; i < MAX_RETIRING; i++)
		if (retiring[i] != NULL) {
			generation_stop(retiring[i], true);
			retiring[i] = NULL;
		}
	if (current != NULL)
		generation_stop(current, true);
	while ((job = TAILQ_FIRST(&done_list)) != NULL) {
		TAILQ_REMOVE(&done_list, job, entry);
		job_free(job);
	}
	if (done_ev != NULL)
		event_free(done_ev);
	if (done_fd != -1)
		close(done_fd);
}

static unsigned stuck_locked(struct authenticator *auth, uint64_t now)
{
	unsigned stuck = 0;

	for (unsigned w = 0; w < auth->nworkers; w++)
		if (auth->workers[w].busy_deadline_ms != 0 &&
		    now >= auth->workers[w].busy_deadline_ms + STUCK_GRACE_MS)
			stuck++;
	return stuck;
}

unsigned authenticator_stuck(struct authenticator *auth, uint64_t now_ms)
{
	unsigned stuck;

	pthread_mutex_lock(&auth->lock);
	stuck = stuck_locked(auth, now_ms);
	pthread_mutex_unlock(&auth->lock);
	return stuck;
}

/* Counts an overload event of auth and warns about it, rate-limited
 * (ratelog.c).  Loop thread. */
static void overload_note(struct authenticator *auth, enum overload_reason r,
			  const struct job *job)
{
	char rip[LOG_TOKEN_SIZE(AUTHD_MAX_ADDR)];

	auth->stats.overload[r]++;
	if (!ratelog_allow("authenticator overloaded", auth->conf->name, overload_names[r]))
		return;
	log_warnx("authenticator overloaded: authenticator=%s reason=%s user=%s rip=%s "
		  "(queue-limit %u, per-source-limit %u, queue-wait-limit %llums, "
		  "queue-wait-factor %u, %u workers); "
		  "more are counted and summarised every %us", auth->conf->name,
		  overload_names[r], job->user_log, log_token(job->rip, rip, sizeof(rip)),
		  auth->conf->queue_limit, auth->conf->per_source_limit,
		  (unsigned long long)auth->conf->queue_wait_limit_ms,
		  auth->conf->queue_wait_factor, auth->nworkers,
		  RATELOG_INTERVAL_MS / 1000);
}

/* The longest expected wait admitted (Admission, above).  Under auth->lock. */
static uint64_t wait_limit_us(const struct authenticator *auth)
{
	uint64_t max = auth->conf->queue_wait_limit_ms * 1000, lim;

	if (auth->conf->queue_wait_factor == 0)
		return max;
	lim = auth->conf->queue_wait_factor * auth->service_ewma_us;
	if (lim < AUTHD_QUEUE_WAIT_FLOOR_MS * 1000)
		lim = AUTHD_QUEUE_WAIT_FLOOR_MS * 1000;
	return lim < max ? lim : max;
}

int authenticator_submit(struct authenticator *auth, struct job *job,
			 enum tempfail_reason *reason_r)
{
	uint64_t now = mtime_ms();
	struct fairq_key key;
	struct job *evicted = NULL;
	enum fairq_push r;

	job->auth = auth;
	job->enqueued_us = mtime_us();
	job->deadline_ms = now + auth->conf->timeout_ms;
	fairq_key(job->rip, &key);
	pthread_mutex_lock(&auth->lock);
	if (stuck_locked(auth, now) == auth->nworkers) {
		pthread_mutex_unlock(&auth->lock);
		overload_note(auth, OVERLOAD_STUCK, job);
		*reason_r = TEMPFAIL_OVERLOADED;
		return -1;
	}
	if (auth->conf->queue_wait_limit_ms != 0 && auth->service_ewma_us != 0 &&
	    fairq_waiting(auth->queue) > 0) {
		bool suspect;
		uint64_t ahead = fairq_ahead(auth->queue, &key, &suspect);
		uint64_t wait_us = ahead * auth->service_ewma_us / auth->nworkers;

		if (wait_us > wait_limit_us(auth)) {
			pthread_mutex_unlock(&auth->lock);
			overload_note(auth, OVERLOAD_WAIT_LIMIT, job);
			*reason_r = suspect ? TEMPFAIL_OVERLOADED : TEMPFAIL_BUSY;
			return -1;
		}
	}
	r = fairq_push(auth->queue, job, &key, &evicted);
	if (r == FAIRQ_QUEUED)
		pthread_cond_signal(&auth->cond);
	pthread_mutex_unlock(&auth->lock);
	if (r != FAIRQ_QUEUED) {
		overload_note(auth, r == FAIRQ_FULL ? OVERLOAD_QUEUE_FULL : OVERLOAD_SOURCE_LIMIT,
			      job);
		*reason_r = TEMPFAIL_OVERLOADED;
		return -1;
	}
	auth->gen->jobs++;
	if (evicted != NULL) {
		/* Answered through the completion list like any job, never
		 * from here: our caller is in the middle of its own flight. */
		overload_note(auth, OVERLOAD_PUSHED_OUT, evicted);
		evicted->result = AUTH_RESULT_TEMPFAIL;
		evicted->reason = TEMPFAIL_OVERLOADED;
		evicted->started_us = evicted->finished_us = mtime_us();
		completion_push(evicted);
	}
	return 0;
}

void authenticator_queue_depth(struct authenticator *auth, unsigned *waiting_r,
			       unsigned *sources_r, uint64_t *table_full_r)
{
	pthread_mutex_lock(&auth->lock);
	*waiting_r = fairq_waiting(auth->queue);
	*sources_r = fairq_sources(auth->queue);
	*table_full_r = fairq_table_full(auth->queue);
	pthread_mutex_unlock(&auth->lock);
}

void authenticator_abandon(struct job *job)
{
	struct authenticator *auth = job->auth;

	job->flight = NULL;
	pthread_mutex_lock(&auth->lock);
	job->abandoned = true;
	pthread_mutex_unlock(&auth->lock);
}
