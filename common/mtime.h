/*
 * mtime.h - monotonic time in milliseconds and microseconds.
 */
#ifndef COMMON_MTIME_H
#define COMMON_MTIME_H

#include <stdint.h>
#include <time.h>

static inline uint64_t mtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static inline uint64_t mtime_ms(void)
{
	return mtime_us() / 1000u;
}

/* Wall-clock (Unix) time in milliseconds: only for times that other hosts
 * read (the L2 cache's entries); everything local uses mtime_ms(). */
static inline uint64_t mtime_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Fills a struct timeval with a relative time of ms milliseconds. */
#define MTIME_TV(tv, ms) do { \
	(tv).tv_sec = (time_t)((ms) / 1000); \
	(tv).tv_usec = (suseconds_t)(((ms) % 1000) * 1000); \
} while (0)

#endif
