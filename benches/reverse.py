#!/usr/bin/env python3
"""Registers N services x 5 instances through /v1/txn, asks the bridge for each (so each is
watched and its addresses indexed), and writes the dnsperf query files: A questions for the
services (the fast path) and PTR questions for addresses no node or service has. Run through
benches/reverse.sh."""

import socket, struct, sys, time

from benchlib import catalog_ops, query, transact

consul, dns_port, services, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
INSTANCES = 5


transact(consul, catalog_ops(services, INSTANCES))

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(3)


def count_answers(name):
    sock.sendto(query(name, 9), ("127.0.0.1", dns_port))
    reply, _ = sock.recvfrom(4096)
    return struct.unpack(">HHHHHH", reply[:12])[3]


deadline = time.time() + 60
for i in range(services):
    while count_answers(f"svc{i:05d}.service.consul") != INSTANCES:
        if time.time() > deadline:
            sys.exit(f"svc{i:05d} not answered with its {INSTANCES} instances")
        time.sleep(0.05)
with open(f"{work}/a.txt", "w") as f:
    for i in range(min(services, 100)):
        f.write(f"svc{i:05d}.service.consul A\n")
with open(f"{work}/ptr.txt", "w") as f:
    for i in range(1000):
        f.write(f"{i % 250 + 1}.{i // 250}.99.10.in-addr.arpa PTR\n")
