/*
 * passdb_pam.c - the PAM authenticator.
 *
 * PAM cannot be cancelled, some modules leak, and pam_unix changes the
 * process-wide SIGCHLD disposition while it runs unix_chkpwd.  So authd
 * never loads a PAM module: each worker thread owns one authd-pam-helper
 * process (pam_helper.c) and talks to it with the external helper
 * protocol (passdb_external.c), bounded by the request's deadline.  A
 * helper past its deadline is killed and replaced; it is recycled after
 * max-requests (default 100) to contain module leaks.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/log.h"

#define PAM_HELPER_NAME "authd-pam-helper"

struct pam_backend {
	char *argv[3];		/* helper, service, NULL */
};

/* The helper beside the authd binary (a build tree), else LIBEXECDIR. */
static int find_helper(char *path, size_t size)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash != NULL) {
			*slash = '\0';
			int w = snprintf(path, size, "%s/%s", self, PAM_HELPER_NAME);
			if (w > 0 && (size_t)w < size && access(path, X_OK) == 0)
				return 0;
		}
	}
	snprintf(path, size, "%s/%s", LIBEXECDIR, PAM_HELPER_NAME);
	return access(path, X_OK);
}

/* The helper's path into path; -1 with a message in error if none. */
static int helper_path(char *path, size_t pathsize, char *error, size_t size)
{
	if (find_helper(path, pathsize) == -1) {
		snprintf(error, size, "cannot find %s (looked beside authd and in %s)",
			 PAM_HELPER_NAME, LIBEXECDIR);
		return -1;
	}
	return 0;
}

static int pam_check(const struct auth_conf *ac, char *error, size_t size)
{
	char path[PATH_MAX];

	return helper_path(path, sizeof(path), error, size);
}

static int pam_init(struct authenticator *auth, char *error, size_t size)
{
	struct pam_backend *pb;
	char path[PATH_MAX];

	if (helper_path(path, sizeof(path), error, size) == -1)
		return -1;
	pb = xcalloc(1, sizeof(*pb));
	pb->argv[0] = xstrdup(path);
	pb->argv[1] = xstrdup(auth->conf->pam_service);
	pb->argv[2] = NULL;
	auth->backend = pb->argv;	/* what external_verify() spawns */
	log_info("authenticator %s: PAM service %s through %s", auth->conf->name,
		 auth->conf->pam_service, path);
	return 0;
}

static void pam_deinit(struct authenticator *auth)
{
	char **argv = auth->backend;

	if (argv == NULL)
		return;
	free(argv[0]);
	free(argv[1]);
	/* argv is the first member of the struct pam_backend allocation */
	free(argv);
	auth->backend = NULL;
}

const struct passdb_ops passdb_pam = {
	.type = "pam",
	.check = pam_check,
	.init = pam_init,
	.worker_init = external_worker_init,
	.verify = external_verify,
	.worker_deinit = external_worker_deinit,
	.deinit = pam_deinit,
};
