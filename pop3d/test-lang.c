/*
 * test-lang.c - lang.c alone: language ranges (RFC 4647 basic filtering),
 * and the catalogue reader on .mo files written here byte by byte, good
 * and broken (out-of-range offsets, translations whose printf conversions
 * differ from the msgid's, control characters).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "pop3d/pop3d.h"
#include "tests/unit.h"

static char dir[64];

static void test_tags(void)
{
	CHECK(lang_tag_valid("pl"));
	CHECK(lang_tag_valid("pt-BR"));
	CHECK(lang_tag_valid("de-1996"));
	CHECK(lang_tag_valid("zh-Hant-TW"));
	CHECK(lang_tag_valid("abcdefgh"));
	CHECK(!lang_tag_valid(""));
	CHECK(!lang_tag_valid("*"));		/* the caller's special case */
	CHECK(!lang_tag_valid("abcdefghi"));	/* subtags are 1-8 characters */
	CHECK(!lang_tag_valid("1pl"));		/* the first is letters only */
	CHECK(!lang_tag_valid("pl-"));
	CHECK(!lang_tag_valid("-pl"));
	CHECK(!lang_tag_valid("pl--PL"));
	CHECK(!lang_tag_valid("pl_PL"));
	CHECK(!lang_tag_valid("pl PL"));
	CHECK(!lang_tag_valid("p\xc5\x82"));
	CHECK(!lang_tag_valid("aaaaaaaa-bbbbbbbb-cccccccc-dddddddd-e"));	/* > 35 */

	/* RFC 4647 section 3.3.1 */
	CHECK(lang_range_matches("de", "de"));
	CHECK(lang_range_matches("de", "de-DE"));
	CHECK(lang_range_matches("de", "de-Latn-DE"));
	CHECK(lang_range_matches("DE", "de-de"));
	CHECK(lang_range_matches("de-de", "de-DE"));
	CHECK(!lang_range_matches("de-DE", "de"));
	CHECK(!lang_range_matches("de", "deu"));
	CHECK(!lang_range_matches("en", "de"));
}

/* A .mo file of n (msgid, msgstr) pairs, with the header entry first. */
static void write_mo(const char *lang, const char *const (*pairs)[2], size_t n, bool corrupt)
{
	uint8_t buf[8192];
	uint32_t hdr[7], total = (uint32_t)n + 1, otab = 28, ttab = otab + 8 * total;
	uint32_t at = ttab + 8 * total;
	char path[256];
	FILE *f;

	memset(buf, 0, sizeof(buf));
	hdr[0] = 0x950412de;
	hdr[1] = 0;
	hdr[2] = total;
	hdr[3] = otab;
	hdr[4] = ttab;
	hdr[5] = 0;
	hdr[6] = 0;
	memcpy(buf, hdr, sizeof(hdr));
	for (uint32_t i = 0; i < total; i++) {
		for (int k = 0; k < 2; k++) {
			const char *s = i == 0 ? (k == 0 ? "" : "Content-Type: text/plain; "
						  "charset=UTF-8\n") : pairs[i - 1][k];
			uint32_t e[2] = { (uint32_t)strlen(s), at };

			if (corrupt && i == total - 1 && k == 1)
				e[1] = 1u << 30;	/* past the end */
			memcpy(buf + (k == 0 ? otab : ttab) + 8 * i, e, sizeof(e));
			memcpy(buf + at, s, strlen(s) + 1);
			at += (uint32_t)strlen(s) + 1;
		}
	}
	snprintf(path, sizeof(path), "%s/%s", dir, lang);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/%s/LC_MESSAGES", dir, lang);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/%s/LC_MESSAGES/pop3d.mo", dir, lang);
	f = fopen(path, "wb");
	CHECK(f != NULL);
	CHECK(fwrite(buf, 1, at, f) == at);
	fclose(f);
}

