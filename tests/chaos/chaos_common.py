"""Shared pieces of the chaos suite: drd as a child process, JSON-RPC, the clock-step hook,
and the part of the independent observer that reads drd's files (state store, catalog).

Nothing here asks drd whether drd is right: the observer reads the databases, the files
and the kernel's lock table itself. drd's own answers are used only to learn what drd
claims (the primary it names, the lag it reported), which is then checked.
"""
import json, os, random, signal, socket, sqlite3, subprocess, threading, time

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def now_ms():
    return time.time() * 1000.0


class Violations:
    """Thread-safe list of broken invariants (kind, detail) for one trial."""

    def __init__(self):
        self.mu = threading.Lock()
        self.items = []

    def add(self, kind, detail):
        with self.mu:
            if len(self.items) < 50:
                self.items.append((kind, detail))

    def kinds(self):
        with self.mu:
            return [k for k, _ in self.items]


class Drd:
    """One drd process on a config file; restartable; optionally under libfaketime.

    Clock steps: drd is started with libfaketime preloaded, reading its offset from a file
    on every call (FAKETIME_NO_CACHE) and leaving CLOCK_MONOTONIC alone
    (FAKETIME_DONT_FAKE_MONOTONIC), which is what a real step of the system clock does.
    The real clock is never touched: the machine is shared.
    """

    def __init__(self, bin_dir, config, socket_path, log_path, faketime_file=None, argv_prefix=None):
        self.bin_dir, self.config, self.socket, self.log_path = bin_dir, config, socket_path, log_path
        self.faketime_file = faketime_file
        self.argv_prefix = argv_prefix or []  # e.g. ["ip", "netns", "exec", NS]: drd on a cut-off "host"
        self.proc = None
        self.starts = 0
        self.up = False  # started and answered: its fences are in place (attach runs before "ready")
        self.down = []  # [start_ms, end_ms] intervals in which drd was killed / not yet ready again

    def start(self, wait_primary=True, timeout=30):
        self.up = False
        env = dict(os.environ)
        if self.faketime_file:
            env.update(LD_PRELOAD=FAKETIME_LIB, FAKETIME_TIMESTAMP_FILE=self.faketime_file, FAKETIME_NO_CACHE="1",
                       FAKETIME_DONT_FAKE_MONOTONIC="1", FAKETIME_DONT_RESET="1",
                       # A real step of the clock leaves file times alone; libfaketime would shift
                       # every stat() result, and drd recognises the standby files it wrote by them.
                       NO_FAKE_STAT="1")
            # A sanitizer build wants its runtime first; libfaketime only wraps clock calls.
            env["ASAN_OPTIONS"] = ":".join(x for x in (env.get("ASAN_OPTIONS"), "verify_asan_link_order=0") if x)
        log = open(self.log_path, "a")
        log.write(f"\n==== chaos: drd start #{self.starts + 1} at {time.strftime('%H:%M:%S')} ====\n")
        log.flush()
        self.proc = subprocess.Popen(self.argv_prefix + [f"{self.bin_dir}/drd", "--config", self.config, "--foreground"],
                                     stdout=log,
                                     stderr=subprocess.STDOUT, env=env)
        log.close()
        self.starts += 1
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"drd exited with {self.proc.returncode} at start; see {self.log_path}")
            try:
                r = self.call("status", timeout=2)
                if not wait_primary or r.get("result", {}).get("primary"):
                    self.up = True
                    if self.down and self.down[-1][1] is None:
                        self.down[-1][1] = now_ms()
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"drd did not answer within {timeout} s; see {self.log_path}")

    @property
    def pid(self):
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def call(self, method, params=None, timeout=30):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        try:
            s.connect(self.socket)
            s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode() + b"\n")
            line = s.makefile().readline()
        finally:
            s.close()
        if not line:
            raise OSError(f"drd closed the connection on {method}")
        return json.loads(line)

    def call_async(self, method, params=None):
        """Sends a request and returns at once (the reply is read by a thread and dropped)."""
        def run():
            try:
                self.call(method, params, timeout=60)
            except (OSError, ValueError):
                pass
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def kill9(self):
        self.up = False
        self.down.append([now_ms(), None])
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        self.up = False
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def set_clock_offset(path, seconds):
    """libfaketime offset file: '+N' / '-N' seconds relative to the real clock."""
    with open(path + ".tmp", "w") as f:
        f.write(f"{'+' if seconds >= 0 else '-'}{abs(int(seconds))}\n")
    os.replace(path + ".tmp", path)


