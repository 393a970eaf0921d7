/*
 * tls.c - pop3d's TLS: OpenSSL 3 server contexts for the front ends, the
 * start-up checks of certificates and keys, and the session-ticket keys.
 *
 * Processes: a front end (contexts, the ticket callback; as root only in
 * tls_server_init, before its chroot), the master's start-up check child
 * (tls_check_files, as root), and the master itself, as root, for the
 * ticket key ring only (tls_ticket_keys_init/rotate/get: random bytes
 * copied, no OpenSSL call, no file).
 *
 * DESIGN
 * - Who holds key material.  Only front ends: each loads the certificates
 *   and keys itself, as root, after the fork from the master and before its
 *   chroot and privilege drop (tls_server_init), and keeps them for its
 *   life.  The master never reads a key file: its start-up check
 *   (tls_check_files) runs in a child that exits right after, so sessions,
 *   which the master forks, inherit no key, no key file descriptor and no
 *   stdio buffer that held one.  Key files are read whole into a buffer
 *   that is wiped after parsing.
 * - The one secret the master does hold is the session-ticket key ring
 *   (struct tls_ticket_keys): every front end (and every replacement) must
 *   encrypt and accept the same tickets, so one process draws the keys for
 *   all; front ends inherit the ring at fork and get every change over
 *   their channel (IPC_TICKET_KEYS, decoded by ipc.c).  Every
 *   tls-ticket-key-lifetime (1 h by default) the master draws a new
 *   current key; the one before stays for decryption only (a ticket under
 *   it is accepted and renewed, callback result 2), and the one before
 *   that is wiped everywhere: a ticket, and the session secrets it
 *   carries, can be opened for at most twice the lifetime, not for the
 *   life of the master (forward secrecy of resumed sessions).  OpenSSL's
 *   session timeout (2 h) still bounds how old a resumed session may be.
 *   A session child wipes its inherited copy first thing
 *   (tls_ticket_keys_wipe), and the master is not dumpable, so the keys
 *   never reach a core file.
 * - One SSL_CTX per certificate.  Connections start on the first; a
 *   client's SNI name that one of the others' certificates covers
 *   (X509_check_host: subjectAltName DNS names, wildcards) switches the
 *   connection to it.  Tickets stay valid across the switch: OpenSSL
 *   uses the initial context's ticket callback, and every context has the
 *   same one anyway (on_ticket_key).
 * - Defaults: TLS 1.2 at least, ECDHE key exchange only (no finite-field
 *   DH parameters to manage), AEAD ciphers, no renegotiation at all
 *   (SSL_OP_NO_RENEGOTIATION: a client's request gets a warning alert and
 *   the connection carries on), no compression, buffers released while a
 *   connection is idle (a front end holds many).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sodium.h>

#include "common/config.h"
#include "common/alloc.h"
#include "common/log.h"
#include "common/memwipe.h"
#include "pop3d/pop3d.h"

static struct {
	SSL_CTX *ctx[POP3D_TLS_MAX_CERTS];
	size_t n;
} T;

static struct tls_ticket_keys ticket_keys;
static bool ticket_keys_set;

bool tls_configured(const struct config *conf)
{
	return (conf->pop3d.listen_tls != NULL && conf->pop3d.listen_tls[0] != '\0') ||
	       conf->pop3d.starttls;
}

const char *tls_error_string(unsigned long err, char *buf, size_t size)
{
	const char *reason = ERR_reason_error_string(err);

	if (err == 0)
		snprintf(buf, size, "unknown error");
	else if (reason != NULL)
		snprintf(buf, size, "%s", reason);
	else
		ERR_error_string_n(err, buf, size);
	return buf;
}

/* The most specific OpenSSL error queued (the last), for a message;
 * empties the queue. */
static const char *last_error(char *buf, size_t size)
{
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	return tls_error_string(last, buf, size);
}

/* Splits a comma-separated list of paths (blanks around each trimmed)
 * into at most max items pointing into s, which is modified.  Returns the
 * count, or -1 if there are more than max or an item is empty. */
