#!/usr/bin/env python3
"""The measurements of benches/fleet.sh, which starts the cluster and the bridges.

Registers S services (one instance each, a TTL-less catalog check) through the catalog, asks
every bridge for all of them, makes a few services hot (asked steadily, so the keeper parks
them), then flips health F times, half on hot services and half on cold ones, and measures:
executions of the flipped services' health queries on each server (leader / followers), the
time from the flip to each bridge's new answer per class, connections per agent, RSS per
bridge; then the same through the agents' own DNS."""

import argparse, json, os, re, signal, socket, struct, subprocess, threading, time
import urllib.request

from benchlib import query

p = argparse.ArgumentParser()
for arg in ["--http-port", "--dns-port", "--services", "--flips"]:
    p.add_argument(arg, type=int, required=True)
for arg in ["--servers", "--clients", "--bridges", "--bridge-pids"]:
    p.add_argument(arg, required=True)
args = p.parse_args()
servers, clients = args.servers.split(), args.clients.split()
bridges = [(b.split(":")[0], int(b.split(":")[1])) for b in args.bridges.split()]
bridge_pids = [int(pid) for pid in args.bridge_pids.split()]
HOT = 10
# Cold flips go to svc(HOT + 100 + k), far from the hot ones: the catalog must hold them.
if args.services < HOT + 100 + args.flips:
    raise SystemExit(f"fleet.py: --services must be at least {HOT + 100 + args.flips} "
                     f"for {args.flips} flips (cold services are svc{HOT + 100:05d} on)")


def http(ip, path, body=None, method=None):
    req = urllib.request.Request(f"http://{ip}:{args.http_port}{path}",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 method=method or ("PUT" if body is not None else "GET"))
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read().decode()


def check(i, status):
    return {"Check": {"Verb": "set", "Check": {
        "Node": f"ext{i % 50}", "CheckID": f"c{i:05d}", "Name": "up", "Status": status,
        "ServiceID": f"svc{i:05d}"}}}


