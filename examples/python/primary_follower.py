"""Follow drd's primary from SQLAlchemy: run each transaction on whatever is the primary now.

    db = follower_for("sqlite:///var/data/images.db")       # drd's current_link
    db = follower_for("postgresql://crawler@db1,db2,db3/crawler?target_session_attrs=read-write")
    db.run(lambda conn: conn.execute(text("INSERT ..."), row))        # a write transaction
    rows = db.run(lambda conn: conn.execute(text("SELECT ...")).all(), write=False)

`run` retries the whole function on a fresh connection when the primary moved, so the
function must be safe to run again (write rows with fixed keys and ON CONFLICT DO NOTHING:
a COMMIT whose answer was lost may have landed).
"""
import os
import sqlite3
import time

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

# SQLite result codes (primary code, the low byte) that mean "this file is not, or no longer,
# the primary": drd's fence holds the write lock (BUSY/LOCKED), the file was lost or replaced
# (IOERR, CANTOPEN, NOTADB, CORRUPT), or it is read-only (READONLY), or its WAL index changed
# under us (PROTOCOL). Anything else (a constraint, a syntax error) is the application's bug.
SQLITE_SWITCH_CODES = {5, 6, 8, 10, 11, 14, 15, 26}

# How long SQLite may wait for a lock. pysqlite's default is 5 s: a client holding the fenced
# former primary then blocks 5 s per statement before it learns anything. drd's own locks are
# short, so 100 ms is plenty for real contention and keeps a switch noticed at once.
SQLITE_BUSY_TIMEOUT_S = 0.1


class SqliteFollower:
    """SQLite behind drd's current_link (a symlink to the primary's file)."""

    def __init__(self, link, retry_for_s=30.0):
        self.link = link
        self.retry_for_s = retry_for_s
        self.target = None   # the file the current engine is on (the link's target when opened)
        self.engine = None
        self.switches = 0    # how many times a new target was taken (for tests and logs)

    def _current_target(self):
        # realpath, not the link text: a relative link and a moved folder name the same file.
        # It does not need the file to exist: a lost primary's path still resolves.
        return os.path.realpath(self.link)

    def _engine(self):
        target = self._current_target()
        if self.engine is not None and target == self.target:
            return self.engine
        # The link names another file (or nothing is open yet): drop every pooled connection to
        # the former primary so no later transaction, read or write, runs on it.
        self._dispose()
        # Open the resolved file, not the link: then the engine is on exactly the file we
        # compared against. mode=rw: never create a file — writing through a dangling link
        # would make SQLite create an empty "primary" at a lost primary's path.
        url = f"sqlite:///file:{target}?mode=rw&uri=true"
        engine = sqlalchemy.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
                                          poolclass=sqlalchemy.pool.QueuePool, pool_size=1)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own implicit BEGIN is
            # deferred and comes late, after the first write statement).
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            # IMMEDIATE takes the write lock at BEGIN: a fenced primary answers SQLITE_BUSY
            # before the transaction did any work, and for readers it costs nothing they need.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write", True) else "BEGIN")

        if self.target is not None:
            self.switches += 1
        self.engine, self.target = engine, target
        return engine

    def _dispose(self):
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None

    @staticmethod
    def _is_switch(err):
        orig = getattr(err, "orig", err)
        code = getattr(orig, "sqlite_errorcode", None)  # Python >= 3.11
        if code is not None:
            return (code & 0xFF) in SQLITE_SWITCH_CODES
        msg = str(orig).lower()  # older Pythons: the message is all there is
        return any(s in msg for s in ("locked", "busy", "readonly", "disk i/o", "unable to open",
                                      "not a database", "malformed"))

    def run(self, fn, write=True):
        deadline = time.monotonic() + self.retry_for_s
        pause = 0.005
        while True:
            # Checked before every transaction: a switch is noticed at the next transaction even
            # when the former primary would still answer (reads on a fenced file succeed, and
            # would return data that is no longer current).
            engine = self._engine()
            target = self.target
            try:
                with engine.connect() as conn:
                    conn.info["write"] = write
                    with conn.begin():
                        result = fn(conn)
                # A read that ran while the link moved may have read the file just fenced:
                # only answer it if the link still names the file it read.
                if write or self._current_target() == target:
                    return result
            except (DBAPIError, sqlite3.Error) as e:
                if not self._is_switch(e) or time.monotonic() > deadline:
                    raise
                # The pooled connection may be on a fenced or lost file: never reuse it.
                self._dispose()
            # Between drd fencing the old file and moving the link, or while drd decides a
            # failover, there is nothing to write to yet: back off briefly, then look again.
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


class PostgresFollower:
    """PostgreSQL through a libpq multi-host URI with target_session_attrs=read-write: libpq
    itself connects to whichever server accepts writes, so following the primary is only
    "reconnect on a connection error, then retry"."""

    # SQLSTATE classes / codes that mean "this server is not (or no longer) the primary":
    # 08 connection exception, 57P01-57P03 admin shutdown / crash / cannot connect now,
    # 25006 read-only transaction (drd fences an old primary read-only before promoting).
    SWITCH_SQLSTATES = ("08", "57P01", "57P02", "57P03", "25006")

    def __init__(self, uri, retry_for_s=30.0):
        import psycopg2  # only needed for PostgreSQL
        self.retry_for_s = retry_for_s
        self.switches = 0
        self.server = None
        # creator=: psycopg2 hands the URI to libpq as it is, multi-host list included.
        # pool_pre_ping: a pooled connection to a server that has since been fenced (its
        # sessions terminated) is replaced before a transaction starts on it.
        self.engine = sqlalchemy.create_engine("postgresql+psycopg2://", creator=lambda: psycopg2.connect(uri),
                                               pool_pre_ping=True, pool_size=1)

    def _is_switch(self, err):
        if getattr(err, "connection_invalidated", False):
            return True
        orig = getattr(err, "orig", None)
        code = getattr(orig, "pgcode", None)
        if code is None:  # no SQLSTATE: the connection itself failed (server gone, refused)
            return isinstance(err, sqlalchemy.exc.OperationalError)
        return code.startswith(self.SWITCH_SQLSTATES)

    def run(self, fn, write=True):
        deadline = time.monotonic() + self.retry_for_s
        pause = 0.01
        while True:
            try:
                with self.engine.connect() as conn:
                    with conn.begin():
                        result = fn(conn)
                    # Which server libpq picked from the list: only counted, for logs and tests.
                    # (conn.info: PQhost/PQport, the server in use; not the URI's whole list).
                    info = conn.connection.dbapi_connection.info
                    server = f"{info.host}:{info.port}"
                    if server != self.server:
                        if self.server is not None:
                            self.switches += 1
                        self.server = server
                    return result
            except DBAPIError as e:
                if not self._is_switch(e) or time.monotonic() > deadline:
                    raise
                # Every pooled connection is on the server that just failed: drop them all.
                self.engine.dispose()
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def follower_for(url, **kw):
    """sqlite:///PATH-OF-current_link or a postgresql:// libpq URI."""
    if url.startswith("sqlite:///"):
        return SqliteFollower(url[len("sqlite:///"):], **kw)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresFollower(url, **kw)
    raise ValueError(f"unsupported URL {url!r}: sqlite:///LINK or postgresql://...")
