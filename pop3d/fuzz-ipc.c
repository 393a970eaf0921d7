/*
 * fuzz-ipc.c - libFuzzer harness for every decoder in pop3d/ipc.c: the
 * master's decoder of front-end messages (ipc_recv), a session's decoder
 * of the logins the master hands it (session_job_recv), the master's
 * decoders of what session processes write (ipc_report_recv and
 * ipc_report_decode, ipc_spare_recv and ipc_spare_decode), and the POP3
 * command tokenizer (pop3d/cmd.c).
 *
 * Input: byte 0 bit 0 says whether a descriptor goes with the datagram,
 * bits 1-2 which decoder reads it (0 ipc_recv, 1 session_job_recv, 2
 * ipc_report_recv, 3 ipc_spare_recv); the rest is sent as one
 * SOCK_SEQPACKET datagram and decoded, and given to the pure decoders
 * (ipc_report_decode, ipc_spare_decode) as is; the same bytes, cut at the
 * first NUL/CR/LF and at 255, are tokenized as a command.
 * Checks: an accepted message has a known type, consistent lengths and
 * terminated strings; a client address (IPC_PROXY_ADDR) has one encoding
 * only, a verdict a known value; a descriptor is returned only where one is due; a
 * key ring (IPC_TICKET_KEYS) has two distinct key names or one key; an
 * accepted report is exactly one struct with a known end and kind, sent by
 * this process (its credentials), never with a descriptor; a spare word is
 * exactly SESSION_SPARE.  The socket decoders agree with the pure ones.
 *
 * Build (clang-14): clang-14 -g -O1 -fsanitize=fuzzer,address,undefined
 *   -D_GNU_SOURCE -I. pop3d/fuzz-ipc.c pop3d/ipc.c pop3d/cmd.c common/sock.c
 *   common/num.c common/log.c $(pkg-config --cflags --libs libevent)
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/sock.h"
#include "pop3d/pop3d.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void tokenize(const uint8_t *data, size_t size)
{
	char line[POP3_MAX_COMMAND + 1], *a, *b;
	struct pop3_cmd cmd;
	size_t n = 0;
	unsigned num;

	while (n < size && n < POP3_MAX_COMMAND && data[n] != '\0' && data[n] != '\r' &&
	       data[n] != '\n')
		n++;
	memcpy(line, data, n);
	line[n] = '\0';
	pop3_cmd_parse(line, &cmd);
	if (cmd.arg != NULL && (cmd.arg < line || cmd.arg > line + n))
		abort();
	if (pop3_cmd_split2(cmd.arg, &a, &b) == 2 && (a == NULL || b == NULL))
		abort();
	if (a != NULL && pop3_cmd_msgnum(a, 1000, &num) == 0 && (num < 1 || num > 1000))
		abort();
}

/* A language field that passed a decoder: terminated, "" or a tag of
 * letters, digits and "-" that lang_find turns into a language. */
static bool lang_ok(const char *s, size_t size)
{
	if (memchr(s, '\0', size) == NULL)
		return false;
	if (s[0] == '\0')
		return true;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") ==
	       strlen(s) && strlen(s) <= LANG_TAG_MAX && lang_find(s) != NULL;
}

static void check_job(int sock)
{
	static struct session_job j;
	int fd = -1;

	if (session_job_recv(sock, &j, &fd) == 1) {
		if (fd == -1 || j.data_len > POP3D_HANDOFF_MAX_DATA || j.user[0] == '\0' ||
		    (strcmp(j.method, "USER") != 0 && strcmp(j.method, "PLAIN") != 0) ||
		    memchr(j.user, '\0', sizeof(j.user)) == NULL ||
		    memchr(j.home, '\0', sizeof(j.home)) == NULL ||
		    memchr(j.maildrop, '\0', sizeof(j.maildrop)) == NULL ||
		    memchr(j.rip, '\0', sizeof(j.rip)) == NULL ||
		    memchr(j.tls_info, '\0', sizeof(j.tls_info)) == NULL ||
		    j.secured > 1 || (j.secured == 1) != (j.tls_info[0] != '\0') ||
		    !lang_ok(j.lang, sizeof(j.lang)))
			abort();
	} else if (fd != -1) {
		abort();
	}
	if (fd != -1)
		close(fd);
}

static void check_report_bytes(const uint8_t *data, size_t size)
{
	struct session_report r;
	uint32_t w;

	if (ipc_report_decode(data, size, &r) == 0) {
		if (size != sizeof(r) || r.end >= SESSION_END_COUNT ||
		    (r.kind != SESSION_REPORT_END && r.kind != SESSION_REPORT_OPENED &&
		     r.kind != SESSION_REPORT_OPENED_WARM) ||
		    memcmp(&r, data, sizeof(r)) != 0)
			abort();
		/* the OPENED words carry nothing else */
		if (r.kind != SESSION_REPORT_END && (r.end != 0 || r.retr != 0 || r.bytes_sent != 0))
			abort();
	}
	if (ipc_spare_decode(data, size)) {
		memcpy(&w, data, sizeof(w));
		if (size != sizeof(w) || w != SESSION_SPARE)
			abort();
	}
}

