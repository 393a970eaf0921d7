/*
 * lang.c - the languages of pop3d's responses: message catalogues read
 * once into memory, RFC 4647 basic matching for RFC 6856's LANG.
 *
 * Runs in the master, as root when started by systemd: lang_init (at
 * start-up, -t and every reload) reads the catalogues, which are
 * installed files (make install: LOCALEDIR/LL/LC_MESSAGES/pop3d.mo,
 * msgfmt's output), never a client's bytes.  Front ends (login-user, in
 * login-chroot) and sessions (the mailbox owner) inherit the loaded copy
 * at their fork and only look strings up: they open no file.
 *
 * DESIGN
 * - Why not libintl's gettext(): it opens a catalogue lazily, the first
 *   time a string of a language is asked for, and by then a front end is
 *   chrooted (the files are out of reach) and a session runs as the
 *   mailbox owner; it picks the language from the process's locale and
 *   $LANGUAGE, while one front end answers many clients in many languages
 *   at once; and it needs a system locale installed for each language.
 *   So the .mo files msgfmt builds (the GNU gettext format, the usual
 *   tools for translators: po/, make pot) are read here, whole, before
 *   any fork: each language is a sorted table of msgid -> translation.
 * - A catalogue is an installed file, but its translations end up in
 *   printf formats and on the wire, so each entry is checked: it must
 *   lie inside the file, be NUL-terminated, hold no CR, LF or other
 *   control character, and a translation must carry exactly the msgid's
 *   printf conversions in the same order (a "%s" where the code passes an
 *   int would crash a front end).  A bad entry is dropped (logged): the
 *   English text is used for it.  A file that is not a catalogue at all
 *   is refused, with the reason.
 * - English is built in (tag "en", no catalogue): the msgids are the
 *   English texts.  Installed catalogues are found by listing the
 *   language directory: every LL/LC_MESSAGES/pop3d.mo whose LL is a
 *   language tag (pt_BR is offered as pt-BR).
 * - Matching (lang_match): RFC 4647 section 3.3.1, basic filtering, the
 *   form RFC 6856 section 3 asks for: a range matches a tag equal to it
 *   or that begins with it followed by "-", case-insensitively; "*" is
 *   the server's default (default-language).  The first match in tag
 *   order wins.
 * - A language travels between processes as its tag (IPC_HANDOFF, the
 *   session job); lang_find turns it back, with the default for a tag not
 *   known (a reload removed it meanwhile).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/alloc.h"
#include "common/log.h"
#include "pop3d/pop3d.h"

struct lang_entry {
	const char *msgid, *msgstr;	/* into the lang's file buffer */
};

struct lang {
	char tag[LANG_TAG_MAX + 1];
	const char *name;		/* the language's name in itself */
	uint8_t *buf;			/* the .mo file (NULL: English) */
	struct lang_entry *entries;	/* sorted by msgid */
	size_t nentries;
};

struct lang_set {
	struct lang *langs;		/* sorted by tag; [0] is English */
	size_t n;
	const struct lang *def;
};

static struct lang_set *cur;

static const struct lang english = { .tag = "en", .name = "English" };

/* ---- the .mo format -------------------------------------------------------------- */

#define MO_MAGIC	0x950412deu
#define MO_MAGIC_SWAP	0xde120495u

static uint32_t mo_u32(const uint8_t *p, bool swap)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return swap ? __builtin_bswap32(v) : v;
}

/* String i of the table at offset table: its bytes inside len, with the
 * NUL the format puts after each.  Returns it or NULL. */
static const char *mo_string(const uint8_t *buf, size_t len, uint32_t table, uint32_t i,
			     bool swap)
{
	uint64_t at = (uint64_t)table + (uint64_t)i * 8;
	uint32_t slen, soff;

	if (at + 8 > len)
		return NULL;
	slen = mo_u32(buf + at, swap);
	soff = mo_u32(buf + at + 4, swap);
	if ((uint64_t)soff + slen + 1 > len || buf[soff + slen] != '\0' ||
	    memchr(buf + soff, '\0', slen) != NULL)
		return NULL;	/* also refuses plural forms (NUL-separated) */
	return (const char *)buf + soff;
}

/* The printf conversions of s, in order, as one string ("%s%u%llu"), into
 * out; "%%" is no conversion.  Returns false if they do not fit. */
static bool conversions(const char *s, char *out, size_t size)
{
	size_t o = 0;

	for (const char *p = s; *p != '\0'; p++) {
		if (*p != '%')
			continue;
		if (p[1] == '%') {
			p++;
			continue;
		}
		/* flags, width, precision (a "*" too), argument position, length,
		 * then the conversion: all of it compared, so that "%*d" and
		 * "%*s", or "%1$s" and "%s", differ */
		size_t k = 1 + strspn(p + 1, "-+ #0123456789.hlLqjzt*$'I");
		if (p[k] == '\0' || o + k + 1 >= size)
			return false;
		memcpy(out + o, p, k + 1);
		o += k + 1;
		p += k;
	}
	out[o] = '\0';
	return true;
}

