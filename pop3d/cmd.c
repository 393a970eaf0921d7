/*
 * cmd.c - the POP3 command tokenizer and the CAPA list, shared by the
 * front end (AUTHORIZATION; as login-user in login-chroot) and the session
 * (TRANSACTION; as the mailbox owner).  The master, as root, uses only
 * pop3_cmd_name (metric labels); it parses no command.
 *
 * RFC 1939 section 3: a keyword of 3-4 printable characters, then
 * arguments separated by single spaces.  We accept the keyword in any
 * case and keep the rest of the line whole (a password may contain
 * spaces); each command parses its own arguments strictly.
 */
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "common/config.h"
#include "common/num.h"
#include "pop3d/pop3d.h"

static const struct {
	const char *name;
	enum pop3_cmd_id id;
} commands[] = {
	{ "USER", CMD_USER }, { "PASS", CMD_PASS }, { "AUTH", CMD_AUTH },
	{ "APOP", CMD_APOP }, { "CAPA", CMD_CAPA }, { "QUIT", CMD_QUIT },
	{ "NOOP", CMD_NOOP }, { "STAT", CMD_STAT }, { "LIST", CMD_LIST },
	{ "UIDL", CMD_UIDL }, { "RETR", CMD_RETR }, { "TOP", CMD_TOP },
	{ "DELE", CMD_DELE }, { "RSET", CMD_RSET }, { "LAST", CMD_LAST },
	{ "STLS", CMD_STLS }, { "LANG", CMD_LANG }, { "UTF8", CMD_UTF8 },
};

const char *pop3_cmd_name(enum pop3_cmd_id id)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].id == id)
			return commands[i].name;
	return "unknown";
}

void pop3_cmd_parse(char *line, struct pop3_cmd *cmd)
{
	char *sp = strchr(line, ' ');
	size_t klen = sp != NULL ? (size_t)(sp - line) : strlen(line);

	cmd->id = CMD_UNKNOWN;
	cmd->name = "";
	cmd->arg = NULL;
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strlen(commands[i].name) == klen &&
		    strncasecmp(commands[i].name, line, klen) == 0) {
			cmd->id = commands[i].id;
			cmd->name = commands[i].name;
			break;
		}
	}
	if (sp != NULL)
		cmd->arg = sp + 1;
}

int pop3_cmd_msgnum(const char *s, unsigned max, unsigned *num_r)
{
	if (s == NULL || max == 0)
		return -1;
	return num_parse_uint(s, 1, max, num_r);
}

int pop3_cmd_lines(const char *s, long *lines_r)
{
	uint64_t v;
	size_t n;

	if (s == NULL)
		return -1;
	n = strspn(s, "0123456789");
	if (n == 0 || s[n] != '\0')
		return -1;
	/* RFC 1939 section 7: any non-negative number.  One past what a
	 * message can hold is the same as all of it: a number too big for
	 * 64 bits, or above LONG_MAX, asks for every line. */
	if (num_parse_u64(s, 0, UINT64_MAX, &v) == -1 || v > (uint64_t)LONG_MAX)
		v = (uint64_t)LONG_MAX;
	*lines_r = (long)v;
	return 0;
}

int pop3_cmd_split2(char *s, char **a_r, char **b_r)
{
	char *p;

	*a_r = *b_r = NULL;
	if (s == NULL)
		return 0;
	while (*s == ' ')
		s++;
	if (*s == '\0')
		return 0;
	*a_r = s;
	p = strchr(s, ' ');
	if (p == NULL)
		return 1;
	*p++ = '\0';
	while (*p == ' ')
		p++;
	if (*p == '\0')
		return 1;
	*b_r = p;
	p = strchr(p, ' ');
	if (p != NULL) {
		char *q = p;
		while (*q == ' ')
			q++;
		if (*q != '\0')
			return -1;
		*p = '\0';
	}
	return 2;
}

void pop3_capa(struct evbuffer *out, const struct config *conf, unsigned flags,
	       const struct lang *l)
{
	evbuffer_add_printf(out, "+OK %s\r\n", lang_tr(l, "Capability list follows"));
	evbuffer_add_printf(out, "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n"
			    "LANG\r\n");
	/* RFC 6856 section 2: "USER" when UTF-8 names and passwords may
	 * follow in USER and PASS; offered before the login only. */
	if (flags & POP3_CAPA_UTF8)
		evbuffer_add_printf(out, "UTF8%s\r\n", (flags & POP3_CAPA_LOGIN) &&
				    conf->pop3d.user_command ? " USER" : "");
	if (flags & POP3_CAPA_LOGIN) {
		if (conf->pop3d.user_command)
			evbuffer_add_printf(out, "USER\r\n");
		evbuffer_add_printf(out, "SASL PLAIN\r\n");
	}
	if (flags & POP3_CAPA_STLS)
		evbuffer_add_printf(out, "STLS\r\n");
	if (conf->pop3d.login_delay != NULL && conf->pop3d.login_delay[0] != '\0')
		evbuffer_add_printf(out, "LOGIN-DELAY %s\r\n", conf->pop3d.login_delay);
	if (conf->pop3d.expire != NULL && conf->pop3d.expire[0] != '\0')
		evbuffer_add_printf(out, "EXPIRE %s\r\n", conf->pop3d.expire);
	if (conf->pop3d.implementation)
		evbuffer_add_printf(out, "IMPLEMENTATION pop3d\r\n");
	evbuffer_add_printf(out, ".\r\n");
}
