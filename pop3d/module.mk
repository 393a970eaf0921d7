# pop3d/: the POP3 server (master, front ends, sessions).
POP3D_SRCS := pop3d/master.c pop3d/conntab.c pop3d/handoff.c pop3d/session_proc.c pop3d/login.c pop3d/authc.c pop3d/ipc.c \
	pop3d/privdrop.c pop3d/cmd.c pop3d/session.c pop3d/mailbox.c pop3d/maildir.c pop3d/mbox.c \
	pop3d/tls.c pop3d/stats.c pop3d/proxyproto.c pop3d/lang.c
POP3D_OBJS := $(POP3D_SRCS:%.c=$(B)/obj/%.o)
ALL_OBJS += $(POP3D_OBJS)
PROGRAMS += $(B)/pop3d
INSTALL_SBIN += $(B)/pop3d

# pop3d links OpenSSL for TLS (its front ends terminate it); authd links
# only libcrypto, for the digests of Dovecot's password schemes.
POP3D_TLS_LIBS := $(shell pkg-config --libs libevent_openssl libssl libcrypto 2>/dev/null)
# mbox.c takes dot locks through liblockfile (liblockfile-dev), which runs
# the setgid helper dotlockfile (liblockfile-bin) where it must.
POP3D_LOCK_LIBS := -llockfile

$(B)/pop3d: $(POP3D_OBJS) $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(POP3D_TLS_LIBS) $(POP3D_LOCK_LIBS) $(LDLIBS)

# Unit tests: each links the module(s) it tests plus common/.
POP3D_TESTS := test-maildir test-mbox test-cmd test-session test-ipc test-conntab test-proxyproto \
	test-lang
UNIT_TESTS += $(POP3D_TESTS:%=$(B)/pop3d-test/%)
ALL_OBJS += $(POP3D_TESTS:%=$(B)/obj/pop3d/%.o)

$(B)/pop3d-test/test-maildir: $(B)/obj/pop3d/test-maildir.o $(B)/obj/pop3d/maildir.o $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/pop3d-test/test-mbox: $(B)/obj/pop3d/test-mbox.o $(B)/obj/pop3d/mbox.o \
		$(B)/obj/pop3d/maildir.o $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(POP3D_LOCK_LIBS) $(LDLIBS)
$(B)/pop3d-test/test-cmd: $(B)/obj/pop3d/test-cmd.o $(B)/obj/pop3d/cmd.o $(B)/obj/pop3d/ipc.o \
		$(B)/obj/pop3d/lang.o $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/pop3d-test/test-session: $(B)/obj/pop3d/test-session.o $(B)/obj/pop3d/session.o \
		$(B)/obj/pop3d/cmd.o $(B)/obj/pop3d/mailbox.o $(B)/obj/pop3d/maildir.o \
		$(B)/obj/pop3d/mbox.o $(B)/obj/pop3d/lang.o $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(POP3D_LOCK_LIBS) $(LDLIBS)
$(B)/pop3d-test/test-ipc: $(B)/obj/pop3d/test-ipc.o $(B)/obj/pop3d/ipc.o $(B)/obj/pop3d/lang.o \
		$(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/pop3d-test/test-conntab: $(B)/obj/pop3d/test-conntab.o $(B)/obj/pop3d/conntab.o $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/pop3d-test/test-proxyproto: $(B)/obj/pop3d/test-proxyproto.o $(B)/obj/pop3d/proxyproto.o \
		$(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/pop3d-test/test-lang: $(B)/obj/pop3d/test-lang.o $(B)/obj/pop3d/lang.o $(COMMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