static bool text_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct lang_entry *)a)->msgid, ((const struct lang_entry *)b)->msgid);
}

/* Reads the catalogue at path into l.  Returns 0, or -1 with *why_r. */
static int mo_load(struct lang *l, const char *path, const char **why_r)
{
	uint32_t n, otab, ttab;
	struct stat st;
	ssize_t r;
	bool swap;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1) {
		*why_r = strerror(errno);
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_size < 28 ||
	    st.st_size > POP3D_LANG_MAX_FILE) {
		close(fd);
		*why_r = "not a regular file of a catalogue's size";
		return -1;
	}
	l->buf = xmalloc((size_t)st.st_size);
	r = read(fd, l->buf, (size_t)st.st_size);
	close(fd);
	if (r != st.st_size) {
		*why_r = "cannot read it whole";
		return -1;
	}
	switch (mo_u32(l->buf, false)) {
	case MO_MAGIC: swap = false; break;
	case MO_MAGIC_SWAP: swap = true; break;
	default:
		*why_r = "not a GNU message catalogue (bad magic number)";
		return -1;
	}
	if (mo_u32(l->buf + 4, swap) >> 16 != 0) {
		*why_r = "unknown catalogue revision";
		return -1;
	}
	n = mo_u32(l->buf + 8, swap);
	otab = mo_u32(l->buf + 12, swap);
	ttab = mo_u32(l->buf + 16, swap);
	if (n > POP3D_LANG_MAX_STRINGS) {
		*why_r = "too many strings";
		return -1;
	}
	l->entries = xcalloc(n + 1, sizeof(*l->entries));
	for (uint32_t i = 0; i < n; i++) {
		const char *id = mo_string(l->buf, (size_t)st.st_size, otab, i, swap);
		const char *tr = mo_string(l->buf, (size_t)st.st_size, ttab, i, swap);
		char cid[64], ctr[64];

		if (id == NULL || tr == NULL) {
			*why_r = "a string lies outside the file";
			return -1;
		}
		if (id[0] == '\0' || tr[0] == '\0')
			continue;	/* the header; an untranslated entry */
		if (!text_ok(tr) || !conversions(id, cid, sizeof(cid)) ||
		    !conversions(tr, ctr, sizeof(ctr)) || strcmp(cid, ctr) != 0) {
			log_warnx("language %s: %s: translation of \"%s\" dropped (control "
				  "characters, or not the same printf conversions)", l->tag, path,
				  text_ok(id) ? id : "?");
			continue;
		}
		l->entries[l->nentries].msgid = id;
		l->entries[l->nentries].msgstr = tr;
		l->nentries++;
	}
	qsort(l->entries, l->nentries, sizeof(*l->entries), entry_cmp);
	return 0;
}

/* ---- sets of languages ------------------------------------------------------------- */

static void lang_free_one(struct lang *l)
{
	free(l->buf);
	free(l->entries);
}

static void set_free(struct lang_set **sp)
{
	struct lang_set *s = *sp;

	if (s == NULL)
		return;
	for (size_t i = 1; i < s->n; i++)
		lang_free_one(&s->langs[i]);
	free(s->langs);
	free(s);
	*sp = NULL;
}

bool lang_tag_valid(const char *s)
{
	/* RFC 4647 section 2.1: 1*8ALPHA *("-" 1*8alphanum) */
	size_t len = strlen(s), part = 0, nparts = 0;

	if (len == 0 || len > LANG_TAG_MAX)
		return false;
	for (size_t i = 0; i <= len; i++) {
		char ch = s[i];

		if (ch == '-' || ch == '\0') {
			if (part == 0 || part > 8)
				return false;
			part = 0;
			nparts++;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
			   (nparts > 0 && ch >= '0' && ch <= '9')) {
			part++;
		} else {
			return false;
		}
	}
	return true;
}

static int lang_cmp(const void *a, const void *b)
{
	return strcasecmp(((const struct lang *)a)->tag, ((const struct lang *)b)->tag);
}

struct lang_set *lang_load(const char *dir, const char *default_tag, char *err, size_t size)
{
	struct lang_set *s = xcalloc(1, sizeof(*s));
	DIR *d;
	struct dirent *e;

	s->langs = xcalloc(POP3D_LANG_MAX, sizeof(*s->langs));
	s->langs[s->n++] = english;
	d = dir != NULL && dir[0] != '\0' ? opendir(dir) : NULL;
	if (d == NULL && dir != NULL && dir[0] != '\0' && errno != ENOENT)
		log_warn("language-dir %s", dir);
	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[4096], tag[LANG_TAG_MAX + 1];
		struct lang l;
		const char *why;
		int w;

		size_t n = strlen(e->d_name);

