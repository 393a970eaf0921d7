/*
 * pop3d.h - the private header of pop3d: its limits, and the prototypes
 * of every file, grouped under the file that defines them.
 *
 * Processes (docs/pop3d.md has the picture):
 *
 *   master    (master.c, conntab.c, handoff.c, stats.c)  root when started
 *             by systemd.  Binds the listeners, accepts, enforces the
 *             connection limits, passes each connection to a front end,
 *             redeems tickets with authd and forks sessions.  Never parses
 *             client input, never sees a password.
 *   front end (login.c, authc.c, tls.c, proxyproto.c)  login-user in
 *             login-chroot.  The PROXY protocol header from a load
 *             balancer, the AUTHORIZATION state for many clients in one
 *             libevent loop;
 *             the TLS endpoint, and after a TLS login the relay between the
 *             client and its session.
 *   session   (session_proc.c, session.c, mailbox.c, maildir.c, mbox.c)
 *             the mailbox owner.
 *             TRANSACTION and UPDATE states for one client at a time,
 *             blocking I/O with deadlines.
 *   linked into several: ipc.c (each side's decoder of the others'
 *             messages), cmd.c, privdrop.c, tls.c, lang.c (the response
 *             catalogues, read by the master, inherited); and from common/,
 *             config.c with netlist.c and maildrop.c (the configuration's
 *             checks, which run as whoever starts pop3d, on the file's
 *             values only).
 *
 * What may run as root, and when (started as an ordinary user, nothing
 * does; privdrop.c):
 *   master.c, conntab.c, handoff.c   always: they are the master.  They
 *                   read no client byte; handoff.c reads authd's replies
 *                   (common/proto.c, parse_user) and, through ipc.c, what
 *                   front ends and sessions send.
 *   stats.c         always, in the master: counters, and the stats socket
 *                   (it writes to scrapers, reads nothing of theirs).
 *   ipc.c           in the master: ipc_recv (front ends' messages),
 *                   ipc_report_recv and ipc_spare_recv (sessions'), and the
 *                   output queues of its channels.
 *   privdrop.c      in the master (privdrop_init), and in each child from
 *                   its fork to its drop (privdrop_child_signals,
 *                   privdrop_login, privdrop_session).
 *   session_proc.c  from the master's fork to privdrop_session only:
 *                   closes the master's descriptors and wipes the ticket
 *                   keys; it reads no byte before the drop.
 *   login.c, authc.c  a front end before privdrop_login: login_main's
 *                   set-up and authc_connect (the handshake to authd); no
 *                   client byte is read before the drop.
 *   tls.c           a front end before its chroot (tls_server_init loads
 *                   certificates and keys), the master's start-up check
 *                   child (tls_check_files), and the master itself for the
 *                   session-ticket key ring only (random bytes drawn and
 *                   copied, no OpenSSL).
 *   cmd.c           in the master, pop3_cmd_name only (metric labels).
 *   lang.c          in the master: lang_init reads the installed message
 *                   catalogues (files make install wrote, no client byte);
 *                   the master looks strings up for its refusals.
 *   proxyproto.c    never (a front end after its drop).
 *   session.c, mailbox.c, maildir.c, mbox.c  never.
 * Nothing that reads a byte sent by a client runs as root.
 */
#ifndef POP3D_POP3D_H
#define POP3D_POP3D_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/limits.h"
#include "common/log.h"
#include "common/maildrop.h"
#include "common/netlist.h"
#include "common/metrics.h"

struct config;
struct evbuffer;
struct event_base;
struct sockaddr;
struct ssl_st;

/* ---- fixed limits, each with its reason ------------------------------- */

/* Client bytes read by the front end but not yet processed when a login
 * succeeds (pipelined commands after PASS/AUTH).  The front end stops
 * reading at this much, so a handoff message always fits one datagram. */
#define POP3D_HANDOFF_MAX_DATA	16384
/* Replies a pre-auth client may leave unread before we stop reading its
 * commands (back-pressure against a client that only writes). */
#define POP3D_PREAUTH_MAX_OUTPUT 65536
/* How long a front end waits for authd's answer before it gives up on its
 * own (authd has per-authenticator timeouts; this covers a wedged authd). */
#define POP3D_AUTH_TIMEOUT_MS	30000
/* How long the master waits for authd to answer a REDEEM. */
#define POP3D_REDEEM_TIMEOUT_MS	10000
/* While authd's master socket is away, the master tries it this often
 * (it carries authd's WHO and KICK, handoff.c). */
#define POP3D_AUTHD_RETRY_MS	1000
/* Front-end restart back-off after a crash or an authd loss. */
#define POP3D_RESTART_MIN_MS	100
#define POP3D_RESTART_MAX_MS	5000
/* RFC 1939 section 7: a unique-id is 1 to 70 characters 0x21..0x7e. */
#define POP3D_MAX_UIDL		70
/* Messages one session will list: bounds memory for a hostile maildrop. */
#define POP3D_MAX_MESSAGES	1000000
/* The Maildir index "pop3d-index" (maildir.c, DESIGN).  A file larger
 * than this is not read (a million messages take about 80 MiB); a line
 * longer than the longest one pop3d writes (a 255-byte name and four
 * numbers) makes the whole index corrupt. */
#define POP3D_INDEX_MAX_BYTES	(128u * 1024 * 1024)
#define POP3D_INDEX_MAX_LINE	512
/* A directory whose mtime or ctime is not at least this many seconds
 * older than the clock when it was read is not trusted to show the next
 * change: a change within the same tick of a coarse clock (jiffies,
 * whole seconds on some filesystems) would leave the time as it was.
 * Dovecot's Maildir has the same rule ("dirty" directories). */
#define POP3D_INDEX_SETTLE_S	2
/* A spare keeps its last Maildir listing (maildir_park) only up to this
 * many messages: about 200 bytes each, so at most about 4 MB a spare. */
#define POP3D_WARM_MAX_MESSAGES	20000
/* A message size (octets as sent) beyond this in the index is corrupt:
 * keeps the STAT sum of POP3D_MAX_MESSAGES sizes far from overflow. */
#define POP3D_INDEX_MAX_SIZE	(1ull << 40)
/* Session output is flushed once this much is buffered (and before the
 * session waits for input), so RETR of a huge message streams. */
#define POP3D_SESSION_FLUSH	65536
/* mbox maildrops (mbox.c, DESIGN).  How long a session waits for a spool
 * another program has locked (an MDA delivering holds it for moments; a
 * MUA or another POP3 session for longer: then -ERR [IN-USE]), and how
 * often it tries again meanwhile (a dot lock cannot be waited on). */
#define POP3D_MBOX_LOCK_WAIT_MS	5000
#define POP3D_MBOX_LOCK_RETRY_MS 100
/* How often a session touches its dot lock: Dovecot takes a dot lock
 * unchanged for 2 minutes as stale, procmail one of 17 minutes. */
#define POP3D_MBOX_TOUCH_S	30
/* Bytes an mbox is read in (the scan, and copies at UPDATE): large
 * enough for page-cache speed, small enough to be no memory concern. */
#define POP3D_MBOX_READ		(1024 * 1024)

/* TLS.  Certificates one front end serves, chosen by SNI (a handful of
 * names; each is a full OpenSSL context). */
