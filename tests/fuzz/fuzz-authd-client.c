/*
 * fuzz-authd-client.c - libFuzzer harness for authd's request handling,
 * from the bytes a client writes on the protocol socket to the job queued
 * on an authenticator: authd/client.c (line reader, handshake, AUTH and
 * its PLAIN decoding, CANCEL, the admin commands, replies) and
 * authd/request.c (normalisation, cache, coalescing, the chain).
 *
 * client.c is included (its handlers are static) and its real entry point
 * is used: the bytes go into the connection's input buffer and
 * on_read() runs client_process().  The connection is a libevent
 * bufferevent pair, so no socket and no event loop are needed.  What lies
 * beyond the queue is scripted: authenticator_submit() here keeps the job
 * (or refuses it, overloaded), and the harness answers each kept job
 * through request_job_done() as a worker would, with a result chosen by
 * the input: OK (with userdb fields), FAIL, NOUSER (on to the next
 * authenticator) or TEMPFAIL.  Then the client goes away (client_free:
 * whatever is still in flight is cancelled).
 *
 * Input: byte 0: bit 0 the peer is root (administration allowed), bit 1
 * the queue refuses jobs; byte 1: two bits per job for its result; the
 * rest is what the client sends.
 * Properties checked:
 *   - a queued job has a user name that is its own normal form, a
 *     password of passlen bytes (1..AUTH_MAX_PASSWORD, no NUL), a valid
 *     service, terminated rip/lip, a log-token user_log, and is on an
 *     authenticator whose `services` has its service (a chain per service);
 *   - for a user=/pass= request the password is one the client sent;
 *   - every reply line is one of authd's replies, and neither a reply
 *     nor the log holds a password of a queued job (8-byte probes that
 *     hold a byte no fixed text has, unless the text is also in the job's
 *     user name, which they may name, or the client sent it more than
 *     once: in an id, say);
 *   - no leak once the client is gone (ASan), whatever was in flight.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "authd/client.c"
#include "tests/fuzz/logcapture.h"
#include "tests/fuzz/pwleak.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_JOBS 64

static struct job *queued[FUZZ_MAX_JOBS];
static size_t nqueued, nanswered;
static bool refuse_jobs;
/* Passwords of the jobs of this input, for the leak checks. */
static char *seen_pw[FUZZ_MAX_JOBS], *seen_user[FUZZ_MAX_JOBS];
static size_t nseen;

/* ---- what authenticator.c and main.c would do ---------------------------- */

int authenticator_submit(struct authenticator *auth, struct job *job,
			 enum tempfail_reason *reason_r)
{
	if (refuse_jobs || nqueued == FUZZ_MAX_JOBS) {
		*reason_r = TEMPFAIL_OVERLOADED;
		return -1;
	}
	job->auth = auth;
	queued[nqueued++] = job;
	return 0;
}

void authenticator_abandon(struct job *job)
{
	job->flight = NULL;
}

void job_free(struct job *job)
{
	if (job->password != NULL) {
		sodium_memzero(job->password, job->passlen);
		free(job->password);
	}
	free(job);
}

int authd_reload(char *error, size_t size)
{
	snprintf(error, size, "no reload while fuzzing");
	return -1;
}

/* ---- checks ----------------------------------------------------------------- */

static bool terminated(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL;
}