static int split_paths(char *s, char **items, size_t max)
{
	size_t n = 0;
	char *p = s;

	if (s == NULL || s[strspn(s, " \t")] == '\0')
		return 0;
	for (;;) {
		char *comma = strchr(p, ',');
		char *end;

		if (comma != NULL)
			*comma = '\0';
		p += strspn(p, " \t");
		end = p + strlen(p);
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*p == '\0' || n == max)
			return -1;
		items[n++] = p;
		if (comma == NULL)
			return (int)n;
		p = comma + 1;
	}
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	return -1;	/* never prompt: encrypted keys are refused */
}

/* Reads the PEM private key at path, refusing a file that group or others
 * may access.  The file's bytes are wiped after parsing.  Returns the key
 * or NULL (logged). */
static EVP_PKEY *load_key(const char *path)
{
	EVP_PKEY *pkey = NULL;
	struct stat st;
	char ebuf[256];
	uint8_t *buf;
	size_t len = 0;
	BIO *bio;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		log_warn("[pop3d] tls-key-file %s: cannot open", path);
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		log_warnx("[pop3d] tls-key-file %s: not a regular file", path);
		goto out_close;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		log_warnx("[pop3d] tls-key-file %s is accessible by group or others "
			  "(mode %04o); make it mode 0600 or 0400", path,
			  (unsigned)(st.st_mode & 07777));
		goto out_close;
	}
	if (st.st_size > POP3D_TLS_MAX_KEY_FILE) {
		log_warnx("[pop3d] tls-key-file %s: larger than %d bytes, not a key", path,
			  POP3D_TLS_MAX_KEY_FILE);
		goto out_close;
	}
	buf = xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + len, (size_t)st.st_size - len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	if (len != (size_t)st.st_size) {
		log_warn("[pop3d] tls-key-file %s: cannot read", path);
		goto out_wipe;
	}
	bio = BIO_new_mem_buf(buf, (int)len);
	if (bio == NULL)
		fatalx("BIO_new_mem_buf: out of memory");
	ERR_clear_error();
	pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
	BIO_free(bio);
	if (pkey == NULL)
		log_warnx("[pop3d] tls-key-file %s: no usable private key (PEM, not "
			  "encrypted): %s", path, last_error(ebuf, sizeof(ebuf)));
out_wipe:
	sodium_memzero(buf, (size_t)st.st_size + 1);
	free(buf);
out_close:
	close(fd);
	return pkey;
}

static void time_str(const ASN1_TIME *t, char *buf, size_t size)
{
	BIO *b = BIO_new(BIO_s_mem());
	int n = 0;

	buf[0] = '\0';
	if (b == NULL)
		return;
	if (ASN1_TIME_print(b, t) == 1)
		n = BIO_read(b, buf, (int)size - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(b);
}

/* Warns about a certificate that expires soon, has expired or is not valid
 * yet (the operator should know before clients complain). */
static void check_dates(SSL_CTX *ctx, const char *path)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	char when[64];
	int days, secs;

	if (x == NULL)
		return;
	if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
		time_str(X509_get0_notBefore(x), when, sizeof(when));
		log_warnx("[pop3d] tls-cert-file %s: certificate not valid before %s", path, when);
	}
	if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) != 1)
		return;
	time_str(X509_get0_notAfter(x), when, sizeof(when));
	if (days < 0 || secs < 0 || (days == 0 && secs == 0))
		log_warnx("[pop3d] tls-cert-file %s: certificate expired on %s", path, when);
	else if (days < POP3D_TLS_EXPIRY_WARN_DAYS)
		log_warnx("[pop3d] tls-cert-file %s: certificate expires in %d day%s (%s)", path,
			  days, days == 1 ? "" : "s", when);
}

/* OpenSSL's session-ticket callback (SSL_CTX_set_tlsext_ticket_key_evp_cb):
 * enc = 1, a new ticket: the current key's name, a fresh IV, the current
 * keys.  enc = 0, a ticket to open, named key_name: the current key (1),
 * the previous one (2: accept, and issue a new ticket), or none (0: the
 * ticket is ignored and the handshake is a full one).  -1 only if OpenSSL
 * cannot take the keys (the handshake fails). */
