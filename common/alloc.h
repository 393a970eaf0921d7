/*
 * alloc.h - allocation that cannot fail (alloc.c).
 */
#ifndef COMMON_ALLOC_H
#define COMMON_ALLOC_H

#include <stddef.h>

/* Like malloc, calloc, strdup and strndup, but never NULL: out of memory
 * ends the process (fatalx).  A size of 0 allocates 1 byte.  The caller
 * frees the result. */
void *xmalloc(size_t size);
void *xcalloc(size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif
