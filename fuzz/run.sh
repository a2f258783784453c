#!/usr/bin/env bash
# Runs one cargo-fuzz target with weft's memory bounds: an input of up to 64 KiB (a whole datagram) may make
# a target hold at most a few MiB (MEMORY_PER_BYTE x length + MEMORY_BASE in crates/wire/src/fuzz.rs), so
# libFuzzer reports any single allocation over 64 MB (-malloc_limit_mb) and a process over 512 MB
# (-rss_limit_mb) as a crash: a length or count field that makes a decoder build more than its input
# describes is found as a bug, not as a slow run.
#   usage: fuzz/run.sh TARGET [SECONDS]     (targets: packet pcap openflow control offload ike bgp conntrack)
set -euo pipefail
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-60}
cd "$(dirname "$0")"
exec cargo +nightly fuzz run "$target" -- -max_len=65536 -malloc_limit_mb=64 -rss_limit_mb=512 \
  -max_total_time="$seconds"
