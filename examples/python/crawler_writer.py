#!/usr/bin/env python3
"""A crawler-like writer: records one image row per transaction on drd's current primary.

    crawler_writer.py --db sqlite:///var/data/images.db --rate 200 --duration 30 --ack acks.txt
    crawler_writer.py --db 'postgresql://crawler@db1,db2/crawler?target_session_attrs=read-write'

Each acknowledged row is appended to --ack as "id unix_ms switches" (switches: how many times
the writer moved to a new primary) after its COMMIT returned, so a test can check that no
acknowledged row was lost and measure how long writes paused at a switch.
"""
import argparse
import sys
import time

from sqlalchemy import text

from primary_follower import follower_for

INSERT = text("INSERT INTO images (id, url, sha256, size, path, crawled_at) "
              "VALUES (:id, :url, :sha256, :size, :path, CURRENT_TIMESTAMP) "
              # A retried COMMIT whose first answer was lost may already have landed: same row,
              # nothing to do. This is what makes `run` safe to retry.
              "ON CONFLICT (id) DO NOTHING")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="sqlite:///PATH-OF-current_link or a postgresql:// URI")
    ap.add_argument("--rate", type=float, default=100, help="rows per second (0: as fast as possible)")
    ap.add_argument("--duration", type=float, default=10, help="seconds")
    ap.add_argument("--ack", help="append acknowledged ids here")
    ap.add_argument("--start-id", type=int, default=1)
    a = ap.parse_args()

    db = follower_for(a.db)
    ack = open(a.ack, "a", buffering=1) if a.ack else None
    end = time.monotonic() + a.duration
    next_at = time.monotonic()
    row_id = a.start_id
    while time.monotonic() < end:
        row = {"id": row_id, "url": f"http://example.test/{row_id}.jpg", "sha256": "%064x" % row_id,
               "size": row_id % 100000, "path": f"/img/{row_id}"}
        db.run(lambda conn: conn.execute(INSERT, row))
        if ack:
            ack.write(f"{row_id} {int(time.time() * 1000)} {db.switches}\n")
        row_id += 1
        if a.rate > 0:
            next_at += 1.0 / a.rate
            time.sleep(max(0.0, next_at - time.monotonic()))
    print(f"wrote {row_id - a.start_id} rows, followed {db.switches} primary switch(es)", file=sys.stderr)


if __name__ == "__main__":
    main()