#define POP3D_TLS_MAX_CERTS	8
/* A private key file larger than this is not a key (read whole, wiped). */
#define POP3D_TLS_MAX_KEY_FILE	(1024 * 1024)
/* Start-up warns about a certificate that expires within this many days. */
#define POP3D_TLS_EXPIRY_WARN_DAYS 30
/* "TLSv1.3/TLS_CHACHA20_POLY1305_SHA256" and the like, with room. */
#define POP3D_TLS_INFO_MAX	64
/* Encrypted bytes a front end reads ahead from one TLS client's socket
 * (the read watermark of the socket under the TLS filter).  With the one
 * record OpenSSL buffers, it bounds what a client can make us decrypt
 * ahead of our reading it: login.c's DESIGN, TLS input. */
#define POP3D_TLS_MAX_READ	16384
/* Encrypted bytes a front end queues for one client socket before it
 * stops encrypting (back-pressure from a client that does not read). */
#define POP3D_TLS_MAX_QUEUED	65536
/* The TLS relay after the handoff: a direction stops reading at HIGH
 * bytes queued for the other side and resumes at LOW. */
#define POP3D_PROXY_HIGH	65536
#define POP3D_PROXY_LOW		16384

/* Monitoring.  A front end sends its counters to the master and refreshes
 * its process title at most this often (and only when something changed):
 * a scrape sees front-end counters at most this late, and the master reads
 * one small message per front end per interval at most. */
#define POP3D_STATS_INTERVAL_MS	1000
/* Stats socket clients served at once (a scrape is one short write). */
#define POP3D_STATS_MAX_CONNS	32
/* Messages a channel between the master and a front end queues beyond
 * what the kernel buffers (hundreds of messages) before its sender gives
 * up on the peer as wedged (ipc.c's head: the policy). */
#define POP3D_IPC_MAX_QUEUED	64
/* A peer whose queue has not moved for this long is wedged, not busy
 * (what a blocking send once waited for at most). */
#define POP3D_IPC_STALL_MS	5000
/* How long a retired front end waits for the master to take its last
 * counters before it exits anyway. */
#define POP3D_IPC_FLUSH_MS	5000
/* How long a session waits for room to send its report at exit; after
 * that its counters are lost (the master is too busy to read them). */
#define POP3D_REPORT_TIMEOUT_MS	100

/* The PROXY protocol (proxyproto.c).  A version 1 header is one line of
 * at most 107 bytes with its CRLF (the specification's own bound).  A
 * version 2 header is 16 bytes and a block whose length it states: we
 * take at most 512 in all, room for the largest address block we read
 * (36, TCP over IPv6; 216 for UNIX, which we refuse) and some 250 bytes of
 * TLVs (a cloud balancer's few small ones); a longer one is refused. */
#define PROXYPROTO_V1_MAX	107
#define PROXYPROTO_V2_MAX	512
/* PROXY protocol failures a front end logs per second; the rest are
 * counted and summed up in one line (a flood does not flood the log). */
#define POP3D_PROXY_LOG_PER_SEC	10
/* "login tempfail" lines a front end writes per second: under overload
 * every refused login is one (the counters have them all). */
#define POP3D_TEMPFAIL_LOG_PER_SEC	1

/* Languages (lang.c).  A language tag as RFC 4647's basic ranges have it
 * ("pt-BR"; RFC 5646 section 4.4.1 advises 35 characters at most for a
 * tag's length in a protocol field). */
#define LANG_TAG_MAX		35
/* Catalogues loaded at most (a few dozen languages is a big project), the
 * size of one .mo file and its strings (ours has about a hundred): bounds
 * what a broken install can make the master hold. */
#define POP3D_LANG_MAX		64
#define POP3D_LANG_MAX_FILE	(1024 * 1024)
#define POP3D_LANG_MAX_STRINGS	10000

/* ---- cmd.c: the POP3 command tokenizer (both states) ------------------- */

enum pop3_cmd_id {
	CMD_UNKNOWN, CMD_USER, CMD_PASS, CMD_AUTH, CMD_APOP, CMD_CAPA, CMD_QUIT,
	CMD_NOOP, CMD_STAT, CMD_LIST, CMD_UIDL, CMD_RETR, CMD_TOP, CMD_DELE,
	CMD_RSET, CMD_LAST, CMD_STLS, CMD_LANG, CMD_UTF8,
};

/* Commands counted per keyword (CMD_UNKNOWN: lines that are no known
 * command: unknown keyword, too long, NUL byte). */
#define POP3D_NCMDS		(CMD_UTF8 + 1)

struct pop3_cmd {
	enum pop3_cmd_id id;
	const char *name;	/* canonical upper-case name, "" if unknown */
	char *arg;		/* everything after the first space (NULL if none) */
};

/* Splits line (NUL-terminated, without CRLF; modified in place) into a
 * command.  Keywords are case-insensitive.  arg points into line and is
 * NULL when the line is the keyword alone.  Never fails: an unknown or
 * empty keyword gives CMD_UNKNOWN. */
void pop3_cmd_parse(char *line, struct pop3_cmd *cmd);

/* The canonical name of id ("USER"), or "unknown" for CMD_UNKNOWN. */
const char *pop3_cmd_name(enum pop3_cmd_id id);

/* Parses a message number argument "1".."max" (RFC 1939: decimal, no
 * sign).  Returns 0 and the 1-based number, or -1. */
int pop3_cmd_msgnum(const char *s, unsigned max, unsigned *num_r);

/* Parses the line count of TOP: decimal digits only (no sign, no blank),
 * any size.  A count above LONG_MAX (or beyond 64 bits) gives LONG_MAX,
 * which means every line: RFC 1939 allows any non-negative number.
 * Returns 0 with *lines_r, or -1 (not a number). */
int pop3_cmd_lines(const char *s, long *lines_r);

/* Splits "a b" into two tokens separated by one or more spaces; *b_r is
 * NULL if there is only one.  s is modified in place.  Returns the number
 * of tokens (0, 1 or 2), or -1 if there are more than two. */
int pop3_cmd_split2(char *s, char **a_r, char **b_r);

/* Room for log_token() (common/log.h) of a user name (every byte may
 * become \xHH). */
#define POP3D_LOG_USER_MAX	LOG_TOKEN_SIZE(AUTH_MAX_USER)

/* pop3_capa flags: what this connection may do next. */
#define POP3_CAPA_LOGIN	0x1	/* AUTHORIZATION and logins allowed: USER, SASL */
#define POP3_CAPA_STLS	0x2	/* STLS offered */
#define POP3_CAPA_UTF8	0x4	/* AUTHORIZATION: UTF8 (RFC 6856) offered */

struct lang;
/* Appends the CAPA reply (the +OK line, its text in language l,
 * capability lines, each CRLF-ended, and the final ".") with the
 * configured capabilities, LANG, and per flags USER/SASL, STLS and UTF8
 * (with its USER argument when USER is offered). */
void pop3_capa(struct evbuffer *out, const struct config *conf, unsigned flags,
	       const struct lang *l);

/* ---- lang.c: the languages of responses (RFC 6856 LANG) ------------------ */

/* Marks a string for the catalogues (xgettext) where it is not translated
 * yet: translated later, by lang_tr, where the language is known. */
#define N_(s)	(s)

struct lang_set;
/* Master, at start-up (and -t) and at each reload: reads every catalogue
 * installed under dir (DIR/LL/LC_MESSAGES/pop3d.mo; NULL or "": English
 * only) into memory, with default_tag the default.  Returns the set, or
 * NULL with a message in err (a broken catalogue, or none for
 * default_tag). */
