/*
 * log.h - logging for both daemons.
 *
 * Targets: stderr (default; with "<N>" priority prefixes that journald
 * understands when stderr is connected to the journal), syslog, or a file
 * that log_reopen() reopens (SIGUSR1, for logrotate).  Messages below the
 * configured level are dropped.  Never pass a password to these functions.
 */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
enum log_target { LOG_TARGET_STDERR, LOG_TARGET_SYSLOG, LOG_TARGET_FILE };

/* Sets up logging for a program called ident (kept by pointer: pass a
 * string literal).  Safe to call again to change level or target; path is
 * used only with LOG_TARGET_FILE and copied.  Returns 0, or -1 if the file
 * cannot be opened (logging then stays on stderr). */
int log_init(const char *ident, enum log_level level, enum log_target target,
	     const char *path, int syslog_facility);
/* Reopens the log file (no-op for other targets).  Async-signal unsafe:
 * call it from the event loop, not from a signal handler. */
void log_reopen(void);
/* For a forked child about to close every descriptor it was not given
 * (privsep_close_fds): returns the descriptor the log writes to, or -1
 * with syslog, whose connection it closes; log_fds_closed() then
 * connects it again. */
int log_fds_closing(void);
void log_fds_closed(void);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* Parses "error", "warn", "info", "debug"; returns -1 if unknown. */
int log_level_parse(const char *s);
/* Parses a syslog facility name (daemon, mail, auth, authpriv,
 * local0..local7); returns -1 if unknown. */
int log_facility_parse(const char *s);

void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* log_warn appends ": strerror(errno)"; log_warnx does not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* fatal appends strerror(errno); both log at error level and exit(1).
 * Only for start-up errors, allocation failure and broken invariants. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Room for log_token() of a string of n bytes (each may become \xHH). */
#define LOG_TOKEN_SIZE(n)	(4 * (n) + 1)

/* Writes s into buf (size bytes) as one log token: bytes outside
 * 0x21..0x7e and the backslash become \xHH, an empty or NULL s becomes
 * "-", and what does not fit is cut (never inside an escape).  So a
 * client-chosen name can never add a field ("x rip=192.0.2.1"), a line, or
 * raw 8-bit bytes to a key=value log line that fail2ban parses.  Returns
 * buf (or "" if size is 0).  Thread-safe: the caller owns buf. */
const char *log_token(const char *s, char *buf, size_t size);

/* A budget of log lines for one kind of event (a refused connection
 * during a flood): at most per_sec a second.  Zero-initialise. */
struct log_ratelimit {
	uint64_t window_ms;		/* start of the current second */
	unsigned used;			/* lines logged in it */
	uint64_t suppressed;		/* not logged since the last one that was */
};
/* True if one more line may be logged at now_ms (a monotonic clock); the
 * caller then logs it, and *suppressed_r says how many were not logged
 * before it (to be said in that line).  False: the caller logs nothing;
 * the event is counted as suppressed.  One thread (not locked). */
bool log_ratelimit(struct log_ratelimit *rl, unsigned per_sec, uint64_t now_ms,
		   uint64_t *suppressed_r);

#endif
