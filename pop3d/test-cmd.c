/*
 * test-cmd.c - the POP3 command tokenizer, CAPA, and the master's decoder
 * of front-end messages (ipc.c), alone.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/config.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/sock.h"
#include "pop3d/pop3d.h"
#include "tests/unit.h"

static void test_parse(void)
{
	struct pop3_cmd c;
	char l1[] = "user alice", l2[] = "QUIT", l3[] = "pass with spaces ok",
	     l4[] = "", l5[] = "RETRX 1", l6[] = "tOp 1 2", l7[] = " STAT";

	pop3_cmd_parse(l1, &c);
	CHECK_INT(c.id, CMD_USER);
	CHECK_STR(c.arg, "alice");
	pop3_cmd_parse(l2, &c);
	CHECK_INT(c.id, CMD_QUIT);
	CHECK(c.arg == NULL);
	pop3_cmd_parse(l3, &c);
	CHECK_INT(c.id, CMD_PASS);
	CHECK_STR(c.arg, "with spaces ok");
	pop3_cmd_parse(l4, &c);
	CHECK_INT(c.id, CMD_UNKNOWN);
	pop3_cmd_parse(l5, &c);
	CHECK_INT(c.id, CMD_UNKNOWN);
	pop3_cmd_parse(l6, &c);
	CHECK_INT(c.id, CMD_TOP);
	CHECK_STR(c.name, "TOP");
	pop3_cmd_parse(l7, &c);
	CHECK_INT(c.id, CMD_UNKNOWN);
}

static void test_split_and_numbers(void)
{
	char s1[] = "1 2", s2[] = "1", s3[] = "1 2 3", s4[] = "  ", s5[] = "1  2  ";
	char *a, *b;
	unsigned n;

	CHECK_INT(pop3_cmd_split2(s1, &a, &b), 2);
	CHECK_STR(a, "1");
	CHECK_STR(b, "2");
	CHECK_INT(pop3_cmd_split2(s2, &a, &b), 1);
	CHECK(b == NULL);
	CHECK_INT(pop3_cmd_split2(s3, &a, &b), -1);
	CHECK_INT(pop3_cmd_split2(s4, &a, &b), 0);
	CHECK_INT(pop3_cmd_split2(NULL, &a, &b), 0);
	CHECK_INT(pop3_cmd_split2(s5, &a, &b), 2);
	CHECK_STR(b, "2");
	CHECK_INT(pop3_cmd_msgnum("3", 3, &n), 0);
	CHECK_INT(n, 3);
	CHECK_INT(pop3_cmd_msgnum("4", 3, &n), -1);
	CHECK_INT(pop3_cmd_msgnum("0", 3, &n), -1);
	CHECK_INT(pop3_cmd_msgnum("-1", 3, &n), -1);
	CHECK_INT(pop3_cmd_msgnum("+1", 3, &n), -1);
	CHECK_INT(pop3_cmd_msgnum("1x", 3, &n), -1);
	CHECK_INT(pop3_cmd_msgnum("99999999999999999999", 3, &n), -1);
	CHECK_INT(pop3_cmd_msgnum("1", 0, &n), -1);
}

static void test_top_lines(void)
{
	long l;

	CHECK_INT(pop3_cmd_lines("0", &l), 0);
	CHECK_INT(l, 0);
	CHECK_INT(pop3_cmd_lines("2147483647", &l), 0);
	CHECK_INT(l, 2147483647);
	CHECK_INT(pop3_cmd_lines("2147483648", &l), 0);
	CHECK(l >= 2147483648L);
	CHECK_INT(pop3_cmd_lines("18446744073709551615", &l), 0);
	CHECK(l == LONG_MAX);
	CHECK_INT(pop3_cmd_lines("999999999999999999999999999999999999", &l), 0);
	CHECK(l == LONG_MAX);
	CHECK_INT(pop3_cmd_lines("", &l), -1);
	CHECK_INT(pop3_cmd_lines("-1", &l), -1);
	CHECK_INT(pop3_cmd_lines("+1", &l), -1);
	CHECK_INT(pop3_cmd_lines("1 ", &l), -1);
	CHECK_INT(pop3_cmd_lines("0x10", &l), -1);
	CHECK_INT(pop3_cmd_lines(NULL, &l), -1);
}

static char *capa(const struct config *conf, unsigned flags)
{
	struct evbuffer *b = evbuffer_new();
	size_t n;
	char *s;

	pop3_capa(b, conf, flags, NULL);
	n = evbuffer_get_length(b);
	s = xmalloc(n + 1);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	evbuffer_free(b);
	return s;
}

static void test_capa(void)
{
	struct config conf;
	char *s;

	memset(&conf, 0, sizeof(conf));
	conf.pop3d.user_command = true;
	s = capa(&conf, POP3_CAPA_LOGIN);
	CHECK(strstr(s, "\r\nUSER\r\n") != NULL);
	CHECK(strstr(s, "\r\nSASL PLAIN\r\n") != NULL);
	CHECK(strstr(s, "LOGIN-DELAY") == NULL);
	CHECK(strstr(s, "STLS") == NULL);
	free(s);
	/* require-tls before TLS: STLS, and no way to log in */
	s = capa(&conf, POP3_CAPA_STLS);
	CHECK(strstr(s, "\r\nSTLS\r\n") != NULL);
	CHECK(strstr(s, "USER") == NULL);
	CHECK(strstr(s, "SASL") == NULL);
	CHECK(strstr(s, "\r\n.\r\n") != NULL);
	free(s);
	/* RFC 6856: LANG always; UTF8, with USER when USER may follow */
	s = capa(&conf, POP3_CAPA_LOGIN | POP3_CAPA_UTF8);
	CHECK(strstr(s, "\r\nLANG\r\n") != NULL);
	CHECK(strstr(s, "\r\nUTF8 USER\r\n") != NULL);
	free(s);
	s = capa(&conf, POP3_CAPA_STLS | POP3_CAPA_UTF8);
	CHECK(strstr(s, "\r\nUTF8\r\n") != NULL);
	free(s);
	s = capa(&conf, POP3_CAPA_LOGIN);
	CHECK(strstr(s, "UTF8") == NULL);
	CHECK(strstr(s, "\r\nLANG\r\n") != NULL);
	free(s);
	conf.pop3d.user_command = false;
	s = capa(&conf, POP3_CAPA_LOGIN | POP3_CAPA_UTF8);
	CHECK(strstr(s, "\r\nUTF8\r\n") != NULL);
	free(s);
	conf.pop3d.user_command = true;
	s = capa(&conf, POP3_CAPA_LOGIN | POP3_CAPA_STLS);
	CHECK(strstr(s, "\r\nSTLS\r\n") != NULL);
	CHECK(strstr(s, "\r\nUSER\r\n") != NULL);
	CHECK(strstr(s, "\r\n.\r\n") != NULL);
	free(s);
	conf.pop3d.login_delay = (char *)(uintptr_t)"900";
	conf.pop3d.expire = (char *)(uintptr_t)"NEVER";
	conf.pop3d.implementation = true;
	s = capa(&conf, 0);
	CHECK(strstr(s, "USER") == NULL);
	CHECK(strstr(s, "SASL") == NULL);
	CHECK(strstr(s, "\r\nTOP\r\n") != NULL);
	CHECK(strstr(s, "\r\nLOGIN-DELAY 900\r\n") != NULL);
	CHECK(strstr(s, "\r\nEXPIRE NEVER\r\n") != NULL);
	CHECK(strstr(s, "\r\nIMPLEMENTATION pop3d\r\n") != NULL);
	free(s);
}