struct lang_set *lang_load(const char *dir, const char *default_tag, char *err, size_t size);
/* Makes *sp the languages of this process (and of those forked later),
 * freeing the ones before; takes *sp and NULLs it.  Pointers from the
 * other functions are valid until then. */
void lang_use(struct lang_set **sp);
void lang_set_free(struct lang_set **sp);
/* The translation of msgid in l (NULL: the default language), or msgid
 * itself if l has none.  A translation has the msgid's printf conversions
 * (checked at load).  Valid until the next lang_use in this process. */
const char *lang_tr(const struct lang *l, const char *msgid) __attribute__((format_arg(2)));
/* The default language (default-language; English before lang_init). */
const struct lang *lang_default(void);
/* The languages offered (English first, then by tag), for LANG's listing:
 * i < lang_count(). */
size_t lang_count(void);
const struct lang *lang_at(size_t i);
/* l's tag ("pl") and its name in itself ("Polski"). */
const char *lang_tag(const struct lang *l);
const char *lang_name(const struct lang *l);
/* The language whose tag is tag (case-insensitive), or the default for
 * one not offered (the tag another process sent). */
const struct lang *lang_find(const char *tag);
/* RFC 6856 LANG's argument: "*" is the default language; otherwise a
 * basic language range (RFC 4647 section 2.1), matched by basic filtering
 * (section 3.3.1) against the languages offered.  Returns the first that
 * matches, or NULL (none, or not a range). */
const struct lang *lang_match(const char *range);
/* Basic filtering of one tag: range equals tag, or is a prefix of it
 * followed by "-"; case-insensitive. */
bool lang_range_matches(const char *range, const char *tag);
/* s is a basic language range other than "*": 1*8ALPHA *("-" 1*8alphanum),
 * at most LANG_TAG_MAX characters. */
bool lang_tag_valid(const char *s);
struct evbuffer;
/* The LANG command (RFC 6856 section 3), the same in the front end and the
 * session: without arg the languages offered, with one a basic language
 * range (or "*") that picks *langp from now on.  The answer (CRLF lines) is
 * added to out, starting with the tag of the language it is in; an
 * unknown range leaves *langp as it was. */
void lang_command(struct evbuffer *out, const struct lang **langp, const char *arg);

/* ---- maildir.c --------------------------------------------------------- */

enum maildir_status { MAILDIR_OK, MAILDIR_IN_USE, MAILDIR_TEMP, MAILDIR_PERM };

struct maildir;

struct maildir_msg {
	char *name;		/* "new/NAME" or "cur/NAME", relative to the maildir
				 * (NULL for a message of an mbox: mbox.c) */
	char uidl[POP3D_MAX_UIDL + 1];
	uint64_t size;		/* octets as sent: CRLF line ends, no dot-stuffing */
	bool deleted;		/* DELE'd in this session */
	bool retrieved;		/* RETR'd in this session: gets the Seen flag */
	bool topped;		/* TOP'd in this session (EXPIRE counts it) */
	bool expired;		/* set by maildir_update: removed by EXPIRE */
	int64_t retrieved_at;	/* unix time of the first RETR or TOP, from the
				 * record "pop3d-expire"; 0 = not known */
};

/* Opens the maildir at path: takes the one-session lock (an flock on
 * "pop3d-lock", which the kernel drops when the process dies, so it never
 * goes stale), lists new/ and cur/ (or takes the listing from the index
 * "pop3d-index" when neither directory changed since it was written, and
 * writes a new one when the listing differs; maildir.c, DESIGN), and
 * finds every message's size (from the index, ",W=" in the name, the
 * size cache "pop3d-sizes", or by reading it once),
 * and each one's first retrieval time from the EXPIRE record
 * "pop3d-expire" (retrieved_at).  Messages delivered later stay invisible
 * to this maildir.  Returns
 * MAILDIR_OK with *md_r set, or another status with *error_r set to a
 * static string fit for a client. */
enum maildir_status maildir_open(const char *path, struct maildir **md_r,
				 const char **error_r);
/* maildir_open, given the listing maildir_park kept (*warm, may be NULL):
 * it is taken (*warm becomes NULL) and, if it is of this maildir and
 * neither new/ nor cur/ changed since it was read (the index's rule),
 * used instead of the index or a listing (*warm_used_r true). */
enum maildir_status maildir_open_warm(const char *path, struct maildir **warm,
				      struct maildir **md_r, const char **error_r,
				      bool *warm_used_r);
/* Ends a session's use of md (the lock released, *mdp NULL): its listing
 * goes into *warm (whatever was there is freed) when UPDATE changed nothing
 * and its stamps were settled, else it is freed.  Does not apply
 * deletions. */
void maildir_park(struct maildir **mdp, struct maildir **warm);
/* Releases the lock and frees md.  Does not apply deletions. */
void maildir_free(struct maildir **mdp);

/* A UIDL as RFC 1939 allows one (1 to 70 bytes, 0x21-0x7e)?  And one
 * that looks like the digests pop3d makes (32 digits of 0-9a-f), which a
 * name or header must not be taken for?  Shared by maildir.c and mbox.c. */
bool uidl_ok(const char *s, size_t len);
bool uidl_hashlike(const char *s, size_t len);
size_t maildir_count(const struct maildir *md);
/* Message i (0-based, < maildir_count); valid until maildir_free. */
struct maildir_msg *maildir_msg(struct maildir *md, size_t i);

/* Sends message i through emit as it goes on the wire: CRLF line ends,
 * dot-stuffed, ending with CRLF (but not the final "."), at most
 * POP3D_SESSION_FLUSH bytes per call.  A message renamed by another
 * program since the listing (same base, same inode) is found again and
 * sent; one whose RETR does not match its listed size is logged, and the
 * index and its cached size are dropped.  body_lines < 0 sends everything;
 * otherwise the header, the blank line and that many body lines (TOP).
 * emit returns 0 or -1 (stops the transfer).  Returns 0; -1 if the file
 * cannot be read (*error_r set, nothing sent yet) or -2 if emit failed or
 * the file broke mid-way (the connection must then be closed). */
int maildir_send(struct maildir *md, size_t i, long body_lines,
		 int (*emit)(void *ctx, const void *data, size_t len), void *ctx,
		 const char **error_r);

/* The UPDATE state: deletes DELE'd messages, moves retrieved ones to cur/
 * with the Seen flag, never replacing a file (a taken name gives the
 * message a fresh one) and never deleting a file other than the one
 * listed; then rewrites the index if anything was removed or renamed.  With expire_days >= 0 (the EXPIRE policy): records now as the
 * first retrieval time of messages RETR'd or TOP'd in this session that
 * had none, deletes every message first retrieved expire_days * 86400
 * seconds or more before now (so with 0 every message retrieved, in this
 * session or before) and sets its expired flag, and rewrites the record
 * "pop3d-expire".  expire_days < 0: no policy, no record.  Returns the
 * number of DELE'd messages that could not be deleted (0 on success). */
unsigned maildir_update(struct maildir *md, long expire_days, int64_t now);

/* Tests only: behave as on a filesystem without RENAME_NOREPLACE (the
 * link + unlink fallback). */
extern bool maildir_no_renameat2;
/* How old (seconds) new/ and cur/ must be for the index to be trusted
 * without reading them (POP3D_INDEX_SETTLE_S; tests set 0). */
extern int maildir_index_settle_s;

/* The LF-to-CRLF and dot-stuffing converter maildir_send uses (exposed for
 * tests).  Initialise with maildir_conv_init(body_lines as above). */
