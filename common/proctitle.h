/*
 * proctitle.h - what `ps` shows for a process (its argv area).
 */
#ifndef COMMON_PROCTITLE_H
#define COMMON_PROCTITLE_H

/* Takes over the memory of argv and environ for titles: the environment
 * is first copied to the heap (getenv keeps working).  Call it early in
 * main, and keep copies of any argv string you still need afterwards:
 * proctitle_set() overwrites them. */
void proctitle_init(int argc, char **argv);

/* Sets the title (truncated to the original argv + environ size). */
void proctitle_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
