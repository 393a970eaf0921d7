/*
 * pam_helper.c - authd-pam-helper: runs PAM transactions for authd.
 *
 *   authd-pam-helper SERVICE
 *
 * Started by authd (passdb_pam.c), one per worker thread; never run by
 * hand.  Reads requests on stdin and answers on stdout in the external
 * helper protocol (docs/external-helper.md): records "key=value\0" ended by
 * an empty record.  One transaction per request: pam_start, PAM_RHOST and
 * PAM_RUSER, pam_authenticate, pam_acct_mgmt, pam_end.  It is a separate
 * process so that PAM modules (which may hang, leak, or change process-wide
 * signal dispositions) never run inside the threaded daemon; authd kills
 * it at the request's deadline.
 *
 * PAM's failure delay is caught by a PAM_FAIL_DELAY callback and not slept
 * here: pop3d applies its own auth-failure-delay without blocking.
 *
 * No password outlives its request (common/memwipe.c): libpam and its
 * modules allocate with plain malloc and offer no hooks, so authd starts
 * us with glibc told to wipe every block freed (passdb_external.c,
 * PAM_HELPER_TUNABLES); we wipe the request, the conversation's answers and
 * the stack the modules used after each request.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <security/pam_appl.h>
#include <sodium.h>

#include "common/limits.h"
#include "common/memwipe.h"

#define REQUEST_MAX (AUTH_MAX_USER + AUTH_MAX_PASSWORD + 512)

struct conv_data {
	const char *user;
	const char *password;
};

/* Supplies the password to "echo off" prompts and the user name to "echo
 * on" ones; informational messages are ignored.  libpam frees resp. */
static int conversation(int n, const struct pam_message **msg, struct pam_response **resp,
			void *appdata)
{
	struct conv_data *cd = appdata;
	struct pam_response *r;

	if (n <= 0 || n > PAM_MAX_NUM_MSG)
		return PAM_CONV_ERR;
	r = calloc((size_t)n, sizeof(*r));
	if (r == NULL)
		return PAM_BUF_ERR;
	for (int i = 0; i < n; i++) {
		const char *answer = NULL;

		switch (msg[i]->msg_style) {
		case PAM_PROMPT_ECHO_OFF: answer = cd->password; break;
		case PAM_PROMPT_ECHO_ON: answer = cd->user; break;
		case PAM_ERROR_MSG:
		case PAM_TEXT_INFO: break;
		default: goto fail;
		}
		if (answer != NULL && (r[i].resp = strdup(answer)) == NULL)
			goto fail;
	}
	*resp = r;
	return PAM_SUCCESS;
fail:
	for (int i = 0; i < n; i++) {
		if (r[i].resp != NULL) {
			sodium_memzero(r[i].resp, strlen(r[i].resp));
			free(r[i].resp);
		}
	}
	free(r);
	return PAM_CONV_ERR;
}

/* Swallows PAM's failure delay (see the top of the file). */
static void no_delay(int retval, unsigned usec_delay, void *appdata)
{
}

