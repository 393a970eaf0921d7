/*
 * netlist.c - lists of networks ("127.0.0.0/8, ::1") and matching an
 * address against them.  Used for pop3d's require-tls-exempt: parsed by
 * config.c when either daemon loads the file (as whoever starts it), and
 * by a pop3d front end (as root before its drop, then matched per
 * connection as login-user in login-chroot).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common/num.h"
#include "common/netlist.h"

static int parse_one(const char *item, struct netlist *nl, char *err, size_t size)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(item, '/');
	size_t alen = slash != NULL ? (size_t)(slash - item) : strlen(item);
	unsigned prefix, max;
	int family;

	if (nl->n == NETLIST_MAX_NETS) {
		snprintf(err, size, "more than %d networks", NETLIST_MAX_NETS);
		return -1;
	}
	if (alen == 0 || alen >= sizeof(addr))
		goto bad;
	memcpy(addr, item, alen);
	addr[alen] = '\0';
	family = strchr(addr, ':') != NULL ? AF_INET6 : AF_INET;
	max = family == AF_INET6 ? 128 : 32;
	if (inet_pton(family, addr, nl->nets[nl->n].addr) != 1)
		goto bad;
	prefix = max;
	if (slash != NULL && num_parse_uint(slash + 1, 0, max, &prefix) == -1)
		goto bad;
	/* Host bits must be zero: "10.1.2.3/8" is more likely a typo than
	 * a network. */
	for (unsigned bit = prefix; bit < max; bit++)
		if (nl->nets[nl->n].addr[bit / 8] & (0x80 >> (bit % 8))) {
			snprintf(err, size, "\"%s\": address has bits set beyond the /%u prefix",
				 item, prefix);
			return -1;
		}
	nl->nets[nl->n].family = family;
	nl->nets[nl->n].prefix = prefix;
	nl->n++;
	return 0;
bad:
	snprintf(err, size, "\"%s\": expected ADDR or ADDR/PREFIX (IPv4 or IPv6)", item);
	return -1;
}

int netlist_parse(const char *s, struct netlist *nl, char *err, size_t size)
{
	char buf[4096], *save = NULL;

	memset(nl, 0, sizeof(*nl));
	if (s == NULL)
		return 0;
	if (strlen(s) >= sizeof(buf)) {
		snprintf(err, size, "list too long");
		return -1;
	}
	snprintf(buf, sizeof(buf), "%s", s);
	for (char *tok = strtok_r(buf, ", \t", &save); tok != NULL;
	     tok = strtok_r(NULL, ", \t", &save))
		if (parse_one(tok, nl, err, size) == -1)
			return -1;
	return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;

	if (memcmp(a, net, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ net[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

bool netlist_match(const struct netlist *nl, const struct sockaddr *sa)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	const uint8_t *a;
	int family = sa->sa_family;

	if (family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		if (memcmp(a, v4mapped, sizeof(v4mapped)) == 0) {
			family = AF_INET;
			a += 12;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < nl->n; i++)
		if (nl->nets[i].family == family &&
		    prefix_equal(a, nl->nets[i].addr, nl->nets[i].prefix))
			return true;
	return false;
}
