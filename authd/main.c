/*
 * main.c - authd: start-up, signals, shutdown.
 *
 * Runs as root only until the sockets exist; then drops to [authd] user,
 * leaving one root process behind: the configuration reader (confreader.c)
 * that reloads read the file through.  Started as an ordinary user (tests,
 * `make run`), it skips the drop with one warning and otherwise behaves
 * the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "authd/argon2mem.h"
#include "authd/authd.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/memwipe.h"
#include "common/mtime.h"
#include "common/notify.h"
#include "common/privsep.h"
#include "common/proctitle.h"
#include "common/sock.h"
#include "common/version.h"

/* How many argon2 regions argon2mem.c keeps: as many as checks can run at
 * once (the hash-concurrency of each passwd-file, the workers of an LDAP
 * authenticator, which may compare hashes), so that its memory is what
 * that many concurrent checks hold anyway. */
static size_t argon2_regions(const struct config *conf)
{
	size_t n = 0;

	for (size_t i = 0; i < conf->nauths; i++) {
		if (conf->auths[i].type == AUTH_TYPE_PASSWD_FILE)
			n += conf->auths[i].hash_concurrency;
		else if (conf->auths[i].type == AUTH_TYPE_LDAP)
			n += conf->auths[i].workers;
	}
	return n;
}

static struct event_base *base;
static char *conf_path;			/* absolute, for reloads */
static struct generation *current;	/* new requests go here */
/* What cannot change without a restart: as started. */
static char *sock_path, *master_path, *stats_path, *metrics_addr, *run_user, *l2_server_list,
	    *l2_keyfile, *dovecot_path, *saslauthd_path;
static bool cache_enabled, foreground;
static uint64_t cache_size;
static unsigned refresh_pct;

struct generation *authd_generation(void)
{
	return current;
}

/* Reports keys of the new configuration that need a restart. */
static void report_fixed(const struct config *n)
{
#define SAME(a, b) (strcmp((a) != NULL ? (a) : "", (b) != NULL ? (b) : "") == 0)
	if (!SAME(n->authd.socket, sock_path))
		log_warnx("reload: [authd] socket changed; restart authd to apply");
	if (!SAME(n->authd.master_socket, master_path))
		log_warnx("reload: [authd] master-socket changed; restart authd to apply");
	if (!SAME(n->authd.stats_socket, stats_path))
		log_warnx("reload: [authd] stats-socket changed; restart authd to apply");
	if (!SAME(n->authd.metrics_listen, metrics_addr))
		log_warnx("reload: [authd] metrics-listen changed; restart authd to apply");
	if (!SAME(n->authd.dovecot_socket, dovecot_path))
		log_warnx("reload: [authd] dovecot-socket changed; restart authd to apply");
	if (!SAME(n->authd.saslauthd_socket, saslauthd_path))
		log_warnx("reload: [authd] saslauthd-socket changed; restart authd to apply");
	if (!SAME(n->authd.user, run_user))
		log_warnx("reload: [authd] user changed; restart authd to apply");
	if (n->cache.enabled != cache_enabled || (cache_enabled && n->cache.size != cache_size) ||
	    n->cache.refresh_ahead_pct != refresh_pct)
		log_warnx("reload: [cache] enabled, size or refresh-ahead changed; restart authd "
			  "to apply (the TTLs did change)");
	if (!SAME(n->cache.memcached, l2_server_list) || !SAME(n->cache.cluster_key_file, l2_keyfile))
		log_warnx("reload: [cache] memcached or cluster-key-file changed; restart authd "
			  "to apply (a new key too: L2 keeps the cluster warm across the restart)");
#undef SAME
}

int authd_reload(char *error, size_t size)
{
	struct config *n;
	struct generation *gen;
	char err[1024];

	if (!generation_can_retire()) {
		authd_stats.reload_failures++;
		snprintf(error, size, "too many reloads while requests of older configurations "
			 "are still pending; try again when they are done");
		log_error("reload refused: %s", error);
		return -1;
	}
	n = confreader_load(conf_path, err, sizeof(err));
	if (n == NULL) {
		authd_stats.reload_failures++;
		log_error("reload refused, running configuration kept: %s", err);
		snprintf(error, size, "%s", err);
		return -1;
	}
	gen = generation_start(n, err, sizeof(err));
	if (gen == NULL) {
		authd_stats.reload_failures++;
		log_error("reload refused, running configuration kept: %s", err);
		snprintf(error, size, "%s", err);
		config_free(&n);
		return -1;
	}
	argon2mem_init(argon2_regions(n));
	report_fixed(n);
	/* Counters continue across reloads for authenticators that keep
	 * their name. */
	for (size_t i = 0; i < gen->nauths; i++)
		for (size_t k = 0; k < current->nauths; k++)
			if (strcmp(gen->auths[i].conf->name, current->auths[k].conf->name) == 0)
				gen->auths[i].stats = current->auths[k].stats;
	if (config_log_init("authd", &n->authd.log, foreground) == -1)
		log_warn("reload: cannot open log file %s", n->authd.log.file);
	requests_set_generation(gen);
	clients_set_conf(n);
	dovecot_set_conf(n);
	saslauthd_set_conf(n);
	tickets_set_lifetime(n);
	generation_retire(current);
	current = gen;
	authd_stats.reloads++;
	log_info("authd: configuration reloaded from %s (%zu authenticators)", conf_path,
		 gen->nauths);
	return 0;
}

