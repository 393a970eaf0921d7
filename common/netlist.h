/*
 * netlist.h - lists of networks (netlist.c), for require-tls-exempt.
 */
#ifndef COMMON_NETLIST_H
#define COMMON_NETLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/limits.h"

struct netlist {
	struct {
		int family;		/* AF_INET or AF_INET6 */
		uint8_t addr[16];	/* network byte order, host bits zero */
		unsigned prefix;
	} nets[NETLIST_MAX_NETS];
	size_t n;
};

/* Parses a comma- or blank-separated list of ADDR or ADDR/PREFIX (IPv4 or
 * IPv6) into nl; an empty string gives an empty list.  Returns 0, or -1
 * with a message in err. */
int netlist_parse(const char *s, struct netlist *nl, char *err, size_t size);
/* True if sa (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts as
 * IPv4) lies in one of nl's networks. */
bool netlist_match(const struct netlist *nl, const struct sockaddr *sa);

#endif
