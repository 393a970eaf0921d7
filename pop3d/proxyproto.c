/*
 * proxyproto.c - the decoder of the PROXY protocol header (HAProxy's
 * "PROXY protocol" versions 1 and 2) that a load balancer sends before
 * the client's first byte.
 *
 * Runs in a front end only, as login-user in login-chroot (login.c reads
 * the header and calls this); never in the master, never as root.  Pure:
 * bytes in, a verdict and addresses out, no I/O, no allocation, so the
 * unit tests (test-proxyproto.c) and the fuzzer (fuzz-proxyproto.c) drive
 * exactly what runs.
 *
 * DESIGN
 * - The reader must never take a byte past the header: what follows is the
 *   client's (a TLS ClientHello, pipelined POP3).  So the decoder also
 *   answers "incomplete", and promises that every byte of an incomplete
 *   prefix belongs to the header: the reader may then consume all it
 *   peeked, and consumes exactly the header's length once it is complete.
 *   A prefix that cannot start a valid header is refused at once (a TLS
 *   client or a POP3 client on a PROXY port fails fast, not at the timeout).
 * - Bounds: a version 1 line is at most PROXYPROTO_V1_MAX bytes with its
 *   CRLF (the specification's 107); a version 2 header at most
 *   PROXYPROTO_V2_MAX (16 bytes, the largest address block we read, 36
 *   for TCP over IPv6, and room for TLVs); its length field is checked
 *   against that before anything waits for the rest.
 * - Strict version 1: "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" with single
 *   spaces, addresses of the named family (inet_pton), ports 0-65535 in
 *   decimal without leading zeros; "PROXY UNKNOWN" and anything up to the
 *   CRLF means "use the connection's own addresses".  Only printable ASCII
 *   before the CRLF; a lone CR or LF is refused.
 * - Version 2: command LOCAL (the balancer's own health check) is accepted
 *   whatever its family, and means the connection's own addresses, as
 *   does command PROXY with family UNSPEC.  PROXY over TCP/IPv4 or
 *   TCP/IPv6 gives the addresses; UDP and UNIX families are refused (this
 *   is a TCP service).  TLVs after the address block are walked, each one's
 *   length checked against the block, and otherwise ignored (the
 *   specification says a receiver ignores the ones it does not know).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "pop3d/pop3d.h"

static const uint8_t v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};
static const char v1_prefix[] = "PROXY ";

#define V2_HEADER	16	/* signature, version/command, family, length */
#define V2_ADDR_INET	12	/* src, dst (4 each), sports */
#define V2_ADDR_INET6	36	/* src, dst (16 each), ports */

static int refuse(const char **why_r, const char *why)
{
	*why_r = why;
	return -1;
}

/* A port: "0" or decimal digits without a leading zero, at most 65535.
 * s is len bytes, not terminated. */
static bool v1_port(const char *s, size_t len, uint16_t *port_r)
{
	unsigned v = 0;

	if (len == 0 || len > 5 || (len > 1 && s[0] == '0'))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*port_r = (uint16_t)v;
	return true;
}

