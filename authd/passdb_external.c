/*
 * passdb_external.c - authenticators that run a program.
 *
 * type = external: each worker thread owns one persistent helper process
 * and sends it one request at a time, NUL-framed (docs/external-helper.md):
 *
 *   request:  user=NAME \0 password=PW \0 service=S \0 rip=IP \0 lip=IP \0
 *             secured=yes|no \0 \0
 *   reply:    result=OK|FAIL|NOUSER|TEMPFAIL \0 [uid=N \0 gid=N \0 home=DIR \0
 *             maildrop=SPEC \0] \0
 *
 * A helper that misses the request's deadline, breaks the framing or dies
 * is killed (its whole process group) and started again for the next
 * request.  With max-requests it is also recycled after N requests.
 *
 * type = checkpassword: the qmail interface, one process per request:
 * "user\0password\0timestamp\0" on fd 3; exit 0 accepts (key=value lines
 * on stdout may give uid, gid, home, maildrop), 1 rejects, 111 is a
 * temporary failure; anything else is logged and treated as temporary.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"

#define HELPER_MAX_REPLY 4096

struct helper {
	struct child child;
	int to_fd, from_fd;		/* our ends: its stdin, its stdout */
	unsigned served;
	uint64_t next_spawn_ms;		/* back-off after a failed start */
};

#define ENV_MAX (8 + CONFIG_MAX_ARGS)

/* glibc's malloc in the PAM helper: no per-thread cache, and every freed
 * block overwritten (perturb), so that what libpam and the PAM modules
 * free (a copy of the password, a password file's read buffer) is wiped
 * (pam_helper.c).  Read by glibc when the helper starts.  Of several
 * GLIBC_TUNABLES entries glibc applies only the last, so this one comes
 * after the `environment` entries: an operator's GLIBC_TUNABLES cannot turn
 * the wiping off (docs/configuration.md says so). */
#define PAM_HELPER_TUNABLES "GLIBC_TUNABLES=glibc.malloc.tcache_count=0:glibc.malloc.perturb=165"
_Static_assert(MEMWIPE_PERTURB_BYTE == 165, "PAM_HELPER_TUNABLES: perturb=MEMWIPE_PERTURB_BYTE");

/* The environment of every helper: nothing from ours, bar a safe PATH, the
 * request's addresses (checkpassword), the authenticator's `environment`
 * key, and PAM_HELPER_TUNABLES for the PAM helper. */
static void build_env(const struct auth_conf *ac, char **envp, char store[][96],
		      const struct job *job)
{
	size_t n = 0;

	snprintf(store[n], sizeof(store[0]), "PATH=/usr/local/bin:/usr/bin:/bin");
	envp[n] = store[n];
	n++;
	if (job != NULL) {
		snprintf(store[n], sizeof(store[0]), "AUTHD_SERVICE=%s", job->service);
		envp[n] = store[n];
		n++;
		snprintf(store[n], sizeof(store[0]), "TCPREMOTEIP=%s", job->rip);
		envp[n] = store[n];
		n++;
		snprintf(store[n], sizeof(store[0]), "TCPLOCALIP=%s", job->lip);
		envp[n] = store[n];
		n++;
	}
	for (size_t i = 0; ac->envp[i] != NULL && n < ENV_MAX - 2; i++)
		envp[n++] = ac->envp[i];
	if (ac->type == AUTH_TYPE_PAM)
		envp[n++] = (char *)PAM_HELPER_TUNABLES;
	envp[n] = NULL;
}

/* The helper's command line: the authenticator's `program`, or what
 * init() put in auth->backend (the PAM helper). */
static char *const *helper_argv(struct authenticator *auth)
{
	return auth->backend != NULL ? auth->backend : auth->conf->argv;
}

static void helper_stop(struct helper *h)
{
	if (h->to_fd != -1)
		close(h->to_fd);
	if (h->from_fd != -1)
		close(h->from_fd);
	h->to_fd = h->from_fd = -1;
	child_kill(&h->child);
}

