/*
 * fuzz-stats-http.c - libFuzzer harness for the metrics-listen request
 * parser (stats_http_parse in common/stats_server.c), which runs in the
 * pop3d master (root) and in authd, on bytes from the network.
 *
 * Input: a request head, as stats_server.c hands it over (any bytes up to
 * STATS_HTTP_MAX_REQUEST).  Checked against a model of what it must
 * accept: 200 exactly for "GET" or "HEAD", one blank, "/metrics" alone or
 * with a query, one blank, "HTTP/1.0" or "HTTP/1.1", then the line end;
 * never a status outside the documented set; head_r only for a HEAD.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/stats_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Does the first line of buf (len bytes) ask for /metrics correctly? */
static bool model_ok(const char *buf, size_t len, bool *head)
{
	const char *nl = memchr(buf, '\n', len), *p = buf, *end;
	size_t ml;

	if (nl == NULL || memchr(buf, '\0', len) != NULL)
		return false;
	end = nl > buf && nl[-1] == '\r' ? nl - 1 : nl;
	if ((size_t)(end - p) > 4 && memcmp(p, "GET ", 4) == 0)
		ml = 4, *head = false;
	else if ((size_t)(end - p) > 5 && memcmp(p, "HEAD ", 5) == 0)
		ml = 5, *head = true;
	else
		return false;
	p += ml;
	if ((size_t)(end - p) < 8 || memcmp(p, "/metrics", 8) != 0)
		return false;
	p += 8;
	if (p < end && *p == '?')
		while (p < end && *p > ' ' && *p != 0x7f)
			p++;
	return end - p == 9 && (memcmp(p, " HTTP/1.0", 9) == 0 || memcmp(p, " HTTP/1.1", 9) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	bool head = true, mhead = false;
	int st;

	if (size > STATS_HTTP_MAX_REQUEST)
		return 0;
	st = stats_http_parse(buf, size, &head);
	if (st != 200 && st != 400 && st != 404 && st != 405 && st != 505)
		__builtin_trap();
	/* HEAD gets no body, whatever the status */
	if (head && (size < 5 || memcmp(buf, "HEAD ", 5) != 0))
		__builtin_trap();
	if ((st == 200) != model_ok(buf, size, &mhead))
		__builtin_trap();
	if (st == 200 && head != mhead)
		__builtin_trap();
	return 0;
}
