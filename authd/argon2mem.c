/*
 * argon2mem.c - argon2's working memory kept between checks.  Runs in
 * authd's worker threads (unprivileged authd user), and in authctl and the
 * unit tests that link password.c.
 *
 * libsodium gives argon2 its memory (19 MiB for OWASP's minimum) with a
 * fresh anonymous mmap() per check and munmap()s it afterwards, and has no
 * allocation callbacks.  On this machine's virtual CPUs the kernel's page
 * faults and zeroing of those 4,864 pages cost about as much as the hash
 * itself (docs/benchmarks.md).  libargon2 has callbacks, but Debian builds
 * its portable code, about 50 % slower than libsodium's.
 *
 * So this file defines mmap() and munmap() for the program: the dynamic
 * linker binds libsodium's calls to them.  They pass every call through to
 * the next definition (libc's, or a sanitizer's) except on a thread that
 * is inside argon2mem_begin() .. argon2mem_end(), that is inside
 * password.c's call to crypto_pwhash_str_verify(), and then only for an
 * anonymous private read-write mapping of at least ARGON2MEM_MIN bytes
 * (libsodium 1.0.18 asks for MAP_POPULATE too): that one is
 * taken from a small pool of regions kept from earlier checks (first made
 * with MADV_HUGEPAGE), and given back to it instead of being unmapped.
 * A region is zeroed before it goes back to the pool: argon2's blocks are
 * derived from the password and must not outlive the check.  The pool holds
 * at most `cap` regions (authd: the sum of the hash-concurrency, so its
 * memory is what that many concurrent checks hold anyway); a region over
 * ARGON2MEM_MAX (64 MiB: OWASP's minimum is 19, libsodium's "sensitive"
 * preset 1 GiB) is mapped and unmapped as without this file, so that one
 * user's costly hash leaves nothing behind.
 *
 * glibc's own mappings (malloc, thread stacks) go through its internal
 * __mmap and never reach here.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sodium.h>

#include "authd/argon2mem.h"

#define ARGON2MEM_MIN	((size_t)1 << 20)	/* smaller: not argon2's (1 MiB) */
#define ARGON2MEM_MAX	((size_t)64 << 20)	/* larger: used once, not kept */

typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void *, size_t);

struct region {
	void *base;
	size_t len;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct region pool[ARGON2MEM_POOL_MAX];
static size_t pool_n;
static size_t pool_cap;

/* Counters for stats and tests (under pool_lock). */
static struct argon2mem_stats counters;

/* This thread is inside crypto_pwhash_str_verify; the region it took. */
static __thread bool active;
static __thread struct region taken;

static mmap_fn next_mmap;
static munmap_fn next_munmap;
static pthread_once_t resolved = PTHREAD_ONCE_INIT;

/* The definitions after ours (libc's, or a sanitizer runtime's, which must
 * see every mapping). */
static void resolve_once(void)
{
	next_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
	next_munmap = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
}

static void resolve(void)
{
	static __thread bool resolving;

	/* Should dlsym map memory through us, it gets the system call. */
	if (resolving)
		return;
	resolving = true;
	(void)pthread_once(&resolved, resolve_once);
	resolving = false;
}

static int real_munmap(void *addr, size_t len)
{
	resolve();
	if (next_munmap == NULL)
		return (int)syscall(SYS_munmap, addr, len);
	return next_munmap(addr, len);
}

/* ThreadSanitizer's runtime maps memory through mmap() before it is set up
 * (its symbolizer), and GCC instruments every function's entry, so under
 * TSan these two are left out and libsodium maps afresh, as without this
 * file.  ASan's runtime copes. */
#ifndef __SANITIZE_THREAD__
static void *real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	resolve();
	if (next_mmap == NULL)
		return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
	return next_mmap(addr, len, prot, flags, fd, off);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *p = NULL;
	size_t i;

	if (!active || taken.base != NULL || addr != NULL || fd != -1 ||
	    (flags & ~MAP_POPULATE) != (MAP_PRIVATE | MAP_ANONYMOUS) ||
	    prot != (PROT_READ | PROT_WRITE) ||
	    len < ARGON2MEM_MIN || len > ARGON2MEM_MAX)
		return real_mmap(addr, len, prot, flags, fd, off);

	pthread_mutex_lock(&pool_lock);
	for (i = 0; i < pool_n; i++) {
		if (pool[i].len == len) {
			p = pool[i].base;
			pool[i] = pool[--pool_n];
			counters.reused++;
			break;
		}
	}
	if (p == NULL)
		counters.mapped++;
	pthread_mutex_unlock(&pool_lock);

	if (p == NULL) {
		/* Not populated here (libsodium asks for MAP_POPULATE): the
		 * advice must come first.  Fewer, larger pages: the hash
		 * walks all of it.  Advice only; a kernel without THP says
		 * no. */
		p = real_mmap(NULL, len, prot, flags & ~MAP_POPULATE, -1, 0);
		if (p == MAP_FAILED)
			return p;
		(void)madvise(p, len, MADV_HUGEPAGE);
	}
	taken.base = p;
	taken.len = len;
	return p;
}

int munmap(void *addr, size_t len)
{
	bool kept = false;

	if (!active || addr == NULL || addr != taken.base || len != taken.len)
		return real_munmap(addr, len);

	taken.base = NULL;
	sodium_memzero(addr, len);
	pthread_mutex_lock(&pool_lock);
	if (pool_n < pool_cap) {
		pool[pool_n].base = addr;
		pool[pool_n].len = len;
		pool_n++;
		kept = true;
	}
	pthread_mutex_unlock(&pool_lock);
	return kept ? 0 : real_munmap(addr, len);
}
#endif

bool argon2mem_active(void)
{
#ifdef __SANITIZE_THREAD__
	return false;
#else
	return true;
#endif
}

void argon2mem_init(size_t cap)
{
	size_t drop_n = 0;
	struct region drop[ARGON2MEM_POOL_MAX];

	resolve();
	if (cap > ARGON2MEM_POOL_MAX)
		cap = ARGON2MEM_POOL_MAX;
	pthread_mutex_lock(&pool_lock);
	pool_cap = cap;
	while (pool_n > pool_cap)
		drop[drop_n++] = pool[--pool_n];
	pthread_mutex_unlock(&pool_lock);
	while (drop_n > 0) {
		drop_n--;
		(void)real_munmap(drop[drop_n].base, drop[drop_n].len);
	}
}

void argon2mem_begin(void)
{
	active = true;
	taken.base = NULL;
}

void argon2mem_end(void)
{
	/* A region libsodium did not give back (it always does) stays
	 * mapped, as it would without this file. */
	active = false;
	taken.base = NULL;
}

void argon2mem_stats(struct argon2mem_stats *out)
{
	pthread_mutex_lock(&pool_lock);
	*out = counters;
	out->pooled = pool_n;
	pthread_mutex_unlock(&pool_lock);
}