/* An address of family af from len bytes at s (not terminated) into ss. */
static bool v1_addr(int af, const char *s, size_t len, struct sockaddr_storage *ss)
{
	char buf[INET6_ADDRSTRLEN + 1];

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	memset(ss, 0, sizeof(*ss));
	ss->ss_family = (sa_family_t)af;
	if (af == AF_INET)
		return inet_pton(AF_INET, buf, &((struct sockaddr_in *)ss)->sin_addr) == 1;
	return inet_pton(AF_INET6, buf, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* The line of a complete version 1 header, without its CRLF (len bytes,
 * the first six "PROXY "). */
static int v1_line(const char *line, size_t len, struct proxyproto_header *h,
		   const char **why_r)
{
	const char *f[5];
	size_t flen[5], n = 0;
	const char *p = line + 6, *end = line + len;
	uint16_t sport, dport;
	int af;

	h->version = 1;
	if ((size_t)(end - p) >= 7 && memcmp(p, "UNKNOWN", 7) == 0 &&
	    (end - p == 7 || p[7] == ' ')) {
		h->local = true;	/* the rest of the line is to be ignored */
		return 0;
	}
	/* exactly five fields, single spaces: PROTO SRC DST SPORT DPORT */
	while (n < 5) {
		const char *sp = memchr(p, ' ', (size_t)(end - p));
		const char *fend = sp != NULL ? sp : end;

		f[n] = p;
		flen[n++] = (size_t)(fend - p);
		if (sp == NULL)
			break;
		p = sp + 1;
		if (n == 5)
			return refuse(why_r, "v1: too many fields");
	}
	if (n != 5)
		return refuse(why_r, "v1: expected PROTO SRC DST SPORT DPORT");
	if (flen[0] == 4 && memcmp(f[0], "TCP4", 4) == 0)
		af = AF_INET;
	else if (flen[0] == 4 && memcmp(f[0], "TCP6", 4) == 0)
		af = AF_INET6;
	else
		return refuse(why_r, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
	if (!v1_addr(af, f[1], flen[1], &h->src) || !v1_addr(af, f[2], flen[2], &h->dst))
		return refuse(why_r, "v1: bad address");
	if (!v1_port(f[3], flen[3], &sport) || !v1_port(f[4], flen[4], &dport))
		return refuse(why_r, "v1: bad port");
	set_port(&h->src, sport);
	set_port(&h->dst, dport);
	return 0;
}

static int parse_v1(const uint8_t *buf, size_t len, struct proxyproto_header *h,
		    const char **why_r)
{
	size_t n = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;

	if (memcmp(buf, v1_prefix, n < 6 ? n : 6) != 0)
		return refuse(why_r, "not a PROXY protocol header");
	for (size_t i = 6; i < n; i++) {
		if (buf[i] == '\r') {
			if (i + 1 == len)	/* the LF may follow, if it fits */
				return i + 2 > PROXYPROTO_V1_MAX ?
				       refuse(why_r, "v1: no CRLF within 107 bytes") : 0;
			if (buf[i + 1] != '\n' || i + 2 > PROXYPROTO_V1_MAX)
				return refuse(why_r, "v1: CR without LF");
			if (v1_line((const char *)buf, i, h, why_r) == -1)
				return -1;
			return (int)(i + 2);
		}
		if (buf[i] < 0x20 || buf[i] > 0x7e)
			return refuse(why_r, "v1: a byte that is not printable ASCII");
	}
	if (n == PROXYPROTO_V1_MAX)
		return refuse(why_r, "v1: no CRLF within 107 bytes");
	return 0;
}

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* TLVs in len bytes at p: each type (1), length (2), value, inside. */
static bool v2_tlvs_ok(const uint8_t *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		if (len - off < 3 || be16(p + off + 1) > len - off - 3)
			return false;
		off += 3 + be16(p + off + 1);
	}
	return true;
}

static int parse_v2(const uint8_t *buf, size_t len, struct proxyproto_header *h,
		    const char **why_r)
{
	size_t total, body;
	const uint8_t *a;
	unsigned cmd, fam;

	if (memcmp(buf, v2_sig, len < sizeof(v2_sig) ? len : sizeof(v2_sig)) != 0)
		return refuse(why_r, "not a PROXY protocol header");
	if (len <= 12)
		return 0;
	if ((buf[12] & 0xf0) != 0x20)
		return refuse(why_r, "v2: unknown version");
	cmd = buf[12] & 0x0f;
	if (cmd > 1)
		return refuse(why_r, "v2: unknown command");
	if (len < V2_HEADER)
		return 0;
	fam = buf[13];
	body = be16(buf + 14);
	total = V2_HEADER + body;
	if (total > PROXYPROTO_V2_MAX)
		return refuse(why_r, "v2: header longer than we accept");
	if (cmd == 1 && fam != 0x00 && fam != 0x11 && fam != 0x21)
		return refuse(why_r, "v2: address family other than TCP over IPv4 or IPv6");
	if ((fam == 0x11 && body < V2_ADDR_INET) || (fam == 0x21 && body < V2_ADDR_INET6))
		if (cmd == 1)
			return refuse(why_r, "v2: address block too short");
	if (len < total)
		return 0;
	h->version = 2;
	if (cmd == 0 || fam == 0x00) {
		/* LOCAL, or PROXY with UNSPEC: the connection's own addresses;
		 * the block is skipped whatever it holds */
		h->local = true;
		return (int)total;
	}
	a = buf + V2_HEADER;
	memset(&h->src, 0, sizeof(h->src));
	memset(&h->dst, 0, sizeof(h->dst));
	if (fam == 0x11) {
		struct sockaddr_in *s = (struct sockaddr_in *)&h->src;
		struct sockaddr_in *d = (struct sockaddr_in *)&h->dst;

		s->sin_family = d->sin_family = AF_INET;
		memcpy(&s->sin_addr, a, 4);
		memcpy(&d->sin_addr, a + 4, 4);
		memcpy(&s->sin_port, a + 8, 2);		/* both in network order */
		memcpy(&d->sin_port, a + 10, 2);
		a += V2_ADDR_INET;
	} else {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src;
		struct sockaddr_in6 *d = (struct sockaddr_in6 *)&h->dst;

		s->sin6_family = d->sin6_family = AF_INET6;
		memcpy(&s->sin6_addr, a, 16);
		memcpy(&d->sin6_addr, a + 16, 16);
		memcpy(&s->sin6_port, a + 32, 2);
		memcpy(&d->sin6_port, a + 34, 2);
		a += V2_ADDR_INET6;
	}
	if (!v2_tlvs_ok(a, (size_t)(buf + total - a)))
		return refuse(why_r, "v2: malformed TLV");
	return (int)total;
}

int proxyproto_parse(const uint8_t *buf, size_t len, struct proxyproto_header *h,
		     const char **why_r)
{
	memset(h, 0, sizeof(*h));
	*why_r = NULL;
	if (len == 0)
		return 0;
	if (buf[0] == 'P')
		return parse_v1(buf, len, h, why_r);
	if (buf[0] == v2_sig[0])
		return parse_v2(buf, len, h, why_r);
	return refuse(why_r, "not a PROXY protocol header");
}
