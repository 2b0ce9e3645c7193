"""Backup throughput and memory of drd on a SQLite primary of DRD_BENCH_BACKUP_MB MiB (default 256)
of image-metadata rows, against the shell pipeline `sqlite3 DB ".backup F"` + `zstd -3 -T0 F`
measured in the same run on the same file.

Targets: drd's backup (zstd 3, AES-256-GCM) no slower than the pipeline (which does not encrypt);
drd's peak RSS while backing up and while restoring <= 64 MB. Restore time (against `zstd -d`
of the pipeline's file) and sizes are reported, and the incremental part: WAL archived after
the full backup while ~DRD_BENCH_BACKUP_CHURN_MB MiB of rows are updated, and the time of a
point-in-time restore (full + segments) to the last write.

The issue's size is 1 GiB: DRD_BENCH_BACKUP_MB=1024 make bench (the default, 256, keeps
`make bench` short).
"""
import json, os, shutil, socket, sqlite3, subprocess, sys, tempfile, threading, time
sys.path.insert(0, os.path.dirname(__file__))
from common import BIN, row, rss_kb

MB = int(os.environ.get("DRD_BENCH_BACKUP_MB", "256"))
RUNS = int(os.environ.get("DRD_BENCH_BACKUP_RUNS", "2"))
CHURN_MB = int(os.environ.get("DRD_BENCH_BACKUP_CHURN_MB", "32"))
MiB = 1 << 20


def make_big_db(path, mib):
    """Image-metadata rows (url, sha256, size, path, time) until the file holds `mib` MiB."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE images (id INTEGER PRIMARY KEY, url TEXT, sha256 TEXT, size INTEGER, path TEXT, crawled_at TEXT)")
    i = 0
    batch = 50_000
    while True:
        rows = [(f"https://cdn{n % 17}.example.test/images/{n // 1000}/{n:09d}-{(n * 2654435761) % 10**8:08d}.jpg",
                 os.urandom(32).hex(), (n * 7919) % 5_000_000, f"/srv/img/{n % 4096:04x}/{n:09d}.jpg",
                 f"2026-11-{1 + n % 28:02d} {n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d}")
                for n in range(i, i + batch)]
        db.executemany("INSERT INTO images VALUES (NULL,?,?,?,?,?)", rows)
        db.commit()
        i += batch
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if os.path.getsize(path) >= mib * MiB:
            break
    db.close()
    return i


class Drd:
    def __init__(self, d):
        self.dir = d
        key = f"{d}/backup.key"
        with open(key, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(key, 0o600)
        cfg = f"""disaster_recovery:
  state_dir: ./state
  current_link: ./data/current.db
  databases:
    primary:
      type: primary
      priority: 0
      url: "sqlite:///data/primary.db"
  monitoring:
    interval: 1s
    timeout: 2s
  backup:
    enabled: true
    directory: ./backups
    compression: {{ algorithm: zstd, level: 3 }}
    encryption: {{ key_file: ./backup.key }}
    retention: {{ keep_last: 100 }}
    incremental: {{ segment_size: 16MB, segment_interval: 1s }}
