# authd + pop3d: top-level build.
#
#   make                      build everything into build/
#   make check                install missing packages, build, run every test
#                             (plain, then ASan+UBSan, then TSan for authd/cache)
#   make run                  start both daemons on 127.0.0.1 with the demo config
#   make install              PREFIX=/usr/local DESTDIR=
#   make SANITIZER=address    (ASan+UBSan) | undefined | thread, built into build/<sanitizer>/
#
# Each directory adds its sources and programs in its own module.mk.

PREFIX   ?= /usr/local
DESTDIR  ?=
SBINDIR  ?= $(PREFIX)/sbin
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
LIBEXECDIR ?= $(PREFIX)/libexec/authd
SYSCONFDIR ?= /etc
PYTHON   ?= /usr/bin/python3
CC       ?= cc

SANITIZER ?=
BUILDDIR  ?= build
ifeq ($(SANITIZER),)
B := $(BUILDDIR)
else
B := $(BUILDDIR)/$(SANITIZER)
endif

# pkg-config runs when this file is parsed.  On a fresh machine the -dev
# packages are not there yet at that moment, so the goals that install them
# (run, check, bench) only install, then build in a sub-make that parses
# this file again, never in the make that ran install-deps.  A goal that
# builds without installing stops here with the reason instead of failing
# to link.
PKGS := libevent libevent_pthreads libsodium inih libcrypt
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
PKG_FOUND  := $(shell pkg-config --exists $(PKGS) libevent_openssl libssl libcrypto && echo yes)
INSTALL_DEPS ?= scripts/install-deps
NOBUILD_GOALS := deps run check bench clean uninstall
ifneq ($(filter-out $(NOBUILD_GOALS),$(or $(MAKECMDGOALS),all)),)
ifneq ($(PKG_FOUND),yes)
$(error pkg-config cannot find $(PKGS) libevent_openssl libssl libcrypto: Debian packages are missing; `make deps` installs them (`make run` and `make check` do it themselves))
endif
# liblockfile (pop3d's mbox dot locks) has no pkg-config file.
ifeq ($(wildcard /usr/include/lockfile.h),)
$(error lockfile.h is missing: Debian package liblockfile-dev; `make deps` installs it)
endif
endif

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wcast-qual -Wformat=2 -Wno-unused-parameter
HARDEN := -fstack-protector-strong -fPIE
LDHARDEN := -pie -Wl,-z,relro,-z,now
ifeq ($(CI),true)
WARN += -Werror
endif

OPT := -O2
ifeq ($(SANITIZER),address)
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT := -O1
else ifeq ($(SANITIZER),undefined)
SAN := -fsanitize=undefined -fno-sanitize-recover=undefined
else ifeq ($(SANITIZER),thread)
SAN := -fsanitize=thread
OPT := -O1
else ifneq ($(SANITIZER),)
$(error SANITIZER must be address, undefined or thread)
endif
ifeq ($(SAN),)
HARDEN += -D_FORTIFY_SOURCE=2
endif

CPPFLAGS += -D_GNU_SOURCE -I. $(PKG_CFLAGS) -DLIBEXECDIR='"$(LIBEXECDIR)"'
CFLAGS   ?= -g
CFLAGS   += -std=gnu11 $(OPT) $(WARN) $(HARDEN) $(SAN) -pthread -MMD -MP
LDFLAGS  += $(LDHARDEN) $(SAN) -pthread
LDLIBS   += $(PKG_LIBS) -lm

PROGRAMS   :=
UNIT_TESTS :=
ALL_OBJS   :=

all: programs

include common/module.mk
-include cache/module.mk
include authd/module.mk
-include pop3d/module.mk
-include bench/module.mk
-include tests/module.mk

programs: $(PROGRAMS) $(UNIT_TESTS)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

-include $(ALL_OBJS:.o=.d)

# ---- tests ---------------------------------------------------------------

deps:
	@$(INSTALL_DEPS)

unit: programs
	@tests/run-unit $(UNIT_TESTS)

integration: programs
	BUILD_DIR=$(CURDIR)/$(B) SANITIZER=$(SANITIZER) $(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)

# libFuzzer harnesses of every parser (tests/fuzz/run; docs/reliability.md
# lists them).  make fuzz: each for FUZZ_RUNS executions, the long run
# whose figures go in docs/reliability.md (hours on 2 cores); make
# fuzz-short: each for FUZZ_SECONDS (make check: 3).  FUZZ_HARNESSES
# picks some (e.g. FUZZ_HARNESSES="ldap maildir").
FUZZ_RUNS ?= 10000000
FUZZ_SECONDS ?= 30
FUZZ_HARNESSES ?=
fuzz:
	FUZZ_RUNS=$(FUZZ_RUNS) tests/fuzz/run $(FUZZ_HARNESSES)

