"""drctl status round trip with 3 SQLite nodes (process start included): target p50 <= 5 ms."""
import os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(__file__))
from common import BIN, Cluster, percentile, row

c = Cluster(standbys=2)
try:
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        subprocess.run([f"{BIN}/drctl", "--socket", c.socket, "status", "--json"], stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    row("drctl status round trip p50 (3 nodes, 200 runs)", f"{p50:.2f} ms", "<= 5 ms", p50 <= 5)
    row("drctl status round trip p99", f"{p99:.2f} ms", "(reported)", True)
    raw = []
    import socket, json
    s = socket.socket(socket.AF_UNIX)
    s.connect(c.socket)
    f = s.makefile()
    for i in range(1000):
        t0 = time.perf_counter()
        s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status"}\n')
        f.readline()
        raw.append((time.perf_counter() - t0) * 1000)
    row("status RPC on a kept connection p50 (1000 calls)", f"{percentile(raw, 0.5):.3f} ms", "(reported)", True)
finally:
    c.close()
