/*
 * test-queue.c - unit tests of authenticator.c and fairq.c: the bounded
 * queue, fair turns between sources, the per-source limit, push-out, the
 * worker pool, deadlines, stuck workers and generations, with a scripted
 * backend instead of a real one.  A real libevent loop carries the
 * completions back, as in authd.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"
#include "tests/unit.h"

/* ---- the scripted backend ------------------------------------------------ */

/* The job's user name says what the backend does: "sleepN" sleeps N ms,
 * "ok..." succeeds, "fail..." fails, "nouser..." is unknown. */
static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER;
static char calls[64][AUTH_MAX_USER + 1];
static unsigned ncalls;

static void fake_verify(struct authenticator *auth, void *state, struct job *job)
{
	pthread_mutex_lock(&calls_lock);
	if (ncalls < 64)
		snprintf(calls[ncalls++], sizeof(calls[0]), "%s", job->user);
	pthread_mutex_unlock(&calls_lock);
	if (strncmp(job->user, "sleep", 5) == 0)
		usleep((useconds_t)atoi(job->user + 5) * 1000);
	if (strncmp(job->user, "fail", 4) == 0)
		job->result = AUTH_RESULT_FAIL;
	else if (strncmp(job->user, "nouser", 6) == 0)
		job->result = AUTH_RESULT_NOUSER;
	else
		job->result = AUTH_RESULT_OK;
}

const struct passdb_ops passdb_passwd_file = { .type = "fake", .verify = fake_verify };
const struct passdb_ops passdb_external = { .type = "fake", .verify = fake_verify };
const struct passdb_ops passdb_checkpassword = { .type = "fake", .verify = fake_verify };
const struct passdb_ops passdb_pam = { .type = "fake", .verify = fake_verify };
const struct passdb_ops passdb_ldap = { .type = "fake", .verify = fake_verify };

void children_kill_all(void)
{
}

/* ---- what request.c would do with completions -------------------------- */

static struct event_base *base;
static struct job *done[256];
static unsigned ndone;

void request_job_done(struct job *job)
{
	/* The job is freed by the caller after this: keep a copy. */
	struct job *copy = xmalloc(sizeof(*copy));

	*copy = *job;
	copy->password = NULL;
	done[ndone++] = copy;
}

static void reset(void)
{
	for (unsigned i = 0; i < ndone; i++)
		free(done[i]);
	ndone = 0;
	ncalls = 0;
}

/* Runs the loop until n completions arrived or 5 s passed. */
static void wait_done(unsigned n)
{
	uint64_t deadline = mtime_ms() + 5000;

	while (ndone < n && mtime_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
}

static struct config *make_config(unsigned workers, unsigned queue_limit, uint64_t timeout_ms)
{
	struct config *conf = xcalloc(1, sizeof(*conf));

	conf->nauths = 1;
	conf->auths[0].name = xstrdup("fake");
	conf->auths[0].type = AUTH_TYPE_PASSWD_FILE;
	conf->auths[0].workers = workers;
	conf->auths[0].queue_limit = queue_limit;
	conf->auths[0].per_source_limit = 1000;
	conf->auths[0].timeout_ms = timeout_ms;
	return conf;
}

static struct job *new_job_from(const char *user, const char *rip)
{
	struct job *job = xcalloc(1, sizeof(*job));

	snprintf(job->user, sizeof(job->user), "%s", user);
	snprintf(job->user_log, sizeof(job->user_log), "%s", user);
	snprintf(job->rip, sizeof(job->rip), "%s", rip);
	job->password = xstrdup("pw");
	job->passlen = 2;
	job->flight = (struct flight *)job;	/* anything non-NULL: somebody waits */
	return job;
}

static struct job *new_job(const char *user)
{
	return new_job_from(user, "");
}

static int submit_from(struct generation *gen, const char *user, const char *rip,
		       enum tempfail_reason *reason_r)
{
	struct job *job = new_job_from(user, rip);
	int rc = authenticator_submit(&gen->auths[0], job, reason_r);

	if (rc == -1)
		job_free(job);
	return rc;
}

/* Waits (at most 1 s) until a worker of gen's authenticator took a job. */
static void wait_busy(struct generation *gen)
{
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&gen->auths[0].lock);
		unsigned busy = gen->auths[0].busy;
		pthread_mutex_unlock(&gen->auths[0].lock);
		if (busy != 0)
			return;
		usleep(1000);
	}
}