static int helper_start(struct authenticator *auth, struct helper *h)
{
	int in[2], out[2];
	char *envp[ENV_MAX];
	char store[8][96];

	if (pipe2(in, O_CLOEXEC) == -1)
		return -1;
	if (pipe2(out, O_CLOEXEC) == -1) {
		close(in[0]);
		close(in[1]);
		return -1;
	}
	build_env(auth->conf, envp, store, NULL);
	if (child_spawn(&h->child, helper_argv(auth), in[0], out[1], -1, envp) == -1) {
		log_warn("authenticator %s: cannot start %s", auth->conf->name,
			 helper_argv(auth)[0]);
		close(in[0]);
		close(in[1]);
		close(out[0]);
		close(out[1]);
		return -1;
	}
	close(in[0]);
	close(out[1]);
	h->to_fd = in[1];
	h->from_fd = out[0];
	h->served = 0;
	fcntl(h->to_fd, F_SETFL, O_NONBLOCK);
	fcntl(h->from_fd, F_SETFL, O_NONBLOCK);
	log_debug("authenticator %s: helper pid %ld started", auth->conf->name,
		  (long)h->child.pid);
	return 0;
}

void *external_worker_init(struct authenticator *auth, unsigned index)
{
	struct helper *h = xcalloc(1, sizeof(*h));

	h->child.pid = -1;
	h->child.pidfd = -1;
	h->to_fd = h->from_fd = -1;
	/* Started lazily by the first request. */
	return h;
}

void external_worker_deinit(struct authenticator *auth, void *state)
{
	struct helper *h = state;

	helper_stop(h);
	free(h);
}

static int remaining_ms(uint64_t deadline)
{
	uint64_t now = mtime_ms();

	if (now >= deadline)
		return 0;
	return deadline - now > 60000 ? 60000 : (int)(deadline - now);
}

/* Writes all of buf to fd before the deadline.  Returns 0, or -1 on
 * timeout (errno ETIMEDOUT) or error. */
static int write_all(int fd, const void *buf, size_t len, uint64_t deadline)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == -1 && errno != EAGAIN && errno != EINTR)
			return -1;
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int t = remaining_ms(deadline);
		if (t == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (poll(&pfd, 1, t) == -1 && errno != EINTR)
			return -1;
	}
	return 0;
}

/* Appends a "key=value\0" record; -1 if it does not fit or value holds NUL
 * (impossible: values are C strings). */
static int put_record(char *buf, size_t size, size_t *len, const char *key, const char *value)
{
	size_t k = strlen(key), v = strlen(value);

	if (*len + k + 1 + v + 1 > size)
		return -1;
	memcpy(buf + *len, key, k);
	buf[*len + k] = '=';
	memcpy(buf + *len + k + 1, value, v);
	buf[*len + k + 1 + v] = '\0';
	*len += k + v + 2;
	return 0;
}

/* The framing check of read_reply, on the bytes buf[old..len) that just
 * came after buf[0..old) (*in_key carries the state between calls, true
 * at the start).  Returns len if the reply is complete and ends exactly
 * at len, 0 if it broke the framing (a key not of [a-z_-], a record
 * without '=', bytes after the end), or -1 if more is needed. */
static ssize_t reply_scan(const char *buf, size_t old, size_t len, bool *in_key)
{
	for (size_t i = old; i < len; i++) {
		char c = buf[i];
		if (c == '\0') {
			bool record_start = i == 0 || buf[i - 1] == '\0';
			if (record_start)	/* the empty record: end */
				return i + 1 == len ? (ssize_t)len : 0;
			if (*in_key)
				return 0;	/* a record without '=' */
			*in_key = true;
		} else if (*in_key) {
			if (c == '=')
				*in_key = false;
			else if (!((c >= 'a' && c <= 'z') || c == '_' || c == '-'))
				return 0;
		}
	}
	return -1;
}

/* Reads a reply (records ended by an empty record) until the deadline.
 * Each record must start with a key of [a-z_-] and '=', so a helper that
 * prints anything else is caught at its first byte, not at the deadline.
 * Returns the reply's length (with the final NUL), 0 if the helper broke
 * the framing or closed, -1 on timeout. */
static ssize_t read_reply(int fd, char *buf, size_t size, uint64_t deadline)
{
	size_t len = 0;
	bool in_key = true;

	for (;;) {
		ssize_t n = read(fd, buf + len, size - len);
		if (n > 0) {
			size_t old = len;
			ssize_t r;

			len += (size_t)n;
			r = reply_scan(buf, old, len, &in_key);
			if (r != -1)
				return r;
			if (len == size)
				return 0;		/* too long */
			continue;
		}
		if (n == 0)
			return 0;
		if (errno != EAGAIN && errno != EINTR)
			return 0;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int t = remaining_ms(deadline);
		if (t == 0)
			return -1;
		if (poll(&pfd, 1, t) == -1 && errno != EINTR)
			return 0;
	}
}

/* Parses a reply into job.  A `reason` record (why an account was
 * refused: expired, locked...) is logged.  Returns 0, or -1 if the reply
 * is malformed. */
