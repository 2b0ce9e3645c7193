"""PostgreSQL chaos trials: three PostgreSQL 15 servers (node0 primary, two streaming
standbys), drd, drd-pg-writer through a multi-host URI (target_session_attrs=read-write),
and an observer that talks to every server itself through libpq (ctypes).

"Writable primary" for PostgreSQL: a server that, asked by the observer over its own
connection, answers pg_is_in_recovery() = false and transaction_read_only = off. Each
server has its own observer thread (a frozen or partitioned server blocks only its own
thread) that records every answer with the time the question was sent and the time the
answer came back. Consecutive "writable" answers of one server form a run: the server is
taken as writable from the moment the first question of the run was sent until the last
answer of the run arrived. A split-brain instant is a sampling instant (every 25 ms) that
lies inside runs of two servers. Only what was seen counts: a server killed right after
an answer is not assumed writable after it (the old rule, "two fresh answers within
100 ms", flagged a crash failover faster than 100 ms as a split brain although the old
server was dead), and a frozen or partitioned server answers nothing, so no client can
commit on it either; a server that wakes up writable answers again and is caught.
"""
import ctypes, os, pwd, random, shutil, signal, subprocess, tempfile, threading, time

from chaos_common import Drd, Violations, check_catalog, check_store, now_ms, orphan_backups, read_acks, set_clock_offset

PGBIN = "/usr/lib/postgresql/15/bin"
SCENARIOS = ["kill9", "sigstop", "partition", "drd-kill-failover", "drd-kill-backup", "clock-step"]
FAILOVER_SCENARIOS = {"kill9", "sigstop", "partition", "clock-step"}
FAILOVER_TARGET_MS = 3000
TARGETS = {"kill9": 3000, "clock-step": 3000, "sigstop": 6000, "partition": 6000}
# A lower bound of the WAL one lost commit took (an INSERT of one row: heap insert record +
# commit record, each 8-aligned with a 24-byte header): turns the lag drd reported into a
# bound on the number of commits a failover may lose.
MIN_WAL_PER_COMMIT = 64
NODES = ["node0", "node1", "node2"]


def last_ok_probe_ms(state_db, node):
    """drd's last successful probe of `node` before the first failover began, from its health
    samples, as the time the probe was sent (stamp minus response time; see
    mh_chaos.last_ok_probe_ms)."""
    import sqlite3
    try:
        con = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=2)
        try:
            # A history row is stamped when the failover ended; it began duration_ms earlier.
            first = con.execute("SELECT time_ms - duration_ms FROM history ORDER BY id LIMIT 1").fetchone()
            if not first:
                return None
            return con.execute("SELECT max(time_ms - response_ms) FROM health_samples WHERE node = ? AND ok = 1 AND time_ms <= ?",
                               (node, first[0])).fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return None


def target_ms(scen):
    return TARGETS.get(scen, FAILOVER_TARGET_MS)


_pq = None


def libpq():
    global _pq
    if _pq is None:
        _pq = ctypes.CDLL("libpq.so.5")
        _pq.PQconnectdb.restype = ctypes.c_void_p
        _pq.PQconnectdb.argtypes = [ctypes.c_char_p]
        _pq.PQstatus.argtypes = [ctypes.c_void_p]
        _pq.PQexec.restype = ctypes.c_void_p
        _pq.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        _pq.PQresultStatus.argtypes = [ctypes.c_void_p]
        _pq.PQntuples.argtypes = [ctypes.c_void_p]
        _pq.PQgetvalue.restype = ctypes.c_char_p
        _pq.PQgetvalue.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        _pq.PQclear.argtypes = [ctypes.c_void_p]
        _pq.PQfinish.argtypes = [ctypes.c_void_p]
    return _pq


class PgConn:
    def __init__(self, conninfo):
        self.pq = libpq()
        self.c = self.pq.PQconnectdb(conninfo.encode())
        if not self.c or self.pq.PQstatus(self.c) != 0:
            self.close()
            raise OSError("connect failed")

    def row(self, sql):
        r = self.pq.PQexec(self.c, sql.encode())
        try:
            if not r or self.pq.PQresultStatus(r) != 2 or self.pq.PQntuples(r) < 1:  # PGRES_TUPLES_OK
                raise OSError("query failed")
            return [self.pq.PQgetvalue(r, 0, i).decode() for i in range(2)]
        finally:
            if r:
                self.pq.PQclear(r)

    def close(self):
        if self.c:
            self.pq.PQfinish(self.c)
            self.c = None