static int submit(struct generation *gen, const char *user, enum tempfail_reason *reason_r)
{
	struct job *job = new_job(user);
	int rc = authenticator_submit(&gen->auths[0], job, reason_r);

	if (rc == -1)
		job_free(job);
	return rc;
}

/* ---- tests --------------------------------------------------------------- */

static void test_results_come_back(void)
{
	char err[256];
	enum tempfail_reason r;
	struct generation *gen = generation_start(make_config(2, 16, 2000), err, sizeof(err));

	CHECK(gen != NULL);
	CHECK_INT(submit(gen, "ok1", &r), 0);
	CHECK_INT(submit(gen, "fail1", &r), 0);
	CHECK_INT(submit(gen, "nouser1", &r), 0);
	wait_done(3);
	CHECK_INT(ndone, 3);
	for (unsigned i = 0; i < ndone; i++) {
		if (strcmp(done[i]->user, "ok1") == 0)
			CHECK_INT(done[i]->result, AUTH_RESULT_OK);
		else if (strcmp(done[i]->user, "fail1") == 0)
			CHECK_INT(done[i]->result, AUTH_RESULT_FAIL);
		else
			CHECK_INT(done[i]->result, AUTH_RESULT_NOUSER);
		CHECK(done[i]->finished_us >= done[i]->started_us);
		CHECK(done[i]->started_us >= done[i]->enqueued_us);
	}
	CHECK_INT(gen->jobs, 0);
	generation_retire(gen);
	reset();
}

static void test_fifo_with_one_worker(void)
{
	char err[256], name[16];
	enum tempfail_reason r;
	struct generation *gen = generation_start(make_config(1, 16, 2000), err, sizeof(err));

	CHECK_INT(submit(gen, "sleep50", &r), 0);	/* holds the worker */
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "ok%d", i);
		CHECK_INT(submit(gen, name, &r), 0);
	}
	wait_done(6);
	CHECK_INT(ncalls, 6);
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "ok%d", i);
		CHECK_STR(calls[i + 1], name);
	}
	generation_retire(gen);
	reset();
}

static void test_queue_limit(void)
{
	char err[256];
	enum tempfail_reason r = TEMPFAIL_INTERNAL;
	struct generation *gen = generation_start(make_config(1, 2, 2000), err, sizeof(err));

	CHECK_INT(submit(gen, "sleep200", &r), 0);
	/* wait until the worker took it, so the queue is empty again */
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&gen->auths[0].lock);
		unsigned busy = gen->auths[0].busy;
		pthread_mutex_unlock(&gen->auths[0].lock);
		if (busy != 0)
			break;
		usleep(1000);
	}
	CHECK_INT(submit(gen, "ok1", &r), 0);
	CHECK_INT(submit(gen, "ok2", &r), 0);
	CHECK_INT(submit(gen, "ok3", &r), -1);
	CHECK_INT(r, TEMPFAIL_OVERLOADED);
	wait_done(3);
	CHECK_INT(ndone, 3);
	generation_retire(gen);
	reset();
}

/* A source with many requests waiting delays another by one turn per
 * round, not by all of them. */
