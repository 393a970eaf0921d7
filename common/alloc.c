/*
 * alloc.c - allocation that cannot fail: out of memory is fatal (STYLE.md:
 * fatal on allocation failure), so callers need no error path for it.
 * Linked into every program; thread-safe (malloc is).
 */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"

void *xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
		fatalx("out of memory (%zu bytes)", size);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

	if (p == NULL)
		fatalx("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		fatalx("out of memory");
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);

	if (p == NULL)
		fatalx("out of memory");
	return p;
}
