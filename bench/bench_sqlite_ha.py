"""SQLite HA: replication lag at 1,000 commits/s, failover time, rows lost, replication cost.

Targets (issue: SQLite high availability): lag p99 <= 50 ms; failover (primary made
unreadable -> first write acknowledged on the new primary through the link) p50 <= 0.5 s,
p99 <= 1 s over 20 trials at interval 100 ms x threshold 3; rows lost per switchover = 0;
application commits slowed by drd's replication by <= 5 %. The same failover is also measured
with the default profile (interval 1 s, timeout 1 s, threshold 3; reported).
DRD_BENCH_SQLITE_ONLY=failover_default runs only that part.
"""
import os, sqlite3, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(__file__))
from common import BIN, Cluster, percentile, row

TRIALS = int(os.environ.get("DRD_BENCH_FAILOVER_TRIALS", "20"))
LAG_SECONDS = float(os.environ.get("DRD_BENCH_LAG_SECONDS", "10"))
DEFAULT_TRIALS = int(os.environ.get("DRD_BENCH_FAILOVER_DEFAULT_TRIALS", "5"))
ONLY = os.environ.get("DRD_BENCH_SQLITE_ONLY", "")
FAST = dict(interval="100ms", timeout="500ms", threshold=3)
DEFAULT = dict(interval="1s", timeout="1s", threshold=3)  # the embedded default config's monitoring


def writer(c, seconds, rate, ack, start_id=1_000_000):
    return subprocess.Popen([f"{BIN}/drd-example-writer", "--db", f"{c.dir}/data/current.db", "--rate", str(rate),
                             "--duration", str(seconds), "--ack", ack, "--start-id", str(start_id)],
                            stdout=subprocess.PIPE, text=True)


def read_acks(path):
    out = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3:
                out.append((int(p[0]), int(p[1]), int(p[2])))
    return out


def ids(db):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT id FROM images")}
    finally:
        con.close()


def bench_lag():
    c = Cluster(standbys=2, interval="1s")
    try:
        ack = f"{c.dir}/acks.txt"
        seen = []  # (time_ms, max id visible on the standby)
        stop = threading.Event()

        def poll():
            while not stop.is_set():
                try:
                    con = sqlite3.connect(f"file:{c.dir}/data/secondary1.db?mode=ro", uri=True, timeout=0.05)
                    m = con.execute("SELECT max(id) FROM images").fetchone()[0] or 0
                    con.close()
                    seen.append((time.time() * 1000, m))
                except sqlite3.Error:
                    pass
                time.sleep(0.002)

        t = threading.Thread(target=poll)
        t.start()
        cpu0 = cpu_ticks(c.proc.pid)
        w = writer(c, LAG_SECONDS, 1000, ack)
        w.wait()
        time.sleep(0.5)
        stop.set()
        t.join()
        cpu = (cpu_ticks(c.proc.pid) - cpu0) / os.sysconf("SC_CLK_TCK")
        acks = read_acks(ack)
        lags, j = [], 0
        for ident, ms, _ in acks:
            while j < len(seen) and seen[j][1] < ident:
                j += 1
            if j < len(seen):
                lags.append(max(0.0, seen[j][0] - ms))
        p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
        row(f"replication lag p50 at 1,000 commits/s ({len(acks)} commits)", f"{p50:.1f} ms", "(reported)", True)
        row("replication lag p99 at 1,000 commits/s", f"{p99:.1f} ms", "<= 50 ms", p99 <= 50)
        row("drd CPU per 1,000 commits (2 standbys)", f"{cpu / max(1, len(acks)) * 1000 * 1000:.0f} ms", "(reported)", True)
    finally:
        c.close()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def one_failover(switchover=False, profile=FAST, seconds=2.5):
    c = Cluster(standbys=2, **profile)
    try:
        ack = f"{c.dir}/acks.txt"
        w = writer(c, seconds, 500, ack)
        time.sleep(1.0)
        t0 = time.time() * 1000
        if switchover:
            subprocess.run([f"{BIN}/drctl", "--socket", c.socket, "switchover", "secondary1"], check=True,
                           stdout=subprocess.DEVNULL)
        else:
            os.rename(f"{c.dir}/data/primary.db", f"{c.dir}/lost.db")
        w.wait()
        acks = read_acks(ack)
        reopens_at_t0 = max([r for _, ms, r in acks if ms <= t0] or [0])
        after = [ms for _, ms, r in acks if ms > t0 and r > reopens_at_t0]
        gap = (after[0] - t0) if after else float("inf")
        new_primary = c.call("primary")["result"]["name"]
        present = ids(f"{c.dir}/data/{new_primary}.db")
        lost = sum(1 for i, _, _ in acks if i not in present)
        return gap, lost
    finally:
        c.close()