static void test_catalogues(void)
{
	/* sorted as msgfmt sorts them: the reader must not care */
	static const char *const pl[][2] = {
		{ "English", "Polski" },
		{ "Bye", "Do widzenia" },
		{ "Message %u already deleted", "Wiadomo\xc5\x9b\xc4\x87 %u jest ju\xc5\xbc usuni\xc4\x99ta" },
		{ "Logged in, %u messages (%llu octets)", "Zalogowano: %s" },	/* %s for %u: dropped */
		{ "Unknown command", "Nieznane\r\npolecenie" },			/* CR LF: dropped */
		{ "%u deleted messages could not be removed", "%% %u nie" },
		{ "Width %*d", "Szeroko\xc5\x9b\xc4\x87 %*s" },	/* same "%*", other type: dropped */
		{ "Position %s", "Pozycja %1$s" },			/* positional: dropped */
	};
	static const char *const de[][2] = { { "English", "Deutsch" }, { "Bye", "Tsch\xc3\xbc\xc3\x9f" } };
	struct lang_set *set;
	const struct lang *l;
	char err[512];

	snprintf(dir, sizeof(dir), "/tmp/test-lang-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	write_mo("pl", pl, sizeof(pl) / sizeof(pl[0]), false);
	write_mo("de_AT", de, sizeof(de) / sizeof(de[0]), false);
	snprintf(err, sizeof(err), "%s/C", dir);
	mkdir(err, 0700);					/* not a language of ours */

	set = lang_load(dir, "pl", err, sizeof(err));
	CHECK(set != NULL);
	lang_use(&set);
	CHECK(set == NULL);
	CHECK_INT(lang_count(), 3);
	CHECK_STR(lang_tag(lang_at(0)), "en");
	CHECK_STR(lang_tag(lang_at(1)), "de-AT");
	CHECK_STR(lang_tag(lang_at(2)), "pl");
	CHECK_STR(lang_name(lang_at(2)), "Polski");
	CHECK_STR(lang_tag(lang_default()), "pl");
	l = lang_match("pl");
	CHECK(l != NULL);
	CHECK_STR(lang_tr(l, "Bye"), "Do widzenia");
	CHECK_STR(lang_tr(NULL, "Bye"), "Do widzenia");		/* the default */
	CHECK_STR(lang_tr(l, "Not in the catalogue"), "Not in the catalogue");
	CHECK_STR(lang_tr(l, "Logged in, %u messages (%llu octets)"),
		  "Logged in, %u messages (%llu octets)");
	CHECK_STR(lang_tr(l, "Unknown command"), "Unknown command");
	CHECK_STR(lang_tr(l, "%u deleted messages could not be removed"), "%% %u nie");
	CHECK_STR(lang_tr(l, "Width %*d"), "Width %*d");
	CHECK_STR(lang_tr(l, "Position %s"), "Position %s");
	CHECK(strstr(lang_tr(l, "Message %u already deleted"), "%u") != NULL);
	/* basic filtering, "*" */
	CHECK(lang_match("de") == lang_at(1));
	CHECK(lang_match("DE-at") == lang_at(1));
	CHECK(lang_match("de-DE") == NULL);
	CHECK(lang_match("*") == lang_default());
	CHECK(lang_match("en") == lang_at(0));
	CHECK(lang_match("x y") == NULL);
	CHECK_STR(lang_tr(lang_at(0), "Bye"), "Bye");
	/* a tag another process sent */
	CHECK(lang_find("PL") == lang_at(2));
	CHECK(lang_find("fr") == lang_default());
	CHECK(lang_find("") == lang_default());

	/* no catalogue for the default: refused, the languages in use stay */
	set = lang_load(dir, "fr", err, sizeof(err));
	CHECK(set == NULL);
	CHECK(strstr(err, "default-language fr") != NULL);
	CHECK_INT(lang_count(), 3);
	/* a broken catalogue: refused with its name */
	write_mo("de_AT", de, sizeof(de) / sizeof(de[0]), true);
	set = lang_load(dir, "en", err, sizeof(err));
	CHECK(set == NULL);
	CHECK(strstr(err, "de_AT/LC_MESSAGES/pop3d.mo") != NULL);
	/* not a catalogue at all */
	write_mo("de_AT", de, sizeof(de) / sizeof(de[0]), false);
	{
		char path[256];
		FILE *f;

		snprintf(path, sizeof(path), "%s/pl/LC_MESSAGES/pop3d.mo", dir);
		f = fopen(path, "wb");
		CHECK(f != NULL && fputs("# a .po file, not compiled\nmsgid \"x\"\n", f) >= 0);
		fclose(f);
	}
	set = lang_load(dir, "en", err, sizeof(err));
	CHECK(set == NULL);
	CHECK(strstr(err, "bad magic number") != NULL);
	/* no directory: English only */
	set = lang_load("/nonexistent/locale", "en", err, sizeof(err));
	CHECK(set != NULL);
	lang_use(&set);
	CHECK_INT(lang_count(), 1);
	CHECK_STR(lang_tr(NULL, "Bye"), "Bye");
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		CHECK(system(cmd) == 0);
	}
}

int main(void)
{
	log_init("test-lang", LOG_LEVEL_ERROR, LOG_TARGET_STDERR, NULL, 0);
	UNIT_RUN(test_tags);
	UNIT_RUN(test_catalogues);
	return unit_finish();
}
