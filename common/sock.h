/*
 * sock.h - socket helpers.  Every descriptor is created close-on-exec.
 */
#ifndef COMMON_SOCK_H
#define COMMON_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Creates a listening UNIX stream socket at path (an old socket file there
 * is replaced), non-blocking, with the given mode.  Returns fd or -1
 * (errno set; the caller logs). */
int sock_unix_listen(const char *path, mode_t mode);
/* Connects to a UNIX stream socket; blocking unless nonblock.  Returns fd
 * or -1 with errno set.  A non-blocking connect may return an fd whose
 * connection is still in progress (errno EINPROGRESS is not an error). */
int sock_unix_connect(const char *path, bool nonblock);

/* Parses "ADDR:PORT", "[V6ADDR]:PORT" or "*:PORT" into ss.  Returns 0/-1. */
int sock_parse_addrport(const char *s, struct sockaddr_storage *ss, socklen_t *len_r);
/* Creates a listening TCP socket (SO_REUSEADDR, IPV6_V6ONLY, non-blocking).
 * Returns fd or -1 with errno set. */
int sock_tcp_listen(const struct sockaddr_storage *ss, socklen_t len, int backlog);
/* sock_parse_addrport() and sock_tcp_listen(): a listening TCP socket on
 * "ADDR:PORT" (already checked by config.c).  Returns fd or -1 (errno). */
int sock_tcp_listen_str(const char *addrport, int backlog);

/* Formats an address as "ip" (ip only) into buf; port into *port_r if
 * non-NULL.  Returns buf. */
const char *sock_addr_str(const struct sockaddr *sa, char *buf, size_t size,
			  unsigned *port_r);

int sock_set_nonblock(int fd, bool on);
/* SO_PEERCRED of a UNIX socket peer.  Returns 0/-1. */
int sock_peer_cred(int fd, pid_t *pid_r, uid_t *uid_r, gid_t *gid_r);

/* Sends data (len >= 1) and, if fd >= 0, the descriptor fd with it
 * (SCM_RIGHTS) over a UNIX socket.  Blocking; returns 0 or -1. */
int sock_send_fd(int sock, int fd, const void *data, size_t len);
/* Receives up to size bytes and at most one descriptor (close-on-exec).
 * *fd_r is -1 if none came.  Returns bytes read, 0 on EOF, -1 on error;
 * extra descriptors (a hostile peer) are closed and the call fails. */
ssize_t sock_recv_fd(int sock, void *buf, size_t size, int *fd_r);

#endif
