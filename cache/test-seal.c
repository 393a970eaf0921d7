/*
 * test-seal.c - unit tests for cache/seal.c: the cluster key file, the
 * derived keys (and their agreement with cache.c's L1 keys), sealing and
 * opening entries, and the small parsers of what memcached returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cache/seal.h"
#include "tests/unit.h"

static uint8_t master[64];

static struct seal_keyset keys(size_t len)
{
	struct seal_keyset ks;
	const char *err = NULL;

	if (seal_keyset_from_bytes(master, len, &ks, &err) == -1) {
		fprintf(stderr, "seal_keyset_from_bytes: %s\n", err);
		exit(2);
	}
	return ks;
}

static struct seal_entry sample(void)
{
	struct seal_entry e;

	memset(&e, 0, sizeof(e));
	memset(e.verifier, 0xab, sizeof(e.verifier));
	e.fresh_until = 1700000000000;
	e.stale_until = 1700003600000;
	e.generation = 0x1122334455667788ull;
	e.epoch = 42;
	e.uid = 1001;
	e.gid = 100;
	snprintf(e.home, sizeof(e.home), "/home/alice");
	snprintf(e.maildrop, sizeof(e.maildrop), "maildir:/var/vmail/alice");
	snprintf(e.authenticator, sizeof(e.authenticator), "ldap");
	return e;
}

static void test_keyfile_sizes(void)
{
	struct seal_keyset ks;
	const char *err = NULL;
	uint8_t zero[32] = { 0 };

	CHECK_INT(seal_keyset_from_bytes(master, 31, &ks, &err), -1);
	CHECK(err != NULL && strstr(err, "exactly 32 bytes") != NULL);
	CHECK_INT(seal_keyset_from_bytes(master, 33, &ks, &err), -1);
	CHECK_INT(seal_keyset_from_bytes(master, 0, &ks, &err), -1);
	CHECK_INT(seal_keyset_from_bytes(zero, 32, &ks, &err), -1);
	CHECK(strstr(err, "zero") != NULL);
	CHECK_INT(seal_keyset_from_bytes(master, 32, &ks, &err), 0);
	CHECK_INT(ks.n, 1);
	CHECK_INT(seal_keyset_from_bytes(master, 64, &ks, &err), 0);
	CHECK_INT(ks.n, 2);
	/* the three derived keys differ from each other and between keys */
	CHECK(memcmp(ks.k[0].name, ks.k[0].verifier, 32) != 0);
	CHECK(memcmp(ks.k[0].name, ks.k[0].seal, 32) != 0);
	CHECK(memcmp(ks.k[0].seal, ks.k[1].seal, 32) != 0);
	/* the same key twice is one key */
	uint8_t twice[64];
	memcpy(twice, master, 32);
	memcpy(twice + 32, master, 32);
	CHECK_INT(seal_keyset_from_bytes(twice, 64, &ks, &err), 0);
	CHECK_INT(ks.n, 1);
}

/* L1 built with the cluster's hashing keys computes the same user key and
 * verifier as L2's names: what lets a flush record name an L1 entry. */
static void test_l1_agrees(void)
{
	struct seal_keyset ks = keys(32);
	uint8_t hk[64], k1[CACHE_KEY_LEN], k2[CACHE_KEY_LEN], v1[32], v2[32];
	struct cache_settings cs = { .size = 1 << 20, .fail_max_per_set = 2,
				     .nouser_max_per_set = 2, .hash_keys = hk };
	const char *err;
	struct cache *c;

	memcpy(hk, ks.k[0].name, 32);
	memcpy(hk + 32, ks.k[0].verifier, 32);
	c = cache_create(&cs, &err);
	CHECK(c != NULL);
	cache_key(c, "chain", "alice", k1);
	seal_user_key(&ks.k[0], "chain", "alice", k2);
	CHECK(memcmp(k1, k2, sizeof(k1)) == 0);
	cache_verifier(c, k1, "secret", NULL, v1);
	seal_verifier(&ks.k[0], k2, "secret", NULL, v2);
	CHECK(memcmp(v1, v2, sizeof(v1)) == 0);
	cache_verifier(c, k1, "secret", "ldap", v1);
	CHECK(memcmp(v1, v2, sizeof(v1)) != 0);
	seal_verifier(&ks.k[0], k2, "secret", "ldap", v2);
	CHECK(memcmp(v1, v2, sizeof(v1)) == 0);
	/* another key: other names */
	seal_user_key(&ks.k[0], "chain", "bob", k2);
	CHECK(memcmp(k1, k2, sizeof(k1)) != 0);
	cache_free(&c);
}

