"""drd idle with 3 SQLite nodes probed every second: RSS <= 15 MB, CPU <= 0.5% of one core.

Measured three ways: without the HTTP endpoint, with `http.listen` set and nothing asking,
and with the status page and /metrics fetched every 5 s (a Prometheus scrape and an open
status page). The RSS target applies to the first; the others are reported.
"""
import os, socket, sys, time, urllib.request
sys.path.insert(0, os.path.dirname(__file__))
from common import Cluster, row

SECONDS = float(os.environ.get("DRD_BENCH_IDLE_SECONDS", "30"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def measure(http=False, fetch=False):
    port = free_port()
    extra = f"  http:\n    listen: 127.0.0.1:{port}\n" if http else ""
    c = Cluster(standbys=2, interval="1s", extra=extra)
    try:
        time.sleep(3)  # warm up: first probes, state store opened
        t0, c0 = time.time(), cpu_ticks(c.proc.pid)
        peak, n = 0, 0
        while time.time() - t0 < SECONDS:
            time.sleep(1)
            n += 1
            if fetch and n % 5 == 0:
                for path in ("/", "/metrics"):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()
            peak = max(peak, rss_kb(c.proc.pid))
        cpu_pct = (cpu_ticks(c.proc.pid) - c0) / TICK / (time.time() - t0) * 100
        return peak / 1024, cpu_pct
    finally:
        c.close()


rss, cpu = measure()
row("drd idle RSS, 3 SQLite nodes at 1 s, HTTP off", f"{rss:.1f} MB", "<= 15 MB", rss <= 15)
row(f"drd idle CPU over {SECONDS:.0f} s, HTTP off", f"{cpu:.2f} % of a core", "<= 0.5 %", cpu <= 0.5)
rss, cpu = measure(http=True)
row("drd idle RSS, HTTP on, nothing asking", f"{rss:.1f} MB", "(reported)", True)
rss, cpu = measure(http=True, fetch=True)
row("drd idle RSS, HTTP on, / and /metrics every 5 s", f"{rss:.1f} MB", "(reported)", True)
row(f"drd idle CPU over {SECONDS:.0f} s, HTTP on, / and /metrics every 5 s", f"{cpu:.2f} % of a core", "(reported)", True)