struct maildir_conv {
	bool line_start;	/* next byte starts a line */
	bool prev_cr;		/* last byte was CR */
	bool in_body;		/* past the blank line ending the header */
	bool done;		/* TOP: all wanted lines sent */
	size_t line_bytes;	/* bytes in the current line before LF */
	long body_lines;	/* < 0: unlimited */
	uint64_t octets;	/* bytes produced, not counting stuffed dots */
};

void maildir_conv_init(struct maildir_conv *c, long body_lines);
/* Converts inlen bytes of in into out, which must hold 2 * inlen bytes.
 * Stops early when done.  Returns the bytes written to out. */
size_t maildir_conv_run(struct maildir_conv *c, const uint8_t *in, size_t inlen,
			uint8_t *out);
/* The CRLF a message lacking a final line end gets; writes 0 or 2 bytes
 * into out (room for 2).  Returns the count. */
size_t maildir_conv_finish(struct maildir_conv *c, uint8_t *out);

/* ---- proxyproto.c: the PROXY protocol header (v1 and v2) -------------- */

struct proxyproto_header {
	int version;			/* 1 or 2 */
	bool local;			/* v2 LOCAL, v2 UNSPEC, v1 UNKNOWN: no
					 * addresses, use the connection's own */
	struct sockaddr_storage src;	/* !local: the client (AF_INET or AF_INET6) */
	struct sockaddr_storage dst;	/* !local: the address it connected to */
};

/* Decodes a PROXY protocol header at the start of the len bytes at buf
 * (read so far; what follows the header is the client's).  Returns the
 * header's length (> 0, at most len) with *h filled; 0 if buf is an
 * incomplete header so far, all of whose bytes belong to the header (so
 * they may be consumed), len being below the largest header then; -1 if
 * buf does not start a header we accept, with *why_r a static reason for
 * the log.  Pure: no I/O, no allocation (proxyproto.c's DESIGN). */
int proxyproto_parse(const uint8_t *buf, size_t len, struct proxyproto_header *h,
		     const char **why_r);

/* ---- mbox.c: mbox maildrops (/var/mail/USER) --------------------------- */

struct mbox;

/* Opens the mbox file at path as mbox.c's DESIGN says: locks it (fcntl,
 * then PATH.lock through liblockfile; waits up to POP3D_MBOX_LOCK_WAIT_MS
 * for another program's locks, then MAILDIR_IN_USE), reads it once and
 * lists its messages (the c-client metadata message hidden).  A missing
 * file is an empty maildrop.  Returns MAILDIR_OK with *mb_r, or another
 * status with *error_r static, fit for a client.  The locks are held until
 * mbox_free. */
enum maildir_status mbox_open(const char *path, struct mbox **mb_r, const char **error_r);
/* Releases the locks and frees mb.  Does not apply deletions. */
void mbox_free(struct mbox **mbp);
size_t mbox_count(const struct mbox *mb);
/* Message i (0-based, < mbox_count); name is NULL.  Valid until
 * mbox_free. */
struct maildir_msg *mbox_msg(struct mbox *mb, size_t i);
/* As maildir_send, for message i of mb. */
int mbox_send(struct mbox *mb, size_t i, long body_lines,
	      int (*emit)(void *ctx, const void *data, size_t len), void *ctx,
	      const char **error_r);
/* The UPDATE state: rewrites the file without the DELE'd messages (and
 * with expire_days 0, without those RETR'd or TOP'd in this session, whose
 * expired flag it sets), so that a kill at any moment loses no other
 * message (DESIGN).  Returns the number of DELE'd messages not deleted:
 * all of them or none. */
unsigned mbox_update(struct mbox *mb, long expire_days, int64_t now);
/* Tests only: the rewrite kills its process (SIGKILL) before its step
 * number mbox_test_kill_step (each pwrite, fdatasync, the ftruncate;
 * 0: never); mbox_test_steps counts the steps. */
extern unsigned mbox_test_kill_step, mbox_test_steps;
extern int mbox_test_kill_signal;	/* SIGKILL unless a test says */
/* Messages an mbox lists at most (POP3D_MAX_MESSAGES; tests make it
 * smaller); the rest stay in the file, untouched. */
extern size_t mbox_max_messages;
/* How often an open mbox's dot lock is touched, in seconds
 * (POP3D_MBOX_TOUCH_S; tests make it shorter).  Set before mbox_open. */
extern unsigned mbox_touch_interval_s;

/* ---- mailbox.c: the maildrop of a session, whatever its kind ----------- */

struct mailbox;

/* Opens maildrop: "mbox:PATH" (mbox.c) or a Maildir path (maildir.c), as
 * common/maildrop.c expanded it.  Returns as maildir_open. */
enum maildir_status mailbox_open(const char *maildrop, struct mailbox **mb_r,
				 const char **error_r);
/* mailbox_open for user, with the listing this process kept of user's
 * maildrop at the end of its last session (mailbox_park), if it is still
 * true (*warm_r true then).  A listing kept for another user or maildrop
 * is freed, never used. */
enum maildir_status mailbox_open_warm(const char *maildrop, const char *user,
				      struct mailbox **mb_r, const char **error_r, bool *warm_r);
/* mailbox_free, keeping a Maildir's listing for user's next session in
 * this process (a spare: session-reuse) when maildir_park allows. */
void mailbox_park(struct mailbox **mbp, const char *user, const char *maildrop);
/* Releases the maildrop's locks and frees it; NULL-safe.  Does not apply
 * deletions. */
void mailbox_free(struct mailbox **mbp);
/* The operations of maildir.c and mbox.c, with the same contracts. */
size_t mailbox_count(const struct mailbox *mb);
struct maildir_msg *mailbox_msg(struct mailbox *mb, size_t i);
int mailbox_send(struct mailbox *mb, size_t i, long body_lines,
		 int (*emit)(void *ctx, const void *data, size_t len), void *ctx,
		 const char **error_r);
unsigned mailbox_update(struct mailbox *mb, long expire_days, int64_t now);

/* ---- session.c --------------------------------------------------------- */

struct session_params {
	int fd;				/* the client connection, or for a TLS
					 * client the front end's relay socketpair */
	const char *user;
	const char *maildrop;		/* expanded: a Maildir path or "mbox:PATH" */
	const char *rip;		/* for the logout line */
	const uint8_t *data;		/* client bytes already read (pipelined) */
	size_t data_len;
	bool secured;			/* fd is the front end's TLS relay */
	const char *tls_info;		/* "TLSv1.3/CIPHER" when secured, else "" */
	const char *maildrop_error;	/* when maildrop is NULL: why there is none
					 * (for the log; the client is told the
					 * mailbox is not configured correctly) */
	const struct config *conf;
	const struct lang *lang;	/* of the responses (LANG before the login) */
	/* Called once the maildrop is open, before the client's "+OK" (the
	 * master counts the login then); may be NULL. */
	void (*opened)(void *ctx, bool warm);	/* warm: the listing was kept */
	void *opened_ctx;
};

/* Why a session ended (the logout line's reason=, a label of
 * pop3d_sessions_ended_total). */
enum session_end {
	SESSION_END_NONE, SESSION_END_QUIT, SESSION_END_DISCONNECT, SESSION_END_TIMEOUT,
	SESSION_END_ERROR, SESSION_END_BAD, SESSION_END_MAILDROP,
	SESSION_END_COUNT
};

