"""What the Python benches share: a DNS A question on the wire, and registering a catalog of
services through Consul's /v1/txn. Imported by the scripts beside it."""

import json, struct, urllib.request


def query(name, qid):
    """An A question for `name` with ID `qid`, recursion desired."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack(">HH", 1, 1)


def put(url, body):
    """PUTs `body` as JSON to `url`; the response body."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def catalog_ops(services, instances):
    """Transaction ops for nodes n0.. and services svc00000.. with `instances` instances each,
    one per node, instance j of service i at 10.j.(i // 256).(i % 256)."""
    ops = [{"Node": {"Verb": "set", "Node": {"Node": f"n{j}", "Address": f"10.250.0.{j + 1}"}}}
           for j in range(instances)]
    for i in range(services):
        for j in range(instances):
            ops.append({"Service": {"Verb": "set", "Node": f"n{j}", "Service": {
                "ID": f"svc{i:05d}-{j}", "Service": f"svc{i:05d}",
                "Address": f"10.{j}.{i // 256}.{i % 256}", "Port": 80}}})
    return ops


def transact(consul, ops):
    """Applies `ops` through `consul`'s /v1/txn, 64 at a time (Consul's limit)."""
    for at in range(0, len(ops), 64):
        put(consul + "/v1/txn", ops[at:at + 64])
