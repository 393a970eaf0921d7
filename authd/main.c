/*
 * main.c - authd: start-up, signals, shutdown.
 *
 * Runs as root only until the sockets exist; then drops to [authd] user.
 * Started as an ordinary user (tests, `make run`), it skips the drop with
 * one warning and otherwise behaves the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "authd/authd.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/privsep.h"
#include "common/sock.h"

static struct event_base *base;

static void usage(void)
{
	fprintf(stderr, "usage: authd -c FILE [-f] [-t]\n"
		"  -c FILE  configuration file\n"
		"  -f       stay in the foreground, log to stderr\n"
		"  -t       check the configuration and exit (0 valid, 1 not)\n");
	exit(64);
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
	/* passwd-files reload themselves when they change; a configuration
	 * reload arrives with the operations work (authctl reload). */
	log_warnx("authd: SIGHUP: configuration reload is not supported yet; "
		  "restart authd to apply a changed configuration");
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
	bool foreground = false, test_only = false;
	struct config *conf;
	struct authenticator *auths;
	struct event *sigs[5];
	char err[1024];
	int ch, fd, mfd;

	while ((ch = getopt(argc, argv, "c:ft")) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'f': foreground = true; break;
		case 't': test_only = true; break;
		default: usage();
		}
	}
	if (path == NULL || optind != argc)
		usage();

	log_init("authd", LOG_LEVEL_INFO, LOG_TARGET_STDERR, NULL, 0);
	conf = config_load(path, err, sizeof(err));
	if (conf == NULL) {
		fprintf(stderr, "authd: %s\n", err);
		return 1;
	}
	if (test_only) {
		printf("authd: %s: configuration OK (%zu authenticators)\n", path, conf->nauths);
		config_free(&conf);
		return 0;
	}
	if (sodium_init() < 0)
		fatalx("libsodium initialisation failed");
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

	if (geteuid() == 0) {
		uid_t uid;
		gid_t gid;

		if (conf->authd.user == NULL || conf->authd.user[0] == '\0')
			log_warnx("authd: running as root: set [authd] user to drop privileges");
		else if (privsep_lookup(conf->authd.user, &uid, &gid) == -1)
			fatalx("[authd] user %s: no such user", conf->authd.user);
		else {
			if (chown(conf->authd.socket, uid, gid) == -1 ||
			    chown(conf->authd.master_socket, uid, gid) == -1)
				fatal("cannot chown the sockets to %s", conf->authd.user);
			privsep_drop(uid, gid);
		}
	} else if (conf->authd.user != NULL && conf->authd.user[0] != '\0') {
		log_warnx("authd: not started as root; running as uid %ld, [authd] user ignored",
			  (long)geteuid());
	}

	if (!foreground)
		daemonize();

	base = event_base_new();
	if (base == NULL)
		fatalx("cannot create the event loop");
	tickets_init(conf);
	requests_set_base(base);
	requests_init(conf);
	auths = authenticators_start(conf, base);
	requests_set_chain(auths, conf->nauths);
	clients_init(base, conf, fd);
	master_init(base, mfd);

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
	clients_shutdown();
	requests_shutdown();
	master_shutdown();
	authenticators_stop(auths, conf->nauths);
	tickets_shutdown();
	for (int i = 0; sigs[i] != NULL; i++)
		event_free(sigs[i]);
	event_base_free(base);
	unlink(conf->authd.socket);
	unlink(conf->authd.master_socket);
	config_free(&conf);
	log_info("authd: stopped");
	return 0;
}