static void test_sources_take_turns(void)
{
	char err[256], name[16];
	enum tempfail_reason r;
	struct generation *gen = generation_start(make_config(1, 64, 5000), err, sizeof(err));
	static const char *const order[] = {
		"a0", "b0", "c0", "a1", "b1", "a2", "b2", "a3", "a4", "a5",
	};

	CHECK_INT(submit_from(gen, "sleep50", "192.0.2.1", &r), 0);	/* holds the worker */
	wait_busy(gen);
	for (int i = 0; i < 6; i++) {
		snprintf(name, sizeof(name), "a%d", i);
		CHECK_INT(submit_from(gen, name, "192.0.2.1", &r), 0);
	}
	/* the same /64, and an IPv4-mapped address of another source */
	CHECK_INT(submit_from(gen, "b0", "2001:db8::1", &r), 0);
	CHECK_INT(submit_from(gen, "b1", "2001:db8::ffff:2", &r), 0);
	CHECK_INT(submit_from(gen, "b2", "2001:db8:0:0:1::3", &r), 0);
	CHECK_INT(submit_from(gen, "c0", "::ffff:192.0.2.3", &r), 0);
	wait_done(11);
	CHECK_INT(ncalls, 11);
	/* all wait while sleep50 runs: then one of a, b, c in turn, in the
	 * order they came; a's five more do not delay b's or c's */
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		CHECK_STR(calls[i + 1], order[i]);
	generation_retire(gen);
	reset();
}

static void test_per_source_limit(void)
{
	char err[256];
	enum tempfail_reason r = TEMPFAIL_INTERNAL;
	struct config *conf = make_config(1, 64, 5000);
	struct generation *gen;

	conf->auths[0].per_source_limit = 2;
	gen = generation_start(conf, err, sizeof(err));
	CHECK_INT(submit_from(gen, "sleep100", "192.0.2.1", &r), 0);
	wait_busy(gen);
	/* in a worker counts: one more fits */
	CHECK_INT(submit_from(gen, "ok1", "192.0.2.1", &r), 0);
	CHECK_INT(submit_from(gen, "ok2", "192.0.2.1", &r), -1);
	CHECK_INT(r, TEMPFAIL_OVERLOADED);
	CHECK_INT(gen->auths[0].stats.overload[OVERLOAD_SOURCE_LIMIT], 1);
	/* another source is not affected; an address-less one is one source */
	CHECK_INT(submit_from(gen, "ok3", "192.0.2.2", &r), 0);
	CHECK_INT(submit_from(gen, "ok4", "", &r), 0);
	CHECK_INT(submit_from(gen, "ok5", "", &r), 0);
	CHECK_INT(submit_from(gen, "ok6", "", &r), -1);
	wait_done(5);
	CHECK_INT(ndone, 5);
	/* all done: the source is free again */
	CHECK_INT(submit_from(gen, "ok7", "192.0.2.1", &r), 0);
	CHECK_INT(submit_from(gen, "ok8", "192.0.2.1", &r), 0);
	wait_done(7);
	CHECK_INT(ndone, 7);
	generation_retire(gen);
	reset();
}

/* A full queue makes room for a shorter source by pushing out the newest
 * request of the longest one. */
static void test_full_queue_pushes_out_the_longest_source(void)
{
	char err[256];
	enum tempfail_reason r = TEMPFAIL_INTERNAL;
	struct generation *gen = generation_start(make_config(1, 3, 5000), err, sizeof(err));
	unsigned tempfails = 0;

	CHECK_INT(submit_from(gen, "sleep100", "192.0.2.1", &r), 0);
	wait_busy(gen);
	CHECK_INT(submit_from(gen, "a1", "192.0.2.1", &r), 0);
	CHECK_INT(submit_from(gen, "a2", "192.0.2.1", &r), 0);
	CHECK_INT(submit_from(gen, "a3", "192.0.2.1", &r), 0);	/* full */
	CHECK_INT(submit_from(gen, "b1", "192.0.2.2", &r), 0);	/* pushes out a3 */
	CHECK_INT(gen->auths[0].stats.overload[OVERLOAD_PUSHED_OUT], 1);
	/* a has 2 waiting, b 1: b's next would only trade places */
	CHECK_INT(submit_from(gen, "b2", "192.0.2.2", &r), -1);
	CHECK_INT(r, TEMPFAIL_OVERLOADED);
	CHECK_INT(gen->auths[0].stats.overload[OVERLOAD_QUEUE_FULL], 1);
	CHECK_INT(submit_from(gen, "a4", "192.0.2.1", &r), -1);
	wait_done(5);
	CHECK_INT(ndone, 5);
	for (unsigned i = 0; i < ndone; i++)
		if (done[i]->result == AUTH_RESULT_TEMPFAIL) {
			CHECK_STR(done[i]->user, "a3");
			CHECK_INT(done[i]->reason, TEMPFAIL_OVERLOADED);
			tempfails++;
		}
	CHECK_INT(tempfails, 1);
	CHECK_INT(ncalls, 4);			/* sleep100 a1 b1 a2 */
	CHECK_STR(calls[2], "b1");
	CHECK_INT(gen->jobs, 0);
	generation_retire(gen);
	reset();
}

