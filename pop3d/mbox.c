/*
 * mbox.c - the mbox maildrop of a POP3 session: a BSD mail spool such as
 * /var/mail/USER ("maildrop = mbox:/var/mail/%u").
 *
 * Runs in the session process, as the mailbox owner, and nowhere else
 * (liblockfile may run its setgid helper /usr/bin/dotlockfile from here:
 * a separate program, which gains group mail only for its own job).
 *
 * DESIGN
 * - Locking, the way Debian's mail programs lock (Debian Policy 11.6:
 *   fcntl() locking combined with a dot lock, "fcntl() first and dot
 *   locking after this, or alternatively implement the two locking
 *   methods in a non blocking way"; liblockfile's maillock(3) does the
 *   same).  We do both: an fcntl write lock on the whole file first, then
 *   the dot lock PATH.lock, each tried without blocking; if the dot lock
 *   is taken we drop the fcntl lock too and try both again every
 *   POP3D_MBOX_LOCK_RETRY_MS, for POP3D_MBOX_LOCK_WAIT_MS, then answer
 *   -ERR [IN-USE].  Never holding one lock while waiting for the other
 *   means no deadlock with a program that takes them in the other order
 *   (procmail and dovecot-lda take the dot lock first).  The fcntl lock
 *   is an open file description lock (F_OFD_SETLK): it conflicts with
 *   the classic fcntl locks of procmail, postfix local(8), exim, mutt and
 *   Dovecot, and, unlike them, is not dropped when some other descriptor
 *   of the file is closed.  The dot lock is made by liblockfile
 *   (lockfile_create with our pid in it): where the spool directory is
 *   not writable by us (/var/mail is root:mail 2775 and the session is
 *   not in group mail), liblockfile runs its setgid-mail helper
 *   dotlockfile, which agrees only for a file the caller owns in a
 *   directory writable by group mail.  A dot lock is stale the way
 *   liblockfile judges it: its pid is not a live process, or, without a
 *   pid, it is older than 5 minutes; liblockfile removes it then.  Others
 *   judge ours by its age (Dovecot overrides a dot lock unchanged for 2
 *   minutes, procmail after 17): a thread touches it every
 *   POP3D_MBOX_TOUCH_S while the session lasts.  The session holds both
 *   locks from the scan to its end, so deliveries wait (procmail and
 *   dovecot-lda retry; postfix and exim defer and retry later).  Before
 *   UPDATE the dot lock must still hold our pid: if another program broke
 *   it, nothing is deleted.  A session killed with SIGKILL leaves its dot
 *   lock behind with a dead pid: liblockfile and Dovecot remove it at
 *   once, procmail only after its lock timeout; a session ended by
 *   SIGTERM (pop3d stopping) or SIGINT removes it from its signal handler
 *   (on_term).  A missing mbox file is an empty maildrop, opened without
 *   a lock.
 * - Scanning: one pass of read()s of POP3D_MBOX_READ bytes (nothing is
 *   mapped: a file truncated under us must not become SIGBUS).  A message
 *   starts at a "From " line at the start of the file or after a blank
 *   line, which has a time (d:dd) in its first MBOX_FROM_MAX bytes: what
 *   mbox writers put there (mboxo, mboxrd, procmail, postfix, Dovecot,
 *   c-client), and not "From here on..." in a body.  Content-Length: is
 *   not trusted (Dovecot and Solaris write it, nobody keeps it true).  The
 *   message is everything after its From_ line up to the blank line before
 *   the next one (the separator, which is not part of it), or the end of
 *   the file (a last blank line is likewise the separator).  Bytes are
 *   sent as the file holds them: ">From " quoting is not undone, because
 *   a file does not say whether it is mboxo (where ">From " in a body is
 *   ambiguous and must stay) or mboxrd; mutt and mailutils show it quoted
 *   too.  CRLF conversion and dot-stuffing are maildir.c's converter, on
 *   the fly; sizes for LIST/STAT are counted in the scan the same way (a
 *   bare LF counts 2, CRLF 2, a last line without LF gets a CRLF).  A file
 *   that does not start with a From_ line is refused (-ERR [SYS/PERM]),
 *   never guessed at.
 * - The c-client (UW-IMAP, Pine, Alpine) metadata message: the first
 *   message, if its header has X-IMAP: or X-IMAPbase: and its Subject: has
 *   "DON'T DELETE THIS MESSAGE", is hidden from POP3 and never deleted.
 *   Only the first message can be: a sender who forges it elsewhere gets
 *   nothing, and in an empty spool hides only their own message.  Status:,
 *   X-Status:, X-UID: and every other header are never changed.
 * - UIDL: an X-UIDL: header (qpopper and others wrote it) is the UIDL when
 *   it is 1-70 characters 0x21..0x7e, the only one in its message, not
 *   like our digests (32 hex digits), and held by no other message: so
 *   clients keep their state when a spool moves to us from such a server.
 *   Otherwise the UIDL is a digest (BLAKE2b, 128 bits, in hex) of the
 *   From_ line and the header lines, leaving out the ones other programs
 *   rewrite (Status, X-Status, X-UID, X-Keywords, X-IMAP, X-IMAPbase,
 *   Content-Length, Lines, X-UIDL): the same after appends, deletions and
 *   rewrites by MUAs, and by us.  Two messages with the same From_ line and
 *   header (a message delivered twice in the same second) have the same
 *   digest: the second and later, in file order, get digest("#k"), so the
 *   ids are unique, but deleting the first gives its id to the second.  A
 *   forged X-UIDL: equal to another message's makes both fall back to the
 *   digest: the other message may be fetched once more, never skipped.
 * - UPDATE rewrites the file in place (its inode, owner, group and mode
 *   stay; a rename would need a writable spool directory and lose the
 *   group), under both locks.  Only what lies from the first deleted
 *   message on is touched.  Let K be the kept records from there (each
 *   From_ line through its separator), plus whatever was appended after
 *   our scan (kept as it is).  The From_ line of every record from there
 *   is first checked at its offset: if the file changed under us in any
 *   other way than an append, nothing is deleted.  Then:
 *     (a) if every deleted record lies before the first kept one and they
 *         are at least as long as K (the usual "delete the oldest"), K is
 *         copied down over the deleted bytes, front to back, fdatasync,
 *         ftruncate.  Each write lands on deleted bytes only: every kept
 *         message stays whole where it was until the truncate.
 *     (b) otherwise K is first appended at the end of the file (after a
 *         blank line), fdatasync: every kept message is now there twice.
 *         Then K is copied from that copy down to the first deleted
 *         record, fdatasync, and the file is truncated after it, fsync.
 *         While the first copy is written the originals are whole; while
 *         the second is, the copy at the end is whole.
 *   So a kill -9 (or an I/O error) at any moment leaves every message that
 *   was not deleted whole, byte for byte, somewhere in the file; what it
 *   may leave besides: duplicates of kept messages, deleted messages that
 *   come back, and at most one message made of a cut-off copy followed by
 *   leftover bytes.  Never a loss.  The price of (b) is writing K twice
 *   and room for K on the disk (and in a quota) for a moment; with no room
 *   the append is cut back and nothing is deleted (-ERR at QUIT).
 * - Memory: one struct mbox_entry per message (about 160 bytes: 50,000
 *   messages take 8 MB), the read buffer (POP3D_MBOX_READ) during the
 *   scan, and a copy buffer of the same size during UPDATE; nothing else
 *   grows with the spool.  A header line of any length is read in
 *   pieces; only its first MBOX_LOOKAHEAD bytes are examined.
 * - EXPIRE: there is no per-message record in an mbox.  EXPIRE 0 deletes
 *   the messages retrieved (RETR or TOP) in the session; a longer policy
 *   deletes nothing by itself (allowed: EXPIRE is the shortest time the
 *   server keeps a message, RFC 2449 section 6.7).
 */
#include <errno.h>
#include <fcntl.h>
#include <lockfile.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "common/alloc.h"
#include "common/log.h"
#include "pop3d/pop3d.h"

/* A From_ line is at most this long (RFC 5322's 998 + CRLF, with room). */
#define MBOX_FROM_MAX	1000
/* Bytes of a line the scanner needs to see before deciding what the line
 * is (a From_ line, a header it looks into). */
#define MBOX_LOOKAHEAD	1024
#define MBOX_DIGEST	16

/* What the scanner reports for one message. */
struct scan_msg {
	uint64_t from_off;	/* its From_ line */
	uint64_t body_off;	/* its first byte, after the From_ line */
	uint64_t end_off;	/* one past its last byte (separator excluded) */
	uint64_t octets;	/* RFC 1939 size */
	uint64_t from_hash;	/* of the From_ line, checked at UPDATE */
	uint32_t from_len;
	bool cclient;		/* the c-client metadata message */
	bool xuidl_ok;		/* xuidl holds a usable X-UIDL */
	char xuidl[POP3D_MAX_UIDL + 1];
	uint8_t digest[MBOX_DIGEST];
};

struct scanner {
	uint64_t off;		/* file offset of the next byte fed */
	uint64_t nmsgs;
	bool started;		/* a From_ line was seen */
	bool bad;		/* the data does not start with a From_ line */
	bool stop;		/* the callback said stop */
	bool line_start;	/* the next byte starts a line */
	bool prev_blank;	/* the last complete line was blank */
	size_t blank_raw;	/* ... and that many bytes long (1 or 2) */
	uint64_t line_len;	/* bytes of the current line so far */
	uint8_t line_first, last_byte;
	bool in_header, skip_header;
	bool subject_cclient, ximap;
	unsigned nxuidl;
	struct scan_msg cur;
	crypto_generichash_state hs;
	/* Called with each message as it ends; returns -1 to stop. */
	int (*done)(void *ctx, const struct scan_msg *m);
	void *ctx;
};

struct mbox_entry {
	struct maildir_msg m;	/* name is NULL */
	uint64_t from_off, body_off, end_off;
	uint64_t from_hash;
	uint32_t from_len;
	bool from_xuidl;	/* m.uidl is its X-UIDL */
	bool cclient;
	uint8_t digest[MBOX_DIGEST];
};

struct mbox {
	char *path, *lockpath;
	int fd;			/* -1: no file (empty maildrop) */
	bool dotlocked;
	struct stat st;		/* at the scan */
	uint64_t scanned_end;	/* bytes scanned */
	struct mbox_entry *msgs;
	size_t n, cap;
	size_t hidden;		/* leading messages POP3 does not see (0 or 1) */
	/* the dot lock toucher */
	pthread_t toucher;
	bool toucher_running, toucher_stop;
	pthread_mutex_t tmu;
	pthread_cond_t tcv;
};

static enum maildir_status status_of(int err)
{
	switch (err) {
	case ENOENT: case ENOTDIR: case EACCES: case EPERM: case ELOOP: case EROFS:
		return MAILDIR_PERM;
	default:
		return MAILDIR_TEMP;
	}
}

/* ---- the scanner -------------------------------------------------------- */

