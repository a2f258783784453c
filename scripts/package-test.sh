#!/usr/bin/env bash
# Builds the Debian package, installs it with dpkg, checks what it installed, and removes it again.
# Prints "weft package: 1 passed, 0 failed" (or "0 passed, 1 failed"), which scripts/test.sh counts.
set -uo pipefail
cd "$(dirname "$0")/.."
fail() { echo "package test: $*" >&2; echo "weft package: 0 passed, 1 failed"; exit 1; }
deb=$(scripts/package.sh) || fail "building the package failed"
[ -f "$deb" ] || fail "no package at $deb"
dpkg -i "$deb" >/dev/null || fail "dpkg -i $deb failed"
trap 'dpkg -r weft >/dev/null 2>&1 || true' EXIT
for f in /usr/bin/weftd /usr/bin/weft /lib/systemd/system/weftd.service /usr/share/man/man1/weft.1.gz \
         /usr/share/man/man8/weftd.8.gz /usr/share/bash-completion/completions/weft \
         /usr/share/zsh/vendor-completions/_weft /usr/share/fish/vendor_completions.d/weft.fish; do
  dpkg -S "$f" >/dev/null 2>&1 || fail "$f is not installed by the package"
done
/usr/bin/weft --version | grep -q "commit $(git rev-parse --short=12 HEAD)" || fail "installed weft is not this build"
/usr/bin/weftd --version | grep -q "^weftd " || fail "installed weftd does not run"
zcat /usr/share/man/man1/weft.1.gz | grep -q 'add\\-flow' || fail "weft(1) does not list add-flow"
zcat /usr/share/man/man1/weft-add-flow.1.gz | grep -q 'ovs\\-ofctl syntax' || fail "no page for weft add-flow"
grep -q "dump-flows" /usr/share/bash-completion/completions/weft || fail "bash completion lacks dump-flows"
grep -q "ExecStart=/usr/bin/weftd" /lib/systemd/system/weftd.service || fail "unit does not start weftd"
grep -q -- "--ovsdb compat:/run/openvswitch/db.sock" /lib/systemd/system/weftd.service || fail "unit does not offer OVSDB on Open vSwitch's path"
dpkg -r weft >/dev/null || fail "dpkg -r weft failed"
[ ! -e /usr/bin/weftd ] || fail "weftd still there after removal"
echo "weft package: 1 passed, 0 failed"
