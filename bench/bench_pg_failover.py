"""PostgreSQL failover under a write load, measured the way an application sees it.

Each trial builds a fresh PostgreSQL 15 primary + 2 streaming standbys on
loopback (initdb once, then copies), starts drd (tuned: monitoring interval
200ms, timeout DRD_BENCH_PG_TIMEOUT (default 500ms), threshold 3) and
drd-pg-writer, which commits one row per transaction through a libpq
multi-host URI with target_session_attrs=read-write and logs every
acknowledged id with the port of the server that acknowledged it. Then the
primary's whole process tree is killed with SIGKILL, or frozen with SIGSTOP.
The gap is the time between the writer's last commit on the old primary and
its first commit on the new one. Acknowledged commits missing on the new
primary are counted: in asynchronous mode a kill can lose what no standby had
received (reported); in synchronous mode (failover.synchronous: true) the
target is 0. Then switchovers under the same load: drctl's duration, the
writer's gap, commits lost (target 0).

Trials: DRD_BENCH_PG_TRIALS (default 20) per failure kind and mode;
DRD_BENCH_PG_SWITCHOVERS (default 5); DRD_BENCH_PG_MODES (default "async,sync");
DRD_BENCH_ONLY="kill -9"|"SIGSTOP"; DRD_BENCH_KEEP=1 keeps the folders (logs).
Needs root (servers run as the postgres OS user) and /usr/lib/postgresql/15/bin.
Bar (docs/anchors): Patroni 3.0.2 tuned (ttl 20 / loop_wait 2) median 18.5 s,
default 25 s; CloudNativePG's e2e test requires <= 10 s; the promotion floor is
about 150 ms.
"""
import json, os, pwd, shutil, signal, socket, subprocess, sys, tempfile, time
sys.path.insert(0, os.path.dirname(__file__))
from common import BIN, percentile, row, free_port

PGBIN = "/usr/lib/postgresql/15/bin"
TRIALS = int(os.environ.get("DRD_BENCH_PG_TRIALS", "20"))
SWITCHOVERS = int(os.environ.get("DRD_BENCH_PG_SWITCHOVERS", "5"))
TIMEOUT = os.environ.get("DRD_BENCH_PG_TIMEOUT", "500ms")
PG = pwd.getpwnam("postgres")


def as_pg(argv, timeout=120, check=True):
    r = subprocess.run(["runuser", "-u", "postgres", "--"] + argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stdout}")
    return r


def chown_pg(path):
    os.chown(path, PG.pw_uid, PG.pw_gid)


def make_template(root):
    tpl = f"{root}/tpl"
    as_pg([f"{PGBIN}/initdb", "-D", tpl, "--data-checksums", "-A", "trust", "-U", "postgres", "--no-sync",
           "--no-instructions", "-E", "UTF8", "--locale=C"])
    with open(f"{tpl}/pg_hba.conf", "w") as f:
        f.write("local all all trust\nlocal replication all trust\n"
                "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n")
    with open(f"{tpl}/postgresql.conf", "a") as f:
        # fsync off: a kill -9 of a server keeps the kernel's page cache, so no acknowledged
        # commit depends on it here; it keeps the 2-core box from measuring its disk instead.
        f.write("\nlisten_addresses = '127.0.0.1'\nwal_level = replica\nmax_wal_senders = 10\nhot_standby = on\n"
                "wal_keep_size = 256MB\nwal_log_hints = on\nfsync = off\nshared_buffers = 32MB\n")
    return tpl