static int on_ticket_key(SSL *ssl, unsigned char *key_name, unsigned char *iv,
			 EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	static char digest[] = "SHA256";
	const struct tls_ticket_key *k;
	OSSL_PARAM params[3];
	int rc = 1;

	if (!ticket_keys_set)
		return 0;
	if (enc) {
		k = &ticket_keys.cur;
		memcpy(key_name, k->name, TLS_TICKET_NAME_LEN);
		randombytes_buf(iv, (size_t)EVP_CIPHER_get_iv_length(EVP_aes_256_cbc()));
	} else if (memcmp(key_name, ticket_keys.cur.name, TLS_TICKET_NAME_LEN) == 0) {
		k = &ticket_keys.cur;
	} else if (ticket_keys.has_prev &&
		   memcmp(key_name, ticket_keys.prev.name, TLS_TICKET_NAME_LEN) == 0) {
		k = &ticket_keys.prev;
		rc = 2;
	} else {
		return 0;
	}
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)(uintptr_t)k->hmac,
						      sizeof(k->hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
	params[2] = OSSL_PARAM_construct_end();
	if (EVP_MAC_CTX_set_params(hctx, params) != 1)
		return -1;
	if ((enc ? EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) :
	     EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv)) != 1)
		return -1;
	return rc;
}

/* One server context for the certificate chain in cert and the key in
 * key.  Returns it, or NULL (logged). */
