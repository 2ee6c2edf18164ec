# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Benchmark targets, included by the Makefile (needs its OUT, CC, CFLAGS, Q and msg).
#   make bench         tgbench B1..B6 on direct, tunnelgated sockmap/splice (1 and 2 hops),
#                      haproxy 2.6 (2 hops), squid 5.7 and tinyproxy 1.11 (1 hop); medians
#                      table and build/bench.png (RUNS=3 by default); then B7, plain HTTP
#                      req/s through tunnelgated to nginx with upstream keep-alive on and off
#                      and B8, the receiver's CPU per SYN dropped by the XDP guard, by nftables,
#                      and answered by the listener (synflood from a namespace over veth)
#   make bench-smoke   every B-mode, small sizes, one relay=sockmap tunnelgated; seconds

.PHONY: bench bench-smoke

$(OUT)/tgbench: tools/tgbench.c | $(OUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) -pthread $< -o $@

$(OUT)/synflood: tools/synflood.c | $(OUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $< -o $@

bench: bench-deps all $(OUT)/tgbench $(OUT)/synflood
	$(Q)OUT=$(OUT) tools/bench.sh

bench-smoke: all $(OUT)/tgbench
	$(Q)OUT=$(OUT) tools/bench.sh smoke
