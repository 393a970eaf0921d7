/*
 * session_proc.c - the session process: its entry point (session_main),
 * its logins one after another, and what it tells the master.
 *
 * Runs in a session process, forked by the master (handoff.c's
 * session_start).  As root only from the fork to privdrop_session: it
 * closes every descriptor of the master's but its client, the report
 * socket and its channel, wipes the TLS ticket keys it inherited, then
 * becomes the mailbox owner (privdrop.c, which refuses root and uids
 * below first-valid-uid).  Everything after, session_serve and the
 * protocol engine it runs (session.c; mailbox.c with maildir.c or mbox.c,
 * which may run liblockfile's setgid helper dotlockfile), runs as the mailbox
 * owner, in a process of its own: no event loop, so the blocking writes
 * here (send_report's bounded wait, spare_wait's SESSION_SPARE) stall
 * nobody but this session.
 *
 * With session-reuse > 1 the process serves further logins of the same
 * uid and gid: after each session it says SESSION_SPARE on its channel
 * and waits for the next login (a struct session_job, checked by ipc.c
 * even though the master sent it), or for the channel's end.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/config.h"
#include "common/log.h"
#include "common/privsep.h"
#include "common/proctitle.h"
#include "pop3d/pop3d.h"

static struct {
	const struct config *conf;	/* the master's at the fork */
	int report_fd;			/* shared by every session; write only */
} S;

/* Sends the report r to the master, waiting at most
 * POP3D_REPORT_TIMEOUT_MS for room (the socket is shared by all sessions
 * and the master may be busy; the counts are not worth more). */
static void send_report(const struct session_report *r)
{
	for (int tries = 0; tries < 2; tries++) {
		struct pollfd pfd = { .fd = S.report_fd, .events = POLLOUT };

		if (send(S.report_fd, r, sizeof(*r), MSG_DONTWAIT | MSG_NOSIGNAL) ==
		    (ssize_t)sizeof(*r))
			return;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
			break;
		if (tries == 0 && poll(&pfd, 1, POP3D_REPORT_TIMEOUT_MS) == -1)
			break;
	}
	log_debug("session: report to the master lost: %s", strerror(errno));
}

/* Tells the master the maildrop is open (a login that counts as ok).  The
 * report socket orders it before the session's final report. */
static void send_opened(void *ctx, bool warm)
{
	struct session_report r;

	memset(&r, 0, sizeof(r));
	r.kind = warm ? SESSION_REPORT_OPENED_WARM : SESSION_REPORT_OPENED;
	send_report(&r);
}

/* One login: returns when the session has ended and its report is sent.
 * A maildrop template that cannot be expanded is a maildrop error like any
 * other (session_run answers and logs it). */
static void session_serve(const struct session_job *j, int fd)
{
	struct session_params p;
	struct session_report report;
	char path[4096];
	char user[POP3D_LOG_USER_MAX];
	const char *err;

	log_token(j->user, user, sizeof(user));
	proctitle_set("pop3d: session %s %s", user, j->rip);
	/* fixed format, documented in pop3d(8) (LOGGING) */
	log_info("login: user=%s rip=%s method=%s secured=%s%s%s pid=%ld", user, j->rip,
		 j->method, j->secured ? "yes" : "no", j->secured ? " tls=" : "",
		 j->secured ? j->tls_info : "", (long)getpid());
	memset(&p, 0, sizeof(p));
	if (maildrop_expand(j->maildrop[0] != '\0' ? j->maildrop : S.conf->pop3d.maildrop,
			   j->user, j->home[0] != '\0' ? j->home : NULL, path, sizeof(path),
			   &err) == -1) {
		p.maildrop = NULL;
		p.maildrop_error = err;
	} else {
		p.maildrop = path;
	}
	p.fd = fd;
	p.user = j->user;
	p.opened = send_opened;
	p.rip = j->rip;
	p.data = j->data;
	p.data_len = j->data_len;
	p.secured = j->secured != 0;
	p.tls_info = j->tls_info;
	p.lang = lang_find(j->lang);
	p.conf = S.conf;
	session_run(&p, &report);	/* closes fd */
	send_report(&report);
}

/* Says the session has ended and waits for the next login the master
 * gives this process, or for the end of the channel (the master has
 * enough spares, this one waited too long, a reload, the master is gone).
 * Returns 0 with *j and *fd_r, or -1. */
static int spare_wait(int chan, struct session_job *j, int *fd_r)
{
	if (ipc_spare_send(chan) == -1)
		return -1;
	proctitle_set("pop3d: session (spare)");
	switch (session_job_recv(chan, j, fd_r)) {
	case 1:
		break;
	case 0:
		return -1;
	default:
		log_warn("session: bad login from the master");
		return -1;
	}
	/* The master picked us for these ids; a mismatch is a bug, and must
	 * not become another owner's session. */
	if (privdrop_enabled() && (j->uid != getuid() || j->gid != getgid())) {
		log_warnx("session: given uid %lu gid %lu, running as %lu/%lu",
			  (unsigned long)j->uid, (unsigned long)j->gid,
			  (unsigned long)getuid(), (unsigned long)getgid());
		close(*fd_r);
		return -1;
	}
	return 0;
}

void session_main(const struct config *conf, const struct session_job *first, int fd,
		  int chan, int report_fd)
{
	static struct session_job job;
	const struct session_job *j = first;
	char user[POP3D_LOG_USER_MAX];
	const char *err;
	int keep[] = { fd, report_fd, chan };

	S.conf = conf;
	S.report_fd = report_fd;
	privdrop_child_signals();
	tls_ticket_keys_wipe();
	ipc_chan_forget_all();		/* the master's queues: ticket keys too */
	/* Nothing of the master's: not its listeners, not its connections
	 * to authd, to front ends, to stats readers, to other sessions. */
	privsep_close_fds(keep, sizeof(keep) / sizeof(keep[0]));
	if (privdrop_session(j->uid, j->gid, conf->pop3d.first_valid_uid, &err) == -1) {
		log_warnx("session: user=%s uid=%lu: %s",
			  log_token(j->user, user, sizeof(user)), (unsigned long)j->uid, err);
		/* best effort, as the master's refusals (conntab_refuse) */
		char line[512];
		int n = snprintf(line, sizeof(line), "-ERR [SYS/PERM] %s\r\n",
				 lang_tr(lang_find(j->lang),
					 "Login not permitted for this account"));
		if (n > 0 && (size_t)n < sizeof(line) &&
		    send(fd, line, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) == -1)
			log_debug("refuse: %s", strerror(errno));
		_exit(1);
	}
	for (unsigned served = 1;; served++) {
		session_serve(j, fd);
		if (chan == -1 || served >= conf->pop3d.session_reuse ||
		    spare_wait(chan, &job, &fd) == -1)
			_exit(0);
		j = &job;
	}
}
