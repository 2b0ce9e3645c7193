"""Multi-host chaos trials (docs/multi-host.md): one drd per "host" (`local: nodeI`,
`store.type: etcd`), a real 3-member etcd cluster on loopback ports, three PostgreSQL 15
servers (node0 primary, two streaming standbys), drd-pg-writer through a multi-host URI.

The PostgreSQL side is pg_chaos's: the same servers, the same observer (one thread per
server asking pg_is_in_recovery() and transaction_read_only; split-brain instants from
the writable runs), the same acknowledged-commit check. What differs:

- every server is observed and written through its Unix socket. A network cut does not
  reach a socket file, so the observer and the writer play clients on the primary's own
  host: a cut-off primary stays visible (and writable until its drd fences it), which is
  exactly what the partition scenario must show;
- the state store is etcd: the observer reads the keys under the cluster's prefix through
  etcd's JSON gateway itself (primary, term, fenced nodes, history, pending failover);
- "a commit on a fenced node": an acknowledged commit on a server after the observer saw
  it fenced (a primary answering transaction_read_only = on), or on the old primary after
  the writer's first commit on another server.
"""
import base64, json, os, random, signal, subprocess, tempfile, threading, time, urllib.request

from chaos_common import Drd, Violations, now_ms, read_acks
from pg_chaos import NODES, PGBIN, PgObserver, PgTrial, check_acked, free_port, signal_tree

SCENARIOS = ["mh-host-loss", "mh-leader-kill", "mh-partition", "mh-etcd-quorum"]
FAILOVER_SCENARIOS = {"mh-host-loss", "mh-leader-kill", "mh-partition"}
TTL_MS = 3000
# Host loss and partition: the lease (TTL) runs out, then detection and promotion. A leader
# killed during a failover: its lease runs out first, then the next one finishes the work.
TARGETS = {"mh-host-loss": 6000, "mh-partition": 6000, "mh-leader-kill": 9000}
FAILOVER_TARGET_MS = 6000
SLACK_MS = 100  # a commit in flight when the fence landed


def target_ms(scen):
    return TARGETS.get(scen, FAILOVER_TARGET_MS)


def b64(s):
    return base64.b64encode(s.encode()).decode()


class Etcd:
    """A 3-member etcd cluster on free loopback ports (as tests/etcd/etcd_fixture.cpp), each
    member started, paused, killed and restarted by PID. `extra_ip`: also listen there (the
    root side of a network namespace's link)."""

    def __init__(self, d, ports, extra_ip=None, token="drd-chaos"):
        self.dir, self.extra_ip, self.token = d, extra_ip, token
        self.client_ports, self.peer_ports = ports[:3], ports[3:6]
        self.initial = ",".join(f"e{i}=http://127.0.0.1:{p}" for i, p in enumerate(self.peer_ports))
        self.procs = [None] * 3
        os.makedirs(d, exist_ok=True)
        for i in range(3):
            self.start(i)
        deadline = time.time() + 30
        while not all(self.healthy(i) for i in range(3)):
            if time.time() > deadline:
                raise RuntimeError(f"etcd did not become healthy within 30 s: {self.log_tails()}")
            time.sleep(0.2)

    def log_tails(self):
        out = []
        for i in range(3):
            try:
                with open(f"{self.dir}/e{i}.log") as f:
                    lines = f.read().splitlines()[-2:]
            except OSError:
                lines = []
            out.append(f"e{i} ({'running' if self.running(i) else 'exited'}): " + " | ".join(l[:300] for l in lines))
        return "; ".join(out)

    def start(self, i):
        client = f"http://127.0.0.1:{self.client_ports[i]}"
        listen = client + (f",http://{self.extra_ip}:{self.client_ports[i]}" if self.extra_ip else "")
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        argv = ["etcd", "--name", f"e{i}", "--data-dir", f"{self.dir}/e{i}.data", "--listen-client-urls", listen,
                "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", self.initial, "--initial-cluster-state", "new", "--initial-cluster-token",
                self.token, "--heartbeat-interval", "100", "--election-timeout", "1000", "--log-level", "warn",
                "--logger", "zap"]
        with open(f"{self.dir}/e{i}.log", "a") as log:
            self.procs[i] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def endpoints(self, host="127.0.0.1"):
        return [f"http://{host}:{p}" for p in self.client_ports]

    def post(self, i, path, body, timeout=1.0):
        req = urllib.request.Request(f"http://127.0.0.1:{self.client_ports[i]}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def healthy(self, i):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.client_ports[i]}/health", timeout=1) as r:
                return json.loads(r.read()).get("health") == "true"
        except (OSError, ValueError):
            return False

    def range(self, prefix, timeout=1.0):
        """{key: value} under `prefix` (a linearizable read: fails without quorum). Tries each
        running member; raises OSError when none answers."""
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        err = None
        for i in range(3):
            if not self.running(i):
                continue
            try:
                r = self.post(i, "/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)}, timeout)
                return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
                        for kv in r.get("kvs", [])}
            except (OSError, ValueError) as e:
                err = e
        raise OSError(f"etcd range {prefix}: {err}")

    def running(self, i):
        return self.procs[i] is not None and self.procs[i].poll() is None

    def signal(self, i, sig):
        if self.running(i):
            self.procs[i].send_signal(sig)

    def kill(self, i):
        if self.running(i):
            self.procs[i].kill()
            self.procs[i].wait()

    def close(self):
        for i in range(3):
            self.signal(i, signal.SIGCONT)
            self.kill(i)