/* What a session did: it fills this in and its process sends it to the
 * master when it ends (master.c), so no counter is shared while it runs. */
#define SESSION_REPORT_END	0	/* the session's last word: all of it */
#define SESSION_REPORT_OPENED	1	/* its maildrop is open, it serves: the
					 * login counts as ok (counts all 0) */
#define SESSION_REPORT_OPENED_WARM 2	/* the same, with the listing its process
					 * kept from its last session */
struct session_report {
	uint32_t end;			/* enum session_end */
	uint32_t kind;			/* SESSION_REPORT_* */
	uint64_t commands[POP3D_NCMDS];	/* TRANSACTION-state command lines */
	uint64_t bytes_sent;		/* written to p->fd (the relay for TLS) */
	uint64_t retr, retr_bytes;	/* messages and octets retrieved */
	uint64_t top, top_bytes;	/* ... listed with TOP */
	uint64_t dele, dele_bytes;	/* ... deleted at QUIT */
	uint64_t expired, expired_bytes;/* ... removed at QUIT by EXPIRE */
};

/* The logout line's word for end ("QUIT", "io-error", ...; one token). */
const char *session_end_name(enum session_end end);

/* Runs a whole TRANSACTION + UPDATE session on p->fd: opens the maildrop,
 * sends "+OK", processes the pipelined bytes as if they had just arrived,
 * then the client, until QUIT, a timeout or a disconnect.  A maildrop that
 * cannot be opened (or p->maildrop NULL) is answered with -ERR [IN-USE],
 * [SYS/TEMP] or [SYS/PERM] and logged with its reason, and ends the
 * session (SESSION_END_MAILDROP, with its logout line).  Blocking; the
 * caller is a dedicated process.  Closes p->fd.  Fills *report_r (all of
 * it, whatever happens).  Returns the exit status for that process (0 on
 * QUIT or a clean disconnect). */
int session_run(const struct session_params *p, struct session_report *report_r);

/* ---- privdrop.c -------------------------------------------------------- */

/* Records whether the process started as root, so privileges are really
 * dropped.  Call once at start-up, before privdrop_enabled. */
void privdrop_init(void);
bool privdrop_enabled(void);
/* A child just forked from the master (front end, session): default
 * actions for SIGCHLD, SIGTERM and SIGINT, and SIGHUP, SIGUSR1 and SIGPIPE
 * ignored (reload and log rotation are the master's business). */
void privdrop_child_signals(void);
/* Front end: chroot to dir and become uid/gid (common/privsep.c; fatal if
 * the drop does not stick).  Without root, does nothing.  Returns 0, or -1
 * (logged) if the chroot fails. */
int privdrop_login(const char *chroot_dir, uid_t uid, gid_t gid);
/* Session: become the mailbox owner.  Refuses uid 0, gid 0 and uid <
 * first_valid_uid when root; without root keeps the current ids.  Returns
 * 0 or -1 with *error_r static. */
int privdrop_session(uid_t uid, gid_t gid, unsigned first_valid_uid,
		     const char **error_r);

/* ---- ipc.c: messages between the processes (SOCK_SEQPACKET) ---------- */

enum ipc_type {
	IPC_NEWCONN = 1,	/* master -> front end, with the client fd */
	IPC_CLOSED,		/* front end -> master: conn ended before login */
	IPC_HANDOFF,		/* front end -> master, with the client fd */
	IPC_RETIRE,		/* front end -> master: lost authd, replace me;
				 * master -> front end: replaced, leave when idle */
	IPC_STATS,		/* front end -> master: a struct fe_stats in data */
	IPC_TICKET_KEYS,	/* master -> front end: a struct tls_ticket_keys in
				 * data, the session-ticket keys from now on */
	IPC_PROXY_ADDR,		/* front end -> master: a struct ipc_proxy_addr in
				 * data, the client address a PROXY header gave */
	IPC_PROXY_VERDICT,	/* master -> front end: a struct ipc_proxy_verdict
				 * in data, whether that client may go on */
};

/* IPC_PROXY_ADDR: a connection from a PROXY protocol listener (NEWCONN
 * with proxy set) is counted by the master under no address until its
 * front end has read the header and sends the address to count it under:
 * the client's, or the balancer's own for a LOCAL or UNKNOWN header.  The
 * master trusts it no more than any front-end message (ipc_recv checks the
 * family, the unused bytes and the port; master.c accepts one per such
 * connection of that front end's, and formats the address itself), and
 * answers IPC_PROXY_VERDICT; nothing else happens to the connection until
 * then (login.c, DESIGN, PROXY protocol). */
struct ipc_proxy_addr {
	uint32_t family;		/* AF_INET or AF_INET6 */
	uint32_t port;			/* 0-65535 */
	uint8_t addr[16];		/* network order; AF_INET: 4 bytes, then 0 */
};
enum ipc_proxy_verdict_code {
	IPC_PROXY_OK,			/* counted: greet it (or TLS) */
	IPC_PROXY_PER_IP,		/* max-connections-per-ip: refuse it */
};
struct ipc_proxy_verdict {
	uint32_t verdict;		/* enum ipc_proxy_verdict_code */
};
/* Fills a from sa (AF_INET or AF_INET6).  Returns 0, or -1 for another
 * family. */
int ipc_proxy_addr_set(struct ipc_proxy_addr *a, const struct sockaddr *sa);
/* The address a (checked by ipc_recv) as a sockaddr, into *ss_r. */
void ipc_proxy_addr_get(const struct ipc_proxy_addr *a, struct sockaddr_storage *ss_r);

/* A TLS session-ticket key (RFC 5077's layout, as OpenSSL's own): the
 * name a ticket carries in clear, the HMAC-SHA256 key and the AES-256-CBC
 * key. */
#define TLS_TICKET_NAME_LEN	16
#define TLS_TICKET_SECRET_LEN	32
struct tls_ticket_key {
	uint8_t name[TLS_TICKET_NAME_LEN];
	uint8_t hmac[TLS_TICKET_SECRET_LEN];
	uint8_t aes[TLS_TICKET_SECRET_LEN];
};

/* The keys every front end uses (tls.c, DESIGN): cur encrypts new tickets
 * and decrypts; prev (if has_prev) only decrypts, and a ticket under it
 * is renewed.  Sent whole in IPC_TICKET_KEYS. */
struct tls_ticket_keys {
	struct tls_ticket_key cur, prev;
	uint8_t has_prev;		/* 0 or 1 */
	uint8_t zero[7];		/* always 0 */
};

/* What closed a connection before its login (login.c, login_limit_close). */
enum login_limit { LOGIN_LIMIT_TIME, LOGIN_LIMIT_COMMANDS, LOGIN_LIMIT_COUNT };

/* A front end's counters, sent whole (IPC_STATS) whenever they changed, at
 * most every POP3D_STATS_INTERVAL_MS, and once more before a retired front
 * end leaves.  Counters are cumulative over the front end's life; the
 * master keeps the latest snapshot of each live front end and adds a
 * front end's last one to its totals when it ends.  No counter is shared
 * between processes, so nothing on a hot path takes a lock. */
