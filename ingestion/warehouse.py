"""The DuckDB warehouse: canonical tables, written idempotently per day inside transactions.

Re-writing day d replaces d (never duplicates). Each write is one transaction, so a
crash mid-write leaves the previous state intact. DuckDB allows one writing process
at a time; `connect` retries briefly when another process holds the file lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb
import pandas as pd

DDL = {
    "events": """
        CREATE TABLE IF NOT EXISTS events (
            event_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, user_id VARCHAR NOT NULL,
            item_id VARCHAR NOT NULL, request_id VARCHAR, scene VARCHAR NOT NULL,
            event_type VARCHAR NOT NULL, position INTEGER, price DOUBLE, day DATE NOT NULL)""",
    "items": """
        CREATE TABLE IF NOT EXISTS items (
            item_id VARCHAR PRIMARY KEY, title VARCHAR, cat_l1 VARCHAR, cat_l2 VARCHAR,
            cat_l3 VARCHAR, brand VARCHAR, seller VARCHAR, price DOUBLE, first_seen DATE NOT NULL)""",
    "users": """
        CREATE TABLE IF NOT EXISTS users (
            user_id VARCHAR PRIMARY KEY, age_bucket VARCHAR, region VARCHAR)""",
}
EVENT_COLUMNS = [
    "event_id",
    "ts",
    "user_id",
    "item_id",
    "request_id",
    "scene",
    "event_type",
    "position",
    "price",
]


class Warehouse:
    """A DuckDB file holding the canonical `events`, `items` and `users` tables."""

    def __init__(self, path: Path | str, lock_timeout_s: float = 120.0):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file (creating tables if needed); waits while another process writes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only and self.path.exists())
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        try:
            if not read_only:
                for ddl in DDL.values():
                    con.execute(ddl)
            yield con
        finally:
            con.close()

    def write_events(self, events: pd.DataFrame, days: Sequence[dt.date]) -> int:
        """Replace the events of `days` by `events` in one transaction; returns rows written.

        Every row of `events` must fall on one of `days` (UTC), or nothing is written.
        """
        frame = events[EVENT_COLUMNS].copy()
        frame["day"] = pd.to_datetime(frame["ts"], utc=True).dt.date
        stray = ~frame["day"].isin(set(days))
        if stray.any():
            raise ValueError(
                f"events: {int(stray.sum())} rows fall outside days {sorted(days)[:3]}..., "
                f"e.g. event_id {frame.loc[stray, 'event_id'].iloc[0]}"
            )
        with self.connect() as con:
            con.register("incoming", frame)
            con.register("replaced_days", pd.DataFrame({"day": list(days)}))
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute("DELETE FROM events WHERE day IN (SELECT day FROM replaced_days)")
                con.execute("INSERT INTO events SELECT * FROM incoming")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return len(frame)

    def upsert(self, table: str, frame: pd.DataFrame) -> int:
        """Insert or replace rows of `items` or `users` by key, in one transaction."""
        key = {"items": "item_id", "users": "user_id"}[table]
        cols = [c for c in frame.columns if not c.startswith("_")]
        with self.connect() as con:
            con.register("incoming", frame[cols])
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM incoming)")
                con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM incoming")
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return len(frame)

    def load_folder(self, folder: Path) -> int:
        """Fill the warehouse from a canonical parquet folder (`events.parquet`,
        `items.parquet`, `users.parquet`, as `sidflow load-amazon` writes): every event day
        replaced, items and users upserted. Returns the events written."""
        folder = Path(folder)
        events = pd.read_parquet(folder / "events.parquet").dropna(subset=["ts"])
        items = pd.read_parquet(folder / "items.parquet").drop_duplicates("item_id")
        items["first_seen"] = pd.to_datetime(items["first_seen"]).dt.date
        self.upsert("items", items)
        self.upsert("users", pd.read_parquet(folder / "users.parquet").drop_duplicates("user_id"))
        days = sorted(pd.to_datetime(events["ts"], utc=True).dt.date.unique())
        return self.write_events(events.drop_duplicates("event_id"), days)

    def query(self, sql: str, params: Sequence | None = None) -> pd.DataFrame:
        """Run a read query and return a DataFrame."""
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    def counts(self) -> dict[str, int]:
        """Row counts of the canonical tables."""
        with self.connect() as con:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in DDL}

    def days(self) -> list[dt.date]:
        """Days that have events, in order."""
        with self.connect() as con:
            return [
                r[0] for r in con.execute("SELECT DISTINCT day FROM events ORDER BY day").fetchall()
            ]
