/*
 * ticket.c - single-use handoff tickets (loop thread only).
 *
 * An OK reply carries a ticket: 16 random bytes, bound to the user's
 * userdb fields and to the pid of the process that asked.  The pop3d
 * master redeems it once, within ticket-lifetime, naming that pid; so the
 * master learns uid/gid/home/maildrop without ever seeing a password.
 *
 * Tickets live in a hash table (bucket = first bytes of the random ticket)
 * and on a FIFO list in expiry order, swept on every issue and redeem.
 * At most TICKETS_MAX are outstanding: the oldest is dropped first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/mtime.h"

#define TICKET_BUCKETS	4096	/* power of two */
#define TICKETS_MAX	65536	/* ~30 s of 2000 logins/s */

struct ticket {
	TAILQ_ENTRY(ticket) fifo;
	LIST_ENTRY(ticket) bucket;
	uint8_t bytes[AUTHD_TICKET_BYTES];
	pid_t pid;
	uint64_t expires_ms;
	char user[AUTH_MAX_USER + 1];
	struct userdb udb;
};

static TAILQ_HEAD(, ticket) fifo = TAILQ_HEAD_INITIALIZER(fifo);
static LIST_HEAD(, ticket) buckets[TICKET_BUCKETS];
static unsigned nticket;
static uint64_t lifetime_ms;

void tickets_init(const struct config *conf)
{
	lifetime_ms = conf->authd.ticket_lifetime_ms;
	for (size_t i = 0; i < TICKET_BUCKETS; i++)
		LIST_INIT(&buckets[i]);
}

void tickets_set_lifetime(const struct config *conf)
{
	/* Applies to tickets issued from now on. */
	lifetime_ms = conf->authd.ticket_lifetime_ms;
}

static void ticket_drop(struct ticket *t)
{
	TAILQ_REMOVE(&fifo, t, fifo);
	LIST_REMOVE(t, bucket);
	nticket--;
	sodium_memzero(t, sizeof(*t));
	free(t);
}

static void sweep(uint64_t now)
{
	struct ticket *t;

	while ((t = TAILQ_FIRST(&fifo)) != NULL && (t->expires_ms <= now || nticket > TICKETS_MAX))
		ticket_drop(t);
}

unsigned tickets_outstanding(void)
{
	sweep(mtime_ms());
	return nticket;
}

static unsigned bucket_of(const uint8_t *bytes)
{
	return ((unsigned)bytes[0] | (unsigned)bytes[1] << 8) & (TICKET_BUCKETS - 1);
}

void ticket_issue(const char *user, const struct userdb *udb, pid_t pid, char *hex)
{
	struct ticket *t = xcalloc(1, sizeof(*t));
	uint64_t now = mtime_ms();

	randombytes_buf(t->bytes, sizeof(t->bytes));
	t->pid = pid;
	t->expires_ms = now + lifetime_ms;
	snprintf(t->user, sizeof(t->user), "%s", user);
	t->udb = *udb;
	TAILQ_INSERT_TAIL(&fifo, t, fifo);
	LIST_INSERT_HEAD(&buckets[bucket_of(t->bytes)], t, bucket);
	nticket++;
	sweep(now);
	sodium_bin2hex(hex, 2 * AUTHD_TICKET_BYTES + 1, t->bytes, sizeof(t->bytes));
}

int ticket_redeem(const char *hex, pid_t pid, char *user, size_t usersize, struct userdb *udb)
{
	uint8_t bytes[AUTHD_TICKET_BYTES];
	size_t len;
	struct ticket *t;

	sweep(mtime_ms());
	if (strlen(hex) != 2 * AUTHD_TICKET_BYTES ||
	    sodium_hex2bin(bytes, sizeof(bytes), hex, strlen(hex), NULL, &len, NULL) != 0 ||
	    len != sizeof(bytes))
		return -1;
	LIST_FOREACH(t, &buckets[bucket_of(bytes)], bucket) {
		if (sodium_memcmp(t->bytes, bytes, sizeof(bytes)) != 0)
			continue;
		if (t->pid != pid) {
			/* Issued to another process: refuse, and burn it, since
			 * someone other than its owner knows it. */
			log_warnx("ticket for %s presented for pid %ld, issued to pid %ld; "
				  "refused", t->user, (long)pid, (long)t->pid);
			ticket_drop(t);
			return -1;
		}
		snprintf(user, usersize, "%s", t->user);
		*udb = t->udb;
		ticket_drop(t);
		return 0;
	}
	return -1;
}

unsigned tickets_revoke(const char *user)
{
	struct ticket *t, *next;
	unsigned n = 0;

	for (t = TAILQ_FIRST(&fifo); t != NULL; t = next) {
		next = TAILQ_NEXT(t, fifo);
		if (strcmp(t->user, user) == 0) {
			ticket_drop(t);
			n++;
		}
	}
	return n;
}

void tickets_shutdown(void)
{
	struct ticket *t;

	while ((t = TAILQ_FIRST(&fifo)) != NULL)
		ticket_drop(t);
}
