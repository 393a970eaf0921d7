/*
 * mbox-bench.c - how fast a session opens a big mbox spool (pop3d/mbox.c:
 * lock, one read, the list with sizes and UIDLs), side by side with
 * reading the same file with cat(1) in the same run (a ratio: these
 * machines are noisy), both from the page cache.  Also the memory the
 * list takes per message.  docs/benchmarks.md has the numbers.
 *
 *   mbox-bench [-n RUNS] [-s SIZE_MB] [-m MESSAGES] FILE
 *
 * Writes FILE first if it does not exist (SIZE_MB, default 1024, in
 * MESSAGES messages, default 50,000, of varied sizes and headers).
 * Prints a table, p50/p95/p99 of each, and one JSON line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/log.h"
#include "pop3d/pop3d.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[(int)(p * (n - 1) + 0.5)];
}

static void generate(const char *path, uint64_t bytes, unsigned msgs)
{
	FILE *f = fopen(path, "w");
	uint64_t avg = bytes / msgs, written = 0;
	char line[80];

	if (f == NULL) {
		perror(path);
		exit(2);
	}
	memset(line, 'x', sizeof(line));
	for (unsigned i = 0; i < msgs; i++) {
		/* sizes from a quarter to twice the mean, by a fixed pattern */
		uint64_t size = avg / 4 + (avg * 7 / 4) * ((i * 2654435761u) % 1000) / 1000;
		uint64_t body = 0;

		fprintf(f, "From sender%u@example.org Mon Dec  7 04:%02u:00 2026\n"
			"Return-Path: <sender%u@example.org>\n"
			"Received: from mx.example.org by host.example.org; Mon, 7 Dec 2026\n"
			"From: Sender %u <sender%u@example.org>\nTo: user@example.org\n"
			"Subject: message %u\nMessage-ID: <%u@example.org>\n"
			"Status: RO\n\n", i, i % 60, i, i, i, i, i);
		while (body < size) {
			fwrite(line, 1, 71, f);
			fputc('\n', f);
			body += 72;
		}
		fputc('\n', f);
		written += body;
	}
	if (fclose(f) != 0) {
		perror(path);
		exit(2);
	}
	(void)written;
}

static double run_cat(const char *path)
{
	double t0 = now_s();
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		execlp("cat", "cat", path, (char *)NULL);
		_exit(127);
	}
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "cat failed\n");
		exit(2);
	}
	return now_s() - t0;
}

/* Opens the spool in a child (as a session would: a fresh process) and
 * returns the time; *rss_kb_r the child's peak RSS, *n_r its messages. */
static double run_open(const char *path, long *rss_kb_r, size_t *n_r)
{
	int fds[2];
	double t[2] = { 0, 0 };
	pid_t pid;
	int status;
	struct rusage ru;

	if (pipe(fds) == -1)
		exit(2);
	pid = fork();
	if (pid == 0) {
		struct mbox *mb;
		const char *err;
		double t0 = now_s();

		if (mbox_open(path, &mb, &err) != MAILDIR_OK) {
			fprintf(stderr, "mbox_open: %s\n", err);
			_exit(1);
		}
		t[0] = now_s() - t0;
		t[1] = (double)mbox_count(mb);
		if (write(fds[1], t, sizeof(t)) != sizeof(t))
			_exit(1);
		mbox_free(&mb);
		_exit(0);
	}
	close(fds[1]);
	if (read(fds[0], t, sizeof(t)) != sizeof(t))
		exit(2);
	close(fds[0]);
	if (wait4(pid, &status, 0, &ru) == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		exit(2);
	*rss_kb_r = ru.ru_maxrss;
	*n_r = (size_t)t[1];
	return t[0];
}

int main(int argc, char **argv)
{
	int runs = 5, c;
	uint64_t size_mb = 1024;
	unsigned msgs = 50000;
	double *tc, *to, mb;
	struct stat st;
	long rss = 0, base_rss = 0;
	size_t n = 0;
	const char *path;

	while ((c = getopt(argc, argv, "n:s:m:")) != -1) {
		switch (c) {
		case 'n': runs = atoi(optarg); break;
		case 's': size_mb = strtoull(optarg, NULL, 10); break;
		case 'm': msgs = (unsigned)strtoul(optarg, NULL, 10); break;
		default:
			fprintf(stderr, "usage: mbox-bench [-n RUNS] [-s SIZE_MB] [-m MESSAGES] FILE\n");
			return 2;
		}
	}
	if (optind != argc - 1 || runs < 1 || msgs == 0) {
		fprintf(stderr, "usage: mbox-bench [-n RUNS] [-s SIZE_MB] [-m MESSAGES] FILE\n");
		return 2;
	}
	path = argv[optind];
	log_init("mbox-bench", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	if (sodium_init() == -1)
		return 2;
	if (stat(path, &st) == -1) {
		generate(path, size_mb * 1024 * 1024, msgs);
		if (stat(path, &st) == -1)
			return 2;
	}
	mb = (double)st.st_size / (1024.0 * 1024.0);
	tc = calloc((size_t)runs, sizeof(*tc));
	to = calloc((size_t)runs, sizeof(*to));
	if (tc == NULL || to == NULL)
		return 2;
	run_cat(path);			/* into the page cache */
	{
		/* the RSS of a process that opens an empty spool: the base */
		char empty[4200];
		size_t dummy;

		snprintf(empty, sizeof(empty), "%s.empty-bench", path);
		close(open(empty, O_WRONLY | O_CREAT | O_TRUNC, 0600));
		run_open(empty, &base_rss, &dummy);
		unlink(empty);
	}
	for (int i = 0; i < runs; i++) {
		tc[i] = run_cat(path);
		to[i] = run_open(path, &rss, &n);
	}
	printf("mbox-bench: %.0f MB, %zu messages, %d runs each, alternating\n", mb, n, runs);
	printf("%-10s %10s %10s %10s %10s\n", "", "p50 s", "p95 s", "p99 s", "MB/s p50");
	{
		double c50 = pct(tc, runs, 0.5), c95 = pct(tc, runs, 0.95), c99 = pct(tc, runs, 0.99);
		double o50 = pct(to, runs, 0.5), o95 = pct(to, runs, 0.95), o99 = pct(to, runs, 0.99);
		double per_msg = n > 0 ? (double)(rss - base_rss) * 1024.0 / (double)n : 0;

		printf("%-10s %10.3f %10.3f %10.3f %10.0f\n", "cat", c50, c95, c99, mb / c50);
		printf("%-10s %10.3f %10.3f %10.3f %10.0f\n", "mbox_open", o50, o95, o99, mb / o50);
		printf("ratio mbox_open/cat (p50): %.2f; peak RSS %ld KB (%ld KB above an empty "
		       "spool: %.0f bytes per message)\n", o50 / c50, rss, rss - base_rss, per_msg);
		printf("{\"bench\":\"mbox-open\",\"mb\":%.0f,\"messages\":%zu,\"cat_p50_s\":%.4f,"
		       "\"open_p50_s\":%.4f,\"open_p95_s\":%.4f,\"open_p99_s\":%.4f,"
		       "\"cat_mb_s\":%.0f,\"open_mb_s\":%.0f,\"ratio\":%.3f,"
		       "\"rss_kb\":%ld,\"bytes_per_message\":%.0f}\n",
		       mb, n, c50, o50, o95, o99, mb / c50, mb / o50, o50 / c50, rss, per_msg);
	}
	free(tc);
	free(to);
	return 0;
}
