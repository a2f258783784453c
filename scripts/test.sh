#!/usr/bin/env bash
# Runs every test of weft: unit tests, capture and fuzz-corpus replays, the interop tests in network
# namespaces (weft against itself, the Linux kernel, Open vSwitch, tshark), and the Debian package (built,
# installed with dpkg, removed). Needs root; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
[ "$(id -u)" = 0 ] || { echo "the interop tests need root (network namespaces, TAP devices)" >&2; exit 1; }
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
fi
# Lints: a lint nobody runs is not a lint.
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --release --workspace --all-targets --locked -- -D warnings
fi
cargo build --release --workspace --locked
# CI=1 makes a test fail, not skip, when a prerequisite is missing.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
# Two datapath workers per weftd unless told otherwise (weftd's default is one per core; this keeps the run
# alike on any machine), so every test also checks that workers share what they learn.
export WEFT_WORKERS="${WEFT_WORKERS:-2}"
CI="${CI:-1}" cargo test --release --workspace --locked --lib --bins --tests -- --test-threads=2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The datapath interop tests once more with every offload forced off (TAP without virtio-net headers, no
# UDP_SEGMENT/UDP_GRO, weft cutting every frame to wire size): correctness must not depend on them.
echo "--- datapath interop tests again with WEFT_OFFLOADS=off ---" | tee -a "$log"
WEFT_OFFLOADS=off CI="${CI:-1}" cargo test --release --locked -p weft-interop --test offload --test vxlan \
  --test encap --test ovs --test vlan --test capture -- --test-threads=2 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
# And with one datapath worker: what a single worker does must stay right as well.
echo "--- datapath interop tests again with WEFT_WORKERS=1 ---" | tee -a "$log"
WEFT_WORKERS=1 CI="${CI:-1}" cargo test --release --locked -p weft-interop --test offload --test vxlan \
  --test encap --test ovs --test vlan -- --test-threads=2 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
# The control-plane scale simulation (1 000 VTEPs, 100 000 MACs): it asserts convergence and prints figures.
echo "--- control-plane scale simulation ---" | tee -a "$log"
cargo run --release --locked -q -p weft-control --example scale 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
# The criterion benchmarks (bench/datapath, their own workspace, run by hand) must keep compiling against
# the crates they measure.
echo "--- criterion benchmarks compile ---" | tee -a "$log"
cargo check --manifest-path bench/datapath/Cargo.toml --benches --locked 2>&1 | tail -n 3 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
# The Debian package: built, installed with dpkg, checked, removed.
scripts/package-test.sh 2>&1 | tee -a "$log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
set -e
# One closing line for the whole run, summed over every test binary and the package test.
awk '/^test result:|^weft package:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "weft: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
