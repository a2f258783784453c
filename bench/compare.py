#!/usr/bin/env python3
"""Side-by-side throughput: the same two-host topology (two namespaces joined by a veth underlay, an endpoint
namespace behind each host on a veth, endpoint offloads left on) for

  veth      the two endpoints joined directly (the ceiling)
  kernel    Linux VXLAN + bridge on each host
  ovs       Open vSwitch userspace datapath, VXLAN (skipped, with the reason, if OVS is not installed)
  weft-vxlan, weft-geneve, weft-gre
  weft-vxlan-nooffload   weft VXLAN with WEFT_OFFLOADS=off (weft cuts every frame itself; for comparison)
  weft-vxlan-ipsec       weft VXLAN with options:psk (IKEv2, ESP AES-256-GCM in UDP 4500, transport mode)

iperf3 TCP 1 stream, TCP 4 streams and UDP 64-byte datagrams (delivered packets per second); medians of RUNS
interleaved rounds (each round builds and measures every setup once) of SECONDS each; system CPU use while
each runs; weftd's peak memory. Prints a table with weft's ratio to the kernel and to Open vSwitch, and
draws it as a PNG (installing python3-matplotlib with apt-get when it is missing). With --soak SECONDS it
instead runs one TCP stream through weft VXLAN for that long and samples weftd's resident memory every 10 s
(it must stay under 64 MB and flat).

    bench/compare.py [--seconds 10] [--runs 3] [--only weft-vxlan,kernel] [--png bench/compare.png]
    bench/compare.py --soak 300
    bench/compare.py --only kernel,weft-vxlan --before /path/to/an/older/checkout
    bench/compare.py --pps [--flows 64] [--only kernel,ovs,weft-vxlan]

With --before DIR every weft setup is also measured with DIR/target/release's binaries (an older build of
weft, say a git worktree of main before a change), as `before-weft-…`, in the same interleaved rounds: a
change's effect on speed is measured in one run, never against a figure from another day.

With --pps it measures small packets instead, with bench/pktgen (built on first use) rather than iperf3:
64-byte frames of many flows offered from the left endpoint through the switch, counted where they arrive;
it reports the packets per second delivered, the datapath cores that took (weftd's datapath thread,
ovs-vswitchd's threads: CPU-seconds per second on each host), packets per second per datapath core, and the
highest offered rate each setup delivers with at most 0.1 % loss.

Needs root and a release build (cargo build --release). Uses namespaces cb-*, removed at the end.
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
BEFORE = None  # --before: DIR/target/release
NS = ["cb-h1", "cb-h2", "cb-l", "cb-r"]


def sh(cmd, check=True):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd}: {r.stderr.strip()}")
    return r.stdout


def nsx(ns, cmd, check=True):
    return sh(f"ip netns exec {ns} sh -c '{cmd}'", check)


class Setup:
    """Builds one topology; `pids` are the processes it started (stopped by PID)."""

    def __init__(self, kind, tmp):
        self.kind, self.tmp, self.pids, self.ovs_dirs = kind, tmp, [], []

    def build(self):
        for n in NS:
            sh(f"ip netns del {n}", check=False)
            sh(f"ip netns add {n} && ip -n {n} link set lo up")
        if self.kind == "veth":
            sh("ip link add eth0 netns cb-l type veth peer name eth0 netns cb-r")
            for n, a in (("cb-l", "198.51.100.1"), ("cb-r", "198.51.100.2")):
                nsx(n, f"ip addr add {a}/24 dev eth0 && ip link set eth0 mtu 1450 up")
            return
        sh("ip link add u1 netns cb-h1 type veth peer name u2 netns cb-h2")
        for i in (1, 2):
            nsx(f"cb-h{i}", f"ip addr add 192.0.2.1{i}/24 dev u{i} && ip link set u{i} up")
        sh("ip link add eth0 netns cb-l type veth peer name p1 netns cb-h1")
        sh("ip link add eth0 netns cb-r type veth peer name p2 netns cb-h2")
        for n, a in (("cb-l", "198.51.100.1"), ("cb-r", "198.51.100.2")):
            nsx(n, f"ip addr add {a}/24 dev eth0 && ip link set eth0 mtu 1450 up")
        for i in (1, 2):
            nsx(f"cb-h{i}", f"ip link set p{i} up")
        other = {1: "192.0.2.12", 2: "192.0.2.11"}
        if self.kind == "kernel":
            for i in (1, 2):
                nsx(f"cb-h{i}", f"ip link add vx0 type vxlan id 1 remote {other[i]} local 192.0.2.1{i} dstport 4789 dev u{i}"
                    f" && ip link add br0 type bridge && ip link set vx0 master br0 && ip link set p{i} master br0"
                    f" && ip link set vx0 up && ip link set br0 up")
        elif self.kind == "ovs":
            for n in ("cb-l", "cb-r"):
                nsx(n, "ethtool -K eth0 tx off >/dev/null")  # OVS reads partial checksums as they are
            for i in (1, 2):
                d = os.path.join(self.tmp, f"ovs{i}")
                os.makedirs(d)
                self.ovs_dirs.append(d)
                env = f"OVS_RUNDIR={d} OVS_LOGDIR={d} OVS_DBDIR={d}"
                sh(f"ovsdb-tool create {d}/conf.db /usr/share/openvswitch/vswitch.ovsschema")
                nsx(f"cb-h{i}", f"{env} ovsdb-server {d}/conf.db --remote=punix:{d}/db.sock --pidfile={d}/db.pid "
                    f"--unixctl={d}/db.ctl --log-file={d}/db.log --detach")
                vs = f"{env} ovs-vsctl --db=unix:{d}/db.sock --timeout=20"
                nsx(f"cb-h{i}", f"{vs} --no-wait init")
                nsx(f"cb-h{i}", f"{env} ovs-vswitchd unix:{d}/db.sock --disable-system --pidfile={d}/vs.pid "
                    f"--unixctl={d}/vs.ctl --log-file={d}/vs.log --detach")
                nsx(f"cb-h{i}", f"{vs} add-br br-phy -- set bridge br-phy datapath_type=netdev && {vs} add-port br-phy u{i}"
                    f" && ip addr flush dev u{i} && ip addr add 192.0.2.1{i}/24 dev br-phy && ip link set br-phy up"
                    f" && {vs} add-br br-int -- set bridge br-int datapath_type=netdev && {vs} add-port br-int p{i}"
                    f" && {vs} add-port br-int vx1 -- set interface vx1 type=vxlan options:remote_ip={other[i]} options:key=1")
            nsx("cb-h1", "ping -c 2 -W 2 192.0.2.12 >/dev/null", check=False)
            nsx("cb-h2", "ping -c 2 -W 2 192.0.2.11 >/dev/null", check=False)
        else:
            name = self.kind.removeprefix("before-")
            binary = BEFORE if self.kind.startswith("before-") else BIN
            # weft-vxlan@2: two datapath workers (without @N: weftd's default, one per core).
            setup, _, n = name.partition("@")
            ty = setup.split("-")[1]
            env = dict(os.environ)
            workers = ["--workers", n] if n else []
            if setup.endswith("-nooffload"):
                env["WEFT_OFFLOADS"] = "off"
            extra = " options:psk=bench-secret" if setup.endswith("-ipsec") else ""
            pipeline4 = setup.endswith("-pipeline4")
            conntrack = setup.endswith("-ct")
            if extra:
                # ESP takes 45 more bytes: the endpoints get the MTU weft gives a TAP on such a bridge.
                for n in ("cb-l", "cb-r"):
                    nsx(n, "ip link set eth0 mtu 1405")
            for i in (1, 2):
                sock = os.path.join(self.tmp, f"w{i}.sock")
                p = subprocess.Popen(["ip", "netns", "exec", f"cb-h{i}", f"{binary}/weftd", "--db",
                                      os.path.join(self.tmp, f"w{i}.db"), "--socket", sock, "--log-level", "warn"]
                                     + workers,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                self.pids.append(p)
                for _ in range(50):
                    if os.path.exists(sock):
                        break
                    time.sleep(0.1)
                w = f"{binary}/weft --socket {sock}"
                nsx(f"cb-h{i}", f"{w} add-br sw1 && {w} add-port sw1 p{i} && {w} add-port sw1 t1 -- set interface t1 "
                    f"type={ty} options:remote_ip={other[i]} options:key=1{extra}")
                if pipeline4:
                    # Four tables instead of NORMAL: table 0 classifies by input port into reg0, table 1 sets
                    # a tag in reg1, table 2 matches IP or not, table 3 outputs by reg0 -- each by resubmit.
                    flows = [f"table=0,priority=10,in_port=p{i},actions=load:1->reg0,resubmit(,1)",
                             "table=0,priority=10,in_port=t1,actions=load:2->reg0,resubmit(,1)",
                             "table=1,priority=10,reg0=1,actions=load:0x10->reg1,resubmit(,2)",
                             "table=1,priority=10,reg0=2,actions=load:0x20->reg1,resubmit(,2)",
                             "table=2,priority=20,ip,actions=resubmit(,3)",
                             "table=2,priority=10,actions=resubmit(,3)",
                             "table=3,priority=10,reg0=1,reg1=0x10,actions=output:t1",
                             f"table=3,priority=10,reg0=2,reg1=0x20,actions=output:p{i}"]
                    path = os.path.join(self.tmp, f"flows{i}.txt")
                    with open(path, "w") as f:
                        f.write("\n".join(flows) + "\n")
                    nsx(f"cb-h{i}", f"{w} del-flows sw1 && {w} add-flows sw1 {path}")
                if conntrack:
                    # A security group on each host (docs/conntrack.md): every IP packet through the
                    # tracker; established and related pass, new connections only from the local endpoint.
                    flows = ["table=0,priority=100,ip,actions=ct(table=1,zone=5)",
                             "table=0,priority=0,actions=NORMAL",
                             "table=1,priority=100,ct_state=+trk+est,actions=NORMAL",
                             "table=1,priority=100,ct_state=+trk+rel,actions=NORMAL",
                             "table=1,priority=90,ct_state=+trk+inv,actions=drop",
                             f"table=1,priority=50,ct_state=+trk+new,ip,in_port=p{i},actions=ct(commit,zone=5),NORMAL",
                             "table=1,priority=50,ct_state=+trk+new,ip,in_port=t1,actions=ct(commit,zone=5),NORMAL",
                             "table=1,priority=0,actions=drop"]
                    path = os.path.join(self.tmp, f"flows{i}.txt")
                    with open(path, "w") as f:
                        f.write("\n".join(flows) + "\n")
                    nsx(f"cb-h{i}", f"{w} del-flows sw1 && {w} add-flows sw1 {path}")
        for _ in range(10):  # IPsec: until IKE has brought the SAs up
            try:
                nsx("cb-l", "ping -c 1 -W 1 198.51.100.2 >/dev/null")
                break
            except RuntimeError:
                pass
        nsx("cb-l", "ping -c 3 -W 2 198.51.100.2 >/dev/null")

    def weftd_pids(self):
        out = []
        for p in self.pids:
            # `ip netns exec` execs weftd, so the PID is weftd's.
            out.append(p.pid)
        return out

    def teardown(self):
        for p in self.pids:
            p.terminate()
            p.wait()
        for d in self.ovs_dirs:
            for f in ("vs.pid", "db.pid"):
                try:
                    pid = open(os.path.join(d, f)).read().strip()
                    sh(f"kill {pid}", check=False)
                except OSError:
                    pass
        time.sleep(0.3)
        for n in NS:
            sh(f"ip netns del {n}", check=False)


def cpu_sample():
    f = open("/proc/stat").readline().split()[1:]
    v = list(map(int, f))
    idle = v[3] + v[4]
    return sum(v), idle


def iperf(args, seconds, pids=()):
    """One iperf3 run from cb-l to cb-r: (Gbit/s, or delivered packets/s with -u; the machine's busy %;
    CPU-seconds per GB moved of the processes `pids` and of the whole machine)."""
    nsx("cb-r", "iperf3 -s -1 -D -B 198.51.100.2")
    time.sleep(0.3)
    t0, p0 = cpu_sample(), sum(thread_cpu(p, None) for p in pids)
    out = nsx("cb-l", f"timeout {seconds + 20} iperf3 -c 198.51.100.2 -t {seconds} -J {args}", check=False)
    t1, p1 = cpu_sample(), sum(thread_cpu(p, None) for p in pids)
    busy = 100.0 * (1 - (t1[1] - t0[1]) / max(1, t1[0] - t0[0]))
    try:
        d = json.loads(out)
    except json.JSONDecodeError:
        return None, busy, None
    if "-u" in args:
        s = d["end"]["sum"]
        return (s["packets"] - s["lost_packets"]) / s["seconds"], busy, None
    r = d["end"]["sum_received"]
    gb = r["bytes"] / 1e9
    machine = (t1[0] - t0[0] - (t1[1] - t0[1])) / os.sysconf("SC_CLK_TCK")
    per_gb = {"weftd": (p1 - p0) / gb if pids and gb else None, "machine": machine / gb if gb else None}
    return r["bits_per_second"] / 1e9, busy, per_gb


def rss_mb(pids):
    """Current resident memory of the weftd processes, summed, in MB."""
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def soak(seconds):
    """One TCP stream through weft VXLAN for `seconds`; weftd memory sampled every 10 s."""
    tmp = tempfile.mkdtemp(prefix="weft-soak-")
    s = Setup("weft-vxlan", tmp)
    try:
        s.build()
        nsx("cb-r", "iperf3 -s -1 -D -B 198.51.100.2")
        time.sleep(0.3)
        # The JSON report of a long run outgrows a pipe: it goes to a file.
        report_path = os.path.join(tmp, "soak.json")
        report_file = open(report_path, "w")
        client = subprocess.Popen(["ip", "netns", "exec", "cb-l", "iperf3", "-c", "198.51.100.2", "-t", str(seconds),
                                   "-J"], stdout=report_file, stderr=subprocess.DEVNULL, text=True)
        samples = []
        t0 = time.time()
        while client.poll() is None:
            per = [rss_mb([pid]) for pid in s.weftd_pids()]
            samples.append((time.time() - t0, per))
            print(f"  t={samples[-1][0]:5.0f}s  weftd RSS " + "  ".join(f"{m:6.1f} MB" for m in per), flush=True)
            time.sleep(10)
        report_file.close()
        try:
            out = json.loads(open(report_path).read() or "{}")
        except json.JSONDecodeError:
            out = {}
        gbps = out.get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 1e9
        print(f"soak: {seconds} s of TCP through weft VXLAN at {gbps:.2f} Gbit/s")
        later = samples[1:] or samples
        for h in range(len(s.weftd_pids())):
            series = [per[h] for _, per in later]
            peak, growth = max(series), series[-1] - series[0]
            verdict = "ok" if peak <= 64 and growth <= 2 else "FAIL"
            print(f"host {h + 1}: peak {peak:.1f} MB, growth after the first sample {growth:+.1f} MB: {verdict}")
    finally:
        s.teardown()
        shutil.rmtree(tmp, ignore_errors=True)


def matplotlib_or_install():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        pass
    if shutil.which("apt-get"):
        print("installing python3-matplotlib for the chart ...")
        subprocess.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib >/dev/null",
                       shell=True)
    import importlib
    importlib.invalidate_caches()  # the failed import above left the old directory listing cached
    if "/usr/lib/python3/dist-packages" not in sys.path:
        sys.path.append("/usr/lib/python3/dist-packages")  # Debian's packages, for a python3 not Debian's
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def peak_rss_mb(pids):
    peak = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) // 1024)
        except OSError:
            pass
    return peak


PKTGEN = os.path.join(ROOT, "bench", "pktgen", "target", "release", "weft-pktgen")


def pktgen_built():
    """Builds bench/pktgen (its own small workspace) once."""
    if not os.path.exists(PKTGEN):
        print("building bench/pktgen ...", flush=True)
        sh(f"cargo build --release --quiet --manifest-path {os.path.join(ROOT, 'bench', 'pktgen', 'Cargo.toml')}")
    return PKTGEN


def rcvbuf_errors(ns):
    """Datagrams namespace `ns`'s UDP layer dropped because a socket's buffer was full."""
    lines = [l.split() for l in nsx(ns, "cat /proc/net/snmp").splitlines() if l.startswith("Udp:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))["RcvbufErrors"]


def thread_cpu(pid, names):
    """CPU seconds (user + system) of process `pid`'s threads whose name is in `names` (all with None)."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                comm = open(f"/proc/{pid}/task/{t}/comm").read().strip()
                if names is None or any(comm.startswith(n) for n in names):
                    f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
                    total += int(f[11]) + int(f[12])
            except OSError:
                pass
    except OSError:
        pass
    return total / os.sysconf("SC_CLK_TCK")


