# authd + pop3d: top-level build.
#
#   make                      build everything into build/
#   make check                install missing packages, build, run every test
#                             (plain, then ASan+UBSan, then TSan for authd/cache)
#   make run                  start both daemons on 127.0.0.1 with the demo config
#   make install              PREFIX=/usr/local DESTDIR=
#   make deb                  the Debian package, into build/deb/ (debian/)
#   make SANITIZER=address    (ASan+UBSan) | undefined | thread, built into build/<sanitizer>/
#
# Each directory adds its sources and programs in its own module.mk.

PREFIX   ?= /usr/local
DESTDIR  ?=
SBINDIR  ?= $(PREFIX)/sbin
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
LIBEXECDIR ?= $(PREFIX)/libexec/authd
LOCALEDIR ?= $(PREFIX)/share/locale
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
NOBUILD_GOALS := deps bench-deps run check bench clean uninstall deb pot pot-file
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
CPPFLAGS += -DLOCALEDIR='"$(LOCALEDIR)"'
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
-include po/module.mk

programs: $(PROGRAMS) $(UNIT_TESTS)

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

-include $(ALL_OBJS:.o=.d)

# ---- tests ---------------------------------------------------------------

deps:
	@$(INSTALL_DEPS)

# The benchmarks' packages too (python3-matplotlib for the charts): only
# `make bench` asks for them, so `make check` and `make run` never do.
bench-deps:
	@$(INSTALL_DEPS) --bench

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

# The chaos suite's long run (tests/integration/test_chaos.py,
# docs/reliability.md "Chaos"): rounds of every fault under a load of
# CHAOS_CLIENTS clients for CHAOS_SECONDS, then the figures.  make check
# runs one short round with the other integration tests.
CHAOS_SECONDS ?= 180
CHAOS_CLIENTS ?= 8
chaos: programs
	CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_CLIENTS=$(CHAOS_CLIENTS) BUILD_DIR=$(CURDIR)/$(B) \
		SANITIZER=$(SANITIZER) $(PYTHON) -m pytest -q -s tests/integration/test_chaos.py

.PHONY: chaos

# Benchmarks (bench/run-bench, docs/benchmarks.md): the standard scenarios
# against daemons started on loopback, about 7 minutes, and their charts
# (bench/plot-results, into docs/img/); bench-smoke is a few seconds'
# check that the suite still works (no charts: make check needs no
# matplotlib).
bench: bench-deps
	$(MAKE) programs
	$(PYTHON) bench/run-bench

bench-smoke: programs
	$(PYTHON) bench/run-bench --smoke

# The shared cache (L2) across three hosts on loopback, L2 on and off
# (bench/cluster-bench, docs/benchmarks.md "Shared cache (L2)"), a few minutes.
bench-cluster: programs
	$(PYTHON) bench/cluster-bench

# Floods and overload, ours and Dovecot side by side (bench/overload-bench,
# docs/benchmarks.md "Floods and overload"), about 6 minutes; as root.
bench-overload: programs
	$(PYTHON) bench/overload-bench

# SMTP AUTH through a private Postfix with authd or Dovecot's auth behind
# it, and the saslauthd protocol against Cyrus saslauthd (bench/compare-sasl,
# docs/benchmarks.md "SMTP AUTH and saslauthd"), about 3 minutes; as root.
bench-sasl: programs
	$(PYTHON) bench/compare-sasl

.PHONY: bench bench-deps bench-smoke bench-cluster bench-overload bench-sasl

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
install: $(PROGRAMS) $(MO_FILES)
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
	for l in $(PO_LANGS); do \
		install -D -m 0644 $(B)/locale/$$l/LC_MESSAGES/pop3d.mo \
			$(DESTDIR)$(LOCALEDIR)/$$l/LC_MESSAGES/pop3d.mo; \
	done

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
		$(DESTDIR)$(CONFDIR)/pop3d.conf.example \
		$(foreach l,$(PO_LANGS),$(DESTDIR)$(LOCALEDIR)/$(l)/LC_MESSAGES/pop3d.mo)
	-rmdir $(DESTDIR)$(LIBEXECDIR)

# The Debian package (debian/, docs/operations.md): dpkg-buildpackage in a
# copy of the tree under DEBDIR, so the tree gets no debhelper files and
# build/ stays the developer's; the .deb, .changes and .buildinfo land in
# DEBDIR.  Needs dpkg-dev, debhelper and the Build-Depends of debian/control
# (dpkg-buildpackage names any that are missing).  DEB_BUILD_OPTIONS=nocheck
# skips the unit tests the build runs.
DEBDIR ?= $(BUILDDIR)/deb
deb:
	@v=$$(dpkg-parsechangelog -S Version) && src=$(DEBDIR)/pop3d-$${v%-*} && \
	rm -rf $$src $(DEBDIR)/pop3d_* $(DEBDIR)/pop3d-dbgsym_* && mkdir -p $$src && \
	tar -c --exclude=./build --exclude=./.git --exclude=./debian/build \
		--exclude=__pycache__ --exclude=.pytest_cache . | tar -x -C $$src && \
	(cd $$src && dpkg-buildpackage -us -uc -b -Jauto) && rm -rf $$src && \
	ls $(DEBDIR)/pop3d_*.deb

clean:
	rm -rf build

.PHONY: all programs deps unit integration check run install uninstall clean fuzz deb
