"""PostgreSQL backup throughput and memory of drd on a pgbench database (scale DRD_BENCH_PG_SCALE,
default 70 = about 1 GiB), against the shell pipeline
`pg_basebackup -Ft -D - -X fetch | zstd -3 -T0 > F` measured in the same run on the same server.

Targets: drd's backup (zstd 3 + AES-256-GCM) no slower than the pipeline (which does not encrypt);
drd's peak RSS during backup and during restore <= 64 MB. Sizes, restore and verify times reported.
Needs root (the server runs as the postgres OS user) and PostgreSQL 15 in /usr/lib/postgresql/15/bin.
"""
import os, shutil, subprocess, sys, time
sys.path.insert(0, os.path.dirname(__file__))
from common import BIN, Drd, PeakRss, as_pg, free_port, pg_scratch_dir, row, rss_kb

SCALE = int(os.environ.get("DRD_BENCH_PG_SCALE", "70"))
RUNS = int(os.environ.get("DRD_BENCH_PG_RUNS", "2"))
PGBIN = "/usr/lib/postgresql/15/bin"
MiB = 1 << 20


def main():
    if os.geteuid() != 0:
        print("| bench_pg_backup | skipped: needs root | | SKIP |")
        return
    d = pg_scratch_dir("drd-bench-pg-")
    data, port, drd = f"{d}/data", free_port(), None
    started = False
    try:
        as_pg([f"{PGBIN}/initdb", "-D", data, "-A", "trust", "--no-sync", "-U", "postgres"], stdout=subprocess.DEVNULL)
        as_pg([f"{PGBIN}/pg_ctl", "start", "-w", "-D", data, "-l", f"{d}/server.log", "-o",
               f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c max_wal_size=2GB -c fsync=off"],
              stdout=subprocess.DEVNULL)
        started = True
        t0 = time.perf_counter()
        as_pg([f"{PGBIN}/pgbench", "-i", "-q", "-s", str(SCALE), "-h", "127.0.0.1", "-p", str(port), "postgres"],
              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        init_s = time.perf_counter() - t0
        size = int(subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/psql", "-X", "-A", "-t", "-h", "127.0.0.1",
                                   "-p", str(port), "-d", "postgres", "-c", "SELECT sum(pg_database_size(oid)) FROM pg_database"],
                                  check=True, capture_output=True, text=True).stdout.strip())

        # The shell pipeline first; best of RUNS on both sides (a shared 2-core machine is noisy).
        pipe_s, pipe_size = float("inf"), 0
        out = f"{d}/pipe.tar.zst"
        for _ in range(RUNS):
            t0 = time.perf_counter()
            subprocess.run(["runuser", "-u", "postgres", "--", "sh", "-c",
                            f"{PGBIN}/pg_basebackup -h 127.0.0.1 -p {port} -U postgres -Ft -D - -X fetch "
                            f"--checkpoint=fast | zstd -q -3 -T0 > {out}"], check=True)
            pipe_s = min(pipe_s, time.perf_counter() - t0)
            pipe_size = os.path.getsize(out)
            os.remove(out)

        key = f"{d}/backup.key"
        with open(key, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(key, 0o600)
        with open(f"{d}/drd.yaml", "w") as f:
            f.write(f"""disaster_recovery:
  state_dir: {d}/state
  databases:
    primary:
      type: primary
      priority: 0
      url: "postgresql://postgres@127.0.0.1:{port}/postgres"
      data_dir: {data}
      bin_dir: {PGBIN}
      os_user: postgres
  monitoring:
    interval: 1s
    timeout: 2s
  backup:
    enabled: true
    directory: {d}/backups
    compression: {{ algorithm: zstd, level: 3 }}
    encryption: {{ key_file: {key} }}
    retention: {{ keep_last: 100 }}
""")
        drd = Drd(f"{d}/drd.yaml", f"{d}/state", f"{d}/drd.log")
        drctl = drd.drctl
        drd.wait_primary()
        hwm0 = rss_kb(drd.proc.pid, "VmHWM")
        drd_s = float("inf")
        with PeakRss(drd.proc.pid) as backup_rss:
            for _ in range(RUNS):
                t0 = time.perf_counter()
                b = drctl("backup")
                drd_s = min(drd_s, time.perf_counter() - t0)
        with PeakRss(drd.proc.pid) as restore_rss:
            t0 = time.perf_counter()
            drctl("restore", b["id"], "--target", f"{d}/restored")
            restore_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        v = drctl("verify", b["id"])
        verify_s = time.perf_counter() - t0

        label = f"pgbench scale {SCALE}, {size / MiB:.0f} MiB"
        row(f"drd PostgreSQL backup, zstd 3 + AES-256-GCM ({label}; pgbench -i took {init_s:.0f} s)",
            f"{drd_s:.2f} s ({size / MiB / drd_s:.0f} MiB/s)", f"<= pipeline {pipe_s:.2f} s", drd_s <= pipe_s)
        row("pg_basebackup -Ft -D - -X fetch | zstd -3 -T0 (same server, no encryption)", f"{pipe_s:.2f} s",
            "(reference)", True)
        row("drd backup size / pipeline size", f"{b['size_bytes'] / MiB:.1f} MiB / {pipe_size / MiB:.1f} MiB",
            "(reported)", True)
        row("drd peak RSS during PostgreSQL backup", f"{backup_rss.peak / 1024:.1f} MB (idle HWM before: {hwm0 / 1024:.1f} MB)",
            "<= 64 MB", backup_rss.peak <= 64 * 1024)
        row("drd peak RSS during PostgreSQL restore", f"{restore_rss.peak / 1024:.1f} MB", "<= 64 MB",
            restore_rss.peak <= 64 * 1024)
        row("drd restore into a new data folder (decrypt, tar -x, pg_verifybackup)", f"{restore_s:.2f} s", "(reported)", True)
        row("drd verify (checksums, pg_verifybackup, start + query a restored copy)", f"{verify_s:.2f} s, ok={v['ok']}",
            "ok", bool(v["ok"]))
    finally:
        if drd:
            drd.close()
        if started:
            subprocess.run(["runuser", "-u", "postgres", "--", f"{PGBIN}/pg_ctl", "stop", "-m", "fast", "-D", data],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(d, ignore_errors=True)


main()
