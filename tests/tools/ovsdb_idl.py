#!/usr/bin/python3
"""A second OVSDB client that is not ovs-vsctl: Open vSwitch's Python IDL (Debian's python3-openvswitch).

Usage: ovsdb_idl.py REMOTE BRIDGE PORT

Fetches the schema from the server, monitors every table, adds an internal port PORT to BRIDGE in one IDL
transaction, then waits until the monitor shows the port's Interface with an ofport, and prints
{"ofport": N, "uuid": "..."} as JSON. Exits non-zero on any failure.
"""
import json
import sys
import time

import ovs.db.idl
import ovs.jsonrpc
import ovs.poller
import ovs.stream


def main():
    remote, bridge, port = sys.argv[1:4]
    err, stream = ovs.stream.Stream.open_block(ovs.stream.Stream.open(remote))
    if err:
        sys.exit(f"cannot connect to {remote}: {err}")
    rpc = ovs.jsonrpc.Connection(stream)
    err, reply = rpc.transact_block(ovs.jsonrpc.Message.create_request("get_schema", ["Open_vSwitch"]))
    if err or reply.error:
        sys.exit(f"get_schema failed: {err or reply.error}")
    rpc.close()
    helper = ovs.db.idl.SchemaHelper(schema_json=reply.result)
    helper.register_all()
    idl = ovs.db.idl.Idl(remote, helper)

    def run_until(pred, secs=15):
        deadline = time.time() + secs
        while time.time() < deadline:
            idl.run()
            if pred():
                return True
            poller = ovs.poller.Poller()
            idl.wait(poller)
            poller.timer_wait(100)
            poller.block()
        return False

    if not run_until(lambda: idl.has_ever_connected() and idl.tables["Open_vSwitch"].rows):
        sys.exit("the IDL never got the database")
    bridges = [r for r in idl.tables["Bridge"].rows.values() if r.name == bridge]
    if not bridges:
        sys.exit(f"no bridge {bridge} in the monitored contents")
    txn = ovs.db.idl.Transaction(idl)
    iface = txn.insert(idl.tables["Interface"])
    iface.name = port
    iface.type = "internal"
    iface.external_ids = {"owner": "python-idl"}
    p = txn.insert(idl.tables["Port"])
    p.name = port
    p.interfaces = [iface]
    bridges[0].addvalue("ports", p.uuid)
    status = txn.commit_block()
    if status != ovs.db.idl.Transaction.SUCCESS:
        sys.exit(f"transaction ended {status}: {txn.get_error()}")

    def ofport():
        for r in idl.tables["Interface"].rows.values():
            if r.name == port and r.ofport:
                return r
        return None

    if not run_until(lambda: ofport() is not None):
        sys.exit("the monitor never showed the new interface's ofport")
    row = ofport()
    print(json.dumps({"ofport": row.ofport[0], "uuid": str(row.uuid), "external_ids": dict(row.external_ids)}))
    idl.close()


if __name__ == "__main__":
    main()
