#!/usr/bin/env bash
# weft decode throughput and memory on a large capture, beside tshark on the same file.
#   usage: bench/decode.sh [SIZE_MB] [--no-tshark]     (default 1024 MB; run cargo build --release first)
# The file repeats a mix of real packets: the ARP/ICMP tunnel packets of testdata/captures (VXLAN, Geneve,
# GRE; about 100 bytes each) and full-size TCP segments inside VXLAN (1564 bytes), three large to one small,
# about 1.2 KB per packet on average. It is written to /tmp and removed afterwards.
set -euo pipefail
size_mb=${1:-1024}
cd "$(dirname "$0")/.."
weft=$PWD/target/release/weft
[ -x "$weft" ] || { echo "build first: cargo build --release" >&2; exit 1; }
file=$(mktemp /tmp/weft-decode-bench.XXXXXX.pcap)
trap 'rm -f "$file"' EXIT

python3 - "$file" "$size_mb" <<'EOF'
import struct, sys, glob
path, size = sys.argv[1], int(sys.argv[2]) << 20
small = []
for f in sorted(glob.glob('testdata/captures/*.pcap')):
    d = open(f, 'rb').read()
    off = 24
    while off + 16 <= len(d):
        _, _, incl, _ = struct.unpack('<IIII', d[off:off + 16]); off += 16
        small.append(d[off:off + incl]); off += incl
def csum(b):
    s = sum((b[i] << 8) + (b[i + 1] if i + 1 < len(b) else 0) for i in range(0, len(b), 2))
    while s > 0xffff: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def ipv4(proto, src, dst, payload):
    h = bytearray(struct.pack('>BBHHHBBH4s4s', 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0, bytes(src), bytes(dst)))
    h[10:12] = struct.pack('>H', csum(bytes(h)))
    return bytes(h) + payload
tcp = struct.pack('>HHIIBBHHH', 40000, 5201, 1000, 2000, 0x50, 0x10, 502, 0, 0) + bytes(1400)
inner = bytes.fromhex('020000000002020000000001') + b'\x08\x00' + ipv4(6, [198,51,100,1], [198,51,100,2], tcp)
vx = bytes([8, 0, 0, 0, 0, 0, 42, 0]) + inner
udp = struct.pack('>HHHH', 45000, 4789, 8 + len(vx), 0) + vx
large = bytes.fromhex('020000000012020000000011') + b'\x08\x00' + ipv4(17, [192,0,2,11], [192,0,2,12], udp)
block = bytearray()
i = 0
while len(block) < (1 << 20):
    for p in ([large] * 3 + [small[i % len(small)]]):
        block += struct.pack('<IIII', 1700000000 + i // 1000000, i % 1000000, len(p), len(p)) + p
        i += 1
with open(path, 'wb') as out:
    out.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
    written = 24
    while written < size:
        out.write(block); written += len(block)
EOF

bytes=$(stat -c %s "$file")
packets=$("$weft" decode "$file" | wc -l)
echo "file: $((bytes >> 20)) MB, $packets packets, $((bytes / packets)) bytes per packet on average"

# Runs a command over the file, prints MB/s and peak memory (from getrusage of the child).
measure() {
  local label=$1; shift
  python3 - "$label" "$bytes" "$@" <<'EOF'
import resource, subprocess, sys, time
label, size, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
t = time.monotonic()
subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
secs = time.monotonic() - t
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print(f"{label:<34} {secs:7.2f} s  {size / secs / 1e6:8.1f} MB/s  peak RSS {rss} MB")
EOF
}

measure "weft decode (one line per packet)" "$weft" decode "$file"
measure "weft decode --format json" "$weft" decode --format json "$file"
if [ "${2:-}" != "--no-tshark" ] && command -v tshark >/dev/null; then
  measure "tshark -r (one line per packet)" tshark -n -r "$file"
fi