class PgObserver:
    PERIOD = 0.025

    def __init__(self, trial):
        self.t = trial
        self.stop_ev = threading.Event()
        self.answers = {n: [] for n in NODES}  # node -> [(sent ms, received ms, writable)]
        # node -> [(sent ms, received ms, state)]: "w" writable primary, "ro" a primary made
        # read-only (fenced), "rec" in recovery, None no answer.
        self.states = {n: [] for n in NODES}
        self.instants = []  # sampling instants (ms)
        self.samples = self.split_instants = self.down_instants = 0
        self.threads = [threading.Thread(target=self.poll, args=(n,), daemon=True) for n in NODES]
        self.threads.append(threading.Thread(target=self.sample, daemon=True))
        self.threads.append(threading.Thread(target=self.watch_store, daemon=True))

    def start(self):
        for th in self.threads:
            th.start()

    def poll(self, node):
        i = NODES.index(node)
        conn = None
        while not self.stop_ev.is_set():
            t0 = time.time()
            sent = now_ms()
            try:
                if conn is None:
                    conn = PgConn(self.t.observer_conninfo(i))
                rec, ro = conn.row("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
                got = now_ms()
                self.answers[node].append((sent, got, rec == "f" and ro == "off"))
                self.states[node].append((sent, got, "rec" if rec == "t" else ("w" if ro == "off" else "ro")))
            except OSError:
                got = now_ms()
                self.answers[node].append((sent, got, False))  # no answer ends a run
                self.states[node].append((sent, got, None))
                if conn:
                    conn.close()
                conn = None
            self.stop_ev.wait(max(0.0, 0.02 - (time.time() - t0)))
        if conn:
            conn.close()

    def sample(self):
        while not self.stop_ev.is_set():
            t0 = time.time()
            self.instants.append(now_ms())
            self.stop_ev.wait(max(0.0, self.PERIOD - (time.time() - t0)))

    def watch_store(self):
        """The trial's state store, read every 500 ms (a thread of its own: a store that does
        not answer, such as etcd without quorum, delays no sampling instant)."""
        while not self.stop_ev.wait(0.5):
            self.t.observe_store()

    def stopped_since(self, node, after):
        """The arrival time (ms) of the first failed question to `node` at or after `after`
        from which on it never answered writable again (a fence that stopped the server:
        drd's immediate stop of a synchronous primary); None if there is none."""
        found = None
        for sent, received, state in list(self.states[node]):
            if state == "w":
                found = None
            elif state is None and found is None and received >= after:
                found = received
        return found

    def fenced_intervals(self, node):
        """[(from ms, to ms)]: when `node` was a primary made read-only — from the arrival of
        an answer saying so to the sending of the next question answered writable."""
        out, start = [], None
        for sent, received, state in list(self.states[node]):
            if state == "ro" and start is None:
                start = received
            elif state == "w" and start is not None:
                out.append((start, sent))
                start = None
        if start is not None:
            out.append((start, float("inf")))
        return out

    @staticmethod
    def writable_runs(answers):
        """[(from ms, to ms)]: each run of consecutive writable answers, from the first
        question sent to the last answer received."""
        runs, start, end = [], None, None
        for sent, received, writable in answers:
            if writable:
                start = sent if start is None else start
                end = received
            elif start is not None:
                runs.append((start, end))
                start = None
        if start is not None:
            runs.append((start, end))
        return runs

    @staticmethod
    def split_instants_of(instants, runs):
        """[(instant, {node: (from, to)})] for every instant inside writable runs of two or
        more servers."""
        out = []
        for at in instants:
            w = {n: r for n, rs in runs.items() for r in rs if r[0] <= at <= r[1]}
            if len(w) >= 2:
                out.append((at, w))
        return out

    def stop(self):
        self.stop_ev.set()
        for th in self.threads:
            th.join(3)  # a thread stuck on a frozen server is a daemon thread: left behind
        runs = {n: self.writable_runs(list(a)) for n, a in self.answers.items()}
        self.samples = len(self.instants)
        for at, w in self.split_instants_of(self.instants, runs):
            self.split_instants += 1
            ranges = "; ".join(f"{n} writable {lo - at:+.0f}..{hi - at:+.0f} ms" for n, (lo, hi) in w.items())
            self.t.v.add("split-brain", f"{time.strftime('%H:%M:%S', time.localtime(at / 1000))} {ranges}")


def as_pg(argv, timeout=120, check=True, netns=None):
    pre = ["ip", "netns", "exec", netns] if netns else []
    r = subprocess.run(pre + ["runuser", "-u", "postgres", "--"] + argv, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stdout}")
    return r


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def process_tree(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            kids.setdefault(int(s[s.rfind(")") + 2:].split()[1]), []).append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    out, i = [pid], 0
    while i < len(out):
        out += kids.get(out[i], [])
        i += 1
    return out


def is_postgres(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() in ("postgres", "postmaster")
    except OSError:
        return False


def signal_tree(pid, sig):
    if not is_postgres(pid):  # gone (and maybe reused): never signal someone else's process
        return
    try:
        os.kill(pid, signal.SIGSTOP)  # the postmaster forks nothing new meanwhile
    except ProcessLookupError:
        return
    for p in reversed(process_tree(pid)):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    if sig in (signal.SIGCONT,):
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


class PgEnv:
    """A template data folder made once per run (initdb is the slow part)."""

    def __init__(self, root):
        if not os.path.exists(f"{PGBIN}/postgres"):
            raise RuntimeError(f"PostgreSQL 15 is not installed ({PGBIN})")
        self.pg = pwd.getpwnam("postgres")
        self.root = tempfile.mkdtemp(prefix="pg-", dir=root)
        os.chmod(self.root, 0o755)
        os.chown(self.root, self.pg.pw_uid, self.pg.pw_gid)
        self.tpl = f"{self.root}/tpl"
        as_pg([f"{PGBIN}/initdb", "-D", self.tpl, "--data-checksums", "-A", "trust", "-U", "postgres", "--no-sync",
               "--no-instructions", "-E", "UTF8", "--locale=C"])
        with open(f"{self.tpl}/pg_hba.conf", "w") as f:
            f.write("local all all trust\nlocal replication all trust\n"
                    "host all all 0.0.0.0/0 trust\nhost replication all 0.0.0.0/0 trust\n")
        with open(f"{self.tpl}/postgresql.conf", "a") as f:
            # fsync off: a kill -9 keeps the kernel's page cache (no acknowledged commit depends
            # on fsync here), and the shared 2-core machine would otherwise measure its disk.
            f.write("\nwal_level = replica\nmax_wal_senders = 10\nhot_standby = on\nwal_keep_size = 256MB\n"
                    "wal_log_hints = on\nfsync = off\nshared_buffers = 16MB\n")

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


def check_acked(trial, res, primary, hist, last_ok_probe):
    """Every acknowledged id of the writer must be on `primary` (read there): none missing in
    synchronous mode, at most what the lag drd reported at failover covers otherwise.
    `hist`: the trial's failovers, newest first; `last_ok_probe(node)`: drd's last successful
    probe of the old primary before the first failover (ms, or None). Returns False when the
    primary cannot be read."""
    acks = read_acks(trial.acks)
    res["acked"] = len(acks)
    out = trial.psql(NODES.index(primary), "SELECT id FROM drd_writer", timeout=30)
    if out is None:
        trial.v.add("survivor", f"cannot read drd_writer on {primary}")
        return False
    present = {int(x) for x in out.split()}
    lost = [a[0] for a in acks if a[0] not in present]
    res["lost"] = len(lost)
    lag = sum(int(h.get("lag_bytes", 0)) for h in hist)
    res["lag_bytes"] = lag
    bound = 0 if trial.sync else lag // MIN_WAL_PER_COMMIT
    # The lag drd reports is the one it last measured; commits the old primary acknowledged
    # after drd's last successful probe of it are beyond what any reported lag can cover.
    # In asynchronous mode they are counted (lost_after_probe), not held against the bound.
    counted = lost
    if not trial.sync and hist:
        last_ok = last_ok_probe(hist[-1].get("from"))
        if last_ok is not None:
            by_id = {a[0]: a[1] for a in acks}
            counted = [x for x in lost if by_id[x] <= last_ok]
            res["lost_after_probe"] = len(lost) - len(counted)
    if len(counted) > bound:
        mode = "synchronous mode" if trial.sync else f"the lag drd reported at failover ({lag} bytes) allows {bound}"
        trial.v.add("lost-commits", f"{len(counted)} acknowledged commits missing on {primary}; {mode} "
                                    f"(first: {counted[:5]})")
    return True


class PgTrial:
    def __init__(self, bin_dir, scenario, env, k):
        self.bin, self.scenario, self.env = bin_dir, scenario, env
        self.sync = (k + SCENARIOS.index(scenario)) % 2 == 0 and scenario != "drd-kill-backup"
        self.v = Violations()
        self.dir = tempfile.mkdtemp(prefix=f"trial-{scenario}-", dir=env.root)
        os.chmod(self.dir, 0o755)
        os.chown(self.dir, env.pg.pw_uid, env.pg.pw_gid)
        self.ports = [free_port() for _ in range(3)]
        self.netns = None
        self.pids = {}
        self.drd = None
        self.writer = None
        self.store_prev = None
        try:
            if scenario == "partition":
                self.make_netns()
            for i in range(3):
                self.make_node(i)
            self.wait_sql(0, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", "2")
            self.write_config()
            self.clock = f"{self.dir}/faketime" if scenario == "clock-step" else None
            if self.clock:
                set_clock_offset(self.clock, 0)
            self.state_db = f"{self.dir}/state/state.db"
            self.backups = f"{self.dir}/backups"
            self.drd = Drd(bin_dir, f"{self.dir}/drd.yaml", f"{self.dir}/state/drd.sock", f"{self.dir}/drd.log",
                           self.clock)
        except Exception:
            self.close()
            raise

    # --- setup --------------------------------------------------------------------------------

    def make_netns(self):
        n = random.randint(1, 250)
        tag = f"{os.getpid() % 10000}{n}"
        self.netns, self.veth = f"drdchaos{tag}", f"dch{tag}"
        self.ns_ip, self.host_ip = f"10.231.{n}.2", f"10.231.{n}.1"
        cmds = [["ip", "netns", "add", self.netns],
                ["ip", "link", "add", self.veth, "type", "veth", "peer", "name", self.veth + "p"],
                ["ip", "link", "set", self.veth + "p", "netns", self.netns],
                ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth],
                ["ip", "link", "set", self.veth, "up"],
                ["ip", "netns", "exec", self.netns, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.veth + "p"],
                ["ip", "netns", "exec", self.netns, "ip", "link", "set", self.veth + "p", "up"],
                ["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"]]
        for c in cmds:
            subprocess.run(c, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def host(self, i):
        return self.ns_ip if (i == 0 and self.netns) else "127.0.0.1"

    def make_node(self, i):
        d = f"{self.dir}/node{i}"
        subprocess.run(["cp", "-a", self.env.tpl, d], check=True)
        with open(f"{d}/postgresql.conf", "a") as f:
            f.write(f"port = {self.ports[i]}\nlisten_addresses = '{self.host(i)}'\n"
                    f"unix_socket_directories = '{self.dir}'\ncluster_name = 'node{i}'\n")
        if i:
            open(f"{d}/standby.signal", "w").close()
            os.chown(f"{d}/standby.signal", self.env.pg.pw_uid, self.env.pg.pw_gid)
            with open(f"{d}/postgresql.auto.conf", "a") as f:
                f.write(f"primary_conninfo = 'host={self.host(0)} port={self.ports[0]} user=postgres "
                        f"application_name=node{i}'\n")
        as_pg([f"{PGBIN}/pg_ctl", "start", "-D", d, "-w", "-s", "-l", f"{self.dir}/node{i}.log"],
              netns=self.netns if i == 0 else None)
        self.pids[i] = self.postmaster(i)

    def write_config(self):
        cfg = ["disaster_recovery:", "  state_dir: ./state", "  control:", "    socket: ./state/drd.sock", "  databases:"]
        for i in range(3):
            cfg += [f"    node{i}:", f"      type: {'primary' if i == 0 else 'secondary'}", f"      priority: {i}",
                    f"      url: \"postgresql://postgres@{self.host(i)}:{self.ports[i]}/postgres\"",
                    f"      data_dir: {self.dir}/node{i}", f"      bin_dir: {PGBIN}", "      os_user: postgres"]
        cfg += ["  monitoring:", "    interval: 200ms", "    timeout: 500ms", "    failure_threshold: 3",
                "  failover:", f"    synchronous: {'true' if self.sync else 'false'}",
                "  backup:", "    directory: ./backups", "    compression: zstd"]
        with open(f"{self.dir}/drd.yaml", "w") as f:
            f.write("\n".join(cfg) + "\n")

    def observer_conninfo(self, i):
        return (f"host={self.host(i)} port={self.ports[i]} user=postgres dbname=postgres connect_timeout=1 "
                f"application_name=chaos_observer")

    def observe_store(self):
        if self.drd.pid:
            self.store_prev = check_store(self.state_db, NODES, self.v, prev=self.store_prev)

    def postmaster(self, i):
        with open(f"{self.dir}/node{i}/postmaster.pid") as f:
            return int(f.readline())

    def psql(self, i, q, timeout=10):
        r = subprocess.run([f"{PGBIN}/psql", "-X", "-At", "-h", self.host(i), "-p", str(self.ports[i]), "-U",
                            "postgres", "-d", "postgres", "-c", q], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=timeout)
        return r.stdout.strip() if r.returncode == 0 else None

    def wait_sql(self, i, q, want, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.psql(i, q) == want:
                return
            time.sleep(0.05)
        raise RuntimeError(f"node{i}: {q} did not become {want}")

    def writer_hosts(self):
        return ",".join(f"{self.host(i)}:{p}" for i, p in enumerate(self.ports))

    def start_writer(self):
        url = f"postgresql://postgres@{self.writer_hosts()}/postgres?target_session_attrs=read-write&connect_timeout=1"
        self.acks = f"{self.dir}/acks.txt"
        self.writer = subprocess.Popen([f"{self.bin}/drd-pg-writer", "--url", url, "--duration", "120", "--rate",
                                        "300", "--ack", self.acks, "--op-timeout", "1000"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_acks(self, n, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline and len(read_acks(self.acks)) < n:
            time.sleep(0.05)

    # --- the trial ----------------------------------------------------------------------------

    def run(self):
        res = {"failover_ms": None, "lost": 0, "acked": 0, "lag_bytes": 0, "sync": self.sync}
        self.drd.start()
        if self.sync:  # the writer starts once drd has made a standby synchronous
            self.wait_sql(0, "SELECT count(*) > 0 FROM pg_stat_replication WHERE sync_state = 'sync'", "t")
        obs = PgObserver(self)
        obs.start()
        try:
            self.start_writer()
            self.wait_acks(150)
            getattr(self, "s_" + self.scenario.replace("-", "_"))(res)
        finally:
            if self.writer and self.writer.poll() is None:
                self.writer.terminate()
                self.writer.wait()
        time.sleep(0.3)
        obs.stop()
        self.final_checks(res)
        res.update(split=obs.split_instants, split_drd_down=obs.down_instants, samples=obs.samples,
                   violations=list(self.v.items))
        return res

    def primary(self):
        return self.drd.call("primary", timeout=10).get("result", {}).get("name")

    def measure_gap(self, old_port, timeout=30):
        """Write gap: the writer's last ack on the old primary -> its first ack on another server."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            later = [a for a in read_acks(self.acks) if a[2] != str(old_port)]
            if len(later) >= 50:
                break
            time.sleep(0.05)
        else:
            self.v.add("failover", f"the writer did not commit on a new primary within {timeout} s")
            return None
        acks = read_acks(self.acks)
        last_old = max([a[1] for a in acks if a[2] == str(old_port)] or [0])
        first_new = min(a[1] for a in acks if a[2] != str(old_port))
        return first_new - last_old if last_old else None

    def s_kill9(self, res):
        signal_tree(self.pids[0], signal.SIGKILL)
        res["failover_ms"] = self.measure_gap(self.ports[0])

    def s_sigstop(self, res):
        signal_tree(self.pids[0], signal.SIGSTOP)
        res["failover_ms"] = self.measure_gap(self.ports[0])
        # The old primary wakes up, still believing it is the primary: drd must fence it
        # before a client can commit there. The load keeps running meanwhile.
        signal_tree(self.pids[0], signal.SIGCONT)
        self.wait_acks(len(read_acks(self.acks)) + 300)

    def s_partition(self, res):
        subprocess.run(["ip", "link", "set", self.veth, "down"], check=True)
        res["failover_ms"] = self.measure_gap(self.ports[0])
        subprocess.run(["ip", "link", "set", self.veth, "up"], check=True)  # the partition heals
        self.wait_acks(len(read_acks(self.acks)) + 300)

    def s_drd_kill_failover(self, res):
        self.drd.call_async("failover", {"node": "node1"})
        time.sleep(random.uniform(0.0, 1.0))
        self.drd.kill9()
        time.sleep(random.uniform(0.05, 0.5))
        self.drd.start(timeout=60)
        self.wait_acks(len(read_acks(self.acks)) + 150)

    def s_drd_kill_backup(self, res):
        self.drd.call_async("backup.create", {})
        time.sleep(random.uniform(0.0, 1.5))
        self.drd.kill9()
        time.sleep(0.1)
        self.drd.start(timeout=60)
        self.wait_acks(len(read_acks(self.acks)) + 150)
        r = self.drd.call("backup.create", {}, timeout=120)
        msg = r.get("error", {}).get("message", "")
        if "not supported" in msg:
            res["note"] = msg  # no PostgreSQL backups in this drd: only the restart itself is exercised
        elif "error" in r:
            self.v.add("backup", f"backup after restart failed: {msg}")
        self.expect_no_failover()

    def s_clock_step(self, res):
        set_clock_offset(self.clock, 3600)
        time.sleep(1.0)
        set_clock_offset(self.clock, -3600)
        time.sleep(1.0)
        set_clock_offset(self.clock, 0)
        self.expect_no_failover()
        self.s_kill9(res)

    # --- checks -------------------------------------------------------------------------------

    def expect_no_failover(self):
        h = self.drd.call("history").get("result", [])
        if h:
            self.v.add("spurious-failover", f"{len(h)} failover(s) without a fault of the primary: {h[0].get('reason')}")

    def settle(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                st = self.drd.call("status", timeout=5).get("result", {})
                if st.get("primary") and st.get("failover_state") in ("normal", "degraded"):
                    return st
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"drd did not settle within {timeout} s")

    def final_checks(self, res):
        try:
            self.settle()
            primary = self.primary()
        except (RuntimeError, OSError, ValueError) as e:
            self.v.add("drd", f"drd does not answer at the end: {e}")
            return
        hist = self.drd.call("history").get("result", [])
        if not check_acked(self, res, primary, hist, lambda node: last_ok_probe_ms(self.state_db, node)):
            return
        snap = check_store(self.state_db, NODES, self.v, claimed_primary=primary)
        if snap and snap["primary"] != primary:
            self.v.add("store", f"the store names {snap['primary']}, drd answers {primary}")
        n, listed = check_catalog(self.state_db, self.backups, self.v)
        res["backups"] = n
        if os.path.isdir(self.backups):
            for o in orphan_backups(self.backups, listed):
                if os.path.exists(o[:-len(".drdbk")] + ".manifest.json"):
                    self.v.add("catalog", f"finished backup {os.path.basename(o)} (data + manifest) is not in the catalog")
            for _, _, files in os.walk(self.backups):
                for f in files:
                    if f.endswith(".partial"):
                        self.v.add("catalog", f"partial file {f} left after drd restarted")

    def close(self, keep=False):
        if self.writer and self.writer.poll() is None:
            self.writer.kill()
            self.writer.wait()
        if self.drd:
            self.drd.stop()
        for i in range(3):
            try:
                pid = self.postmaster(i)
            except (OSError, ValueError):
                pid = self.pids.get(i)
            if pid:
                signal_tree(pid, signal.SIGCONT)
                signal_tree(pid, signal.SIGKILL)
        if self.netns:
            subprocess.run(["ip", "link", "del", self.veth], stderr=subprocess.DEVNULL)
            subprocess.run(["ip", "netns", "del", self.netns], stderr=subprocess.DEVNULL)
        time.sleep(0.2)
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