static void check_job(const struct job *job, const uint8_t *in, size_t len)
{
	char norm[AUTH_MAX_USER + 1];

	if (!terminated(job->user, sizeof(job->user)) || !terminated(job->rip, sizeof(job->rip)) ||
	    !terminated(job->lip, sizeof(job->lip)) || !terminated(job->service, sizeof(job->service)) ||
	    !terminated(job->user_log, sizeof(job->user_log)))
		abort();
	if (user_normalize(conf, job->user, norm, sizeof(norm)) == -1 || strcmp(norm, job->user) != 0)
		abort();
	if (job->passlen == 0 || job->passlen > AUTH_MAX_PASSWORD ||
	    strlen(job->password) != job->passlen)
		abort();
	if (!proto_service_valid(job->service))
		abort();
	/* only the authenticators of its service's chain are asked */
	bool in_chain = job->auth->conf->nservices == 0;
	for (size_t i = 0; i < job->auth->conf->nservices; i++)
		in_chain |= strcmp(job->auth->conf->service_list[i], job->service) == 0;
	if (!in_chain)
		abort();
	for (const char *p = job->user_log; *p != '\0'; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			abort();
	/* sent as pass=...: the bytes are in the input (unless escaped:
	 * only an input without '\' or '%' is looked at) */
	if (job->passlen >= 4 && memchr(in, '\\', len) == NULL && memchr(in, '%', len) == NULL &&
	    memmem(in, len, "pass=", 5) != NULL && memmem(in, len, "mech=", 5) == NULL &&
	    memmem(in, len, job->password, job->passlen) == NULL)
		abort();
	if (nseen < FUZZ_MAX_JOBS) {
		seen_pw[nseen] = strdup(job->password);
		seen_user[nseen] = strdup(job->user);
		nseen++;
	}
}

static const uint8_t *cur_in;
static size_t cur_len;

/* How many times the n bytes at s occur in the client's input, ASCII case
 * ignored: user names are logged case-mapped (normalize.c), so a piece of
 * one request's password that is also in another's user name, in other
 * case, is the name's when the log shows it. */
static unsigned in_input(const char *s, size_t n)
{
	unsigned k = 0;

	for (size_t i = 0; i + n <= cur_len; i++)
		if (strncasecmp((const char *)cur_in + i, s, n) == 0)
			k++;
	return k;
}

/* No piece of a password in text (pwleak.h).  Every request's user name
 * (normalised: "@domain" added) may be logged, so a piece that is in any
 * of them, not only in the name of the password's own request, is the
 * name's. */
static void check_no_password(const char *text, size_t len)
{
	size_t n = 1, o = 0;
	char *users;

	for (size_t k = 0; k < nseen; k++)
		n += strlen(seen_user[k]) + 1;
	users = malloc(n);
	if (users == NULL)
		abort();
	for (size_t k = 0; k < nseen; k++) {
		size_t l = strlen(seen_user[k]);

		memcpy(users + o, seen_user[k], l);
		users[o + l] = '\n';	/* never in a password: pieces cannot span names */
		o += l + 1;
	}
	users[o] = '\0';
	for (size_t k = 0; k < nseen; k++)
		if (pwleak_found(text, len, seen_pw[k], users, in_input))
			abort();	/* a password in a reply or the log */
	free(users);
}

static void check_replies(struct evbuffer *out)
{
	static const char *const kinds[] = { "VERSION\t", "OK\t", "FAIL\t", "TEMPFAIL\t", "ERROR\t",
					     "DONE\t", "CACHE\t" };
	size_t len = evbuffer_get_length(out);
	char *text = malloc(len + 1);

	evbuffer_remove(out, text, len);
	text[len] = '\0';
	for (char *line = text; *line != '\0';) {
		char *nl = strchr(line, '\n');
		bool known = false;

		if (nl == NULL)
			abort();	/* a reply without its line end */
		for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
			known |= strncmp(line, kinds[i], strlen(kinds[i])) == 0;
		if (!known)
			abort();
		line = nl + 1;
	}
	char *names_out = pwleak_log(text, len);

	check_no_password(names_out, len);
	free(names_out);
	free(text);
}

/* ---- set-up ----------------------------------------------------------------- */

static const char conf_text[] =
	"[authd]\n"
	"socket = /run/authd/auth\n"
	"master-socket = /run/authd/master\n"
	"lowercase-usernames = yes\n"
	"default-domain = example.org\n"
	"[pop3d]\n"
	"listen = 127.0.0.1:110\n"
	"auth-socket = /run/authd/auth\n"
	"master-auth-socket = /run/authd/master\n"
	"[cache]\n"
	"size = 64K\n"
	"[authenticator smtponly]\n"
	"type = passwd-file\n"
	"path = /etc/pop3d/passwd-smtp\n"
	"services = smtp, submission\n"
	"[authenticator files]\n"
	"type = passwd-file\n"
	"path = /etc/pop3d/passwd\n"
	"default-home = /home/%u\n"
	"[authenticator secure]\n"
	"type = passwd-file\n"
	"path = /etc/pop3d/passwd2\n"
	"require-secured = yes\n"
	"cache = no\n";

static struct config *fconf;
static struct generation gen;
static struct authenticator auths[CONFIG_MAX_AUTHENTICATORS];

static void setup(void)
{
	char err[512];

	if (sodium_init() == -1)
		abort();
	logcap_init();
	fconf = config_load_buffer("/fuzz/authd.conf", (const uint8_t *)conf_text,
				   sizeof(conf_text) - 1, err, sizeof(err));
	if (fconf == NULL) {
		fprintf(stderr, "fuzz config: %s\n", err);
		abort();
	}
	base = event_base_new();
	if (base == NULL)
		abort();
	conf = fconf;
	requests_set_base(base);
	requests_init(fconf, base);
	tickets_init(fconf);
	gen.conf = fconf;
	gen.auths = auths;
	gen.nauths = fconf->nauths;
	for (size_t i = 0; i < fconf->nauths; i++) {
		auths[i].gen = &gen;
		auths[i].conf = &fconf->auths[i];
		auths[i].chain_pos = i;
	}
	requests_set_generation(&gen);
}

/* A worker's answer to queued[i], as the input says. */
static void answer(struct job *job, unsigned what)
{
	switch (what & 3) {
	case 0:
		job->result = AUTH_RESULT_OK;
		job->udb.has_uid = true;
		job->udb.uid = 1000;
		snprintf(job->udb.maildrop, sizeof(job->udb.maildrop), "maildir:~/Maildir");
		break;
	case 1:
		job->result = AUTH_RESULT_FAIL;
		break;
	case 2:
		job->result = AUTH_RESULT_NOUSER;
		break;
	default:
		job->result = AUTH_RESULT_TEMPFAIL;
		job->reason = TEMPFAIL_UNAVAILABLE;
		break;
	}
	request_job_done(job);
	job_free(job);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	struct bufferevent *pair[2];
	struct client *c;
	unsigned script;
	const char *log;

	if (!init) {
		setup();
		init = true;
	}
	if (size < 2 || size > 3 * AUTHD_MAX_LINE)
		return 0;
	logcap_reset();
	cur_in = data + 2;
	cur_len = size - 2;
	refuse_jobs = data[0] & 2;
	script = data[1];
	nqueued = nanswered = nseen = 0;
	/* flush between inputs: a cached answer must not depend on the last */
	requests_cache_flush(NULL, NULL, NULL, NULL);

	if (bufferevent_pair_new(base, 0, pair) == -1)
		abort();
	c = xcalloc(1, sizeof(*c));
	TAILQ_INIT(&c->requests);
	c->bev = pair[0];
	c->pid = 4242;
	c->uid = data[0] & 1 ? 0 : 65534;
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	bufferevent_enable(pair[1], EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&clients, c, entry);
	nclients++;

	/* what the client wrote, arrived in c's input as a read would put it
	 * there (libevent freezes the end of an input buffer against other
	 * writers), then on_read */
	struct evbuffer *in = bufferevent_get_input(c->bev);
	evbuffer_unfreeze(in, 0);
	if (evbuffer_add(in, data + 2, size - 2) == -1)
		abort();
	evbuffer_freeze(in, 0);
	on_read(c->bev, c);

	/* the workers answer; NOUSER may queue the next stage's job */
	bool alive = false;
	TAILQ_FOREACH(c, &clients, entry)
		alive = true;
	for (size_t i = 0; i < nqueued; i++) {
		check_job(queued[i], data + 2, size - 2);
		if (alive) {
			answer(queued[i], script >> (2 * (i % 4)));
			queued[i] = NULL;
		}
	}
	check_replies(bufferevent_get_input(pair[1]));

	/* the client goes away; jobs still out come back abandoned */
	while ((c = TAILQ_FIRST(&clients)) != NULL)
		client_free(c);
	for (size_t i = 0; i < nqueued; i++) {
		if (queued[i] != NULL) {
			queued[i]->result = AUTH_RESULT_FAIL;
			request_job_done(queued[i]);
			job_free(queued[i]);
		}
	}
	bufferevent_free(pair[1]);
	requests_shutdown();
	tickets_shutdown();	/* outstanding tickets: up to 65536 otherwise */
	tickets_init(fconf);
	/* libevent frees a bufferevent in a finalizer, run by the loop */
	event_base_loop(base, EVLOOP_NONBLOCK);
	log = logcap_text();
	char *names_out = pwleak_log(log, strlen(log));

	check_no_password(names_out, strlen(log));
	free(names_out);
	for (size_t k = 0; k < nseen; k++) {
		free(seen_pw[k]);
		free(seen_user[k]);
	}
	return 0;
}
