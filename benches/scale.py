#!/usr/bin/env python3
"""Scale check: N services x 5 instances registered through Consul's catalog API (/v1/txn),
all asked for through the bridge (so all watched). Reports the bridge's peak RSS, the time for a
health flip of one instance to reach the answers, and Consul requests per minute while nothing
changes. Run through benches/scale.sh, which starts Consul and the bridge."""

import os, socket, statistics, struct, subprocess, sys, time, urllib.request

from benchlib import catalog_ops, query, transact

consul, dns_port, metrics_url, bridge_pid = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
services = int(sys.argv[5]) if len(sys.argv) > 5 else 10000
INSTANCES = 5
FLIP = "svc00042"


def register():
    started = time.time()
    transact(consul, catalog_ops(services, INSTANCES) + [check_op("passing")])
    print(f"registered {services} services x {INSTANCES} instances in {time.time() - started:.1f} s")


def check_op(status):
    return {"Check": {"Verb": "set", "Check": {
        "Node": "n0", "CheckID": "flip", "Name": "flip", "Status": status,
        "ServiceID": f"{FLIP}-0", "ServiceName": FLIP}}}


def answers(reply):
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", reply[:12])
    return qid, flags & 0xF, an


sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(3)


def ask(name):
    sock.sendto(query(name, 7), ("127.0.0.1", dns_port))
    while True:
        reply, _ = sock.recvfrom(4096)
        if reply[:2] == b"\x00\x07":
            return answers(reply)


def ask_all():
    """Every service once, 200 at a time, until each answers with its 5 instances."""
    started = time.time()
    pending = {f"svc{i:05d}.service.consul" for i in range(services)}
    rounds = 0
    while pending:
        rounds += 1
        names = sorted(pending)
        for at in range(0, len(names), 200):
            batch = {}
            for k, name in enumerate(names[at:at + 200]):
                qid = at + k + 1000 * rounds
                qid &= 0xFFFF
                batch[qid] = name
                sock.sendto(query(name, qid), ("127.0.0.1", dns_port))
            deadline = time.time() + 5
            while batch and time.time() < deadline:
                try:
                    reply, _ = sock.recvfrom(4096)
                except socket.timeout:
                    break
                qid, rcode, an = answers(reply)
                name = batch.pop(qid, None)
                if name and rcode == 0 and an == INSTANCES:
                    pending.discard(name)
    print(f"all {services} services answered with {INSTANCES} instances "
          f"in {time.time() - started:.1f} s ({rounds} rounds)")


def metric(name):
    with urllib.request.urlopen(metrics_url) as resp:
        total = 0.0
        for line in resp.read().decode().splitlines():
            if line.startswith(name):
                total += float(line.rsplit(" ", 1)[1])
        return total


def rss_mb():
    fields = {}
    with open(f"/proc/{bridge_pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def consul_connections():
    """Established TCP connections to the agent's port the bridge reaches it on (ss)."""
    port = os.environ.get("SCALE_CONSUL_PORT")
    if not port:
        return "?"
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    return str(len(out.splitlines()))


def flips(count=5):
    times = []
    name = f"{FLIP}.service.consul"
    for k in range(count):
        status, expect = ("critical", INSTANCES - 1) if k % 2 == 0 else ("passing", INSTANCES)
        started = time.perf_counter()
        transact(consul, [check_op(status)])
        while ask(name)[2] != expect:
            if time.perf_counter() - started > 10:
                raise SystemExit(f"flip {k}: not seen within 10 s")
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.3)
    return times


register()
ask_all()
print(f"watched services: {metric('consul_dns_bridge_watched_services'):.0f}")
time.sleep(3)  # the keeper parks the most asked within a few seconds
parked = metric('consul_dns_bridge_service_watches{mode="parked"}')
on_demand = metric('consul_dns_bridge_service_watches{mode="on_demand"}')
print(f"service watches parked: {parked:.0f}, read on demand: {on_demand:.0f}")
rss, peak = rss_mb()
print(f"bridge RSS now {rss:.1f} MB, peak {peak:.1f} MB")
print(f"connections to Consul: {consul_connections()}")
times = flips()
print("health flip to answer (ms, PUT sent -> new answer seen): "
      + ", ".join(f"{t:.1f}" for t in times) + f"; median {statistics.median(times):.1f}")
before = metric("consul_dns_bridge_consul_requests_total")
idle = int(os.environ.get("SCALE_IDLE_SECONDS", "60"))
time.sleep(idle)
after = metric("consul_dns_bridge_consul_requests_total")
print(f"Consul requests in {idle} s with nothing changing: {after - before:.0f} "
      f"(blocking queries re-parked at the end of their wait)")
rss, peak = rss_mb()
print(f"bridge RSS now {rss:.1f} MB, peak {peak:.1f} MB")