static void test_source_keys(void)
{
	struct fairq_key a, b;

	fairq_key("2001:db8::1", &a);
	fairq_key("2001:db8::abcd:1", &b);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);		/* one /64 */
	fairq_key("2001:db8:0:1::1", &b);
	CHECK(memcmp(&a, &b, sizeof(a)) != 0);
	fairq_key("fe80::1%eth0", &a);
	fairq_key("fe80::2", &b);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	fairq_key("::ffff:10.1.2.3", &a);
	fairq_key("10.1.2.3", &b);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	fairq_key("10.1.2.4", &b);
	CHECK(memcmp(&a, &b, sizeof(a)) != 0);
	fairq_key("", &a);
	fairq_key(NULL, &b);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	fairq_key("local", &b);
	CHECK(memcmp(&a, &b, sizeof(a)) != 0);
	fairq_key("local", &a);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
}

/* More sources than the table holds share the overflow source. */
static void test_source_table_full(void)
{
	struct fairq *q = fairq_new(2, 8, 0);	/* room for 2 sources */
	struct job jobs[4], *ev, *j;
	struct fairq_key k;
	char ip[32];

	memset(jobs, 0, sizeof(jobs));
	for (int i = 0; i < 2; i++) {
		snprintf(ip, sizeof(ip), "192.0.2.%d", i + 1);
		fairq_key(ip, &k);
		CHECK_INT(fairq_push(q, &jobs[i], &k, &ev), FAIRQ_QUEUED);
	}
	CHECK_INT(fairq_sources(q), 2);
	j = fairq_pop(q);
	CHECK(j == &jobs[0]);
	fairq_key("192.0.2.9", &k);	/* the table is full (one waits, one runs) */
	CHECK_INT(fairq_push(q, &jobs[2], &k, &ev), FAIRQ_QUEUED);
	CHECK(ev == NULL);
	CHECK_INT(fairq_table_full(q), 1);
	CHECK_INT(fairq_sources(q), 3);
	CHECK_INT(fairq_waiting(q), 2);
	fairq_done(q, j);		/* source 1 leaves: its slot is free */
	fairq_key("192.0.2.10", &k);
	CHECK_INT(fairq_push(q, &jobs[3], &k, &ev), FAIRQ_FULL);
	while ((j = fairq_pop(q)) != NULL)
		fairq_done(q, j);
	CHECK_INT(fairq_sources(q), 0);
	fairq_free(&q);
	CHECK(q == NULL);
}

/* A source whose checks keep failing waits behind the others (but gets
 * its share), and is clean again after a success. */