/* The socket decoders: what they accept, the pure ones accept too. */
static void check_session_msgs(int sock, int kind, bool with_fd, const uint8_t *data,
			       size_t size)
{
	struct session_report r;
	pid_t pid;

	if (kind == 2) {
		/* SO_PASSCRED was set on sock before the send */
		if (ipc_report_recv(sock, &r, &pid) == 1) {
			struct session_report again;
			if (with_fd || pid != getpid() ||
			    ipc_report_decode(data, size, &again) != 0 ||
			    memcmp(&r, &again, sizeof(r)) != 0)
				abort();
		}
	} else if (ipc_spare_recv(sock) == 1) {
		if (with_fd || !ipc_spare_decode(data, size))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ipc_msg m;
	int sv[2], fd = -1, r;

	if (size < 1 || size > sizeof(struct session_job) + 16)
		return 0;
	tokenize(data + 1, size - 1);
	check_report_bytes(data + 1, size - 1);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == -1)
		return 0;
	if ((data[0] >> 1 & 3) >= 2)
		setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &(int){ 1 }, sizeof(int));
	if (size > 1)
		sock_send_fd(sv[0], (data[0] & 1) ? sv[0] : -1, data + 1, size - 1);
	else
		close(sv[0]), sv[0] = -1;
	if ((data[0] >> 1 & 3) == 1) {
		check_job(sv[1]);
		r = 0;
	} else if ((data[0] >> 1 & 3) >= 2) {
		sock_set_nonblock(sv[1], true);
		check_session_msgs(sv[1], data[0] >> 1 & 3, (data[0] & 1) != 0 && size > 1,
				   data + 1, size - 1);
		r = 0;
	} else {
		r = ipc_recv(sv[1], &m, &fd);
	}
	if (r == 1) {
		switch (m.type) {
		case IPC_HANDOFF:
			if (fd == -1 || m.data_len > POP3D_HANDOFF_MAX_DATA ||
			    memchr(m.ticket, '\0', sizeof(m.ticket)) == NULL ||
			    memchr(m.method, '\0', sizeof(m.method)) == NULL ||
			    memchr(m.tls_info, '\0', sizeof(m.tls_info)) == NULL ||
			    m.secured > 1 || (m.secured == 1) != (m.tls_info[0] != '\0') ||
			    strpbrk(m.tls_info, " \t\r\n") != NULL || !lang_ok(m.lang, sizeof(m.lang)))
				abort();
			break;
		case IPC_NEWCONN:
			if (fd == -1 || m.tls_port > 1 || m.proxy > 1)
				abort();
			break;
		case IPC_PROXY_ADDR: {
			struct ipc_proxy_addr a, again;
			struct sockaddr_storage ss;

			/* one encoding per address: decoding and encoding again
			 * gives the same bytes */
			memcpy(&a, m.data, sizeof(a));
			if (fd != -1 || m.data_len != sizeof(a) || a.port > 65535 ||
			    (a.family != AF_INET && a.family != AF_INET6))
				abort();
			ipc_proxy_addr_get(&a, &ss);
			if (ipc_proxy_addr_set(&again, (struct sockaddr *)&ss) != 0 ||
			    memcmp(&a, &again, sizeof(a)) != 0)
				abort();
			break;
		}
		case IPC_PROXY_VERDICT: {
			struct ipc_proxy_verdict v;

			memcpy(&v, m.data, sizeof(v));
			if (fd != -1 || m.data_len != sizeof(v) ||
			    (v.verdict != IPC_PROXY_OK && v.verdict != IPC_PROXY_PER_IP))
				abort();
			break;
		}
		case IPC_CLOSED:
		case IPC_RETIRE:
			if (fd != -1)
				abort();
			break;
		case IPC_STATS:
			if (fd != -1 || m.data_len != sizeof(struct fe_stats))
				abort();
			break;
		case IPC_TICKET_KEYS: {
			struct tls_ticket_keys k;

			memcpy(&k, m.data, sizeof(k));
			if (fd != -1 || m.data_len != sizeof(k) || k.has_prev > 1 ||
			    (k.has_prev && memcmp(k.cur.name, k.prev.name,
						  sizeof(k.cur.name)) == 0))
				abort();
			for (size_t i = 0; i < sizeof(k.zero); i++)
				if (k.zero[i] != 0)
					abort();
			break;
		}
		default:
			abort();
		}
	} else if (fd != -1) {
		abort();
	}
	if (fd != -1)
		close(fd);
	if (sv[0] != -1)
		close(sv[0]);
	close(sv[1]);
	return 0;
}
