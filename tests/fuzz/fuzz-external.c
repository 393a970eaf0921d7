/*
 * fuzz-external.c - libFuzzer harness for the replies of helper programs
 * (authd/passdb_external.c): the external helper's NUL-framed reply, read
 * in pieces (reply_scan, as read_reply calls it after each read) and
 * parsed (parse_reply), and a checkpassword program's key=value lines on
 * stdout (parse_lines).  The file is included here: its parsers are
 * static.  No process is started; the bytes a helper would write are the
 * input.
 *
 * Input: byte 0 is the size of the pieces the reply arrives in (1..64,
 * as read() may return it), byte 1 bit 0 a NOUSER/FAIL default; the rest
 * is what the helper writes (at most HELPER_MAX_REPLY bytes, as
 * read_reply reads).
 * Properties checked:
 *   - the framing verdict does not depend on how the bytes are cut, but
 *     for a reply complete at the end of a read with bytes behind it;
 *   - a complete reply ends with its empty record, exactly at its end;
 *   - parse_reply accepts only a reply with exactly one valid result=,
 *     leaves the buffer as it was, and its userdb fields are terminated and
 *     without control bytes; the same for parse_lines (checkpassword);
 *   - uid= and gid= values it took are decimal below 2^32 - 1.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authd/passdb_external.c"
#include "tests/fuzz/logcapture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool clean_path(const char *s, size_t size)
{
	size_t n = strnlen(s, size);

	if (n == size)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static void check_udb(const struct userdb *u)
{
	if (!clean_path(u->home, sizeof(u->home)) || !clean_path(u->maildrop, sizeof(u->maildrop)))
		abort();
	if ((u->has_uid && u->uid == UINT32_MAX) || (u->has_gid && u->gid == UINT32_MAX))
		abort();
	if ((!u->has_uid && u->uid != 0) || (!u->has_gid && u->gid != 0))
		abort();
}

static void new_job(struct job *job, uint8_t flags)
{
	memset(job, 0, sizeof(*job));
	snprintf(job->user, sizeof(job->user), "fuzz");
	snprintf(job->user_log, sizeof(job->user_log), "fuzz");
	job->result = flags & 1 ? AUTH_RESULT_NOUSER : AUTH_RESULT_FAIL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char buf[HELPER_MAX_REPLY], copy[HELPER_MAX_REPLY], out[HELPER_MAX_REPLY + 1];
	static struct auth_conf ac = { .name = (char *)"fuzz" };
	static struct authenticator auth = { .conf = &ac };
	static bool init;
	struct job job;
	size_t chunk, len, fed = 0;
	ssize_t whole, cut = -1;
	bool in_key = true;

	if (!init) {
		logcap_init();
		init = true;
	}
	if (size < 2)
		return 0;
	chunk = data[0] % 64 + 1;
	len = size - 2;
	if (len > HELPER_MAX_REPLY)
		len = HELPER_MAX_REPLY;
	memcpy(buf, data + 2, len);
	logcap_reset();

	/* As read_reply sees it: piece by piece, stopping at a verdict. */
	while (fed < len && cut == -1) {
		size_t n = len - fed < chunk ? len - fed : chunk;

		cut = reply_scan(buf, fed, fed + n, &in_key);
		fed += n;
	}
	in_key = true;
	whole = reply_scan(buf, 0, len, &in_key);
	/* The same verdict, but for a reply complete at the end of a piece
	 * with more bytes behind it: read_reply stops reading there (the
	 * rest stays in the pipe), while the whole bytes are too long. */
	if (!(cut == whole || (cut > 0 && whole == 0 && (size_t)cut < len)))
		abort();
	if (cut > 0 && (buf[cut - 1] != '\0' || (cut > 1 && buf[cut - 2] != '\0')))
		abort();

	if (cut > 0) {
		bool have_result = false;

		memcpy(copy, buf, (size_t)cut);
		new_job(&job, data[1]);
		if (parse_reply(&auth, buf, (size_t)cut, &job) == 0) {
			/* exactly one result= record */
			for (const char *rec = buf; *rec != '\0'; rec += strlen(rec) + 1) {
				if (strncmp(rec, "result=", 7) == 0) {
					if (have_result)
						abort();
					have_result = true;
				}
			}
			if (!have_result || memcmp(copy, buf, (size_t)cut) != 0)
				abort();
			check_udb(&job.udb);
		}
	}

	/* checkpassword: its stdout as a C string (NULs cut it) */
	memcpy(out, data + 2, len);
	out[len] = '\0';
	new_job(&job, data[1]);
	if (parse_lines(out, &job) == 0)
		check_udb(&job.udb);
	return 0;
}
