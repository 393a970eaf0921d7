# cache/: the lock-free credential cache.  Self-contained (libc, pthreads,
# libsodium): nothing from common/, so its tests link it alone.
CACHE_SRCS := cache/cache.c cache/seal.c
CACHE_OBJS := $(CACHE_SRCS:%.c=$(B)/obj/%.o)

CACHE_TESTS := test-cache test-cache-stress test-seal
UNIT_TESTS += $(CACHE_TESTS:%=$(B)/%)
ALL_OBJS += $(CACHE_OBJS) $(CACHE_TESTS:%=$(B)/obj/cache/%.o)

$(CACHE_TESTS:%=$(B)/%): $(B)/%: $(B)/obj/cache/%.o $(CACHE_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
