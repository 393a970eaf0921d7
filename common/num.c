/*
 * num.c - strict number parsing (see num.h).
 */
#include <string.h>

#include "common/num.h"

/* Parses the leading digits of s (at least one); *end_r is the first
 * non-digit.  Returns -1 on no digits or overflow. */
static int parse_digits(const char *s, uint64_t *value_r, const char **end_r)
{
	uint64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*value_r = v;
	*end_r = p;
	return 0;
}

int num_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *value_r)
{
	uint64_t v;
	const char *end;

	if (parse_digits(s, &v, &end) == -1 || *end != '\0' || v < min || v > max)
		return -1;
	*value_r = v;
	return 0;
}

int num_parse_uint(const char *s, unsigned min, unsigned max, unsigned *value_r)
{
	uint64_t v;

	if (num_parse_u64(s, min, max, &v) == -1)
		return -1;
	*value_r = (unsigned)v;
	return 0;
}

static int scale(uint64_t v, uint64_t mult, uint64_t max, uint64_t *r)
{
	if (v > max / mult)
		return -1;
	*r = v * mult;
	return 0;
}

int num_parse_duration(const char *s, uint64_t max_ms, uint64_t *ms_r)
{
	uint64_t v, mult;
	const char *end;

	if (parse_digits(s, &v, &end) == -1)
		return -1;
	if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "s") == 0 || *end == '\0')
		mult = 1000;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mult = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 3600 * 1000;
	else
		return -1;
	return scale(v, mult, max_ms, ms_r);
}

int num_parse_size(const char *s, uint64_t max, uint64_t *bytes_r)
{
	uint64_t v, mult;
	const char *end;

	if (parse_digits(s, &v, &end) == -1)
		return -1;
	switch (*end) {
	case '\0': mult = 1; break;
	case 'K': case 'k': mult = 1024; end++; break;
	case 'M': mult = 1024 * 1024; end++; break;
	case 'G': mult = 1024 * 1024 * 1024; end++; break;
	default: return -1;
	}
	if (*end == 'B' && mult != 1)
		end++;
	if (*end != '\0')
		return -1;
	return scale(v, mult, max, bytes_r);
}

int num_parse_percent(const char *s, unsigned *pct_r)
{
	uint64_t v;
	const char *end;

	if (parse_digits(s, &v, &end) == -1 || v > 100)
		return -1;
	if (*end == '%')
		end++;
	if (*end != '\0')
		return -1;
	*pct_r = (unsigned)v;
	return 0;
}
