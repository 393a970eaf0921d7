/*
 * conntab.c - the master's table of connections, from accept to the end of
 * their session, and the counts per remote address and per user name that
 * max-connections-per-ip and max-sessions-per-user are checked against.
 *
 * Runs in the master only, as root when started so (pop3d.h's map).  It
 * holds no byte a client sent: addresses come from accept(), or for a
 * PROXY protocol listener from the front end's checked IPC_PROXY_ADDR
 * (formatted by the master itself), user names from authd's checked USER
 * reply.
 *
 * DESIGN
 * - Records never move (an array of pointers to them grows by doubling),
 *   because timers and callbacks point at them; a released record goes on
 *   a free list and keeps its slot index.
 * - A connection's id is (generation << 32 | slot), so a stale id from a
 *   front end (a connection already ended) never names a newer one.
 * - Counts by string live in hash tables of COUNT_BUCKETS chains
 *   (sys/queue.h LISTs).  Remote addresses and user names are chosen by
 *   clients, who could aim many at one chain of an unkeyed hash and make
 *   every accept walk it: the bucket is libsodium's keyed crypto_shorthash
 *   (SipHash-2-4) with a key drawn at start-up (conntab_init), which they
 *   cannot know.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "common/alloc.h"
#include "common/log.h"
#include "pop3d/pop3d.h"

#define COUNT_BUCKETS	CONNTAB_BUCKETS
#define NO_SLOT		UINT32_MAX

/* A string -> count table entry (remote addresses, user names). */
struct count_entry {
	char *key;
	unsigned n;
	LIST_ENTRY(count_entry) entry;
};
LIST_HEAD(count_list, count_entry);

static struct {
	struct conn **conns;		/* records never move: timers point at them */
	uint32_t cap, free_head, nactive;
	struct count_list ips[COUNT_BUCKETS], users[COUNT_BUCKETS];
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	void (*on_release)(struct conn *c);
} T = { .free_head = NO_SLOT };

void conntab_init(void (*on_release)(struct conn *c))
{
	T.on_release = on_release;
	randombytes_buf(T.hash_key, sizeof(T.hash_key));
}

unsigned conntab_hash(const char *s)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, (const unsigned char *)s, strlen(s), T.hash_key);
	memcpy(&v, h, sizeof(v));
	return (unsigned)(v % COUNT_BUCKETS);
}

static struct count_entry *count_find(struct count_list *t, const char *key)
{
	struct count_entry *e;

	LIST_FOREACH(e, &t[conntab_hash(key)], entry)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static unsigned count_get(struct count_list *t, const char *key)
{
	struct count_entry *e = count_find(t, key);

	return e != NULL ? e->n : 0;
}

static void count_add(struct count_list *t, const char *key, int delta)
{
	struct count_entry *e = count_find(t, key);

	if (e == NULL) {
		if (delta <= 0)
			return;
		e = xcalloc(1, sizeof(*e));
		e->key = xstrdup(key);
		LIST_INSERT_HEAD(&t[conntab_hash(key)], e, entry);
	}
	e->n = (unsigned)((int)e->n + delta);
	if (e->n == 0) {
		LIST_REMOVE(e, entry);
		free(e->key);
		free(e);
	}
}

uint64_t conntab_id(const struct conn *c)
{
	return (uint64_t)c->gen << 32 | c->idx;
}

struct conn *conntab_find(uint64_t id)
{
	uint32_t idx = (uint32_t)id;

	if (idx >= T.cap || T.conns[idx]->state == C_FREE ||
	    T.conns[idx]->gen != (uint32_t)(id >> 32))
		return NULL;
	return T.conns[idx];
}

struct conn *conntab_new(const char *rip, unsigned rport)
{
	struct conn *c;

	if (T.free_head == NO_SLOT) {
		uint32_t old = T.cap, cap = old == 0 ? 64 : old * 2;
		T.conns = realloc(T.conns, cap * sizeof(*T.conns));
		if (T.conns == NULL)
			fatal("realloc");
		for (uint32_t i = old; i < cap; i++) {
			T.conns[i] = xcalloc(1, sizeof(**T.conns));
			T.conns[i]->idx = i;
			T.conns[i]->fd = -1;
			T.conns[i]->next_free = i + 1 < cap ? i + 1 : NO_SLOT;
		}
		T.free_head = old;
		T.cap = cap;
	}
	c = T.conns[T.free_head];
	T.free_head = c->next_free;
	c->gen++;
	c->state = C_PREAUTH;
	c->fd = -1;
	snprintf(c->rip, sizeof(c->rip), "%s", rip);
	c->rport = rport;
	count_add(T.ips, rip, 1);
	T.nactive++;
	return c;
}

struct conn *conntab_new_pending(const char *peer, unsigned port)
{
	struct conn *c = conntab_new(peer, port);

	count_add(T.ips, peer, -1);
	c->addr_pending = true;
	return c;
}

void conntab_set_addr(struct conn *c, const char *rip, unsigned rport)
{
	assert(c->addr_pending);
	snprintf(c->rip, sizeof(c->rip), "%s", rip);
	c->rport = rport;
	c->addr_pending = false;
	count_add(T.ips, c->rip, 1);
}

void conntab_release(struct conn *c)
{
	if (T.on_release != NULL)
		T.on_release(c);
	if (c->state == C_SESSION && c->user != NULL)
		count_add(T.users, c->user, -1);
	if (c->fd != -1)
		close(c->fd);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->data != NULL) {
		sodium_memzero(c->data, c->data_len);
		free(c->data);
	}
	free(c->user);
	if (!c->addr_pending)
		count_add(T.ips, c->rip, -1);
	T.nactive--;
	uint32_t gen = c->gen, idx = c->idx;
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->idx = idx;
	c->fd = -1;
	c->state = C_FREE;
	c->next_free = T.free_head;
	T.free_head = idx;
}

void conntab_set_session(struct conn *c, pid_t pid, const char *user)
{
	c->state = C_SESSION;
	c->pid = pid;
	c->kicked = false;
	c->user = xstrdup(user);
	count_add(T.users, user, 1);
}

struct conn *conntab_next(const struct conn *prev)
{
	for (uint32_t i = prev == NULL ? 0 : prev->idx + 1; i < T.cap; i++)
		if (T.conns[i]->state != C_FREE)
			return T.conns[i];
	return NULL;
}

struct conn *conntab_session(pid_t pid)
{
	for (uint32_t i = 0; i < T.cap; i++)
		if (T.conns[i]->state == C_SESSION && T.conns[i]->pid == pid)
			return T.conns[i];
	return NULL;
}

unsigned conntab_active(void)
{
	return T.nactive;
}

unsigned conntab_per_ip(const char *rip)
{
	return count_get(T.ips, rip);
}

unsigned conntab_per_user(const char *user)
{
	return count_get(T.users, user);
}

void conntab_refuse(int fd, const char *line)
{
	ssize_t n = send(fd, line, strlen(line), MSG_DONTWAIT | MSG_NOSIGNAL);

	if (n == -1)
		log_debug("refuse: %s", strerror(errno));
	else
		master_stats.bytes_sent += (uint64_t)n;
}