def register():
    ops = [{"Node": {"Verb": "set", "Node": {"Node": f"ext{n}", "Address": f"10.200.0.{n + 1}"}}}
           for n in range(50)]
    for i in range(args.services):
        ops.append({"Service": {"Verb": "set", "Node": f"ext{i % 50}", "Service": {
            "ID": f"svc{i:05d}", "Service": f"svc{i:05d}",
            "Address": f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}", "Port": 80}}})
        ops.append(check(i, "passing"))
    for at in range(0, len(ops), 64):
        http(clients[0], "/v1/txn", ops[at:at + 64])


def ask(sock, addr, name):
    """The answer count for `name` A, or None when no answer came."""
    qid = int.from_bytes(struct.pack(">H", hash(name) & 0xFFFF), "big")
    sock.sendto(query(name, qid), addr)
    while True:
        try:
            reply, _ = sock.recvfrom(4096)
        except socket.timeout:
            return None
        if reply[:2] == struct.pack(">H", qid):
            return struct.unpack(">HHHHHH", reply[:12])[3]


def ask_all(addr):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(3)
    missing = 0
    for i in range(args.services):
        if ask(sock, addr, f"svc{i:05d}.service.consul") != 1:
            missing += 1
    return missing


def executions(ip):
    text = http(ip, "/v1/agent/metrics?format=prometheus")
    total = {}
    for line in text.splitlines():
        m = re.match(r'consul_health_service_query\{service="(svc\d+)"\} ([\d.e+]+)', line)
        if m:
            total[m.group(1)] = float(m.group(2))
    return total


def flipped_executions(flipped):
    per_server = {}
    for ip in servers:
        counts = executions(ip)
        per_server[ip] = sum(counts.get(name, 0) for name in flipped)
    return per_server


def connections(ip):
    out = subprocess.run(["ss", "-Htn", "state", "established",
                          f"( dport = :{args.http_port} and dst {ip} )"],
                         capture_output=True, text=True).stdout
    return len(out.splitlines())


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0


def hot_traffic(stop):
    """Asks the hot services of every bridge steadily, as busy clients would."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1)
    while not stop.is_set():
        for ip, port in bridges:
            for i in range(HOT):
                ask(sock, ("127.0.0.1", port), f"svc{i:05d}.service.consul")
        time.sleep(0.05)


def flip_round(targets, label):
    """Flips services down and up again; returns the flip -> answer times (ms) per flip and
    target, the services flipped."""
    times = []
    flipped = []
    commits = []
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in targets]
    for sock in socks:
        sock.settimeout(1)
    for k in range(args.flips):
        hot = k % 2 == 0
        i = (k // 2) % HOT if hot else HOT + 100 + k
        name = f"svc{i:05d}.service.consul"
        flipped.append(f"svc{i:05d}")
        for status, expect in [("critical", 0), ("passing", 1)]:
            sent = time.perf_counter()
            http(clients[0], "/v1/txn", [check(i, status)])
            # The PUT returns once the servers have committed the change (Raft, on disk): the
            # time from then is what the readers add.
            started = time.perf_counter()
            commits.append((started - sent) * 1000)
            pending = dict(enumerate(targets))
            while pending:
                for j, addr in list(pending.items()):
                    if ask(socks[j], addr, name) == expect:
                        times.append(("hot" if hot else "cold",
                                      (time.perf_counter() - started) * 1000))
                        del pending[j]
                if time.perf_counter() - started > 20:
                    raise SystemExit(f"{label}: {name} {status} not seen within 20 s")
        time.sleep(0.2)
    print(f"{label}: the change's PUT took p50 {percentile(commits, .5):.1f} ms, "
          f"p99 {percentile(commits, .99):.1f} ms (the servers' commit)")
    return times, flipped


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def report(label, times, flipped, before, after, leader):
    per_flip = {ip: (after[ip] - before[ip]) / (2 * args.flips) for ip in servers}
    total = sum(per_flip.values())
    on_leader = per_flip.get(leader, 0)
    print(f"\n== {label}")
    print(f"executions of the flipped services' health query per change: {total:.2f} "
          f"(leader {on_leader:.2f}, followers {total - on_leader:.2f}; by server: "
          + ", ".join(f"{ip} {v:.2f}" for ip, v in per_flip.items()) + ")")
    for cls in ["hot", "cold"]:
        ms = [t for c, t in times if c == cls]
        if ms:
            print(f"committed flip -> answer, {cls} services ({len(ms)} answers): p50 {percentile(ms, .5):.1f} ms, "
                  f"p99 {percentile(ms, .99):.1f} ms, max {max(ms):.1f} ms")


register()
leader = http(clients[0], "/v1/status/leader").strip().strip('"').split(":")[0]
print(f"{args.services} services registered; {len(bridges)} bridges "
      f"({len(bridges) // len(clients)} per agent); leader {leader}")
started = time.time()
for ip, port in bridges:
    missing = ask_all(("127.0.0.1", port))
    if missing:
        print(f"bridge on port {port}: {missing} services not answered at first")
print(f"every bridge asked for all {args.services} services in {time.time() - started:.1f} s")
stop = threading.Event()
traffic = threading.Thread(target=hot_traffic, args=(stop,), daemon=True)
traffic.start()
time.sleep(4)  # the keepers park the hot services
missing = sum(ask_all(("127.0.0.1", port)) for _, port in bridges)
print(f"second pass: {missing} questions without their instance (of {len(bridges) * args.services})")

targets = [("127.0.0.1", port) for _, port in bridges]
names = [f"svc{i:05d}" for i in range(args.services)]
before = flipped_executions(names)
times, flipped = flip_round(targets, "bridges")
time.sleep(1)
after = flipped_executions(names)
report("bridges", times, flipped, before, after, leader)
for ip in clients:
    print(f"connections to agent {ip}: {connections(ip)}")
print("bridge RSS (MB): " + ", ".join(f"{rss_mb(pid):.1f}" for pid in bridge_pids))
stop.set()
traffic.join()
# The bridges stop, so that their watches cost nothing in the anchor's count.
for pid in bridge_pids:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
time.sleep(2)

# The anchor: the agents' own DNS, asked the same way (allow_stale, use_cache).
anchors = [(ip, args.dns_port) for ip in clients]
for addr in anchors:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1)
    for i in list(range(HOT)) + [HOT + 100 + k for k in range(args.flips)]:
        ask(sock, addr, f"svc{i:05d}.service.consul")
before = flipped_executions(names)
times, flipped = flip_round(anchors, "agents' DNS")
time.sleep(1)
after = flipped_executions(names)
report("the agents' own DNS (allow_stale, use_cache), 1 client each", times, flipped, before, after, leader)
