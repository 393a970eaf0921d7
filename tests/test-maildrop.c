/*
 * test-maildrop.c - unit tests for common/maildrop.c, the maildrop
 * template expander.
 */
#include <stdio.h>
#include <string.h>

#include "common/maildrop.h"
#include "tests/unit.h"

static void test_expand(void)
{
	char out[256];
	const char *err;

	CHECK_INT(maildrop_expand("maildir:%h/Maildir", "bob", "/home/bob", out, sizeof(out), &err), 0);
	CHECK_STR(out, "/home/bob/Maildir");
	CHECK_INT(maildrop_expand("/var/mail/%d/%n", "bob@example.org", NULL, out, sizeof(out), &err), 0);
	CHECK_STR(out, "/var/mail/example.org/bob");
	CHECK_INT(maildrop_expand("/m/%u/100%%", "a", NULL, out, sizeof(out), &err), 0);
	CHECK_STR(out, "/m/a/100%");
	CHECK_INT(maildrop_expand("mbox:/var/mail/%u", "a", NULL, out, sizeof(out), &err), 0);
	CHECK_STR(out, "mbox:/var/mail/a");
	CHECK_INT(maildrop_expand("mbox:%h/mbox", "a", "/home/a", out, sizeof(out), &err), 0);
	CHECK_STR(out, "mbox:/home/a/mbox");
	CHECK_INT(maildrop_expand("mbox:rel/%u", "a", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildrop_expand("mbox:/m/%u", "a/b", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildrop_expand("mbox:/%u", "aaaa", NULL, out, 8, &err), -1);
	CHECK_INT(maildrop_expand("mbox:/%u", "a", NULL, out, 5, &err), -1);
	CHECK_INT(maildrop_expand("mmdf:/var/mail/%u", "a", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildrop_expand("%h/Maildir", "a", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildrop_expand("/m/%x", "a", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildrop_expand("/m/%u", "../etc", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildrop_expand("/m/%u", "..", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildrop_expand("rel/%u", "a", NULL, out, sizeof(out), &err), -1);
	CHECK_INT(maildrop_expand("/%u", "aaaaaaaaaa", NULL, out, 8, &err), -1);
}

int main(void)
{
	UNIT_RUN(test_expand);
	return unit_finish();
}
