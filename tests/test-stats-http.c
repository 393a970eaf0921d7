/*
 * test-stats-http.c - the metrics-listen request parser
 * (stats_http_parse in common/stats_server.c), alone.
 */
#include <stdbool.h>
#include <string.h>

#include "common/stats_server.h"
#include "tests/unit.h"

static int parse(const char *s, bool *head)
{
	return stats_http_parse(s, strlen(s), head);
}

static void test_accepted(void)
{
	bool head;

	CHECK_INT(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &head), 200);
	CHECK(!head);
	CHECK_INT(parse("GET /metrics HTTP/1.0\n\n", &head), 200);
	CHECK_INT(parse("HEAD /metrics HTTP/1.1\r\n\r\n", &head), 200);
	CHECK(head);
	CHECK_INT(parse("GET /metrics?name[]=x HTTP/1.1\r\n\r\n", &head), 200);
	CHECK(!head);
}

static void test_refused(void)
{
	bool head;

	CHECK_INT(parse("GET / HTTP/1.1\r\n\r\n", &head), 404);
	CHECK_INT(parse("GET /metrics/ HTTP/1.1\r\n\r\n", &head), 404);
	CHECK_INT(parse("GET /metricsx HTTP/1.1\r\n\r\n", &head), 404);
	CHECK_INT(parse("GET /metric HTTP/1.1\r\n\r\n", &head), 404);
	CHECK_INT(parse("POST /metrics HTTP/1.1\r\n\r\n", &head), 405);
	CHECK_INT(parse("get /metrics HTTP/1.1\r\n\r\n", &head), 405);
	CHECK_INT(parse("GET /metrics HTTP/2.0\r\n\r\n", &head), 505);
	CHECK_INT(parse("GET /metrics HTTP/1.2\r\n\r\n", &head), 505);
	CHECK_INT(parse("GET /metrics HTTP/1.1x\r\n\r\n", &head), 400);
	CHECK_INT(parse("GET /metrics http/1.1\r\n\r\n", &head), 400);
	CHECK_INT(parse("GET /metrics\r\n\r\n", &head), 400);
	CHECK_INT(parse("GET  /metrics HTTP/1.1\r\n\r\n", &head), 400);
	CHECK_INT(parse(" GET /metrics HTTP/1.1\r\n\r\n", &head), 400);
	CHECK_INT(parse("GET http://h/metrics HTTP/1.1\r\n\r\n", &head), 400);
	CHECK_INT(parse("GET * HTTP/1.1\r\n\r\n", &head), 400);
	CHECK_INT(parse("\r\n\r\n", &head), 400);
	CHECK_INT(parse("GET /metrics HTTP/1.1", &head), 400);	/* no line end */
	CHECK_INT(parse("G(T /metrics HTTP/1.1\r\n\r\n", &head), 400);
	CHECK_INT(parse("GET /me\x7ftrics HTTP/1.1\r\n\r\n", &head), 400);
	CHECK_INT(stats_http_parse("GET /metrics HTTP/1.1\r\nX: \0\r\n\r\n", 30, &head), 400);
	CHECK_INT(stats_http_parse("GET /metrics HTTP/1.1\r\n\r\n", 0, &head), 400);
	CHECK(!head);
}

int main(void)
{
	UNIT_RUN(test_accepted);
	UNIT_RUN(test_refused);
	return unit_finish();
}
