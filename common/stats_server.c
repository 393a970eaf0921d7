/*
 * stats_server.c - the stats servers (see stats_server.h): accept, write
 * the whole scrape, close; or, for HTTP, read one request head first.
 * Runs on the event loop of the daemon that calls it (authd's loop
 * thread, pop3d's master), with that process's privileges.  On the UNIX
 * socket it reads nothing from its clients; over HTTP it reads a bounded
 * request head and parses it with stats_http_parse() (fuzzed, see
 * docs/reliability.md), and nothing else.
 *
 * Why not libevent's evhttp: in libevent 2.1 (Debian 12) it cannot bound
 * the number of connections (evhttp_set_max_connections came in 2.2), and
 * a scrape needs one request per connection, nothing of HTTP/1.1's
 * keep-alive, chunking or bodies.  So this is the stats socket's server
 * with a request line in front: one request, one response with
 * Content-Length, Connection: close.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	struct event *deadline;	/* HTTP: the whole request, then the answer */
	bool answered;		/* HTTP: the response is queued */
};

struct stats_server {
	bool http;
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
	if (c->deadline != NULL)
		event_free(c->deadline);
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

/* ---- HTTP ----------------------------------------------------------------- */

static bool is_tchar(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

int stats_http_parse(const char *buf, size_t len, bool *head_r)
{
	const char *p = buf, *end, *m, *t, *v;
	size_t ml, tl, vl;

	*head_r = false;
	if (memchr(buf, '\0', len) != NULL)
		return 400;
	end = memchr(buf, '\n', len);
	if (end == NULL)
		return 400;
	if (end > buf && end[-1] == '\r')
		end--;
	/* method SP request-target SP HTTP-version (RFC 9112, 3) */
	for (m = p; p < end && is_tchar((unsigned char)*p); p++)
		;
	ml = (size_t)(p - m);
	if (ml == 0 || p >= end || *p != ' ')
		return 400;
	for (t = ++p; p < end && *p > ' ' && *p != 0x7f; p++)
		;
	tl = (size_t)(p - t);
	if (tl == 0 || p >= end || *p != ' ')
		return 400;
	v = ++p;
	vl = (size_t)(end - v);
	if (vl != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
	    v[7] < '0' || v[7] > '9')
		return 400;
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return 505;
	if (ml == 4 && memcmp(m, "HEAD", 4) == 0)
		*head_r = true;
	else if (!(ml == 3 && memcmp(m, "GET", 3) == 0))
		return 405;
	if (t[0] != '/')
		return 400;	/* no absolute-form or asterisk-form here */
	if ((tl == 8 || (tl > 8 && t[8] == '?')) && memcmp(t, "/metrics", 8) == 0)
		return 200;
	return 404;
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 431: return "Request Header Fields Too Large";
	default: return "HTTP Version Not Supported";
	}
}

/* Queues the response and stops reading; on_write closes once sent. */
static void http_answer(struct sconn *c, int status, bool head)
{
	struct evbuffer *out = bufferevent_get_output(c->bev), *body = evbuffer_new();
	const char *type = "text/plain; charset=utf-8";

	if (body == NULL)
		fatalx("out of memory (evbuffer)");
	if (status == 200) {
		c->srv->fill(body, c->srv->ctx);
		type = "text/plain; version=0.0.4; charset=utf-8";
	} else {
		evbuffer_add_printf(body, "%d %s\n", status, reason(status));
	}
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			    "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n", status,
			    reason(status), type, evbuffer_get_length(body),
			    status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!head)
		evbuffer_add_buffer(out, body);
	evbuffer_free(body);
	c->answered = true;
	if (c->deadline != NULL) {
		struct timeval tv = { STATS_HTTP_TIMEOUT_S, 0 };

		evtimer_add(c->deadline, &tv);	/* the answer's own time */
	}
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_enable(c->bev, EV_WRITE);
}

static void on_http_read(struct bufferevent *bev, void *arg)
{
	struct sconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in), n = len < STATS_HTTP_MAX_REQUEST ? len :
						  STATS_HTTP_MAX_REQUEST;
	struct evbuffer_ptr e;
	char buf[STATS_HTTP_MAX_REQUEST];
	bool head = false;

	if (c->answered)
		return;
	/* The blank line that ends the head: CRLF CRLF, or bare LFs. */
	e = evbuffer_search_range(in, "\r\n\r\n", 4, NULL, NULL);
	if (e.pos == -1 || (size_t)e.pos + 4 > n) {
		e = evbuffer_search_range(in, "\n\n", 2, NULL, NULL);
		if (e.pos != -1 && (size_t)e.pos + 2 <= n)
			e.pos += 2;
		else
			e.pos = -1;
	} else {
		e.pos += 4;
	}
	if (e.pos == -1) {
		if (len >= STATS_HTTP_MAX_REQUEST)
			http_answer(c, 431, false);
		return;		/* more to come */
	}
	evbuffer_copyout(in, buf, (size_t)e.pos);
	http_answer(c, stats_http_parse(buf, (size_t)e.pos, &head), head);
}

/* The request head has STATS_HTTP_TIMEOUT_S from accept, however slowly
 * its bytes come (a timeout of inactivity alone would let a client that
 * sends a byte now and then hold a connection for hours); then the answer
 * as long again. */
static void on_http_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct sconn *c = arg;

	if (c->answered) {
		sconn_free(c);
		return;
	}
	http_answer(c, 408, false);	/* re-arms the deadline */
}

static void on_http_event(struct bufferevent *bev, short what, void *arg)
{
	struct sconn *c = arg;

	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && !c->answered) {
		http_answer(c, 408, false);
		return;
	}
	/* A client that half-closed after its request still gets the answer. */
	if ((what & BEV_EVENT_EOF) && c->answered &&
	    evbuffer_get_length(bufferevent_get_output(bev)) > 0)
		return;
	sconn_free(c);
}

/* ---- both ---------------------------------------------------------------- */

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct stats_server *srv = arg;
	struct timeval tv = { STATS_HTTP_TIMEOUT_S, 0 };
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
	if (srv->http) {
		bufferevent_setcb(c->bev, on_http_read, on_write, on_http_event, c);
		bufferevent_set_timeouts(c->bev, &tv, &tv);
		c->deadline = evtimer_new(srv->base, on_http_deadline, c);
		if (c->deadline == NULL)
			fatalx("out of memory (evtimer)");
		evtimer_add(c->deadline, &tv);
		/* never buffer more than a request head */
		bufferevent_setwatermark(c->bev, EV_READ, 0, STATS_HTTP_MAX_REQUEST);
		bufferevent_enable(c->bev, EV_READ);
		return;
	}
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

struct stats_server *stats_server_new_http(struct event_base *base, int listen_fd,
					   unsigned max_conns, stats_server_fill_cb *fill,
					   void *ctx)
{
	struct stats_server *srv = stats_server_new(base, listen_fd, max_conns, fill, ctx);

	srv->http = true;
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
