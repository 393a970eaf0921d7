/*
 * load_stats.c - pop3-load's counters and latency histograms, the
 * per-second progress line and CSV row, the summary and the JSON line.
 *
 * Latencies are microseconds in common/histogram.h's log-linear
 * histograms (32 sub-buckets per power of two): a reported percentile is
 * the upper bound of its bucket, so at most 1/32 above the true value and
 * never below it, whatever the number of samples; nothing is stored per
 * sample.  Each population keeps two histograms per measure: the whole
 * run (summary, JSON, the "so far" of the progress line) and the current
 * second (the CSV time series).
 */
#include <inttypes.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/pop3-load.h"

static const char *const error_names[ERR_KINDS] = {
	[ERR_CONNECT] = "connect",
	[ERR_TIMEOUT] = "timeout",
	[ERR_CLOSED] = "closed",
	[ERR_IO] = "io_error",
	[ERR_TLS] = "tls",
	[ERR_GREETING] = "greeting",
	[ERR_BAD_STATUS] = "bad_status",
	[ERR_BAD_LINE] = "bad_line",
	[ERR_AUTH_FAILED] = "auth_failed",
	[ERR_AUTH_TEMPFAIL] = "auth_tempfail",
	[ERR_IN_USE] = "in_use",
	[ERR_ERR_REPLY] = "err_reply",
	[ERR_UNTERMINATED] = "unterminated",
	[ERR_BAD_LISTING] = "bad_listing",
	[ERR_LIST_MISMATCH] = "list_mismatch",
	[ERR_SIZE_MISMATCH] = "size_mismatch",
	[ERR_NO_CLOSE] = "no_close",
};

static const char *const script_names[] = {
	[SCRIPT_LOGIN] = "login", [SCRIPT_RETR] = "retr",
	[SCRIPT_IDLE] = "idle", [SCRIPT_POLL] = "poll",
};

const char *load_stats_error_name(enum load_error kind)
{
	return error_names[kind];
}

static void hist_reset(struct load_hist *h)
{
	histogram_reset(&h->run);
	histogram_reset(&h->second);
}

void load_stats_init(struct load_stats *st)
{
	memset(st, 0, offsetof(struct load_stats, connect));
	hist_reset(&st->connect);
	hist_reset(&st->login);
	hist_reset(&st->session);
	hist_reset(&st->tempfail);
	hist_reset(&st->refused_at);
}

void load_stats_add(struct load_hist *h, uint64_t us)
{
	histogram_add(&h->run, us);
	histogram_add(&h->second, us);
}

void load_stats_error(struct load_stats *st, enum load_error kind)
{
	st->errors[kind]++;
	st->failed++;
	st->sec_errors++;
}

uint64_t load_stats_error_total(const struct load_stats *st)
{
	uint64_t n = 0;

	for (int i = 0; i < ERR_KINDS; i++)
		n += st->errors[i];
	return n;
}

static double ms(uint64_t us)
{
	return (double)us / 1000.0;
}

static double elapsed_s(const struct load_run *run)
{
	uint64_t us = run->end_us > run->start_us ? run->end_us - run->start_us : 0;
	return us > 0 ? (double)us / 1e6 : 1e-6;
}

/* --open-loop: the time arrivals were offered (from the start to the end
 * of the arrivals, -d or -n): goodput is the logins they got, over it. */
static double window_s(const struct load_run *run)
{
	uint64_t end = run->window_end_us != 0 ? run->window_end_us : run->end_us;
	uint64_t us = end > run->start_us ? end - run->start_us : 0;
	return us > 0 ? (double)us / 1e6 : 1e-6;
}

/* ---- once a second ---------------------------------------------------------- */

void load_stats_csv_header(const struct load_run *run, FILE *csv)
{
	fprintf(csv, "t_s,sessions,errors,open,held,login_p50_us,login_p99_us,"
		"session_p50_us,session_p99_us,bytes_in,logins_ok,tempfail,refused,"
		"tempfail_p99_us,refused_p99_us");
	if (run->have_slow)
		fprintf(csv, ",slow_sessions,slow_errors,slow_login_p50_us,slow_login_p99_us");
	fprintf(csv, "\n");
}