static int write_all(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDOUT_FILENO, buf, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void put(char *buf, size_t size, size_t *len, const char *key, const char *value)
{
	int n = snprintf(buf + *len, size - *len, "%s=%s", key, value);

	if (n < 0 || (size_t)n + 1 >= size - *len)
		return;		/* cannot happen with our short values */
	*len += (size_t)n + 1;	/* keep the NUL */
}

/* Reads one request into buf.  Returns its length, 0 at end of input, -1
 * for a malformed or over-long request. */
static ssize_t read_request(char *buf, size_t size)
{
	size_t len = 0;

	for (;;) {
		ssize_t n = read(STDIN_FILENO, buf + len, 1);
		if (n == 0)
			return len == 0 ? 0 : -1;
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		len++;
		if (buf[len - 1] == '\0' && (len == 1 || buf[len - 2] == '\0'))
			return (ssize_t)len;
		if (len == size)
			return -1;
	}
}

static const char *field(char *req, size_t len, const char *key)
{
	size_t klen = strlen(key);

	for (char *p = req; p < req + len && *p != '\0'; p += strlen(p) + 1)
		if (strncmp(p, key, klen) == 0 && p[klen] == '=')
			return p + klen + 1;
	return NULL;
}

static void answer(const char *service, char *req, size_t reqlen)
{
	char out[1024];
	size_t olen = 0;
	const char *user = field(req, reqlen, "user");
	const char *password = field(req, reqlen, "password");
	const char *rip = field(req, reqlen, "rip");
	struct conv_data cd;
	struct pam_conv conv = { conversation, &cd };
	pam_handle_t *pamh = NULL;
	int rc;

	if (user == NULL || password == NULL || password[0] == '\0') {
		put(out, sizeof(out), &olen, "result", "FAIL");
		goto reply;
	}
	cd.user = user;
	cd.password = password;
	rc = pam_start(service, user, &conv, &pamh);
	if (rc != PAM_SUCCESS) {
		put(out, sizeof(out), &olen, "result", "TEMPFAIL");
		goto reply;
	}
	pam_set_item(pamh, PAM_FAIL_DELAY, (const void *)no_delay);
	if (rip != NULL && rip[0] != '\0')
		pam_set_item(pamh, PAM_RHOST, rip);
	pam_set_item(pamh, PAM_RUSER, user);

	rc = pam_authenticate(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	switch (rc) {
	case PAM_SUCCESS:
		break;
	case PAM_USER_UNKNOWN:
		put(out, sizeof(out), &olen, "result", "NOUSER");
		goto out_end;
	case PAM_AUTH_ERR:
	case PAM_CRED_INSUFFICIENT:
	case PAM_MAXTRIES:
		put(out, sizeof(out), &olen, "result", "FAIL");
		goto out_end;
	default:	/* AUTHINFO_UNAVAIL, SYSTEM_ERR, BUF_ERR, ABORT, ... */
		put(out, sizeof(out), &olen, "result", "TEMPFAIL");
		put(out, sizeof(out), &olen, "reason", pam_strerror(pamh, rc));
		goto out_end;
	}

	/* Right password; is the account usable?  A refusal here is a FAIL
	 * with a reason, never a temporary failure. */
	rc = pam_acct_mgmt(pamh, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK);
	if (rc == PAM_ACCT_EXPIRED) {
		put(out, sizeof(out), &olen, "result", "FAIL");
		put(out, sizeof(out), &olen, "reason", "account expired");
		goto out_end;
	}
	if (rc == PAM_NEW_AUTHTOK_REQD) {
		put(out, sizeof(out), &olen, "result", "FAIL");
		put(out, sizeof(out), &olen, "reason", "password expired");
		goto out_end;
	}
	if (rc == PAM_USER_UNKNOWN) {
		put(out, sizeof(out), &olen, "result", "NOUSER");
		goto out_end;
	}
	if (rc != PAM_SUCCESS) {
		put(out, sizeof(out), &olen, "result", "FAIL");
		put(out, sizeof(out), &olen, "reason", pam_strerror(pamh, rc));
		goto out_end;
	}

	put(out, sizeof(out), &olen, "result", "OK");
	{
		/* The user as PAM knows it (a module may map names). */
		const void *item = NULL;
		const char *name = user;
		struct passwd pw, *res = NULL;
		char buf[4096], num[16];

		if (pam_get_item(pamh, PAM_USER, &item) == PAM_SUCCESS && item != NULL)
			name = item;
		if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) == 0 && res != NULL) {
			snprintf(num, sizeof(num), "%u", (unsigned)pw.pw_uid);
			put(out, sizeof(out), &olen, "uid", num);
			snprintf(num, sizeof(num), "%u", (unsigned)pw.pw_gid);
			put(out, sizeof(out), &olen, "gid", num);
			if (strlen(pw.pw_dir) < 500)
				put(out, sizeof(out), &olen, "home", pw.pw_dir);
		}
	}
out_end:
	pam_end(pamh, rc);
reply:
	out[olen++] = '\0';
	if (write_all(out, olen) == -1)
		exit(1);
}

int main(int argc, char **argv)
{
	char req[REQUEST_MAX];
	ssize_t n;

	if (argc != 2) {
		fprintf(stderr, "usage: authd-pam-helper SERVICE (started by authd)\n");
		return 64;
	}
	/* Leave SIGCHLD at its default so pam_unix can reap unix_chkpwd. */
	signal(SIGCHLD, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	while ((n = read_request(req, sizeof(req))) > 0) {
		answer(argv[1], req, (size_t)n);
		sodium_memzero(req, sizeof(req));
		memwipe_stack();	/* what the PAM modules left there */
	}
	return n == 0 ? 0 : 1;
}
