/*
 * test-netlist.c - require-tls-exempt's network lists (netlist.c), alone.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/netlist.h"
#include "tests/unit.h"

static bool match4(const struct netlist *nl, const char *ip)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, ip, &sin.sin_addr);
	return netlist_match(nl, (struct sockaddr *)&sin);
}

static bool match6(const struct netlist *nl, const char *ip)
{
	struct sockaddr_in6 sin6;

	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, ip, &sin6.sin6_addr);
	return netlist_match(nl, (struct sockaddr *)&sin6);
}

static void test_parse_and_match(void)
{
	struct netlist nl;
	char err[256];

	CHECK_INT(netlist_parse("127.0.0.0/8, ::1 10.1.0.0/16,192.0.2.7,2001:db8::/33", &nl,
				err, sizeof(err)), 0);
	CHECK_INT(nl.n, 5);
	CHECK(match4(&nl, "127.0.0.1"));
	CHECK(match4(&nl, "127.255.255.254"));
	CHECK(!match4(&nl, "128.0.0.1"));
	CHECK(match4(&nl, "10.1.200.3"));
	CHECK(!match4(&nl, "10.2.0.1"));
	CHECK(match4(&nl, "192.0.2.7"));
	CHECK(!match4(&nl, "192.0.2.8"));
	CHECK(match6(&nl, "::1"));
	CHECK(!match6(&nl, "::2"));
	CHECK(match6(&nl, "2001:db8:7fff::1"));
	CHECK(!match6(&nl, "2001:db8:8000::1"));	/* bit 33 set */
	/* IPv4-mapped IPv6 counts as IPv4; plain IPv6 never matches IPv4 nets */
	CHECK(match6(&nl, "::ffff:127.0.0.1"));
	CHECK(!match6(&nl, "::ffff:128.0.0.1"));
	CHECK(!match6(&nl, "::7f00:1"));
	/* /0 matches every address of its family */
	CHECK_INT(netlist_parse("0.0.0.0/0", &nl, err, sizeof(err)), 0);
	CHECK(match4(&nl, "203.0.113.9"));
	CHECK(!match6(&nl, "2001:db8::1"));
	/* empty list */
	CHECK_INT(netlist_parse("", &nl, err, sizeof(err)), 0);
	CHECK_INT(nl.n, 0);
	CHECK(!match4(&nl, "127.0.0.1"));
	CHECK_INT(netlist_parse(NULL, &nl, err, sizeof(err)), 0);
}

static void test_bad_lists(void)
{
	static const char *const bad[] = {
		"127.0.0.1/33", "::1/129", "10.0.0.1/8", "localhost", "1.2.3", "1.2.3.4/",
		"1.2.3.4/-1", "1.2.3.4/+8", "/8", "1.2.3.4/8x", "fe80::1%eth0",
		"1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,"
		"1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,"
		"1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,"
		"1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1,1.1.1.1",
	};
	struct netlist nl;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		CHECK_INT(netlist_parse(bad[i], &nl, err, sizeof(err)), -1);
		CHECK(err[0] != '\0');
	}
}

int main(void)
{
	log_init("test-netlist", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	UNIT_RUN(test_parse_and_match);
	UNIT_RUN(test_bad_lists);
	return unit_finish();
}