static void second_reset(struct load_stats *st)
{
	st->sec_completed = st->sec_errors = st->sec_bytes = 0;
	st->sec_logins = st->sec_tempfail = st->sec_refused = 0;
	histogram_reset(&st->connect.second);
	histogram_reset(&st->login.second);
	histogram_reset(&st->session.second);
	histogram_reset(&st->tempfail.second);
	histogram_reset(&st->refused_at.second);
}

void load_stats_second(struct load_run *run, double t_s, FILE *err, FILE *csv)
{
	struct load_stats *m = &run->main.st, *s = &run->slow.st;

	if (err != NULL) {
		fprintf(err, "pop3-load: %.0fs: %" PRIu64 " sessions/s, %" PRIu64
			" done, %" PRIu64 " failed, %" PRIu64 " open, %" PRIu64
			" held, login p50 %.2f p99 %.2f ms",
			t_s, m->sec_completed, m->completed, m->failed, m->open,
			m->held, ms(histogram_quantile(&m->login.run, 0.50)),
			ms(histogram_quantile(&m->login.run, 0.99)));
		if (run->open_loop)
			fprintf(err, "; open loop: %" PRIu64 " logins/s, %" PRIu64
				" tempfail/s, %" PRIu64 " refused/s, %" PRIu64 " overflow",
				m->sec_logins, m->sec_tempfail, m->sec_refused, m->overflow);
		if (run->have_slow)
			fprintf(err, "; slow: %" PRIu64 " done, %" PRIu64
				" failed, login p50 %.2f p99 %.2f ms",
				s->completed, s->failed,
				ms(histogram_quantile(&s->login.run, 0.50)),
				ms(histogram_quantile(&s->login.run, 0.99)));
		fprintf(err, "\n");
		fflush(err);
	}
	if (csv != NULL) {
		fprintf(csv, "%.0f,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
			",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64,
			t_s, m->sec_completed, m->sec_errors, m->open, m->held,
			histogram_quantile(&m->login.second, 0.50),
			histogram_quantile(&m->login.second, 0.99),
			histogram_quantile(&m->session.second, 0.50),
			histogram_quantile(&m->session.second, 0.99), m->sec_bytes);
		fprintf(csv, ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64,
			m->sec_logins, m->sec_tempfail, m->sec_refused,
			histogram_quantile(&m->tempfail.second, 0.99),
			histogram_quantile(&m->refused_at.second, 0.99));
		if (run->have_slow)
			fprintf(csv, ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64,
				s->sec_completed, s->sec_errors,
				histogram_quantile(&s->login.second, 0.50),
				histogram_quantile(&s->login.second, 0.99));
		fprintf(csv, "\n");
		fflush(csv);
	}
	second_reset(m);
	second_reset(s);
}

/* ---- the summary ------------------------------------------------------------ */

static void summary_hist(FILE *out, const char *name, const struct histogram *h)
{
	if (h->count == 0) {
		fprintf(out, "  %-9s %9s\n", name, "-");
		return;
	}
	fprintf(out, "  %-9s %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f %9" PRIu64 "\n", name,
		ms(histogram_quantile(h, 0.50)), ms(histogram_quantile(h, 0.90)),
		ms(histogram_quantile(h, 0.99)), ms(histogram_quantile(h, 0.999)),
		ms(h->max), ms(h->sum / h->count), h->count);
}

static void summary_pop(FILE *out, const struct load_run *run, const struct load_pop *pop)
{
	const struct load_stats *st = &pop->st;
	double secs = elapsed_s(run);

	fprintf(out, "%s population: concurrency %u, %zu users; %" PRIu64 " sessions "
		"completed, %" PRIu64 " failed, %" PRIu64 " aborted: %.1f sessions/s\n",
		pop->name, pop->concurrency, pop->nusers, st->completed, st->failed,
		st->aborted, (double)st->completed / secs);
	fprintf(out, "  errors:");
	if (load_stats_error_total(st) == 0)
		fprintf(out, " none");
	for (int i = 0; i < ERR_KINDS; i++)
		if (st->errors[i] != 0)
			fprintf(out, " %s %" PRIu64, error_names[i], st->errors[i]);
	fprintf(out, "\n  latency ms      p50       p90       p99     p99.9       max      mean     count\n");
	summary_hist(out, "connect", &st->connect.run);
	summary_hist(out, "login", &st->login.run);
	summary_hist(out, "session", &st->session.run);
	if (st->tempfail.run.count != 0)
		summary_hist(out, "tempfail", &st->tempfail.run);
	if (st->refused_at.run.count != 0)
		summary_hist(out, "refused", &st->refused_at.run);
	if (st->messages != 0)
		fprintf(out, "  retrieved %" PRIu64 " messages, %.1f MB: %.1f MB/s\n",
			st->messages, (double)st->retr_octets / 1e6,
			(double)st->retr_octets / 1e6 / secs);
	if (run->script == SCRIPT_IDLE)
		fprintf(out, "  idle connections held: %" PRIu64 " at most\n", st->held_peak);
}

