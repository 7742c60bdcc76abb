#!/usr/bin/env python3
"""Startup: milliseconds from starting the bridge binary to its first answer (a REFUSED for an
outside name), with no Consul reachable; then what a Consul name gets before the catalog has
loaded (SERVFAIL after a bounded wait, never NXDOMAIN). Usage: startup.py BINARY [runs]"""

import socket, statistics, subprocess, sys, time

from benchlib import query

binary = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
PORT = 19753


RCODES = {0: "NOERROR", 2: "SERVFAIL", 3: "NXDOMAIN", 5: "REFUSED"}
times = []
for run in range(runs):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.001)
    started = time.perf_counter()
    bridge = subprocess.Popen([binary, "--listen", f"127.0.0.1:{PORT}", "--http-listen", "off",
                               "--consul-addr", "http://127.0.0.1:1", "--log-level", "error"],
                              stderr=subprocess.DEVNULL)
    try:
        while True:
            sock.sendto(query("example.com", 1), ("127.0.0.1", PORT))
            try:
                reply, _ = sock.recvfrom(512)
                break
            except (socket.timeout, ConnectionRefusedError):
                pass
            if time.perf_counter() - started > 5:
                raise SystemExit("no answer within 5 s")
        first = (time.perf_counter() - started) * 1000
        times.append(first)
        rcode = RCODES.get(reply[3] & 0xF, reply[3] & 0xF)
        sock.settimeout(5)
        asked = time.perf_counter()
        sock.sendto(query("web.service.consul", 2), ("127.0.0.1", PORT))
        while True:
            reply, _ = sock.recvfrom(512)
            if reply[:2] == b"\x00\x02":
                break
        consul = RCODES.get(reply[3] & 0xF, reply[3] & 0xF)
        waited = (time.perf_counter() - asked) * 1000
        print(f"run {run + 1}: first answer ({rcode}) {first:.1f} ms after start; "
              f"web.service.consul before the catalog loaded: {consul} after {waited:.0f} ms")
    finally:
        bridge.terminate()
        bridge.wait()
print(f"median time to first answer: {statistics.median(times):.1f} ms over {runs} runs")
