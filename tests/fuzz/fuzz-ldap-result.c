/*
 * fuzz-ldap-result.c - libFuzzer harness for what authd/passdb_ldap.c does
 * with a directory's answers: ldap_verify() whole, from the search to the
 * job's result, through search_result() (entries, references, result
 * codes, diagnostics), read_fields() (the mapped attributes into the
 * userdb fields, the lock attribute), compare_check() (compare mode: the
 * password attribute's values) and bind_result() (bind mode: result
 * codes, Active Directory diagnostics, the password policy control).
 *
 * Only libldap makes an LDAPMessage, and only from a connection: so each
 * input gets two AF_UNIX socketpairs, one per connection of the worker
 * (service: the search; bind: the user's bind), wrapped by ldap_init_fd()
 * with the options handle_open() sets, and the directory's replies are
 * written into them before ldap_verify() runs: BER encoded here with
 * liblber's ber_printf from the input's description (message id 1, the
 * first request on a new handle), or the input's raw bytes.  Then the
 * harness's ends stop sending (EOF after the replies), so a reply libldap
 * cannot use ends the wait at once.  The connections are never opened by
 * passdb_ldap.c itself (tcp_connect, the StartTLS and service bind of
 * handle_open are not reached: they need a listening directory): each
 * worker connection is marked as backing off, so a dropped one is not
 * reopened within the input.
 *
 * Input: byte 0 flags: bit 0 compare mode, bit 1 the search reply is raw
 * bytes, bit 2 the bind reply is raw bytes, bit 3 the search reply carries
 * another message id, bit 4 the service connection is closed before the
 * request (lost), bit 5 the attribute map includes maildrop.  Then the
 * user name and the password (each a length byte and bytes), then the
 * search reply: a count of entries (0-3), each a DN and attributes (a
 * name, picked from the mapped ones or given, and 0-3 values with 16-bit
 * lengths), 0-2 references, and the result (code, matched DN, diagnostic,
 * with a referral for code 10); then the bind reply: code, diagnostic and
 * an optional password policy control (expire / grace warning, error, or
 * raw value).  A raw reply is a 16-bit length and bytes.  With
 * FUZZ_LDAP_VERBOSE set, the replies, the job's result and the log go to
 * stderr (to read what a seed does).
 * Properties checked:
 *   - OK only for exactly one entry with a success result, and in bind
 *     mode a successful bind that does not say changeAfterReset; in
 *     compare mode only when a value of the password attribute verifies
 *     the password (checked again here) and the entry has no
 *     pwdAccountLockedTime value; and then the userdb fields are those of
 *     the entry's first values (uid and gid the numbers given, home and
 *     maildrop the text);
 *   - two or more entries, or sizeLimitExceeded, never OK; a search that
 *     finds nothing is NOUSER, a failed search TEMPFAIL; invalidCredentials
 *     is FAIL (each unless a NUL in the result's diagnostic or matched DN,
 *     or in the entry's DN, made libldap refuse to read it: then
 *     TEMPFAIL);
 *   - TEMPFAIL carries a reason; no password in any log line (8-byte
 *     probes, looked for once the user name's renderings are blanked
 *     out, and unless the user name or the directory's replies hold half
 *     of it); no leak (ASan) with the replies built here.  With a raw
 *     reply, leaks are not checked: libldap 2.5 itself leaks the request
 *     it sent (about 4 KB) when the answer cannot be decoded; the seed
 *     libldap-leak-undecodable-answer is one (ldap_init_fd,
 *     ldap_search_ext, ldap_result and ldap_unbind_ext alone leak the
 *     same), so LSan is turned off around ldap_verify() for those
 *     inputs, or the fuzzer would stop at each one.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sanitizer/lsan_interface.h>

#include "authd/passdb_ldap.c"
#include "tests/fuzz/logcapture.h"
#include "tests/fuzz/pwcost.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* libldap's own tags of the password policy response (ppolicy.c) */
#define FZ_PP_WARNING	((ber_tag_t)0xa0)
#define FZ_PP_EXPIRE	((ber_tag_t)0x80)
#define FZ_PP_GRACE	((ber_tag_t)0x81)
#define FZ_PP_ERROR	((ber_tag_t)0x81)

