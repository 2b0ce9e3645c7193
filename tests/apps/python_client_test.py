#!/usr/bin/env python3
"""examples/python against a real drd: the Python writer and reader follow the primary.

SQLite: drd with a primary and two standby files (the chaos suite's temp-folder setup, fast
probe profile: interval 100ms x threshold 3), the example writer and reader running through
current_link, then
  (b) a switchover (`drctl switchover secondary1`): every acknowledged row is on secondary1;
  (a) an automatic failover (secondary1's file renamed away): the acknowledged rows missing
      on the new primary are no more than the lag drd reported (lag_bytes / (24+4096) frames).
For both, the writer's gap (last ack before the switch to first ack after) is printed and
must be <= 2 s, and no read that started after the writer's first ack on the new primary may
miss a row acknowledged before it started (a reader still on the fenced file would).

Exit 77 (SKIP_RETURN_CODE) only when python3-sqlalchemy is not installed.
"""
import argparse, os, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXAMPLES = os.path.join(ROOT, "examples", "python")
sys.path.insert(0, os.path.join(ROOT, "tests", "chaos"))

from chaos_common import now_ms, read_acks  # noqa: E402
from sqlite_chaos import PAGE, SqliteTrial  # noqa: E402

MAX_GAP_MS = 2000


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    return 1


class Run:
    def __init__(self, bin_dir, root):
        self.t = SqliteTrial(bin_dir, "python-client", root)
        self.bin = bin_dir
        self.reads = f"{self.t.dir}/reads.txt"
        self.procs = []
        self.errors = []

    def start_clients(self, seconds):
        url = f"sqlite:///{self.t.link}"
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="folder with drd and drctl")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    a = ap.parse_args()
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        print("SKIP: python3-sqlalchemy is not installed (make deps installs it)")
        return 77

    root = tempfile.mkdtemp(prefix="drd-python-client-")
    r = Run(a.bin, root)
    t = r.t
    rc = 0
    try:
        t.drd.start()
        r.start_clients(40)
        r.wait_switch(0, more=150)

        # (b) switchover: planned, nothing may be lost.
        sw_at = now_ms()
        out = subprocess.run([f"{a.bin}/drctl", "--socket", t.drd.socket, "switchover", "secondary1"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"drctl switchover failed ({out.returncode}): {out.stdout}{out.stderr}")
        r.wait_switch(1)
        gap_sw, first_sw = r.gap_ms(1)
        acked = {i for i, _, _ in read_acks(t.acks)}
        missing = sorted(acked - t.ids("secondary1"))
        stale_sw = r.stale_reads(first_sw)
        print(f"switchover: drctl took {now_ms() - sw_at:.0f} ms (incl. waiting); writer gap {gap_sw} ms; "
              f"{len(acked)} acked, {len(missing)} missing on secondary1")
        if missing:
            rc = fail(f"switchover lost {len(missing)} acknowledged rows (first: {missing[:5]})")
        if gap_sw > MAX_GAP_MS:
            rc = fail(f"switchover write gap {gap_sw} ms > {MAX_GAP_MS} ms")

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
        bound = lag // (24 + PAGE)
        print(f"failover: {newest.get('from')}->{newest.get('to', primary)} ({newest.get('reason', '')}); "
              f"writer gap {gap_fo} ms after the fault +{first_fo - fault_at} ms; {len(acks)} acked, {len(lost)} "
              f"missing on {primary}; drd reported lag {lag} bytes = at most {bound} commits")
        if len(lost) > bound:
            rc = fail(f"failover lost {len(lost)} acknowledged rows, drd's reported lag allows {bound}")
        if gap_fo > MAX_GAP_MS:
            rc = fail(f"failover write gap {gap_fo} ms > {MAX_GAP_MS} ms")
        # Reads between the fault and the writer's first ack on the new primary may legitimately
        # miss rows that were acknowledged on the lost file and not shipped (counted above).
        stale = stale_sw + r.stale_reads(first_fo, lost=frozenset(lost))
        nreads = sum(1 for _ in open(r.reads))
        print(f"reader: {nreads} reads, {len(stale)} stale")
        if stale:
            rc = fail(f"{len(stale)} reads missed rows acknowledged before they started "
                      f"(start_ms, max_id seen, max acked): {stale[:5]}")
        if nreads < 100:
            rc = fail(f"the reader made only {nreads} reads")
    except Exception as e:  # noqa: BLE001 - report, keep the folder
        rc = fail(f"{type(e).__name__}: {e}")
    finally:
        r.stop_clients()
        t.close(keep=True)
    if rc == 0 and not a.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"files kept in {root}", file=sys.stderr)
    print("PASS" if rc == 0 else "FAILED")
    return rc


if __name__ == "__main__":
    sys.exit(main())
