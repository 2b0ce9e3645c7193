"""Cost of monitoring: drd CPU per 1,000 probes; state-store size after 30 simulated days
at 1 s on 3 nodes (target <= 50 MB); `drctl health --since 7d` (target <= 100 ms)."""
import os, sqlite3, subprocess, sys, time
sys.path.insert(0, os.path.dirname(__file__))
from common import BIN, Cluster, percentile, row

TICK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


# 1. CPU per 1,000 probes: 3 nodes probed every 20 ms for 10 s.
c = Cluster(standbys=2, interval="20ms", timeout="500ms")
try:
    time.sleep(1)
    t0, c0 = time.time(), cpu_ticks(c.proc.pid)
    time.sleep(10)
    secs = (cpu_ticks(c.proc.pid) - c0) / TICK
    probes = 3 * (time.time() - t0) / 0.020
    row("drd CPU per 1,000 probes (3 SQLite nodes, 20 ms interval)", f"{secs / probes * 1000 * 1000:.0f} ms", "(reported)", True)
finally:
    c.close()

# 2. Thirty days of history at 1 s on 3 nodes, as drd keeps it: the last 24 h of raw
#    samples plus a per-minute summary row for all 30 days (maintained as samples arrive).
c = Cluster(standbys=2, interval="1s")
state = f"{c.dir}/state/state.db"
c.proc.terminate()
c.proc.wait(10)
now_ms = int(time.time() * 1000)
db = sqlite3.connect(state)
with db:
    for node in ("primary", "secondary1", "secondary2"):
        db.executemany("INSERT INTO health_samples (node, time_ms, ok, response_ms, error) VALUES (?,?,?,?,'')",
                       ((node, now_ms - i * 1000, 1 if i % 997 else 0, 0.3 + (i % 50) / 100) for i in range(86400)))
        db.executemany("INSERT OR REPLACE INTO health_minutes VALUES (?,?,?,?,?,?,?,?)",
                       ((node, (now_ms - m * 60000) // 60000 * 60000, 60, m % 7 == 0, 0.2, 0.4, 2.0, 0.9)
                        for m in range(30 * 1440)))
db.execute("VACUUM")
db.close()
size_mb = os.path.getsize(state) / 2**20
row("state store after 30 simulated days at 1 s, 3 nodes", f"{size_mb:.1f} MB", "<= 50 MB", size_mb <= 50)
c.log = open(f"{c.dir}/drd2.log", "w")
c.proc = subprocess.Popen([f"{BIN}/drd", "--config", f"{c.dir}/drd.yaml", "--foreground"], stdout=c.log, stderr=subprocess.STDOUT)
try:
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            c.call("ping")
            break
        except OSError:
            time.sleep(0.05)
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        subprocess.run([f"{BIN}/drctl", "--socket", c.socket, "health", "--since", "7d", "--json"], check=True,
                       stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - t0) * 1000)
    p50 = percentile(times, 0.5)
    row("drctl health --since 7d over that history, p50 of 10", f"{p50:.0f} ms", "<= 100 ms", p50 <= 100)
finally:
    c.close()
