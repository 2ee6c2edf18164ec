# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# libFuzzer targets for the parsers that read hostile input (http, rules, config, proxy).
# Included by the Makefile, which provides OUT and Q (and msg).
#
#   make fuzz                    build, then run each target FUZZ_SECONDS (600) seconds
#   make -j3 fuzz                the same, targets in parallel
#   make fuzz-smoke              5 seconds each, for `make test`
#   make fuzz-http FUZZ_SECONDS=60   one target
#
# Each target runs on a copy of its seeds in $(OUT)/fuzz/corpus-NAME (new inputs go
# there, tests/fuzz/corpus/ stays clean) with tests/fuzz/NAME.dict. A crash, leak,
# UBSan report or failed invariant stops the run, leaves the input in
# $(OUT)/fuzz/NAME-crash-*, and fails the target; replay it with
# $(OUT)/fuzz/fuzz_NAME $(OUT)/fuzz/NAME-crash-...

FUZZ_SECONDS ?= 600
comma        := ,
FUZZ_CC      ?= clang
LLHTTP       ?= /usr/share/llhttp
LLHTTP_H     ?= /usr/share/include/llhttp
FUZZ_DIR     := $(OUT)/fuzz
FUZZ_NAMES   := http rules config proxy
# UBSan findings count as crashes: without -fno-sanitize-recover they only print.
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		-fno-omit-frame-pointer -std=gnu11 -D_GNU_SOURCE -DLLHTTP_STRICT_MODE=1
FUZZ_INCS    := -Iuser -Iinclude -I$(LLHTTP_H)
FUZZ_LLHTTP  := $(addprefix $(FUZZ_DIR)/llhttp-,api.o http.o llhttp.o)
FUZZ_HDRS    := $(wildcard user/*.h include/*.h) $(LLHTTP_H)/llhttp.h
FUZZ_OPTS    := -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

# What each target compiles in besides itself. addr.c's host names go through the
# getaddrinfo wrap in fuzz_config.c: no DNS while fuzzing.
FUZZ_SRCS_http   := user/http.c user/http_msg.c user/log.c
FUZZ_SRCS_rules  := user/rules.c user/config.c user/config_keys.c user/addr.c user/pool.c user/ev.c user/log.c
FUZZ_SRCS_config := user/config.c user/config_keys.c user/addr.c user/pool.c user/ev.c user/rules.c user/log.c
FUZZ_SRCS_proxy  := user/proxy_proto.c
FUZZ_LINK_http   := $(FUZZ_LLHTTP)
FUZZ_LINK_rules  :=
FUZZ_LINK_config := -Wl,--wrap=getaddrinfo
FUZZ_LINK_proxy  :=

.PHONY: fuzz fuzz-smoke fuzz-run fuzz-build fuzz-deps $(addprefix fuzz-,$(FUZZ_NAMES))

# Packages first, then a sub-make that can see llhttp's sources (see `all`).
fuzz: fuzz-deps
	$(Q)$(MAKE) --no-print-directory fuzz-run

fuzz-smoke: fuzz-deps
	$(Q)$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=5

fuzz-run: $(addprefix fuzz-,$(FUZZ_NAMES))

fuzz-build: $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_NAMES))

fuzz-deps: test-deps

$(FUZZ_DIR):
	$(Q)mkdir -p $@

# llhttp's generated C, instrumented for coverage; its own warnings are not ours to fix.
$(FUZZ_DIR)/llhttp-%.o: $(LLHTTP)/%.c | $(FUZZ_DIR) fuzz-deps
	$(call msg,FUZZ-CC,$@)
	$(Q)$(FUZZ_CC) $(subst fuzzer$(comma),fuzzer-no-link$(comma),$(FUZZ_CFLAGS)) \
		-I$(LLHTTP_H) -c $< -o $@


# fuzz_NAME: the harness with its modules compiled in; fuzz-NAME: run it on a copy of
# the seeds (cp -n: a run keeps what earlier runs found), fail on any finding.
define fuzz_target
$(FUZZ_DIR)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(FUZZ_SRCS_$(1)) $(filter %.o,$(FUZZ_LINK_$(1))) \
		$(FUZZ_HDRS) | $(FUZZ_DIR) fuzz-deps
	$$(call msg,FUZZ-LD,$$@)
	$$(Q)$$(FUZZ_CC) $$(FUZZ_CFLAGS) -Wall -Wextra -Werror $$(FUZZ_INCS) \
		$$< $(FUZZ_SRCS_$(1)) $(FUZZ_LINK_$(1)) -linih -o $$@

fuzz-$(1): $(FUZZ_DIR)/fuzz_$(1)
	$$(Q)mkdir -p $(FUZZ_DIR)/corpus-$(1)
	$$(Q)cp -n tests/fuzz/corpus/$(1)/* $(FUZZ_DIR)/corpus-$(1)/
	$$(call msg,FUZZ,$(1) for $$(FUZZ_SECONDS)s)
	$$(Q)$$< $$(FUZZ_OPTS) -max_total_time=$$(FUZZ_SECONDS) -dict=tests/fuzz/$(1).dict \
		-artifact_prefix=$(FUZZ_DIR)/$(1)- $(FUZZ_DIR)/corpus-$(1) \
		>$(FUZZ_DIR)/$(1).log 2>&1 || \
		{ grep -E -A30 'ERROR: |runtime error|fuzz_$(1): ' $(FUZZ_DIR)/$(1).log | head -50; \
		  echo "fuzz-$(1): FAILED; input: $$$$(ls -t $(FUZZ_DIR)/$(1)-* 2>/dev/null | head -1)," \
		       "log: $(FUZZ_DIR)/$(1).log" >&2; exit 1; }
	$$(Q)grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' $(FUZZ_DIR)/$(1).log | tail -1 | \
		sed 's/^/  $(1): /'
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call fuzz_target,$(n))))