		if (n > LANG_TAG_MAX)
			continue;
		memcpy(tag, e->d_name, n + 1);	/* fits: checked above */
		for (char *p = tag; *p != '\0'; p++)
			if (*p == '_')
				*p = '-';
		if (!lang_tag_valid(tag) || strcasecmp(tag, "en") == 0)
			continue;	/* ".", "C", "sr@latin", ...; English is built in */
		w = snprintf(path, sizeof(path), "%s/%s/LC_MESSAGES/pop3d.mo", dir, e->d_name);
		if (w < 0 || (size_t)w >= sizeof(path) || access(path, F_OK) == -1)
			continue;	/* other programs' languages */
		memset(&l, 0, sizeof(l));
		snprintf(l.tag, sizeof(l.tag), "%s", tag);
		if (mo_load(&l, path, &why) == -1) {
			snprintf(err, size, "language catalogue %s: %s", path, why);
			lang_free_one(&l);
			closedir(d);
			set_free(&s);
			return NULL;
		}
		if (s->n == POP3D_LANG_MAX) {
			log_warnx("language-dir %s: more than %d languages; %s not offered", dir,
				  POP3D_LANG_MAX, tag);
			lang_free_one(&l);
			continue;
		}
		s->langs[s->n++] = l;
	}
	if (d != NULL)
		closedir(d);
	qsort(s->langs + 1, s->n - 1, sizeof(*s->langs), lang_cmp);
	for (size_t i = 1; i < s->n; i++) {
		struct lang *l = &s->langs[i];
		/* TRANSLATORS: the name of this catalogue's language, written
		 * in it (LANG lists "pl Polski"). */
		l->name = lang_tr(l, "English");
	}
	s->def = NULL;
	for (size_t i = 0; i < s->n; i++)
		if (strcasecmp(s->langs[i].tag, default_tag) == 0)
			s->def = &s->langs[i];
	if (s->def == NULL) {
		snprintf(err, size, "[pop3d] default-language %s: no such catalogue in %s "
			 "(make install puts them there)", default_tag,
			 dir != NULL && dir[0] != '\0' ? dir : "(none)");
		set_free(&s);
		return NULL;
	}
	return s;
}

void lang_use(struct lang_set **sp)
{
	set_free(&cur);
	cur = *sp;
	*sp = NULL;
}

void lang_set_free(struct lang_set **sp)
{
	set_free(sp);
}

/* ---- look-ups --------------------------------------------------------------------- */

const char *lang_tr(const struct lang *l, const char *msgid)
{
	struct lang_entry key = { .msgid = msgid }, *e;

	if (l == NULL)
		l = lang_default();
	if (l->nentries == 0)
		return msgid;
	e = bsearch(&key, l->entries, l->nentries, sizeof(*l->entries), entry_cmp);
	return e != NULL ? e->msgstr : msgid;
}

const struct lang *lang_default(void)
{
	return cur != NULL ? cur->def : &english;
}

size_t lang_count(void)
{
	return cur != NULL ? cur->n : 1;
}

const struct lang *lang_at(size_t i)
{
	return cur != NULL ? &cur->langs[i] : &english;
}

const char *lang_tag(const struct lang *l)
{
	return l->tag;
}

const char *lang_name(const struct lang *l)
{
	return l->name;
}

const struct lang *lang_find(const char *tag)
{
	for (size_t i = 0; i < lang_count(); i++)
		if (strcasecmp(lang_at(i)->tag, tag) == 0)
			return lang_at(i);
	return lang_default();
}

bool lang_range_matches(const char *range, const char *tag)
{
	size_t n = strlen(range);

	return strncasecmp(range, tag, n) == 0 && (tag[n] == '\0' || tag[n] == '-');
}

const struct lang *lang_match(const char *range)
{
	if (strcmp(range, "*") == 0)
		return lang_default();
	if (!lang_tag_valid(range))
		return NULL;
	for (size_t i = 0; i < lang_count(); i++)
		if (lang_range_matches(range, lang_at(i)->tag))
			return lang_at(i);
	return NULL;
}

void lang_command(struct evbuffer *out, const struct lang **langp, const char *arg)
{
	const struct lang *l;

	if (arg == NULL) {
		evbuffer_add_printf(out, "+OK %s\r\n", lang_tr(*langp, "Language listing follows:"));
		for (size_t i = 0; i < lang_count(); i++)
			evbuffer_add_printf(out, "%s %s\r\n", lang_tag(lang_at(i)),
					    lang_name(lang_at(i)));
		evbuffer_add(out, ".\r\n", 3);
		return;
	}
	l = lang_match(arg);
	if (l == NULL) {
		/* the range is echoed only if it is one (letters, digits, "-") */
		if (lang_tag_valid(arg))
			evbuffer_add_printf(out, "-ERR %s %s: %s\r\n", lang_tag(*langp),
					    lang_tr(*langp, "Unknown language"), arg);
		else
			evbuffer_add_printf(out, "-ERR %s %s\r\n", lang_tag(*langp),
					    lang_tr(*langp, "Unknown language"));
		return;
	}
	*langp = l;
	evbuffer_add_printf(out, "+OK %s %s\r\n", lang_tag(l), lang_tr(l, "Language changed"));
}