#define FZ_MAX_ENTRIES	3
#define FZ_MAX_ATTRS	6
#define FZ_MAX_VALS	3

/* ---- the input ------------------------------------------------------------- */

struct rd {
	const uint8_t *p, *end;
};

static unsigned rd_u8(struct rd *r)
{
	return r->p < r->end ? *r->p++ : 0;
}

static unsigned rd_u16(struct rd *r)
{
	unsigned v = rd_u8(r);

	return v | rd_u8(r) << 8;
}

/* n bytes (at most what is left) at *p_r; returns n. */
static size_t rd_bytes(struct rd *r, size_t n, const uint8_t **p_r)
{
	if (n > (size_t)(r->end - r->p))
		n = (size_t)(r->end - r->p);
	*p_r = r->p;
	r->p += n;
	return n;
}

/* ---- what the fake directory says ------------------------------------------- */

struct fz_attr {
	const char *name;		/* NUL-terminated copy */
	size_t nvals;
	const uint8_t *val[FZ_MAX_VALS];
	size_t vlen[FZ_MAX_VALS];
};

struct fz_entry {
	const uint8_t *dn;
	size_t dnlen;
	size_t nattrs;
	struct fz_attr attrs[FZ_MAX_ATTRS];
};

static struct fz_entry entries[FZ_MAX_ENTRIES];
static size_t nentries;
static char names[FZ_MAX_ENTRIES][FZ_MAX_ATTRS][64];

static const char *const attr_names[] = {
	"uidNumber", "gidNumber", "homeDirectory", "mailMessageStore", "userPassword",
	LDAP_LOCK_ATTR, "UIDNUMBER", "cn",
};

static const int codes[] = {
	LDAP_SUCCESS, LDAP_NO_SUCH_OBJECT, LDAP_SIZELIMIT_EXCEEDED, LDAP_INVALID_CREDENTIALS,
	LDAP_UNWILLING_TO_PERFORM, LDAP_INAPPROPRIATE_AUTH, LDAP_CONSTRAINT_VIOLATION,
	LDAP_BUSY, LDAP_UNAVAILABLE, LDAP_TIMELIMIT_EXCEEDED, LDAP_REFERRAL,
	LDAP_INSUFFICIENT_ACCESS, LDAP_OTHER, LDAP_OPERATIONS_ERROR, LDAP_PROTOCOL_ERROR,
	LDAP_ADMINLIMIT_EXCEEDED,
};

static int pick_code(unsigned b)
{
	return b < 16 ? codes[b] : (int)b;
}

/* Everything the directory said in this input: a password it repeats
 * (in a DN, say) may be logged as its words, not as the password. */
static uint8_t said[65536 * 2];
static uint8_t said_logged[sizeof(said)];	/* as the log writes it */
static size_t nsaid;

static void said_add(const void *p, size_t n)
{
	if (n > sizeof(said) - nsaid)
		n = sizeof(said) - nsaid;
	memcpy(said + nsaid, p, n);
	/* log_safe() writes a control character as '?' */
	for (size_t i = 0; i < n; i++)
		said_logged[nsaid + i] = said[nsaid + i] < 0x20 || said[nsaid + i] == 0x7f ?
						 '?' : said[nsaid + i];
	nsaid += n;
}

/* Writes ber, flattened, into fd; frees it. */
static void send_ber(int fd, BerElement *ber)
{
	struct berval *bv = NULL;

	if (ber_flatten(ber, &bv) == -1)
		abort();
	if (getenv("FUZZ_LDAP_VERBOSE") != NULL) {
		fprintf(stderr, "reply:");
		for (size_t i = 0; i < bv->bv_len; i++)
			fprintf(stderr, " %02x", (unsigned char)bv->bv_val[i]);
		fprintf(stderr, "\n");
	}
	if (bv->bv_len > 0 && write(fd, bv->bv_val, bv->bv_len) != (ssize_t)bv->bv_len)
		abort();	/* far below the socket's buffer */
	said_add(bv->bv_val, bv->bv_len);
	ber_bvfree(bv);
	ber_free(ber, 1);
}

