/*
 * spawn.c - start and reap helper programs without touching SIGCHLD.
 *
 * posix_spawn() puts each child in a new session (its own process group,
 * so a kill reaches its children too), with default signal dispositions,
 * an empty signal mask, and only the descriptors we hand it.  The child is
 * then tracked by a pidfd: we wait for exactly our own child with
 * waitid(P_PIDFD), never waitpid(-1), and install no SIGCHLD handler.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "authd/authd.h"
#include "common/log.h"
#include "common/mtime.h"

/* Every child not yet reaped, so that shutdown can kill them all.  A pid
 * leaves the registry before it is reaped, so a pid found here can never
 * have been reused by an unrelated process. */
#define MAX_CHILDREN 1024
static pthread_mutex_t children_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t children[MAX_CHILDREN];

static void registry_add(pid_t pid)
{
	pthread_mutex_lock(&children_lock);
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == 0) {
			children[i] = pid;
			break;
		}
	pthread_mutex_unlock(&children_lock);
}

static void registry_remove(pid_t pid)
{
	pthread_mutex_lock(&children_lock);
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
	pthread_mutex_unlock(&children_lock);
}

void children_kill_all(void)
{
	pthread_mutex_lock(&children_lock);
	for (size_t i = 0; i < MAX_CHILDREN; i++)
		if (children[i] != 0)
			kill(-children[i], SIGKILL);
	pthread_mutex_unlock(&children_lock);
}

int child_spawn(struct child *ch, char *const argv[], int in_fd, int out_fd, int fd3,
		char *const envp[])
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, defaults;
	pid_t pid;
	int rc;

	ch->pid = -1;
	ch->pidfd = -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	/* fds 0, 1 and 3 are set up explicitly; 2 is inherited (our log). */
	if (in_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (out_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (fd3 >= 0) {
		posix_spawn_file_actions_adddup2(&fa, fd3, 3);
		posix_spawn_file_actions_addclosefrom_np(&fa, 4);
	} else {
		posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	}
	sigemptyset(&none);
	sigfillset(&defaults);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
				 POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (rc != 0) {
		errno = rc;
		return -1;
	}
	ch->pid = pid;
	registry_add(pid);
	ch->pidfd = pidfd_open(pid, 0);
	if (ch->pidfd == -1) {
		/* Cannot happen for our own unreaped child; if it does, we
		 * still reap exactly this pid. */
		log_warn("pidfd_open(%ld)", (long)pid);
	} else {
		fcntl(ch->pidfd, F_SETFD, FD_CLOEXEC);
	}
	return 0;
}

static int fold_status(const siginfo_t *si)
{
	if (si->si_code == CLD_EXITED)
		return si->si_status;
	return 128 + si->si_status;
}

int child_wait(struct child *ch, uint64_t deadline_ms, int *status_r)
{
	siginfo_t si;
	int rc;

	if (ch->pid == -1)
		return -1;
	if (ch->pidfd != -1) {
		for (;;) {
			uint64_t now = mtime_ms();
			int timeout = now >= deadline_ms ? 0 :
				(int)(deadline_ms - now > 60000 ? 60000 : deadline_ms - now);
			struct pollfd p = { .fd = ch->pidfd, .events = POLLIN };

			rc = poll(&p, 1, timeout);
			if (rc == -1 && errno == EINTR)
				continue;
			if (rc == 0 && mtime_ms() < deadline_ms)
				continue;
			if (rc <= 0)
				return -1;
			break;
		}
		registry_remove(ch->pid);	/* exited, not yet reaped */
		memset(&si, 0, sizeof(si));
		do {
			rc = waitid(P_PIDFD, (id_t)ch->pidfd, &si, WEXITED);
		} while (rc == -1 && errno == EINTR);
	} else {
		registry_remove(ch->pid);
		memset(&si, 0, sizeof(si));
		do {
			rc = waitid(P_PID, (id_t)ch->pid, &si, WEXITED);
		} while (rc == -1 && errno == EINTR);
	}
	if (rc == -1)
		return -1;
	*status_r = fold_status(&si);
	if (ch->pidfd != -1)
		close(ch->pidfd);
	ch->pidfd = -1;
	ch->pid = -1;
	return 0;
}

bool child_exited(const struct child *ch)
{
	struct pollfd p = { .fd = ch->pidfd, .events = POLLIN };

	if (ch->pid == -1)
		return true;
	if (ch->pidfd == -1)
		return kill(ch->pid, 0) == -1 && errno == ESRCH;
	return poll(&p, 1, 0) == 1;
}

void child_kill(struct child *ch)
{
	int status;

	if (ch->pid == -1)
		return;
	/* The child leads its own process group (POSIX_SPAWN_SETSID). */
	if (kill(-ch->pid, SIGKILL) == -1 && errno != ESRCH)
		log_warn("kill(-%ld)", (long)ch->pid);
	kill(ch->pid, SIGKILL);
	/* SIGKILL is not ignorable; reaping follows promptly.  Bound it anyway
	 * (a child stuck in the kernel) and leave a note if it is not gone. */
	if (child_wait(ch, mtime_ms() + 5000, &status) == -1) {
		log_warnx("helper pid %ld did not exit after SIGKILL", (long)ch->pid);
		if (ch->pidfd != -1)
			close(ch->pidfd);
		ch->pidfd = -1;
		ch->pid = -1;
	}
}
