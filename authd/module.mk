# authd/: the authentication daemon and authctl.
AUTHD_SRCS := authd/main.c authd/client.c authd/request.c authd/authenticator.c \
	authd/ticket.c authd/redeem.c authd/normalize.c authd/password.c authd/spawn.c \
	authd/passdb_passwd_file.c authd/passdb_external.c authd/passdb_pam.c \
	authd/passdb_ldap.c authd/stats.c authd/confreader.c authd/userdb.c authd/l2.c \
	authd/fairq.c authd/ratelog.c authd/argon2mem.c authd/shacrypt.c authd/dovecot.c authd/saslauthd.c \
	authd/saslproto.c
AUTHD_OBJS := $(AUTHD_SRCS:%.c=$(B)/obj/%.o)
# authctl pw writes hashes (pwgen.c) and checks them with password.c;
# userdb.c checks -U/-G/-H as the passwd-file reader will.
AUTHCTL_OBJS := $(B)/obj/authd/authctl.o $(B)/obj/authd/pwgen.o $(B)/obj/authd/password.o \
	$(B)/obj/authd/shacrypt.o $(B)/obj/authd/argon2mem.o $(B)/obj/authd/userdb.o
ALL_OBJS += $(AUTHD_OBJS) $(AUTHCTL_OBJS)

PROGRAMS += $(B)/authd $(B)/authctl
INSTALL_SBIN += $(B)/authd
INSTALL_BIN += $(B)/authctl

# password.c checks SHA-1/MD5 schemes ({SSHA}, {PLAIN-MD5}, ...) with
# libcrypto, which libsodium lacks.
AUTHD_CRYPTO_LIBS := $(shell pkg-config --libs libcrypto 2>/dev/null)
# The L2 cache (l2.c) talks to memcached through libmemcached.
MEMCACHED_LIBS := $(shell pkg-config --libs libmemcached 2>/dev/null || echo -lmemcached)
# User names are normalised (NFC, case mapping: normalize.c) with
# libunistring's Unicode tables (Debian: libunistring-dev; no .pc file).
UNISTRING_LIBS := -lunistring

# PAM runs only in the helper (pam-helper), never in the threaded daemon.
$(B)/authd: $(AUTHD_OBJS) $(COMMON_OBJS) $(CACHE_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lldap -llber $(AUTHD_CRYPTO_LIBS) $(MEMCACHED_LIBS) \
		$(UNISTRING_LIBS)

# The PAM helper is built without sanitizers in every build: it loads
# arbitrary (unsanitized) PAM modules, and pam_wrapper, which the tests
# use, dlopens libpam with RTLD_DEEPBIND, which sanitizer runtimes refuse.
# It needs nothing from common/ but limits.h and memwipe.c (libc only).
# HELPER_FLAGS adds compiler and linker flags (the Debian package passes
# dpkg-buildflags' here).
PROGRAMS += $(B)/authd-pam-helper
INSTALL_LIBEXEC += $(B)/authd-pam-helper
$(B)/authd-pam-helper: authd/pam_helper.c common/memwipe.c common/memwipe.h common/limits.h
	@mkdir -p $(dir $@)
	$(CC) -D_GNU_SOURCE -I. -std=gnu11 -O2 -g $(WARN) -fstack-protector-strong -fPIE \
		-D_FORTIFY_SOURCE=2 -pie -Wl,-z,relro,-z,now $(HELPER_FLAGS) -o $@ authd/pam_helper.c \
		common/memwipe.c -lpam -lsodium

$(B)/authctl: $(AUTHCTL_OBJS) $(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(AUTHD_CRYPTO_LIBS)

# Unit tests of authd modules: each links the module under test alone.
AUTHD_TESTS := test-password test-pwgen test-normalize test-queue test-passwd-file test-userdb \
	test-ratelog
UNIT_TESTS += $(AUTHD_TESTS:%=$(B)/%)
ALL_OBJS += $(AUTHD_TESTS:%=$(B)/obj/authd/%.o)

$(B)/test-password: $(B)/obj/authd/test-password.o $(B)/obj/authd/password.o \
		$(B)/obj/authd/shacrypt.o $(B)/obj/authd/argon2mem.o $(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(AUTHD_CRYPTO_LIBS)

$(B)/test-pwgen: $(B)/obj/authd/test-pwgen.o $(B)/obj/authd/pwgen.o $(B)/obj/authd/password.o \
		$(B)/obj/authd/shacrypt.o $(B)/obj/authd/argon2mem.o $(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(AUTHD_CRYPTO_LIBS)

$(B)/test-userdb: $(B)/obj/authd/test-userdb.o $(B)/obj/authd/userdb.o $(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/test-normalize: $(B)/obj/authd/test-normalize.o $(B)/obj/authd/normalize.o $(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(UNISTRING_LIBS)

$(B)/test-passwd-file: $(B)/obj/authd/test-passwd-file.o $(B)/obj/authd/passdb_passwd_file.o \
		$(B)/obj/authd/userdb.o $(B)/obj/authd/password.o $(B)/obj/authd/shacrypt.o \
		$(B)/obj/authd/argon2mem.o $(COMMON_OBJS) $(CACHE_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(AUTHD_CRYPTO_LIBS)

# ratelog.c is included by its test (to run the summary ticks).
$(B)/test-ratelog: $(B)/obj/authd/test-ratelog.o $(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# authenticator.c with a scripted backend (the test defines the passdb_* ops).
$(B)/test-queue: $(B)/obj/authd/test-queue.o $(B)/obj/authd/authenticator.o \
		$(B)/obj/authd/fairq.o $(B)/obj/authd/ratelog.o $(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