static BerElement *ber_new(void)
{
	BerElement *ber = ber_alloc_t(LBER_USE_DER);

	if (ber == NULL)
		abort();
	return ber;
}

#define BP(x) do { if ((x) == -1) abort(); } while (0)

/* The search reply (entries, references, done) from the input, into fd. */
/* The search result's matched DN or diagnostic holds a NUL: libldap may
 * refuse to read such a result (ldap_parse_result). */
static bool search_nul;

static int search_reply(struct rd *r, int fd, int msgid)
{
	int code;
	const uint8_t *m, *d;
	size_t mlen, dlen, nrefs;

	nentries = rd_u8(r) % (FZ_MAX_ENTRIES + 1);
	for (size_t e = 0; e < nentries; e++) {
		struct fz_entry *en = &entries[e];
		BerElement *ber = ber_new();

		en->dnlen = rd_bytes(r, rd_u8(r), &en->dn);
		en->nattrs = rd_u8(r) % (FZ_MAX_ATTRS + 1);
		BP(ber_printf(ber, "{it{o{", msgid, LDAP_RES_SEARCH_ENTRY, (const char *)en->dn,
			      (ber_len_t)en->dnlen));
		for (size_t a = 0; a < en->nattrs; a++) {
			struct fz_attr *at = &en->attrs[a];
			unsigned sel = rd_u8(r);

			if (sel < 0xf0) {
				at->name = attr_names[sel % (sizeof(attr_names) / sizeof(attr_names[0]))];
			} else {
				const uint8_t *p;
				size_t n = rd_bytes(r, rd_u8(r) % 63, &p);

				memcpy(names[e][a], p, n);
				names[e][a][n] = '\0';
				at->name = names[e][a];
			}
			at->nvals = rd_u8(r) % (FZ_MAX_VALS + 1);
			BP(ber_printf(ber, "{s[", at->name));
			for (size_t v = 0; v < at->nvals; v++) {
				at->vlen[v] = rd_bytes(r, rd_u16(r), &at->val[v]);
				BP(ber_printf(ber, "o", (const char *)at->val[v],
					      (ber_len_t)at->vlen[v]));
			}
			BP(ber_printf(ber, "]}"));
		}
		BP(ber_printf(ber, "}}}"));
		send_ber(fd, ber);
	}
	nrefs = rd_u8(r) % 3;
	for (size_t i = 0; i < nrefs; i++) {
		BerElement *ber = ber_new();
		const uint8_t *u;
		size_t ulen = rd_bytes(r, rd_u8(r), &u);

		BP(ber_printf(ber, "{it{o}}", msgid, LDAP_RES_SEARCH_REFERENCE, (const char *)u,
			      (ber_len_t)ulen));
		send_ber(fd, ber);
	}
	code = pick_code(rd_u8(r));
	mlen = rd_bytes(r, rd_u8(r), &m);
	dlen = rd_bytes(r, rd_u8(r), &d);
	search_nul = memchr(m, '\0', mlen) != NULL || memchr(d, '\0', dlen) != NULL;
	{
		BerElement *ber = ber_new();

		BP(ber_printf(ber, "{it{eoo", msgid, LDAP_RES_SEARCH_RESULT, (ber_int_t)code,
			      (const char *)m, (ber_len_t)mlen, (const char *)d, (ber_len_t)dlen));
		if (code == LDAP_REFERRAL)
			BP(ber_printf(ber, "t{s}", LDAP_TAG_REFERRAL, "ldap://elsewhere.example/"));
		BP(ber_printf(ber, "}}"));
		send_ber(fd, ber);
	}
	return code;
}

