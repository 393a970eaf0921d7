/*
 * test-proxyproto.c - the PROXY protocol decoder alone: valid v1 and v2
 * headers, every incomplete prefix, and what it must refuse.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "common/sock.h"
#include "pop3d/pop3d.h"
#include "tests/unit.h"

static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55,
				 0x49, 0x54, 0x0a };

static int parse(const void *buf, size_t len, struct proxyproto_header *h)
{
	const char *why;
	int r = proxyproto_parse(buf, len, h, &why);

	if (r == -1 && why == NULL)
		return -2;	/* a refusal always says why */
	return r;
}

static const char *addr(const struct sockaddr_storage *ss, unsigned *port)
{
	static char buf[2][64];
	static int i;

	i ^= 1;
	return sock_addr_str((const struct sockaddr *)ss, buf[i], sizeof(buf[i]), port);
}

/* Every proper prefix of a complete header is "incomplete"; the header
 * followed by client bytes decodes to the same length. */
static void check_prefixes(const uint8_t *buf, size_t len)
{
	struct proxyproto_header h;
	uint8_t more[PROXYPROTO_V2_MAX + 64];

	for (size_t i = 0; i < len; i++)
		CHECK_INT(parse(buf, i, &h), 0);
	memcpy(more, buf, len);
	memcpy(more + len, "\x16\x03\x01USER x\r\n", 12);
	CHECK_INT(parse(more, len + 12, &h), (int)len);
}

static void test_v1(void)
{
	struct proxyproto_header h;
	unsigned port;
	const char *s = "PROXY TCP4 192.0.2.7 198.51.100.1 40000 110\r\n";
	const char *s6 = "PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n";

	CHECK_INT(parse(s, strlen(s), &h), (int)strlen(s));
	CHECK_INT(h.version, 1);
	CHECK(!h.local);
	CHECK_STR(addr(&h.src, &port), "192.0.2.7");
	CHECK_INT(port, 40000);
	CHECK_STR(addr(&h.dst, &port), "198.51.100.1");
	CHECK_INT(port, 110);
	check_prefixes((const uint8_t *)s, strlen(s));
	CHECK_INT(parse(s6, strlen(s6), &h), (int)strlen(s6));
	CHECK_STR(addr(&h.src, &port), "2001:db8::7");
	CHECK_INT(port, 65535);
	check_prefixes((const uint8_t *)s6, strlen(s6));
	CHECK_INT(parse("PROXY UNKNOWN\r\n", 15, &h), 15);
	CHECK(h.local);
	s = "PROXY UNKNOWN ffff::1 whatever 1 2\r\n";
	CHECK_INT(parse(s, strlen(s), &h), (int)strlen(s));
	CHECK(h.local);
}

static void test_v1_refused(void)
{
	static const char *bad[] = {
		"PROXY TCP4 192.0.2.7 198.51.100.1 40000 110\n",	/* no CR */
		"PROXY TCP4 192.0.2.7 198.51.100.1 40000 110\rX",	/* lone CR */
		"PROXY TCP4 192.0.2.7  198.51.100.1 40000 110\r\n",	/* two spaces */
		"PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n",		/* a field short */
		"PROXY TCP4 192.0.2.7 198.51.100.1 40000 110 1\r\n",	/* one too many */
		"PROXY TCP4 2001:db8::7 198.51.100.1 40000 110\r\n",	/* family */
		"PROXY TCP6 192.0.2.7 2001:db8::1 40000 110\r\n",
		"PROXY TCP4 192.0.2.256 198.51.100.1 40000 110\r\n",
		"PROXY TCP4 192.0.2.7 198.51.100.1 65536 110\r\n",	/* port range */
		"PROXY TCP4 192.0.2.7 198.51.100.1 0110 110\r\n",	/* leading zero */
		"PROXY TCP4 192.0.2.7 198.51.100.1 -1 110\r\n",
		"PROXY UDP4 192.0.2.7 198.51.100.1 1 110\r\n",
		"PROXY UNKNOWNX\r\n",
		"PROXY TCP4 192.0.2.7\t198.51.100.1 1 110\r\n",	/* control byte */
		"proxy TCP4 192.0.2.7 198.51.100.1 1 110\r\n",
		"PROXY\r\n",
		"USER alice\r\n",
		"\x16\x03\x01\x02\x00",					/* a ClientHello */
	};
	struct proxyproto_header h;
	char big[200];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = parse(bad[i], strlen(bad[i]), &h);
		if (r != -1)
			fprintf(stderr, "  accepted or waited for: %s\n", bad[i]);
		CHECK_INT(r, -1);
	}
	/* no CRLF within 107 bytes: refused at 107, not waited for */
	memset(big, 'A', sizeof(big));
	memcpy(big, "PROXY UNKNOWN ", 14);
	CHECK_INT(parse(big, 106, &h), 0);
	CHECK_INT(parse(big, 107, &h), -1);
	/* the longest line fits exactly */
	big[105] = '\r';
	big[106] = '\n';
	CHECK_INT(parse(big, 107, &h), 107);
	big[105] = 'A';
	big[106] = '\r';
	CHECK_INT(parse(big, 107, &h), -1);	/* its LF would be byte 108 */
}

