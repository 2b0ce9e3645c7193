"""Helpers shared by the benchmark scripts: temp SQLite clusters and a drd process."""
import os, shutil, socket, sqlite3, subprocess, tempfile, time, json

BIN = os.environ.get("DRD_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "bin"))


def row(name, value, target, ok):
    print(f"| {name} | {value} | {target} | {'ok' if ok else 'MISSED'} |", flush=True)


def free_port():
    """A loopback port free at this moment (the caller binds it soon after)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def make_db(path, rows=1000):
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS images (id INTEGER PRIMARY KEY, url TEXT, sha256 TEXT, size INTEGER, path TEXT, crawled_at TEXT)")
    db.executemany("INSERT INTO images (url, sha256, size, path, crawled_at) VALUES (?,?,?,?,datetime('now'))",
                   [(f"http://example.test/{i}.jpg", "%064x" % i, i, f"/img/{i}") for i in range(rows)])
    db.commit()
    db.close()


class Cluster:
    """A primary and N standby SQLite files plus a running drd."""

    def __init__(self, standbys=2, interval="1s", timeout="1s", threshold=3, extra=""):
        self.dir = tempfile.mkdtemp(prefix="drd-bench-")
        os.makedirs(f"{self.dir}/data")
        make_db(f"{self.dir}/data/primary.db")
        names = ["primary"] + [f"secondary{i}" for i in range(1, standbys + 1)]
        for n in names[1:]:
            shutil.copy(f"{self.dir}/data/primary.db", f"{self.dir}/data/{n}.db")
        cfg = ["disaster_recovery:", "  state_dir: ./state", "  current_link: ./data/current.db", "  databases:"]
        for i, n in enumerate(names):
            cfg += [f"    {n}:", f"      type: {'primary' if i == 0 else 'secondary'}", f"      priority: {i}",
                    f"      url: \"sqlite:///data/{n}.db\""]
        cfg += ["  monitoring:", f"    interval: {interval}", f"    timeout: {timeout}", f"    failure_threshold: {threshold}"]
        with open(f"{self.dir}/drd.yaml", "w") as f:
            f.write("\n".join(cfg) + "\n" + extra)
        self.socket = f"{self.dir}/state/drd.sock"
        self.log = open(f"{self.dir}/drd.log", "w")
        self.proc = subprocess.Popen([f"{BIN}/drd", "--config", f"{self.dir}/drd.yaml", "--foreground"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                self.call("ping")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("drd did not start; see " + self.log.name)

    def call(self, method, params=None):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.socket)
        s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode() + b"\n")
        line = s.makefile().readline()
        s.close()
        return json.loads(line)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def percentile(values, q):
    v = sorted(values)
    if not v:
        return 0.0
    k = max(0, min(len(v) - 1, int(round(q * len(v) + 0.5)) - 1))
    return v[k]


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakRss:
    """Samples a process's RSS every 10 ms while a block runs."""

    def __init__(self, pid):
        import threading
        self.pid, self.peak, self.stop = pid, rss_kb(pid, "VmRSS"), threading.Event()

    def __enter__(self):
        import threading

        def sample():
            while not self.stop.is_set():
                try:
                    self.peak = max(self.peak, rss_kb(self.pid, "VmRSS"))
                except OSError:
                    return
                time.sleep(0.01)
        self.th = threading.Thread(target=sample)
        self.th.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.th.join()


class Drd:
    """drd started on `config` (state in `state_dir`), driven with drctl --json."""

    def __init__(self, config, state_dir, log_path):
        self.sock = f"{state_dir}/drd.sock"
        self.log = open(log_path, "w")
        self.log_path = log_path
        self.proc = subprocess.Popen([f"{BIN}/drd", "--config", config, "--foreground"], stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def drctl(self, *args):
        r = subprocess.run([f"{BIN}/drctl", "--socket", self.sock, *args, "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"drctl {' '.join(args)} failed: {r.stderr.strip()}")
        return json.loads(r.stdout)

    def wait_primary(self, seconds=30):
        deadline = time.time() + seconds
        while True:
            try:
                if self.drctl("status")["primary"]:
                    return
            except (RuntimeError, json.JSONDecodeError):
                pass
            if time.time() > deadline:
                raise RuntimeError(f"drd did not settle; see {self.log_path}")
            time.sleep(0.2)

    def close(self):
        self.proc.terminate()
        self.proc.wait(20)
        self.log.close()


def as_pg(cmd, **kw):
    """Runs `cmd` as the postgres OS user (check=True)."""
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, **kw)


def pg_scratch_dir(prefix):
    """A new temp folder owned by the postgres OS user, open to read for others (sockets, logs)."""
    import pwd
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    pw = pwd.getpwnam("postgres")
    os.chown(d, pw.pw_uid, pw.pw_gid)
    return d
