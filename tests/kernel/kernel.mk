# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Kernel tests: the relay's BPF programs run for real on loopback sockets, each test in
# a network namespace of its own; the XDP guard runs on packet tables (BPF_PROG_TEST_RUN).
# They need root. Included by the Makefile, which provides OUT, CC, CFLAGS, INCLUDES, Q,
# msg and the pattern rule for $(OUT)/%.skel.h.
#
#   make kernel-test-run     build and run every kernel test; fails on the first failure

KERNEL_TESTS := $(OUT)/tests/test_verdict $(OUT)/tests/test_priv $(OUT)/tests/test_guard

.PHONY: kernel-test-run

# Plain CFLAGS, no sanitizers: the code under test is the BPF program, not this one.
$(OUT)/tests/test_verdict: tests/kernel/test_verdict.c tests/kernel/relay_load.h tests/kernel/check.h $(OUT)/relay.skel.h \
		include/relay_shared.h | $(OUT)/tests
	$(call msg,TEST-CC,$@)
	$(Q)$(CC) $(CFLAGS) $(INCLUDES) $< -lbpf -lelf -lz -o $@

# What the daemon may still do once it runs as `user` (user/priv.c): same build, and libcap.
$(OUT)/tests/test_priv: tests/kernel/test_priv.c tests/kernel/relay_load.h tests/kernel/check.h $(OUT)/relay.skel.h \
		include/relay_shared.h | $(OUT)/tests
	$(call msg,TEST-CC,$@)
	$(Q)$(CC) $(CFLAGS) $(INCLUDES) $< -lbpf -lelf -lz -lcap -o $@

# The XDP guard on packet tables through BPF_PROG_TEST_RUN: no sockets, no namespace.
$(OUT)/tests/test_guard: tests/kernel/test_guard.c tests/kernel/pkt.h tests/kernel/check.h $(OUT)/guard.skel.h \
		include/guard_shared.h | $(OUT)/tests
	$(call msg,TEST-CC,$@)
	$(Q)$(CC) $(CFLAGS) $(INCLUDES) $< -lbpf -lelf -lz -o $@

kernel-test-run: $(KERNEL_TESTS)
	$(Q)for t in $(KERNEL_TESTS); do echo "== $$t"; $$t || exit 1; done

-include $(OUT)/tests/test_verdict.d $(OUT)/tests/test_priv.d $(OUT)/tests/test_guard.d
