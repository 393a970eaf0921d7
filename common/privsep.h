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

#endif
