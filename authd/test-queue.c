/*
 * test-queue.c - unit tests of authenticator.c: the bounded queue, the
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
	conf->auths[0].timeout_ms = timeout_ms;
	return conf;
}

static struct job *new_job(const char *user)
{
	struct job *job = xcalloc(1, sizeof(*job));

	snprintf(job->user, sizeof(job->user), "%s", user);
	job->password = xstrdup("pw");
	job->passlen = 2;
	job->flight = (struct flight *)job;	/* anything non-NULL: somebody waits */
	return job;
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
	UNIT_RUN(test_expired_in_queue_is_not_run);
	UNIT_RUN(test_abandoned_job_is_skipped);
	UNIT_RUN(test_stuck_workers_refuse_then_recover);
	UNIT_RUN(test_retired_generation_waits_for_its_jobs);
	authenticators_shutdown(NULL);
	event_base_free(base);
	return unit_finish();
}
