/*
 * log.c - leveled logging to stderr, syslog or a file.
 *
 * One message is formatted into a local buffer and written with a single
 * write(2), so lines from several threads or processes sharing the target
 * do not interleave.  The settings are read under a read lock by every
 * writer and changed under the write lock (log_init at a reload, while
 * worker threads may be logging).  Under systemd (JOURNAL_STREAM matches our stderr),
 * each line starts with "<N>", the syslog priority journald understands.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

static const char *log_ident = "?";
static enum log_level log_level = LOG_LEVEL_INFO;
static enum log_target log_target = LOG_TARGET_STDERR;
static int log_fd = STDERR_FILENO;
static char log_path[4096];
static int log_facility;
static bool log_journal;
static pthread_rwlock_t log_lock = PTHREAD_RWLOCK_INITIALIZER;

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const int level_prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

/* True if stderr is the journal stream systemd gave us ("dev:ino"). */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	struct stat st;
	unsigned long long dev, ino;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) == -1)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

int log_init(const char *ident, enum log_level level, enum log_target target,
	     const char *path, int syslog_facility)
{
	int fd, rc = 0;

	pthread_rwlock_wrlock(&log_lock);
	log_ident = ident;
	log_level = level;
	log_journal = stderr_is_journal();
	if (log_target == LOG_TARGET_FILE && log_fd != STDERR_FILENO) {
		close(log_fd);
		log_fd = STDERR_FILENO;
	}
	if (log_target == LOG_TARGET_SYSLOG)
		closelog();
	log_target = LOG_TARGET_STDERR;

	switch (target) {
	case LOG_TARGET_STDERR:
		break;
	case LOG_TARGET_SYSLOG:
		openlog(ident, LOG_PID | LOG_NDELAY, syslog_facility);
		log_facility = syslog_facility;
		log_target = LOG_TARGET_SYSLOG;
		break;
	case LOG_TARGET_FILE:
		if (path == NULL || strlen(path) >= sizeof(log_path) ||
		    (fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) == -1) {
			rc = -1;
			break;
		}
		snprintf(log_path, sizeof(log_path), "%s", path);
		log_fd = fd;
		log_target = LOG_TARGET_FILE;
		break;
	}
	pthread_rwlock_unlock(&log_lock);
	return rc;
}

void log_reopen(void)
{
	char path[sizeof(log_path)];
	int fd, err = 0;

	pthread_rwlock_wrlock(&log_lock);
	if (log_target != LOG_TARGET_FILE) {
		pthread_rwlock_unlock(&log_lock);
		return;
	}
	memcpy(path, log_path, sizeof(path));
	fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd == -1) {
		err = errno;
	} else {
		/* dup2 swaps the file under log_fd atomically for other threads. */
		if (dup2(fd, log_fd) == -1)
			err = errno;
		close(fd);
	}
	pthread_rwlock_unlock(&log_lock);
	if (err != 0) {
		errno = err;
		log_warn("log: cannot reopen %s", path);
	}
}

/* glibc keeps the syslog socket to itself: it must be closed through
 * closelog(), or glibc would one day close whatever took its number. */
int log_fds_closing(void)
{
	if (log_target != LOG_TARGET_SYSLOG)
		return log_fd;
	closelog();
	return -1;
}

void log_fds_closed(void)
{
	if (log_target == LOG_TARGET_SYSLOG)
		openlog(log_ident, LOG_PID | LOG_NDELAY, log_facility);
}

void log_set_level(enum log_level level)
{
	pthread_rwlock_wrlock(&log_lock);
	log_level = level;
	pthread_rwlock_unlock(&log_lock);
}

bool log_enabled(enum log_level level)
{
	bool on;

	pthread_rwlock_rdlock(&log_lock);
	on = level <= log_level;
	pthread_rwlock_unlock(&log_lock);
	return on;
}

int log_level_parse(const char *s)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (strcmp(s, level_names[i]) == 0)
			return (int)i;
	if (strcmp(s, "warning") == 0)
		return LOG_LEVEL_WARN;
	return -1;
}

