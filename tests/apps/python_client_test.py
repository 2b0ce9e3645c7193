#!/usr/bin/env python3
"""examples/python against a real drd: the Python writer and reader follow the primary.

SQLite (--engine sqlite): drd with a primary and two standby files (the chaos suite's temp-folder setup, fast
probe profile: interval 100ms x threshold 3), the example writer and reader running through
current_link, then
  (b) a switchover (`drctl switchover secondary1`): every acknowledged row is on secondary1;
  (a) an automatic failover (secondary1's file renamed away): the acknowledged rows missing
      on the new primary are no more than the lag drd reported (lag_bytes / (24+4096) frames).
For both, the writer's gap (last ack before the switch to first ack after) is printed and
must be <= 2 s, and no read that started after the writer's first ack on the new primary may
miss a row acknowledged before it started (a reader still on the fenced file would).

PostgreSQL (--engine pg): the same with three PostgreSQL 15 servers (the chaos suite's PgTrial,
probe interval 100ms), the clients on a libpq multi-host URI; (b) `drctl switchover node1`,
(a) node1 killed (SIGKILL); the loss bound is the chaos suite's (lag / 64 bytes per commit, commits
acknowledged after drd's last good probe counted apart); the gap limit is 3 s.

Exit 77 (SKIP_RETURN_CODE) when python3-sqlalchemy (or, for pg, python3-psycopg2) is not installed,
or for pg when not root (servers run as the postgres user).
"""
import argparse, os, shutil, signal, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(ROOT, "examples", "python")
sys.path.insert(0, os.path.join(ROOT, "tests", "chaos"))

from chaos_common import now_ms, read_acks  # noqa: E402
from sqlite_chaos import PAGE, SqliteTrial  # noqa: E402

MAX_GAP_MS = 2000
# PostgreSQL: detection (3 x 100 ms) plus fencing, promotion and libpq trying each host.
MAX_GAP_MS_PG = 3000
NODES_PG = ["node0", "node1", "node2"]


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    return 1