def check_etcd_store(kv, prefix, violations, prev=None):
    """The shared state under `prefix` (Etcd.range): the primary is a configured node and not
    fenced, the term never goes back, history never shrinks, its terms increase and its
    newest entry names the primary. Returns the snapshot (`prev` of the next call)."""
    def get(k):
        return kv.get(f"{prefix}/{k}")
    primary, term = get("state/primary"), int(get("state/term") or 0)
    fenced = {k.rsplit("/", 1)[1] for k in kv if k.startswith(f"{prefix}/state/fenced/")}
    hist = sorted((json.loads(v) for k, v in kv.items() if k.startswith(f"{prefix}/history/")),
                  key=lambda h: (h.get("term", 0), h.get("time_ms", 0)))
    snap = {"primary": primary, "term": term, "history": hist, "fenced": fenced,
            "pending": get("state/pending"), "leader": get("state/leader")}
    if primary and primary not in NODES:
        violations.add("store", f"state/primary '{primary}' is not a configured node")
    if primary and primary in fenced:
        violations.add("store", f"primary '{primary}' is also under state/fenced")
    if prev and term < prev["term"]:
        violations.add("store", f"term went back from {prev['term']} to {term}")
    if prev and len(hist) < len(prev["history"]):
        violations.add("store", f"history shrank from {len(prev['history'])} to {len(hist)} entries")
    last = 0
    for h in hist:
        if h.get("to") not in NODES or (h.get("from") and h.get("from") not in NODES):
            violations.add("store", f"history entry {h.get('from')}->{h.get('to')} names an unknown node")
        if h.get("term", 0) <= last and h.get("mode") != "switchover":
            violations.add("store", f"history terms not increasing: {h.get('term')} after {last}")
        last = max(last, h.get("term", 0))
    if hist and primary and hist[-1].get("to") != primary and hist[-1].get("term", 0) >= term:
        violations.add("store", f"newest history entry points at {hist[-1].get('to')} but state/primary is {primary}")
    return snap


def last_ok_probe_ms(state_dbs, node, before_ms):
    """The last successful probe of `node` at or before `before_ms` (when the first failover
    began) by any of these drd (their local health samples), as the time the probe was sent: a
    sample is stamped when its answer is recorded, and commits acknowledged while the probe was
    under way are not ones the probe saw (reading the stamp instead let ~3 such commits count
    against the bound). Not the failover's end: a partition healed while the promotion ran lets
    the old primary answer again before the history row is written, and that probe saw none of
    the commits lost in the cut (this made the suite report 377 and 368 lost commits against a
    bound of 0). Called once every drd stopped: a plain connection, since a read-only one
    cannot open a WAL database whose -shm its last user removed."""
    import sqlite3
    best = None
    for db in state_dbs:
        if not os.path.exists(db):
            continue
        try:
            con = sqlite3.connect(db, timeout=2)
            try:
                t = con.execute("SELECT max(time_ms - response_ms) FROM health_samples WHERE node = ? AND ok = 1 AND time_ms <= ?",
                                (node, before_ms)).fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            continue
        if t is not None and (best is None or t > best):
            best = t
    return best