struct bind_said {
	int code;
	bool change_after_reset;
	bool nul;		/* a NUL in the diagnostic: libldap may refuse it */
};

/* The bind reply from the input, into fd. */
static struct bind_said bind_reply(struct rd *r, int fd)
{
	struct bind_said s = { pick_code(rd_u8(r)), false, false };
	const uint8_t *d;
	size_t dlen = rd_bytes(r, rd_u8(r), &d);

	s.nul = memchr(d, '\0', dlen) != NULL;
	unsigned pp = rd_u8(r);
	BerElement *ber = ber_new();

	BP(ber_printf(ber, "{it{eoo}", 1, LDAP_RES_BIND, (ber_int_t)s.code, "", (ber_len_t)0,
		      (const char *)d, (ber_len_t)dlen));
	if (pp != 0) {
		struct berval *val = NULL, raw;

		if (pp == 0xff) {
			const uint8_t *p;
			raw.bv_len = rd_bytes(r, rd_u8(r), &p);
			raw.bv_val = (char *)(uintptr_t)p;
		} else {
			BerElement *v = ber_new();
			unsigned err = rd_u8(r);
			ber_int_t num = (ber_int_t)rd_u16(r) - 100;

			BP(ber_printf(v, "{"));
			if (pp & 1)
				BP(ber_printf(v, "t{ti}", FZ_PP_WARNING, FZ_PP_EXPIRE, num));
			else if (pp & 2)
				BP(ber_printf(v, "t{ti}", FZ_PP_WARNING, FZ_PP_GRACE, num));
			if (pp & 4) {
				BP(ber_printf(v, "te", FZ_PP_ERROR, (ber_int_t)(err % 11)));
				s.change_after_reset = err % 11 == PP_changeAfterReset;
			}
			BP(ber_printf(v, "}"));
			if (ber_flatten(v, &val) == -1)
				abort();
			ber_free(v, 1);
			raw = *val;
		}
		BP(ber_printf(ber, "t{{sO}}", LDAP_TAG_CONTROLS,
			      LDAP_CONTROL_PASSWORDPOLICYRESPONSE, &raw));
		if (val != NULL)
			ber_bvfree(val);
	}
	BP(ber_printf(ber, "}"));
	send_ber(fd, ber);
	return s;
}

static void raw_reply(struct rd *r, int fd)
{
	const uint8_t *p;
	size_t n = rd_bytes(r, rd_u16(r), &p);

	if (n > 0 && write(fd, p, n) != (ssize_t)n)
		abort();
	said_add(p, n);
}

/* ---- set-up ------------------------------------------------------------------- */

static const char conf_fmt[] =
	"[authd]\n"
	"socket = /run/authd/auth\n"
	"master-socket = /run/authd/master\n"
	"[pop3d]\n"
	"listen = 127.0.0.1:110\n"
	"auth-socket = /run/authd/auth\n"
	"master-auth-socket = /run/authd/master\n"
	"[authenticator dir]\n"
	"type = ldap\n"
	"uris = ldap://127.0.0.1:1/\n"
	"base = ou=people,dc=example,dc=org\n"
	"mode = %s\n"
	"attributes = uid=uidNumber, gid=gidNumber, home=homeDirectory%s\n";

static struct authenticator auths[4];

static struct authenticator *auth_for(unsigned sel)
{
	char text[1024], err[512];
	struct config *conf;

	if (auths[sel].backend != NULL)
		return &auths[sel];
	snprintf(text, sizeof(text), conf_fmt, sel & 1 ? "compare" : "bind",
		 sel & 2 ? ", maildrop=mailMessageStore" : "");
	conf = config_load_buffer("/fuzz/authd.conf", (const uint8_t *)text, strlen(text), err,
				  sizeof(err));
	if (conf == NULL) {
		fprintf(stderr, "fuzz config: %s\n", err);
		abort();
	}
	auths[sel].conf = &conf->auths[0];
	if (ldap_init(&auths[sel], err, sizeof(err)) == -1) {
		fprintf(stderr, "fuzz ldap_init: %s\n", err);
		abort();
	}
	return &auths[sel];	/* conf lives as long as the process */
}