struct fe_stats {
	uint64_t commands[POP3D_NCMDS];	/* AUTHORIZATION-state command lines */
	uint64_t logins_failed;		/* authd said FAIL */
	uint64_t logins_tempfailed;	/* TEMPFAIL, no answer, authd unreachable */
	uint64_t logins_overloaded;	/* ... of them, authd's reason=overloaded
					 * (delayed, counted as failed attempts) */
	uint64_t login_limit[LOGIN_LIMIT_COUNT];	/* closed by a pre-login limit */
	uint64_t bytes_sent;		/* written to client sockets (TLS: on the
					 * wire, the relay to sessions included) */
	uint64_t tls_ok, tls_failed, tls_timeout;	/* handshakes by outcome */
	uint64_t tls_resumed;		/* ... of the ok ones, resumed sessions */
	uint64_t authd_lost;		/* connection to authd's protocol socket lost */
	uint64_t authd_reconnects;	/* ... and made again by this front end */
	struct metrics_hist auth_latency;	/* AUTH sent -> authd's answer */
	uint64_t proxy_ok, proxy_local;		/* PROXY headers: with an address;
						 * LOCAL or UNKNOWN (health checks) */
	uint64_t proxy_malformed, proxy_timeout, proxy_closed;	/* ... refused */
	uint32_t clients;		/* gauge: connections held (relays included) */
	uint32_t awaiting;		/* gauge: of them, waiting for authd */
};

#define IPC_TICKET_LEN	(2 * AUTHD_TICKET_BYTES)

struct ipc_msg {
	uint32_t type;
	uint32_t data_len;		/* IPC_HANDOFF: bytes used in data */
	uint64_t conn_id;
	uint8_t secured;		/* IPC_HANDOFF: TLS; the fd is then one end
					 * of a socketpair the front end relays */
	uint8_t tls_port;		/* IPC_NEWCONN: from a listen-tls port */
	uint8_t proxy;			/* IPC_NEWCONN: a PROXY header comes first */
	char method[8];			/* IPC_HANDOFF: "USER" or "PLAIN" */
	char ticket[IPC_TICKET_LEN + 1];/* IPC_HANDOFF */
	char tls_info[POP3D_TLS_INFO_MAX];/* IPC_HANDOFF: "TLSv1.3/CIPHER" if secured,
					 * else "" */
	char lang[LANG_TAG_MAX + 1];	/* IPC_HANDOFF: the language of the
					 * responses, a tag (LANG), else "" */
	uint8_t data[POP3D_HANDOFF_MAX_DATA];
};

#define IPC_HEADER_LEN	offsetof(struct ipc_msg, data)

/* A channel's sending side with its bounded output queue (ipc.c's head:
 * the policy when it is full). */
struct ipc_chan;
/* Wraps sock (non-blocking; not owned) for sending from the loop of base,
 * queueing at most max messages the socket cannot take yet. */
struct ipc_chan *ipc_chan_new(struct event_base *base, int sock, unsigned max);
/* Drops what is queued (descriptors closed, bytes wiped) and frees *chp;
 * NULLs it.  Does not close the socket. */
void ipc_chan_free(struct ipc_chan **chp);
/* Sends m (header plus data_len bytes) with fd (or -1), or queues it
 * behind earlier messages; never waits.  fd stays the caller's (a queued
 * message holds a dup).  Returns 0 (sent or queued), or -1 with errno
 * ENOBUFS (the queue is full: nothing queued) or the error that broke the
 * channel. */
int ipc_chan_send(struct ipc_chan *ch, const struct ipc_msg *m, int fd);
/* Messages queued now. */
unsigned ipc_chan_queued(const struct ipc_chan *ch);
/* True once a send failed for good (the peer is gone or the socket
 * broken): every later send fails too. */
bool ipc_chan_broken(const struct ipc_chan *ch);
/* True if messages are queued and none has left for after_ms (since the
 * queue began, or since the last one sent): the peer is not reading. */
bool ipc_chan_stalled(const struct ipc_chan *ch, uint64_t after_ms);
/* Blocking, for a process whose loop has ended: sends the queue, waiting
 * at most timeout_ms.  Returns 0, or -1 (errno ETIMEDOUT or the error). */
int ipc_chan_flush_wait(struct ipc_chan *ch, int timeout_ms);
/* In a child just forked: drops every queue it inherited (a session must
 * not keep the ticket keys queued for a front end). */
void ipc_chan_forget_all(void);
/* Receives one message into m and checks it completely (type, lengths,
 * terminated strings, a descriptor where one is due and only there).
 * Returns 1 with *fd_r (or -1), 0 on EOF, -1 on a broken or malformed
 * message (errno EAGAIN when nothing is pending). */
int ipc_recv(int sock, struct ipc_msg *m, int *fd_r);

/* A login for a session process that serves again (session-reuse): the
 * master sends it, with the client fd, over that process's own
 * SOCK_SEQPACKET socketpair once the process has said it is free
 * (SESSION_SPARE).  A process's first login comes with the fork. */
struct session_job {
	uint32_t uid, gid;		/* the process checks they are its own */
	uint32_t data_len;		/* bytes used in data */
	uint8_t secured;
	char method[8];			/* "USER" or "PLAIN" */
	char user[AUTH_MAX_USER + 1];
	char home[AUTHD_MAX_LINE];	/* "" = none */
	char maildrop[AUTHD_MAX_LINE];	/* "" = the maildrop setting */
	char rip[64];
	char tls_info[POP3D_TLS_INFO_MAX];
	char lang[LANG_TAG_MAX + 1];	/* the language of the responses */
	uint8_t data[POP3D_HANDOFF_MAX_DATA];	/* client bytes already read */
};

#define SESSION_JOB_HEADER_LEN	offsetof(struct session_job, data)
/* session -> master: its session has ended and it can take another. */
#define SESSION_SPARE		0x53504152u

/* Sends j (header plus data_len bytes) with the client fd.  Returns 0/-1
 * (the socket is idle when a job is due, so it never waits). */
int session_job_send(int sock, const struct session_job *j, int fd);
/* Session: says on its channel that its session has ended and it can
 * take another (SESSION_SPARE).  Blocking: a session process runs no event
 * loop.  Returns 0/-1. */
int ipc_spare_send(int sock);
/* Master: whether buf is exactly a SESSION_SPARE word. */
bool ipc_spare_decode(const uint8_t *buf, size_t len);
/* Master: receives one message from a session's channel (non-blocking).
 * Returns 1 for SESSION_SPARE, 0 on EOF, -1 with errno EAGAIN (nothing
 * pending) or EPROTO (anything else: other bytes, trailing bytes, a
 * descriptor, which is closed). */
int ipc_spare_recv(int sock);

/* Master: decodes a session report (struct session_report, written by a
 * session as the mailbox owner): exactly its size, a known end and kind,
 * and a SESSION_REPORT_OPENED all zero but its kind.  Returns 0 with
 * *r_r, or -1 (*r_r untouched). */
int ipc_report_decode(const uint8_t *buf, size_t len, struct session_report *r_r);
/* Master: receives one report from the report socket sock (SO_PASSCRED
 * set; non-blocking).  Returns 1 with *r_r and the sender's pid as the
 * kernel names it (SCM_CREDENTIALS) in *pid_r, 0 on EOF, -1 with errno
 * EAGAIN (nothing pending), EINTR, or EPROTO (malformed, truncated,
 * without credentials or with descriptors, which are closed: dropped). */
int ipc_report_recv(int sock, struct session_report *r_r, pid_t *pid_r);

/* Receives a job and checks it (lengths, terminated strings, one fd).
 * Returns 1 with *fd_r, 0 on EOF, -1 on a broken or malformed message. */
int session_job_recv(int sock, struct session_job *j, int *fd_r);

/* ---- tls.c: OpenSSL server contexts and start-up checks ---------------- */

