#!/usr/bin/env python3
"""Open vSwitch's own test flows through weft's parser, with Open vSwitch's as the oracle.

Takes the flow strings of tests/ovs-ofctl.at and tests/ofp-actions.at from an Open vSwitch source tree, gives
each to `ovs-ofctl -O OpenFlow13 parse-flow` and to `weft parse-flow`, and reports: of the flows OVS accepts,
how many weft accepts and how many it prints exactly as OVS normalizes them; of the flows OVS rejects, how
many weft rejects too. The differences go to --out (one JSON object per flow).

    bench/ofctl-flows.py --ovs ~/src/ovs [--weft target/release/weft] [--out /tmp/ofctl-flows.jsonl]

Needs ovs-ofctl on the PATH; no daemon, no root.
"""
import argparse, json, pathlib, re, subprocess, sys

FILES = ["tests/ovs-ofctl.at", "tests/ofp-actions.at", "tests/ofproto.at"]


def candidates(tree):
    """Lines (or quoted arguments of `ovs-ofctl add-flow`/`parse-flow`) that look like flows: they say actions=,
    hold no shell expansion, and are not expected output (those start with a message name). Autotest's
    quoting of brackets ([[ ]], @<:@ @:>@) is undone."""
    seen, out = set(), []
    for f in FILES:
        path = tree / f
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if "actions=" not in line:
                continue
            line = line.replace("[[", "\x00").replace("]]", "\x01").replace("@<:@", "\x00").replace("@:>@", "\x01")
            m = re.search(r"(?:parse-flows?|add-flow\s+\S+)\s+(['\"])(.*?)\1", line)
            text = (m.group(2) if m else line).strip()
            if not m and re.match(r"^(AT_|dnl|#|\[|\]|OFPT_|NXT_|OFPST_|NXST_|ONFT_|chosen|ovs-|cookie=0x.*duration=)", text):
                continue
            text = text.replace("\x00", "[").replace("\x01", "]").rstrip("\\").strip()
            if not text or any(c in text for c in "$`") or text.startswith(("AT_", "ovs-", "[", "]")):
                continue
            if text not in seen:
                seen.add(text)
                out.append(text)
    return out


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    return p.returncode, p.stdout.strip(), p.stderr.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ovs", required=True, type=pathlib.Path, help="an Open vSwitch source tree")
    ap.add_argument("--weft", default="target/release/weft")
    ap.add_argument("--out", default="/tmp/ofctl-flows.jsonl")
    a = ap.parse_args()
    flows = candidates(a.ovs)
    ovs_ok = ovs_no = weft_ok = weft_same = weft_no = 0
    with open(a.out, "w") as out:
        for f in flows:
            rc, so, _ = run(["ovs-ofctl", "-O", "OpenFlow13", "parse-flow", f])
            line = next((l for l in so.splitlines() if ": ADD " in l), None)
            want = line.split(": ADD ", 1)[1].strip() if rc == 0 and line else None
            wrc, wo, we = run([a.weft, "parse-flow", f])
            got = wo.strip() if wrc == 0 else None
            if want is None:
                ovs_no += 1
                weft_no += got is None
                if got is not None:
                    out.write(json.dumps({"flow": f, "ovs": "rejects", "weft": got}) + "\n")
                continue
            ovs_ok += 1
            weft_ok += got is not None
            weft_same += got == want
            if got != want:
                out.write(json.dumps({"flow": f, "ovs": want, "weft": got if got is not None else we}) + "\n")
    print(f"{len(flows)} candidate flows from {', '.join(FILES)}")
    print(f"OVS accepts {ovs_ok}: weft accepts {weft_ok} ({100 * weft_ok / max(ovs_ok, 1):.0f} %), "
          f"prints {weft_same} exactly as OVS ({100 * weft_same / max(ovs_ok, 1):.0f} %)")
    print(f"OVS rejects {ovs_no}: weft rejects {weft_no} ({100 * weft_no / max(ovs_no, 1):.0f} %)")
    print(f"differences: {a.out}")


if __name__ == "__main__":
    sys.exit(main())
