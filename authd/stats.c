/*
 * stats.c - authd's metrics in the Prometheus text format, for the stats
 * socket (common/stats_server.c serves it: connect, read, EOF).  Rendered
 * on the loop thread; counters
 * are the loop's own (no lock), worker states are read under each
 * authenticator's lock for an instant.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "authd/authd.h"
#include "cache/cache.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/mtime.h"
#include "common/stats_server.h"

#define STATS_MAX_CONNS 32

static struct stats_server *server, *http_server;	/* stats socket, metrics-listen */

static void render_authenticators(struct evbuffer *out, struct generation *gen)
{
	char labels[160];
	uint64_t now = mtime_ms();

#define EACH_AUTH(metric, type, help, expr) do { \
	metrics_header(out, metric, type, help); \
	for (size_t i = 0; i < gen->nauths; i++) { \
		struct authenticator *a = &gen->auths[i]; \
		snprintf(labels, sizeof(labels), "authenticator=\"%s\"", a->conf->name); \
		metrics_value(out, metric, labels, (expr)); \
	} \
} while (0)

	unsigned queued[CONFIG_MAX_AUTHENTICATORS], busy[CONFIG_MAX_AUTHENTICATORS];
	unsigned sources[CONFIG_MAX_AUTHENTICATORS];
	uint64_t table_full[CONFIG_MAX_AUTHENTICATORS];
	for (size_t i = 0; i < gen->nauths; i++) {
		authenticator_queue_depth(&gen->auths[i], &queued[i], &sources[i], &table_full[i]);
		pthread_mutex_lock(&gen->auths[i].lock);
		busy[i] = gen->auths[i].busy;
		pthread_mutex_unlock(&gen->auths[i].lock);
	}
	EACH_AUTH("authd_queue_depth", "gauge", "Requests waiting for a worker.", queued[i]);
	EACH_AUTH("authd_queue_sources", "gauge",
		  "Client sources with a request waiting or in a worker.", sources[i]);
	EACH_AUTH("authd_queue_source_table_full_total", "counter",
		  "Requests that shared the overflow source (source table full).", table_full[i]);
	EACH_AUTH("authd_in_flight", "gauge", "Requests a worker is working on.", busy[i]);
	EACH_AUTH("authd_workers", "gauge", "Worker threads.", a->nworkers);
	EACH_AUTH("authd_workers_stuck", "gauge", "Workers past their request's deadline.",
		  authenticator_stuck(a, now));
	EACH_AUTH("authd_authenticator_requests_total", "counter",
		  "Requests given to the authenticator.", a->stats.requests);

	metrics_header(out, "authd_authenticator_results_total", "counter",
		       "Results by kind (timeout, overloaded and busy are tempfails too).");
	for (size_t i = 0; i < gen->nauths; i++) {
		struct authenticator *a = &gen->auths[i];
		const struct { const char *kind; uint64_t v; } r[] = {
			{ "ok", a->stats.ok }, { "fail", a->stats.fail },
			{ "nouser", a->stats.nouser }, { "tempfail", a->stats.tempfail },
			{ "timeout", a->stats.timeout }, { "overloaded", a->stats.overloaded },
			{ "busy", a->stats.busy },
			{ "unavailable", a->stats.unavailable },
		};
		for (size_t k = 0; k < sizeof(r) / sizeof(r[0]); k++) {
			snprintf(labels, sizeof(labels), "authenticator=\"%s\",result=\"%s\"",
				 a->conf->name, r[k].kind);
			metrics_value(out, "authd_authenticator_results_total", labels, r[k].v);
		}
	}
	metrics_header(out, "authd_authenticator_overloaded_total", "counter",
		       "Requests refused or pushed out of the queue, by reason (answered "
		       "TEMPFAIL overloaded, or busy for wait-limit).");
	for (size_t i = 0; i < gen->nauths; i++) {
		struct authenticator *a = &gen->auths[i];

		for (int r = 0; r < OVERLOAD_COUNT; r++) {
			snprintf(labels, sizeof(labels), "authenticator=\"%s\",reason=\"%s\"",
				 a->conf->name, overload_reason_name(r));
			metrics_value(out, "authd_authenticator_overloaded_total", labels,
				      a->stats.overload[r]);
		}
	}
	metrics_header(out, "authd_queue_wait_seconds", "histogram",
		       "Time from queued to taken by a worker.");
	for (size_t i = 0; i < gen->nauths; i++) {
		snprintf(labels, sizeof(labels), "authenticator=\"%s\"", gen->auths[i].conf->name);
		metrics_hist(out, "authd_queue_wait_seconds", labels, &gen->auths[i].stats.queue_wait);
	}
	metrics_header(out, "authd_service_seconds", "histogram",
		       "Time a worker spent on a request (the backend's latency).");
	for (size_t i = 0; i < gen->nauths; i++) {
		snprintf(labels, sizeof(labels), "authenticator=\"%s\"", gen->auths[i].conf->name);
		metrics_hist(out, "authd_service_seconds", labels, &gen->auths[i].stats.service);
	}