class MhTrial(PgTrial):
    def __init__(self, bin_dir, scenario, env, k):
        self.bin, self.scenario, self.env, self.k = bin_dir, scenario, env, k
        self.sync = (k + SCENARIOS.index(scenario)) % 2 == 0
        # The second fault variant (leader-kill during a failover, etcd members killed instead
        # of paused) every other pair of trials, so that both meet both replication modes.
        self.variant = (k // 2) % 2
        self.v = Violations()
        self.dir = tempfile.mkdtemp(prefix=f"trial-{scenario}-", dir=env.root)
        os.chmod(self.dir, 0o755)
        os.chown(self.dir, env.pg.pw_uid, env.pg.pw_gid)
        ports = set()
        while len(ports) < 12:
            ports.add(free_port())
        ports = sorted(ports, key=lambda _: random.random())
        self.ports, self.peer_ports, etcd_ports = ports[:3], ports[3:6], ports[6:12]
        self.netns = None
        self.pids = {}
        self.drds, self.drd, self.writer, self.etcd, self.obs = [], None, None, None, None
        self.prefix = f"/drd/chaos{os.getpid()}-{k}"
        self.store_prev = None
        self.store_lock = threading.Lock()
        try:
            if scenario == "mh-partition":
                self.make_netns()
            for i in range(3):
                self.make_node(i)
            self.wait_sql(0, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", "2")
            self.etcd = Etcd(f"{self.dir}/etcd", etcd_ports, self.host_ip if self.netns else None,
                             token=f"drd-chaos-{os.getpid()}-{k}")
            for i in range(3):
                self.write_host_config(i)
                h = f"{self.dir}/h{i}"
                pre = ["ip", "netns", "exec", self.netns] if (self.netns and i == 0) else None
                self.drds.append(Drd(bin_dir, f"{h}/drd.yaml", f"{h}/state/drd.sock", f"{h}/drd.log",
                                     argv_prefix=pre))
            self.drd = self.drds[0]
            self.state_dbs = [f"{self.dir}/h{i}/state/state.db" for i in range(3)]
        except Exception:
            self.close()
            raise

    # --- setup --------------------------------------------------------------------------------

    def host(self, i):
        """node0 inside the namespace; the others on the link's root side, where the cut-off
        host's drd could reach them before the cut (as the [netns] C++ test does)."""
        if not self.netns:
            return "127.0.0.1"
        return self.ns_ip if i == 0 else self.host_ip

    def write_host_config(self, i):
        h = f"{self.dir}/h{i}"
        os.makedirs(f"{h}/state", exist_ok=True)
        etcd_host = self.host_ip if (self.netns and i == 0) else "127.0.0.1"
        cfg = ["disaster_recovery:", f"  state_dir: {h}/state", "  control:", f"    socket: {h}/state/drd.sock",
               f"  local: node{i}", "  databases:"]
        for j in range(3):
            cfg += [f"    node{j}:", f"      type: {'primary' if j == 0 else 'secondary'}", f"      priority: {j}",
                    f"      url: \"postgresql://postgres@{self.host(j)}:{self.ports[j]}/postgres\"",
                    f"      data_dir: {self.dir}/node{j}", f"      bin_dir: {PGBIN}", "      os_user: postgres"]
        cfg += ["  monitoring:", "    interval: 200ms", "    timeout: 500ms", "    failure_threshold: 3",
                "  failover:", f"    synchronous: {'true' if self.sync else 'false'}",
                "  store:", "    type: etcd", f"    prefix: {self.prefix}", f"    ttl: {TTL_MS // 1000}s",
                "    endpoints: [" + ", ".join(f"\"{e}\"" for e in self.etcd.endpoints(etcd_host)) + "]",
                f"    peer_listen: \"{self.host(i)}:{self.peer_ports[i]}\"", "    failsafe: true"]
        with open(f"{h}/drd.yaml", "w") as f:
            f.write("\n".join(cfg) + "\n")

    def observer_conninfo(self, i):
        return (f"host={self.dir} port={self.ports[i]} user=postgres dbname=postgres connect_timeout=1 "
                f"application_name=chaos_observer")

    def writer_hosts(self):
        d = self.dir.replace("/", "%2F")
        return ",".join(f"{d}:{p}" for p in self.ports)

    # --- the shared state ---------------------------------------------------------------------

    def store(self, timeout=1.0):
        return self.etcd.range(self.prefix + "/", timeout)

    def observe_store(self):
        try:
            kv = self.store(timeout=0.5)
        except OSError:
            return  # no quorum (mh-etcd-quorum) or an election: nothing to read
        with self.store_lock:
            self.store_prev = check_etcd_store(kv, self.prefix, self.v, self.store_prev)

    def statuses(self):
        out = {}
        for i, d in enumerate(self.drds):
            if d.pid:
                try:
                    out[i] = d.call("status", timeout=5).get("result", {})
                except (OSError, ValueError):
                    out[i] = None
        return out

    def leader(self):
        """The drd that says it leads, when exactly one does (None otherwise)."""
        leading = [i for i, st in self.statuses().items() if st and st.get("cluster", {}).get("leading")]
        return leading[0] if len(leading) == 1 else None

    def settle(self, timeout=40):
        """Every running drd names the same primary, exactly one leads, etcd names it too and
        no failover is pending. Returns the primary."""
        deadline, why = time.time() + timeout, "no answer"
        while time.time() < deadline:
            sts = self.statuses()
            names = {st.get("primary") for st in sts.values() if st}
            leading = [i for i, st in sts.items() if st and st.get("cluster", {}).get("leading")]
            try:
                kv = self.store()
            except OSError as e:
                why = str(e)
                time.sleep(0.2)
                continue
            primary = kv.get(f"{self.prefix}/state/primary")
            pending = kv.get(f"{self.prefix}/state/pending")
            if None in sts.values() or len(names) != 1 or len(leading) != 1 or names != {primary} or pending:
                why = f"drd name {sorted(str(n) for n in names)}, leading {leading}, etcd {primary}, pending {pending}"
                time.sleep(0.2)
                continue
            return primary
        raise RuntimeError(f"the drd did not settle within {timeout} s: {why}")

    # --- the trial ----------------------------------------------------------------------------

    def run(self):
        res = {"failover_ms": None, "lost": 0, "acked": 0, "lag_bytes": 0, "sync": self.sync}
        # In a random order: the first drd up takes the lead, and every host should get to lead.
        for d in random.sample(self.drds, 3):
            d.start(wait_primary=False, timeout=30)
        if self.settle(30) != "node0":
            raise RuntimeError("the cluster did not start on node0")
        if self.sync:  # the writer starts once the leader has made a standby synchronous
            self.wait_sql(0, "SELECT count(*) > 0 FROM pg_stat_replication WHERE sync_state = 'sync'", "t")
        self.before = self.store()
        self.obs = PgObserver(self)
        self.obs.start()
        try:
            self.start_writer()
            self.wait_acks(150)
            self.t_fault = now_ms()
            getattr(self, "s_" + self.scenario.replace("-", "_"))(res)
        finally:
            if self.writer and self.writer.poll() is None:
                self.writer.terminate()
                self.writer.wait()
        time.sleep(0.3)
        self.obs.stop()
        self.final_checks(res)
        res.update(split=self.obs.split_instants, samples=self.obs.samples, violations=list(self.v.items))
        return res

    def term(self, kv):
        return int(kv.get(f"{self.prefix}/state/term") or 0)

    def history(self, kv):
        return [json.loads(v) for k, v in kv.items() if k.startswith(f"{self.prefix}/history/")]

    def wait_new_leader(self, old, timeout=20):
        t0 = now_ms()
        deadline = time.time() + timeout
        while time.time() < deadline:
            l = self.leader()
            if l is not None and l != old:
                return now_ms() - t0
            time.sleep(0.05)
        self.v.add("leader", f"no drd took the lead within {timeout} s after drd node{old} was killed")
        return None

    def s_mh_host_loss(self, res):
        # The whole host: its drd and its server, in a random order, back to back.
        kills = [lambda: self.drds[0].kill9(), lambda: signal_tree(self.pids[0], signal.SIGKILL)]
        random.shuffle(kills)
        for f in kills:
            f()
        res["failover_ms"] = self.measure_gap(self.ports[0])
        self.wait_acks(len(read_acks(self.acks)) + 150)

    def s_mh_leader_kill(self, res):
        lead = self.leader()
        if lead is None:
            raise RuntimeError("no single leading drd before the fault")
        if self.variant == 0:
            res["failover_expected"] = False
            res["note"] = f"leader node{lead} killed"
            self.drds[lead].kill9()
            res["handover_ms"] = self.wait_new_leader(lead)
            self.wait_acks(len(read_acks(self.acks)) + 300)
            self.expect_unchanged()
            return
        # The primary's server killed; the leading drd killed while it may be failing over.
        delay = random.uniform(0.2, 2.5)
        res["note"] = f"primary killed, leader node{lead} {delay * 1000:.0f} ms later"
        signal_tree(self.pids[0], signal.SIGKILL)
        time.sleep(delay)
        self.drds[lead].kill9()
        res["failover_ms"] = self.measure_gap(self.ports[0], timeout=40)
        self.wait_acks(len(read_acks(self.acks)) + 150)

    def s_mh_partition(self, res):
        cut = now_ms()
        subprocess.run(["ip", "link", "set", self.veth, "down"], check=True)
        res["failover_ms"] = self.measure_gap(self.ports[0])
        fenced = [a for a, _ in self.obs.fenced_intervals("node0") if a >= cut][:1]
        # In synchronous mode drd stops its server at once instead (no answer from then on;
        # the observer reaches it over the Unix socket, which the cut does not affect).
        stopped = self.obs.stopped_since("node0", cut)
        if stopped is not None:
            fenced.append(stopped)
        res["fence_ms"] = min(fenced) - cut if fenced else None
        if res["fence_ms"] is None:
            self.v.add("fence", "the cut-off primary was never seen read-only or stopped")
        elif res["fence_ms"] > TTL_MS:
            self.v.add("fence", f"the cut-off primary was fenced {res['fence_ms']:.0f} ms after the cut, "
                                f"beyond the lease ({TTL_MS} ms)")
        res["note"] = f"fenced {res['fence_ms']:.0f} ms after the cut" if res["fence_ms"] is not None else ""
        subprocess.run(["ip", "link", "set", self.veth, "up"], check=True)  # the partition heals
        self.wait_acks(len(read_acks(self.acks)) + 300)
        deadline = time.time() + 10
        while time.time() < deadline:
            st = self.statuses().get(0)
            if st and st.get("cluster", {}).get("self_fenced") and st.get("primary") != "node0":
                break
            time.sleep(0.1)
        else:
            self.v.add("fence", "back on the network, drd node0 does not report its server fenced and replaced")

    def s_mh_etcd_quorum(self, res):
        victims = sorted(random.sample(range(3), 2))
        how = "killed" if self.variant else "SIGSTOPped"
        res["failover_expected"] = False
        res["note"] = f"etcd e{victims[0]}, e{victims[1]} {how} for 7 s"
        t0 = now_ms()
        for i in victims:
            if self.variant:
                self.etcd.kill(i)
            else:
                self.etcd.signal(i, signal.SIGSTOP)
        time.sleep(7.0)  # the outage: more than twice the lease
        t1 = now_ms()
        for i in victims:
            if self.variant:
                self.etcd.start(i)
            else:
                self.etcd.signal(i, signal.SIGCONT)
        # Throughout the outage the primary took writes and nothing else did.
        acks = [a for a in read_acks(self.acks) if t0 + 1000 <= a[1] <= t1]
        if not acks or any(a[2] != str(self.ports[0]) for a in acks):
            self.v.add("quorum", f"during the etcd outage the writer committed {len(acks)} times, "
                                 f"on ports {sorted({a[2] for a in acks})}; expected only node0's")
        if any(a < t1 for a, _ in self.obs.fenced_intervals("node0")):
            self.v.add("quorum", "the primary was fenced during the etcd outage")
        self.wait_acks(len(read_acks(self.acks)) + 300)
        self.expect_unchanged()

    # --- checks -------------------------------------------------------------------------------

    def expect_unchanged(self):
        """No failover: the same primary and term, no new history."""
        deadline = time.time() + 20
        while True:
            try:
                kv = self.store()
                break
            except OSError:
                if time.time() > deadline:
                    self.v.add("store", "etcd did not answer within 20 s after the fault")
                    return
                time.sleep(0.2)
        if kv.get(f"{self.prefix}/state/primary") != "node0" or self.term(kv) != self.term(self.before) or len(
                self.history(kv)) != len(self.history(self.before)):
            self.v.add("spurious-failover", f"primary {kv.get(self.prefix + '/state/primary')}, term "
                                            f"{self.term(self.before)} -> {self.term(kv)}, history "
                                            f"{len(self.history(self.before))} -> {len(self.history(kv))}")

    def final_checks(self, res):
        try:
            primary = self.settle()
        except RuntimeError as e:
            self.v.add("settle", str(e))
            return
        kv = self.store()
        with self.store_lock:
            snap = check_etcd_store(kv, self.prefix, self.v, self.store_prev)
        res["term"] = snap["term"]
        # Exactly one writable primary: asked on a fresh session of each server (the fence is
        # read-only by default for new sessions), and it is the one etcd names.
        q = "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"
        writable = [f"node{i}" for i in range(3) if self.psql(i, q, timeout=5) == "t"]
        if writable != [primary]:
            self.v.add("primaries", f"writable at the end: {writable}; etcd names {primary}")
        # Each drd writes its health samples to its state file in batches; stopped, it writes
        # what it holds (the asynchronous bound below reads them). The checks needing drd are done.
        for d in self.drds:
            d.stop()
        hist = sorted(snap["history"], key=lambda h: (h.get("term", 0), h.get("time_ms", 0)), reverse=True)
        if hist:
            old = hist[-1].get("from")
            others = [db for i, db in enumerate(self.state_dbs) if f"node{i}" != old]
            check_acked(self, res, primary, hist,
                        lambda node: last_ok_probe_ms(others, node, hist[-1].get("time_ms", 0) -
                                                      hist[-1].get("duration_ms", 0)))
        else:
            check_acked(self, res, primary, hist, lambda node: None)
        self.check_fenced_commits()

    def check_fenced_commits(self):
        """No commit acknowledged by a fenced server, nor by the old primary once the writer
        committed on another server."""
        acks = read_acks(self.acks)
        port_node = {str(p): f"node{i}" for i, p in enumerate(self.ports)}
        bad = []
        for a in acks:
            node = port_node.get(a[2])
            if node and any(lo + SLACK_MS < a[1] < hi for lo, hi in self.obs.fenced_intervals(node)):
                bad.append(a)
        if bad:
            self.v.add("fenced-commit", f"{len(bad)} commits acknowledged by a fenced server "
                                        f"(first: id {bad[0][0]} on {port_node[bad[0][2]]})")
        first_new = min((a[1] for a in acks if a[2] != str(self.ports[0])), default=None)
        late = [a for a in acks if first_new is not None and a[2] == str(self.ports[0]) and a[1] > first_new]
        if late:
            self.v.add("fenced-commit", f"{len(late)} commits acknowledged by node0 after the writer's first commit "
                                        f"on another server (first: id {late[0][0]})")

    def close(self, keep=False):
        if self.writer and self.writer.poll() is None:
            self.writer.kill()
            self.writer.wait()
        for d in self.drds:
            d.stop()
        if self.etcd:
            self.etcd.close()
        super().close(keep=keep)