def bench_failover():
    gaps, lost = [], []
    for _ in range(TRIALS):
        g, l = one_failover()
        gaps.append(g)
        lost.append(l)
    p50, p99 = percentile(gaps, 0.5) / 1000, percentile(gaps, 0.99) / 1000
    row(f"failover, primary renamed away -> first ack on new primary, p50 ({TRIALS} trials)", f"{p50:.3f} s", "<= 0.5 s", p50 <= 0.5)
    row("failover p99", f"{p99:.3f} s", "<= 1 s", p99 <= 1)
    row("rows lost per crash failover (max over trials)", f"{max(lost)}", "(reported)", True)
    sw_lost = [one_failover(switchover=True)[1] for _ in range(3)]
    row("rows lost per switchover (3 trials)", f"{max(sw_lost)}", "0", max(sw_lost) == 0)


def bench_overhead():
    # The same writer at 1,000 commits/s on a lone file and on a drd-managed primary:
    # what an application notices is the commit latency.
    import json, tempfile, shutil
    from common import make_db

    def run(db):
        out = subprocess.run([f"{BIN}/drd-example-writer", "--db", db, "--duration", "5", "--rate", "1000"],
                             capture_output=True, text=True).stdout
        return json.loads(out)

    d = tempfile.mkdtemp(prefix="drd-bench-plain-")
    try:
        make_db(f"{d}/plain.db")
        plain = run(f"{d}/plain.db")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    c = Cluster(standbys=2, interval="1s")
    try:
        managed = run(f"{c.dir}/data/current.db")
    finally:
        c.close()
    row("commit latency p50 at 1,000 commits/s, alone vs under drd",
        f"{plain['commit_p50_ms']:.3f} vs {managed['commit_p50_ms']:.3f} ms", "(reported)", True)
    slow = (managed["commit_p99_ms"] / plain["commit_p99_ms"] - 1) * 100 if plain["commit_p99_ms"] else 0
    row("commit latency p99 at 1,000 commits/s, alone vs under drd",
        f"{plain['commit_p99_ms']:.3f} vs {managed['commit_p99_ms']:.3f} ms", "slower by <= 5 %", slow <= 5)
    row("application commits/s at 1,000/s offered, alone vs under drd",
        f"{plain['acked'] / 5:.0f} vs {managed['acked'] / 5:.0f}", ">= 95 %", managed["acked"] >= 0.95 * plain["acked"])


def bench_failover_default():
    gaps = [one_failover(profile=DEFAULT, seconds=7)[0] for _ in range(DEFAULT_TRIALS)]
    p50, worst = percentile(gaps, 0.5) / 1000, max(gaps) / 1000
    row(f"failover, default profile (interval 1 s x threshold 3), p50 ({DEFAULT_TRIALS} trials)", f"{p50:.3f} s",
        "(reported)", True)
    row("failover, default profile, worst trial", f"{worst:.3f} s", "(reported)", True)


if ONLY == "failover_default":
    bench_failover_default()
else:
    bench_lag()
    bench_failover()
    bench_failover_default()
    bench_overhead()
