/*
 * ratelog.c - warnings about overload, written at a bounded rate.  Runs
 * in authd on the loop thread only (no lock).
 *
 * Under a flood every request may end in the same warning ("auth
 * tempfail ... reason=overloaded"); one line each would let an attacker
 * fill the disk and bury everything else.  So each kind of warning (what,
 * authenticator, reason) is written in full once, when a burst starts;
 * after that its events are only counted, and a summary line with the
 * count is written every RATELOG_INTERVAL_MS while they go on.  An
 * interval without any ends the burst: the next one is written in full
 * again.  At most one line per kind per interval, then.
 *
 * Kinds live in a fixed table (authenticators x reasons fit many times);
 * should it ever be full, further kinds share its last slot.
 *
 * The `auth failed:` lines (info) are limited the same way, per client
 * address instead of per kind (ratelog_fail_allow): the first failure
 * from an address is written in full, with its user name; while failures
 * from it go on, one summary line per address per FAILLOG_INTERVAL_MS.
 * A guessing flood from 40 addresses then writes about 40 lines a minute
 * (80 in its first: each address's full line, then its first summary),
 * whatever its rate (issue 15's bound is 100), and an address that fails
 * once now and then still gets a full line each time.  The
 * summary ends with rip= as the full line does, so authd(8)'s fail2ban
 * filter matches it too (one line per address per minute); pop3d's own
 * `login failed` line for each failure is fail2ban's quicker input.
 * Addresses live in a fixed open-addressing table (FAILLOG_SLOTS),
 * placed by a keyed hash (SipHash, a random key per process), so that
 * nobody can choose addresses that crowd one place of it.  When no place
 * near an address is free (over a thousand addresses failing at once),
 * its failures are logged in full anyway, at most FAILLOG_UNSLOTTED_PER_S
 * lines a second in all, and counted beyond that into one shared summary
 * (rip=*): a flood that fills the table cannot keep a new address from
 * being named.
 */
#include <stdio.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "authd/authd.h"
#include "common/mtime.h"

#define RATELOG_SLOTS 128
/* Addresses tracked at once, and how far a lookup probes. */
#define FAILLOG_SLOTS 1024
#define FAILLOG_PROBE 16
#define FAILLOG_UNSLOTTED_PER_S 10

struct slot {
	const char *what;		/* NULL: free */
	char name[64];			/* truncated if longer: for the summary only */
	char reason[24];
	uint64_t counted;		/* in this interval, not logged */
	uint64_t since_ms;		/* when this interval started */
};

static struct slot slots[RATELOG_SLOTS];
static struct event *tick, *fail_tick;
static uint64_t suppressed_total, fail_suppressed_total;

struct fslot {
	bool used;
	char rip[LOG_TOKEN_SIZE(AUTHD_MAX_ADDR)];
	char user[80];			/* the last one, truncated: summary only */
	char service[40];
	uint64_t counted, since_ms;
};

static struct fslot fslots[FAILLOG_SLOTS + 1];	/* [FAILLOG_SLOTS]: the shared one */
static uint8_t hash_key[crypto_shorthash_KEYBYTES];
static bool hash_keyed;
static uint64_t unslotted_second;	/* mtime_ms() / 1000 of the count below */
static unsigned unslotted_logged;

static void on_fail_tick(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = mtime_ms();

	for (size_t i = 0; i <= FAILLOG_SLOTS; i++) {
		struct fslot *s = &fslots[i];

		if (!s->used)
			continue;
		if (s->counted == 0) {
			s->used = false;	/* the burst is over */
			continue;
		}
		/* Fixed format (authd(8)): rip= last, as in the full line,
		 * so one fail2ban filter matches both from the line's end. */
		log_info("auth failed: %llu more in the last %.0fs, last user=%s service=%s rip=%s",
			 (unsigned long long)s->counted, (double)(now - s->since_ms) / 1000.0,
			 s->user, s->service, s->rip);
		s->counted = 0;
		s->since_ms = now;
	}
}

