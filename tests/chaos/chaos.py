#!/usr/bin/env python3
"""drd chaos suite: faults under a write load, invariants checked by an independent observer.

  chaos.py [--bin DIR] [--engine sqlite|pg|mh|all|LIST] [--trials N] [--budget SECONDS]
           [--scenario NAME ...] [--keep] [--json FILE]

--trials N runs N trials of every scenario, round robin, until the time budget is spent
(a trial is never cut; the next is not started once the budget is gone). --engine takes one
engine, `all` (sqlite, pg and mh, the multi-host PostgreSQL scenarios with etcd) or a
comma-separated list such as `sqlite,pg`. Prints one table
row per scenario and exits 1 if any invariant was violated in any trial (a trial that
could not be set up counts as an error, exit 1 too). Needs root (tmpfs mounts, network
namespaces, PostgreSQL run as the postgres user). See docs/reliability.md.
"""
import argparse, json, os, sys, tempfile, time, traceback, shutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sqlite_chaos  # noqa: E402
import pg_chaos  # noqa: E402
import mh_chaos  # noqa: E402

MODULES = {"sqlite": sqlite_chaos, "pg": pg_chaos, "mh": mh_chaos}


def engines(arg):
    names = list(MODULES) if arg == "all" else [e.strip() for e in arg.split(",") if e.strip()]
    bad = [e for e in names if e not in MODULES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown engine(s) {bad or arg!r}: sqlite, pg, mh, all or a list")
    return names


def percentile(values, q):
    v = sorted(values)
    if not v:
        return None
    return v[max(0, min(len(v) - 1, int(round(q * len(v) + 0.5)) - 1))]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(here, "..", "..", "build", "bin"))
    ap.add_argument("--engine", default="all", type=engines, help="sqlite, pg, mh, all, or a list: sqlite,pg")
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--budget", type=float, default=90)
    ap.add_argument("--scenario", action="append")
    ap.add_argument("--keep", action="store_true", help="keep the folders of failed trials")
    ap.add_argument("--keep-all", action="store_true", help="keep every trial's folder (logs, acks)")
    ap.add_argument("--json", help="write every trial's result here")
    ap.add_argument("--skip-code", type=int, default=1, help="exit code when the suite cannot run here (not root)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("chaos: needs root (tmpfs, network namespaces, PostgreSQL as the postgres user): skipped")
        return a.skip_code
    bin_dir = os.path.abspath(a.bin)
    plan = [(e, s) for e in MODULES if e in a.engine for s in MODULES[e].SCENARIOS]  # (engine, scenario)
    if a.scenario:
        plan = [p for p in plan if p[1] in a.scenario or f"{p[0]}:{p[1]}" in a.scenario]
    root = tempfile.mkdtemp(prefix="drd-chaos-")
    os.chmod(root, 0o755)
    pg_env = None
    results = {p: [] for p in plan}
    errors = 0
    start = time.time()
    try:
        for k in range(a.trials):
            for engine, scen in plan:
                if time.time() - start > a.budget:
                    break
                try:
                    if engine == "sqlite":
                        t = sqlite_chaos.SqliteTrial(bin_dir, scen, root)
                    else:
                        if pg_env is None:
                            pg_env = pg_chaos.PgEnv(root)
                        t = (pg_chaos.PgTrial if engine == "pg" else mh_chaos.MhTrial)(bin_dir, scen, pg_env, k)
                except Exception as e:  # noqa: BLE001 - a setup failure is reported, not hidden
                    print(f"chaos: {engine}:{scen} trial {k + 1}: setup failed: {e}", flush=True)
                    errors += 1
                    continue
                t0 = time.time()
                failed = True
                try:
                    r = t.run()
                    r["seconds"] = time.time() - t0
                    results[(engine, scen)].append(r)
                    failed = bool(r["violations"])
                    status = "ok" if not failed else "VIOLATED: " + "; ".join(f"{k_}: {d}" for k_, d in r["violations"][:3])
                    fo = f" failover {r['failover_ms']:.0f} ms" if r.get("failover_ms") is not None else ""
                    fo += f" ({r['note']})" if r.get("note") else ""
                    fo += f", {r['lost_after_probe']} of the lost acknowledged after drd's last probe" if r.get(
                        "lost_after_probe") else ""
                    down = (f", while drd down: {r.get('split_drd_down', 0)} split / {r.get('lost_drd_down', 0)} lost"
                            if r.get("split_drd_down") or r.get("lost_drd_down") else "")
                    print(f"chaos: {engine}:{scen} trial {k + 1}: {r['seconds']:.1f} s, acked {r['acked']}, lost "
                          f"{r['lost']}, split-brain samples {r['split']}/{r['samples']}{down}{fo} — {status}", flush=True)
                except Exception as e:  # noqa: BLE001
                    errors += 1
                    print(f"chaos: {engine}:{scen} trial {k + 1}: error: {e}", flush=True)
                    traceback.print_exc()
                finally:
                    keep = (a.keep and failed) or a.keep_all
                    t.close(keep=keep)
                    if keep:
                        print(f"chaos: kept {t.dir}", flush=True)
            if time.time() - start > a.budget:
                break
    finally:
        if pg_env and not (a.keep or a.keep_all):
            pg_env.close()
        if not (a.keep or a.keep_all):
            shutil.rmtree(root, ignore_errors=True)
    print()
    print("| engine | scenario | trials | failovers within target | failover p50 / max ms | acked | lost "
          "| split-brain samples | while drd down: split samples / lost | violations |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    bad = 0
    for (engine, scen), rs in results.items():
        mod = MODULES[engine]
        target = mod.target_ms(scen) if hasattr(mod, "target_ms") else mod.FAILOVER_TARGET_MS
        fos = [r["failover_ms"] for r in rs if r.get("failover_ms") is not None]
        expected_fo = scen in mod.FAILOVER_SCENARIOS
        n_fo = sum(1 for r in rs if r.get("failover_expected", True))  # mh-leader-kill: only some trials
        met = sum(1 for f in fos if f <= target)
        nviol = sum(len(r["violations"]) for r in rs)
        bad += nviol
        fo_col = f"{met} of {n_fo} (<= {target} ms)" if expected_fo else "n/a (no failover expected)"
        pct = f"{percentile(fos, 0.5):.0f} / {max(fos):.0f}" if fos else "-"
        print(f"| {engine} | {scen} | {len(rs)} | {fo_col} | {pct} | {sum(r['acked'] for r in rs)} | "
              f"{sum(r['lost'] for r in rs)} | {sum(r['split'] for r in rs)} of {sum(r['samples'] for r in rs)} | "
              f"{sum(r.get('split_drd_down', 0) for r in rs)} / {sum(r.get('lost_drd_down', 0) for r in rs)} | "
              f"{nviol} |")
    print(f"\nchaos: {sum(len(r) for r in results.values())} trials in {time.time() - start:.0f} s, "
          f"{bad} invariant violations, {errors} trial errors")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({f"{e}:{s}": rs for (e, s), rs in results.items()}, f, indent=1, default=str)
    return 1 if bad or errors else 0


if __name__ == "__main__":
    sys.exit(main())
