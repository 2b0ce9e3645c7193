"""Multi-host mode (docs/multi-host.md): three drd on a real 3-member etcd cluster.

- leader handover: kill -9 the leading drd -> another drd reports that it leads;
- host-loss failover: kill -9 the primary's drd and move its SQLite file away (its "host"
  is gone) -> etcd names another primary; against the single-host mode in the same run
  (one drd, same probes: interval 100 ms x threshold 3, file moved away -> new primary).
- PostgreSQL host loss: three real PostgreSQL 15 servers (primary + 2 streaming
  standbys), one drd per "host" (local: nI, the same databases list everywhere); kill -9
  the primary's drd and its server's whole process tree -> a standby takes writes
  (pg_is_in_recovery() false on it, polled every 20 ms); against one single-host drd with
  the same probes (interval 100 ms, timeout 300 ms, threshold 3) in the same run.
Target (issue #9): host-loss failover p99 <= TTL + 1 s with TTL 3 s.
Trials: DRD_BENCH_ETCD_TRIALS (default 10), DRD_BENCH_ETCD_PG_TRIALS (default 5), a fresh
cluster each. The PostgreSQL rows need root (servers run as the postgres OS user).
"""
import base64, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, os.path.dirname(__file__))
from common import BIN, Cluster, make_db, percentile, row, free_port

TRIALS = int(os.environ.get("DRD_BENCH_ETCD_TRIALS", "10"))
PG_TRIALS = int(os.environ.get("DRD_BENCH_ETCD_PG_TRIALS", "5"))
TTL = 3.0


def rpc(sock, method, params=None, timeout=5):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(sock)
    s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode() + b"\n")
    line = s.makefile().readline()
    s.close()
    return json.loads(line)


class Etcd:
    def __init__(self, root):
        self.procs, self.client = [], []
        peers = [free_port() for _ in range(3)]
        self.client = [free_port() for _ in range(3)]
        initial = ",".join(f"e{i}=http://127.0.0.1:{peers[i]}" for i in range(3))
        for i in range(3):
            d = f"{root}/etcd/e{i}"
            os.makedirs(d)
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", f"e{i}", "--data-dir", f"{d}/data",
                 "--listen-client-urls", f"http://127.0.0.1:{self.client[i]}",
                 "--advertise-client-urls", f"http://127.0.0.1:{self.client[i]}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peers[i]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peers[i]}",
                 "--initial-cluster", initial, "--heartbeat-interval", "100", "--election-timeout", "1000",
                 "--log-level", "warn", "--logger", "zap"],
                stdout=open(f"{d}/etcd.log", "w"), stderr=subprocess.STDOUT))
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.get("/health-check-key") is not None:
                return
            time.sleep(0.1)
        raise RuntimeError("etcd did not start")

    def endpoints(self):
        return [f"http://127.0.0.1:{p}" for p in self.client]

    def get(self, key):
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
        for p in self.client:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{p}/v3/kv/range", body, timeout=0.5) as r:
                    kvs = json.load(r).get("kvs", [])
                    return base64.b64decode(kvs[0]["value"]).decode() if kvs else ""
            except OSError:
                continue
        return None

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()


