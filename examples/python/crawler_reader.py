#!/usr/bin/env python3
"""A crawler-like reader: asks the current primary for the newest image rows, again and again.

    crawler_reader.py --db sqlite:///var/data/images.db --duration 30 --log reads.txt

Each read is appended to --log as "start_ms end_ms max_id rows switches". A reader on a
fenced former primary would still get answers (old data, no error); `run(..., write=False)`
re-checks where the primary is before and after each read transaction, so it never does.
"""
import argparse
import sys
import time

from sqlalchemy import text

from primary_follower import follower_for

NEWEST = text("SELECT max(id), count(*) FROM images")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="sqlite:///PATH-OF-current_link or a postgresql:// URI")
    ap.add_argument("--duration", type=float, default=10, help="seconds")
    ap.add_argument("--interval", type=float, default=0.01, help="seconds between reads")
    ap.add_argument("--log", help="append one line per read here")
    a = ap.parse_args()

    db = follower_for(a.db)
    log = open(a.log, "a", buffering=1) if a.log else None
    end = time.monotonic() + a.duration
    reads = 0
    while time.monotonic() < end:
        start_ms = int(time.time() * 1000)
        max_id, rows = db.run(lambda conn: conn.execute(NEWEST).one(), write=False)
        if log:
            log.write(f"{start_ms} {int(time.time() * 1000)} {max_id or 0} {rows} {db.switches}\n")
        reads += 1
        time.sleep(a.interval)
    print(f"{reads} reads, followed {db.switches} primary switch(es)", file=sys.stderr)


if __name__ == "__main__":
    main()