static uint64_t fnv64(const uint8_t *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* Is p[0..len) (a whole line with its LF) a From_ line? */
static bool from_line(const uint8_t *p, size_t len)
{
	if (len < 6 || len > MBOX_FROM_MAX || memcmp(p, "From ", 5) != 0)
		return false;
	for (size_t i = 6; i + 2 < len; i++)
		if (p[i] == ':' && p[i - 1] >= '0' && p[i - 1] <= '9' &&
		    p[i + 1] >= '0' && p[i + 1] <= '9' && p[i + 2] >= '0' && p[i + 2] <= '9')
			return true;
	return false;
}

static bool header_is(const uint8_t *p, size_t len, const char *name)
{
	size_t nl = strlen(name);

	return len > nl && p[nl] == ':' && strncasecmp((const char *)p, name, nl) == 0;
}

/* Headers other programs rewrite: left out of the digest. */
static bool header_volatile(const uint8_t *p, size_t len)
{
	static const char *const names[] = {
		"Status", "X-Status", "X-UID", "X-Keywords", "X-IMAP", "X-IMAPbase",
		"Content-Length", "Lines", "X-UIDL",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (header_is(p, len, names[i]))
			return true;
	return false;
}

/* An X-UIDL: header line (known part p[0..len)): its value, if usable. */
static void header_xuidl(struct scanner *s, const uint8_t *p, size_t len)
{
	size_t i = 7, start, end;	/* after "X-UIDL:" */

	if (++s->nxuidl > 1) {
		s->cur.xuidl_ok = false;	/* two of them: neither */
		return;
	}
	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	start = i;
	while (i < len && p[i] > 0x20 && p[i] < 0x7f)
		i++;
	end = i;
	while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
		i++;
	if (i >= len || p[i] != '\n')
		return;			/* more on the line, or cut: not used */
	if (!uidl_ok((const char *)p + start, end - start) ||
	    uidl_hashlike((const char *)p + start, end - start))
		return;
	memcpy(s->cur.xuidl, p + start, end - start);
	s->cur.xuidl[end - start] = '\0';
	s->cur.xuidl_ok = true;
}

/* The start of a line that is not a From_ line; p[0..len) is what is known
 * of it (all of it with its LF, or MBOX_LOOKAHEAD bytes, or the end). */
static void line_begin(struct scanner *s, const uint8_t *p, size_t len)
{
	s->prev_blank = false;
	s->line_first = p[0];
	if (!s->in_header)
		return;
	if (p[0] == '\n' || (p[0] == '\r' && len >= 2 && p[1] == '\n')) {
		s->in_header = false;
		return;
	}
	if (p[0] == ' ' || p[0] == '\t')
		return;			/* folded: as the line it continues */
	s->skip_header = header_volatile(p, len);
	if (header_is(p, len, "X-UIDL"))
		header_xuidl(s, p, len);
	else if (header_is(p, len, "X-IMAP") || header_is(p, len, "X-IMAPbase"))
		s->ximap = true;
	else if (header_is(p, len, "Subject") &&
		 memmem(p, len, "DON'T DELETE THIS MESSAGE", 25) != NULL)
		s->subject_cclient = true;
}

/* Bytes of the current line, ending with its LF if nl. */
static void line_bytes(struct scanner *s, const uint8_t *p, size_t len, bool nl)
{
	if (s->in_header && !s->skip_header)
		crypto_generichash_update(&s->hs, p, len);
	s->cur.octets += len;
	if (nl) {
		uint8_t before = len >= 2 ? p[len - 2] : s->last_byte;
		bool blank;

		if (len + s->line_len < 2 || before != '\r')
			s->cur.octets++;	/* LF becomes CRLF */
		s->line_len += len;
		blank = s->line_len == 1 || (s->line_len == 2 && s->line_first == '\r');
		s->prev_blank = blank;
		s->blank_raw = (size_t)s->line_len;
		s->line_start = true;
		s->line_len = 0;
	} else {
		s->line_len += len;
	}
	s->last_byte = p[len - 1];
}

/* Ends the current message at s->off (the next From_ line, or the end). */
static void msg_end(struct scanner *s)
{
	struct scan_msg *m = &s->cur;

	m->end_off = s->off;
	if (!s->line_start) {
		m->octets += 2;		/* last line without LF: gets CRLF */
	} else if (s->prev_blank && m->end_off - s->blank_raw >= m->body_off) {
		m->end_off -= s->blank_raw;	/* the separator */
		m->octets -= 2;
	}
	crypto_generichash_final(&s->hs, m->digest, sizeof(m->digest));
	m->cclient = s->nmsgs == 0 && s->ximap && s->subject_cclient;
	s->nmsgs++;
	if (s->done(s->ctx, m) == -1)
		s->stop = true;
}

static void msg_begin(struct scanner *s, const uint8_t *p, size_t len)
{
	s->started = true;
	memset(&s->cur, 0, sizeof(s->cur));
	s->cur.from_off = s->off;
	s->cur.body_off = s->off + len;
	s->cur.from_hash = fnv64(p, len);
	s->cur.from_len = (uint32_t)len;
	crypto_generichash_init(&s->hs, NULL, 0, MBOX_DIGEST);
	crypto_generichash_update(&s->hs, p, len);
	s->in_header = true;
	s->skip_header = false;
	s->ximap = s->subject_cclient = false;
	s->nxuidl = 0;
	s->prev_blank = false;
	s->line_start = true;
	s->line_len = 0;
}

static void scan_init(struct scanner *s, int (*done)(void *, const struct scan_msg *), void *ctx)
{
	memset(s, 0, sizeof(*s));
	s->line_start = true;
	s->prev_blank = true;		/* the start of the file */
	s->done = done;
	s->ctx = ctx;
}

/* The fast path through a body: whole lines that cannot hold a separator,
 * counted in bulk.  Called at a line start in a body after a line that was
 * not blank; takes every line up to the next blank line that is followed
 * by a "From " line (the normal path judges that one), or, if there is
 * none in reach, up to the last LF that leaves room to see one.  Returns
 * the bytes taken (whole lines; 0 if none). */
static size_t body_bulk(struct scanner *s, const uint8_t *buf, size_t len)
{
	const uint8_t *p = buf, *q, *last = NULL;
	size_t end = 0, nlf = 0, ncrlf = 0;

	/* A line at a time with memchr (memory speed), LFs counted on the
	 * way; an LF followed by "From " (rare in a body: writers quote it)
	 * is looked at.  LFs in the last 8 bytes are left: what follows them
	 * cannot be judged yet. */
	if (len <= 8)
		return 0;
	while ((q = memchr(p, '\n', len - 8 - (size_t)(p - buf))) != NULL) {
		nlf++;
		if (q > buf && q[-1] == '\r')
			ncrlf++;
		last = q;
		if (memcmp(q + 1, "From ", 5) == 0) {
			/* the line ending at q blank ("\n" or "\r\n")?  buf[-1]
			 * is the LF before our line start.  Stop before it. */
			if (q == buf || q[-1] == '\n') {
				end = (size_t)(q - buf);
				nlf--;
				break;
			}
			if (q[-1] == '\r' && (q - 1 == buf || q[-2] == '\n')) {
				end = (size_t)(q - 1 - buf);
				nlf--;
				ncrlf--;
				break;
			}
		}
		p = q + 1;
	}
	if (q == NULL)
		end = last != NULL ? (size_t)(last - buf) + 1 : 0;
	if (end == 0)
		return 0;
	s->cur.octets += end + nlf - ncrlf;	/* each bare LF becomes CRLF */
	/* the last line taken: blank? */
	if (end == 1 || buf[end - 2] == '\n') {
		s->prev_blank = true;
		s->blank_raw = 1;
	} else if (buf[end - 2] == '\r' && (end == 2 || buf[end - 3] == '\n')) {
		s->prev_blank = true;
		s->blank_raw = 2;
	} else {
		s->prev_blank = false;
	}
	s->last_byte = '\n';
	s->line_len = 0;
	return end;
}

/* Feeds buf[0..len), the bytes at s->off.  Returns how many were taken:
 * fewer than len only without eof, when a line start needs more bytes to
 * be judged; the caller gives them again with more after them (it keeps
 * at most MBOX_LOOKAHEAD bytes).  With eof, ends the last message.  Stops
 * taking bytes once s->bad or s->stop is set. */
static size_t scan_feed(struct scanner *s, const uint8_t *buf, size_t len, bool eof)
{
	size_t pos = 0;

	while (pos < len && !s->bad && !s->stop) {
		const uint8_t *nl;
		size_t seg;

		if (s->line_start && s->started && !s->in_header && !s->prev_blank) {
			seg = body_bulk(s, buf + pos, len - pos);
			pos += seg;
			s->off += seg;
			if (pos == len)
				break;
		}
		if (s->line_start) {
			size_t avail = len - pos;
			size_t look = avail < MBOX_LOOKAHEAD ? avail : MBOX_LOOKAHEAD;

			nl = memchr(buf + pos, '\n', look);
			if (nl == NULL && avail < MBOX_LOOKAHEAD && !eof)
				return pos;
			seg = nl != NULL ? (size_t)(nl - (buf + pos)) + 1 : look;
			if (s->prev_blank && nl != NULL && from_line(buf + pos, seg)) {
				if (s->started) {
					msg_end(s);
					if (s->stop)
						break;	/* s->cur: the one refused */
				}
				msg_begin(s, buf + pos, seg);
				pos += seg;
				s->off += seg;
				continue;
			}
			if (!s->started) {
				s->bad = true;
				break;
			}
			line_begin(s, buf + pos, seg);
			s->line_start = false;
		}
		nl = memchr(buf + pos, '\n', len - pos);
		seg = nl != NULL ? (size_t)(nl - (buf + pos)) + 1 : len - pos;
		line_bytes(s, buf + pos, seg, nl != NULL);
		pos += seg;
		s->off += seg;
	}
	if (eof && pos == len && s->started && !s->bad && !s->stop)
		msg_end(s);
	return pos;
}

/* ---- UIDLs -------------------------------------------------------------- */

static void hex_digest(const uint8_t *d, char *out)
{
	sodium_bin2hex(out, 2 * MBOX_DIGEST + 1, d, MBOX_DIGEST);
}

static int cmp_uidl_idx(const void *a, const void *b, void *arg)
{
	const struct mbox_entry *m = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	int c = strcmp(m[x].m.uidl, m[y].m.uidl);

	return c != 0 ? c : (x < y ? -1 : x > y);
}

/* Makes every UIDL unique (DESIGN): an X-UIDL another message shares goes
 * back to the digest; the second and later holders of a digest get
 * digest("#k").  A digest is 128 bits, so one more round settles it. */
static void assign_uidls(struct mbox_entry *e, size_t n)
{
	size_t *idx;

	for (size_t i = 0; i < n; i++)
		if (!e[i].from_xuidl)
			hex_digest(e[i].digest, e[i].m.uidl);
	if (n < 2)
		return;
	idx = xcalloc(n, sizeof(*idx));
	for (int round = 0; round < 3; round++) {
		bool changed = false;

		for (size_t i = 0; i < n; i++)
			idx[i] = i;
		qsort_r(idx, n, sizeof(*idx), cmp_uidl_idx, e);
		for (size_t i = 0; i < n;) {
			size_t end = i + 1;

			while (end < n && strcmp(e[idx[end]].m.uidl, e[idx[i]].m.uidl) == 0)
				end++;
			for (size_t k = i; k < end && end - i > 1; k++) {
				struct mbox_entry *x = &e[idx[k]];

				if (x->from_xuidl) {
					x->from_xuidl = false;
					hex_digest(x->digest, x->m.uidl);
					changed = true;
				} else if (k > i) {
					crypto_generichash_state hs;
					char tag[24];
					int tl = snprintf(tag, sizeof(tag), "#%zu", k - i);

					crypto_generichash_init(&hs, NULL, 0, MBOX_DIGEST);
					crypto_generichash_update(&hs, x->digest, MBOX_DIGEST);
					crypto_generichash_update(&hs, (const uint8_t *)tag, (size_t)tl);
					crypto_generichash_final(&hs, x->digest, MBOX_DIGEST);
					hex_digest(x->digest, x->m.uidl);
					changed = true;
				}
			}
			i = end;
		}
		if (!changed)
			break;
	}
	free(idx);
}

/* ---- locking -------------------------------------------------------------- */

static int fcntl_lock(int fd, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET };

	return fcntl(fd, F_OFD_SETLK, &fl);
}

unsigned mbox_touch_interval_s = POP3D_MBOX_TOUCH_S;

static void *toucher_main(void *arg)
{
	struct mbox *mb = arg;
	struct timespec ts;

	pthread_mutex_lock(&mb->tmu);
	while (!mb->toucher_stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += mbox_touch_interval_s;
		while (!mb->toucher_stop &&
		       pthread_cond_timedwait(&mb->tcv, &mb->tmu, &ts) != ETIMEDOUT)
			;
		if (!mb->toucher_stop && lockfile_touch(mb->lockpath) == -1)
			log_warn("mbox: touch %s", mb->lockpath);
	}
	pthread_mutex_unlock(&mb->tmu);
	return NULL;
}

static void toucher_start(struct mbox *mb)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&mb->tcv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&mb->tmu, NULL);
	if (pthread_create(&mb->toucher, NULL, toucher_main, mb) != 0)
		log_warnx("mbox: no thread to keep %s fresh", mb->lockpath);
	else
		mb->toucher_running = true;
}

