/*
 * logcapture.h - for the fuzz harnesses: send common/log.c's output, at
 * debug level, to an in-memory file, so every log line is formatted (its
 * code runs) and a harness can check what it says (no password, no hash).
 *
 * logcap_init() once; logcap_reset() before each input; logcap_text()
 * after it: the lines logged since the reset, NUL-terminated (valid until
 * the next call).  Lines past LOGCAP_MAX bytes are not seen.
 */
#ifndef TESTS_FUZZ_LOGCAPTURE_H
#define TESTS_FUZZ_LOGCAPTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"

#define LOGCAP_MAX 65536

static int logcap_fd = -1;

static void logcap_init(void)
{
	char path[64];

	logcap_fd = memfd_create("fuzz-log", MFD_CLOEXEC);
	if (logcap_fd == -1)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", logcap_fd);
	if (log_init("fuzz", LOG_LEVEL_DEBUG, LOG_TARGET_FILE, path, 0) == -1)
		abort();
}

static void logcap_reset(void)
{
	if (ftruncate(logcap_fd, 0) == -1)
		abort();
}

static const char *logcap_text(void)
{
	static char buf[LOGCAP_MAX + 1];
	ssize_t n = pread(logcap_fd, buf, LOGCAP_MAX, 0);

	if (n < 0)
		abort();
	buf[n] = '\0';
	return buf;
}

#endif
