/*
 * test-userdb.c - userdb.c alone: the fields a backend may set, and the
 * default-* keys.
 */
#include <string.h>

#include "authd/authd.h"
#include "tests/unit.h"

static void test_set_field(void)
{
	struct userdb u;
	char longpath[USERDB_MAX_FIELD + 1];

	memset(&u, 0, sizeof(u));
	CHECK_INT(userdb_set_field(&u, "uid", "1001"), 0);
	CHECK_INT(userdb_set_field(&u, "gid", "0"), 0);
	CHECK(u.has_uid && u.uid == 1001 && u.has_gid && u.gid == 0);
	CHECK_INT(userdb_set_field(&u, "uid", "4294967295"), -1);	/* (uid_t)-1 */
	CHECK_INT(userdb_set_field(&u, "uid", "-1"), -1);
	CHECK_INT(userdb_set_field(&u, "gid", "12x"), -1);
	CHECK_INT(userdb_set_field(&u, "home", "/home/a"), 0);
	CHECK_STR(u.home, "/home/a");
	CHECK_INT(userdb_set_field(&u, "maildrop", "/m\n/x"), -1);
	CHECK_INT(userdb_set_field(&u, "maildrop", "/m\x7f"), -1);
	memset(longpath, 'a', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	CHECK_INT(userdb_set_field(&u, "home", longpath), -1);
	CHECK_STR(u.home, "/home/a");				/* unchanged */
	CHECK_INT(userdb_set_field(&u, "shell", "/bin/sh"), 0);	/* ignored */
}

static void test_defaults(void)
{
	struct auth_conf ac;
	struct userdb u;

	memset(&ac, 0, sizeof(ac));
	ac.default_uid = (char *)(uintptr_t)"500";
	ac.default_gid = (char *)(uintptr_t)"";
	ac.default_home = (char *)(uintptr_t)"/srv/home";
	memset(&u, 0, sizeof(u));
	u.has_uid = true;
	u.uid = 7;
	userdb_apply_defaults(&u, &ac);
	CHECK(u.uid == 7);			/* the backend's value wins */
	CHECK(!u.has_gid);			/* empty default: none */
	CHECK_STR(u.home, "/srv/home");
	CHECK_STR(u.maildrop, "");		/* NULL default */
}

int main(void)
{
	UNIT_RUN(test_set_field);
	UNIT_RUN(test_defaults);
	return unit_finish();
}