/* The checks of the configuration that need the running system (users,
 * groups, the log file): `authd -t` and a start both run them, before
 * anything else happens.  config.c checked everything else, and each
 * backend's own checks run through authenticators_check() at -t and its
 * init at start.  Returns 0, or -1 with a message in err. */
static int check_conf(const struct config *conf, char *err, size_t size)
{
	uid_t uid;
	gid_t gid;
	int fd;

	if (strcmp(conf->authd.log.target, "file") == 0) {
		fd = open(conf->authd.log.file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd == -1) {
			snprintf(err, size, "[authd] log-file %s: cannot open: %s",
				 conf->authd.log.file, strerror(errno));
			return -1;
		}
		close(fd);
	}
	if (conf->authd.stats_group[0] != '\0' &&
	    privsep_lookup_group(conf->authd.stats_group, &gid) == -1) {
		snprintf(err, size, "[authd] stats-group %s: no such group",
			 conf->authd.stats_group);
		return -1;
	}
	if (conf->authd.dovecot_socket_group[0] != '\0' &&
	    privsep_lookup_group(conf->authd.dovecot_socket_group, &gid) == -1) {
		snprintf(err, size, "[authd] dovecot-socket-group %s: no such group",
			 conf->authd.dovecot_socket_group);
		return -1;
	}
	if (conf->authd.saslauthd_socket_group[0] != '\0' &&
	    privsep_lookup_group(conf->authd.saslauthd_socket_group, &gid) == -1) {
		snprintf(err, size, "[authd] saslauthd-socket-group %s: no such group",
			 conf->authd.saslauthd_socket_group);
		return -1;
	}
	/* as root only: an ordinary user cannot switch to it anyway */
	if (geteuid() == 0 && conf->authd.user[0] != '\0' &&
	    privsep_lookup(conf->authd.user, &uid, &gid) == -1) {
		snprintf(err, size, "[authd] user %s: no such user", conf->authd.user);
		return -1;
	}
	/* Read as root (the file need not be readable by [authd] user) and
	 * kept for l2_init(); -t frees it again. */
	if (conf->cache.nservers > 0 &&
	    l2_keys_load(conf->cache.cluster_key_file, err, size) == -1)
		return -1;
	return 0;
}

/* Listens on an optional protocol socket (the Dovecot or saslauthd one)
 * with its mode, given to group if one is set (its owner is set with the
 * others' at the privilege drop).  Returns the fd, or -1 if path is "". */
static int listen_optional(const char *what, const char *path, unsigned mode, const char *group)
{
	gid_t g;
	int fd;

	if (path[0] == '\0')
		return -1;
	fd = sock_unix_listen(path, (mode_t)mode);
	if (fd == -1)
		fatal("[authd] %s: cannot listen on %s", what, path);
	if (group[0] != '\0') {
		if (privsep_lookup_group(group, &g) == -1)
			fatalx("[authd] %s-group %s: no such group", what, group);
		if (chown(path, (uid_t)-1, g) == -1)
			fatal("cannot chgrp %s to %s", path, group);
	}
	return fd;
}

static void on_title(evutil_socket_t fd, short what, void *arg)
{
	proctitle_set("authd: %u in flight", requests_in_flight());
}

/* -h: the whole text on stdout, exit 0; a bad command line: on stderr,
 * exit 2 (the conventions of every program here, authd(8)). */
static void usage(bool help)
{
	fprintf(help ? stdout : stderr, "usage: authd -c FILE [-f] [-t]\n"
		"  -c FILE    configuration file\n"
		"  -f         stay in the foreground, log to stderr\n"
		"  -t         check the configuration and exit (0 valid, 1 not)\n"
		"  -h, --help this text;  --version  the version\n");
	exit(help ? 0 : 2);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
	log_info("authd: signal %d, shutting down", (int)sig);
	event_base_loopbreak(base);
}

