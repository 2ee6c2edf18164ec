# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Man pages, `make install` and its test, included by the Makefile (needs its OUT, Q,
# msg, MAKE, and the all/test-deps targets).
#
#   make man             man/*.scd -> build/man/ with scdoc (part of `make`)
#   make install         binaries, man pages, the systemd unit, an example config in
#                        /etc/tunnelgate (never overwritten) and, unless DESTDIR is set,
#                        the `tunnelgate` system user. PREFIX=/usr/local, DESTDIR=.
#   make install-check   `make install` into a temporary DESTDIR, the tree checked, the
#                        man pages rendered, `systemd-analyze verify` on the unit
#
# The unit goes to $(PREFIX)/lib/systemd/system: /usr/local/lib/systemd/system is in
# systemd's unit search path on Debian, for units of locally installed software;
# /lib/systemd/system belongs to dpkg's packages and /etc/systemd/system to the
# administrator (enablement links, `systemctl edit` overrides). A package build sets
# PREFIX=/usr (or UNITDIR=).

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
MANDIR     ?= $(PREFIX)/share/man
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
SCDOC      ?= scdoc

MAN_PAGES := $(OUT)/man/tunnelgated.8 $(OUT)/man/tunnelctl.8 $(OUT)/man/tunnelgate.conf.5
CONF_DIR  := $(DESTDIR)$(SYSCONFDIR)/tunnelgate

.PHONY: man install install-check

$(OUT)/man:
	$(Q)mkdir -p $@

$(OUT)/man/%: man/%.scd | $(OUT)/man
	$(call msg,SCDOC,$@)
	$(Q)$(SCDOC) < $< > $@

man: $(MAN_PAGES)

install: all
	$(call msg,INSTALL,$(DESTDIR)$(PREFIX) $(CONF_DIR))
	$(Q)install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(UNITDIR) $(CONF_DIR)
	$(Q)install -m 0755 $(OUT)/tunnelgated $(DESTDIR)$(SBINDIR)/tunnelgated
	$(Q)install -m 0755 $(OUT)/tunnelctl $(DESTDIR)$(BINDIR)/tunnelctl
	$(Q)install -m 0644 $(OUT)/man/tunnelgated.8 $(OUT)/man/tunnelctl.8 $(DESTDIR)$(MANDIR)/man8/
	$(Q)install -m 0644 $(OUT)/man/tunnelgate.conf.5 $(DESTDIR)$(MANDIR)/man5/
	$(Q)sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		dist/tunnelgated.service > $(OUT)/tunnelgated.service
	$(Q)install -m 0644 $(OUT)/tunnelgated.service $(DESTDIR)$(UNITDIR)/tunnelgated.service
	$(Q)if [ -e $(CONF_DIR)/tunnelgate.conf ]; then \
		echo "  KEEP     $(CONF_DIR)/tunnelgate.conf (exists; the example is tunnelgate.conf.example)"; \
	else \
		sed -e '1i ; Installed by make install from tunnelgate.conf.example; see tunnelgate.conf(5).' \
		    -e 's/^user\([[:space:]]*\)=\([[:space:]]*\)[^[:space:];]*/user\1=\2tunnelgate/' \
		    tunnelgate.conf.example > $(OUT)/tunnelgate.conf && \
		install -m 0644 $(OUT)/tunnelgate.conf $(CONF_DIR)/tunnelgate.conf; \
	fi
	$(Q)if [ -z "$(DESTDIR)" ] && ! getent passwd tunnelgate >/dev/null; then \
		echo "  USER     tunnelgate (system user and group)"; \
		if command -v adduser >/dev/null; then \
			adduser --system --group --no-create-home --home /nonexistent --quiet tunnelgate; \
		else \
			useradd --system --user-group --no-create-home --home-dir /nonexistent \
				--shell /usr/sbin/nologin tunnelgate; \
		fi; \
	fi
	$(Q)if [ -z "$(DESTDIR)" ]; then \
		echo "  next:    systemctl daemon-reload && systemctl enable --now tunnelgated"; \
	fi

install-check: test-deps all
	$(Q)OUT=$(OUT) MAKE="$(MAKE)" PREFIX=$(PREFIX) SYSCONFDIR=$(SYSCONFDIR) tests/install/check.sh
