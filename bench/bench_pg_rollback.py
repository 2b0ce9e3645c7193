"""Rolling a live PostgreSQL primary back to a physical backup (`drctl restore ID --node primary
--force`) on a pgbench database (scale DRD_BENCH_PG_SCALE, default 70 = about 1 GiB) with one
streaming standby, measured the way an application sees it.

A prober runs `SELECT 1` on the primary every ~20 ms through the whole restore; the primary's
downtime is the longest gap between two answered probes. drd runs automatic failover with a
600 ms detection time (interval 200ms, threshold 3): the swap stops the primary for longer, so
a failover during the roll-back (drctl history) would show that the pause did not hold.

Targets: the primary is down for at most 5 s whatever the database size (the copy is restored,
recovered and promoted beside the data folder while the primary serves; the swap is a rename);
no failover; drd's peak RSS <= 64 MB. Total time and the standby's re-clone reported.
Needs root (servers run as the postgres OS user) and PostgreSQL 15 in /usr/lib/postgresql/15/bin.
"""
import os, shutil, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(__file__))
from common import Drd, PeakRss, as_pg, free_port, pg_scratch_dir, row

SCALE = int(os.environ.get("DRD_BENCH_PG_SCALE", "70"))
PGBIN = "/usr/lib/postgresql/15/bin"
MiB = 1 << 20


def psql(port, sql, timeout=10):
    return subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/psql", "-X", "-A", "-t", "-h", "127.0.0.1",
                           "-p", str(port), "-d", "postgres", "-c", sql], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PGCONNECT_TIMEOUT": "1"})


class Prober:
    """SELECT 1 on `port` in a loop; the longest time between two answered probes."""

    def __init__(self, port):
        self.port, self.stop, self.last_ok, self.longest = port, threading.Event(), None, 0.0

    def __enter__(self):
        def loop():
            while not self.stop.is_set():
                try:
                    ok = psql(self.port, "SELECT 1", timeout=3).returncode == 0
                except subprocess.TimeoutExpired:
                    ok = False
                now = time.perf_counter()
                if ok:
                    if self.last_ok is not None:
                        self.longest = max(self.longest, now - self.last_ok)
                    self.last_ok = now
                time.sleep(0.02)
        self.th = threading.Thread(target=loop)
        self.th.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.th.join()


def main():
    if os.geteuid() != 0:
        print("| bench_pg_rollback | skipped: needs root | | SKIP |")
        return
    d = pg_scratch_dir("drd-bench-pgrb-")
    data0, data1, p0, p1 = f"{d}/node0", f"{d}/node1", free_port(), free_port()
    drd, servers = None, []
    try:
        as_pg([f"{PGBIN}/initdb", "-D", data0, "-A", "trust", "--no-sync", "-U", "postgres", "--data-checksums"],
              stdout=subprocess.DEVNULL)
        with open(f"{data0}/postgresql.conf", "a") as f:
            f.write(f"\nport = {p0}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{d}'\nfsync = off\n"
                    "max_wal_size = 2GB\nwal_keep_size = 1GB\n")
        as_pg([f"{PGBIN}/pg_ctl", "start", "-w", "-D", data0, "-l", f"{d}/node0.log"], stdout=subprocess.DEVNULL)
        servers.append(data0)
        t0 = time.perf_counter()
        as_pg([f"{PGBIN}/pgbench", "-i", "-q", "-s", str(SCALE), "-h", "127.0.0.1", "-p", str(p0), "postgres"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        init_s = time.perf_counter() - t0
        size = int(psql(p0, "SELECT pg_database_size('postgres')").stdout.strip())
        as_pg([f"{PGBIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(p0), "-U", "postgres", "-D", data1, "-R",
               "-X", "stream", "--checkpoint=fast"], stdout=subprocess.DEVNULL)
        with open(f"{data1}/postgresql.conf", "a") as f:
            f.write(f"\nport = {p1}\n")
        as_pg([f"{PGBIN}/pg_ctl", "start", "-w", "-D", data1, "-l", f"{d}/node1.log"], stdout=subprocess.DEVNULL)
        servers.append(data1)

        key = f"{d}/backup.key"
        with open(key, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(key, 0o600)
        nodes = ""
        for i, (port, data) in enumerate([(p0, data0), (p1, data1)]):
            nodes += f"""    node{i}:
      type: {'primary' if i == 0 else 'secondary'}
      priority: {i}
      url: "postgresql://postgres@127.0.0.1:{port}/postgres"
      data_dir: {data}
      bin_dir: {PGBIN}
      os_user: postgres
"""
        with open(f"{d}/drd.yaml", "w") as f:
            f.write(f"""disaster_recovery:
  state_dir: {d}/state
  databases:
{nodes}  monitoring:
    interval: 200ms
    timeout: 1s
    failure_threshold: 3
  backup:
    enabled: true
    directory: {d}/backups
    compression: {{ algorithm: zstd, level: 3 }}
    encryption: {{ key_file: {key} }}
    retention: {{ keep_last: 100 }}
""")
        drd = Drd(f"{d}/drd.yaml", f"{d}/state", f"{d}/drd.log")
        drd.wait_primary()
        b = drd.drctl("backup")
        # Something to roll back: 5 s of pgbench transactions after the backup.
        as_pg([f"{PGBIN}/pgbench", "-T", "5", "-c", "2", "-h", "127.0.0.1", "-p", str(p0), "postgres"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        history = len(drd.drctl("history"))
        with Prober(p0) as probe, PeakRss(drd.proc.pid) as rss:
            t0 = time.perf_counter()
            r = drd.drctl("restore", b["id"], "--node", "node0", "--force", "--timeout", "1h")
            total_s = time.perf_counter() - t0
            time.sleep(0.5)  # a few probes after the end
        failovers = len(drd.drctl("history")) - history
        standby = r.get("standbys", {}).get("node1", "?")

        label = f"pgbench scale {SCALE}, {size / MiB:.0f} MiB, 1 standby"
        row(f"PostgreSQL primary down during a roll-back to a backup ({label}; pgbench -i took {init_s:.0f} s)",
            f"{probe.longest:.2f} s (longest gap between answered SELECT 1)", "<= 5 s", probe.longest <= 5)
        row("failovers during the roll-back (detection 600 ms)", str(failovers), "0", failovers == 0)
        row("roll-back in all (safety backup, restore + recovery beside, swap, standby re-cloned)",
            f"{total_s:.2f} s, timeline {r.get('previous_timeline')} -> {r.get('timeline')}, node1: {standby}",
            "(reported)", standby == "re-cloned, streaming")
        row("drd peak RSS during the roll-back", f"{rss.peak / 1024:.1f} MB", "<= 64 MB", rss.peak <= 64 * 1024)
    finally:
        if drd:
            drd.close()
        for data in servers:  # the roll-back and re-clone keep these paths
            subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "stop", "-m", "fast", "-D", data],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if os.environ.get("DRD_BENCH_KEEP") != "1":
            shutil.rmtree(d, ignore_errors=True)


main()
