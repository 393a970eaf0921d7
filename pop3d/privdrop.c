/*
 * privdrop.c - pop3d's two privilege drops (front end, session).
 *
 * Linked into all three processes, and runs as root in each: in the
 * master (privdrop_init, privdrop_enabled), and in a child from the
 * master's fork to its drop (privdrop_child_signals, then privdrop_login
 * in a front end, privdrop_session in a session).  The drop itself is
 * common/privsep.c's checked sequence; here are the policies: where the
 * front end goes, and which mailbox owners a session may become.
 * Started as an ordinary user (tests, `make run`), pop3d skips every step:
 * the master logs one warning at start-up and all else behaves the same.
 */
#include <signal.h>
#include <unistd.h>

#include "common/log.h"
#include "common/privsep.h"
#include "pop3d/pop3d.h"

static bool privdrop_root;

void privdrop_init(void)
{
	privdrop_root = geteuid() == 0;
}

bool privdrop_enabled(void)
{
	return privdrop_root;
}

void privdrop_child_signals(void)
{
	signal(SIGCHLD, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	/* Reload and log rotation are the master's business: a signal sent
	 * to every pop3d process (pkill -HUP pop3d) must not end the others. */
	signal(SIGHUP, SIG_IGN);
	signal(SIGUSR1, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
}

int privdrop_login(const char *chroot_dir, uid_t uid, gid_t gid)
{
	if (!privdrop_root)
		return 0;
	if (chroot(chroot_dir) == -1 || chdir("/") == -1) {
		log_warn("front end: chroot %s", chroot_dir);
		return -1;
	}
	privsep_drop(uid, gid);		/* fatal if it does not stick */
	privsep_no_core();
	return 0;
}

int privdrop_session(uid_t uid, gid_t gid, unsigned first_valid_uid, const char **error_r)
{
	if (!privdrop_root)
		return 0;
	if (uid == 0 || gid == 0) {
		*error_r = "refusing to run a session as uid or gid 0";
		return -1;
	}
	if (uid < first_valid_uid) {
		*error_r = "uid below first-valid-uid";
		return -1;
	}
	privsep_drop(uid, gid);		/* fatal if it does not stick */
	return 0;
}
