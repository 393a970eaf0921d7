/*
 * proctitle.c - set the process title by rewriting the argv area, the way
 * sendmail, nginx and PostgreSQL do on Linux: /proc/PID/cmdline shows the
 * bytes of the original argv+environ block.  The environment strings that
 * share that block are moved to the heap first, so nothing is corrupted.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/proctitle.h"

extern char **environ;

static char *title_start;
static size_t title_size;

void proctitle_init(int argc, char **argv)
{
	char *end;
	size_t n = 0;
	char **env;

	if (argc == 0 || argv[0] == NULL)
		return;
	end = argv[0] + strlen(argv[0]) + 1;
	for (int i = 1; i < argc; i++)
		if (argv[i] == end)
			end = argv[i] + strlen(argv[i]) + 1;
	for (n = 0; environ[n] != NULL; n++)
		if (environ[n] == end)
			end = environ[n] + strlen(environ[n]) + 1;
	env = xcalloc(n + 1, sizeof(*env));
	for (size_t i = 0; i < n; i++)
		env[i] = xstrdup(environ[i]);
	environ = env;
	title_start = argv[0];
	title_size = (size_t)(end - argv[0]);
}

void proctitle_set(const char *fmt, ...)
{
	va_list ap;
	int n;

	if (title_start == NULL || title_size < 2)
		return;
	va_start(ap, fmt);
	n = vsnprintf(title_start, title_size, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* Clear the rest, so that ps shows no leftovers of the old argv. */
	if ((size_t)n < title_size)
		memset(title_start + n, 0, title_size - (size_t)n);
}
