# common/: code shared by both daemons and their tools.
COMMON_SRCS := common/log.c common/num.c common/histogram.c common/line.c \
	common/proto.c common/sock.c common/config.c common/notify.c common/privsep.c common/metrics.c common/proctitle.c \
	common/stats_server.c common/netlist.c common/maildrop.c common/alloc.c \
	common/memwipe.c
COMMON_OBJS := $(COMMON_SRCS:%.c=$(B)/obj/%.o)
ALL_OBJS += $(COMMON_OBJS)

COMMON_TESTS := test-num test-proto test-config test-histogram test-line test-log \
	test-netlist test-maildrop test-stats-http
UNIT_TESTS += $(COMMON_TESTS:%=$(B)/%)
ALL_OBJS += $(COMMON_TESTS:%=$(B)/obj/tests/%.o)

$(COMMON_TESTS:%=$(B)/%): $(B)/%: $(B)/obj/tests/%.o $(COMMON_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