static void toucher_stop(struct mbox *mb)
{
	if (!mb->toucher_running)
		return;
	pthread_mutex_lock(&mb->tmu);
	mb->toucher_stop = true;
	pthread_cond_signal(&mb->tcv);	/* pairs with the timed wait */
	pthread_mutex_unlock(&mb->tmu);
	pthread_join(mb->toucher, NULL);
	pthread_cond_destroy(&mb->tcv);
	pthread_mutex_destroy(&mb->tmu);
	mb->toucher_running = false;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* What a lockfile_create result other than L_SUCCESS and L_MAXTRYS means
 * to an operator. */
static const char *lockfile_error(int r)
{
	switch (r) {
	case L_TMPLOCK:
		return "cannot write in the spool directory, and liblockfile's helper does "
		       "not apply (it needs a mailbox the user owns in a directory of group "
		       "mail, writable by the group)";
	case L_ERROR:
		return "liblockfile failed (is dotlockfile, from liblockfile-bin, "
		       "installed setgid mail?)";
	case L_RMSTALE:
		return "a stale dot lock cannot be removed";
	case L_NAMELEN:
		return "path too long";
	case L_ORPHANED:
		return "orphaned";
	default:
		return "liblockfile error";
	}
}

/* Both locks (DESIGN), or neither.  Returns MAILDIR_OK, MAILDIR_IN_USE
 * after POP3D_MBOX_LOCK_WAIT_MS, or MAILDIR_TEMP (logged). */
static enum maildir_status mbox_lock(struct mbox *mb, const char **error_r)
{
	uint64_t deadline = now_ms() + POP3D_MBOX_LOCK_WAIT_MS;

	for (;;) {
		const struct timespec pause = { 0, POP3D_MBOX_LOCK_RETRY_MS * 1000000L };
		int r;

		if (fcntl_lock(mb->fd, F_WRLCK) == -1) {
			if (errno != EAGAIN && errno != EACCES && errno != EINTR) {
				log_warn("mbox: fcntl lock %s", mb->path);
				*error_r = N_("cannot lock maildrop");
				return MAILDIR_TEMP;
			}
		} else {
			r = lockfile_create(mb->lockpath, 0, L_PID);
			if (r == L_SUCCESS) {
				mb->dotlocked = true;
				return MAILDIR_OK;
			}
			fcntl_lock(mb->fd, F_UNLCK);
			if (r != L_MAXTRYS) {
				log_warnx("mbox: cannot create %s: %s", mb->lockpath,
					  lockfile_error(r));
				*error_r = N_("cannot lock maildrop");
				return MAILDIR_TEMP;
			}
		}
		if (now_ms() >= deadline) {
			*error_r = N_("maildrop is locked by another program");
			return MAILDIR_IN_USE;
		}
		nanosleep(&pause, NULL);
	}
}

/* A session ended by SIGTERM or SIGINT (pop3d stopping) removes its dot
 * lock on the way out: procmail and postfix judge a dot lock only by its
 * age, and would wait minutes for one left behind.  From the handler, only
 * async-signal-safe calls: unlink, or where the spool directory is group
 * mail's, liblockfile's helper run with _Fork and execve; then the default
 * action.  (SIGKILL cannot be caught: that dot lock stays, with a dead
 * pid.) */
#define DOTLOCK_HELPER	"/usr/bin/dotlockfile"
static char sig_lockpath[4096];
static volatile sig_atomic_t sig_armed;

static void on_term(int sig)
{
	if (sig_armed && unlink(sig_lockpath) == -1 && errno == EACCES) {
		static char *const envp[] = { NULL };
		char *const argv[] = { (char *)"dotlockfile", (char *)"-u", (char *)"-q",
				       sig_lockpath, NULL };
		pid_t pid = _Fork();

		if (pid == 0) {
			execve(DOTLOCK_HELPER, argv, envp);
			_exit(127);
		}
		if (pid > 0)
			while (waitpid(pid, NULL, 0) == -1 && errno == EINTR)
				;
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

static void term_arm(const struct mbox *mb)
{
	size_t len = strlen(mb->lockpath);

	if (len >= sizeof(sig_lockpath))
		return;
	memcpy(sig_lockpath, mb->lockpath, len + 1);
	sig_armed = 1;
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
}

static void term_disarm(void)
{
	if (!sig_armed)
		return;
	signal(SIGTERM, SIG_DFL);	/* privdrop_child_signals' setting */
	signal(SIGINT, SIG_DFL);
	sig_armed = 0;
}

/* Is the dot lock still ours (it holds our pid)? */
static bool dotlock_ours(const struct mbox *mb)
{
	char buf[32];
	ssize_t n;
	int fd = open(mb->lockpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd == -1)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return strtol(buf, NULL, 10) == (long)getpid();
}

/* ---- open ----------------------------------------------------------------- */

size_t mbox_max_messages = POP3D_MAX_MESSAGES;

static int scan_collect(void *ctx, const struct scan_msg *sm)
{
	struct mbox *mb = ctx;
	struct mbox_entry *e;

	if (mb->n >= mbox_max_messages) {
		log_warnx("mbox: %s: more than %zu messages, the rest not listed", mb->path,
			  mbox_max_messages);
		return -1;
	}
	if (mb->n == mb->cap) {
		mb->cap = mb->cap != 0 ? 2 * mb->cap : 64;
		mb->msgs = reallocarray(mb->msgs, mb->cap, sizeof(*mb->msgs));
		if (mb->msgs == NULL)
			fatal("reallocarray");
	}
	e = &mb->msgs[mb->n++];
	memset(e, 0, sizeof(*e));
	e->from_off = sm->from_off;
	e->body_off = sm->body_off;
	e->end_off = sm->end_off;
	e->from_hash = sm->from_hash;
	e->from_len = sm->from_len;
	e->cclient = sm->cclient;
	e->m.size = sm->octets;
	memcpy(e->digest, sm->digest, sizeof(e->digest));
	if (sm->xuidl_ok) {
		e->from_xuidl = true;
		memcpy(e->m.uidl, sm->xuidl, sizeof(e->m.uidl));
	}
	return 0;
}

/* Reads the whole file once through the scanner.  Returns 0, or -1 with
 * *error_r (and errno for a read error, 0 for a file that is no mbox). */
static int mbox_scan(struct mbox *mb, const char **error_r)
{
	struct scanner s;
	uint8_t *buf = xmalloc(POP3D_MBOX_READ);
	size_t have = 0;
	bool eof = false;

	scan_init(&s, scan_collect, mb);
	(void)posix_fadvise(mb->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (!eof && !s.bad && !s.stop) {
		ssize_t n = pread(mb->fd, buf + have, POP3D_MBOX_READ - have,
				  (off_t)(s.off + have));
		size_t used;

		if (n == -1) {
			if (errno == EINTR)
				continue;
			log_warn("mbox: read %s", mb->path);
			*error_r = N_("cannot read maildrop");
			free(buf);
			return -1;
		}
		eof = n == 0;
		have += (size_t)n;
		used = scan_feed(&s, buf, have, eof);
		memmove(buf, buf + used, have - used);
		have -= used;
	}
	free(buf);
	if (s.bad) {
		log_warnx("mbox: %s does not start with a From_ line: not an mbox", mb->path);
		*error_r = N_("maildrop is not an mbox file");
		errno = 0;
		return -1;
	}
	/* Cut short: the scan ends where the first message not listed
	 * starts, so that UPDATE keeps it and all after it as they are. */
	mb->scanned_end = s.stop ? s.cur.from_off : s.off;
	if (mb->n > 0 && mb->msgs[0].cclient)
		mb->hidden = 1;
	assign_uidls(mb->msgs, mb->n);
	return 0;
}

enum maildir_status mbox_open(const char *path, struct mbox **mb_r, const char **error_r)
{
	struct mbox *mb = xcalloc(1, sizeof(*mb));
	enum maildir_status st;
	struct stat pst;

	mb->fd = -1;
	mb->path = xstrdup(path);
	if (asprintf(&mb->lockpath, "%s.lock", path) == -1)
		fatal("asprintf");
	for (int tries = 0;; tries++) {
		/* O_NONBLOCK: a FIFO planted under the name must not hang us;
		 * O_NOFOLLOW: the spool names a file, not a link. */
		mb->fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
		if (mb->fd == -1 && errno == ENOENT) {
			*mb_r = mb;		/* no mail yet: empty */
			return MAILDIR_OK;
		}
		if (mb->fd == -1) {
			st = status_of(errno);
			*error_r = N_("cannot open maildrop");
			log_warn("mbox: %s", path);
			goto out_free;
		}
		if (fstat(mb->fd, &mb->st) == -1 || !S_ISREG(mb->st.st_mode)) {
			st = MAILDIR_PERM;
			*error_r = N_("maildrop is not a file");
			log_warnx("mbox: %s is not a regular file", path);
			goto out_free;
		}
		/* As Postfix's local(8) checks before it appends: the spool
		 * is the user's own, with one name.  In a world-writable
		 * spool directory another user could have created it, or
		 * linked another file there, and we would serve and rewrite
		 * that. */
		if (mb->st.st_uid != geteuid() || mb->st.st_nlink != 1) {
			st = MAILDIR_PERM;
			*error_r = N_("maildrop is not the user's own file");
			log_warnx("mbox: %s: owned by uid %ld with %lu links, not by uid %ld with one; "
				  "refused", path, (long)mb->st.st_uid, (unsigned long)mb->st.st_nlink,
				  (long)geteuid());
			goto out_free;
		}
		st = mbox_lock(mb, error_r);
		if (st != MAILDIR_OK)
			goto out_free;
		/* The name may have been given to another file while we waited
		 * (a program that rewrites by rename): lock that one instead. */
		if (stat(path, &pst) == 0 && pst.st_dev == mb->st.st_dev &&
		    pst.st_ino == mb->st.st_ino)
			break;
		lockfile_remove(mb->lockpath);
		mb->dotlocked = false;
		close(mb->fd);
		mb->fd = -1;
		if (tries == 3) {
			st = MAILDIR_TEMP;
			*error_r = N_("maildrop keeps changing");
			goto out_free;
		}
	}
	toucher_start(mb);
	term_arm(mb);
	if (fstat(mb->fd, &mb->st) == -1) {
		st = MAILDIR_TEMP;
		*error_r = N_("cannot read maildrop");
		goto out_free;
	}
	if (mbox_scan(mb, error_r) == -1) {
		st = errno == 0 ? MAILDIR_PERM : status_of(errno);
		goto out_free;
	}
	*mb_r = mb;
	return MAILDIR_OK;

out_free:
	mbox_free(&mb);
	return st;
}

void mbox_free(struct mbox **mbp)
{
	struct mbox *mb = *mbp;

	if (mb == NULL)
		return;
	toucher_stop(mb);
	if (mb->dotlocked)
		term_disarm();
	/* Release in the reverse order of taking: the dot lock only if it is
	 * still ours (another program that broke it now holds its own). */
	if (mb->dotlocked && dotlock_ours(mb) && lockfile_remove(mb->lockpath) == -1)
		log_warn("mbox: cannot remove %s", mb->lockpath);
	if (mb->fd != -1)
		close(mb->fd);		/* drops the fcntl lock */
	free(mb->msgs);
	free(mb->lockpath);
	free(mb->path);
	free(mb);
	*mbp = NULL;
}

size_t mbox_count(const struct mbox *mb)
{
	return mb->n - mb->hidden;
}

struct maildir_msg *mbox_msg(struct mbox *mb, size_t i)
{
	return &mb->msgs[i + mb->hidden].m;
}

/* ---- RETR / TOP ------------------------------------------------------------- */

int mbox_send(struct mbox *mb, size_t i, long body_lines,
	      int (*emit)(void *ctx, const void *data, size_t len), void *ctx,
	      const char **error_r)
{
	static uint8_t in[POP3D_SESSION_FLUSH / 2], out[POP3D_SESSION_FLUSH + 2];
	const struct mbox_entry *e = &mb->msgs[i + mb->hidden];
	struct maildir_conv c;
	uint64_t off = e->body_off;
	size_t o;

	maildir_conv_init(&c, body_lines);
	while (!c.done && off < e->end_off) {
		uint64_t want = e->end_off - off;
		ssize_t n = pread(mb->fd, in, want < sizeof(in) ? (size_t)want : sizeof(in),
				  (off_t)off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* cut short under us: the locks were not respected */
			if (n == -1)
				log_warn("mbox: read %s", mb->path);
			else
				log_warnx("mbox: %s shrank under the lock", mb->path);
			if (off == e->body_off) {
				*error_r = N_("cannot read message");
				return -1;
			}
			return -2;
		}
		off += (uint64_t)n;
		o = maildir_conv_run(&c, in, (size_t)n, out);
		if (o > 0 && emit(ctx, out, o) == -1)
			return -2;
	}
	o = maildir_conv_finish(&c, out);
	if (o > 0 && emit(ctx, out, o) == -1)
		return -2;
	return 0;
}

/* ---- UPDATE ----------------------------------------------------------------- */

/* Tests only (test-mbox.c, the kill-during-rewrite test): the rewrite
 * kills its own process with SIGKILL just before its step number
 * mbox_test_kill_step (1-based; each pwrite, fdatasync and the ftruncate
 * is a step); 0: never.  mbox_test_steps counts the steps taken. */
unsigned mbox_test_kill_step, mbox_test_steps;
int mbox_test_kill_signal = SIGKILL;

static void step(void)
{
	if (++mbox_test_steps == mbox_test_kill_step && mbox_test_kill_step != 0)
		raise(mbox_test_kill_signal);
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n;

		step();
		n = pwrite(fd, p, len, (off_t)off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Copies len bytes at src to dst, front to back, in pieces of the buffer
 * (dst < src, or the two do not overlap).  Returns 0 or -1 (errno). */
static int copy_range(int fd, uint8_t *buf, uint64_t src, uint64_t dst, uint64_t len)
{
	while (len > 0) {
		size_t want = len < POP3D_MBOX_READ ? (size_t)len : POP3D_MBOX_READ;
		ssize_t n = pread(fd, buf, want, (off_t)src);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;	/* shorter than it was */
			return -1;
		}
		if (pwrite_all(fd, buf, (size_t)n, dst) == -1)
			return -1;
		src += (uint64_t)n;
		dst += (uint64_t)n;
		len -= (uint64_t)n;
	}
	return 0;
}

struct extent {
	uint64_t off, len;
};

/* Does the From_ line of e still stand where the scan saw it? */
static bool from_still_there(const struct mbox *mb, const struct mbox_entry *e)
{
	uint8_t buf[MBOX_FROM_MAX];
	ssize_t n = pread(mb->fd, buf, e->from_len, (off_t)e->from_off);

	return n == (ssize_t)e->from_len && fnv64(buf, e->from_len) == e->from_hash;
}

/* The kept extents from the first deleted record on (DESIGN), into *x_r
 * (allocated), coalesced.  Returns their count. */
static size_t kept_extents(const struct mbox *mb, size_t first, uint64_t size,
			   struct extent **x_r)
{
	struct extent *x = xcalloc(mb->n - first + 1, sizeof(*x));
	size_t nx = 0;

	for (size_t i = first; i <= mb->n; i++) {
		uint64_t off, end;

		if (i < mb->n) {
			if (mb->msgs[i].m.deleted || mb->msgs[i].m.expired)
				continue;
			off = mb->msgs[i].from_off;
			end = i + 1 < mb->n ? mb->msgs[i + 1].from_off : mb->scanned_end;
		} else {
			off = mb->scanned_end;	/* appended since the scan */
			end = size;
		}
		if (end == off)
			continue;
		if (nx > 0 && x[nx - 1].off + x[nx - 1].len == off)
			x[nx - 1].len += end - off;
		else
			x[nx++] = (struct extent){ off, end - off };
	}
	*x_r = x;
	return nx;
}

/* Rewrites the file without the deleted records.  Returns 0, or -1 if
 * nothing was deleted (logged; the file holds every message it held). */
static int mbox_rewrite(struct mbox *mb, size_t first)
{
	struct extent *x = NULL;
	size_t nx;
	uint64_t start = mb->msgs[first].from_off, kept = 0, deleted_before, size;
	uint8_t *buf = NULL;
	struct stat st;
	int ret = -1;

	if (!dotlock_ours(mb)) {
		log_warnx("mbox: %s: our dot lock was broken by another program: "
			  "nothing deleted", mb->path);
		return -1;
	}
	if (fstat(mb->fd, &st) == -1) {
		log_warn("mbox: %s", mb->path);
		return -1;
	}
	size = (uint64_t)st.st_size;
	if (size < mb->scanned_end) {
		log_warnx("mbox: %s shrank under the lock: nothing deleted", mb->path);
		return -1;
	}
	for (size_t i = first; i < mb->n; i++) {
		if (!from_still_there(mb, &mb->msgs[i])) {
			log_warnx("mbox: %s changed under the lock: nothing deleted", mb->path);
			return -1;
		}
	}
	nx = kept_extents(mb, first, size, &x);
	for (size_t k = 0; k < nx; k++)
		kept += x[k].len;
	deleted_before = nx > 0 ? x[0].off - start : size - start;
	buf = xmalloc(POP3D_MBOX_READ);

	if (nx == 0) {
		/* everything from there on goes: one truncate */
	} else if (deleted_before >= kept) {
		/* (a): the writes land on deleted bytes only */
		uint64_t dst = start;

		for (size_t k = 0; k < nx; k++) {
			if (copy_range(mb->fd, buf, x[k].off, dst, x[k].len) == -1)
				goto out_io;
			dst += x[k].len;
		}
	} else {
		/* (b): K at the end first, then from there down */
		uint8_t tail[2] = { 0, 0 }, pad[2] = { '\n', '\n' };
		size_t padlen = 2;
		uint64_t copy, dst;

		if (size >= 2 && pread(mb->fd, tail, 2, (off_t)(size - 2)) != 2)
			goto out_io;
		if (tail[1] == '\n')
			padlen = tail[0] == '\n' ? 0 : 1;
		copy = size + padlen;
		dst = copy;
		if (pwrite_all(mb->fd, pad, padlen, size) == -1)
			goto out_undo;
		for (size_t k = 0; k < nx; k++) {
			if (copy_range(mb->fd, buf, x[k].off, dst, x[k].len) == -1)
				goto out_undo;
			dst += x[k].len;
		}
		step();
		if (fdatasync(mb->fd) == -1)
			goto out_undo;
		if (copy_range(mb->fd, buf, copy, start, kept) == -1)
			goto out_io;
	}
	step();
	if (fdatasync(mb->fd) == -1)
		goto out_io;
	step();
	if (ftruncate(mb->fd, (off_t)(start + kept)) == -1)
		goto out_io;
	if (fsync(mb->fd) == -1)
		log_warn("mbox: fsync %s", mb->path);
	ret = 0;
	goto out;

out_undo:
	/* the original is whole: cut the partial copy off again */
	log_warn("mbox: %s: cannot write the copy: nothing deleted", mb->path);
	if (ftruncate(mb->fd, (off_t)size) == -1)
		log_warn("mbox: %s: cannot cut back to %llu bytes", mb->path,
			 (unsigned long long)size);
	goto out;
out_io:
	log_warn("mbox: %s: rewrite failed; every kept message is still in the file, "
		 "some perhaps twice", mb->path);
out:
	free(buf);
	free(x);
	return ret;
}

unsigned mbox_update(struct mbox *mb, long expire_days, int64_t now)
{
	size_t first = mb->n;
	unsigned ndel = 0;

	(void)now;
	for (size_t i = mb->hidden; i < mb->n; i++) {
		struct maildir_msg *m = &mb->msgs[i].m;

		if (expire_days == 0 && !m->deleted && (m->retrieved || m->topped))
			m->expired = true;
		if (m->deleted || m->expired) {
			if (first == mb->n)
				first = i;
			ndel += m->deleted;
		}
	}
	if (first == mb->n || mb->fd == -1)
		return 0;
	/* Once the rewrite has begun it finishes: a SIGTERM (pop3d
	 * stopping, a kick) waits until it is done, and a file size limit is
	 * an error (EFBIG, undone) rather than SIGXFSZ's death in the middle
	 * of the append. */
	sigset_t block, old;
	struct sigaction ign = { .sa_handler = SIG_IGN }, old_xfsz;
	int r;

	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &old);
	sigemptyset(&ign.sa_mask);
	sigaction(SIGXFSZ, &ign, &old_xfsz);
	r = mbox_rewrite(mb, first);
	sigaction(SIGXFSZ, &old_xfsz, NULL);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (r == -1) {
		for (size_t i = mb->hidden; i < mb->n; i++)
			mb->msgs[i].m.expired = false;	/* none went */
		return ndel;
	}
	return 0;
}