#undef EACH_AUTH
}

static void render_cache(struct evbuffer *out)
{
	struct cache *cache = requests_cache();
	struct cache_summary sum;

	metrics_header(out, "authd_cache_enabled", "gauge", "1 if the credential cache is on.");
	metrics_value(out, "authd_cache_enabled", NULL, cache != NULL);
	if (cache == NULL)
		return;
	cache_summarize(cache, (int64_t)mtime_ms(), &sum);
#define C(metric, type, help, v) do { \
	metrics_header(out, metric, type, help); \
	metrics_value(out, metric, NULL, (v)); \
} while (0)
	C("authd_cache_capacity", "gauge", "Slots in the cache table.", sum.capacity);
	metrics_header(out, "authd_cache_entries", "gauge", "Cache entries by kind.");
	metrics_value(out, "authd_cache_entries", "kind=\"ok_fresh\"", sum.ok_fresh);
	metrics_value(out, "authd_cache_entries", "kind=\"ok_stale\"", sum.ok_stale);
	metrics_value(out, "authd_cache_entries", "kind=\"fail\"", sum.fail);
	metrics_value(out, "authd_cache_entries", "kind=\"nouser\"", sum.nouser);
	metrics_value(out, "authd_cache_entries", "kind=\"expired\"", sum.expired);
	C("authd_cache_hits_total", "counter", "Fresh positive hits.", sum.stats.hits);
	C("authd_cache_negative_hits_total", "counter", "Fresh negative hits.",
	  sum.stats.negative_hits);
	C("authd_cache_misses_total", "counter", "Lookups that found nothing fresh.",
	  sum.stats.misses);
	C("authd_cache_stale_served_total", "counter", "Answers from stale entries.",
	  sum.stats.stale_served);
	C("authd_cache_refreshes_total", "counter", "Background revalidations signalled.",
	  sum.stats.refreshes);
	C("authd_cache_inserts_total", "counter", "Entries written.", sum.stats.inserts);
	metrics_header(out, "authd_cache_evictions_total", "counter", "Evictions by kind.");
	metrics_value(out, "authd_cache_evictions_total", "kind=\"expired\"",
		      sum.stats.evict_expired);
	metrics_value(out, "authd_cache_evictions_total", "kind=\"negative\"",
		      sum.stats.evict_negative);
	metrics_value(out, "authd_cache_evictions_total", "kind=\"clock\"", sum.stats.evict_clock);
	metrics_header(out, "authd_cache_insert_failures_total", "counter",
		       "Results not cached, by reason.");
	metrics_value(out, "authd_cache_insert_failures_total", "reason=\"busy\"",
		      sum.stats.insert_busy);
	metrics_value(out, "authd_cache_insert_failures_total", "reason=\"too_long\"",
		      sum.stats.insert_too_long);
	C("authd_cache_slot_retries_total", "counter", "Slot reads repeated for a writer.",
	  sum.stats.read_retries);
	C("authd_cache_coalesced_total", "counter", "Requests that joined one in flight.",
	  authd_stats.coalesced);
	C("authd_cache_late_fills_total", "counter", "Results cached after their timeout.",
	  authd_stats.late_fills);
#undef C
}

