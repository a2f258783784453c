#!/usr/bin/env bash
# A first, small throughput check (the full side-by-side benchmark is issue 7's bench/ command):
# two hosts in namespaces joined by a veth underlay, an endpoint namespace behind each on a veth (endpoint
# offloads left on), joined by weft's VXLAN or by the Linux kernel's VXLAN + bridge; iperf3 TCP, 1 stream.
#   usage: bench/quick-tcp.sh weft|kernel [SECONDS]      (root; run scripts/demo.sh or cargo build --release first)
#   IPERF_ARGS="-u -l 64 -b 0": other iperf3 options; SHOW_PORTS=1: weft's port counters afterwards;
#   SHOW_STATS=1: the kernel's UDP and TCP drop/retransmit counters in each namespace afterwards.
set -euo pipefail
mode=${1:?usage: bench/quick-tcp.sh weft|kernel [SECONDS]}
secs=${2:-5}
cd "$(dirname "$0")/.."
bin=$PWD/target/release
dir=$(mktemp -d /tmp/weft-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for n in qb-h1 qb-h2 qb-l qb-r; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
for n in qb-h1 qb-h2 qb-l qb-r; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add u1 netns qb-h1 type veth peer name u2 netns qb-h2
ip -n qb-h1 addr add 192.0.2.11/24 dev u1; ip -n qb-h1 link set u1 up
ip -n qb-h2 addr add 192.0.2.12/24 dev u2; ip -n qb-h2 link set u2 up
ip link add eth0 netns qb-l type veth peer name p1 netns qb-h1
ip link add eth0 netns qb-r type veth peer name p2 netns qb-h2
ip -n qb-l addr add 198.51.100.1/24 dev eth0; ip -n qb-l link set eth0 mtu 1450 up
ip -n qb-r addr add 198.51.100.2/24 dev eth0; ip -n qb-r link set eth0 mtu 1450 up
if [ "$mode" = weft ]; then
  for i in 1 2; do
    ip netns exec qb-h$i "$bin/weftd" --db "$dir/h$i.db" --socket "$dir/h$i.sock" 2>"$dir/h$i.log" & pids+=($!)
  done
  for i in 1 2; do for _ in $(seq 50); do [ -S "$dir/h$i.sock" ] && break; sleep 0.1; done; done
  for i in 1 2; do
    w="ip netns exec qb-h$i $bin/weft --socket $dir/h$i.sock"
    $w add-br sw1; $w add-port sw1 p$i
    $w add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.1$((3 - i)) options:key=1
  done
else
  for i in 1 2; do
    ip -n qb-h$i link add vx0 type vxlan id 1 remote 192.0.2.1$((3 - i)) local 192.0.2.1$i dstport 4789 dev u$i
    ip -n qb-h$i link add br0 type bridge
    ip -n qb-h$i link set vx0 master br0; ip -n qb-h$i link set p$i master br0
    for d in vx0 br0 p$i; do ip -n qb-h$i link set $d up; done
  done
fi
ip netns exec qb-l ping -c 2 -W 2 198.51.100.2 >/dev/null
ip netns exec qb-r iperf3 -s -1 -D -B 198.51.100.2
sleep 0.3
ip netns exec qb-l iperf3 -c 198.51.100.2 -t "$secs" -J ${IPERF_ARGS:-} > "$dir/tcp.json"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); e=d['end']; print('%s VXLAN, TCP 1 stream: %.2f Gbit/s, %d retransmits' % (sys.argv[2], e['sum_received']['bits_per_second']/1e9, e['sum_sent'].get('retransmits', 0)) if 'sum_received' in e else '%s VXLAN, UDP: %.1f kpps delivered' % (sys.argv[2], (e['sum']['packets'] - e['sum']['lost_packets']) / e['sum']['seconds'] / 1000))" "$dir/tcp.json" "$mode"
if [ "$mode" = weft ] && [ -n "${SHOW_PORTS:-}" ]; then
  for i in 1 2; do ip netns exec qb-h$i "$bin/weft" --socket "$dir/h$i.sock" dump-ports sw1; done
fi
if [ "$mode" = weft ] && [ -n "${SHOW_PORTS:-}" ]; then
  for i in 1 2; do ip netns exec qb-h$i "$bin/weft" --socket "$dir/h$i.sock" dump-ports sw1; done
fi
if [ -n "${SHOW_STATS:-}" ]; then
  for n in qb-h1 qb-h2; do echo "$n: $(ip netns exec $n nstat -az UdpRcvbufErrors UdpInErrors Udp6RcvbufErrors 2>/dev/null | awk 'NR>1 {printf "%s=%s ", $1, $2}')"; done
  for n in qb-l qb-r; do echo "$n: $(ip netns exec $n nstat -az TcpExtTCPBacklogDrop TcpExtTCPRcvQDrop TcpExtTCPOFOQueue TcpRetransSegs TcpExtTCPLossProbes TcpExtTCPDSACKRecv TcpExtTCPDSACKOldSent TcpExtTCPSackRecovery TcpExtTCPTimeouts 2>/dev/null | awk 'NR>1 {printf "%s=%s ", $1, $2}')"; done
fi