static void test_failing_sources_wait_behind(void)
{
	struct fairq *q = fairq_new(64, 64, 1);
	struct job jobs[40], *ev, *j;
	struct fairq_key a, b;
	bool suspect;
	int n = 0;

	memset(jobs, 0, sizeof(jobs));
	fairq_key("192.0.2.1", &a);	/* the guesser */
	fairq_key("192.0.2.2", &b);	/* a client who logs in right */
	for (int i = 0; i < 20; i++)
		CHECK_INT(fairq_push(q, &jobs[n++], &a, &ev), FAIRQ_QUEUED);
	/* its first FAIRQ_SUSPECT_FAILS checks fail */
	for (int i = 0; i < FAIRQ_SUSPECT_FAILS; i++) {
		CHECK_INT(fairq_ahead(q, &a, &suspect), 20 - i);
		CHECK(!suspect);
		j = fairq_pop(q);
		CHECK(j == &jobs[i]);
		j->result = AUTH_RESULT_FAIL;
		fairq_done(q, j);
	}
	CHECK_INT(fairq_ahead(q, &a, &suspect), 17);
	CHECK(suspect);
	/* a new clean source has nothing ahead of it ... */
	CHECK_INT(fairq_ahead(q, &b, &suspect), 0);
	CHECK(!suspect);
	for (int i = 0; i < 10; i++)
		CHECK_INT(fairq_push(q, &jobs[n++], &b, &ev), FAIRQ_QUEUED);
	/* ... and goes first, but for the guesser's share: one pop in
	 * FAIRQ_SUSPECT_SHARE */
	for (int i = 0; i < 10; i++) {
		j = fairq_pop(q);
		bool from_a = j < &jobs[20];
		CHECK(from_a == (i == FAIRQ_SUSPECT_SHARE - 1));
		j->result = from_a ? AUTH_RESULT_FAIL : AUTH_RESULT_OK;
		fairq_done(q, j);
	}
	/* a suspect waits for every clean job too */
	CHECK_INT(fairq_push(q, &jobs[n++], &b, &ev), FAIRQ_QUEUED);
	CHECK_INT(fairq_ahead(q, &a, &suspect), 16 + 1 + 1);
	CHECK(suspect);
	/* one success makes the guesser clean again: turns as usual */
	while ((j = fairq_pop(q)) != NULL && j >= &jobs[20]) {
		j->result = AUTH_RESULT_OK;
		fairq_done(q, j);
	}
	CHECK(j != NULL);
	j->result = AUTH_RESULT_OK;
	fairq_done(q, j);
	CHECK_INT(fairq_ahead(q, &a, &suspect), 15);
	CHECK(!suspect);
	while ((j = fairq_pop(q)) != NULL)
		fairq_done(q, j);
	CHECK_INT(fairq_sources(q), 0);
	/* a suspect with nothing queued is remembered: refused at admission,
	 * a guesser would otherwise come back clean each time */
	fairq_key("192.0.2.3", &a);
	for (int i = 0; i < FAIRQ_SUSPECT_FAILS; i++)
		CHECK_INT(fairq_push(q, &jobs[i], &a, &ev), FAIRQ_QUEUED);
	for (int i = 0; i < FAIRQ_SUSPECT_FAILS; i++) {
		j = fairq_pop(q);
		j->result = AUTH_RESULT_FAIL;
		fairq_done(q, j);
	}
	CHECK_INT(fairq_sources(q), 0);
	CHECK_INT(fairq_push(q, &jobs[0], &b, &ev), FAIRQ_QUEUED);
	CHECK_INT(fairq_ahead(q, &a, &suspect), 1);
	CHECK(suspect);
	CHECK_INT(fairq_push(q, &jobs[1], &a, &ev), FAIRQ_QUEUED);
	CHECK(fairq_pop(q) == &jobs[0]);	/* the clean one first */
	fairq_done(q, &jobs[0]);
	j = fairq_pop(q);
	CHECK(j == &jobs[1]);
	j->result = AUTH_RESULT_OK;	/* a success: forgotten */
	fairq_done(q, j);
	CHECK_INT(fairq_ahead(q, &a, &suspect), 0);
	CHECK(!suspect);
	fairq_free(&q);
}

/* queue-wait-limit: a request that would wait past it for a worker is
 * refused at once (TEMPFAIL busy), judged by the turns of its source. */
