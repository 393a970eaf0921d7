/*
 * mailbox.c - the maildrop a session serves, Maildir (maildir.c) or mbox
 * (mbox.c), behind one set of calls, so that session.c's POP3 commands are
 * the same code for both.  A small table of operations per kind.
 *
 * Runs in the session process, as the mailbox owner, and nowhere else.
 */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "pop3d/pop3d.h"

struct mailbox_ops {
	enum maildir_status (*open)(const char *path, void **impl_r, const char **error_r);
	void (*free)(void **implp);
	size_t (*count)(const void *impl);
	struct maildir_msg *(*msg)(void *impl, size_t i);
	int (*send)(void *impl, size_t i, long body_lines,
		    int (*emit)(void *ctx, const void *data, size_t len), void *ctx,
		    const char **error_r);
	unsigned (*update)(void *impl, long expire_days, int64_t now);
};

struct mailbox {
	const struct mailbox_ops *ops;
	void *impl;
};

/* The Maildir listing this process kept at the end of its last session
 * (a spare's warm listing), for whom and which maildrop. */
static struct {
	struct maildir *md;
	char *user, *maildrop;
} warm;

/* Thin adapters: each kind keeps its own typed API. */
static enum maildir_status md_open(const char *path, void **impl_r, const char **error_r)
{
	return maildir_open(path, (struct maildir **)impl_r, error_r);
}
static void md_free(void **implp) { maildir_free((struct maildir **)implp); }
static size_t md_count(const void *impl) { return maildir_count(impl); }
static struct maildir_msg *md_msg(void *impl, size_t i) { return maildir_msg(impl, i); }
static int md_send(void *impl, size_t i, long body_lines,
		   int (*emit)(void *ctx, const void *data, size_t len), void *ctx,
		   const char **error_r)
{
	return maildir_send(impl, i, body_lines, emit, ctx, error_r);
}
static unsigned md_update(void *impl, long expire_days, int64_t now)
{
	return maildir_update(impl, expire_days, now);
}

static enum maildir_status mb_open(const char *path, void **impl_r, const char **error_r)
{
	return mbox_open(path, (struct mbox **)impl_r, error_r);
}
static void mb_free(void **implp) { mbox_free((struct mbox **)implp); }
static size_t mb_count(const void *impl) { return mbox_count(impl); }
static struct maildir_msg *mb_msg(void *impl, size_t i) { return mbox_msg(impl, i); }
static int mb_send(void *impl, size_t i, long body_lines,
		   int (*emit)(void *ctx, const void *data, size_t len), void *ctx,
		   const char **error_r)
{
	return mbox_send(impl, i, body_lines, emit, ctx, error_r);
}
static unsigned mb_update(void *impl, long expire_days, int64_t now)
{
	return mbox_update(impl, expire_days, now);
}

static const struct mailbox_ops maildir_ops = {
	md_open, md_free, md_count, md_msg, md_send, md_update,
};
static const struct mailbox_ops mbox_ops = {
	mb_open, mb_free, mb_count, mb_msg, mb_send, mb_update,
};

enum maildir_status mailbox_open(const char *maildrop, struct mailbox **mb_r,
				 const char **error_r)
{
	const struct mailbox_ops *ops = &maildir_ops;
	enum maildir_status st;
	void *impl = NULL;

	if (strncmp(maildrop, "mbox:", 5) == 0) {
		ops = &mbox_ops;
		maildrop += 5;
	}
	st = ops->open(maildrop, &impl, error_r);
	if (st != MAILDIR_OK)
		return st;
	*mb_r = xcalloc(1, sizeof(**mb_r));
	(*mb_r)->ops = ops;
	(*mb_r)->impl = impl;
	return MAILDIR_OK;
}

/* Frees the listing mailbox_park kept, if any. */
static void mailbox_forget_warm(void)
{
	maildir_free(&warm.md);
	free(warm.user);
	free(warm.maildrop);
	warm.user = warm.maildrop = NULL;
}

enum maildir_status mailbox_open_warm(const char *maildrop, const char *user,
				      struct mailbox **mb_r, const char **error_r, bool *warm_r)
{
	struct maildir *w = NULL, *md;
	enum maildir_status st;

	*warm_r = false;
	if (warm.md != NULL && strcmp(warm.user, user) == 0 &&
	    strcmp(warm.maildrop, maildrop) == 0) {
		w = warm.md;
		warm.md = NULL;
	}
	mailbox_forget_warm();		/* another user's: never used */
	if (w == NULL || strncmp(maildrop, "mbox:", 5) == 0) {
		maildir_free(&w);
		return mailbox_open(maildrop, mb_r, error_r);
	}
	st = maildir_open_warm(maildrop, &w, &md, error_r, warm_r);
	if (st != MAILDIR_OK)
		return st;
	*mb_r = xcalloc(1, sizeof(**mb_r));
	(*mb_r)->ops = &maildir_ops;
	(*mb_r)->impl = md;
	return MAILDIR_OK;
}

void mailbox_park(struct mailbox **mbp, const char *user, const char *maildrop)
{
	struct mailbox *mb = *mbp;

	if (mb == NULL || mb->ops != &maildir_ops) {
		mailbox_free(mbp);
		return;
	}
	mailbox_forget_warm();
	maildir_park((struct maildir **)&mb->impl, &warm.md);
	if (warm.md != NULL) {
		warm.user = xstrdup(user);
		warm.maildrop = xstrdup(maildrop);
	}
	free(mb);
	*mbp = NULL;
}

void mailbox_free(struct mailbox **mbp)
{
	struct mailbox *mb = *mbp;

	if (mb == NULL)
		return;
	mb->ops->free(&mb->impl);
	free(mb);
	*mbp = NULL;
}

size_t mailbox_count(const struct mailbox *mb)
{
	return mb->ops->count(mb->impl);
}

struct maildir_msg *mailbox_msg(struct mailbox *mb, size_t i)
{
	return mb->ops->msg(mb->impl, i);
}

int mailbox_send(struct mailbox *mb, size_t i, long body_lines,
		 int (*emit)(void *ctx, const void *data, size_t len), void *ctx,
		 const char **error_r)
{
	return mb->ops->send(mb->impl, i, body_lines, emit, ctx, error_r);
}

unsigned mailbox_update(struct mailbox *mb, long expire_days, int64_t now)
{
	return mb->ops->update(mb->impl, expire_days, now);
}