static void render_l2(struct evbuffer *out)
{
	struct l2_server_info sv[CONFIG_MAX_MEMCACHED];
	struct l2_stats st;
	char labels[400];
	size_t n;

	metrics_header(out, "authd_l2_enabled", "gauge",
		       "1 if the shared cache in memcached (L2) is on.");
	metrics_value(out, "authd_l2_enabled", NULL, l2_enabled());
	if (!l2_enabled())
		return;
	l2_stats_get(&st);
#define V(metric, labels_, v) metrics_value(out, metric, labels_, (v))
	metrics_header(out, "authd_l2_gets_total", "counter", "L2 lookups started.");
	V("authd_l2_gets_total", NULL, st.gets);
	metrics_header(out, "authd_l2_lookups_total", "counter",
		       "L2 lookups by outcome (a miss has one reason below).");
	V("authd_l2_lookups_total", "result=\"hit\"", st.hits);
	V("authd_l2_lookups_total", "result=\"stale\"", st.stale_found);
	V("authd_l2_lookups_total", "result=\"miss\"", st.misses);
	metrics_header(out, "authd_l2_misses_total", "counter", "Why an L2 lookup missed.");
	V("authd_l2_misses_total", "reason=\"absent\"", st.miss_absent);
	V("authd_l2_misses_total", "reason=\"other_password\"", st.miss_verifier);
	V("authd_l2_misses_total", "reason=\"generation\"", st.miss_generation);
	V("authd_l2_misses_total", "reason=\"expired\"", st.miss_expired);
	V("authd_l2_misses_total", "reason=\"no_epoch\"", st.miss_no_epoch);
	metrics_header(out, "authd_l2_refused_values_total", "counter",
		       "Values from memcached refused: unknown format, seal does not open, "
		       "bad content.");
	V("authd_l2_refused_values_total", "reason=\"version\"", st.bad_version);
	V("authd_l2_refused_values_total", "reason=\"seal\"", st.bad_seal);
	V("authd_l2_refused_values_total", "reason=\"content\"", st.bad_value);
	metrics_header(out, "authd_l2_errors_total", "counter", "memcached call errors by kind.");
	V("authd_l2_errors_total", "kind=\"timeout\"", st.err_timeout);
	V("authd_l2_errors_total", "kind=\"connect\"", st.err_connect);
	V("authd_l2_errors_total", "kind=\"protocol\"", st.err_protocol);
	V("authd_l2_errors_total", "kind=\"other\"", st.err_other);
	metrics_header(out, "authd_l2_skipped_total", "counter",
		       "L2 calls not made: breaker open, queue full, loop deadline.");
	V("authd_l2_skipped_total", "reason=\"breaker\"", st.breaker_skips);
	V("authd_l2_skipped_total", "reason=\"queue_full\"", st.queue_full);
	V("authd_l2_skipped_total", "reason=\"deadline\"", authd_stats.l2_deadline);
	metrics_header(out, "authd_l2_puts_total", "counter", "Entries written to L2 by result.");
	V("authd_l2_puts_total", "result=\"ok\"", st.puts);
	V("authd_l2_puts_total", "result=\"error\"", st.put_errors);
	metrics_header(out, "authd_l2_flushes_sent_total", "counter",
		       "Cluster-wide flushes this host started.");
	V("authd_l2_flushes_sent_total", "scope=\"user\"", st.flush_user_sent);
	V("authd_l2_flushes_sent_total", "scope=\"all\"", st.flush_all_sent);
	metrics_header(out, "authd_l2_flushes_applied_total", "counter",
		       "Flushes of this host's L1 that the cluster asked for.");
	V("authd_l2_flushes_applied_total", "scope=\"user\"", st.cluster_flush_users);
	V("authd_l2_flushes_applied_total", "scope=\"all\"", st.cluster_flush_all);
	metrics_header(out, "authd_l2_kicks_total", "counter",
		       "Kicks (authctl kick) sent to the cluster, received from it and applied "
		       "here, or received too old to apply.");
	V("authd_l2_kicks_total", "event=\"sent\"", st.kicks_sent);
	V("authd_l2_kicks_total", "event=\"received\"", st.kicks_received);
	V("authd_l2_kicks_total", "event=\"stale\"", st.kicks_stale);
	metrics_header(out, "authd_l2_polls_total", "counter", "Polls of a server's flush log.");
	V("authd_l2_polls_total", NULL, st.polls);
	metrics_header(out, "authd_l2_answers_total", "counter",
		       "Requests answered from L2 (fresh, or stale when the backend failed).");
	V("authd_l2_answers_total", "source=\"fresh\"", authd_stats.l2_answers);
	V("authd_l2_answers_total", "source=\"stale\"", authd_stats.l2_stale_answers);
	metrics_header(out, "authd_l2_get_seconds", "histogram",
		       "Time from an L1 miss's L2 lookup to its answer on the loop.");
	metrics_hist(out, "authd_l2_get_seconds", NULL, &st.get_latency);
	n = l2_servers(sv, CONFIG_MAX_MEMCACHED);
#define EACH_SERVER(metric, type, help, extra, v) do { \
	metrics_header(out, metric, type, help); \
	for (size_t i = 0; i < n; i++) { \
		snprintf(labels, sizeof(labels), "server=\"%.299s\"%s", sv[i].name, extra); \
		V(metric, labels, (v)); \
	} \
} while (0)
	EACH_SERVER("authd_l2_server_up", "gauge",
		    "1 if the server's breaker is closed (0: skipped or probing).", "",
		    strcmp(sv[i].state, "up") == 0);
	EACH_SERVER("authd_l2_server_breaker_opens_total", "counter",
		    "Times the server's breaker opened.", "", sv[i].opens);
	/* two series of one metric: one header */
	EACH_SERVER("authd_l2_server_calls_total", "counter", "Calls to the server by result.",
		    ",result=\"ok\"", sv[i].ok);
	for (size_t i = 0; i < n; i++) {
		snprintf(labels, sizeof(labels), "server=\"%.299s\",result=\"error\"", sv[i].name);
		V("authd_l2_server_calls_total", labels, sv[i].errors);
	}