/* A libldap handle on one end of a new socketpair; the other end in
 * *peer_r. */
static LDAP *handle_on_pair(int *peer_r)
{
	int sv[2], v3 = LDAP_VERSION3;
	LDAP *ld;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		abort();
	if (ldap_init_fd(sv[0], LDAP_PROTO_TCP, "ldap://127.0.0.1:1/", &ld) != LDAP_SUCCESS)
		abort();
	if (ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3) != LDAP_OPT_SUCCESS ||
	    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF) != LDAP_OPT_SUCCESS ||
	    set_max_incoming(ld) == -1)
		abort();
	*peer_r = sv[1];
	return ld;
}

/* ---- checks ------------------------------------------------------------------- */

/* The first value of attribute name in e, or NULL (*len_r set). */
static const uint8_t *first_value(const struct fz_entry *e, const char *name, size_t *len_r)
{
	for (size_t a = 0; a < e->nattrs; a++)
		if (strcasecmp(e->attrs[a].name, name) == 0) {
			if (e->attrs[a].nvals == 0)
				return NULL;
			*len_r = e->attrs[a].vlen[0];
			return e->attrs[a].val[0];
		}
	return NULL;
}

static bool has_value(const struct fz_entry *e, const char *name)
{
	size_t n;

	return first_value(e, name, &n) != NULL;
}

/* Would compare mode's check match password against a value of e's
 * userPassword?  Values too costly to hash make the input uninteresting
 * (*skip_r). */
static bool compare_would_match(const struct fz_entry *e, const char *password, bool *skip_r)
{
	for (size_t a = 0; a < e->nattrs; a++) {
		if (strcasecmp(e->attrs[a].name, "userPassword") != 0)
			continue;
		for (size_t v = 0; v < e->attrs[a].nvals; v++) {
			char *h;

			if (e->attrs[a].vlen[v] == 0 || e->attrs[a].vlen[v] > LDAP_MAX_HASH ||
			    memchr(e->attrs[a].val[v], '\0', e->attrs[a].vlen[v]) != NULL)
				continue;
			h = xstrndup((const char *)e->attrs[a].val[v], e->attrs[a].vlen[v]);
			if (!pwcost_cheap(h))
				*skip_r = true;
			else if (password_scheme_known(h) && password_verify(h, password) == PW_MATCH) {
				free(h);
				return true;
			}
			free(h);
		}
		/* libldap merges nothing: only the first such attribute counts */
		return false;
	}
	return false;
}

static void check_field(const struct fz_entry *e, const char *attr, const char *got,
			bool has, uint32_t num, bool numeric)
{
	size_t n;
	const uint8_t *v = first_value(e, attr, &n);

	if (v == NULL) {
		if (numeric ? has : got[0] != '\0')
			abort();	/* a field the entry did not have */
		return;
	}
	if (numeric) {
		/* the number given (num.c's strict reading: digits only) */
		uint64_t x = 0;

		if (!has || n == 0)
			abort();
		for (size_t i = 0; i < n; i++) {
			if (v[i] < '0' || v[i] > '9')
				abort();
			x = x * 10 + (v[i] - '0');
			if (x > UINT32_MAX)
				abort();
		}
		if (x != num)
			abort();
	} else if (strlen(got) != n || memcmp(got, v, n) != 0) {
		abort();
	}
}

/* Overwrites every occurrence of what in text with 0x01 bytes. */
static void blank_out(char *text, const char *what)
{
	size_t n = strlen(what);
	char *p = text;

	if (n == 0)
		return;
	while ((p = strstr(p, what)) != NULL) {
		memset(p, 0x01, n);
		p += n;
	}
}

/* Could the 4 bytes at p come from the directory's replies or the user
 * name (logged, next to fixed text: a probe may straddle both)? */
