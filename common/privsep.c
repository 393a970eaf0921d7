/*
 * privsep.c - dropping privileges, one short checked sequence.
 *
 * Code here runs as root.
 */
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