def tree(pid):
    # Fast path: the kernel's list of each process's children, so the whole tree
    # is frozen within a few ms (a full /proc scan takes ~100 ms on a busy box,
    # long enough for the writer's backend to commit after the probes froze).
    try:
        out = [pid]
        i = 0
        while i < len(out):
            with open(f"/proc/{out[i]}/task/{out[i]}/children") as f:
                out += [int(x) for x in f.read().split()]
            i += 1
        return out
    except (OSError, ValueError):
        pass
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rfind(")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    out = [pid]
    i = 0
    while i < len(out):
        out += kids.get(out[i], [])
        i += 1
    return out


def signal_tree(pid, sig):
    os.kill(pid, signal.SIGSTOP)  # the postmaster forks nothing new meanwhile
    for p in reversed(tree(pid)):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    if sig == signal.SIGCONT:
        os.kill(pid, signal.SIGCONT)


class Trial:
    """Three PostgreSQL nodes (node0 primary), drd and the writer, in one temp folder."""

    def __init__(self, tpl, root, synchronous=False):
        self.dir = tempfile.mkdtemp(prefix="trial-", dir=root)
        os.chmod(self.dir, 0o755)
        chown_pg(self.dir)
        self.ports = [free_port() for _ in range(3)]
        for i in range(3):
            d = f"{self.dir}/node{i}"
            subprocess.run(["cp", "-a", tpl, d], check=True)
            with open(f"{d}/postgresql.conf", "a") as f:
                f.write(f"port = {self.ports[i]}\nunix_socket_directories = '{self.dir}'\ncluster_name = 'node{i}'\n")
            if i:
                open(f"{d}/standby.signal", "w").close()
                chown_pg(f"{d}/standby.signal")
                with open(f"{d}/postgresql.auto.conf", "a") as f:
                    f.write(f"primary_conninfo = 'host=127.0.0.1 port={self.ports[0]} user=postgres "
                            f"application_name=node{i}'\n")
            as_pg([f"{PGBIN}/pg_ctl", "start", "-D", d, "-w", "-s", "-l", f"{self.dir}/node{i}.log"])
        self.wait_sql(0, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", "2")
        cfg = ["disaster_recovery:", "  state_dir: ./state", "  control:", "    socket: ./state/drd.sock", "  databases:"]
        for i in range(3):
            cfg += [f"    node{i}:", f"      type: {'primary' if i == 0 else 'secondary'}", f"      priority: {i}",
                    f"      url: \"postgresql://postgres@127.0.0.1:{self.ports[i]}/postgres\"",
                    f"      data_dir: {self.dir}/node{i}", f"      bin_dir: {PGBIN}", "      os_user: postgres"]
        cfg += ["  monitoring:", "    interval: 200ms", f"    timeout: {TIMEOUT}", "    failure_threshold: 3"]
        if synchronous:
            cfg += ["  failover:", "    synchronous: true"]
        with open(f"{self.dir}/drd.yaml", "w") as f:
            f.write("\n".join(cfg) + "\n")
        self.socket = f"{self.dir}/state/drd.sock"
        self.drd_log = open(f"{self.dir}/drd.log", "w")
        self.drd = subprocess.Popen([f"{BIN}/drd", "--config", f"{self.dir}/drd.yaml", "--foreground"],
                                    stdout=self.drd_log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if self.call("status")["result"]["primary"] == "node0":
                    break
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError("drd did not start; see " + self.drd_log.name)
        if synchronous:
            self.wait_sql(0, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'", "1")
        self.writer = None

    def sql(self, i, q):
        r = subprocess.run([f"{PGBIN}/psql", "-X", "-At", "-h", "127.0.0.1", "-p", str(self.ports[i]), "-U", "postgres",
                            "-d", "postgres", "-c", q], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           timeout=30)
        return r.stdout.strip() if r.returncode == 0 else None

    def wait_sql(self, i, q, want, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.sql(i, q) == want:
                return
            time.sleep(0.05)
        raise RuntimeError(f"node{i}: {q} did not become {want}")

    def call(self, method, params=None):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(self.socket)
        s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode() + b"\n")
        line = s.makefile().readline()
        s.close()
        return json.loads(line)

    def postmaster(self, i):
        with open(f"{self.dir}/node{i}/postmaster.pid") as f:
            return int(f.readline())

    def start_writer(self, seconds):
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        url = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write&connect_timeout=2"
        self.acks = f"{self.dir}/acks.txt"
        self.writer = subprocess.Popen([f"{BIN}/drd-pg-writer", "--url", url, "--duration", str(seconds), "--rate",
                                        "500", "--ack", self.acks, "--op-timeout", "1000"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def read_acks(self):
        out = []
        try:
            with open(self.acks) as f:
                for line in f:
                    p = line.split()
                    if len(p) == 3:
                        out.append((int(p[0]), int(p[1]), int(p[2])))
        except OSError:
            pass
        return out

    def close(self):
        if self.writer and self.writer.poll() is None:
            self.writer.kill()
            self.writer.wait()
        self.drd.terminate()
        try:
            self.drd.wait(10)
        except subprocess.TimeoutExpired:
            self.drd.kill()
        self.drd_log.close()
        for i in range(3):
            try:
                signal_tree(self.postmaster(i), signal.SIGCONT)
                signal_tree(self.postmaster(i), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        time.sleep(0.2)
        if not os.environ.get("DRD_BENCH_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


def new_trial(tpl, root, synchronous):
    # Setting up can lose a race for a loopback port with other processes on the box: retry.
    for attempt in range(3):
        try:
            return Trial(tpl, root, synchronous)
        except RuntimeError as e:
            if attempt == 2:
                raise
            print(f"# trial setup failed, retrying: {e}", file=sys.stderr)


def measure(t, old, act):
    """Writer running; `act()` breaks or moves the primary. Returns (gap ms, lost, acked, act's result)."""
    t.start_writer(60)
    deadline = time.time() + 15
    while len(t.read_acks()) < 500 and time.time() < deadline:
        time.sleep(0.05)
    result = act()
    deadline = time.time() + 60
    new_port = None
    while time.time() < deadline:
        later = [a for a in t.read_acks() if a[2] != old]
        if len(later) >= 200:
            new_port = later[0][2]
            break
        time.sleep(0.05)
    t.writer.terminate()
    t.writer.wait()
    if new_port is None:
        raise RuntimeError("the writer never committed on a new primary; see " + t.dir)
    acks = t.read_acks()
    last_old = max(a[1] for a in acks if a[2] == old)
    first_new = min(a[1] for a in acks if a[2] == new_port)
    present = set(int(x) for x in (t.sql(t.ports.index(new_port), "SELECT id FROM drd_writer") or "").split())
    lost = sum(1 for a in acks if a[0] not in present)
    print(f"# trial {t.dir}: gap {first_new - last_old} ms, lost {lost}", file=sys.stderr)
    return first_new - last_old, lost, len(acks), result


def run_trial(tpl, root, sig, synchronous):
    t = new_trial(tpl, root, synchronous)
    try:
        return measure(t, t.ports[0], lambda: signal_tree(t.postmaster(0), sig))[:3]
    finally:
        t.close()


def run_switchover(tpl, root):
    t = new_trial(tpl, root, False)
    try:
        def act():
            t0 = time.time()
            r = t.call("switchover", {"node": "node1"})
            if "error" in r:
                raise RuntimeError(f"switchover failed: {r['error']}")
            return (time.time() - t0) * 1000
        return measure(t, t.ports[0], act)
    finally:
        t.close()


def main():
    if os.geteuid() != 0 or not os.path.exists(f"{PGBIN}/postgres"):
        row("pg failover under load", "skipped (needs root and PostgreSQL 15)", "", True)
        return
    root = tempfile.mkdtemp(prefix="drd-bench-pg-")
    os.chmod(root, 0o755)
    chown_pg(root)
    tuned = f"interval 200ms, timeout {TIMEOUT}, threshold 3"
    try:
        tpl = make_template(root)
        kinds = (("kill -9", signal.SIGKILL, 500, 1000), ("SIGSTOP", signal.SIGSTOP, None, 2000))
        if os.environ.get("DRD_BENCH_ONLY"):
            kinds = [k for k in kinds if k[0] == os.environ["DRD_BENCH_ONLY"]]
        modes = [m for m in (False, True) if os.environ.get("DRD_BENCH_PG_MODES", "async,sync").find(
            "sync" if m else "async") >= 0]
        for synchronous in modes:
            mode = "sync" if synchronous else "async"
            for name, sig, p50_target, p99_target in kinds:
                gaps, lost, acked = [], 0, 0
                for _ in range(TRIALS):
                    g, l, a = run_trial(tpl, root, sig, synchronous)
                    gaps.append(g)
                    lost += l
                    acked += a
                p50, p99 = percentile(gaps, 0.5), percentile(gaps, 0.99)
                target = (f"p50 <= {p50_target} ms, " if p50_target else "") + f"p99 <= {p99_target} ms"
                ok = p99 <= p99_target and (p50_target is None or p50 <= p50_target)
                if synchronous:
                    target, ok = "reported (sync mode)", True
                row(f"pg write gap, primary {name}, {mode}, {TRIALS} trials ({tuned})",
                    f"p50 {p50:.0f} ms, p99 {p99:.0f} ms (min {min(gaps)}, max {max(gaps)})", target, ok)
                row(f"pg acknowledged commits lost, primary {name}, {mode}, {TRIALS} trials",
                    f"{lost} of {acked}", "0" if synchronous else "(reported)", lost == 0 or not synchronous)
        if SWITCHOVERS and not os.environ.get("DRD_BENCH_ONLY"):
            gaps, lost, acked, durs = [], 0, 0, []
            for _ in range(SWITCHOVERS):
                g, l, a, d = run_switchover(tpl, root)
                gaps.append(g)
                lost += l
                acked += a
                durs.append(d)
            row(f"pg switchover under load, {SWITCHOVERS} runs: drctl switchover duration (incl. pg_rewind rejoin)",
                f"p50 {percentile(durs, 0.5):.0f} ms (max {max(durs):.0f})", "reported", True)
            row(f"pg switchover write gap / acknowledged commits lost, {SWITCHOVERS} runs",
                f"gap p50 {percentile(gaps, 0.5):.0f} ms (max {max(gaps)}); lost {lost} of {acked}", "lost 0",
                lost == 0)
    finally:
        if not os.environ.get("DRD_BENCH_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


main()
