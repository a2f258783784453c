#!/usr/bin/env bash
# weft's demo: two hosts in network namespaces joined by weft over VXLAN, a ping across, and a decoded
# capture of the tunnel traffic. Needs root; installs what it needs; removes everything it made.
#
#   [demo-left] eth0 ─ veth ─ [demo-h1: weftd, bridge sw1] ══ VXLAN VNI 123 over 192.0.2.0/24 ══
#        [demo-h2: weftd, bridge sw1] ─ TAP tap0 ─ [demo-right]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/install-deps.sh
[ "$(id -u)" = 0 ] || { echo "the demo needs root (network namespaces, TAP devices)" >&2; exit 1; }
cargo build --release --workspace --locked
bin=$PWD/target/release
dir=$(mktemp -d /tmp/weft-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for n in demo-left demo-right demo-h1 demo-h2; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT
for n in demo-h1 demo-h2 demo-left demo-right; do
  ip netns del "$n" 2>/dev/null || true
  ip netns add "$n"; ip -n "$n" link set lo up
done
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "underlay: demo-h1 192.0.2.11 <-> demo-h2 192.0.2.12"
ip link add u1 netns demo-h1 type veth peer name u2 netns demo-h2
ip -n demo-h1 addr add 192.0.2.11/24 dev u1; ip -n demo-h1 link set u1 up
ip -n demo-h2 addr add 192.0.2.12/24 dev u2; ip -n demo-h2 link set u2 up

say "start weftd on each host"
ip netns exec demo-h1 "$bin/weftd" --db "$dir/h1.db" --socket "$dir/h1.sock" 2>"$dir/h1.log" & pids+=($!)
ip netns exec demo-h2 "$bin/weftd" --db "$dir/h2.db" --socket "$dir/h2.sock" 2>"$dir/h2.log" & pids+=($!)
for s in h1 h2; do for _ in $(seq 50); do [ -S "$dir/$s.sock" ] && break; sleep 0.1; done; done
w1() { echo "demo-h1\$ weft $*"; ip netns exec demo-h1 "$bin/weft" --socket "$dir/h1.sock" "$@"; }
w2() { echo "demo-h2\$ weft $*"; ip netns exec demo-h2 "$bin/weft" --socket "$dir/h2.sock" "$@"; }

say "host 1: a veth end as a system port, and a VXLAN tunnel to host 2"
ip link add eth0 netns demo-left type veth peer name left0 netns demo-h1
ip -n demo-left addr add 198.51.100.1/24 dev eth0; ip -n demo-left addr add 2001:db8:1::1/64 dev eth0 nodad
ip -n demo-left link set eth0 mtu 1450 up
w1 add-br sw1
w1 add-port sw1 left0
w1 add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.12 options:key=123

say "host 2: a TAP weft creates, moved into namespace demo-right, and the tunnel back"
w2 add-br sw1
w2 add-port sw1 tap0 -- set interface tap0 type=tap
w2 add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.11 options:key=123
ip -n demo-h2 link set tap0 netns demo-right
ip -n demo-right addr add 198.51.100.2/24 dev tap0; ip -n demo-right addr add 2001:db8:1::2/64 dev tap0 nodad
ip -n demo-right link set tap0 up

say "capture the underlay while pinging across the overlay"
ip netns exec demo-h1 tcpdump -q -i u1 -w "$dir/underlay.pcap" udp port 4789 2>/dev/null & tcpdump_pid=$!; pids+=($tcpdump_pid)
# weft's own capture of the frames crossing the tunnel port.
ip netns exec demo-h1 "$bin/weft" --socket "$dir/h1.sock" capture sw1 vx1 -c 40 >"$dir/capture.txt" 2>&1 & pids+=($!)
sleep 1
ip netns exec demo-left ping -c 3 -i 0.3 198.51.100.2
ip netns exec demo-left ping -c 2 -i 0.3 2001:db8:1::2
sleep 0.5; kill -INT "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true

say "what weft says"
w1 show
w1 fdb show sw1
w1 dump-ports sw1

say "the tunnel traffic, decoded by tshark (Wireshark's dissectors)"
tshark -r "$dir/underlay.pcap" -T fields -E header=y -e frame.number -e ip.src -e ip.dst -e udp.srcport \
  -e vxlan.vni -e _ws.col.Protocol -e _ws.col.Info 2>/dev/null | column -t -s $'\t'
echo
tshark -r "$dir/underlay.pcap" -O vxlan -c 1 2>/dev/null | sed -n '1,40p'

say "the same file, decoded by weft (weft decode; --format json gives Wireshark's field names)"
"$bin/weft" decode "$dir/underlay.pcap"
echo
"$bin/weft" decode -V -c 1 "$dir/underlay.pcap"

say "frames at port vx1 as weft saw them (weft capture sw1 vx1)"
cat "$dir/capture.txt"
say "done: the capture is $dir/underlay.pcap"
