#!/usr/bin/env bash
# Time for `weft add-flows` to install N flows (default 10 000) in one transaction, and `dump-flows` to list
# them, on a bridge of a weftd in a scratch namespace.   usage: bench/add-flows.sh [N]   (root; build first)
set -euo pipefail
n=${1:-10000}
cd "$(dirname "$0")/.."
bin=$PWD/target/release
dir=$(mktemp -d /tmp/weft-addflows.XXXXXX)
ns=weft-bench-af
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; ip netns del "$ns" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" "$bin/weftd" --db "$dir/db" --socket "$dir/sock" 2>"$dir/log" & pid=$!
for _ in $(seq 50); do [ -S "$dir/sock" ] && break; sleep 0.1; done
w() { ip netns exec "$ns" "$bin/weft" --socket "$dir/sock" "$@"; }
w add-br sw1
python3 - "$n" > "$dir/flows" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    a, b = divmod(i, 256)
    kind = i % 4
    if kind == 0:
        print(f"priority={100 + i % 50},ip,nw_dst=10.{a % 256}.{b}.0/24,actions=output:LOCAL")
    elif kind == 1:
        print(f"priority={200 + i % 50},tcp,nw_dst=10.{a % 256}.{b}.1,tp_dst={1 + i % 60000},actions=drop")
    elif kind == 2:
        print(f"priority=300,ip6,ipv6_dst=2001:db8:{a:x}:{b:x}::/64,actions=NORMAL")
    else:
        print(f"priority=400,dl_dst=02:00:00:{a % 256:02x}:{b:02x}:{i % 256:02x},actions=drop")
PY
start=$(date +%s.%N)
w add-flows sw1 "$dir/flows"
end=$(date +%s.%N)
count=$(w dump-flows sw1 | wc -l)
end2=$(date +%s.%N)
python3 -c "print(f'add-flows of $n flows: {$end - $start:.3f} s; dump-flows of $count flows: {$end2 - $end:.3f} s')"