static int parse_reply(struct authenticator *auth, char *buf, size_t len, struct job *job)
{
	bool have_result = false;

	for (char *rec = buf; rec < buf + len && *rec != '\0'; rec += strlen(rec) + 1) {
		char *eq = strchr(rec, '=');
		if (eq == NULL)
			return -1;
		*eq = '\0';
		const char *key = rec, *value = eq + 1;
		if (strcmp(key, "result") == 0) {
			if (have_result)
				return -1;
			have_result = true;
			if (strcmp(value, "OK") == 0)
				job->result = AUTH_RESULT_OK;
			else if (strcmp(value, "FAIL") == 0)
				job->result = AUTH_RESULT_FAIL;
			else if (strcmp(value, "NOUSER") == 0)
				job->result = AUTH_RESULT_NOUSER;
			else if (strcmp(value, "TEMPFAIL") == 0) {
				job->result = AUTH_RESULT_TEMPFAIL;
				job->reason = TEMPFAIL_UNAVAILABLE;
			} else
				return -1;
		} else if (strcmp(key, "reason") == 0) {
			log_info("authenticator %s: user %s refused: %.64s", auth->conf->name,
				 job->user_log, value);
		} else if (userdb_set_field(&job->udb, key, value) == -1) {
			return -1;
		}
		*eq = '=';
	}
	return have_result ? 0 : -1;
}

void external_verify(struct authenticator *auth, void *state, struct job *job)
{
	struct helper *h = state;
	char req[AUTH_MAX_USER + AUTH_MAX_PASSWORD + 512];
	char reply[HELPER_MAX_REPLY];
	size_t len = 0;
	ssize_t n;

	job->result = AUTH_RESULT_TEMPFAIL;
	job->reason = TEMPFAIL_UNAVAILABLE;
	/* A helper that died since its last request (killed by an operator,
	 * crashed on its own) is replaced before this request, not after. */
	if (h->child.pid != -1 && child_exited(&h->child)) {
		log_warnx("authenticator %s: helper pid %ld exited while idle; restarting it",
			  auth->conf->name, (long)h->child.pid);
		helper_stop(h);
	}
	if (h->child.pid == -1) {
		if (mtime_ms() < h->next_spawn_ms)
			return;
		if (helper_start(auth, h) == -1) {
			h->next_spawn_ms = mtime_ms() + 1000;
			return;
		}
	}
	if (put_record(req, sizeof(req), &len, "user", job->user) == -1 ||
	    put_record(req, sizeof(req), &len, "password", job->password) == -1 ||
	    put_record(req, sizeof(req), &len, "service", job->service) == -1 ||
	    put_record(req, sizeof(req), &len, "rip", job->rip) == -1 ||
	    put_record(req, sizeof(req), &len, "lip", job->lip) == -1 ||
	    put_record(req, sizeof(req), &len, "secured", job->secured ? "yes" : "no") == -1 ||
	    len + 1 > sizeof(req)) {
		job->reason = TEMPFAIL_INTERNAL;
		sodium_memzero(req, sizeof(req));
		return;
	}
	req[len++] = '\0';
	if (write_all(h->to_fd, req, len, job->deadline_ms) == -1) {
		sodium_memzero(req, sizeof(req));
		if (errno == ETIMEDOUT)
			job->reason = TEMPFAIL_TIMEOUT;
		log_warnx("authenticator %s: helper pid %ld %s; restarting it", auth->conf->name,
			  (long)h->child.pid, errno == ETIMEDOUT ? "timed out" : "is gone");
		helper_stop(h);
		return;
	}
	sodium_memzero(req, sizeof(req));
	n = read_reply(h->from_fd, reply, sizeof(reply), job->deadline_ms);
	if (n == -1) {
		job->reason = TEMPFAIL_TIMEOUT;
		log_warnx("authenticator %s: helper pid %ld timed out; killing it",
			  auth->conf->name, (long)h->child.pid);
		helper_stop(h);
		return;
	}
	if (n == 0 || parse_reply(auth, reply, (size_t)n, job) == -1) {
		job->result = AUTH_RESULT_TEMPFAIL;
		job->reason = TEMPFAIL_UNAVAILABLE;
		memset(&job->udb, 0, sizeof(job->udb));
		log_warnx("authenticator %s: helper pid %ld broke the protocol or exited; "
			  "restarting it", auth->conf->name, (long)h->child.pid);
		helper_stop(h);
		return;
	}
	if (auth->conf->max_requests != 0 && ++h->served >= auth->conf->max_requests)
		helper_stop(h);
}

