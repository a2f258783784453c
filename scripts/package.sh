#!/usr/bin/env bash
# Builds the Debian package (cargo-deb): weftd and weft, the systemd unit, man pages and shell completions
# (generated with clap_mangen and clap_complete by packaging/docgen). Prints the .deb's path.
#   usage: scripts/package.sh          (after cargo build --release; installs cargo-deb if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deb >/dev/null; then
  cargo install cargo-deb --locked --version 3.8.0 >&2
fi
cargo build --release --locked --manifest-path packaging/docgen/Cargo.toml >&2
packaging/docgen/target/release/weft-docgen target/docs target/release/weft >&2
cargo deb -p weftd --no-build --locked 2>&1 | tail -1