/* True if the configuration asks for TLS (listen-tls or starttls). */
bool tls_configured(const struct config *conf);
/* Loads every certificate chain and key as a front end would and checks
 * them: key file mode (no access for group or others), key matching its
 * certificate, cipher lists; warns about a certificate expiring within
 * POP3D_TLS_EXPIRY_WARN_DAYS.  Logs each problem naming the file.  The
 * master runs this in a child that exits at once, so that it never holds
 * key material its sessions would inherit.  Returns 0 or -1. */
int tls_check_files(const struct config *conf);
/* Master: draws the session-ticket keys every front end shares (so that a
 * ticket from one front end resumes on another), if none are held.
 * Front ends forked later inherit them. */
void tls_ticket_keys_init(void);
/* Master, every tls-ticket-key-lifetime: the current key becomes the
 * previous one (decryption only), a new one is drawn, and the key before
 * is wiped.  The caller then sends tls_ticket_keys_get's copy to every
 * front end. */
void tls_ticket_keys_rotate(void);
/* Copies the keys held into *keys_r (the caller wipes it after use).
 * Returns false if none are held. */
bool tls_ticket_keys_get(struct tls_ticket_keys *keys_r);
/* Front end: replaces its keys with *keys (checked by ipc_recv), wiping
 * the old ones. */
void tls_ticket_keys_set(const struct tls_ticket_keys *keys);
/* Wipes the keys held: a session child first thing, the master when TLS
 * or tickets are turned off. */
void tls_ticket_keys_wipe(void);
/* First thing in main(), before any other OpenSSL call: OpenSSL's freed
 * blocks (TLS record buffers hold a client's password) are wiped first
 * (common/memwipe.c).  Fatal if OpenSSL has allocated already. */
void tls_wipe_freed(void);
/* Front end, before its chroot: builds one server context per certificate
 * (the first is the default; SNI picks another whose names match).
 * Returns 0, or -1 (logged). */
int tls_server_init(const struct config *conf);
/* A new server connection object for tls_server_init's contexts, or NULL
 * (out of memory).  The caller owns it. */
struct ssl_st *tls_ssl_new(void);
/* Writes "PROTOCOL/CIPHER" of an established connection into buf. */
void tls_describe(const struct ssl_st *ssl, char *buf, size_t size);
/* OpenSSL's text for err (from ERR_get_error and the like) into buf;
 * returns buf. */
const char *tls_error_string(unsigned long err, char *buf, size_t size);

/* ---- stats.c: the master's counters and the stats socket ------------- */

enum refuse_reason {
	REFUSE_MAX_CONNECTIONS, REFUSE_PER_IP, REFUSE_NO_FRONTEND, REFUSE_INTERNAL,
	REFUSE_PROXY_UNTRUSTED,		/* a PROXY protocol listener: peer not in
					 * proxy-trusted-networks */
	REFUSE_COUNT
};
enum login_refusal { LOGIN_REFUSED_PER_USER, LOGIN_REFUSED_DELAY, LOGIN_REFUSED_COUNT };

/* Session durations: bounds in milliseconds (sessions last seconds to
 * hours, far beyond common/metrics.h's latency buckets); +Inf follows. */
#define STATS_DURATION_BUCKETS 12
struct duration_hist {
	uint64_t buckets[STATS_DURATION_BUCKETS + 1];	/* non-cumulative */
	uint64_t count;
	uint64_t sum_ms;
};

/* The master's own counters.  Only the master's event loop writes them
 * (one writer, no lock); front ends and sessions never touch them: their
 * counts arrive as messages (struct fe_stats, struct session_report). */
struct master_stats {
	uint64_t accepted;			/* connections passed to a front end */
	uint64_t refused[REFUSE_COUNT];		/* closed at once, by reason */
	uint64_t logins_ok;			/* sessions that opened their maildrop */
	uint64_t logins_maildrop_error;		/* ... that could not (in use, missing,
						 * unreadable, bad template) */
	uint64_t logins_session_error;		/* ... that ended before either (uid
						 * refused, killed, crashed) */
	uint64_t logins_tempfailed;		/* handoffs that failed (the front
						 * ends count authd's TEMPFAILs) */
	uint64_t logins_refused[LOGIN_REFUSED_COUNT];
	uint64_t handoffs_ok, handoffs_failed;	/* tickets redeemed, or not */
	uint64_t sessions_ended[SESSION_END_COUNT];	/* by their report */
	uint64_t sessions_killed;		/* ended by a signal, no report */
	uint64_t sessions_failed;		/* exited without a report (refused
						 * uid, a crash) */
	uint64_t sessions_kicked;		/* ended by a kick (authctl kick) */
	uint64_t bytes_sent;			/* refusals, plain sessions' bytes */
	struct session_report sessions;		/* sum of all reports (bytes_sent
						 * not used: see bytes_sent) */
	struct fe_stats fe_ended;		/* sum of the last snapshots of
						 * front ends that ended (gauges 0) */
	struct duration_hist durations;		/* login to end of each session */
	uint64_t session_forks;			/* session processes started */
	uint64_t session_reuses;		/* logins given to a spare */
	uint64_t warm_listings;			/* ... that used its kept listing */
	uint64_t fe_restarts;			/* after a crash or an authd loss */
	uint64_t authd_replacements;		/* front ends replaced for an authd loss */
	uint64_t master_authd_lost;		/* the master socket connection */
	uint64_t master_authd_reconnects;
	uint64_t reloads_ok, reloads_failed;
};
extern struct master_stats master_stats;

/* Adds the counters of from to into (gauges are left alone). */
void stats_fe_add(struct fe_stats *into, const struct fe_stats *from);
/* Adds a session's report; bytes_sent only if plain (a TLS session's
 * bytes are counted by the front end that relays them). */
void stats_session_add(const struct session_report *r, bool plain);
/* Adds a session lifetime (login to its end) to master_stats.durations. */
void stats_duration_add(uint64_t ms);

/* Serves the stats socket listen_fd (non-blocking) on base: each client
 * gets the metrics in the Prometheus text format, then EOF.  Takes fd. */
/* Serves the stats socket listen_fd and the metrics-listen socket
 * http_fd (HTTP /metrics); either may be -1. */
void stats_init(struct event_base *base, int listen_fd, int http_fd);
/* Closes the stats socket and every scrape in progress (at exit). */
void stats_shutdown(void);

/* ---- conntab.c: the master's connection table ------------------------- */

/* Buckets of conntab's string tables (and of handoff.c's login-delay
 * table, which hashes with conntab_hash). */
#define CONNTAB_BUCKETS		4096

enum conn_state { C_FREE, C_PREAUTH, C_REDEEM, C_SESSION };

struct frontend;
struct event;

/* One connection, from accept to the end of its session.  The master's
 * (master.c, handoff.c); records never move while pop3d runs. */
struct conn {
	uint32_t gen;
	enum conn_state state;
	struct frontend *fe;		/* C_PREAUTH; later if it relays TLS */
	char rip[64];
	unsigned rport;
	bool addr_pending;		/* PROXY protocol: the header is not read
					 * yet; rip is the balancer's, not counted */
	/* C_REDEEM */
	int fd;
	pid_t fe_pid;
	struct event *timer;
	uint8_t *data;
	size_t data_len;
	char method[8];
	bool secured;
	char tls_info[POP3D_TLS_INFO_MAX];
	char lang[LANG_TAG_MAX + 1];	/* the client's language (LANG), a tag */
	/* C_SESSION */
	pid_t pid;
	char *user;
	uint64_t started_ms;		/* fork of the session */
	bool reported;			/* its report came */
	bool opened;			/* it said its maildrop is open */
	bool maildrop_failed;		/* its report: SESSION_END_MAILDROP */
	bool kicked;			/* ended by authd's KICK */
	uint32_t idx;			/* own slot in the table */
	uint32_t next_free;
};

