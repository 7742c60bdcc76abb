#!/usr/bin/env python3
"""What following Consul costs per change, with N services of one instance each, every one
asked for through the bridge (so watched; most read on demand, a budget's worth parked):
Consul health reads per second while nothing changes (anti-entropy), and health reads per
change and time to the answer for a health failure, a recovery, a new service and an instance
moving address (each 3 times, medians). Run through benches/follow.sh, which starts Consul
and the bridge (defaults: --reverify-interval 30s, --catch-up-rate 1000)."""

import socket, statistics, struct, sys, time, urllib.request

from benchlib import catalog_ops, query, transact

consul, dns_port, metrics_url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
services = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
QUIET = 40
HEALTH = 'consul_dns_bridge_consul_requests_total{endpoint="/v1/health/service"}'


def check_op(i, status):
    return {"Check": {"Verb": "set", "Check": {
        "Node": "n0", "CheckID": f"chk{i}", "Name": "up", "Status": status,
        "ServiceID": f"svc{i:05d}-0"}}}


def metric(name):
    with urllib.request.urlopen(metrics_url) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(3)
next_id = 0


def ask(name):
    """(rcode, answers, the last answer's IPv4 address as text) of an A question for `name`."""
    global next_id
    next_id = (next_id + 1) & 0xFFFF
    sock.sendto(query(name, next_id), ("127.0.0.1", dns_port))
    while True:
        reply, _ = sock.recvfrom(4096)
        qid, flags, _, an, _, _ = struct.unpack(">HHHHHH", reply[:12])
        if qid == next_id:
            address = ".".join(str(b) for b in reply[-4:]) if an else ""
            return flags & 0xF, an, address


def ask_all():
    for at in range(0, services, 100):
        for i in range(at, min(at + 100, services)):
            sock.sendto(query(f"svc{i:05d}.service.consul", 1), ("127.0.0.1", dns_port))
        deadline = time.time() + 5
        got = 0
        while got < min(100, services - at) and time.time() < deadline:
            try:
                sock.recvfrom(4096)
                got += 1
            except socket.timeout:
                break


def until(name, done, limit=30):
    started = time.perf_counter()
    while not done(ask(name)):
        if time.perf_counter() - started > limit:
            raise SystemExit(f"{name}: not seen within {limit} s")
        time.sleep(0.002)
    return (time.perf_counter() - started) * 1000


started = time.time()
ops = catalog_ops(services, 1) + [check_op(i, "passing") for i in range(services)]
transact(consul, ops)
print(f"registered {services} services in {time.time() - started:.1f} s")
ask_all()
ask_all()
time.sleep(5)
parked = metric('consul_dns_bridge_service_watches{mode="parked"}')
on_demand = metric('consul_dns_bridge_service_watches{mode="on_demand"}')
print(f"service watches parked: {parked:.0f}, read on demand: {on_demand:.0f}")
# Every service was confirmed at once by the first questions: after one --reverify-interval
# the anti-entropy reads run at their steady rate; measure a quiet period then.
time.sleep(30)
before, t0 = metric(HEALTH), time.time()
time.sleep(QUIET)
baseline = (metric(HEALTH) - before) / (time.time() - t0)
print(f"quiet: {baseline:.1f} health reads/s (anti-entropy; {on_demand:.0f} on demand / 30 s = "
      f"{on_demand / 30:.1f} expected)")
catch_up_seconds = on_demand / 1000 + 2


def measure(kind, change, name, done, window):
    reads, took = [], []
    for k in range(3):
        before, t0 = metric(HEALTH), time.time()
        change(k)
        took.append(until(name, lambda reply: done(reply, k)))
        time.sleep(max(0.0, window - (time.time() - t0)))
        extra = metric(HEALTH) - before - baseline * (time.time() - t0)
        reads.append(max(0.0, extra))
        time.sleep(1)
    print(f"{kind}: health reads per change {statistics.median(reads):.0f} "
          f"(runs {', '.join(f'{r:.0f}' for r in reads)}), change -> answer median "
          f"{statistics.median(took):.1f} ms (runs {', '.join(f'{t:.1f}' for t in took)})")


target = f"svc{services // 2:05d}"
measure("health failure", lambda k: transact(consul, [check_op(services // 2, "critical")]),
        f"{target}.service.consul", lambda r, k: r[0] == 3, 2)
measure("recovery", lambda k: transact(consul, [check_op(services // 2, "passing")]),
        f"{target}.service.consul", lambda r, k: r[0] == 0 and r[1] == 1, 2)
measure("new service registered", lambda k: transact(consul, [{"Service": {
    "Verb": "set", "Node": "n0", "Service": {"ID": f"new{k}", "Service": f"new{k}",
                                             "Address": "10.99.0.1", "Port": 80}}}]),
        "new0.service.consul", lambda r, k: r[0] == 0, catch_up_seconds)
moved = f"svc{services // 3:05d}"
measure("instance moved", lambda k: transact(consul, [{"Service": {
    "Verb": "set", "Node": "n0", "Service": {"ID": f"{moved}-0", "Service": moved,
                                             "Address": f"10.98.{k}.1", "Port": 80}}}]),
        f"{moved}.service.consul", lambda r, k: r[2] == f"10.98.{k}.1", catch_up_seconds)