fuzz-short:
	FUZZ_RUNS= tests/fuzz/run $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

.PHONY: fuzz fuzz-short

# Benchmarks (bench/run-bench, docs/benchmarks.md): the standard scenarios
# against daemons started on loopback, about 7 minutes; bench-smoke is a
# few seconds' check that the suite still works.
bench: deps
	$(MAKE) programs
	$(PYTHON) bench/run-bench

bench-smoke: programs
	$(PYTHON) bench/run-bench --smoke

# The shared cache (L2) across three hosts on loopback, L2 on and off
# (bench/cluster-bench, docs/benchmarks.md "Shared cache (L2)"), a few minutes.
bench-cluster: programs
	$(PYTHON) bench/cluster-bench

.PHONY: bench bench-smoke bench-cluster

# The whole suite: plain build, then ASan+UBSan, then TSan on the threaded
# parts (cache and authd), then a short fuzzing pass (3 s per harness).
# Sub-makes keep the builds apart (build/, build/address/, build/thread/).
check: deps
	$(MAKE) programs
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) SANITIZER=address programs
	$(MAKE) SANITIZER=address unit
	$(MAKE) SANITIZER=address integration
	$(MAKE) SANITIZER=thread programs
	$(MAKE) SANITIZER=thread unit
	$(MAKE) SANITIZER=thread integration PYTEST_ARGS="-m threaded"
	$(MAKE) fuzz-short FUZZ_SECONDS=3
	$(MAKE) bench-smoke

DEMO ?= scripts/demo
run: deps
	$(MAKE) $(PROGRAMS)
	@BUILD_DIR=$(B) $(DEMO)

UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
CONFDIR     := $(SYSCONFDIR)/pop3d

# Installs programs, units, sysusers/tmpfiles entries, man pages and the
# example configuration; pop3d.conf itself only if there is none yet.
install: $(PROGRAMS)
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(CONFDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(TMPFILESDIR)
	install -m 0755 $(INSTALL_SBIN) $(DESTDIR)$(SBINDIR)/
	install -m 0755 $(INSTALL_BIN) $(DESTDIR)$(BINDIR)/
	install -m 0755 $(INSTALL_LIBEXEC) $(DESTDIR)$(LIBEXECDIR)/
	$(if $(wildcard man/*.1),install -m 0644 $(wildcard man/*.1) $(DESTDIR)$(MANDIR)/man1/)
	$(if $(wildcard man/*.5),install -m 0644 $(wildcard man/*.5) $(DESTDIR)$(MANDIR)/man5/)
	$(if $(wildcard man/*.8),install -m 0644 $(wildcard man/*.8) $(DESTDIR)$(MANDIR)/man8/)
	install -m 0640 conf/pop3d.conf.example $(DESTDIR)$(CONFDIR)/pop3d.conf.example
	[ -e $(DESTDIR)$(CONFDIR)/pop3d.conf ] || \
		install -m 0640 conf/pop3d.conf.example $(DESTDIR)$(CONFDIR)/pop3d.conf
	for u in authd pop3d; do \
		sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
			conf/systemd/$$u.service.in > $(DESTDIR)$(UNITDIR)/$$u.service; \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.service; \
	done
	install -m 0644 conf/systemd/pop3d.sysusers $(DESTDIR)$(SYSUSERSDIR)/pop3d.conf
	install -m 0644 conf/systemd/pop3d.tmpfiles $(DESTDIR)$(TMPFILESDIR)/pop3d.conf

# Removes what install put there, except the configuration.
uninstall:
	rm -f $(foreach p,$(INSTALL_SBIN),$(DESTDIR)$(SBINDIR)/$(notdir $(p))) \
		$(foreach p,$(INSTALL_BIN),$(DESTDIR)$(BINDIR)/$(notdir $(p))) \
		$(foreach p,$(INSTALL_LIBEXEC),$(DESTDIR)$(LIBEXECDIR)/$(notdir $(p))) \
		$(foreach m,$(wildcard man/*.1),$(DESTDIR)$(MANDIR)/man1/$(notdir $(m))) \
		$(foreach m,$(wildcard man/*.5),$(DESTDIR)$(MANDIR)/man5/$(notdir $(m))) \
		$(foreach m,$(wildcard man/*.8),$(DESTDIR)$(MANDIR)/man8/$(notdir $(m))) \
		$(DESTDIR)$(UNITDIR)/authd.service $(DESTDIR)$(UNITDIR)/pop3d.service \
		$(DESTDIR)$(SYSUSERSDIR)/pop3d.conf $(DESTDIR)$(TMPFILESDIR)/pop3d.conf \
		$(DESTDIR)$(CONFDIR)/pop3d.conf.example
	-rmdir $(DESTDIR)$(LIBEXECDIR)

clean:
	rm -rf build

.PHONY: all programs deps unit integration check run install uninstall clean fuzz