/* Draws the hash key (after sodium_init) and sets the hook conntab_release
 * calls first with each record it releases (the master drops its front
 * end's load there).  Call once at start-up. */
void conntab_init(void (*on_release)(struct conn *c));
/* A new record in C_PREAUTH for a connection from rip:rport, counted for
 * rip.  Never fails (fatal on allocation failure).  Valid until
 * conntab_release. */
struct conn *conntab_new(const char *rip, unsigned rport);
/* The same for a connection from a PROXY protocol listener whose header
 * has not been read: counted in conntab_active but under no address
 * (addr_pending; peer:port, the balancer, is kept for the log). */
struct conn *conntab_new_pending(const char *peer, unsigned port);
/* c (addr_pending) is the client rip:rport's: counted for rip from now. */
void conntab_set_addr(struct conn *c, const char *rip, unsigned rport);
/* c's id, for a front end or authd to name it by. */
uint64_t conntab_id(const struct conn *c);
/* The live connection named by id, or NULL (ended, or never was). */
struct conn *conntab_find(uint64_t id);
/* Ends c: closes its fd, frees its timer and data (wiped) and its counts.
 * The record stays valid memory (C_FREE) for conntab_next. */
void conntab_release(struct conn *c);
/* c now runs a session in process pid for user (copied), which counts
 * against max-sessions-per-user until c is released. */
void conntab_set_session(struct conn *c, pid_t pid, const char *user);
/* The live connection after prev (NULL: the first), or NULL.  prev may
 * have been released meanwhile. */
struct conn *conntab_next(const struct conn *prev);
/* The connection whose session runs in process pid, or NULL. */
struct conn *conntab_session(pid_t pid);
/* Connections held; ... from rip; sessions of user. */
unsigned conntab_active(void);
unsigned conntab_per_ip(const char *rip);
unsigned conntab_per_user(const char *user);
/* The bucket (< CONNTAB_BUCKETS) of a string key: keyed with the key
 * conntab_init drew, so a client cannot choose keys that collide. */
unsigned conntab_hash(const char *key);
/* A one-line answer to a client we are not going to serve.  Best effort:
 * the socket is non-blocking and the line is far below its buffer. */
void conntab_refuse(int fd, const char *line);

/* ---- handoff.c: the master's side of a login --------------------------- */

/* Start-up, before daemonize: makes the session report socket (fatal if
 * it cannot). */
void handoff_init(void);
/* Start-up: serves the report socket on base (which authd's master socket
 * and the spares' channels use too). */
void handoff_start(struct event_base *base);
/* Start-up and every reload: the configuration new sessions get (conf
 * must stay valid until the next call) and login-delay in ms (0: none).
 * Spares forked under an older configuration are let go. */
void handoff_configure(const struct config *conf, uint64_t login_delay_ms);
/* An IPC_HANDOFF for c (C_PREAUTH, checked by the caller to belong to the
 * front end fe_pid): redeems m->ticket with authd, then applies the
 * per-user limits and starts the session, or refuses the client.  Takes
 * fd (the client, or a TLS relay's end). */
void handoff_redeem(struct conn *c, const struct ipc_msg *m, int fd, pid_t fe_pid);
/* The master reaped pid (not a front end's) with status: books its
 * session's end and forgets it as a spare. */
void handoff_child_exited(pid_t pid, int status);
/* SIGTERM: signals every session and spare. */
void handoff_stop(void);
/* Books every session report queued now (a scrape counts them). */
void handoff_reports_read(void);
/* Session processes waiting for a login. */
unsigned handoff_spares(void);

/* ---- session_proc.c: the session process ------------------------------ */

struct session_job;
/* The session process, right after the master's fork: closes every
 * descriptor but fd (the client), chan (its channel to the master, or -1
 * if it serves only this login) and report_fd (the report socket), wipes
 * the ticket keys, becomes first->uid/gid, serves first and then, with
 * session-reuse, the logins the master sends on chan.  Never returns. */
void session_main(const struct config *conf, const struct session_job *first, int fd,
		  int chan, int report_fd) __attribute__((noreturn));

/* ---- master.c ----------------------------------------------------------- */

/* What the master knows right now, for stats.c. */
struct master_gauges {
	unsigned preauth;		/* in the AUTHORIZATION dialogue */
	unsigned awaiting;		/* waiting for authd: a front end's AUTH or
					 * the master's REDEEM */
	unsigned sessions;		/* in a session */
	unsigned spares;		/* session processes waiting for a login */
	unsigned frontends;		/* front ends taking new connections */
	unsigned frontends_retiring;	/* replaced, finishing their connections */
	uint64_t uptime_s;
	struct fe_stats fe;		/* every front end's counters: ended ones
					 * plus each live one's latest snapshot */
};
void master_gauges(struct master_gauges *g);

/* ---- login.c: the front end -------------------------------------------- */

/* Runs a front end in the current (forked) process: chan is its socket to
 * the master, authfd a connection to authd opened before the privilege
 * drop (or -1).  Never returns. */
void login_main(const struct config *conf, int chan, int authfd,
		uid_t uid, gid_t gid) __attribute__((noreturn));

/* ---- authc.c: the front end's authd client ----------------------------- */

struct authc;
enum authc_result { AUTHC_OK, AUTHC_FAIL, AUTHC_TEMPFAIL };

struct authc_reply {
	enum authc_result result;
	const char *user, *ticket;	/* AUTHC_OK */
	const char *reason;		/* AUTHC_TEMPFAIL: why, for the log */
};

/* Called once per request with its outcome; reply and its strings are
 * valid only during the call. */
typedef void authc_cb(void *ctx, const struct authc_reply *reply);

/* Connects to authd's protocol socket at path and sends the handshake at
 * once (blocking, a few bytes into an empty socket), without asking for
 * administration: call it before the privilege drop and before reading
 * any untrusted byte, so that nothing later can ask.  Returns the fd, for
 * authc_new() or authc_set_fd(), or -1 (logged). */
int authc_connect(const char *path);
/* Wraps fd (from authc_connect(), or -1: not connected)
 * in an authd client on base.  lost is called once when the connection
 * breaks (after every pending request got AUTHC_TEMPFAIL). */
struct authc *authc_new(struct event_base *base, int fd, void (*lost)(void *), void *ctx);
void authc_free(struct authc **acp);
bool authc_connected(const struct authc *ac);
/* Replaces the connection with fd (a reconnect; from authc_connect()). */
void authc_set_fd(struct authc *ac, int fd);
/* Sends an AUTH request; user+pass or (mech PLAIN) resp.  The strings are
 * copied into the line and wiped there after sending.  Returns a request
 * handle (> 0) or 0 if not connected / the line does not fit; cb is then
 * not called. */
uint64_t authc_auth(struct authc *ac, const char *user, const char *pass,
		    const char *plain_resp, const char *rip, unsigned rport,
		    const char *lip, unsigned lport, bool secured,
		    authc_cb *cb, void *cbctx);
/* Forgets request handle: cb will not be called for it. */
void authc_cancel(struct authc *ac, uint64_t handle);

#endif
