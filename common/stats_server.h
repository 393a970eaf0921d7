/*
 * stats_server.h - the stats servers both daemons run: on the stats socket
 * a client connects, reads the whole scrape, gets EOF; on metrics-listen
 * (TCP) a client sends one HTTP request (GET /metrics) and gets the same
 * scrape as the response.  What goes in the scrape is each daemon's
 * (authd/stats.c, pop3d/stats.c).
 */
#ifndef COMMON_STATS_SERVER_H
#define COMMON_STATS_SERVER_H

#include <stdbool.h>
#include <stddef.h>

/* The longest HTTP request head read (request line and headers). */
#define STATS_HTTP_MAX_REQUEST 8192
/* A client has this long to send its request, and to read the answer. */
#define STATS_HTTP_TIMEOUT_S 10

struct evbuffer;
struct event_base;
struct stats_server;

/* Writes the whole scrape into out; called on the loop thread, once per
 * connection, right after accept. */
typedef void stats_server_fill_cb(struct evbuffer *out, void *ctx);

/* Serves the listening UNIX socket listen_fd (taken over, closed by
 * stats_server_free) on base: each connection gets fill(out, ctx)'s text,
 * then is closed.  At most max_conns connections are served at once; more
 * are closed at once (a scraper that does not read holds one buffer, not
 * many).  fatalx() if libevent cannot listen.  Free with
 * stats_server_free(). */
struct stats_server *stats_server_new(struct event_base *base, int listen_fd,
				      unsigned max_conns, stats_server_fill_cb *fill,
				      void *ctx);
/* The same for a listening TCP socket speaking HTTP/1.x: each connection
 * may send one request head of at most STATS_HTTP_MAX_REQUEST bytes within
 * STATS_HTTP_TIMEOUT_S; GET or HEAD of /metrics gets fill()'s text (the
 * Prometheus text format), anything else an error status; then the
 * connection is closed. */
struct stats_server *stats_server_new_http(struct event_base *base, int listen_fd,
					   unsigned max_conns, stats_server_fill_cb *fill,
					   void *ctx);
/* Parses a request head (buf: len bytes, up to and including its blank
 * line).  Returns the status to answer: 200 for GET or HEAD of /metrics
 * (a query string is ignored), 400 for a malformed
 * request, 404 for another path, 405 for another method, 505 for an HTTP
 * version other than 1.0 and 1.1.  *head_r says whether the method was
 * HEAD (then the answer has no body, whatever its status).  Pure. */
int stats_http_parse(const char *buf, size_t len, bool *head_r);
/* Closes the socket and every connection.  *sp may be NULL. */
void stats_server_free(struct stats_server **sp);

#endif
