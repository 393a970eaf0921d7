/*
 * request.c - the life of one authentication request, on the loop thread.
 *
 *   request_start ─► authenticator 1 ─► NOUSER ─► authenticator 2 ─► ...
 *                          │ OK / FAIL / TEMPFAIL          │
 *                          └──────────► reply ◄────────────┘
 *
 * Each stage gets its own timer: the authenticator's `timeout`, counted
 * from the moment the job was queued.  When it fires the client gets
 * TEMPFAIL at once and the job is abandoned: a late result is dropped.
 * A cancelled request (CANCEL, or its client went away) is dropped the
 * same way, silently.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "authd/authd.h"
#include "common/log.h"
#include "common/mtime.h"


static const struct config *conf;
static struct authenticator *chain;
static size_t chain_len;
static struct event_base *loop_base;

static const char *const reason_names[] = {
	[TEMPFAIL_TIMEOUT] = "timeout",
	[TEMPFAIL_OVERLOADED] = "overloaded",
	[TEMPFAIL_UNAVAILABLE] = "unavailable",
	[TEMPFAIL_INTERNAL] = "internal",
};


const char *tempfail_reason_name(enum tempfail_reason r)
{
	return reason_names[r];
}

void requests_init(const struct config *c, struct authenticator *auths, size_t n)
{
	conf = c;
	chain = auths;
	chain_len = n;
}


void requests_set_base(struct event_base *base)
{
	loop_base = base;
}

const char *request_id(const struct request *req)
{
	return req->id;
}

static void request_free(struct request *req)
{
	if (req->job != NULL)
		authenticator_abandon(req->job);
	if (req->timer != NULL)
		event_free(req->timer);
	if (req->password != NULL) {
		sodium_memzero(req->password, req->passlen);
		free(req->password);
	}
	free(req);
}

/* Ends the request: the caller has replied (or the reply is suppressed). */
static void request_finish(struct request *req)
{
	client_request_done(req->client, req);
	request_free(req);
}

static double elapsed_ms(const struct request *req)
{
	return (double)(mtime_us() - req->started_us) / 1000.0;
}

static void reply_tempfail(struct request *req, struct authenticator *a,
			   enum tempfail_reason reason)
{
	a->stats.tempfail++;
	if (reason == TEMPFAIL_TIMEOUT)
		a->stats.timeout++;
	else if (reason == TEMPFAIL_OVERLOADED)
		a->stats.overloaded++;
	log_warnx("auth tempfail: user=%s service=%s rip=%s authenticator=%s reason=%s "
		  "time=%.1fms", req->user, req->service, req->rip, a->conf->name,
		  reason_names[reason], elapsed_ms(req));
	client_reply_tempfail(req->client, req->id, reason);
	request_finish(req);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct request *req = arg;
	struct authenticator *a = &chain[req->stage];

	/* request_free() abandons the job: its result will be dropped. */
	reply_tempfail(req, a, TEMPFAIL_TIMEOUT);
}

/* Queues the request on chain[req->stage]. */
static void request_dispatch(struct request *req)
{
	struct authenticator *a = &chain[req->stage];
	enum tempfail_reason reason;
	struct job *job;
	struct timeval tv;

	a->stats.requests++;
	job = xcalloc(1, sizeof(*job));
	job->req = req;
	memcpy(job->user, req->user, sizeof(job->user));
	job->password = xmalloc(req->passlen + 1);
	memcpy(job->password, req->password, req->passlen + 1);
	job->passlen = req->passlen;
	memcpy(job->service, req->service, sizeof(job->service));
	memcpy(job->rip, req->rip, sizeof(job->rip));
	memcpy(job->lip, req->lip, sizeof(job->lip));
	job->secured = req->secured;
	if (authenticator_submit(a, job, &reason) == -1) {
		job_free(job);
		reply_tempfail(req, a, reason);
		return;
	}
	req->job = job;
	MTIME_TV(tv, a->conf->timeout_ms);
	event_add(req->timer, &tv);
}