/* ---- JSON ------------------------------------------------------------------- */

static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out);
	}
	fputc('"', out);
}

static void json_hist(FILE *out, const char *name, const struct histogram *h)
{
	fprintf(out, "\"%s\":{\"count\":%" PRIu64 ",\"p50\":%" PRIu64 ",\"p90\":%" PRIu64
		",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64
		",\"mean\":%" PRIu64 "}", name, h->count,
		histogram_quantile(h, 0.50), histogram_quantile(h, 0.90),
		histogram_quantile(h, 0.99), histogram_quantile(h, 0.999), h->max,
		h->count ? h->sum / h->count : 0);
}

/* The login latency's distribution for a CDF plot (bench/plot-results):
 * [q, us] pairs at these fractions, by histogram_quantile (so the pairs
 * at 0.5, 0.9, 0.99 and 0.999 are the p50 ... p999 beside them, and 1 is
 * the max).  Denser in the tail, where the populations differ. */
static const double cdf_points[] = {
	0.001, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
	0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97,
	0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999, 1,
};

/* "name":[[q,us],...] ([] for an empty histogram); q printed with %g,
 * so 0.5 reads 0.5, not 0.500000. */
static void json_cdf(FILE *out, const char *name, const struct histogram *h)
{
	fprintf(out, "\"%s\":[", name);
	for (size_t i = 0; h->count != 0 && i < sizeof(cdf_points) / sizeof(cdf_points[0]); i++)
		fprintf(out, "%s[%g,%" PRIu64 "]", i ? "," : "", cdf_points[i],
			histogram_quantile(h, cdf_points[i]));
	fprintf(out, "]");
}

static void json_pop(FILE *out, const struct load_run *run, const struct load_pop *pop)
{
	const struct load_stats *st = &pop->st;
	double secs = elapsed_s(run);

	fprintf(out, "\"concurrency\":%u,\"users\":%zu,\"started\":%" PRIu64
		",\"sessions\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"aborted\":%" PRIu64
		",\"sessions_per_s\":%.2f,\"error_total\":%" PRIu64 ",\"errors\":{",
		pop->concurrency, pop->nusers, st->started, st->completed, st->failed,
		st->aborted, (double)st->completed / secs, load_stats_error_total(st));
	for (int i = 0; i < ERR_KINDS; i++)
		fprintf(out, "%s\"%s\":%" PRIu64, i ? "," : "", error_names[i], st->errors[i]);
	fprintf(out, "},");
	json_hist(out, "connect_us", &st->connect.run);
	fprintf(out, ",");
	json_hist(out, "login_us", &st->login.run);
	fprintf(out, ",");
	json_hist(out, "session_us", &st->session.run);
	fprintf(out, ",");
	json_hist(out, "tempfail_us", &st->tempfail.run);
	fprintf(out, ",");
	json_hist(out, "refused_us", &st->refused_at.run);
	fprintf(out, ",");
	json_cdf(out, "login_cdf", &st->login.run);
	fprintf(out, ",\"logins_ok\":%" PRIu64 ",\"refused\":%" PRIu64, st->logins_ok,
		st->refused);
	fprintf(out, ",\"bytes_in\":%" PRIu64 ",\"messages\":%" PRIu64
		",\"retr_octets\":%" PRIu64 ",\"retr_mb_per_s\":%.3f,\"idle_held_peak\":%" PRIu64,
		st->bytes_in, st->messages, st->retr_octets,
		(double)st->retr_octets / 1e6 / secs, st->held_peak);
}

