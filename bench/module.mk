# bench/: benchmarks; each prints a table, p50/p95/p99 and one JSON line.
PROGRAMS += $(B)/cache-bench
ALL_OBJS += $(B)/obj/bench/cache-bench.o

$(B)/cache-bench: $(B)/obj/bench/cache-bench.o $(CACHE_OBJS) $(B)/obj/common/histogram.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
