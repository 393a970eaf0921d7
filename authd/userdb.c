/*
 * userdb.c - the userdb fields a successful check returns (struct userdb
 * in authd.h): setting one from a backend's text, and an authenticator's
 * default-* keys.  Shared by every backend; runs on worker threads
 * (backends) and on the loop thread (request.c), touching only the
 * struct it is given.  authd's privileges ([authd] user).
 */
#include <stdint.h>
#include <string.h>

#include "authd/authd.h"
#include "common/num.h"

/* A home or maildrop: shorter than USERDB_MAX_FIELD, no control characters
 * (it goes into a protocol line and a log line). */
static int set_path(char *dst, const char *value)
{
	size_t n = strlen(value);

	if (n >= USERDB_MAX_FIELD)
		return -1;
	for (const char *p = value; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return -1;
	memcpy(dst, value, n + 1);
	return 0;
}

int userdb_set_field(struct userdb *udb, const char *key, const char *value)
{
	uint64_t v;

	if (strcmp(key, "uid") == 0 || strcmp(key, "gid") == 0) {
		if (num_parse_u64(value, 0, 4294967294u, &v) == -1)
			return -1;
		if (key[0] == 'u') {
			udb->uid = (uint32_t)v;
			udb->has_uid = true;
		} else {
			udb->gid = (uint32_t)v;
			udb->has_gid = true;
		}
		return 0;
	}
	if (strcmp(key, "home") == 0)
		return set_path(udb->home, value);
	if (strcmp(key, "maildrop") == 0)
		return set_path(udb->maildrop, value);
	return 0;
}

void userdb_apply_defaults(struct userdb *udb, const struct auth_conf *ac)
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