static void test_seal_open_roundtrip(void)
{
	struct seal_keyset ks = keys(64);
	struct seal_entry e = sample(), out;
	uint8_t key[CACHE_KEY_LEN], v[SEAL_VALUE_MAX], v2[SEAL_VALUE_MAX];
	char name[SEAL_NAME_SIZE];
	size_t len, len2;

	seal_user_key(&ks.k[0], "chain", "alice", key);
	seal_name('a', key, name);
	CHECK(strncmp(name, "authd:a:", 8) == 0 && strlen(name) == 8 + 64);
	CHECK_INT(seal_entry_seal(&ks.k[0], name, &e, v, &len), 0);
	CHECK(len <= SEAL_VALUE_MAX);
	CHECK(memmem(v, len, "alice", 5) == NULL && memmem(v, len, "/home", 5) == NULL);
	CHECK_INT(seal_entry_open(&ks.k[0], name, v, len, &out), SEAL_OPENED);
	CHECK(memcmp(&e.verifier, &out.verifier, 32) == 0);
	CHECK(out.fresh_until == e.fresh_until && out.stale_until == e.stale_until);
	CHECK(out.generation == e.generation && out.epoch == e.epoch);
	CHECK_INT(out.uid, 1001);
	CHECK_INT(out.gid, 100);
	CHECK_STR(out.home, "/home/alice");
	CHECK_STR(out.maildrop, "maildir:/var/vmail/alice");
	CHECK_STR(out.authenticator, "ldap");
	/* a fresh nonce each time */
	CHECK_INT(seal_entry_seal(&ks.k[0], name, &e, v2, &len2), 0);
	CHECK(len == len2 && memcmp(v, v2, len) != 0);
	/* the previous key does not open it, nor does another name */
	CHECK_INT(seal_entry_open(&ks.k[1], name, v, len, &out), SEAL_BAD_SEAL);
	CHECK(out.uid == 0 && out.home[0] == '\0');	/* wiped */
	char other[SEAL_NAME_SIZE];
	seal_user_key(&ks.k[0], "chain", "bob", key);
	seal_name('a', key, other);
	CHECK_INT(seal_entry_open(&ks.k[0], other, v, len, &out), SEAL_BAD_SEAL);
	/* every single flipped bit is refused */
	unsigned refused = 0;
	for (size_t i = 0; i < len; i++)
		for (unsigned b = 0; b < 8; b++) {
			v[i] ^= (uint8_t)(1u << b);
			refused += seal_entry_open(&ks.k[0], name, v, len, &out) != SEAL_OPENED;
			v[i] ^= (uint8_t)(1u << b);
		}
	CHECK_INT(refused, len * 8);
	/* truncated, extended, other version */
	CHECK_INT(seal_entry_open(&ks.k[0], name, v, len - 1, &out), SEAL_BAD_SEAL);
	CHECK_INT(seal_entry_open(&ks.k[0], name, v, 10, &out), SEAL_BAD_VERSION);
	CHECK_INT(seal_entry_open(&ks.k[0], name, v, SEAL_VALUE_MAX + 1, &out), SEAL_BAD_VERSION);
	v[0] = 2;
	CHECK_INT(seal_entry_open(&ks.k[0], name, v, len, &out), SEAL_BAD_VERSION);
}

static void test_seal_bounds(void)
{
	struct seal_keyset ks = keys(32);
	struct seal_entry e = sample();
	uint8_t v[SEAL_VALUE_MAX];
	size_t len;

	/* the longest strings fit; the value never exceeds SEAL_VALUE_MAX */
	memset(e.home, 'h', CACHE_HOME_MAX);
	e.home[CACHE_HOME_MAX] = '\0';
	memset(e.maildrop, 'm', CACHE_MAILDROP_MAX);
	e.maildrop[CACHE_MAILDROP_MAX] = '\0';
	memset(e.authenticator, 'a', CACHE_AUTHENTICATOR_MAX);
	e.authenticator[CACHE_AUTHENTICATOR_MAX] = '\0';
	CHECK_INT(seal_entry_seal(&ks.k[0], "authd:a:x", &e, v, &len), 0);
	CHECK_INT(len, SEAL_VALUE_MAX);
	struct seal_entry out;
	CHECK_INT(seal_entry_open(&ks.k[0], "authd:a:x", v, len, &out), SEAL_OPENED);
	CHECK_INT(strlen(out.home), CACHE_HOME_MAX);
	/* stale before fresh, or no fresh time: sealed, but refused on open */
	e = sample();
	e.stale_until = e.fresh_until - 1;
	CHECK_INT(seal_entry_seal(&ks.k[0], "authd:a:x", &e, v, &len), 0);
	CHECK_INT(seal_entry_open(&ks.k[0], "authd:a:x", v, len, &out), SEAL_BAD_CONTENT);
}

