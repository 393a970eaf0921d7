/*
 * fuzz-proxyproto.c - libFuzzer harness for the PROXY protocol decoder
 * (pop3d/proxyproto.c), which reads the first bytes a load balancer sends.
 *
 * Input: the bytes as read from the socket so far.
 * Checks: the result is a refusal with a reason, "incomplete" below the
 * largest header, or a length within the input and the bound; a complete
 * header decodes to the same length and addresses when cut right after
 * it, and one byte less is incomplete (so the reader never takes a byte
 * past the header, and never waits for one that cannot come); an
 * incomplete input stays incomplete with its last byte cut; addresses are
 * IPv4 or IPv6, both of one family.
 *
 * Build (clang-14): clang-14 -g -O1 -fsanitize=fuzzer,address,undefined
 *   -D_GNU_SOURCE -I. pop3d/fuzz-proxyproto.c pop3d/proxyproto.c
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3d/pop3d.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto_header h, h2;
	const char *why;
	int r = proxyproto_parse(data, size, &h, &why);

	if (r == -1) {
		if (why == NULL)
			abort();
		return 0;
	}
	if (r == 0) {
		if (size >= PROXYPROTO_V2_MAX || (size > 0 && data[0] == 'P' &&
						  size >= PROXYPROTO_V1_MAX))
			abort();
		if (size > 0 && proxyproto_parse(data, size - 1, &h2, &why) != 0)
			abort();
		return 0;
	}
	if (r < 0 || (size_t)r > size || r > PROXYPROTO_V2_MAX ||
	    (data[0] == 'P' && r > PROXYPROTO_V1_MAX))
		abort();
	if (h.version != 1 && h.version != 2)
		abort();
	if (!h.local && ((h.src.ss_family != AF_INET && h.src.ss_family != AF_INET6) ||
			 h.src.ss_family != h.dst.ss_family))
		abort();
	if (proxyproto_parse(data, (size_t)r, &h2, &why) != r ||
	    memcmp(&h, &h2, sizeof(h)) != 0)
		abort();
	if (proxyproto_parse(data, (size_t)r - 1, &h2, &why) != 0)
		abort();
	return 0;
}
