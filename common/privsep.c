/*
 * privsep.c - dropping privileges, one short checked sequence.
 *
 * Code here runs as root.
 */
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/log.h"
#include "common/privsep.h"

int privsep_lookup(const char *user, uid_t *uid_r, gid_t *gid_r)
{
	struct passwd pw, *res = NULL;
	char buf[4096];

	if (getpwnam_r(user, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
		return -1;
	*uid_r = pw.pw_uid;
	*gid_r = pw.pw_gid;
	return 0;
}

int privsep_lookup_group(const char *group, gid_t *gid_r)
{
	struct group gr, *res = NULL;
	char buf[4096];

	if (getgrnam_r(group, &gr, buf, sizeof(buf), &res) != 0 || res == NULL)
		return -1;
	*gid_r = gr.gr_gid;
	return 0;
}

void privsep_drop(uid_t uid, gid_t gid)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (setgroups(1, &gid) == -1)
		fatal("setgroups(%ld)", (long)gid);
	if (setresgid(gid, gid, gid) == -1)
		fatal("setresgid(%ld)", (long)gid);
	if (setresuid(uid, uid, uid) == -1)
		fatal("setresuid(%ld)", (long)uid);
	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1)
		fatal("getresuid");
	if (ru != uid || eu != uid || su != uid || rg != gid || eg != gid || sg != gid)
		fatalx("privilege drop to %ld:%ld did not stick", (long)uid, (long)gid);
	if (uid != 0 && (setuid(0) != -1 || seteuid(0) != -1))
		fatalx("privilege drop to %ld can be undone", (long)uid);
}

static int int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;

	return (x > y) - (x < y);
}

/* close_range(2) needs Linux 5.9: else each open descriptor, from /proc. */
static int close_from_to(unsigned lo, unsigned hi)
{
	DIR *d;
	struct dirent *e;

	if (close_range(lo, hi, 0) == 0)
		return 0;
	if (errno != ENOSYS || (d = opendir("/proc/self/fd")) == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		char *end;
		long fd = strtol(e->d_name, &end, 10);

		if (*end == '\0' && end != e->d_name && fd >= (long)lo && fd <= (long)hi &&
		    fd != dirfd(d))
			close((int)fd);
	}
	closedir(d);
	return 0;
}

void privsep_close_fds(const int *keep, size_t n)
{
	int sorted[9];
	size_t k = 0;
	unsigned lo = STDERR_FILENO + 1;

	if (n + 1 > sizeof(sorted) / sizeof(sorted[0]))
		fatalx("privsep_close_fds: too many descriptors to keep");
	for (size_t i = 0; i < n; i++)
		if (keep[i] > STDERR_FILENO)
			sorted[k++] = keep[i];
	sorted[k] = log_fds_closing();
	if (sorted[k] > STDERR_FILENO)
		k++;
	qsort(sorted, k, sizeof(sorted[0]), int_cmp);
	for (size_t i = 0; i < k; i++) {
		if ((unsigned)sorted[i] > lo && close_from_to(lo, (unsigned)sorted[i] - 1) == -1)
			fatal("close_range");
		if ((unsigned)sorted[i] >= lo)
			lo = (unsigned)sorted[i] + 1;
	}
	if (close_from_to(lo, ~0U) == -1)
		fatal("close_range");
	log_fds_closed();
}

void privsep_no_core(void)
{
	struct rlimit rl = { 0, 0 };

	if (setrlimit(RLIMIT_CORE, &rl) == -1)
		log_warn("setrlimit(RLIMIT_CORE)");
#ifndef __SANITIZE_ADDRESS__
	/* LeakSanitizer's exit-time check attaches to the process with
	 * ptrace, which a non-dumpable process refuses: skip under ASan. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		log_warn("prctl(PR_SET_DUMPABLE)");
#endif
}
