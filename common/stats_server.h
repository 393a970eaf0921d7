/*
 * stats_server.h - the stats socket server both daemons run: a client
 * connects, reads the whole scrape, gets EOF.  What goes in the scrape is
 * each daemon's (authd/stats.c, pop3d/stats.c).
 */
#ifndef COMMON_STATS_SERVER_H
#define COMMON_STATS_SERVER_H

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
/* Closes the socket and every connection.  *sp may be NULL. */
void stats_server_free(struct stats_server **sp);

#endif