static void test_wait_limit_sheds_at_admission(void)
{
	char err[256];
	enum tempfail_reason r = TEMPFAIL_INTERNAL;
	struct config *conf = make_config(1, 64, 5000);
	struct generation *gen;

	conf->auths[0].queue_wait_limit_ms = 220;
	gen = generation_start(conf, err, sizeof(err));
	/* no measure of the service time yet: admitted */
	CHECK_INT(submit_from(gen, "sleep50", "192.0.2.1", &r), 0);
	wait_done(1);
	CHECK(gen->auths[0].service_ewma_us >= 50000);
	CHECK(gen->auths[0].service_ewma_us < 150000);
	CHECK_INT(submit_from(gen, "sleep50", "192.0.2.1", &r), 0);
	wait_busy(gen);
	/* up to 4 waiting ahead (50 ms each) fit in 220 ms; 5 do not */
	for (int i = 0; i < 5; i++)
		CHECK_INT(submit_from(gen, "sleep50", "192.0.2.1", &r), 0);
	CHECK_INT(submit_from(gen, "sleep50", "192.0.2.1", &r), -1);
	CHECK_INT(r, TEMPFAIL_BUSY);
	CHECK_INT(gen->auths[0].stats.overload[OVERLOAD_WAIT_LIMIT], 1);
	/* another source waits for one turn, not for all of them */
	CHECK_INT(submit_from(gen, "ok1", "192.0.2.2", &r), 0);
	wait_done(8);
	CHECK_INT(ndone, 8);
	/* the queue drained: admitted again */
	CHECK_INT(submit_from(gen, "ok2", "192.0.2.1", &r), 0);
	wait_done(9);
	CHECK_INT(ndone, 9);
	generation_retire(gen);
	reset();
}

/* queue-wait-factor: the wait limit is that many mean service times (here
 * 2 × ~100 ms, under queue-wait-limit's 1 s), and never under
 * AUTHD_QUEUE_WAIT_FLOOR_MS (a 5 ms backend still queues 250 ms). */
static void test_wait_factor(void)
{
	char err[256];
	enum tempfail_reason r = TEMPFAIL_INTERNAL;
	struct config *conf = make_config(1, 64, 5000);
	struct generation *gen;
	int admitted;

	conf->auths[0].queue_wait_limit_ms = 1000;
	conf->auths[0].queue_wait_factor = 2;
	gen = generation_start(conf, err, sizeof(err));
	CHECK_INT(submit_from(gen, "sleep100", "192.0.2.1", &r), 0);
	wait_done(1);
	CHECK_INT(submit_from(gen, "sleep100", "192.0.2.1", &r), 0);
	wait_busy(gen);
	/* 0, 1 and 2 mean service times ahead fit in 2 of them; 3 do not
	 * (queue-wait-limit alone would admit 9) */
	for (int i = 0; i < 3; i++)
		CHECK_INT(submit_from(gen, "sleep100", "192.0.2.1", &r), 0);
	CHECK_INT(submit_from(gen, "sleep100", "192.0.2.1", &r), -1);
	CHECK_INT(r, TEMPFAIL_BUSY);
	wait_done(5);
	CHECK_INT(ndone, 5);
	generation_retire(gen);
	reset();

	conf = make_config(1, 64, 5000);
	conf->auths[0].queue_wait_limit_ms = 1000;
	conf->auths[0].queue_wait_factor = 2;
	gen = generation_start(conf, err, sizeof(err));
	CHECK_INT(submit_from(gen, "sleep5", "192.0.2.1", &r), 0);
	wait_done(1);
	CHECK_INT(submit_from(gen, "sleep5", "192.0.2.1", &r), 0);
	wait_busy(gen);
	/* 2 × ~5 ms would refuse the fourth waiting; the floor admits about
	 * 50 (fewer if sleeping takes longer here) */
	for (admitted = 0; admitted < 120; admitted++)
		if (submit_from(gen, "sleep5", "192.0.2.1", &r) == -1)
			break;
	CHECK(admitted >= 20);
	CHECK(admitted <= 60);
	CHECK_INT(r, TEMPFAIL_BUSY);		/* the wait limit, not queue-limit's 64 */
	wait_done(2 + admitted);
	CHECK_INT(ndone, 2 + admitted);
	generation_retire(gen);
	reset();
}