void load_stats_report(const struct load_run *run, FILE *out)
{
	static const char *const method_names[] = { "user", "plain" };
	static const char *const tls_names[] = { "none", "stls", "implicit" };
	struct rusage ru;
	double secs = elapsed_s(run);

	if (getrusage(RUSAGE_SELF, &ru) == -1)
		memset(&ru, 0, sizeof(ru));
	double cpu_user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
	double cpu_sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

	fprintf(out, "pop3-load: script %s, login %s, TLS %s, %u target%s:",
		script_names[run->script],
		run->method == METHOD_PLAIN ? "AUTH PLAIN" : "USER/PASS",
		tls_names[run->tls], run->ntargets, run->ntargets == 1 ? "" : "s");
	for (unsigned i = 0; i < run->ntargets; i++)
		fprintf(out, " %s (%" PRIu64 " sessions, %" PRIu64 " errors)",
			run->targets[i].name, run->targets[i].sessions,
			run->targets[i].errors);
	fprintf(out, "\nrun: %.2f s, ended by %s; client CPU %.2f s user, %.2f s system\n",
		secs, run->stop_reason, cpu_user, cpu_sys);
	if (run->open_loop) {
		const struct load_stats *m = &run->main.st;
		double ws = window_s(run);

		fprintf(out, "open loop: %.0f arrivals/s offered for %.2f s, at most %u in flight: "
			"%" PRIu64 " arrivals, %" PRIu64 " not started (the bound in flight); "
			"goodput %.1f logins/s; %" PRIu64 " tempfailed, %" PRIu64 " refused\n",
			run->rate, ws, run->main.concurrency, run->scheduled, m->overflow,
			(double)m->logins_ok / ws, m->errors[ERR_AUTH_TEMPFAIL], m->refused);
	}
	summary_pop(out, run, &run->main);
	if (run->have_slow)
		summary_pop(out, run, &run->slow);

	fprintf(out, "{\"tool\":\"pop3-load\",\"script\":\"%s\",\"method\":\"%s\","
		"\"tls\":\"%s\",\"targets\":[", script_names[run->script],
		method_names[run->method], tls_names[run->tls]);
	for (unsigned i = 0; i < run->ntargets; i++) {
		fprintf(out, "%s{\"target\":", i ? "," : "");
		json_str(out, run->targets[i].name);
		fprintf(out, ",\"sessions\":%" PRIu64 ",\"errors\":%" PRIu64 "}",
			run->targets[i].sessions, run->targets[i].errors);
	}
	fprintf(out, "],\"elapsed_s\":%.3f,\"stop_reason\":", secs);
	json_str(out, run->stop_reason);
	fprintf(out, ",\"timeout_s\":%.3f,\"pipeline\":%u,\"client_cpu_s\":{\"user\":%.3f,"
		"\"system\":%.3f},", (double)run->timeout_us / 1e6, run->pipeline, cpu_user, cpu_sys);
	json_pop(out, run, &run->main);
	if (run->open_loop) {
		const struct load_stats *m = &run->main.st;
		double ws = window_s(run);

		fprintf(out, ",\"open_loop\":{\"rate\":%.0f,\"max_in_flight\":%u,"
			"\"scheduled\":%" PRIu64 ",\"started\":%" PRIu64 ",\"overflow\":%" PRIu64
			",\"window_s\":%.3f,\"offered_per_s\":%.2f,\"goodput_per_s\":%.2f}",
			run->rate, run->main.concurrency, run->scheduled, m->started, m->overflow,
			ws, (double)run->scheduled / ws, (double)m->logins_ok / ws);
	}
	if (run->have_slow) {
		fprintf(out, ",\"slow\":{");
		json_pop(out, run, &run->slow);
		fprintf(out, "}");
	}
	fprintf(out, "}\n");
	fflush(out);
}

void load_stats_report_error(FILE *out, const char *msg)
{
	fprintf(out, "{\"tool\":\"pop3-load\",\"error\":");
	json_str(out, msg);
	fprintf(out, "}\n");
	fflush(out);
}