#undef EACH_SERVER
#undef V
}

static void render(struct evbuffer *out)
{
	metrics_header(out, "authd_clients_connected", "gauge", "Protocol clients connected.");
	metrics_value(out, "authd_clients_connected", NULL, clients_count());
	metrics_header(out, "authd_requests_in_flight", "gauge", "Requests waiting for an answer.");
	metrics_value(out, "authd_requests_in_flight", NULL, requests_in_flight());
	metrics_header(out, "authd_requests_total", "counter", "AUTH requests accepted.");
	metrics_value(out, "authd_requests_total", NULL, authd_stats.requests);
	metrics_header(out, "authd_answers_total", "counter", "Answers by result.");
	metrics_value(out, "authd_answers_total", "result=\"ok\"", authd_stats.answered_ok);
	metrics_value(out, "authd_answers_total", "result=\"fail\"",
		      authd_stats.answered_fail + authd_stats.invalid);
	metrics_value(out, "authd_answers_total", "result=\"tempfail\"",
		      authd_stats.answered_tempfail);
	metrics_value(out, "authd_answers_total", "result=\"error\"", authd_stats.errors);
	metrics_header(out, "authd_answers_by_source_total", "counter",
		       "Answers that did not need a backend call, by source.");
	metrics_value(out, "authd_answers_by_source_total", "source=\"cache\"",
		      authd_stats.cache_answers);
	metrics_value(out, "authd_answers_by_source_total", "source=\"stale\"",
		      authd_stats.stale_answers);
	metrics_value(out, "authd_answers_by_source_total", "source=\"invalid\"",
		      authd_stats.invalid);
	metrics_value(out, "authd_answers_by_source_total", "source=\"no_authenticator\"",
		      authd_stats.no_chain);
	metrics_header(out, "authd_log_lines_suppressed_total", "counter",
		       "Log lines counted into a summary line instead of logged: overload "
		       "warnings, and auth failed lines per client address.");
	metrics_value(out, "authd_log_lines_suppressed_total", "kind=\"overload\"",
		      ratelog_suppressed());
	metrics_value(out, "authd_log_lines_suppressed_total", "kind=\"auth_failed\"",
		      ratelog_fail_suppressed());
	metrics_header(out, "authd_tickets_outstanding", "gauge",
		       "Handoff tickets issued, not yet redeemed or expired.");
	metrics_value(out, "authd_tickets_outstanding", NULL, tickets_outstanding());
	metrics_header(out, "authd_reloads_total", "counter", "Configuration reloads by result.");
	metrics_value(out, "authd_reloads_total", "result=\"ok\"", authd_stats.reloads);
	metrics_value(out, "authd_reloads_total", "result=\"failed\"",
		      authd_stats.reload_failures);
	render_authenticators(out, authd_generation());
	render_cache(out);
	render_l2(out);
}

/* stats_server_fill_cb */
static void fill(struct evbuffer *out, void *ctx)
{
	render(out);
}

void stats_init(struct event_base *b, int listen_fd, int http_fd)
{
	if (listen_fd != -1)
		server = stats_server_new(b, listen_fd, STATS_MAX_CONNS, fill, NULL);
	if (http_fd != -1)
		http_server = stats_server_new_http(b, http_fd, STATS_MAX_CONNS, fill, NULL);
}

void stats_shutdown(void)
{
	stats_server_free(&server);
	stats_server_free(&http_server);
}