"""
        with open(f"{d}/drd.yaml", "w") as f:
            f.write(cfg)
        self.socket = f"{d}/state/drd.sock"
        self.log = open(f"{d}/drd.log", "w")
        self.proc = subprocess.Popen([f"{BIN}/drd", "--config", f"{d}/drd.yaml", "--foreground"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.socket)
                s.close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("drd did not start; see " + self.log.name)

    def drctl(self, *args):
        r = subprocess.run([f"{BIN}/drctl", "--socket", self.socket, *args, "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"drctl {' '.join(args)} failed: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


def main():
    d = tempfile.mkdtemp(prefix="drd-bench-backup-")
    drd = None
    try:
        os.makedirs(f"{d}/data")
        db = f"{d}/data/primary.db"
        rows = make_big_db(db, MB)
        src_bytes = os.path.getsize(db)

        # The shell pipeline first, so both read a warm page cache.
        # Best of RUNS for both sides: a shared 2-core machine is noisy.
        snap = f"{d}/pipe.db"
        pipe_s = float("inf")
        for _ in range(RUNS):
            t0 = time.perf_counter()
            subprocess.run(["sqlite3", db, f".backup {snap}"], check=True)
            subprocess.run(["zstd", "-q", "-3", "-T0", "-f", snap, "-o", snap + ".zst"], check=True)
            os.remove(snap)
            pipe_s = min(pipe_s, time.perf_counter() - t0)
            pipe_size = os.path.getsize(snap + ".zst")
        t0 = time.perf_counter()
        subprocess.run(["zstd", "-q", "-d", "-T0", "-f", snap + ".zst", "-o", f"{d}/pipe-restored.db"], check=True)
        pipe_restore_s = time.perf_counter() - t0
        os.remove(snap + ".zst")
        os.remove(f"{d}/pipe-restored.db")

        drd = Drd(d)
        pid = drd.proc.pid
        time.sleep(1.0)  # first probe round and replication attach
        hwm_before = rss_kb(pid, "VmHWM")
        peak = [rss_kb(pid, "VmRSS")]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak[0] = max(peak[0], rss_kb(pid, "VmRSS"))
                except OSError:
                    return
                time.sleep(0.01)

        th = threading.Thread(target=sample)
        th.start()
        drd_s = float("inf")
        for _ in range(RUNS):
            t0 = time.perf_counter()
            b = drd.drctl("backup")
            drd_s = min(drd_s, time.perf_counter() - t0)
        hwm_after = rss_kb(pid, "VmHWM")
        peak_kb = max(peak[0], hwm_after if hwm_after > hwm_before else 0)

        peak[0] = rss_kb(pid, "VmRSS")
        t0 = time.perf_counter()
        drd.drctl("restore", b["id"], "--target", f"{d}/restored.db")
        restore_s = time.perf_counter() - t0
        restore_peak_kb = max(peak[0], rss_kb(pid, "VmHWM") if rss_kb(pid, "VmHWM") > hwm_after else 0)
        os.remove(f"{d}/restored.db")

        t0 = time.perf_counter()
        v = drd.drctl("verify", b["id"])
        verify_s = time.perf_counter() - t0

        # Incremental: rows rewritten after the full backup are archived as WAL segments.
        peak[0] = rss_kb(pid, "VmRSS")
        conn = sqlite3.connect(db, timeout=30)
        per_tx = 2000
        txs = max(1, CHURN_MB * MiB // (per_tx * 250))  # ~250 B per rewritten row and index entry
        for t in range(txs):
            lo = (t * 7919 * per_tx) % max(1, rows - per_tx)
            conn.execute("UPDATE images SET size = size + 1, crawled_at = ? WHERE id BETWEEN ? AND ?",
                         (f"churn {t}", lo, lo + per_tx - 1))
            conn.commit()
        conn.close()
        # The last commit's time, in the catalog's format (UTC, ms): the window must reach it.
        # (Asking for one second past it, as before, waited for a segment cut after a time no
        # write came: at 1 GiB the 120 s wait ran out.)
        last = time.time()
        end = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(last)) + f".{int(last * 1000) % 1000:03d}Z"
        deadline = time.time() + 120
        window, seg_bytes, seg_count = None, 0, 0
        while time.time() < deadline:
            cat = drd.drctl("backups", "--segments")
            full = next(x for x in cat if x["id"] == b["id"])
            window = full.get("restorable")
            if window and window["to"] >= end:
                segs = [x for x in cat if x.get("parent") == b["id"] and x.get("content") == "sqlite-wal"]
                seg_bytes = sum(x["size_bytes"] for x in segs)
                seg_raw = sum(x["source_bytes"] for x in segs)
                seg_count = len(segs)
                break
            time.sleep(0.5)
        stop.set()
        th.join()
        pitr_s = None
        if seg_count:
            t0 = time.perf_counter()
            r = drd.drctl("restore", b["id"], "--target", f"{d}/pitr.db", "--to-time", window["to"])
            pitr_s = time.perf_counter() - t0
            ok_rows = sqlite3.connect(f"{d}/pitr.db").execute("SELECT count(*) FROM images WHERE crawled_at = ?",
                                                               (f"churn {txs - 1}",)).fetchone()[0] > 0
        incr_peak_kb = peak[0]

        label = f"{src_bytes / MiB:.0f} MiB, {rows} rows"
        row(f"drd backup, zstd 3 + AES-256-GCM ({label})", f"{drd_s:.2f} s ({src_bytes / MiB / drd_s:.0f} MiB/s)",
            f"<= pipeline {pipe_s:.2f} s", drd_s <= pipe_s)
        row("sqlite3 .backup + zstd -3 -T0 (same file, no encryption)", f"{pipe_s:.2f} s", "(reference)", True)
        row("drd backup size / pipeline size", f"{b['size_bytes'] / MiB:.1f} MiB / {pipe_size / MiB:.1f} MiB",
            "(reported)", True)
        row("drd peak RSS during backup", f"{peak_kb / 1024:.1f} MB (before: {hwm_before / 1024:.1f} MB)",
            "<= 64 MB", peak_kb <= 64 * 1024)
        row("drd restore into a new file (decrypt, decompress, integrity_check)", f"{restore_s:.2f} s",
            f"(zstd -d of the pipeline's file: {pipe_restore_s:.2f} s)", True)
        row("drd peak RSS during restore", f"{restore_peak_kb / 1024:.1f} MB", "<= 64 MB", restore_peak_kb <= 64 * 1024)
        if seg_count:
            row(f"WAL archived after the full ({txs} transactions rewriting {txs * per_tx} rows)",
                f"{seg_count} segments, {seg_raw / MiB:.1f} MiB of frames -> {seg_bytes / MiB:.1f} MiB", "(reported)", True)
            row("point-in-time restore to the last write (full + segments)", f"{pitr_s:.2f} s, last write present={ok_rows}",
                "last write present", ok_rows)
            row("drd peak RSS while archiving WAL", f"{incr_peak_kb / 1024:.1f} MB", "<= 64 MB", incr_peak_kb <= 64 * 1024)
        else:
            row("WAL archived after the full", "no segment reached the last write within 120 s", "segments", False)
        row("drd verify (checksums + test restore)", f"{verify_s:.2f} s, ok={v['ok']}", "ok", bool(v["ok"]))
    finally:
        if drd:
            drd.close()
        shutil.rmtree(d, ignore_errors=True)


main()