def datapath_pids(s):
    """The processes that switch packets in setup `s`, and which of their threads do: weftd's datapath
    workers, every thread of ovs-vswitchd; the kernel's work is softirq, counted only machine-wide."""
    if "weft" in s.kind:
        return [(p, ("datapath",)) for p in s.weftd_pids()]
    out = []
    for d in s.ovs_dirs:
        try:
            out.append((int(open(os.path.join(d, "vs.pid")).read().strip()), None))
        except (OSError, ValueError):
            pass
    return out


def pps_trial(s, rate, seconds, flows):
    """Offers 64-byte frames (18-byte UDP payload) of `flows` flows from cb-l to cb-r at `rate` packets/s
    (0: as fast as the sender goes) for `seconds`; returns (sent, delivered, datapath CPU seconds per host,
    machine busy %). Delivered: what the reader in cb-r read, plus what found its buffer full."""
    gen = pktgen_built()
    smac = nsx("cb-l", "cat /sys/class/net/eth0/address").strip()
    dmac = nsx("cb-r", "cat /sys/class/net/eth0/address").strip()
    sink = subprocess.Popen(["ip", "netns", "exec", "cb-r", gen, "sink", "198.51.100.2:9", "--seconds",
                             str(seconds + 2)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.2)
    procs = datapath_pids(s)
    rx0, m0 = rcvbuf_errors("cb-r"), cpu_sample()
    c0, w0 = [thread_cpu(p, n) for p, n in procs], time.time()
    out = nsx("cb-l", f"{gen} send 198.51.100.2:9 --dev eth0 --src 198.51.100.1 --src-mac {smac} --dst-mac {dmac} "
                      f"--rate {rate} --seconds {seconds} --flows {flows}")
    m1 = cpu_sample()
    c1, w1 = [thread_cpu(p, n) for p, n in procs], time.time()
    read = int(sink.communicate()[0].split()[-1])
    rx1 = rcvbuf_errors("cb-r")
    sent = int(out.split()[-1])
    busy = 100.0 * (1 - (m1[1] - m0[1]) / max(1, m1[0] - m0[0]))
    # CPU-seconds per second of wall time between the two samples (a little longer than the send itself).
    return sent, read + rx1 - rx0, [(b - a) * seconds / max(w1 - w0, 1e-3) for a, b in zip(c0, c1)], busy


def pps_measure(s, seconds, flows):
    """The small-packet figures of one setup: delivered packets/s when offered as much as the sender can,
    the datapath cores that took, and the highest offered rate delivered with at most 0.1 % loss (doubling
    from 25 kpps, then 3 bisection steps; None when even 25 kpps loses more, "sender" when the generator
    could not offer more than was delivered)."""
    sent, got, cpu, busy = pps_trial(s, 0, seconds, flows)
    r = {"max_kpps": got / seconds / 1000, "offered_kpps": sent / seconds / 1000, "busy": busy,
         "cores": [round(c / seconds, 2) for c in cpu]}
    lossless = lambda sent, got: sent > 0 and got >= sent * 0.999
    good, bad, rate = None, None, 25000
    while rate < 8_000_000:
        sent, got, _, _ = pps_trial(s, rate, 2, flows)
        if sent < 0.95 * rate * 2:
            break  # the generator cannot offer this much: the knee lies beyond what it can measure
        if lossless(sent, got):
            good, rate = rate, rate * 2
        else:
            bad = rate
            break
    if good and bad:
        for _ in range(3):
            mid = (good + bad) // 2
            sent, got, _, _ = pps_trial(s, mid, 2, flows)
            good, bad = (mid, bad) if lossless(sent, got) else (good, mid)
    r["knee_kpps"] = None if good is None else good / 1000
    r["sender_limited"] = bad is None
    return r


def pps(a, kinds):
    """--pps: the small-packet figures of every setup in interleaved rounds; medians."""
    got = {k: [] for k in kinds}
    for rnd in range(a.runs):
        for kind in kinds:
            tmp = tempfile.mkdtemp(prefix="weft-pps-")
            s = Setup(kind, tmp)
            try:
                s.build()
                got[kind].append(pps_measure(s, a.seconds, a.flows))
            except Exception as e:  # a setup that cannot be built is reported, not fatal
                print(f"{kind}: failed: {e}")
            finally:
                s.teardown()
                shutil.rmtree(tmp, ignore_errors=True)
        print(f"round {rnd + 1}/{a.runs}: " + "; ".join(
            f"{k} {got[k][-1]['max_kpps']:.0f} kpps" for k in kinds if got[k]), flush=True)
    med = lambda xs: statistics.median(xs) if xs else None
    print(f"\n64-byte frames (18-byte UDP payload), {a.flows} flows, {a.runs} round(s), medians; cores = CPU-seconds "
          f"per second of the switching threads on host 1 and host 2 (weftd's datapath thread, ovs-vswitchd; the "
          f"kernel switches in softirq, counted only in the machine's busy %)")
    print(f"{'setup':<22}{'delivered (kpps)':>18}{'offered (kpps)':>16}{'cores h1, h2':>14}{'kpps/core':>11}"
          f"{'no-loss rate (kpps)':>21}{'machine busy':>14}")
    rows = {}
    for kind in kinds:
        rs = got[kind]
        if not rs:
            continue
        mx, off = med([r["max_kpps"] for r in rs]), med([r["offered_kpps"] for r in rs])
        cores = [med([r["cores"][i] for r in rs if len(r["cores"]) > i]) for i in range(max(len(r["cores"]) for r in rs))]
        per_core = mx / max(cores) if cores and max(cores) > 0 else None
        knees = [r["knee_kpps"] for r in rs if r["knee_kpps"] is not None]
        knee = med(knees)
        limited = all(r["sender_limited"] for r in rs)
        rows[kind] = {"delivered_kpps": mx, "offered_kpps": off, "cores": cores, "kpps_per_core": per_core,
                      "no_loss_kpps": knee, "sender_limited": limited, "busy": med([r["busy"] for r in rs])}
        knee_s = "-" if knee is None else f"{knee:.0f}" + ("+" if limited else "")
        print(f"{kind:<22}{mx:>18.0f}{off:>16.0f}{', '.join(f'{c:.2f}' for c in cores) or '-':>14}"
              f"{'-' if per_core is None else f'{per_core:.0f}':>11}{knee_s:>21}{rows[kind]['busy']:>13.0f}%")
    print("(a + after the no-loss rate: no loss up to the most the generator could offer)")
    for base in ("kernel", "ovs"):
        if base in rows:
            for kind in [k for k in rows if "weft" in k]:
                print(f"{kind} / {base}: delivered {rows[kind]['delivered_kpps'] / rows[base]['delivered_kpps']:.2f}x")
    with open(a.json, "w") as f:
        json.dump({"pps": rows, "seconds": a.seconds, "runs": a.runs, "flows": a.flows}, f, indent=1)


def set_streams(text):
    """--streams 1,4,16: a TCP test for each number of parallel streams (then UDP 64-byte as always)."""
    global TESTS
    tcp = [(f"tcp{n}", f"TCP {n} stream{'s' if n != '1' else ''} (Gbit/s)", f"-P {n}" if n != "1" else "")
           for n in text.split(",")]
    TESTS = tcp + [t for t in TESTS if t[0] == "udp64"]


TESTS = [("tcp1", "TCP 1 stream (Gbit/s)", ""), ("tcp4", "TCP 4 streams (Gbit/s)", "-P 4"),
         ("udp64", "UDP 64-byte delivered (kpps)", "-u -l 64 -b 0")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="veth,kernel,ovs,weft-vxlan,weft-geneve,weft-gre",
                    help="setups, comma-separated; weft-T[-nooffload|-ipsec|-pipeline4|-ct][@WORKERS] for T in vxlan, "
                    "geneve, gre (-pipeline4: a four-table flow pipeline with registers and resubmits instead of "
                    "NORMAL; -ct: a security group, every IP packet through the connection tracker)")
    ap.add_argument("--png", default=os.path.join(ROOT, "bench", "compare.png"))
    ap.add_argument("--soak", type=int, default=0, help="only the memory soak, this many seconds")
    ap.add_argument("--json", default=os.path.join(ROOT, "bench", "compare.json"),
                    help="where the figures are saved (and read from with --replot)")
    ap.add_argument("--replot", action="store_true", help="only print and draw the figures saved in --json")
    ap.add_argument("--before", help="also measure every weft setup with DIR/target/release's binaries")
    ap.add_argument("--pps", action="store_true",
                    help="small packets instead of iperf3: bench/pktgen offers 64-byte frames (see pps_measure)")
    ap.add_argument("--flows", type=int, default=64, help="--pps: how many flows the generator offers")
    ap.add_argument("--streams", help="TCP tests with these numbers of parallel streams (default 1,4)")
    ap.add_argument("--workers", help="measure each weft setup with each of these numbers of datapath workers "
                    "(1,2,4: weft-vxlan@1, weft-vxlan@2, ...); default: weftd's own (one per core)")
    a = ap.parse_args()
    if a.streams:
        set_streams(a.streams)
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    if a.soak:
        soak(a.soak)
        return
    if a.replot:
        saved = json.load(open(a.json))
        report(a, saved["results"], saved["cpu"], saved["rss"])
        return
    kinds = a.only.split(",")
    if a.workers:
        kinds = [x for k in kinds for x in ([f"{k}@{n}" for n in a.workers.split(",")] if k.startswith("weft") else [k])]
    if a.before:
        global BEFORE
        BEFORE = os.path.join(os.path.abspath(a.before), "target", "release")
        if not os.path.exists(os.path.join(BEFORE, "weftd")):
            sys.exit(f"--before: no weftd in {BEFORE} (cargo build --release there first)")
        kinds = [x for k in kinds for x in ([f"before-{k}", k] if k.startswith("weft") else [k])]
    if a.pps:
        if a.json == os.path.join(ROOT, "bench", "compare.json"):
            a.json = os.path.join(ROOT, "bench", "compare-pps.json")
        pps(a, [k for k in kinds if k != "ovs" or shutil.which("ovs-vswitchd")])
        return
    results, cpu, rss = measure(a, kinds)
    with open(a.json, "w") as f:
        json.dump({"seconds": a.seconds, "runs": a.runs, "results": results, "cpu": cpu, "rss": rss}, f, indent=1)
    report(a, results, cpu, rss)


def measure(a, kinds):
    """Runs the setups in interleaved rounds (round r builds and measures every setup once, in turn), so that
    the VM's speed drifting over minutes -- it does, by 10-20 % -- moves every setup alike and the ratios are
    not skewed by which setup happened to run in a slow minute. Each figure is the median over the rounds."""
    if "ovs" in kinds and not shutil.which("ovs-vswitchd"):
        print("ovs: skipped: Open vSwitch is not installed (apt-get install openvswitch-switch)")
        kinds.remove("ovs")
    vals = {k: {key: [] for key, _, _ in TESTS} for k in kinds}
    busy = {k: {key: [] for key, _, _ in TESTS} for k in kinds}
    per_gb = {k: {key: {"weftd": [], "machine": []} for key, _, _ in TESTS} for k in kinds}
    rss, failed = {}, set()
    for r in range(a.runs):
        for kind in kinds:
            if kind in failed:
                continue
            tmp = tempfile.mkdtemp(prefix="weft-compare-")
            s = Setup(kind, tmp)
            try:
                s.build()
                for key, _, args in TESTS:
                    v, b, g = iperf(args, a.seconds, s.weftd_pids() if "weft" in kind else ())
                    if v is not None:
                        vals[kind][key].append(v / 1000.0 if key == "udp64" else v)
                        busy[kind][key].append(b)
                    for who, x in (g or {}).items():
                        if x is not None:
                            per_gb[kind][key][who].append(x)
                if "weft" in kind:
                    rss[kind] = max(rss.get(kind, 0), peak_rss_mb(s.weftd_pids()))
            except Exception as e:  # a setup that cannot be built is reported, not fatal
                print(f"{kind}: failed: {e}")
                failed.add(kind)
            finally:
                s.teardown()
                shutil.rmtree(tmp, ignore_errors=True)
        print(f"round {r + 1}/{a.runs}: " + "; ".join(
            f"{k} " + " ".join(f"{vals[k][key][-1]:.2f}" if vals[k][key] else "-" for key, _, _ in TESTS)
            for k in kinds if k not in failed), flush=True)
    med = lambda xs: statistics.median(xs) if xs else None
    results = {k: {key: med(vals[k][key]) for key, _, _ in TESTS} for k in kinds if k not in failed}
    cpu = {k: {key: med(busy[k][key]) for key, _, _ in TESTS} for k in kinds if k not in failed}
    # CPU-seconds per GB moved: kept beside the busy % (under "<test>_per_gb").
    for k in cpu:
        for key, _, _ in TESTS:
            cpu[k][f"{key}_per_gb"] = {who: med(xs) for who, xs in per_gb[k][key].items()}
    return results, cpu, rss


def report(a, results, cpu, rss):
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    ratio = lambda x, y: "-" if (x is None or not y) else f"{x / y:.2f}x"
    print(f"\n{a.runs} run(s) of {a.seconds} s each, medians; CPU = both cores busy during the test")
    print(f"{'setup':<22}" + "".join(f"{h:>30}" for _, h, _ in TESTS) + f"{'weftd RSS':>11}")
    for kind in results:
        row = f"{kind:<22}"
        for key, _, _ in TESTS:
            row += f"{fmt(results[kind].get(key)) + ' (' + fmt(cpu[kind].get(key)) + '% cpu)':>30}"
        row += f"{(str(rss[kind]) + ' MB') if kind in rss else '-':>11}"
        print(row)
    tcp = [(key, h) for key, h, _ in TESTS if key.startswith("tcp")]
    if any(cpu[k].get(f"{key}_per_gb") for k in results for key, _ in tcp):
        print("\nCPU-seconds per GB moved (weftd's threads, both hosts / the whole machine)")
        print(f"{'setup':<22}" + "".join(f"{h.split(' (')[0]:>26}" for _, h in tcp))
        for kind in results:
            cells = []
            for key, _ in tcp:
                g = cpu[kind].get(f"{key}_per_gb") or {}
                w, m = g.get("weftd"), g.get("machine")
                cells.append(("-" if w is None else f"{w:.2f}") + " / " + ("-" if m is None else f"{m:.2f}"))
            print(f"{kind:<22}" + "".join(f"{c:>26}" for c in cells))
    for base in ("kernel", "ovs"):
        if base not in results:
            continue
        for kind in [k for k in results if "weft" in k]:
            print(f"{kind} / {base}: " + ", ".join(
                f"{key} {ratio(results[kind].get(key), results[base].get(key))}" for key, _, _ in TESTS))
    names = {"veth": "veth underlay alone (ceiling)", "kernel": "Linux kernel VXLAN + bridge",
             "ovs": "Open vSwitch userspace, VXLAN", "weft-vxlan": "weft VXLAN", "weft-geneve": "weft Geneve",
             "weft-gre": "weft GRE", "weft-vxlan-nooffload": "weft VXLAN, WEFT_OFFLOADS=off",
             "weft-vxlan-ipsec": "weft VXLAN + IPsec (ESP AES-256-GCM)"}
    print("\n| setup | TCP 1 stream | TCP 4 streams | UDP 64-byte delivered | weft / kernel (TCP 1, UDP) | weftd RSS |")
    print("|---|---|---|---|---|---|")
    for kind in results:
        r, k = results[kind], results.get("kernel", {})
        cell = lambda key, unit: "-" if r.get(key) is None else f"{r[key]:.2f} {unit}"
        vs = f"{ratio(r.get('tcp1'), k.get('tcp1'))}, {ratio(r.get('udp64'), k.get('udp64'))}" \
            if "weft" in kind and k else ""
        udp = "-" if r.get("udp64") is None else f"{r['udp64']:.0f} kpps"
        mem = f"{rss[kind]} MB" if kind in rss else ""
        print(f"| {names.get(kind, kind)} | {cell('tcp1', 'Gbit/s')} | {cell('tcp4', 'Gbit/s')} | {udp} | {vs} | {mem} |")
    if not matplotlib_or_install():
        print("chart: skipped (python3-matplotlib could not be installed)")
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, len(TESTS), figsize=(4 * len(TESTS), 3.5))
        for ax, (key, title, _) in zip(axes, TESTS):
            names = list(results)
            colours = ["#d9822b" if "weft" in k else "#7a8a99" for k in names]
            bars = ax.bar(names, [results[k].get(key) or 0 for k in names], color=colours)
            ax.bar_label(bars, fmt="%.1f", fontsize=6)
            ax.set_title(title, fontsize=9)
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        fig.tight_layout()
        fig.savefig(a.png, dpi=100)
        print(f"chart: {a.png}")
    except ImportError:
        print("chart: skipped (python3-matplotlib is not installed)")


if __name__ == "__main__":
    main()