static SSL_CTX *build_ctx(const struct config *conf, const char *cert, const char *key,
			  bool startup)
{
	SSL_CTX *ctx;
	EVP_PKEY *pkey;
	char ebuf[256];
	int fd;

	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		log_warnx("SSL_CTX_new: %s", last_error(ebuf, sizeof(ebuf)));
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, strcmp(conf->pop3d.tls_min_version, "TLSv1.3") == 0 ?
				      TLS1_3_VERSION : TLS1_2_VERSION);
	/* A TCP close without close_notify is an ordinary end: POP3 frames
	 * its own data, so there is no truncation to detect. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
			    SSL_OP_IGNORE_UNEXPECTED_EOF |
			    (conf->pop3d.tls_session_tickets ? 0 : SSL_OP_NO_TICKET));
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_set_cipher_list(ctx, conf->pop3d.tls_ciphers) != 1) {
		log_warnx("[pop3d] tls-ciphers: no usable cipher in \"%s\"", conf->pop3d.tls_ciphers);
		goto fail;
	}
	if (SSL_CTX_set_ciphersuites(ctx, conf->pop3d.tls_ciphersuites) != 1) {
		log_warnx("[pop3d] tls-ciphersuites: cannot use \"%s\"",
			  conf->pop3d.tls_ciphersuites);
		goto fail;
	}
	if (SSL_CTX_set1_groups_list(ctx, conf->pop3d.tls_groups) != 1) {
		log_warnx("[pop3d] tls-groups: cannot use \"%s\"", conf->pop3d.tls_groups);
		goto fail;
	}
	/* Our own open first, for a plain "No such file" instead of a
	 * chain of OpenSSL errors. */
	fd = open(cert, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd == -1) {
		log_warn("[pop3d] tls-cert-file %s: cannot open", cert);
		goto fail;
	}
	close(fd);
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		log_warnx("[pop3d] tls-cert-file %s: no usable PEM certificate chain: %s", cert,
			  last_error(ebuf, sizeof(ebuf)));
		goto fail;
	}
	pkey = load_key(key);
	if (pkey == NULL)
		goto fail;
	ERR_clear_error();
	if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		log_warnx("[pop3d] tls-key-file %s does not belong to the certificate in %s: %s",
			  key, cert, last_error(ebuf, sizeof(ebuf)));
		EVP_PKEY_free(pkey);
		goto fail;
	}
	EVP_PKEY_free(pkey);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"pop3d", 5);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (conf->pop3d.tls_session_tickets &&
	    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key) != 1) {
		log_warnx("cannot set the session ticket callback");
		goto fail;
	}
	if (startup)
		check_dates(ctx, cert);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* SNI: moves the connection to the first context whose certificate covers
 * the name the client asked for; unknown names keep the default. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	if (name == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	for (size_t i = 0; i < T.n; i++) {
		X509 *x = SSL_CTX_get0_certificate(T.ctx[i]);
		if (x != NULL && X509_check_host(x, name, strlen(name), 0, NULL) == 1) {
			if (i > 0 && SSL_set_SSL_CTX(ssl, T.ctx[i]) == NULL)
				return SSL_TLSEXT_ERR_ALERT_FATAL;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

/* Builds the contexts of every configured certificate into T.  Returns 0
 * or -1 (logged; nothing kept). */
static int load_all(const struct config *conf, bool startup)
{
	char *certs = xstrdup(conf->pop3d.tls_cert_file), *keys = xstrdup(conf->pop3d.tls_key_file);
	char *c[POP3D_TLS_MAX_CERTS], *k[POP3D_TLS_MAX_CERTS];
	int n = split_paths(certs, c, POP3D_TLS_MAX_CERTS), rc = 0;

	/* config.c vouched for the lists */
	if (n <= 0 || split_paths(keys, k, POP3D_TLS_MAX_CERTS) != n)
		fatalx("tls: certificate and key lists do not match");
	for (int i = 0; i < n && rc == 0; i++) {
		T.ctx[i] = build_ctx(conf, c[i], k[i], startup);
		if (T.ctx[i] == NULL)
			rc = -1;
		else
			T.n++;
	}
	if (rc == -1) {
		for (size_t i = 0; i < T.n; i++)
			SSL_CTX_free(T.ctx[i]);
		T.n = 0;
	} else {
		SSL_CTX_set_tlsext_servername_callback(T.ctx[0], on_servername);
	}
	free(certs);
	free(keys);
	return rc;
}

int tls_check_files(const struct config *conf)
{
	if (load_all(conf, true) == -1)
		return -1;
	for (size_t i = 0; i < T.n; i++)
		SSL_CTX_free(T.ctx[i]);
	T.n = 0;
	return 0;
}

/* Draws a new key into k, named unlike avoid (the other key of the ring). */
static void draw_key(struct tls_ticket_key *k, const struct tls_ticket_key *avoid)
{
	do
		randombytes_buf(k, sizeof(*k));
	while (avoid != NULL && memcmp(k->name, avoid->name, TLS_TICKET_NAME_LEN) == 0);
}

void tls_ticket_keys_init(void)
{
	if (ticket_keys_set)
		return;		/* a reload keeps them: tickets stay valid */
	memset(&ticket_keys, 0, sizeof(ticket_keys));
	draw_key(&ticket_keys.cur, NULL);
	ticket_keys_set = true;
}

void tls_ticket_keys_rotate(void)
{
	if (!ticket_keys_set) {
		tls_ticket_keys_init();
		return;
	}
	ticket_keys.prev = ticket_keys.cur;	/* the older one is overwritten */
	ticket_keys.has_prev = 1;
	draw_key(&ticket_keys.cur, &ticket_keys.prev);
}

bool tls_ticket_keys_get(struct tls_ticket_keys *keys_r)
{
	if (!ticket_keys_set)
		return false;
	*keys_r = ticket_keys;
	return true;
}

void tls_ticket_keys_set(const struct tls_ticket_keys *keys)
{
	sodium_memzero(&ticket_keys, sizeof(ticket_keys));
	ticket_keys = *keys;
	ticket_keys_set = true;
}

void tls_ticket_keys_wipe(void)
{
	sodium_memzero(&ticket_keys, sizeof(ticket_keys));
	ticket_keys_set = false;
}

void tls_wipe_freed(void)
{
	/* OpenSSL refuses once it has allocated anything: then a record
	 * buffer with a password in it would be freed unwiped. */
	if (CRYPTO_set_mem_functions(memwipe_crypto_malloc, memwipe_crypto_realloc,
				     memwipe_crypto_free) != 1)
		fatalx("CRYPTO_set_mem_functions: OpenSSL has allocated already");
}

int tls_server_init(const struct config *conf)
{
	int rc;

	/* Everything OpenSSL reads from the file system (its configuration,
	 * providers) is read now, before the chroot. */
	if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_CONFIG, NULL) != 1) {
		log_warnx("front end: cannot initialise OpenSSL");
		return -1;
	}
	rc = load_all(conf, false);
	if (rc == -1 || !conf->pop3d.tls_session_tickets)
		tls_ticket_keys_wipe();	/* not ours to keep (on_ticket_key uses them) */
	return rc;
}

struct ssl_st *tls_ssl_new(void)
{
	return T.n > 0 ? SSL_new(T.ctx[0]) : NULL;
}

void tls_describe(const struct ssl_st *ssl, char *buf, size_t size)
{
	const SSL_CIPHER *cipher = SSL_get_current_cipher(ssl);

	snprintf(buf, size, "%s/%s", SSL_get_version(ssl),
		 cipher != NULL ? SSL_CIPHER_get_name(cipher) : "none");
}