static void test_parsers(void)
{
	uint64_t v;
	uint8_t key[CACHE_KEY_LEN];
	char hex[2 * CACHE_KEY_LEN + 1];

	CHECK_INT(seal_parse_u64hex("00000000000000ff", 16, &v), 0);
	CHECK(v == 255);
	CHECK_INT(seal_parse_u64hex("FFFFFFFFFFFFFFFF", 16, &v), 0);
	CHECK(v == UINT64_MAX);
	CHECK_INT(seal_parse_u64hex("00000000000000f", 15, &v), -1);
	CHECK_INT(seal_parse_u64hex("00000000000000fg", 16, &v), -1);
	CHECK_INT(seal_parse_u64hex("0000000 0000000f", 16, &v), -1);
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 7);
	sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
	uint8_t back[CACHE_KEY_LEN];
	CHECK_INT(seal_parse_keyhex(hex, strlen(hex), back), 0);
	CHECK(memcmp(key, back, sizeof(key)) == 0);
	CHECK_INT(seal_parse_keyhex(hex, strlen(hex) - 1, back), -1);
	hex[5] = 'x';
	CHECK_INT(seal_parse_keyhex(hex, strlen(hex), back), -1);
}

static void test_kick(void)
{
	struct seal_keyset ks = keys(64), other;
	struct seal_kick k, out;
	char hex[SEAL_KICK_HEX_MAX + 1];
	int n;

	memset(&k, 0, sizeof(k));
	k.id = 0x0102030405060708ull;
	k.issued = 1700000000123;
	snprintf(k.user, sizeof(k.user), "alice@example.org");
	n = seal_kick_seal(&ks.k[0], &k, hex);
	CHECK(n > 0 && (size_t)n == strlen(hex));
	/* the name is not in the clear */
	CHECK(strstr(hex, "616c696365") == NULL);
	CHECK_INT(seal_kick_open(&ks.k[0], hex, (size_t)n, &out), SEAL_OPENED);
	CHECK(out.id == k.id && out.issued == k.issued);
	CHECK_STR(out.user, "alice@example.org");
	/* the previous key does not open it; another cluster's neither */
	CHECK_INT(seal_kick_open(&ks.k[1], hex, (size_t)n, &out), SEAL_BAD_SEAL);
	master[0] ^= 1;
	other = keys(32);
	master[0] ^= 1;
	CHECK_INT(seal_kick_open(&other.k[0], hex, (size_t)n, &out), SEAL_BAD_SEAL);
	/* a flipped digit, odd or short lengths, non-hex */
	hex[n - 3] = hex[n - 3] == '0' ? '1' : '0';
	CHECK_INT(seal_kick_open(&ks.k[0], hex, (size_t)n, &out), SEAL_BAD_SEAL);
	CHECK(out.user[0] == '\0');
	CHECK_INT(seal_kick_open(&ks.k[0], hex, (size_t)n - 1, &out), SEAL_BAD_VERSION);
	CHECK_INT(seal_kick_open(&ks.k[0], hex, 20, &out), SEAL_BAD_VERSION);
	hex[4] = 'z';
	CHECK_INT(seal_kick_open(&ks.k[0], hex, (size_t)n, &out), SEAL_BAD_VERSION);
	/* an entry's seal is not a kick's (different associated data) */
	struct seal_entry e = sample();
	uint8_t v[SEAL_VALUE_MAX];
	size_t len;
	char ehex[2 * SEAL_VALUE_MAX + 1];
	CHECK_INT(seal_entry_seal(&ks.k[0], "authd:kick", &e, v, &len), 0);
	sodium_bin2hex(ehex, sizeof(ehex), v, len);
	CHECK(seal_kick_open(&ks.k[0], ehex, 2 * len, &out) != SEAL_OPENED);
	/* names: empty, longest, too long; blanks refused on open */
	k.user[0] = '\0';
	CHECK_INT(seal_kick_seal(&ks.k[0], &k, hex), -1);
	memset(k.user, 'u', SEAL_KICK_USER_MAX);
	k.user[SEAL_KICK_USER_MAX] = '\0';
	n = seal_kick_seal(&ks.k[0], &k, hex);
	CHECK_INT(n, SEAL_KICK_HEX_MAX);
	CHECK_INT(seal_kick_open(&ks.k[0], hex, (size_t)n, &out), SEAL_OPENED);
	CHECK_INT(strlen(out.user), SEAL_KICK_USER_MAX);
	/* a blank inside a name is a name (user_normalize allows it) */
	snprintf(k.user, sizeof(k.user), "john smith");
	n = seal_kick_seal(&ks.k[0], &k, hex);
	CHECK_INT(seal_kick_open(&ks.k[0], hex, (size_t)n, &out), SEAL_OPENED);
	CHECK_STR(out.user, "john smith");
	/* control bytes are not */
	snprintf(k.user, sizeof(k.user), "a\tb");
	n = seal_kick_seal(&ks.k[0], &k, hex);
	CHECK_INT(seal_kick_open(&ks.k[0], hex, (size_t)n, &out), SEAL_BAD_CONTENT);
}

int main(void)
{
	if (sodium_init() < 0)
		return 2;
	randombytes_buf(master, sizeof(master));
	UNIT_RUN(test_keyfile_sizes);
	UNIT_RUN(test_l1_agrees);
	UNIT_RUN(test_seal_open_roundtrip);
	UNIT_RUN(test_seal_bounds);
	UNIT_RUN(test_parsers);
	UNIT_RUN(test_kick);
	return unit_finish();
}
