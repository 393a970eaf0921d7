/*
 * privsep.h - the privilege-drop sequence both daemons use.
 */
#ifndef COMMON_PRIVSEP_H
#define COMMON_PRIVSEP_H

#include <stdbool.h>
#include <sys/types.h>

/* Looks up user and fills uid/gid.  Returns 0 or -1 (unknown user). */
int privsep_lookup(const char *user, uid_t *uid_r, gid_t *gid_r);

/* Looks up a group by name.  Returns 0 or -1 (unknown group). */
int privsep_lookup_group(const char *group, gid_t *gid_r);

/* Drops to uid/gid with supplementary groups cleared (or set to gid only),
 * then checks that no way back to root remains.  fatal() on any failure:
 * a half-dropped process must not go on. */
void privsep_drop(uid_t uid, gid_t gid);

/* Makes the process non-dumpable and disables core files, so secrets in
 * memory never land on disk. */
void privsep_no_core(void);

/* In a child forked from a daemon: closes every descriptor above stderr
 * but the n in keep (-1 entries are skipped) and the log's.  A listing of
 * what to close would miss one the parent is closing just then (libevent
 * closes a freed connection's socket a moment later); this cannot.
 * fatal() if it cannot be done. */
void privsep_close_fds(const int *keep, size_t n);

#endif
