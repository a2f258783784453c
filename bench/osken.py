#!/usr/bin/env python3
"""os-ken's OpenFlow 1.3 switch tester against weft and against Open vSwitch, in one run.

os-ken (OpenStack's Ryu) ships `os_ken/tests/switch/tester.py`: a controller app that drives two switches,
a *target* (the switch under test) and a *tester* (a switch it trusts, here an Open vSwitch netdev bridge),
joined by three links. For each case it installs flows (groups, meters) on the target, has the tester send a
packet into it, and checks what comes out of the target's ports, what comes up as packet-in, and the target's
statistics. This script builds that rig in a network namespace it creates and removes:

    osk namespace:  weftd bridge "target" (dpid 1)  w1 w2 w3 ==veth== o1 o2 o3  OVS bridge "tester" (dpid 2)
                    (or an OVS netdev bridge "target" with the same ports, for the comparison)

and reports OK/total per category (match, action, group, meter) for each target, plus every failing case with
the tester's reason in --out.

    bench/osken.py [--targets weft,ovs] [--categories match,action,group,meter] [--bin target/release]
                   [--venv /var/tmp/weft-osken] [--out /tmp/osken.json] [--filter REGEX]

Needs root, Open vSwitch (ovsdb-server, ovs-vswitchd; started here on their own files, never the system's),
and os-ken from PyPI (installed into --venv if missing).
"""
import argparse, json, os, pathlib, re, shutil, subprocess, sys, tempfile, time

NS = f"osk{os.getpid()}"  # one namespace per run: two runs never share one
PORT = 6633


