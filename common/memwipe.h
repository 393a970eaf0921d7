/*
 * memwipe.h - freeing that wipes first, for the libraries that carry
 * passwords through their own buffers (memwipe.c).
 */
#ifndef COMMON_MEMWIPE_H
#define COMMON_MEMWIPE_H

#include <stddef.h>

/* free(p) after zeroing the whole block malloc gave (malloc_usable_size,
 * not only what was asked for).  p must come from malloc, calloc or
 * realloc of this process's allocator, or be NULL.  Thread-safe. */
void memwipe_free(void *p);

/* realloc(p, size) that never leaves the old block's bytes behind: a block
 * that has to move is copied, then wiped and freed (memwipe_free).  size 0
 * frees p and returns NULL.  NULL when out of memory (p is then kept, as
 * with realloc). */
void *memwipe_realloc(void *p, size_t size);

/* The same with OpenSSL's signatures (CRYPTO_set_mem_functions): the
 * caller installs them, so that this file needs no libcrypto.  libevent
 * takes malloc, memwipe_realloc and memwipe_free (event_set_mem_functions,
 * before any other libevent call); this file needs no libevent either, so
 * that the PAM helper links it alone. */
void *memwipe_crypto_malloc(size_t size, const char *file, int line);
void *memwipe_crypto_realloc(void *p, size_t size, const char *file, int line);
void memwipe_crypto_free(void *p, const char *file, int line);

/* Asks glibc to overwrite every block free() does not keep in its
 * per-thread cache (M_PERTURB): all blocks over 1032 bytes, such as the
 * BER buffers (4 KiB and up) in which libldap sends a bind's password and
 * which it frees with plain free().  Call first thing in main().  A no-op
 * under the sanitizers, whose allocator replaces glibc's. */
void memwipe_perturb(void);

/* Zeroes MEMWIPE_STACK_BYTES of stack below the caller's frame: what the
 * functions it called (hashes, libcrypt, libsodium, OpenSSL, libldap)
 * left there of a password.  Call from a shallow frame (a loop, a
 * thread's main function) after a request's work is done. */
void memwipe_stack(void);

#endif
