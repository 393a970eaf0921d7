/*
 * saslauthd.c - Cyrus saslauthd's protocol on [authd] saslauthd-socket:
 * what Cyrus SASL's `pwcheck_method: saslauthd` (Postfix with Cyrus SASL,
 * Cyrus IMAP, OpenLDAP pass-through, ...) and `testsaslauthd` speak.
 *
 * One request per connection: four counted strings (login, password,
 * service, realm; a fifth, the client's address, from clients that send
 * it), each a 2-byte big-endian length and its bytes; one counted reply,
 * "OK" or "NO reason"; then authd closes the connection.
 *
 * Runs on authd's event-loop thread, as [authd] user.  The peer is
 * whoever the socket's mode and group let in: hostile.  saslproto.c
 * decodes (every length bounded: SASLAUTHD_MAX_FIELD, AUTH_MAX_USER,
 * AUTH_MAX_PASSWORD); a malformed request gets "NO" and the connection
 * closes; one that does not arrive within SASLAUTHD_READ_TIMEOUT_MS is
 * closed.  The request goes through request.c like any other login
 * (cache, chain, fair queues, timeouts), with secured=no (the protocol
 * cannot say) and the realm ignored, as saslauthd without -r does.  The
 * password is wiped from our buffer once the request has its copy;
 * request.c wipes that one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sodium.h>

#include "authd/authd.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/memwipe.h"
#include "common/mtime.h"
#include "common/proto.h"
#include "common/sock.h"

struct sconn {
	TAILQ_ENTRY(sconn) entry;
	struct bufferevent *bev;
	pid_t pid;			/* SO_PEERCRED, for the log */
	struct request *req;		/* the check in progress, or NULL */
	bool replied;			/* close once the reply is written */
};

static TAILQ_HEAD(, sconn) conns = TAILQ_HEAD_INITIALIZER(conns);
static unsigned nconns;
static uint64_t serial;
static const struct config *conf;
static struct evconnlistener *listener;
static struct event_base *base;

static void sconn_free(struct sconn *c)
{
	if (c->req != NULL)
		request_cancel(c->req);
	TAILQ_REMOVE(&conns, c, entry);
	nconns--;
	bufferevent_free(c->bev);
	free(c);
	if (listener != NULL && nconns < conf->authd.max_clients)	/* also after a reload raised it */
		evconnlistener_enable(listener);
}

/* Queues the counted reply text; the connection closes once it is out. */
static void reply(struct sconn *c, const char *text)
{
	size_t n = strlen(text);
	uint8_t len[2] = { (uint8_t)(n >> 8), (uint8_t)n };

	bufferevent_write(c->bev, len, sizeof(len));
	bufferevent_write(c->bev, text, n);
	c->replied = true;
	/* Anything the client sends from now on is ignored. */
	bufferevent_disable(c->bev, EV_READ);
}

/* request_cb */
static void on_answer(void *ctx, struct request *req, const struct request_answer *a)
{
	struct sconn *c = ctx;
	char text[96];

	c->req = NULL;
	switch (a->result) {
	case AUTH_RESULT_OK:
		reply(c, "OK");
		break;
	case AUTH_RESULT_TEMPFAIL:
		snprintf(text, sizeof(text), "NO temporary failure (%s)",
			 tempfail_reason_name(a->reason));
		reply(c, text);
		break;
	default:
		reply(c, "NO authentication failed");
		break;
	}
}

/* The service as request.c takes it: lower-cased; "" (testsaslauthd sends
 * "imap" by default, other clients may send nothing) becomes "saslauthd".
 * Returns false if it still is not a valid service name. */
static bool service_of(const char *in, char *out, size_t size)
{
	size_t i;

	if (in[0] == '\0') {
		snprintf(out, size, "saslauthd");
		return true;
	}
	for (i = 0; in[i] != '\0' && i + 1 < size; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] - 'A' + 'a') : in[i];
	out[i] = '\0';
	return in[i] == '\0' && proto_service_valid(out);
}