class Run:
    def __init__(self, trial, url):
        self.t, self.url = trial, url
        self.t.acks = f"{self.t.dir}/acks.txt"
        self.reads = f"{self.t.dir}/reads.txt"
        self.procs = []

    def start_clients(self, seconds):
        url = self.url
        env = dict(os.environ, PYTHONPATH=EXAMPLES)
        for args, log in ((["crawler_writer.py", "--rate", "200", "--ack", self.t.acks, "--start-id", "1000000"], "writer"),
                          (["crawler_reader.py", "--interval", "0.01", "--log", self.reads], "reader")):
            out = open(f"{self.t.dir}/{log}.log", "w")
            self.procs.append(subprocess.Popen([sys.executable, os.path.join(EXAMPLES, args[0]), "--db", url,
                                                "--duration", str(seconds)] + args[1:], stdout=out, stderr=out, env=env))

    def stop_clients(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
            p.wait(10)

    def clients_alive(self):
        for p, name in zip(self.procs, ("writer", "reader")):
            if p.poll() is not None:
                with open(f"{self.t.dir}/{name}.log") as f:
                    raise RuntimeError(f"the {name} exited with {p.returncode}:\n{f.read()[-3000:]}")

    def wait_switch(self, switches, more=100, timeout=15):
        """Waits for `more` acks after the writer's switch number `switches`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.clients_alive()
            if sum(1 for _, _, s in read_acks(self.t.acks) if int(s) >= switches) >= more:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the writer did not reach switch {switches} (+{more} acks) within {timeout} s")

    def gap_ms(self, switches):
        acks = read_acks(self.t.acks)
        before = max(ms for _, ms, s in acks if int(s) == switches - 1)
        after = min(ms for _, ms, s in acks if int(s) == switches)
        return after - before, after

    def stale_reads(self, since_ms, until_ms=None, lost=frozenset()):
        """Reads started in [since_ms, until_ms) that missed a row acknowledged before they began."""
        acks = sorted((ms, i) for i, ms, _ in read_acks(self.t.acks) if i not in lost)
        bad = []
        with open(self.reads) as f:
            for line in f:
                p = line.split()
                if len(p) != 5:
                    continue
                start, max_id = int(p[0]), int(p[2])
                if start < since_ms or (until_ms is not None and start >= until_ms):
                    continue
                acked = max((i for ms, i in acks if ms < start), default=0)
                if max_id < acked:
                    bad.append((start, max_id, acked))
        return bad


def check_gap(name, gap, limit):
    print(f"{name}: writer gap {gap} ms (limit {limit} ms)")
    return fail(f"{name} write gap {gap} ms > {limit} ms") if gap > limit else 0


def check_reads(r, stale):
    nreads = sum(1 for _ in open(r.reads))
    print(f"reader: {nreads} reads, {len(stale)} stale")
    if stale:
        return fail(f"{len(stale)} reads missed rows acknowledged before they started "
                    f"(start_ms, max_id seen, max acked): {stale[:5]}")
    if nreads < 100:
        return fail(f"the reader made only {nreads} reads")
    return 0


def switchover(bin_dir, t, node):
    """A planned switchover through drctl, as an operator runs it."""
    out = subprocess.run([f"{bin_dir}/drctl", "--socket", t.drd.socket, "switchover", node],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"drctl switchover failed ({out.returncode}): {out.stdout}{out.stderr}")


def run_sqlite(bin_dir, root):
    t = SqliteTrial(bin_dir, "python-client", root)
    r = Run(t, f"sqlite:///{t.link}")
    rc = 0
    try:
        t.drd.start()
        r.start_clients(40)
        r.wait_switch(0, more=150)

        # (b) switchover: planned, nothing may be lost.
        switchover(bin_dir, t, "secondary1")
        r.wait_switch(1)
        gap_sw, first_sw = r.gap_ms(1)
        acked = {i for i, _, _ in read_acks(t.acks)}
        missing = sorted(acked - t.ids("secondary1"))
        stale_sw = r.stale_reads(first_sw)
        print(f"switchover: {len(acked)} acked, {len(missing)} missing on secondary1")
        if missing:
            rc = fail(f"switchover lost {len(missing)} acknowledged rows (first: {missing[:5]})")
        rc = check_gap("switchover", gap_sw, MAX_GAP_MS) or rc

        # (a) failover: the primary's file renamed away; drd must notice and fail over alone.
        fault_at = now_ms()
        os.rename(t.path("secondary1"), t.path("secondary1") + ".away")
        r.wait_switch(2)
        gap_fo, first_fo = r.gap_ms(2)
        time.sleep(0.5)  # a few reads on the new primary
        r.clients_alive()
        r.stop_clients()
        primary = t.primary()
        if os.path.realpath(t.link) != os.path.realpath(t.path(primary)):
            rc = fail(f"current_link points at {os.path.realpath(t.link)}, drd names {primary}")
        acks = read_acks(t.acks)
        present = t.ids(primary)
        lost = {i for i, _, _ in acks if i not in present}
        hist = t.drd.call("history").get("result", [])
        newest = hist[0] if hist else {}
        lag = int(newest.get("lag_bytes", 0))
        bound = lag // (24 + PAGE)  # every lost commit is at least one WAL frame the standby lacked
        print(f"failover: {newest.get('from')}->{newest.get('to', primary)} ({newest.get('reason', '')}); "
              f"first ack on the new primary {first_fo - fault_at:.0f} ms after the fault; {len(acks)} acked, "
              f"{len(lost)} missing on {primary}; drd reported lag {lag} bytes = at most {bound} commits")
        if len(lost) > bound:
            rc = fail(f"failover lost {len(lost)} acknowledged rows, drd's reported lag allows {bound}")
        rc = check_gap("failover", gap_fo, MAX_GAP_MS) or rc
        # Reads between the fault and the writer's first ack on the new primary may legitimately
        # miss rows that were acknowledged on the lost file and not shipped (counted above).
        rc = check_reads(r, stale_sw + r.stale_reads(first_fo, lost=frozenset(lost))) or rc
    except Exception as e:  # noqa: BLE001 - report, keep the folder
        rc = fail(f"{type(e).__name__}: {e}")
    finally:
        r.stop_clients()
        t.close(keep=True)
    return rc


PG_TABLE = ("CREATE TABLE images (id bigint PRIMARY KEY, url text, sha256 text, size bigint, path text, "
            "crawled_at timestamptz)")


def run_pg(bin_dir, root):
    if os.geteuid() != 0:
        print("SKIP: the PostgreSQL part starts servers as the postgres user and needs root")
        return 77
    from pg_chaos import MIN_WAL_PER_COMMIT, PgEnv, PgTrial, last_ok_probe_ms, signal_tree
    env = PgEnv(root)
    # k=1: an asynchronous standby (PgTrial alternates), so the failover's loss bound is drd's lag.
    t = PgTrial(bin_dir, "kill9", env, 1)
    rc = 0
    try:
        # The fast probe profile (PgTrial's own is 200ms).
        cfg = open(t.drd.config).read().replace("interval: 200ms", "interval: 100ms")
        open(t.drd.config, "w").write(cfg)
        if t.psql(0, PG_TABLE) is None:
            raise RuntimeError("cannot create the images table on node0")
        hosts = ",".join(f"127.0.0.1:{p}" for p in t.ports)
        r = Run(t, f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write&connect_timeout=1")
        t.drd.start()
        r.start_clients(45)
        r.wait_switch(0, more=150)

        switchover(bin_dir, t, "node1")
        r.wait_switch(1)
        gap_sw, first_sw = r.gap_ms(1)
        acked = {i for i, _, _ in read_acks(t.acks)}
        present = {int(x) for x in (t.psql(1, "SELECT id FROM images", timeout=30) or "").split()}
        missing = sorted(acked - present)
        stale_sw = r.stale_reads(first_sw)
        print(f"switchover: {len(acked)} acked, {len(missing)} missing on node1")
        if missing:
            rc = fail(f"switchover lost {len(missing)} acknowledged rows (first: {missing[:5]})")
        rc = check_gap("switchover", gap_sw, MAX_GAP_MS) or rc

        fault_at = now_ms()
        signal_tree(t.postmaster(1), signal.SIGKILL)
        r.wait_switch(2, timeout=30)
        gap_fo, first_fo = r.gap_ms(2)
        time.sleep(0.5)
        r.clients_alive()
        r.stop_clients()
        t.settle()
        primary = t.primary()
        acks = read_acks(t.acks)
        present = {int(x) for x in (t.psql(NODES_PG.index(primary), "SELECT id FROM images", timeout=30) or "").split()}
        lost = [i for i, _, _ in acks if i not in present]
        hist = t.drd.call("history").get("result", [])
        newest = hist[0] if hist else {}
        lag = int(newest.get("lag_bytes", 0))
        # As the chaos suite: commits acknowledged after drd's last good probe of the old primary
        # are beyond any lag it could have reported; the rest must fit in the reported lag.
        last_ok = last_ok_probe_ms(t.state_db, "node1")
        by_id = {i: ms for i, ms, _ in acks}
        counted = [i for i in lost if last_ok is None or by_id[i] <= last_ok]
        bound = lag // MIN_WAL_PER_COMMIT
        print(f"failover: node1->{primary}; first ack on the new primary {first_fo - fault_at:.0f} ms after the kill; "
              f"{len(acks)} acked, {len(lost)} missing ({len(counted)} before drd's last good probe); "
              f"drd reported lag {lag} bytes = at most {bound} commits")
        if len(counted) > bound:
            rc = fail(f"failover lost {len(counted)} acknowledged rows, drd's reported lag allows {bound}")
        rc = check_gap("failover", gap_fo, MAX_GAP_MS_PG) or rc
        rc = check_reads(r, stale_sw + r.stale_reads(first_fo, lost=frozenset(lost))) or rc
    except Exception as e:  # noqa: BLE001 - report, keep the folder
        rc = fail(f"{type(e).__name__}: {e}")
    finally:
        try:
            r.stop_clients()
        except NameError:
            pass
        t.close(keep=True)
    if rc == 0:
        env.close()
    return rc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="folder with drd and drctl")
    ap.add_argument("--engine", choices=["sqlite", "pg"], default="sqlite")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    a = ap.parse_args()
    try:
        import sqlalchemy  # noqa: F401
        if a.engine == "pg":
            import psycopg2  # noqa: F401
    except ImportError as e:
        print(f"SKIP: {e.name} is not installed (make deps installs python3-sqlalchemy, python3-psycopg2)")
        return 77
    root = tempfile.mkdtemp(prefix=f"drd-python-client-{a.engine}-")
    os.chmod(root, 0o755)
    rc = (run_sqlite if a.engine == "sqlite" else run_pg)(a.bin, root)
    if rc == 0 and not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    elif rc != 77:
        print(f"files kept in {root}", file=sys.stderr)
    print({0: "PASS", 77: "SKIPPED"}.get(rc, "FAILED"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