static void on_usr1(evutil_socket_t sig, short what, void *arg)
{
	log_reopen();
	log_info("authd: log file reopened");
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	char err[1024];

	log_info("authd: SIGHUP, reloading %s", conf_path);
	authd_reload(err, sizeof(err));
}

static void daemonize(void)
{
	int fd;

	switch (fork()) {
	case -1:
		fatal("fork");
	case 0:
		break;
	default:
		_exit(0);
	}
	if (setsid() == -1)
		fatal("setsid");
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd == -1)
		fatal("/dev/null");
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	bool test_only = false;
	struct config *conf;
	struct event *sigs[5], *title_ev;
	struct timeval one_second = { 1, 0 };
	char err[1024], *real;
	int ch, fd, mfd, sfd = -1, hfd = -1, dfd, cfd;

	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	while ((ch = getopt_long(argc, argv, "c:fth", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'f': foreground = true; break;
		case 't': test_only = true; break;
		case 'h': usage(true); break;
		case 'V': printf("authd %s\n", PROJECT_VERSION); return 0;
		default: usage(false);
		}
	}
	if (path == NULL || optind != argc)
		usage(false);

	log_init("authd", LOG_LEVEL_INFO, LOG_TARGET_STDERR, NULL, 0);
	/* Before any libevent or libcrypto call: their freed blocks (request
	 * lines, digest contexts) are wiped first; and libldap's bind
	 * requests, freed with plain free() (common/memwipe.c). */
	event_set_mem_functions(malloc, memwipe_realloc, memwipe_free);
	password_wipe_freed();
	memwipe_perturb();
	conf = config_load(path, err, sizeof(err));
	if (conf == NULL) {
		fprintf(stderr, "authd: %s\n", err);
		return 1;
	}
	if (check_conf(conf, err, sizeof(err)) == -1 ||
	    (test_only && authenticators_check(conf, err, sizeof(err)) == -1)) {
		fprintf(stderr, "authd: %s: %s\n", path, err);
		config_free(&conf);
		return 1;
	}
	if (test_only) {
		l2_keys_free();
		printf("authd: %s: configuration OK (%zu authenticators)\n", path, conf->nauths);
		config_free(&conf);
		return 0;
	}
	if (sodium_init() < 0)
		fatalx("libsodium initialisation failed");
	/* Keep what argv holds before the process title overwrites it. */
	real = realpath(path, NULL);
	conf_path = real != NULL ? real : xstrdup(path);
	proctitle_init(argc, argv);
	privsep_no_core();
	signal(SIGPIPE, SIG_IGN);
	if (config_log_init("authd", &conf->authd.log, foreground) == -1)
		fatal("cannot open log file %s", conf->authd.log.file);
	config_check_private("configuration file", path);

	fd = sock_unix_listen(conf->authd.socket, 0660);
	if (fd == -1)
		fatal("cannot listen on %s", conf->authd.socket);
	mfd = sock_unix_listen(conf->authd.master_socket, 0600);
	if (mfd == -1)
		fatal("cannot listen on %s", conf->authd.master_socket);
	if (conf->authd.stats_socket[0] != '\0') {
		sfd = sock_unix_listen(conf->authd.stats_socket, 0660);
		if (sfd == -1)
			fatal("cannot listen on %s", conf->authd.stats_socket);
		if (conf->authd.stats_group[0] != '\0') {
			gid_t g;
			if (privsep_lookup_group(conf->authd.stats_group, &g) == -1)
				fatalx("[authd] stats-group %s: no such group", conf->authd.stats_group);
			if (chown(conf->authd.stats_socket, (uid_t)-1, g) == -1)
				fatal("cannot chgrp %s", conf->authd.stats_socket);
		}
	}
	dfd = listen_optional("dovecot-socket", conf->authd.dovecot_socket,
			      conf->authd.dovecot_mode, conf->authd.dovecot_socket_group);
	cfd = listen_optional("saslauthd-socket", conf->authd.saslauthd_socket,
			      conf->authd.saslauthd_mode, conf->authd.saslauthd_socket_group);
	/* Bound here, as root, like the other sockets (a port below 1024
	 * is allowed); served after the drop. */
	if (conf->authd.metrics_listen[0] != '\0') {
		hfd = sock_tcp_listen_str(conf->authd.metrics_listen, 64);
		if (hfd == -1)
			fatal("[authd] metrics-listen: cannot listen on %s",
			      conf->authd.metrics_listen);
	}
	metrics_addr = xstrdup(conf->authd.metrics_listen);
	sock_path = xstrdup(conf->authd.socket);
	master_path = xstrdup(conf->authd.master_socket);
	stats_path = xstrdup(conf->authd.stats_socket);
	run_user = xstrdup(conf->authd.user);
	dovecot_path = xstrdup(conf->authd.dovecot_socket);
	saslauthd_path = xstrdup(conf->authd.saslauthd_socket);
	l2_server_list = xstrdup(conf->cache.memcached);
	l2_keyfile = xstrdup(conf->cache.cluster_key_file);
	cache_enabled = conf->cache.enabled;
	cache_size = conf->cache.size;
	refresh_pct = conf->cache.refresh_ahead_pct;

	if (geteuid() == 0) {
		uid_t uid;
		gid_t gid;

		if (conf->authd.user == NULL || conf->authd.user[0] == '\0')
			log_warnx("authd: running as root: set [authd] user to drop privileges");
		else if (privsep_lookup(conf->authd.user, &uid, &gid) == -1)
			fatalx("[authd] user %s: no such user", conf->authd.user);
		else {
			if (chown(conf->authd.socket, uid, gid) == -1 ||
			    chown(conf->authd.master_socket, uid, gid) == -1 ||
			    (sfd != -1 && chown(conf->authd.stats_socket, uid, (gid_t)-1) == -1) ||
			    (dfd != -1 && chown(conf->authd.dovecot_socket, uid,
						conf->authd.dovecot_socket_group[0] != '\0' ?
						(gid_t)-1 : gid) == -1) ||
			    (cfd != -1 && chown(conf->authd.saslauthd_socket, uid,
						conf->authd.saslauthd_socket_group[0] != '\0' ?
						(gid_t)-1 : gid) == -1))
				fatal("cannot chown the sockets to %s", conf->authd.user);
			/* Reloads read the file through a reader that stays
			 * root: [authd] user need not (and should not) be
			 * able to read it. */
			confreader_start(conf_path);
			privsep_drop(uid, gid);
		}
	} else if (conf->authd.user != NULL && conf->authd.user[0] != '\0') {
		log_warnx("authd: not started as root; running as uid %ld, [authd] user ignored",
			  (long)geteuid());
	}

	if (!foreground)
		daemonize();
	else if (chdir("/") == -1)	/* as daemonize() does: keep no directory busy */
		fatal("chdir /");

	base = event_base_new();
	if (base == NULL)
		fatalx("cannot create the event loop");
	tickets_init(conf);
	requests_set_base(base);
	requests_init(conf, base);
	authenticators_init(base);
	ratelog_init(base);
	argon2mem_init(argon2_regions(conf));
	current = generation_start(conf, err, sizeof(err));
	if (current == NULL)
		fatalx("%s", err);
	requests_set_generation(current);
	clients_init(base, conf, fd);
	if (dfd != -1)
		dovecot_init(base, conf, dfd);
	if (cfd != -1)
		saslauthd_init(base, conf, cfd);
	redeem_init(base, mfd);
	stats_init(base, sfd, hfd);
	title_ev = event_new(base, -1, EV_PERSIST, on_title, NULL);
	event_add(title_ev, &one_second);
	on_title(-1, 0, NULL);

	sigs[0] = evsignal_new(base, SIGTERM, on_stop, NULL);
	sigs[1] = evsignal_new(base, SIGINT, on_stop, NULL);
	sigs[2] = evsignal_new(base, SIGHUP, on_hup, NULL);
	sigs[3] = evsignal_new(base, SIGUSR1, on_usr1, NULL);
	sigs[4] = NULL;
	for (int i = 0; sigs[i] != NULL; i++)
		event_add(sigs[i], NULL);

	log_info("authd: ready, %zu authenticators, socket %s", conf->nauths, conf->authd.socket);
	notify_systemd("READY=1");
	event_base_dispatch(base);

	notify_systemd("STOPPING=1");
	confreader_stop();
	clients_shutdown();
	dovecot_shutdown();
	saslauthd_shutdown();
	requests_shutdown();
	redeem_shutdown();
	stats_shutdown();
	ratelog_shutdown();
	authenticators_shutdown(current);	/* frees every configuration */
	l2_shutdown();				/* its control thread flushes L1 */
	requests_cache_free();
	tickets_shutdown();
	for (int i = 0; sigs[i] != NULL; i++)
		event_free(sigs[i]);
	event_free(title_ev);
	event_base_free(base);
	unlink(sock_path);
	unlink(master_path);
	if (sfd != -1)
		unlink(stats_path);
	if (dfd != -1)
		unlink(dovecot_path);
	if (cfd != -1)
		unlink(saslauthd_path);
	free(dovecot_path);
	free(saslauthd_path);
	free(sock_path);
	free(master_path);
	free(stats_path);
	free(metrics_addr);
	free(run_user);
	free(l2_server_list);
	free(l2_keyfile);
	free(conf_path);
	log_info("authd: stopped");
	return 0;
}
