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
 * should it ever be full, further kinds share its last slot.  The
 * `auth failed:` lines fail2ban reads are not warnings and never pass
 * here.
 */
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "authd/authd.h"
#include "common/mtime.h"

#define RATELOG_SLOTS 128

struct slot {
	const char *what;		/* NULL: free */
	char name[64];			/* truncated if longer: for the summary only */
	char reason[24];
	uint64_t counted;		/* in this interval, not logged */
	uint64_t since_ms;		/* when this interval started */
};

static struct slot slots[RATELOG_SLOTS];
static struct event *tick;
static uint64_t suppressed_total;

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
}

void ratelog_shutdown(void)
{
	if (tick != NULL)
		event_free(tick);
	tick = NULL;
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
