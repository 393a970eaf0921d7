/*
 * fork-bench.c - what creating a process costs on this machine, against
 * handing a connection to a process that already exists: the two ways a
 * POP3 server can start a session after login (docs/benchmarks.md, "Where
 * a cached login's time goes").
 *
 *   fork+exit+wait  fork(); the child _exit()s at once; the parent reaps
 *                   it.  Done with 0, 4, 16 and 64 MiB of touched heap in
 *                   the parent (the page tables fork copies and exit frees
 *                   grow with it), and with the heap plus a few hundred
 *                   small mappings (shared libraries look like that).
 *   fork+setuid     the same, the child also switches its uid (as root).
 *   fd handoff      an existing child receives a descriptor over a
 *                   SOCK_SEQPACKET socketpair (SCM_RIGHTS) and answers one
 *                   byte: the cost of reusing session processes instead.
 *
 *   fork-bench [-n ITERATIONS]
 *
 * Prints a table with the time per operation (mean, p50, p99 from the
 * common/histogram.h histogram) and, last, one JSON line.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/histogram.h"
#include "common/mtime.h"

#define MAX_CASES 16

struct result {
	char name[64];
	struct histogram h;	/* microseconds x 10 (0.1 us resolution) */
};

static struct result results[MAX_CASES];
static unsigned nresults;

static struct result *new_result(const char *name)
{
	struct result *r = &results[nresults++];

	snprintf(r->name, sizeof(r->name), "%s", name);
	histogram_reset(&r->h);
	return r;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A heap of mib MiB, every page touched (so that fork has page tables to
 * copy), and extra small mappings. */
static void *grow(size_t mib, unsigned mappings)
{
	size_t len = mib << 20;
	uint8_t *p = NULL;

	if (len != 0) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			perror("mmap");
			exit(1);
		}
		for (size_t i = 0; i < len; i += 4096)
			p[i] = 1;
	}
	for (unsigned i = 0; i < mappings; i++) {
		/* Alternate protections so that neighbours do not merge. */
		uint8_t *m = mmap(NULL, 8192, (i & 1) ? PROT_READ : PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED) {
			perror("mmap");
			exit(1);
		}
		if (!(i & 1))
			m[0] = 1;
	}
	return p;
}

static void fork_case(const char *name, unsigned n, bool setuid_child)
{
	struct result *r = new_result(name);

	for (unsigned i = 0; i < n; i++) {
		uint64_t t = now_ns();
		pid_t pid = fork();
		if (pid == -1) {
			perror("fork");
			exit(1);
		}
		if (pid == 0) {
			if (setuid_child && (setgid(65534) == -1 || setuid(65534) == -1))
				_exit(1);
			_exit(0);
		}
		int status;
		while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
			;
		histogram_add(&r->h, (now_ns() - t) / 100);
	}
}

static void handoff_case(unsigned n)
{
	struct result *r = new_result("fd handoff to an existing process");
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == -1) {
		perror("socketpair");
		exit(1);
	}
	pid_t pid = fork();
	if (pid == -1) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		close(sv[0]);
		for (;;) {
			char byte, cbuf[CMSG_SPACE(sizeof(int))];
			struct iovec iov = { &byte, 1 };
			struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
					      .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
			if (recvmsg(sv[1], &msg, 0) <= 0)
				_exit(0);
			struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
			if (c != NULL && c->cmsg_type == SCM_RIGHTS) {
				int fd;
				memcpy(&fd, CMSG_DATA(c), sizeof(fd));
				close(fd);
			}
			if (write(sv[1], &byte, 1) != 1)
				_exit(1);
		}
	}
	close(sv[1]);
	for (unsigned i = 0; i < n; i++) {
		uint64_t t = now_ns();
		int fd = dup(sv[0]);	/* any descriptor will do */
		char byte = 'x', cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { &byte, 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
				      .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

		if (fd == -1) {
			perror("dup");
			exit(1);
		}
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(fd));
		if (sendmsg(sv[0], &msg, 0) == -1 || read(sv[0], &byte, 1) != 1) {
			perror("handoff");
			exit(1);
		}
		close(fd);
		histogram_add(&r->h, (now_ns() - t) / 100);
	}
	close(sv[0]);
	waitpid(pid, NULL, 0);
}

static double us(uint64_t tenths)
{
	return (double)tenths / 10.0;
}

int main(int argc, char **argv)
{
	unsigned n = 500;
	int opt;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		char *end;
		if (opt != 'n')
			goto usage;
		n = (unsigned)strtoul(optarg, &end, 10);
		if (*end != '\0' || n < 10 || n > 1000000)
			goto usage;
	}
	if (optind != argc)
		goto usage;

	static const size_t heaps[] = { 0, 4, 16, 64 };
	size_t have = 0;
	for (unsigned i = 0; i < sizeof(heaps) / sizeof(heaps[0]); i++) {
		char name[64];
		grow(heaps[i] - have, 0);
		have = heaps[i];
		snprintf(name, sizeof(name), "fork+exit+wait, %zu MiB heap", heaps[i]);
		fork_case(name, n, false);
	}
	grow(0, 400);
	fork_case("fork+exit+wait, 64 MiB + 400 mappings", n, false);
	if (geteuid() == 0)
		fork_case("fork+setuid+exit+wait, same", n, true);
	handoff_case(n * 5);

	printf("fork-bench: %u iterations per case, %ld CPUs\n\n", n,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("%-42s %10s %10s %10s\n", "operation", "mean us", "p50 us", "p99 us");
	for (unsigned i = 0; i < nresults; i++) {
		struct histogram *h = &results[i].h;
		printf("%-42s %10.1f %10.1f %10.1f\n", results[i].name,
		       us(h->sum / h->count), us(histogram_quantile(h, 0.5)),
		       us(histogram_quantile(h, 0.99)));
	}
	printf("{\"bench\":\"fork\",\"iterations\":%u,\"cases\":[", n);
	for (unsigned i = 0; i < nresults; i++) {
		struct histogram *h = &results[i].h;
		printf("%s{\"case\":\"%s\",\"mean_us\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}",
		       i ? "," : "", results[i].name, us(h->sum / h->count),
		       us(histogram_quantile(h, 0.5)), us(histogram_quantile(h, 0.99)));
	}
	printf("]}\n");
	return 0;
usage:
	fprintf(stderr, "usage: fork-bench [-n ITERATIONS]\n");
	return 2;
}
