/*
 * num.h - strict number, duration and size parsing.
 *
 * Every number that comes from the wire or a config file goes through
 * here: no signs, no leading/trailing junk, no overflow, range-checked.
 */
#ifndef COMMON_NUM_H
#define COMMON_NUM_H

#include <stdint.h>

/* Decimal digits only, min <= value <= max.  Returns 0 or -1. */
int num_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *value_r);
int num_parse_uint(const char *s, unsigned min, unsigned max, unsigned *value_r);

/* A duration: digits followed by "ms", "s", "m" or "h" (a bare number is
 * seconds).  Result in milliseconds, at most max_ms.  Returns 0 or -1. */
int num_parse_duration(const char *s, uint64_t max_ms, uint64_t *ms_r);

/* A size: digits followed by nothing (bytes), "K", "M" or "G" (binary
 * multiples, an optional trailing "B" allowed).  Returns 0 or -1. */
int num_parse_size(const char *s, uint64_t max, uint64_t *bytes_r);

/* A percentage "N" or "N%", 0..100.  Returns 0 or -1. */
int num_parse_percent(const char *s, unsigned *pct_r);

#endif
