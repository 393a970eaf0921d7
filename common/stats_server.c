/*
 * stats_server.c - the stats socket server (see stats_server.h): accept,
 * write the whole scrape, close.  Runs on the event loop of the daemon
 * that calls it (authd's loop thread, pop3d's master), with that
 * process's privileges; it reads nothing from its clients.
 */
#include <stdlib.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/stats_server.h"

struct sconn {
	LIST_ENTRY(sconn) entry;
	struct stats_server *srv;
	struct bufferevent *bev;
};

struct stats_server {
	struct evconnlistener *listener;
	struct event_base *base;
	LIST_HEAD(, sconn) conns;
	unsigned nconns, max_conns;
	stats_server_fill_cb *fill;
	void *ctx;
};

static void sconn_free(struct sconn *c)
{
	LIST_REMOVE(c, entry);
	c->srv->nconns--;
	bufferevent_free(c->bev);
	free(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		sconn_free(arg);	/* all written: EOF ends the scrape */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	sconn_free(arg);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct stats_server *srv = arg;
	struct sconn *c;

	if (srv->nconns >= srv->max_conns) {
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->srv = srv;
	c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("out of memory (bufferevent)");
	LIST_INSERT_HEAD(&srv->conns, c, entry);
	srv->nconns++;
	srv->fill(bufferevent_get_output(c->bev), srv->ctx);
	bufferevent_setcb(c->bev, NULL, on_write, on_event, c);
	bufferevent_enable(c->bev, EV_WRITE);
}

struct stats_server *stats_server_new(struct event_base *base, int listen_fd,
				      unsigned max_conns, stats_server_fill_cb *fill,
				      void *ctx)
{
	struct stats_server *srv = xcalloc(1, sizeof(*srv));

	srv->base = base;
	srv->max_conns = max_conns;
	srv->fill = fill;
	srv->ctx = ctx;
	LIST_INIT(&srv->conns);
	srv->listener = evconnlistener_new(base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE |
					   LEV_OPT_CLOSE_ON_EXEC, -1, listen_fd);
	if (srv->listener == NULL)
		fatalx("cannot serve the stats socket");
	return srv;
}

void stats_server_free(struct stats_server **sp)
{
	struct stats_server *srv = *sp;

	if (srv == NULL)
		return;
	evconnlistener_free(srv->listener);
	while (!LIST_EMPTY(&srv->conns))
		sconn_free(LIST_FIRST(&srv->conns));
	free(srv);
	*sp = NULL;
}
