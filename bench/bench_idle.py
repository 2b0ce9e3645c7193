"""drd idle with 3 SQLite nodes probed every second: RSS <= 15 MB, CPU <= 0.5% of one core."""
import os, sys, time
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


c = Cluster(standbys=2, interval="1s")
try:
    time.sleep(3)  # warm up: first probes, state store opened
    t0, c0 = time.time(), cpu_ticks(c.proc.pid)
    peak = 0
    while time.time() - t0 < SECONDS:
        time.sleep(1)
        peak = max(peak, rss_kb(c.proc.pid))
    cpu_pct = (cpu_ticks(c.proc.pid) - c0) / TICK / (time.time() - t0) * 100
    row("drd idle RSS, 3 SQLite nodes at 1 s", f"{peak / 1024:.1f} MB", "<= 15 MB", peak / 1024 <= 15)
    row(f"drd idle CPU over {SECONDS:.0f} s", f"{cpu_pct:.2f} % of a core", "<= 0.5 %", cpu_pct <= 0.5)
finally:
    c.close()
