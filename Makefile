# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# tunnelgate: `make` builds build/tunnelgated and build/tunnelctl, `make test` runs every
# test, `make run` starts the daemon on tunnelgate.conf.example. Each installs missing
# Debian packages first.

OUT      := build
CLANG    ?= clang
CC       ?= gcc
BPFTOOL  ?= bpftool
LLHTTP   := /usr/share/llhttp
LLHTTP_H := /usr/share/include/llhttp
ARCH     := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')

CFLAGS   ?= -O2 -g
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1)
CFLAGS   += -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -MMD -MP
INCLUDES := -I$(OUT) -Iinclude -Iuser -I$(LLHTTP_H)
LDLIBS   := -lbpf -lelf -lz -linih -lcares -lcap -lseccomp -pthread
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g

# Every Debian package the Makefile installs, in one place: to build, what the tests
# (fuzzing included) run against, and what `make bench` adds.
BUILD_PKGS := clang llvm gcc make pkg-config libbpf-dev bpftool libelf-dev zlib1g-dev \
	      libcmocka-dev libinih-dev node-llhttp libc-ares-dev libcap-dev libseccomp-dev scdoc
TEST_PKGS  := curl openssl tinyproxy squid haproxy python3 iproute2 iptables procps libclang-rt-14-dev systemd man-db \
	      prometheus
BENCH_PKGS := gnuplot-nox wrk nginx-light nftables ethtool

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

.DELETE_ON_ERROR:
.SECONDARY:
.PHONY: all binaries deps test-deps bench-deps run test unit unit-run integration callgraph clean

MODULES  := log fsutil addr config_keys config rules pool reuse http cgroup relay guard resolver ev buf hist admit http_msg access_log proxy_proto wbox stats \
	    conn request upstream http_fwd kernel_relay splice_relay tunnel health stream listener workers accept \
	    metrics control priv loop
DAEMON_OBJS := $(addprefix $(OUT)/,$(addsuffix .o,$(MODULES) tunnelgated)) \
	       $(OUT)/llhttp/api.o $(OUT)/llhttp/http.o $(OUT)/llhttp/llhttp.o
UNIT_TESTS := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(wildcard tests/unit/test_*.c))

# The targets a user types install packages first, then build in a sub-make: make reads
# this file and looks for llhttp's sources before any recipe runs, so on a fresh machine
# a single make would find no rule for them.
all: deps
	$(Q)$(MAKE) --no-print-directory binaries

binaries: $(OUT)/tunnelgated $(OUT)/tunnelctl man

# Install what is missing, once per package set; apt lists are empty on a fresh machine.
define install_missing
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "  APT      installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "missing packages:$$missing (run make as root to install them)" >&2; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
			|| { echo "apt-get install$$missing failed: check the package mirror and retry" >&2; exit 1; }; \
	fi
endef

deps:
	$(call install_missing,$(BUILD_PKGS))

test-deps: deps
	$(call install_missing,$(TEST_PKGS))

$(OUT) $(OUT)/llhttp $(OUT)/tests $(OUT)/san:
	$(Q)mkdir -p $@

$(OUT)/vmlinux.h: | $(OUT)
	$(call msg,GEN,$@)
	$(Q)$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@

$(OUT)/%.bpf.o: bpf/%.bpf.c include/%_shared.h $(OUT)/vmlinux.h | $(OUT)
	$(call msg,BPF,$@)
	$(Q)$(CLANG) -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall -Werror \
		-I$(OUT) -Iinclude -c $< -o $@.tmp.o
	$(Q)$(BPFTOOL) gen object $@ $@.tmp.o && rm -f $@.tmp.o

$(OUT)/%.skel.h: $(OUT)/%.bpf.o
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $*_bpf > $@

$(OUT)/relay.o: $(OUT)/relay.skel.h
$(OUT)/guard.o: $(OUT)/guard.skel.h

# The version both programs print: rewritten only when it changes, so that a new
# commit rebuilds the two objects that include it and nothing else.
$(OUT)/version.h: FORCE | $(OUT)
	$(Q)v='#define TG_VERSION "$(VERSION)"'; [ "$$(cat $@ 2>/dev/null)" = "$$v" ] || echo "$$v" > $@
$(OUT)/tunnelgated.o $(OUT)/tunnelctl.o: $(OUT)/version.h
.PHONY: FORCE

$(OUT)/%.o: user/%.c | $(OUT)
	$(call msg,CC,$@)
	$(Q)$(CC) $(CFLAGS) $(INCLUDES) -c $< -o $@

# llhttp's generated C, compiled in; its own warnings are not ours to fix.
$(OUT)/llhttp/%.o: $(LLHTTP)/%.c | $(OUT)/llhttp
	$(call msg,CC,$@)
	$(Q)$(CC) -O2 -g -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_H) -c $< -o $@

$(OUT)/tunnelgated: $(DAEMON_OBJS)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(OUT)/tunnelctl: $(OUT)/tunnelctl.o $(OUT)/ctl_maps.o
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ -lbpf -o $@

# Unit tests: each module rebuilt with ASan/UBSan, linked with cmocka.
$(OUT)/san/%.o: user/%.c | $(OUT)/san
	$(call msg,CC-SAN,$@)
	$(Q)$(CC) $(CFLAGS) $(SANFLAGS) $(INCLUDES) -c $< -o $@

