/*
 * sock.c - socket helpers (see sock.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/num.h"
#include "common/sock.h"

int sock_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl == -1)
		return -1;
	fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	return fcntl(fd, F_SETFL, fl);
}

static int unix_addr(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(sun->sun_path, path, strlen(path) + 1);
	return 0;
}

int sock_unix_listen(const char *path, mode_t mode)
{
	struct sockaddr_un sun;
	struct stat st;
	mode_t old;
	int fd, saved;

	if (unix_addr(path, &sun) == -1)
		return -1;
	/* Replace a stale socket, but never unlink anything that is not one. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			errno = EEXIST;
			return -1;
		}
		if (unlink(path) == -1)
			return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		return -1;
	/* Create it with no permissions for others from the first instant. */
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		umask(old);
		goto out_close;
	}
	umask(old);
	if (chmod(path, mode) == -1 || listen(fd, 512) == -1)
		goto out_close;
	return fd;
out_close:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

int sock_unix_connect(const char *path, bool nonblock)
{
	struct sockaddr_un sun;
	int fd, saved;

	if (unix_addr(path, &sun) == -1)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd == -1)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 && errno != EINPROGRESS) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

int sock_parse_addrport(const char *s, struct sockaddr_storage *ss, socklen_t *len_r)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *hs, *he;
	unsigned port;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		he = strchr(s, ']');
		if (he == NULL || he[1] != ':')
			return -1;
		hs = s + 1;
		colon = he + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return -1;
		hs = s;
		he = colon;
		if (memchr(hs, ':', (size_t)(he - hs)) != NULL)
			return -1;	/* bare IPv6 needs brackets */
	}
	if ((size_t)(he - hs) >= sizeof(host) || he == hs)
		return -1;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	if (num_parse_uint(colon + 1, 1, 65535, &port) == -1)
		return -1;

	if (s[0] == '[') {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*len_r = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		if (strcmp(host, "*") == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*len_r = sizeof(*sin);
	}
	return 0;
}

int sock_tcp_listen(const struct sockaddr_storage *ss, socklen_t len, int backlog)
{
	int fd, one = 1, saved;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		goto out_close;
	if (ss->ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == -1)
		goto out_close;
	if (bind(fd, (const struct sockaddr *)ss, len) == -1 || listen(fd, backlog) == -1)
		goto out_close;
	return fd;
out_close:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

int sock_tcp_listen_str(const char *addrport, int backlog)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (sock_parse_addrport(addrport, &ss, &len) == -1) {
		errno = EINVAL;
		return -1;
	}
	return sock_tcp_listen(&ss, len, backlog);
}

const char *sock_addr_str(const struct sockaddr *sa, char *buf, size_t size, unsigned *port_r)
{
	if (port_r != NULL)
		*port_r = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		if (inet_ntop(AF_INET, &sin->sin_addr, buf, (socklen_t)size) == NULL)
			snprintf(buf, size, "?");
		if (port_r != NULL)
			*port_r = ntohs(sin->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		if (inet_ntop(AF_INET6, &sin6->sin6_addr, buf, (socklen_t)size) == NULL)
			snprintf(buf, size, "?");
		if (port_r != NULL)
			*port_r = ntohs(sin6->sin6_port);
	} else {
		snprintf(buf, size, "local");
	}
	return buf;
}

int sock_peer_cred(int fd, pid_t *pid_r, uid_t *uid_r, gid_t *gid_r)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) == -1)
		return -1;
	if (pid_r != NULL)
		*pid_r = uc.pid;
	if (uid_r != NULL)
		*uid_r = uc.uid;
	if (gid_r != NULL)
		*gid_r = uc.gid;
	return 0;
}

int sock_send_fd(int sock, int fd, const void *data, size_t len)
{
	struct msghdr msg;
	struct iovec iov;
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} cmsg;
	ssize_t n;

	memset(&msg, 0, sizeof(msg));
	iov.iov_base = (void *)(uintptr_t)data;
	iov.iov_len = len;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd >= 0) {
		memset(&cmsg, 0, sizeof(cmsg));
		msg.msg_control = cmsg.buf;
		msg.msg_controllen = sizeof(cmsg.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	do {
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	if ((size_t)n != len) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

ssize_t sock_recv_fd(int sock, void *buf, size_t size, int *fd_r)
{
	struct msghdr msg;
	struct iovec iov;
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} cmsg;
	ssize_t n;
	int bad = 0;

	*fd_r = -1;
	memset(&msg, 0, sizeof(msg));
	iov.iov_base = buf;
	iov.iov_len = size;
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cmsg.buf;
	msg.msg_controllen = sizeof(cmsg.buf);
	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfds; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (*fd_r == -1)
				*fd_r = fd;
			else {
				close(fd);
				bad = 1;
			}
		}
	}
	if (bad || (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) {
		if (*fd_r != -1)
			close(*fd_r);
		*fd_r = -1;
		errno = EPROTO;
		return -1;
	}
	return n;
}