static void start_request(struct sconn *c, struct saslauthd_req *r)
{
	struct request_params p;
	char id[24], service[33], rip[AUTHD_MAX_ADDR + 1] = "";
	char *pw;

	if (!service_of(r->service, service, sizeof(service))) {
		authd_stats.errors++;
		log_warnx("saslauthd: client pid %ld: bad service name", (long)c->pid);
		reply(c, "NO bad service name");
		return;
	}
	/* The fifth string: "ADDRESS;PORT" from Cyrus SASL's own client. */
	if (r->has_addr) {
		char *semi = strchr(r->addr, ';');
		size_t n;

		if (semi != NULL)
			*semi = '\0';
		n = strlen(r->addr);
		if (n < sizeof(rip)) {		/* longer: not an address, ignored */
			memcpy(rip, r->addr, n);
			rip[n] = '\0';
		}
	}
	snprintf(id, sizeof(id), "%llu", (unsigned long long)++serial);
	pw = xmalloc(r->passlen + 1);
	memcpy(pw, r->password, r->passlen + 1);
	memset(&p, 0, sizeof(p));
	p.id = id;
	p.service = service;
	p.user = r->login;
	p.rip = rip;
	p.lip = "";
	p.password = pw;
	p.passlen = r->passlen;
	p.secured = false;
	c->req = request_new(&p, on_answer, c);
	request_run(c->req);	/* may answer before it returns */
}

static void on_read(struct bufferevent *bev, void *arg)
{
	static uint8_t buf[SASLAUTHD_MAX_REQUEST + 1];
	struct sconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct saslauthd_req r;
	const char *err;
	size_t len;

	if (c->replied)
		return;
	if (c->req != NULL) {
		/* One request per connection: the client sent more. */
		log_warnx("saslauthd: client pid %ld: bytes after its request; closing",
			  (long)c->pid);
		sconn_free(c);
		return;
	}
	len = evbuffer_get_length(in);
	if (len > SASLAUTHD_MAX_REQUEST)
		len = SASLAUTHD_MAX_REQUEST + 1;	/* decoded as too long */
	if (evbuffer_copyout(in, buf, len) != (ev_ssize_t)len) {
		sconn_free(c);
		return;
	}
	switch (saslauthd_decode(buf, len, &r, &err)) {
	case SASLAUTHD_MORE:
		break;
	case SASLAUTHD_BAD:
		authd_stats.errors++;
		log_warnx("saslauthd: client pid %ld: %s", (long)c->pid, err);
		evbuffer_drain(in, evbuffer_get_length(in));
		reply(c, "NO bad request");
		break;
	case SASLAUTHD_DONE:
		evbuffer_drain(in, len);
		/* From here the check's own timeouts bound the wait; reading
		 * stays on to see the client leave (and cancel). */
		bufferevent_set_timeouts(bev, NULL, NULL);
		start_request(c, &r);
		sodium_memzero(&r, sizeof(r));
		break;
	}
	sodium_memzero(buf, len);
	memwipe_stack();
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct sconn *c = arg;

	/* Called when the output has drained: the reply is out. */
	if (c->replied)
		sconn_free(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct sconn *c = arg;

	if ((what & BEV_EVENT_TIMEOUT) != 0)
		log_warnx("saslauthd: client pid %ld: no complete request within %ds; closing",
			  (long)c->pid, SASLAUTHD_READ_TIMEOUT_MS / 1000);
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		sconn_free(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int socklen, void *arg)
{
	struct sconn *c;
	struct timeval tv;

	if (nconns >= conf->authd.max_clients) {
		log_warnx("saslauthd: max-clients (%u) reached, refusing a connection",
			  conf->authd.max_clients);
		close(fd);
		evconnlistener_disable(l);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	if (sock_peer_cred(fd, &c->pid, NULL, NULL) == -1)
		c->pid = -1;
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("out of memory (bufferevent)");
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	/* A read timeout for the request (lifted once it is complete). */
	MTIME_TV(tv, SASLAUTHD_READ_TIMEOUT_MS);
	bufferevent_set_timeouts(c->bev, &tv, NULL);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	TAILQ_INSERT_TAIL(&conns, c, entry);
	nconns++;
}

void saslauthd_init(struct event_base *b, const struct config *cf, int listen_fd)
{
	base = b;
	conf = cf;
	listener = authd_listen(base, listen_fd, on_accept, "saslauthd");
}

void saslauthd_set_conf(const struct config *cf)
{
	conf = cf;
}

void saslauthd_shutdown(void)
{
	struct sconn *c;

	if (listener != NULL)
		evconnlistener_free(listener);
	listener = NULL;
	while ((c = TAILQ_FIRST(&conns)) != NULL)
		sconn_free(c);
}
