# bench/: benchmarks; each prints a table, p50/p95/p99 and one JSON line.
PROGRAMS += $(B)/cache-bench
ALL_OBJS += $(B)/obj/bench/cache-bench.o

$(B)/cache-bench: $(B)/obj/bench/cache-bench.o $(CACHE_OBJS) $(B)/obj/common/histogram.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# pop3-load: the POP3 load generator (man/pop3-load.1), installed for
# operators who size servers with it.  OpenSSL for --tls, as pop3d.
LOAD_SRCS := bench/pop3-load.c bench/load_conn.c bench/load_stats.c
LOAD_OBJS := $(LOAD_SRCS:%.c=$(B)/obj/%.o)
LOAD_TLS_LIBS := $(shell pkg-config --libs libevent_openssl libssl libcrypto 2>/dev/null)
ALL_OBJS += $(LOAD_OBJS)
PROGRAMS += $(B)/pop3-load
INSTALL_BIN += $(B)/pop3-load

$(B)/pop3-load: $(LOAD_OBJS) $(B)/obj/common/histogram.o $(B)/obj/common/num.o \
		$(B)/obj/common/line.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LOAD_TLS_LIBS) $(LDLIBS)

# fork-bench: what a process creation costs here, against handing a
# connection to an existing process (docs/benchmarks.md).
PROGRAMS += $(B)/fork-bench
ALL_OBJS += $(B)/obj/bench/fork-bench.o

$(B)/fork-bench: $(B)/obj/bench/fork-bench.o $(B)/obj/common/histogram.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# mbox-bench: a session's open of a 1 GB mbox spool against cat(1) of it
# (docs/benchmarks.md, "mbox spools").
PROGRAMS += $(B)/mbox-bench
ALL_OBJS += $(B)/obj/bench/mbox-bench.o

$(B)/mbox-bench: $(B)/obj/bench/mbox-bench.o $(B)/obj/pop3d/mbox.o $(B)/obj/pop3d/maildir.o \
		$(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(POP3D_LOCK_LIBS) $(LDLIBS)
