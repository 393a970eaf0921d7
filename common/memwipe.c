/*
 * memwipe.c - no password outlives its request in memory (issue 15): a
 * free that wipes the whole block first, installed as the allocator of the
 * libraries that copy passwords into buffers of their own, and a wipe of
 * the stack the password's handling used.
 *
 * Linked into every program and into authd-pam-helper (it needs nothing
 * but libc); runs in whichever process calls it: pop3d's master (which
 * never sees a password, but installs the hooks before it forks the front
 * ends that do), its front ends (login-user), authd (its user) and the PAM
 * helper.  Thread-safe: malloc is, and no state is kept.
 *
 * DESIGN
 * - Why: glibc's free() overwrites the first 16 bytes of a chunk with its
 *   free-list links and leaves the rest, so a freed buffer keeps the
 *   password it carried until something else happens to reuse that chunk:
 *   minutes later, core images still held whole AUTH lines (libevent's
 *   evbuffer chains), TLS records (OpenSSL's record buffers) and request
 *   lines.  Our own buffers are wiped where they are used
 *   (sodium_memzero); the libraries' are wiped here, by the allocator
 *   hooks they offer: libevent (event_set_mem_functions), OpenSSL
 *   (CRYPTO_set_mem_functions, installed by each daemon's main) and
 *   libcrypt has no hooks and needs none: password.c gives it a
 *   crypt_data it wipes.
 * - Libraries without hooks.  libldap has some in name only: liblber
 *   calls its LBER_OPT_MEMORY_FNS functions only for a slapd memory
 *   context, and a client's bind request (BER, with the password) is
 *   freed with plain free().  For those, glibc's own perturb option
 *   (memwipe_perturb) overwrites what free() puts back in its bins, i.e.
 *   every block too big for the per-thread cache (tcache, 1032 bytes);
 *   BER buffers are 4 KiB and up.  libpam and the PAM modules have no
 *   hooks either and their blocks are small: authd-pam-helper, a process
 *   of its own, is started with glibc's tcache off and perturb on
 *   (GLIBC_TUNABLES, authd/passdb_external.c), so that every block it
 *   frees is overwritten.
 * - Whole blocks: malloc_usable_size() gives the size of the chunk, which
 *   may exceed the size asked for (and a realloc that shrank in place
 *   leaves bytes past the new size); wiping only the asked size would
 *   leave those.  Under ASan and TSan the sanitizer's allocator answers
 *   malloc_usable_size with the size asked for, which is all that is
 *   addressable there, so the hooks work unchanged in every build.
 * - realloc: glibc's realloc may move a block and free the old one
 *   unwiped, so a block that must grow is moved by hand: malloc, copy,
 *   wipe and free the old one.  One that fits stays where it is.
 * - The stack: hashing (libsodium's BLAKE2b and Argon2, libcrypt, OpenSSL's
 *   digests) and string copies leave pieces of the password in the stack
 *   frames they return from; memwipe_stack() zeroes a fixed depth below
 *   its caller once the request is done.
 * - Cost: one memset of each freed block of these libraries, and of
 *   MEMWIPE_STACK_BYTES per request; docs/benchmarks.md has the figures.
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "common/limits.h"
#include "common/memwipe.h"

void memwipe_free(void *p)
{
	if (p == NULL)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

void *memwipe_realloc(void *p, size_t size)
{
	size_t have;
	void *q;

	if (p == NULL)
		return malloc(size);
	if (size == 0) {
		memwipe_free(p);
		return NULL;
	}
	have = malloc_usable_size(p);
	if (size <= have)
		return p;
	q = malloc(size);
	if (q == NULL)
		return NULL;
	memcpy(q, p, have);
	memwipe_free(p);
	return q;
}

void *memwipe_crypto_malloc(size_t size, const char *file, int line)
{
	return malloc(size);
}

void *memwipe_crypto_realloc(void *p, size_t size, const char *file, int line)
{
	return memwipe_realloc(p, size);
}

void memwipe_crypto_free(void *p, const char *file, int line)
{
	memwipe_free(p);
}

void memwipe_perturb(void)
{
	/* mallopt returns 1; ASan's and TSan's return 0 and do nothing,
	 * which is fine: their allocators quarantine freed blocks instead of
	 * handing them out, and the test that checks this runs on the
	 * plain build. */
	(void)mallopt(M_PERTURB, MEMWIPE_PERTURB_BYTE);
}

/* noinline, so that the array lies below the caller's frame and not in
 * it; the empty asm keeps the compiler from dropping the zeroing of an
 * array nobody reads (explicit_bzero already promises that; the asm says
 * it to the sanitizers' builds too). */
__attribute__((noinline)) void memwipe_stack(void)
{
	unsigned char area[MEMWIPE_STACK_BYTES];

	explicit_bzero(area, sizeof(area));
	__asm__ volatile("" : : "r"(area) : "memory");
}