$(OUT)/san/llhttp-%.o: $(LLHTTP)/%.c | $(OUT)/san
	$(Q)$(CC) $(SANFLAGS) -DLLHTTP_STRICT_MODE=1 -I$(LLHTTP_H) -c $< -o $@

SAN_LLHTTP := $(OUT)/san/llhttp-api.o $(OUT)/san/llhttp-http.o $(OUT)/san/llhttp-llhttp.o
$(OUT)/tests/test_config: $(OUT)/san/config.o $(OUT)/san/config_keys.o $(OUT)/san/pool.o $(OUT)/san/addr.o $(OUT)/san/rules.o $(OUT)/san/log.o \
	$(OUT)/san/ev.o
$(OUT)/tests/test_rules: $(OUT)/san/addr.o $(OUT)/san/rules.o $(OUT)/san/log.o
$(OUT)/tests/test_pool: $(OUT)/san/pool.o $(OUT)/san/addr.o $(OUT)/san/rules.o $(OUT)/san/log.o $(OUT)/san/ev.o
$(OUT)/tests/test_http: $(OUT)/san/http.o $(OUT)/san/http_msg.o $(OUT)/san/log.o $(SAN_LLHTTP)
$(OUT)/tests/test_admit: $(OUT)/san/admit.o $(OUT)/san/addr.o
$(OUT)/tests/test_reuse: $(OUT)/san/reuse.o $(OUT)/san/ev.o $(OUT)/san/buf.o $(OUT)/san/http.o \
	$(OUT)/san/log.o $(SAN_LLHTTP)
$(OUT)/tests/test_proxy_proto: $(OUT)/san/proxy_proto.o
$(OUT)/tests/test_access_log: $(OUT)/san/access_log.o
$(OUT)/tests/test_health: $(OUT)/san/health.o $(OUT)/san/config.o $(OUT)/san/config_keys.o \
	$(OUT)/san/pool.o $(OUT)/san/addr.o $(OUT)/san/rules.o $(OUT)/san/ev.o $(OUT)/san/log.o
# socket() fails when a test says so (out of fds).
$(OUT)/tests/test_health: WRAP := -Wl,--wrap=socket
$(OUT)/tests/test_kernel_relay: $(OUT)/san/kernel_relay.o $(OUT)/san/ev.o $(OUT)/san/log.o $(OUT)/san/addr.o
# The relay tests script what the kernel says: these calls go to the test's __wrap_*.
$(OUT)/tests/test_kernel_relay: WRAP := -Wl,--wrap=relay_read_end -Wl,--wrap=relay_release \
	-Wl,--wrap=relay_count_copy -Wl,--wrap=relay_resume -Wl,--wrap=relay_read \
	-Wl,--wrap=relay_add -Wl,--wrap=relay_remove -Wl,--wrap=relay_release_clear \
	-Wl,--wrap=ioctl -Wl,--wrap=getsockopt -Wl,--wrap=shutdown
$(OUT)/tests/test_splice_relay: $(OUT)/san/splice_relay.o $(OUT)/san/ev.o $(OUT)/san/log.o
$(OUT)/tests/test_splice_relay: WRAP := -Wl,--wrap=shutdown
$(OUT)/tests/test_metrics: $(OUT)/san/metrics.o $(OUT)/san/hist.o $(OUT)/san/buf.o $(OUT)/san/ev.o \
	$(OUT)/san/log.o $(OUT)/san/addr.o $(OUT)/san/pool.o $(OUT)/san/stats.o $(OUT)/san/workers.o \
	$(OUT)/san/wbox.o
# The open tunnels' counters come from the test, not from tunnel.c; the guard's too.
$(OUT)/tests/test_metrics: WRAP := -Wl,--wrap=tunnel_counters -Wl,--wrap=guard_counters

$(OUT)/tests/%: tests/unit/%.c | $(OUT)/tests
	$(call msg,TEST-CC,$@)
	$(Q)$(CC) $(CFLAGS) $(SANFLAGS) $(INCLUDES) $< $(filter %.o,$^) $(WRAP) -lcmocka -linih -o $@

unit: deps
	$(Q)$(MAKE) --no-print-directory unit-run

unit-run: $(UNIT_TESTS)
	$(Q)fail=0; for t in $(UNIT_TESTS); do echo "== $$t"; $$t || fail=1; done; exit $$fail

integration: test-deps all
	$(Q)python3 tests/integration/run.py

test: test-deps all
	$(Q)$(MAKE) --no-print-directory unit-run
	$(Q)$(MAKE) --no-print-directory callgraph
	$(Q)$(MAKE) --no-print-directory kernel-test-run
	$(Q)$(MAKE) --no-print-directory install-check
	$(Q)$(MAKE) --no-print-directory bench-smoke
	$(Q)$(MAKE) --no-print-directory fuzz-smoke
	$(Q)python3 tests/integration/run.py

bench-deps: test-deps
	$(call install_missing,$(BENCH_PKGS))

run: all
	$(Q)./$(OUT)/tunnelgated -c tunnelgate.conf.example

clean:
	$(Q)rm -rf $(OUT)

# Calls between the daemon's files go one way: this fails on any circle.
callgraph: binaries
	$(Q)python3 tools/callgraph.py --check $(OUT) $(MODULES) tunnelgated

include tools/bench.mk
include tests/kernel/kernel.mk
include tests/fuzz/fuzz.mk
include dist/install.mk

-include $(wildcard $(OUT)/*.d $(OUT)/san/*.d)