def sh(cmd, check=True, ns=True, **kw):
    full = f"ip netns exec {NS} sh -c {sh_quote(cmd)}" if ns else cmd
    p = subprocess.run(full, shell=True, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{p.stdout}{p.stderr}")
    return p.stdout


def sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


def venv_python(venv):
    py = pathlib.Path(venv) / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run([str(py), "-c", "import os_ken"], capture_output=True).returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q", "os-ken"], check=True)
    return py


# The controller: os-ken's application manager with the tester app (os-ken 4 has no osken-manager script).
LAUNCHER = r"""
import sys
from os_ken.lib import hub
hub.patch(thread=False)
from os_ken import cfg, log
import os_ken.flags  # the tester's options
log.early_init_log()
from os_ken.base.app_manager import AppManager
cfg.CONF(args=sys.argv[1:], project='os_ken')
log.init_log()
mgr = AppManager.get_instance()
mgr.load_apps(['os_ken.controller.ofp_handler', 'os_ken.tests.switch.tester'])
services = mgr.instantiate_apps(**mgr.create_contexts())
try:
    hub.joinall(services)
finally:
    mgr.close()
"""


class Ovs:
    def __init__(self, d):
        self.d = d
        self.env = f"OVS_RUNDIR={d} OVS_LOGDIR={d} OVS_DBDIR={d}"
        sh(f"ovsdb-tool create {d}/conf.db /usr/share/openvswitch/vswitch.ovsschema", ns=False)
        sh(f"{self.env} ovsdb-server {d}/conf.db --remote=punix:{d}/db.sock --pidfile={d}/ovsdb-server.pid "
           f"--unixctl={d}/ovsdb-server.ctl --log-file={d}/ovsdb-server.log --detach")
        self.vsctl("--no-wait init")
        sh(f"{self.env} ovs-vswitchd unix:{d}/db.sock --disable-system --pidfile={d}/ovs-vswitchd.pid "
           f"--unixctl={d}/ovs-vswitchd.ctl --log-file={d}/ovs-vswitchd.log --detach")

    def vsctl(self, args):
        return sh(f"{self.env} ovs-vsctl --db=unix:{self.d}/db.sock --timeout=20 {args}")

    def bridge(self, name, dpid, ports):
        cmd = (f"add-br {name} -- set bridge {name} datapath_type=netdev protocols=OpenFlow13 fail_mode=secure "
               f"other_config:datapath-id={dpid:016x}")
        for i, p in enumerate(ports, 1):
            cmd += f" -- add-port {name} {p} -- set interface {p} ofport_request={i}"
        self.vsctl(cmd)
        self.vsctl(f"set-controller {name} tcp:127.0.0.1:{PORT}")

    def stop(self):
        for daemon in ["ovs-vswitchd", "ovsdb-server"]:
            pid = pathlib.Path(self.d, f"{daemon}.pid")
            if pid.exists():
                subprocess.run(f"kill {pid.read_text().strip()}", shell=True)
        time.sleep(0.5)


class Weft:
    def __init__(self, d, bins):
        self.d, self.bins = d, bins
        self.log = open(f"{d}/weftd.log", "a")
        self.proc = subprocess.Popen(["ip", "netns", "exec", NS, f"{bins}/weftd", "--db", f"{d}/conf.db", "--socket",
                                      f"{d}/weft.sock"], stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        for _ in range(250):
            if os.path.exists(f"{d}/weft.sock"):
                break
            time.sleep(0.02)

    def weft(self, args):
        return sh(f"{self.bins}/weft --socket {self.d}/weft.sock {args}")

    def bridge(self, name, dpid, ports):
        self.weft(f"add-br {name}")
        self.weft(f"set bridge {name} other_config:datapath-id={dpid:016x}")
        for p in ports:
            self.weft(f"add-port {name} {p}")
        self.weft(f"set-controller {name} tcp:127.0.0.1:{PORT}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def run_tester(py, case_dir, log_path, timeout):
    """Runs the tester over `case_dir`; returns [(file description, case, 'OK' or reason)]."""
    with open(log_path, "w") as log:
        p = subprocess.Popen(["ip", "netns", "exec", NS, "env", "OSKEN_HUB_TYPE=eventlet", str(py), "-c", LAUNCHER, "--ofp-tcp-listen-port", str(PORT),
                              "--test-switch-target", "0000000000000001", "--test-switch-tester",
                              "0000000000000002", "--test-switch-dir", str(case_dir)],
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.terminate()
            p.wait(10)
    results, current = [], None
    lines = pathlib.Path(log_path).read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^    (\S.*?)\s+(OK|ERROR)$", line)
        if m:
            reason = "OK" if m.group(2) == "OK" else (lines[i + 1].strip() if i + 1 < len(lines) else "ERROR")
            results.append((current, m.group(1), reason))
        elif line and not line.startswith(" ") and not line.startswith(("dpid=", "---", "loading", "instantiating",
                                                                           "waiting", "OK(", "ERROR(")):
            current = line.strip()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="weft,ovs")
    ap.add_argument("--categories", default="match,action,group,meter")
    ap.add_argument("--bin", default="target/release")
    ap.add_argument("--venv", default="/var/tmp/weft-osken")
    ap.add_argument("--out", default="/tmp/osken.json")
    ap.add_argument("--filter", help="only case files whose name matches this regular expression")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per target and category")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    for tool in ["ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovsdb-tool"]:
        if not shutil.which(tool):
            raise SystemExit(f"needs {tool} (Debian: openvswitch-switch)")
    bins = os.path.abspath(a.bin)
    py = venv_python(a.venv)
    cases = pathlib.Path(subprocess.run([str(py), "-c", "import os_ken,os;print(os.path.dirname(os_ken.__file__))"],
                                        capture_output=True, text=True, check=True).stdout.strip()) / "tests/switch/of13"
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="weft-osken-"))
    report = {}
    try:
        subprocess.run(f"ip netns del {NS} 2>/dev/null", shell=True)
        sh(f"ip netns add {NS}", ns=False)
        sh("ip link set lo up")
        for i in (1, 2, 3):
            sh(f"ip link add w{i} type veth peer name o{i}")
            for dev in (f"w{i}", f"o{i}"):
                sh(f"sysctl -qw net.ipv6.conf.{dev}.disable_ipv6=1 && ip link set {dev} up")
        for target in a.targets.split(","):
            for cat in a.categories.split(","):
                d = tmp / f"{target}-{cat}"
                d.mkdir()
                case_dir = cases / cat
                if a.filter:
                    case_dir = d / "cases"
                    case_dir.mkdir()
                    for f in (cases / cat).iterdir():
                        if re.search(a.filter, f.name):
                            shutil.copy(f, case_dir / f.name)
                os.makedirs(d / "ovs")
                ovs = Ovs(str(d / "ovs"))
                ovs.bridge("tester", 2, ["o1", "o2", "o3"])
                sw = None
                if target == "weft":
                    os.makedirs(d / "weft")
                    sw = Weft(str(d / "weft"), bins)
                    sw.bridge("target", 1, ["w1", "w2", "w3"])
                else:
                    ovs.bridge("target", 1, ["w1", "w2", "w3"])
                started = time.time()
                results = run_tester(py, case_dir, d / "tester.log", a.timeout)
                if sw:
                    sw.stop()
                    shutil.copy(d / "weft/weftd.log", d / "weftd.log")
                ovs.stop()
                ok = sum(1 for r in results if r[2] == "OK")
                report.setdefault(target, {})[cat] = {"ok": ok, "total": len(results), "seconds": round(time.time() - started),
                                                      "failures": [r for r in results if r[2] != "OK"]}
                print(f"{target:5} {cat:7} {ok:4} / {len(results):4} OK  ({time.time() - started:.0f} s)", flush=True)
    finally:
        subprocess.run(f"ip netns pids {NS} 2>/dev/null | xargs -r kill", shell=True)
        time.sleep(0.5)
        subprocess.run(f"ip netns del {NS} 2>/dev/null", shell=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"details: {a.out}; logs: {tmp}")


if __name__ == "__main__":
    main()