class Hosts:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="drd-bench-etcd-")
        self.etcd = Etcd(self.dir)
        self.prefix = f"/drd/bench{os.getpid()}"
        self.procs = [None] * 3
        dbs = [f"{self.dir}/host{i + 1}/data/n{i + 1}.db" for i in range(3)]
        for i in range(3):
            os.makedirs(f"{self.dir}/host{i + 1}/data")
        make_db(dbs[0])
        for d in dbs[1:]:
            shutil.copy(dbs[0], d)
        self.dbs = dbs
        for i in range(3):
            cfg = ["disaster_recovery:", "  state_dir: ./state", f"  local: n{i + 1}", "  databases:"]
            for j in range(3):
                cfg.append(f"    n{j + 1}: {{ url: \"sqlite:///{dbs[j]}\", priority: {j}{', type: primary' if j == 0 else ''} }}")
            cfg += ["  monitoring: { interval: 100ms, timeout: 300ms, failure_threshold: 3 }",
                    "  store:", "    type: etcd", f"    prefix: {self.prefix}", f"    ttl: {int(TTL)}s",
                    "    endpoints: [" + ", ".join(f'"{e}"' for e in self.etcd.endpoints()) + "]",
                    f"    peer_listen: \"127.0.0.1:{free_port()}\""]
            with open(f"{self.dir}/host{i + 1}/drd.yaml", "w") as f:
                f.write("\n".join(cfg) + "\n")
        for i in range(3):
            self.start(i)

    def sock(self, i):
        return f"{self.dir}/host{i + 1}/state/drd.sock"

    def start(self, i):
        log = open(f"{self.dir}/host{i + 1}/drd.log", "a")
        self.procs[i] = subprocess.Popen([f"{BIN}/drd", "--config", f"{self.dir}/host{i + 1}/drd.yaml", "--foreground"],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                rpc(self.sock(i), "ping")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("drd did not start")

    def leader(self):
        for i in range(3):
            if self.procs[i] is None or self.procs[i].poll() is not None:
                continue
            try:
                if rpc(self.sock(i), "status", timeout=1)["result"]["cluster"]["leading"]:
                    return i
            except (OSError, KeyError, ValueError):
                pass
        return -1

    def wait(self, pred, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.01)
        return None

    def close(self):
        for p in self.procs:
            if p and p.poll() is None:
                p.kill()
                p.wait()
        self.etcd.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def trial_handover():
    h = Hosts()
    try:
        if h.wait(lambda: h.leader() >= 0, 10) is None:
            return None
        time.sleep(0.5)
        old = h.leader()
        t0 = time.time()
        h.procs[old].kill()
        h.procs[old].wait()
        ok = h.wait(lambda: h.leader() not in (-1, old), 15)
        return time.time() - t0 if ok else None
    finally:
        h.close()


def trial_host_loss():
    h = Hosts()
    try:
        if h.wait(lambda: h.leader() >= 0 and h.etcd.get(h.prefix + "/state/primary") == "n1", 10) is None:
            return None
        time.sleep(0.5)
        t0 = time.time()
        h.procs[0].kill()
        os.rename(h.dbs[0], h.dbs[0] + ".lost")
        ok = h.wait(lambda: h.etcd.get(h.prefix + "/state/primary") not in (None, "", "n1"), 20)
        return time.time() - t0 if ok else None
    finally:
        h.close()


def trial_single_host():
    c = Cluster(standbys=2, interval="100ms", timeout="300ms", threshold=3)
    try:
        time.sleep(0.5)
        t0 = time.time()
        os.rename(f"{c.dir}/data/primary.db", f"{c.dir}/data/lost.db")
        deadline = time.time() + 20
        while time.time() < deadline:
            if c.call("status")["result"]["primary"] != "primary":
                return time.time() - t0
            time.sleep(0.01)
        return None
    finally:
        c.close()


class PgTools:
    """initdb template, running as postgres, killing a server's process tree (as in
    bench_pg_failover.py, which runs its benchmark when imported)."""
    PGBIN = "/usr/lib/postgresql/15/bin"

    @staticmethod
    def as_pg(argv, timeout=120):
        r = subprocess.run(["runuser", "-u", "postgres", "--"] + argv, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {r.stdout}")

    @staticmethod
    def chown_pg(path):
        import pwd
        pg = pwd.getpwnam("postgres")
        os.chown(path, pg.pw_uid, pg.pw_gid)

    @staticmethod
    def make_template(root):
        tpl = f"{root}/tpl"
        PgTools.as_pg([f"{PgTools.PGBIN}/initdb", "-D", tpl, "--data-checksums", "-A", "trust", "-U", "postgres",
                       "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C"])
        with open(f"{tpl}/pg_hba.conf", "w") as f:
            f.write("local all all trust\nlocal replication all trust\n"
                    "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n")
        with open(f"{tpl}/postgresql.conf", "a") as f:
            f.write("\nlisten_addresses = '127.0.0.1'\nwal_level = replica\nmax_wal_senders = 10\nhot_standby = on\n"
                    "wal_keep_size = 256MB\nwal_log_hints = on\nfsync = off\nshared_buffers = 32MB\n")
        return tpl

    @staticmethod
    def signal_tree(pid, sig):
        os.kill(pid, signal.SIGSTOP)  # the postmaster forks nothing new meanwhile
        tree, i = [pid], 0
        while i < len(tree):
            try:
                with open(f"/proc/{tree[i]}/task/{tree[i]}/children") as f:
                    tree += [int(x) for x in f.read().split()]
            except OSError:
                pass
            i += 1
        for p in reversed(tree):
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGCONT:
            os.kill(pid, signal.SIGCONT)


class PgHosts:
    """Three PostgreSQL 15 servers and either three drd on etcd (multi=True) or one drd."""

    def __init__(self, tpl, multi):
        self.pgb = PgTools
        self.dir = tempfile.mkdtemp(prefix="drd-bench-etcdpg-")
        self.procs = []
        self.etcd = None
        try:
            self._setup(tpl, multi)
        except BaseException:
            self.close()  # every server and drd started so far, by PID
            raise

    def _setup(self, tpl, multi):
        pgb = self.pgb
        os.chmod(self.dir, 0o755)
        pgb.chown_pg(self.dir)
        self.ports = [free_port() for _ in range(3)]
        for i in range(3):
            d = f"{self.dir}/node{i}"
            subprocess.run(["cp", "-a", tpl, d], check=True)
            with open(f"{d}/postgresql.conf", "a") as f:
                f.write(f"port = {self.ports[i]}\nunix_socket_directories = '{self.dir}'\ncluster_name = 'node{i}'\n"
                        "wal_retrieve_retry_interval = 200ms\n")
            if i:
                open(f"{d}/standby.signal", "w").close()
                pgb.chown_pg(f"{d}/standby.signal")
                with open(f"{d}/postgresql.auto.conf", "a") as f:
                    f.write(f"primary_conninfo = 'host=127.0.0.1 port={self.ports[0]} user=postgres "
                            f"application_name=node{i}'\n")
            pgb.as_pg([f"{pgb.PGBIN}/pg_ctl", "start", "-D", d, "-w", "-s", "-l", f"{self.dir}/node{i}.log"])
        self.wait_sql(0, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", "2")
        if multi:
            self.etcd = Etcd(self.dir)
            self.prefix = f"/drd/benchpg{os.getpid()}"
        hosts = range(3) if multi else range(1)
        for h in hosts:
            hd = f"{self.dir}/host{h + 1}"
            os.makedirs(hd)
            cfg = ["disaster_recovery:", "  state_dir: ./state", "  databases:"]
            for j in range(3):
                cfg.append(f"    n{j + 1}: {{ url: \"postgresql://postgres@127.0.0.1:{self.ports[j]}/postgres\", "
                           f"priority: {j}, data_dir: {self.dir}/node{j}, bin_dir: {pgb.PGBIN}, os_user: postgres"
                           f"{', type: primary' if j == 0 else ''} }}")
            cfg += ["  monitoring: { interval: 100ms, timeout: 300ms, failure_threshold: 3 }"]
            if multi:
                cfg += [f"  local: n{h + 1}", "  store:", "    type: etcd", f"    prefix: {self.prefix}",
                        f"    ttl: {int(TTL)}s",
                        "    endpoints: [" + ", ".join(f'"{e}"' for e in self.etcd.endpoints()) + "]",
                        f"    peer_listen: \"127.0.0.1:{free_port()}\""]
            with open(f"{hd}/drd.yaml", "w") as f:
                f.write("\n".join(cfg) + "\n")
            log = open(f"{hd}/drd.log", "a")
            self.procs.append(subprocess.Popen([f"{BIN}/drd", "--config", f"{hd}/drd.yaml", "--foreground"],
                                               stdout=log, stderr=subprocess.STDOUT))
        for h in hosts:
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    st = rpc(f"{self.dir}/host{h + 1}/state/drd.sock", "status", timeout=1)["result"]
                    if st["primary"] == "n1" and (not multi or len(st["cluster"]["members"]) == 3):
                        break
                except (OSError, KeyError, ValueError):
                    pass
                time.sleep(0.05)
            else:
                raise RuntimeError(f"drd {h + 1} did not settle; see {self.dir}/host{h + 1}/drd.log")

    def sql(self, i, q):
        r = subprocess.run([f"{self.pgb.PGBIN}/psql", "-X", "-At", "-h", self.dir, "-p", str(self.ports[i]),
                            "-U", "postgres", "-d", "postgres", "-c", q],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=30)
        return r.stdout.strip() if r.returncode == 0 else None

    def wait_sql(self, i, q, want, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.sql(i, q) == want:
                return
            time.sleep(0.05)
        raise RuntimeError(f"node{i}: {q} did not become {want}")

    def postmaster(self, i):
        with open(f"{self.dir}/node{i}/postmaster.pid") as f:
            return int(f.readline())

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for i in range(3):
            try:
                self.pgb.signal_tree(self.postmaster(i), signal.SIGCONT)
                self.pgb.signal_tree(self.postmaster(i), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        if self.etcd:
            self.etcd.close()
        time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)


def trial_pg_host_loss(tpl, multi):
    """Seconds from the loss of host 1 (its drd in multi-host mode, and its server) until a
    standby takes writes."""
    h = PgHosts(tpl, multi)
    try:
        time.sleep(0.5)
        pm = h.postmaster(0)
        t0 = time.time()
        if multi:
            h.procs[0].kill()
        h.pgb.signal_tree(pm, signal.SIGKILL)
        deadline = time.time() + 30
        while time.time() < deadline:
            for i in (1, 2):
                if h.sql(i, "SELECT pg_is_in_recovery()") == "f":
                    return time.time() - t0
            time.sleep(0.02)
        return None
    finally:
        h.close()


def summary(name, values, target=None, target_text=""):
    got = [v for v in values if v is not None]
    failed = len(values) - len(got)
    if not got:
        row(name, f"no successful trial of {len(values)}", target_text, False)
        return
    p50, p99 = percentile(got, 0.5), percentile(got, 0.99)
    text = f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(got):.2f} s over {len(got)} trials" + (f" ({failed} failed)" if failed else "")
    row(name, text, target_text, (target is None or p99 <= target) and failed == 0)


def main():
    if shutil.which("etcd") is None:
        row("etcd multi-host", "etcd not installed", "", False)
        return
    summary("etcd: leader handover after kill -9 of the leading drd", [trial_handover() for _ in range(TRIALS)],
            TTL + 1.0, f"p99 <= TTL + 1 s = {TTL + 1:.0f} s")
    summary("etcd: host-loss failover (drd + primary gone), TTL 3 s", [trial_host_loss() for _ in range(TRIALS)],
            TTL + 1.0, f"p99 <= TTL + 1 s = {TTL + 1:.0f} s")
    summary("single-host mode: failover after the primary's file is gone (same probes)",
            [trial_single_host() for _ in range(TRIALS)], None, "reference")
    if os.geteuid() != 0 or not os.path.isdir("/usr/lib/postgresql/15/bin"):
        row("etcd: PostgreSQL host loss", "skipped: needs root and PostgreSQL 15", "", False)
        return
    pgb = PgTools
    root = tempfile.mkdtemp(prefix="drd-bench-etcdpg-tpl-")
    os.chmod(root, 0o755)
    pgb.chown_pg(root)
    try:
        tpl = pgb.make_template(root)
        pg_multi, pg_single = [], []
        for _ in range(PG_TRIALS):  # interleaved, so both modes see the same machine load
            pg_multi.append(trial_pg_host_loss(tpl, True))
            pg_single.append(trial_pg_host_loss(tpl, False))
        summary("etcd: PostgreSQL host-loss failover (drd + server tree killed) until a standby takes writes, TTL 3 s",
                pg_multi, TTL + 1.0, f"p99 <= TTL + 1 s = {TTL + 1:.0f} s")
        summary("single-host mode: PostgreSQL primary killed until a standby takes writes (same probes)",
                pg_single, None, "reference")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
