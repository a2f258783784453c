#!/usr/bin/env bash
# Builds the Debian package (cargo-deb): weftd and weft, the systemd unit, man pages and shell completions.
# The man pages and completions come from the binaries themselves (weft man, weft completion, weftd --man),
# which print them from the one declaration of their commands and options. Prints the .deb's path.
#   usage: scripts/package.sh          (after cargo build --release; installs cargo-deb if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deb >/dev/null; then
  cargo install cargo-deb --locked --version 3.8.0 >&2
fi
weft=target/release/weft
docs=target/docs
rm -rf "$docs" && mkdir -p "$docs/man" "$docs/completions"
"$weft" man > "$docs/man/weft.1"
target/release/weftd --man > "$docs/man/weftd.8"
# One page per command, as weft(1) refers to them (weft-add-flow(1), weft-fdb-show(1), ...).
"$weft" completion bash | sed -n 's/^    words="\(.*\) --socket.*/\1/p' | tr ' ' '\n' | while read -r cmd; do
  case "$cmd" in
    fdb|ipsec)
      for sub in $("$weft" help "$cmd" | sed -n "s/^  \(\[[^]]*\] \)*$cmd \([a-z]*\).*/\2/p"); do
        "$weft" man "$cmd" "$sub" > "$docs/man/weft-$cmd-$sub.1"
      done ;;
    *) "$weft" man "$cmd" > "$docs/man/weft-${cmd//\//-}.1" ;;
  esac
done
"$weft" completion bash > "$docs/completions/weft.bash"
"$weft" completion zsh > "$docs/completions/_weft"
"$weft" completion fish > "$docs/completions/weft.fish"
cargo deb -p weftd --no-build --locked 2>&1 | tail -1
