/*
 * argon2mem.h - argon2's working memory kept between checks (argon2mem.c).
 */
#ifndef AUTHD_ARGON2MEM_H
#define AUTHD_ARGON2MEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARGON2MEM_POOL_MAX 64

/* Keep at most cap regions (0: none, the default; at most
 * ARGON2MEM_POOL_MAX).  Call before the worker threads start, or any
 * time: regions over the new cap are unmapped. */
void argon2mem_init(size_t cap);

/* Around crypto_pwhash_str_verify() on the calling thread. */
void argon2mem_begin(void);
void argon2mem_end(void);

/* False where the pool is compiled out (ThreadSanitizer builds). */
bool argon2mem_active(void);

struct argon2mem_stats {
	uint64_t mapped;	/* regions the kernel had to map afresh */
	uint64_t reused;	/* regions taken from the pool */
	size_t pooled;		/* regions in the pool now */
};
void argon2mem_stats(struct argon2mem_stats *out);

#endif