def while_down(drd, ms, slack_ms=100):
    """Whether a moment falls in a window in which drd was not running (plus a writer's busy
    wait of slack: a commit blocked by the fence went through when the kill released it)."""
    return any(a - slack_ms <= ms <= (b if b is not None else float("inf")) + slack_ms for a, b in drd.down)


def history(drd):
    return drd.call("history", {"limit": 50}).get("result", [])


def check_store(state_db, node_names, violations, claimed_primary=None, prev=None):
    """Reads drd's state store read-only and checks it: the primary is a configured node and
    not fenced, the term never decreases, history terms are increasing and each entry names
    configured nodes, and the newest entry's target is the primary. Returns the snapshot
    (used as `prev` on the next call)."""
    try:
        con = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=1)
        try:
            primary, term = con.execute("SELECT primary_node, term FROM cluster WHERE id = 1").fetchone()
            fenced = {r[0] for r in con.execute("SELECT node FROM fenced")}
            hist = con.execute("SELECT from_node, to_node, term, mode FROM history ORDER BY id").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        if "locked" in str(e) or "busy" in str(e):
            return prev
        violations.add("store", f"cannot read {state_db}: {e}")
        return prev
    snap = {"primary": primary, "term": term, "history": len(hist)}
    if primary and primary not in node_names:
        violations.add("store", f"primary_node '{primary}' is not a configured node")
    if primary and primary in fenced:
        violations.add("store", f"primary '{primary}' is also in the fenced table")
    if prev and term < prev["term"]:
        violations.add("store", f"term went back from {prev['term']} to {term}")
    if prev and len(hist) < prev["history"]:
        violations.add("store", f"history shrank from {prev['history']} to {len(hist)} entries")
    last = 0
    for f, t, hterm, mode in hist:
        if t not in node_names or (f and f not in node_names):
            violations.add("store", f"history entry {f}->{t} names an unknown node")
        if hterm <= last and mode != "switchover":
            violations.add("store", f"history terms not increasing: {hterm} after {last}")
        last = max(last, hterm)
    if hist and primary and hist[-1][1] != primary and hist[-1][2] >= term:
        violations.add("store", f"newest history entry points at {hist[-1][1]} but the store's primary is {primary}")
    if claimed_primary and primary and claimed_primary != primary:
        # drd answers from memory; the store is written first, so a difference is only legal
        # in the instant between the two: re-read before calling it a violation.
        snap["claimed_mismatch"] = (claimed_primary, primary)
    return snap


def check_catalog(state_db, backup_dir, violations):
    """The backup catalog against the backup folder: every entry's file exists with the
    recorded size, and no finished backup file is missing from the catalog (partials are
    allowed only while drd is not running a backup; the caller decides when to look)."""
    try:
        con = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=1)
        try:
            rows = con.execute("SELECT id, directory, data_file, size_bytes FROM backups").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        if "no such table" in str(e):
            return 0, set()
        if "locked" not in str(e) and "busy" not in str(e):
            violations.add("catalog", f"cannot read the catalog in {state_db}: {e}")
        return 0, set()
    listed = set()
    for bid, d, data_file, size in rows:
        p = data_file if os.path.isabs(data_file) else os.path.join(d, data_file)
        listed.add(os.path.realpath(p))
        try:
            st = os.stat(p)
        except OSError:
            violations.add("catalog", f"backup {bid} is in the catalog but {p} does not exist")
            continue
        if st.st_size != size:
            violations.add("catalog", f"backup {bid}: {p} has {st.st_size} bytes, the catalog says {size}")
    return len(rows), listed


def orphan_backups(backup_dir, listed):
    """Finished backup data files (*.drdbk) in the folder that the catalog does not list."""
    out = []
    for root, _, files in os.walk(backup_dir):
        for f in files:
            if f.endswith(".drdbk") and os.path.realpath(os.path.join(root, f)) not in listed:
                out.append(os.path.join(root, f))
    return out


def random_delay(lo, hi):
    time.sleep(random.uniform(lo, hi))


def read_acks(path, cols=3):
    out = []
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) == cols:
                    try:
                        out.append((int(p[0]), int(p[1]), p[2]))
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


SIG = {"SIGKILL": signal.SIGKILL, "SIGSTOP": signal.SIGSTOP, "SIGCONT": signal.SIGCONT}