static bool from_elsewhere(const char *p, const struct job *job)
{
	return memmem(said, nsaid, p, 4) != NULL || memmem(said_logged, nsaid, p, 4) != NULL ||
	       memmem(job->user, strlen(job->user), p, 4) != NULL;
}

/* No 8-byte piece of the password in the log (pieces with a byte no
 * fixed text has: fuzz-authd-client.c), once the renderings of the user
 * name the log may hold (as a log token, inside the logged filter) are
 * blanked out; a piece whose first or last half the directory said too
 * (a DN, a diagnostic are logged) or the raw user name holds is not
 * looked for. */
static void check_no_password(const char *logtext, const struct ldap_backend *b,
			      const struct job *job)
{
	const char *pw = job->password;
	size_t n = strlen(pw);
	char user[AUTH_MAX_USER + 1], *log = xstrdup(logtext), *filter;

	/* the filter first: it holds the user name */
	memcpy(user, job->user, sizeof(user));
	filter = filter_build(b->filter, user);
	if (filter != NULL) {
		size_t tsize = LOG_TOKEN_SIZE(strlen(filter));
		char *ftok = xmalloc(tsize);

		blank_out(log, log_token(filter, ftok, tsize));
		free(ftok);
		free(filter);
	}
	blank_out(log, job->user_log);
	for (size_t i = 0; i + 8 <= n; i++) {
		bool marked = false;

		for (size_t k = 0; k < 8; k++)
			marked |= (unsigned char)pw[i + k] >= 0x80 ||
				  strchr("!#$&*+<>^`{|}~", pw[i + k]) != NULL;
		if (marked && memmem(log, strlen(log), pw + i, 8) != NULL &&
		    !from_elsewhere(pw + i, job) && !from_elsewhere(pw + i + 4, job)) {
			fprintf(stderr, "password piece in the log: %.8s\n", pw + i);
			abort();
		}
	}
	free(log);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	struct rd r = { data, data + size };
	struct authenticator *auth;
	struct ldap_worker *w;
	struct job *job;
	unsigned flags;
	int svc_peer, usr_peer, code = -1;
	struct bind_said bs = { -1, false, false };
	const uint8_t *p;
	size_t n;
	bool skip = false, compare, dn_nul;

	if (!init) {
		if (sodium_init() == -1)
			abort();
		signal(SIGPIPE, SIG_IGN);
		logcap_init();
		init = true;
	}
	if (size < 1 || size > 65536)
		return 0;
	flags = rd_u8(&r);
	compare = flags & 1;
	auth = auth_for((flags & 1) | (flags >> 4 & 2));
	logcap_reset();
	nsaid = 0;

	job = xcalloc(1, sizeof(*job));
	n = rd_bytes(&r, rd_u8(&r), &p);
	if (n == 0 || n > AUTH_MAX_USER || memchr(p, '\0', n) != NULL)
		snprintf(job->user, sizeof(job->user), "alice");
	else
		memcpy(job->user, p, n);
	log_token(job->user, job->user_log, sizeof(job->user_log));
	n = rd_bytes(&r, rd_u8(&r), &p);
	if (n == 0 || memchr(p, '\0', n) != NULL)
		job->password = xstrdup("alice!pw#1");
	else
		job->password = xstrndup((const char *)p, n);
	job->passlen = strlen(job->password);
	job->deadline_ms = mtime_ms() + 5000;

	w = xcalloc(1, sizeof(*w));
	w->svc.role = "service";
	w->usr.role = "bind";
	w->svc.ld = handle_on_pair(&svc_peer);
	w->usr.ld = handle_on_pair(&usr_peer);
	/* a dropped connection is not reopened: that needs a directory */
	w->svc.retry_ms = w->usr.retry_ms = mtime_ms() + 60000;
	if (flags & 2)
		raw_reply(&r, svc_peer);
	else
		code = search_reply(&r, svc_peer, flags & 8 ? 2 : 1);
	if (flags & 4)
		raw_reply(&r, usr_peer);
	else
		bs = bind_reply(&r, usr_peer);
	if (flags & 0x10) {
		close(svc_peer);
		svc_peer = -1;
	} else {
		shutdown(svc_peer, SHUT_WR);
	}
	shutdown(usr_peer, SHUT_WR);
	nentries = flags & 2 ? 0 : nentries;
	if (compare && !(flags & 2) && nentries == 1)
		(void)compare_would_match(&entries[0], job->password, &skip);
	if (skip)
		goto out;

	/* libldap 2.5 leaks the request (about 4 KB) when an answer cannot be
	 * decoded (LDAP_DECODING_ERROR), which raw bytes often are: leaks are
	 * not looked for in inputs with a raw reply (see the file's head). */
	if (flags & 6)
		__lsan_disable();
	ldap_verify(auth, w, job);
	if (flags & 6)
		__lsan_enable();
	if (getenv("FUZZ_LDAP_VERBOSE") != NULL)
		fprintf(stderr, "result %d reason %d uid %u home %s maildrop %s\nlog:\n%s",
			(int)job->result, (int)job->reason, job->udb.uid, job->udb.home,
			job->udb.maildrop, logcap_text());

	/* properties, where the harness built the replies itself */
	if (job->result == AUTH_RESULT_TEMPFAIL && job->reason > TEMPFAIL_INTERNAL)
		abort();
	/* a DN with a NUL: libldap's ldap_get_dn refuses it ("entry without
	 * a DN"), so that one entry is unusable: TEMPFAIL */
	dn_nul = nentries == 1 && memchr(entries[0].dn, '\0', entries[0].dnlen) != NULL;
	if (!(flags & 2) && !(flags & 0x18) &&
	    !((search_nul || dn_nul) && job->result == AUTH_RESULT_TEMPFAIL)) {
		if (job->result == AUTH_RESULT_OK) {
			const struct fz_entry *e = &entries[0];

			if (nentries != 1 || code != LDAP_SUCCESS)
				abort();
			if (compare) {
				if (has_value(e, LDAP_LOCK_ATTR) ||
				    !compare_would_match(e, job->password, &skip))
					abort();
			} else if (!(flags & 4) && (bs.code != LDAP_SUCCESS || bs.change_after_reset)) {
				abort();
			}
			check_field(e, "uidNumber", "", job->udb.has_uid, job->udb.uid, true);
			check_field(e, "gidNumber", "", job->udb.has_gid, job->udb.gid, true);
			check_field(e, "homeDirectory", job->udb.home, false, 0, false);
			if (flags & 0x20)
				check_field(e, "mailMessageStore", job->udb.maildrop, false, 0, false);
		}
		if ((nentries > 1 || code == LDAP_SIZELIMIT_EXCEEDED) &&
		    job->result != AUTH_RESULT_FAIL)
			abort();	/* ambiguous */
		if (nentries == 0 && code == LDAP_SUCCESS && job->result != AUTH_RESULT_NOUSER)
			abort();
		if (nentries <= 1 && code != LDAP_SUCCESS && code != LDAP_NO_SUCH_OBJECT &&
		    code != LDAP_SIZELIMIT_EXCEEDED && job->result != AUTH_RESULT_TEMPFAIL)
			abort();
		if (!compare && !(flags & 4) && nentries == 1 && code == LDAP_SUCCESS &&
		    bs.code == LDAP_INVALID_CREDENTIALS &&
		    job->result != AUTH_RESULT_FAIL &&
		    !(bs.nul && job->result == AUTH_RESULT_TEMPFAIL))
			abort();
	}
	check_no_password(logcap_text(), auth->backend, job);
out:
	ldap_worker_deinit(auth, w);	/* unbinds both handles */
	if (svc_peer != -1)
		close(svc_peer);
	close(usr_peer);
	sodium_memzero(job->password, job->passlen);
	free(job->password);
	free(job);
	return 0;
}