/* Fills the fields the backend left out from the authenticator's defaults. */
static void apply_defaults(const struct auth_conf *ac, struct userdb *udb)
{
	if (!udb->has_uid && ac->default_uid != NULL && ac->default_uid[0] != '\0')
		userdb_set_field(udb, "uid", ac->default_uid);
	if (!udb->has_gid && ac->default_gid != NULL && ac->default_gid[0] != '\0')
		userdb_set_field(udb, "gid", ac->default_gid);
	if (udb->home[0] == '\0' && ac->default_home != NULL && ac->default_home[0] != '\0')
		userdb_set_field(udb, "home", ac->default_home);
	if (udb->maildrop[0] == '\0' && ac->default_maildrop != NULL &&
	    ac->default_maildrop[0] != '\0')
		userdb_set_field(udb, "maildrop", ac->default_maildrop);
}

void request_job_done(struct job *job)
{
	struct request *req = job->req;
	struct authenticator *a = job->auth;
	char ticket[2 * AUTHD_TICKET_BYTES + 1];

	if (req == NULL)
		return;		/* timed out or cancelled: nobody waits */
	req->job = NULL;
	event_del(req->timer);

	switch (job->result) {
	case AUTH_RESULT_OK:
		a->stats.ok++;
		apply_defaults(a->conf, &job->udb);
		ticket_issue(req->user, &job->udb, client_pid(req->client), ticket);
		log_info("auth ok: user=%s service=%s rip=%s authenticator=%s time=%.1fms",
			 req->user, req->service, req->rip, a->conf->name, elapsed_ms(req));
		client_reply_ok(req->client, req->id, req->user, &job->udb, a->conf->name, ticket);
		sodium_memzero(ticket, sizeof(ticket));
		request_finish(req);
		return;
	case AUTH_RESULT_FAIL:
		a->stats.fail++;
		break;
	case AUTH_RESULT_NOUSER:
		a->stats.nouser++;
		if (req->stage + 1 < chain_len) {
			req->stage++;
			request_dispatch(req);
			return;
		}
		break;
	case AUTH_RESULT_TEMPFAIL:
		reply_tempfail(req, a, job->reason);
		return;
	}
	/* Fixed format for fail2ban: see authd(8). */
	log_info("auth failed: user=%s service=%s rip=%s authenticator=%s time=%.1fms",
		 req->user, req->service, req->rip, a->conf->name, elapsed_ms(req));
	client_reply_fail(req->client, req->id);
	request_finish(req);
}

struct request *request_new(struct client *c, const struct request_params *p)
{
	struct request *req = xcalloc(1, sizeof(*req));

	req->client = c;
	req->started_us = mtime_us();
	snprintf(req->id, sizeof(req->id), "%s", p->id);
	snprintf(req->service, sizeof(req->service), "%s", p->service);
	snprintf(req->rip, sizeof(req->rip), "%s", p->rip != NULL ? p->rip : "");
	snprintf(req->lip, sizeof(req->lip), "%s", p->lip != NULL ? p->lip : "");
	req->secured = p->secured;
	req->password = p->password;
	req->passlen = p->passlen;
	req->timer = evtimer_new(loop_base, on_timeout, req);
	if (req->timer == NULL)
		fatalx("out of memory (timer)");

	if (user_normalize(conf, p->user, req->user, sizeof(req->user)) == -1 ||
	    req->passlen == 0) {
		/* No such name can exist, or an empty password: reject without
		 * asking any backend.  Logged like any other failure. */
		log_info("auth failed: user=(invalid) service=%s rip=%s authenticator=none "
			 "time=0.0ms", req->service, req->rip);
		client_reply_fail(c, req->id);
		request_free(req);
		return NULL;
	}
	return req;
}

void request_run(struct request *req)
{
	request_dispatch(req);
}

void request_cancel(struct request *req)
{
	request_free(req);
}
