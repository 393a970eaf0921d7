/*
 * fuzz-config.c - libFuzzer harness for the config loader (common/config.c
 * on libinih).  Each input is read from memory (config_load_buffer, the
 * same parser config_load runs on a file).  Build and run with
 * tests/fuzz/run.
 *
 * Besides crashes, sanitizer reports and leaks, it aborts when a loaded
 * config breaks what config.h promises: 1..CONFIG_MAX_AUTHENTICATORS
 * authenticators, each findable by its name; 1..CONFIG_MAX_LISTEN listen
 * addresses; a NULL-ended argv for programs; or when a failed load leaves
 * an error that does not start with the file name.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char path[] = "/fuzz/pop3d.conf";

static void check(const struct config *conf)
{
	if (conf->nauths < 1 || conf->nauths > CONFIG_MAX_AUTHENTICATORS)
		abort();
	if (conf->pop3d.nlisten + conf->pop3d.ntls_addrs < 1 ||
	    conf->pop3d.nlisten > CONFIG_MAX_LISTEN || conf->pop3d.ntls_addrs > CONFIG_MAX_LISTEN)
		abort();
	for (size_t i = 0; i < conf->pop3d.ntls_addrs; i++)
		if (conf->pop3d.tls_addrs[i] == NULL || conf->pop3d.tls_addrs[i][0] == '\0')
			abort();
	/* config.c's checks of pop3d's keys hold */
	if (strlen(conf->pop3d.greeting) > 200 || strpbrk(conf->pop3d.greeting, "\r\n") != NULL)
		abort();
	if (conf->pop3d.require_tls && conf->pop3d.ntls_addrs == 0 && !conf->pop3d.starttls)
		abort();
	if ((conf->pop3d.ntls_addrs > 0 || conf->pop3d.starttls) &&
	    (conf->pop3d.ntls_certs < 1 || conf->pop3d.ntls_certs > TLS_MAX_CERTS))
		abort();
	for (size_t i = 0; i < conf->pop3d.nlisten; i++)
		if (conf->pop3d.listen_addrs[i] == NULL || conf->pop3d.listen_addrs[i][0] == '\0')
			abort();
	for (size_t i = 0; i < conf->nauths; i++) {
		const struct auth_conf *a = &conf->auths[i];
		size_t n = strlen(a->name);

		if (n < 1 || n > 32 || config_find_auth(conf, a->name) != a)
			abort();
		if (a->type == AUTH_TYPE_PASSWD_FILE && a->path == NULL)
			abort();
		if (a->type == AUTH_TYPE_LDAP) {
			if (a->ldap_nuris < 1 || a->ldap_nuris > LDAP_MAX_URIS ||
			    a->ldap_nmap > LDAP_MAX_MAP || strstr(a->ldap_filter, "%") == NULL)
				abort();
			for (size_t k = 0; k < a->ldap_nmap; k++)
				for (size_t j = 0; j < k; j++)
					if (a->ldap_map[j].field == a->ldap_map[k].field)
						abort();
		}
		if (a->type == AUTH_TYPE_EXTERNAL || a->type == AUTH_TYPE_CHECKPASSWORD) {
			size_t k = 0;

			if (a->program == NULL || a->argv[0] == NULL || a->argv[0][0] != '/')
				abort();
			while (k <= CONFIG_MAX_ARGS && a->argv[k] != NULL)
				k++;
			if (k > CONFIG_MAX_ARGS)
				abort();
		}
	}
	if (conf->authd.socket == NULL || conf->pop3d.greeting == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	struct config *conf;

	if (size > 64 * 1024)
		return 0;
	memset(err, 0x55, sizeof(err));
	conf = config_load_buffer(path, data, size, err, sizeof(err));
	if (conf == NULL) {
		if (memchr(err, '\0', sizeof(err)) == NULL || strncmp(err, path, strlen(path)) != 0)
			abort();
		return 0;
	}
	check(conf);
	config_free(&conf);
	if (conf != NULL)
		abort();
	return 0;
}