bool ratelog_fail_allow(const char *rip, const char *user, const char *service)
{
	uint8_t hb[crypto_shorthash_BYTES];
	struct fslot *s = NULL;
	uint64_t h;

	if (!hash_keyed) {
		randombytes_buf(hash_key, sizeof(hash_key));
		hash_keyed = true;
	}
	crypto_shorthash(hb, (const uint8_t *)rip, strlen(rip), hash_key);
	memcpy(&h, hb, sizeof(h));
	for (unsigned k = 0; k < FAILLOG_PROBE; k++) {
		struct fslot *c = &fslots[(h + k) % FAILLOG_SLOTS];

		if (c->used && strncmp(c->rip, rip, sizeof(c->rip) - 1) == 0) {
			s = c;
			goto counted;
		}
		if (!c->used && s == NULL)
			s = c;
	}
	if (s == NULL) {
		/* No place near it: named anyway, within a global rate. */
		uint64_t sec = mtime_ms() / 1000;

		if (sec != unslotted_second) {
			unslotted_second = sec;
			unslotted_logged = 0;
		}
		if (unslotted_logged < FAILLOG_UNSLOTTED_PER_S) {
			unslotted_logged++;
			return true;
		}
		s = &fslots[FAILLOG_SLOTS];	/* beyond it: counted together */
		if (!s->used) {
			s->used = true;
			snprintf(s->rip, sizeof(s->rip), "*");
			s->since_ms = mtime_ms();
		}
		goto counted;
	}
	s->used = true;
	snprintf(s->rip, sizeof(s->rip), "%s", rip);
	s->counted = 0;
	s->since_ms = mtime_ms();
	return true;
counted:
	snprintf(s->user, sizeof(s->user), "%s", user);
	snprintf(s->service, sizeof(s->service), "%s", service);
	s->counted++;
	fail_suppressed_total++;
	return false;
}

uint64_t ratelog_fail_suppressed(void)
{
	return fail_suppressed_total;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = mtime_ms();

	for (size_t i = 0; i < RATELOG_SLOTS; i++) {
		struct slot *s = &slots[i];

		if (s->what == NULL)
			continue;
		if (s->counted == 0) {
			s->what = NULL;		/* the burst is over */
			continue;
		}
		log_warnx("%s: authenticator=%s reason=%s: %llu more in the last %.1fs "
			  "(summarised, not logged one by one)", s->what, s->name, s->reason,
			  (unsigned long long)s->counted, (double)(now - s->since_ms) / 1000.0);
		s->counted = 0;
		s->since_ms = now;
	}
}

void ratelog_init(struct event_base *base)
{
	struct timeval tv;

	tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	if (tick == NULL)
		fatalx("ratelog: event_new");
	MTIME_TV(tv, RATELOG_INTERVAL_MS);
	event_add(tick, &tv);
	fail_tick = event_new(base, -1, EV_PERSIST, on_fail_tick, NULL);
	if (fail_tick == NULL)
		fatalx("ratelog: event_new");
	MTIME_TV(tv, FAILLOG_INTERVAL_MS);
	event_add(fail_tick, &tv);
}

void ratelog_shutdown(void)
{
	if (tick != NULL)
		event_free(tick);
	if (fail_tick != NULL)
		event_free(fail_tick);
	tick = fail_tick = NULL;
}

bool ratelog_allow(const char *what, const char *name, const char *reason)
{
	struct slot *s, *free_slot = NULL;

	for (size_t i = 0; i < RATELOG_SLOTS; i++) {
		s = &slots[i];
		if (s->what == NULL) {
			if (free_slot == NULL)
				free_slot = s;
			continue;
		}
		if (s->what == what && strncmp(s->name, name, sizeof(s->name) - 1) == 0 &&
		    strncmp(s->reason, reason, sizeof(s->reason) - 1) == 0)
			goto counted;
	}
	if (free_slot == NULL) {
		s = &slots[RATELOG_SLOTS - 1];	/* full: share the last one */
		s->what = "overload warnings";
		snprintf(s->name, sizeof(s->name), "(several)");
		snprintf(s->reason, sizeof(s->reason), "(several)");
		goto counted;
	}
	free_slot->what = what;
	snprintf(free_slot->name, sizeof(free_slot->name), "%s", name);
	snprintf(free_slot->reason, sizeof(free_slot->reason), "%s", reason);
	free_slot->counted = 0;
	free_slot->since_ms = mtime_ms();
	return true;
counted:
	s->counted++;
	suppressed_total++;
	return false;
}

uint64_t ratelog_suppressed(void)
{
	return suppressed_total;
}