/* A v2 header: cmd, fam, then body of len bytes. */
static size_t v2(uint8_t *out, unsigned cmd, unsigned fam, const void *body, size_t len)
{
	memcpy(out, sig, 12);
	out[12] = (uint8_t)(0x20 | cmd);
	out[13] = (uint8_t)fam;
	out[14] = (uint8_t)(len >> 8);
	out[15] = (uint8_t)len;
	memcpy(out + 16, body, len);
	return 16 + len;
}

static void test_v2(void)
{
	struct proxyproto_header h;
	uint8_t buf[PROXYPROTO_V2_MAX + 64], body[PROXYPROTO_V2_MAX];
	unsigned port;
	size_t n;

	/* TCP over IPv4, with two TLVs (a NOOP and an authority) */
	memcpy(body, "\xc0\x00\x02\x07\xc6\x33\x64\x01\x9c\x40\x00\x6e", 12);
	memcpy(body + 12, "\x04\x00\x02" "xy" "\x02\x00\x03" "abc", 11);
	n = v2(buf, 1, 0x11, body, 23);
	CHECK_INT(parse(buf, n, &h), (int)n);
	CHECK_INT(h.version, 2);
	CHECK(!h.local);
	CHECK_STR(addr(&h.src, &port), "192.0.2.7");
	CHECK_INT(port, 40000);
	CHECK_STR(addr(&h.dst, &port), "198.51.100.1");
	CHECK_INT(port, 110);
	check_prefixes(buf, n);
	/* TCP over IPv6 */
	memset(body, 0, 36);
	inet_pton(AF_INET6, "2001:db8::7", body);
	inet_pton(AF_INET6, "2001:db8::1", body + 16);
	memcpy(body + 32, "\x04\xd2\x00\x6e", 4);
	n = v2(buf, 1, 0x21, body, 36);
	CHECK_INT(parse(buf, n, &h), (int)n);
	CHECK_STR(addr(&h.src, &port), "2001:db8::7");
	CHECK_INT(port, 1234);
	check_prefixes(buf, n);
	/* LOCAL (a health check), with or without a block; PROXY UNSPEC */
	n = v2(buf, 0, 0x00, body, 0);
	CHECK_INT(parse(buf, n, &h), 16);
	CHECK(h.local);
	n = v2(buf, 0, 0x11, body, 12);
	CHECK_INT(parse(buf, n, &h), 28);
	CHECK(h.local);
	n = v2(buf, 1, 0x00, body, 5);
	CHECK_INT(parse(buf, n, &h), 21);
	CHECK(h.local);
	/* the largest header we take, and one byte more */
	memset(body, 0, sizeof(body));
	n = v2(buf, 0, 0x00, body, PROXYPROTO_V2_MAX - 16);
	CHECK_INT(parse(buf, n, &h), PROXYPROTO_V2_MAX);
	n = v2(buf, 0, 0x00, body, PROXYPROTO_V2_MAX - 15);
	CHECK_INT(parse(buf, 16, &h), -1);	/* refused on its length, not waited for */
}

static void test_v2_refused(void)
{
	struct proxyproto_header h;
	uint8_t buf[PROXYPROTO_V2_MAX + 64], body[64] = { 0 };
	size_t n;

	n = v2(buf, 1, 0x12, body, 12);		/* UDP */
	CHECK_INT(parse(buf, n, &h), -1);
	n = v2(buf, 1, 0x31, body, 12);		/* UNIX */
	CHECK_INT(parse(buf, n, &h), -1);
	n = v2(buf, 1, 0x11, body, 11);		/* block too short */
	CHECK_INT(parse(buf, n, &h), -1);
	n = v2(buf, 1, 0x21, body, 35);
	CHECK_INT(parse(buf, n, &h), -1);
	n = v2(buf, 2, 0x11, body, 12);		/* command */
	CHECK_INT(parse(buf, 13, &h), -1);
	n = v2(buf, 1, 0x11, body, 12);
	buf[12] = 0x11;				/* version 1 in a v2 header */
	CHECK_INT(parse(buf, 13, &h), -1);
	buf[12] = 0x21;
	buf[11] = 0x0b;				/* signature */
	CHECK_INT(parse(buf, 12, &h), -1);
	/* a TLV that runs past the block */
	memcpy(body + 12, "\x04\x00\x05" "xy", 5);
	n = v2(buf, 1, 0x11, body, 17);
	CHECK_INT(parse(buf, n, &h), -1);
	memcpy(body + 12, "\x04\x00", 2);	/* a TLV header cut short */
	n = v2(buf, 1, 0x11, body, 14);
	CHECK_INT(parse(buf, n, &h), -1);
}

int main(void)
{
	UNIT_RUN(test_v1);
	UNIT_RUN(test_v1_refused);
	UNIT_RUN(test_v2);
	UNIT_RUN(test_v2_refused);
	return unit_finish();
}