const struct passdb_ops passdb_external = {
	.type = "external",
	.worker_init = external_worker_init,
	.verify = external_verify,
	.worker_deinit = external_worker_deinit,
};

/* ---- checkpassword ------------------------------------------------------ */

/* Parses "key=value" lines from a checkpassword program's stdout. */
static int parse_lines(char *buf, struct job *job)
{
	for (char *save, *line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		if (userdb_set_field(&job->udb, line, eq + 1) == -1)
			return -1;
	}
	return 0;
}

static void checkpassword_verify(struct authenticator *auth, void *state, struct job *job)
{
	char data[AUTH_MAX_USER + AUTH_MAX_PASSWORD + 32];
	char out[HELPER_MAX_REPLY + 1];
	char *envp[ENV_MAX];
	char store[8][96];
	int fd3[2] = { -1, -1 }, so[2] = { -1, -1 };
	struct child ch = { -1, -1 };
	size_t dlen, olen = 0;
	int status, n;
	bool eof = false;

	job->result = AUTH_RESULT_TEMPFAIL;
	job->reason = TEMPFAIL_UNAVAILABLE;
	n = snprintf(data, sizeof(data), "%s%c%s%c%lld%c", job->user, 0, job->password, 0,
		     (long long)time(NULL), 0);
	if (n < 0 || (size_t)n >= sizeof(data)) {
		job->reason = TEMPFAIL_INTERNAL;
		goto out;
	}
	dlen = (size_t)n;
	if (pipe2(fd3, O_CLOEXEC) == -1 || pipe2(so, O_CLOEXEC) == -1) {
		log_warn("authenticator %s: pipe", auth->conf->name);
		goto out;
	}
	build_env(auth->conf, envp, store, job);
	if (child_spawn(&ch, auth->conf->argv, -1, so[1], fd3[0], envp) == -1) {
		log_warn("authenticator %s: cannot start %s", auth->conf->name, auth->conf->argv[0]);
		goto out;
	}
	close(fd3[0]);
	close(so[1]);
	fd3[0] = so[1] = -1;
	fcntl(fd3[1], F_SETFL, O_NONBLOCK);
	fcntl(so[0], F_SETFL, O_NONBLOCK);
	/* The program may exit without reading: a failed write is not fatal. */
	if (write_all(fd3[1], data, dlen, job->deadline_ms) == -1 && errno == ETIMEDOUT) {
		job->reason = TEMPFAIL_TIMEOUT;
		goto out_kill;
	}
	close(fd3[1]);
	fd3[1] = -1;

	/* Collect stdout until EOF, then the exit status, both by the deadline. */
	while (!eof) {
		ssize_t r = read(so[0], out + olen, sizeof(out) - 1 - olen);
		if (r > 0) {
			olen += (size_t)r;
			if (olen == sizeof(out) - 1)
				eof = true;	/* enough: the rest is ignored */
			continue;
		}
		if (r == 0)
			break;
		if (errno != EAGAIN && errno != EINTR)
			break;
		struct pollfd pfd = { .fd = so[0], .events = POLLIN };
		int t = remaining_ms(job->deadline_ms);
		if (t == 0) {
			job->reason = TEMPFAIL_TIMEOUT;
			goto out_kill;
		}
		if (poll(&pfd, 1, t) == -1 && errno != EINTR)
			break;
	}
	out[olen] = '\0';
	if (child_wait(&ch, job->deadline_ms, &status) == -1) {
		job->reason = TEMPFAIL_TIMEOUT;
		goto out_kill;
	}
	switch (status) {
	case 0:
		if (parse_lines(out, job) == -1) {
			log_warnx("authenticator %s: bad userdb field from %s", auth->conf->name,
				  auth->conf->argv[0]);
			memset(&job->udb, 0, sizeof(job->udb));
			break;
		}
		job->result = AUTH_RESULT_OK;
		break;
	case 1:
		job->result = AUTH_RESULT_FAIL;
		break;
	case 111:
		break;
	default:
		log_warnx("authenticator %s: %s exited with status %d", auth->conf->name,
			  auth->conf->argv[0], status);
		break;
	}
	goto out;
out_kill:
	log_warnx("authenticator %s: %s timed out; killed", auth->conf->name,
		  auth->conf->argv[0]);
	child_kill(&ch);
out:
	sodium_memzero(data, sizeof(data));
	for (int i = 0; i < 2; i++) {
		if (fd3[i] != -1)
			close(fd3[i]);
		if (so[i] != -1)
			close(so[i]);
	}
}

const struct passdb_ops passdb_checkpassword = {
	.type = "checkpassword",
	.verify = checkpassword_verify,
};
