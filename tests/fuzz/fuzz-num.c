/*
 * fuzz-num.c - libFuzzer harness for the strict number parsers
 * (common/num.c), each checked against a model written from num.h.
 *
 * Input: the string to parse (up to its first NUL).  Every parser must
 * accept exactly what the model accepts and give the same value.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/num.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Leading decimal digits of s as a value; false if none or above 2^64-1. */
static bool model_digits(const char *s, uint64_t *v_r, const char **end_r)
{
	unsigned __int128 v = 0;
	const char *p = s;

	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > UINT64_MAX)
			v = (unsigned __int128)UINT64_MAX + 1;	/* saturate: too big */
		p++;
	}
	if (p == s || v > UINT64_MAX)
		return false;
	*v_r = (uint64_t)v;
	*end_r = p;
	return true;
}

static bool model_scaled(uint64_t v, uint64_t mult, uint64_t max, uint64_t *r)
{
	unsigned __int128 x = (unsigned __int128)v * mult;

	if (x > max)
		return false;
	*r = (uint64_t)x;
	return true;
}

static bool model_duration(const char *s, uint64_t max, uint64_t *r)
{
	uint64_t v, mult;
	const char *end;

	if (!model_digits(s, &v, &end))
		return false;
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		mult = 60000;
	else if (strcmp(end, "h") == 0)
		mult = 3600000;
	else
		return false;
	return model_scaled(v, mult, max, r);
}

static bool model_size(const char *s, uint64_t max, uint64_t *r)
{
	static const struct { const char *suffix; uint64_t mult; } units[] = {
		{ "", 1 }, { "K", 1024 }, { "KB", 1024 }, { "k", 1024 }, { "kB", 1024 },
		{ "M", 1 << 20 }, { "MB", 1 << 20 }, { "G", 1 << 30 }, { "GB", 1 << 30 },
	};
	uint64_t v;
	const char *end;

	if (!model_digits(s, &v, &end))
		return false;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(end, units[i].suffix) == 0)
			return model_scaled(v, units[i].mult, max, r);
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	uint64_t got, want, max;
	unsigned pct;
	const char *end;
	bool ok;

	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	/* a limit that varies with the input, so range checks are exercised */
	max = size > 0 ? UINT64_MAX >> (data[0] % 64) : UINT64_MAX;

	ok = model_digits(s, &want, &end) && *end == '\0' && want <= max;
	if ((num_parse_u64(s, 0, max, &got) == 0) != ok || (ok && got != want))
		abort();
	ok = model_duration(s, max, &want);
	if ((num_parse_duration(s, max, &got) == 0) != ok || (ok && got != want))
		abort();
	ok = model_size(s, max, &want);
	if ((num_parse_size(s, max, &got) == 0) != ok || (ok && got != want))
		abort();
	ok = model_digits(s, &want, &end) && want <= 100 &&
		(strcmp(end, "") == 0 || strcmp(end, "%") == 0);
	if ((num_parse_percent(s, &pct) == 0) != ok || (ok && pct != want))
		abort();
	free(s);
	return 0;
}