int log_facility_parse(const char *s)
{
	static const struct { const char *name; int fac; } f[] = {
		{ "daemon", LOG_DAEMON }, { "mail", LOG_MAIL }, { "auth", LOG_AUTH },
		{ "authpriv", LOG_AUTHPRIV }, { "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
		{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 },
		{ "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (strcmp(s, f[i].name) == 0)
			return f[i].fac;
	return -1;
}

static void log_vemit(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	char msg[2048], line[2300];
	int n;

	pthread_rwlock_rdlock(&log_lock);
	if (level > log_level)
		goto out;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* Control characters (from a hostile peer) never reach the log raw. */
	for (char *p = msg; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';

	if (log_target == LOG_TARGET_SYSLOG) {
		if (errnum != 0)
			syslog(level_prio[level], "%s: %s", msg, strerror(errnum));
		else
			syslog(level_prio[level], "%s", msg);
		goto out;
	}

	const char *err = errnum != 0 ? strerror(errnum) : NULL;
	if (log_target == LOG_TARGET_FILE) {
		char stamp[40];
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line, sizeof(line), "%s.%03ld %s[%ld]: %s: %s%s%s\n", stamp,
			     ts.tv_nsec / 1000000, log_ident, (long)getpid(),
			     level_names[level], msg, err ? ": " : "", err ? err : "");
	} else if (log_journal) {
		n = snprintf(line, sizeof(line), "<%d>%s%s%s\n", level_prio[level], msg,
			     err ? ": " : "", err ? err : "");
	} else {
		n = snprintf(line, sizeof(line), "%s[%ld]: %s: %s%s%s\n", log_ident,
			     (long)getpid(), level_names[level], msg, err ? ": " : "",
			     err ? err : "");
	}
	if (n < 0)
		goto out;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	while (write(log_fd, line, (size_t)n) == -1 && errno == EINTR)
		;
out:
	pthread_rwlock_unlock(&log_lock);
}

#define LOG_FN(name, level, with_errno) \
void name(const char *fmt, ...) \
{ \
	int saved = errno; \
	va_list ap; \
	va_start(ap, fmt); \
	log_vemit(level, (with_errno) ? saved : 0, fmt, ap); \
	va_end(ap); \
	errno = saved; \
}

LOG_FN(log_error, LOG_LEVEL_ERROR, 0)
LOG_FN(log_warn, LOG_LEVEL_WARN, 1)
LOG_FN(log_warnx, LOG_LEVEL_WARN, 0)
LOG_FN(log_info, LOG_LEVEL_INFO, 0)
LOG_FN(log_debug, LOG_LEVEL_DEBUG, 0)

void fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERROR, saved, fmt, ap);
	va_end(ap);
	exit(1);
}

void fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vemit(LOG_LEVEL_ERROR, 0, fmt, ap);
	va_end(ap);
	exit(1);
}

const char *log_token(const char *s, char *buf, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;

	if (size == 0)
		return "";
	if (s == NULL || *s == '\0')
		s = "-";
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch > 0x20 && ch < 0x7f && ch != '\\') {
			if (n + 1 >= size)
				break;
			buf[n++] = (char)ch;
		} else {
			if (n + 4 >= size)
				break;
			buf[n++] = '\\';
			buf[n++] = 'x';
			buf[n++] = hex[ch >> 4];
			buf[n++] = hex[ch & 0xf];
		}
	}
	buf[n] = '\0';
	return buf;
}

bool log_ratelimit(struct log_ratelimit *rl, unsigned per_sec, uint64_t now_ms,
		   uint64_t *suppressed_r)
{
	if (now_ms - rl->window_ms >= 1000) {
		rl->window_ms = now_ms;
		rl->used = 0;
	}
	if (rl->used >= per_sec) {
		rl->suppressed++;
		return false;
	}
	rl->used++;
	*suppressed_r = rl->suppressed;
	rl->suppressed = 0;
	return true;
}