/* Sends raw bytes (and maybe an fd) and returns what ipc_recv says. */
static int recv_raw(const void *data, size_t len, bool with_fd)
{
	static struct ipc_msg m;
	int sv[2], fd, r;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == -1)
		return -99;
	send(sv[0], data, len, 0);
	if (with_fd) {
		/* resend with a descriptor attached */
		struct ipc_msg dummy;
		int tmp;
		ipc_recv(sv[1], &dummy, &tmp);
		if (tmp != -1)
			close(tmp);
		sock_send_fd(sv[0], 0, data, len);
	}
	r = ipc_recv(sv[1], &m, &fd);
	if (fd != -1)
		close(fd);
	close(sv[0]);
	close(sv[1]);
	return r;
}

static void test_ipc_decoder(void)
{
	struct ipc_msg m;
	int sv[2], fd;

	memset(&m, 0, sizeof(m));
	m.type = IPC_HANDOFF;
	m.conn_id = 7;
	snprintf(m.method, sizeof(m.method), "USER");
	memset(m.ticket, 'a', IPC_TICKET_LEN);
	m.data_len = 3;
	memcpy(m.data, "abc", 3);
	/* a good handoff, with its descriptor */
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), 1);
	/* without descriptor */
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, false), -1);
	/* data_len lies */
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 2, true), -1);
	m.data_len = POP3D_HANDOFF_MAX_DATA + 1;
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), -1);
	m.data_len = 3;
	/* unterminated ticket, bad ticket characters, bad method */
	m.ticket[IPC_TICKET_LEN] = 'a';
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), -1);
	m.ticket[IPC_TICKET_LEN] = '\0';
	m.ticket[0] = 'z';
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), -1);
	m.ticket[0] = 'a';
	snprintf(m.method, sizeof(m.method), "APOP");
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), -1);
	snprintf(m.method, sizeof(m.method), "PLAIN");
	/* secured: a protocol/cipher is due, and only then; no tls_port */
	m.secured = 1;
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), -1);
	snprintf(m.tls_info, sizeof(m.tls_info), "TLSv1.3/TLS_AES_256_GCM_SHA384");
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), 1);
	m.secured = 2;
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), -1);
	m.secured = 0;
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), -1);
	m.secured = 1;
	m.tls_info[3] = ' ';
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), -1);
	memset(m.tls_info, 'A', sizeof(m.tls_info));
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), -1);
	snprintf(m.tls_info, sizeof(m.tls_info), "TLSv1.2/ECDHE-RSA-AES128-GCM-SHA256");
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), 1);
	m.tls_port = 1;
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + 3, true), -1);
	m.tls_port = 0;
	/* NEWCONN: tls_port is a flag */
	{
		struct ipc_msg n;
		memset(&n, 0, sizeof(n));
		n.type = IPC_NEWCONN;
		n.tls_port = 1;
		CHECK_INT(recv_raw(&n, IPC_HEADER_LEN, true), 1);
		n.tls_port = 2;
		CHECK_INT(recv_raw(&n, IPC_HEADER_LEN, true), -1);
		n.tls_port = 0;
		n.secured = 1;
		CHECK_INT(recv_raw(&n, IPC_HEADER_LEN, true), -1);
	}
	/* short header, unknown type, CLOSED with a descriptor */
	CHECK_INT(recv_raw(&m, 4, false), -1);
	memset(&m, 0, sizeof(m));
	m.type = 99;
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN, false), -1);
	m.type = IPC_CLOSED;
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN, false), 1);
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN, true), -1);
	/* ipc_chan_send and ipc_recv agree */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0) {
		struct event_base *base = event_base_new();
		struct ipc_chan *ch;
		struct ipc_msg r;
		CHECK(base != NULL);
		ch = ipc_chan_new(base, sv[0], 4);
		m.type = IPC_RETIRE;
		CHECK_INT(ipc_chan_send(ch, &m, -1), 0);
		CHECK_INT(ipc_recv(sv[1], &r, &fd), 1);
		CHECK_INT(r.type, IPC_RETIRE);
		ipc_chan_free(&ch);
		CHECK(ch == NULL);
		event_base_free(base);
		close(sv[0]);
		CHECK_INT(ipc_recv(sv[1], &r, &fd), 0);
		close(sv[1]);
	}
}