static void test_expired_in_queue_is_not_run(void)
{
	char err[256];
	enum tempfail_reason r;
	struct generation *gen = generation_start(make_config(1, 8, 100), err, sizeof(err));

	CHECK_INT(submit(gen, "sleep300", &r), 0);	/* past its own deadline too */
	CHECK_INT(submit(gen, "ok-late", &r), 0);	/* waits out its 100 ms */
	wait_done(2);
	CHECK_INT(ndone, 2);
	CHECK_INT(ncalls, 1);				/* the backend never saw ok-late */
	for (unsigned i = 0; i < ndone; i++)
		if (strcmp(done[i]->user, "ok-late") == 0) {
			CHECK_INT(done[i]->result, AUTH_RESULT_TEMPFAIL);
			CHECK_INT(done[i]->reason, TEMPFAIL_TIMEOUT);
		}
	generation_retire(gen);
	reset();
}

static void test_abandoned_job_is_skipped(void)
{
	char err[256];
	enum tempfail_reason r;
	struct generation *gen = generation_start(make_config(1, 8, 2000), err, sizeof(err));
	struct job *job;

	CHECK_INT(submit(gen, "sleep100", &r), 0);
	job = new_job("ok-cancelled");
	CHECK_INT(authenticator_submit(&gen->auths[0], job, &r), 0);
	authenticator_abandon(job);			/* the client went away */
	CHECK(job->flight == NULL);
	wait_done(2);
	CHECK_INT(ncalls, 1);
	generation_retire(gen);
	reset();
}

static void test_stuck_workers_refuse_then_recover(void)
{
	char err[256];
	enum tempfail_reason r = TEMPFAIL_INTERNAL;
	struct generation *gen = generation_start(make_config(1, 8, 50), err, sizeof(err));

	CHECK_INT(submit(gen, "sleep400", &r), 0);
	/* until the worker is past the job's 50 ms deadline, at most 2 s */
	for (int i = 0; i < 2000 && authenticator_stuck(&gen->auths[0], mtime_ms()) == 0; i++)
		usleep(1000);
	CHECK_INT(authenticator_stuck(&gen->auths[0], mtime_ms()), 1);
	CHECK_INT(submit(gen, "ok1", &r), -1);
	CHECK_INT(r, TEMPFAIL_OVERLOADED);
	wait_done(1);					/* the worker is back */
	CHECK_INT(authenticator_stuck(&gen->auths[0], mtime_ms()), 0);
	CHECK_INT(submit(gen, "ok2", &r), 0);
	wait_done(2);
	CHECK_INT(done[1]->result, AUTH_RESULT_OK);
	generation_retire(gen);
	reset();
}

static void test_retired_generation_waits_for_its_jobs(void)
{
	char err[256];
	enum tempfail_reason r;
	struct generation *gen = generation_start(make_config(1, 8, 2000), err, sizeof(err));

	CHECK_INT(submit(gen, "sleep100", &r), 0);
	CHECK(generation_can_retire());
	generation_retire(gen);				/* not stopped: a job is out */
	wait_done(1);					/* stops when it comes back */
	CHECK_INT(ndone, 1);
	CHECK_INT(done[0]->result, AUTH_RESULT_OK);
	reset();
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	log_init("test-queue", LOG_LEVEL_WARN, LOG_TARGET_STDERR, NULL, 0);
	base = event_base_new();
	authenticators_init(base);
	UNIT_RUN(test_results_come_back);
	UNIT_RUN(test_fifo_with_one_worker);
	UNIT_RUN(test_queue_limit);
	UNIT_RUN(test_sources_take_turns);
	UNIT_RUN(test_per_source_limit);
	UNIT_RUN(test_full_queue_pushes_out_the_longest_source);
	UNIT_RUN(test_source_keys);
	UNIT_RUN(test_source_table_full);
	UNIT_RUN(test_failing_sources_wait_behind);
	UNIT_RUN(test_wait_limit_sheds_at_admission);
	UNIT_RUN(test_wait_factor);
	UNIT_RUN(test_expired_in_queue_is_not_run);
	UNIT_RUN(test_abandoned_job_is_skipped);
	UNIT_RUN(test_stuck_workers_refuse_then_recover);
	UNIT_RUN(test_retired_generation_waits_for_its_jobs);
	authenticators_shutdown(NULL);
	event_base_free(base);
	return unit_finish();
}