/* IPC_STATS: exactly one struct fe_stats, no descriptor. */
static void test_ipc_stats(void)
{
	struct ipc_msg m;

	memset(&m, 0, sizeof(m));
	m.type = IPC_STATS;
	m.data_len = sizeof(struct fe_stats);
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + sizeof(struct fe_stats), false), 1);
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + sizeof(struct fe_stats), true), -1);
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + sizeof(struct fe_stats) - 1, false), -1);
	m.data_len = sizeof(struct fe_stats) - 8;
	CHECK_INT(recv_raw(&m, IPC_HEADER_LEN + sizeof(struct fe_stats) - 8, false), -1);
}

/* Command names for logs and metrics. */
static void test_cmd_names(void)
{
	CHECK_STR(pop3_cmd_name(CMD_RETR), "RETR");
	CHECK_STR(pop3_cmd_name(CMD_UNKNOWN), "unknown");
	for (unsigned i = 1; i < POP3D_NCMDS; i++)
		CHECK(strcmp(pop3_cmd_name((enum pop3_cmd_id)i), "unknown") != 0);
}

int main(void)
{
	UNIT_RUN(test_cmd_names);
	log_init("test-cmd", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	UNIT_RUN(test_ipc_stats);
	UNIT_RUN(test_parse);
	UNIT_RUN(test_split_and_numbers);
	UNIT_RUN(test_top_lines);
	UNIT_RUN(test_capa);
	UNIT_RUN(test_ipc_decoder);
	return unit_finish();
}
