"""What the tokenizer reads: the catalogue as of a day, user engagement sequences, counts.

The input is either a DuckDB warehouse (the Dagster pipeline's) or a folder of canonical
parquet tables (`sidflow world --out`, `sidflow load-amazon`: items.parquet and
events.parquet or events/*.parquet). A folder holding the pinned leave-one-out
`split.parquet` (Amazon) has those validation/test events held out, so item embeddings
and weights never see what the retriever is evaluated on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from ingestion.warehouse import Warehouse
from models.tokenizer.weights import item_event_counts

ENGAGEMENTS = ("click", "cart", "purchase")  # what forms a sequence (exposures do not)


@dataclass
class TokenizerData:
    """Catalogue, sequences and counts as of one day (or all data if as_of is None)."""

    items: pd.DataFrame  # canonical items, sorted by item_id: row i = embedding row i
    sequences: list[np.ndarray]  # per user, item rows of their engagements in time order
    counts: pd.DataFrame  # item_id, exposures, interactions; aligned with `items`
    source: str
    as_of: dt.date | None  # catalogue day (items first seen on or before it)
    events_through: dt.date | None  # last day of events used
    held_out_events: int  # validation/test events excluded (pinned split)
    fingerprint: str  # content hash of everything above

    @property
    def item_ids(self) -> np.ndarray:
        """(N,) item ids in row order."""
        return self.items["item_id"].to_numpy()


@contextlib.contextmanager
def open_tables(
    data: Path | str, as_of: dt.date | None, held_out: pd.Series | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection with views `sid_items` (catalogue as of the day) and
    `train_events` (events with their UTC `day`, minus held-out ones: the folder's pinned
    `split.parquet`, or the event ids `held_out` names)."""
    data = Path(data)
    if not data.exists():
        raise FileNotFoundError(f"tokenizer input not found: {data}")
    day = f"DATE '{as_of.isoformat()}'" if as_of else "NULL"
    if data.is_file():
        with Warehouse(data).connect(read_only=True) as con:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(
                f"CREATE TEMP VIEW items_asof AS SELECT * FROM items "
                f"WHERE {day} IS NULL OR first_seen <= {day}"
            )
            if held_out is not None and len(held_out):
                con.register("held_out_ids", pd.DataFrame({"event_id": held_out.astype(str)}))
                con.execute("CREATE TEMP VIEW holdout AS SELECT event_id FROM held_out_ids")
            else:
                con.execute(
                    "CREATE TEMP VIEW holdout AS SELECT NULL::VARCHAR AS event_id WHERE false"
                )
            _train_view(con, "events")
            yield con
        return
    items = data / "items.parquet"
    if not items.exists():
        raise FileNotFoundError(f"{data} lacks items.parquet (canonical tables expected)")
    files = (
        [data / "events.parquet"]
        if (data / "events.parquet").exists()
        else sorted((data / "events").glob("*.parquet"))
    )
    if not files:
        raise FileNotFoundError(f"{data} lacks events.parquet or events/*.parquet")
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        listed = ", ".join(f"'{f}'" for f in files)
        con.execute(
            f"CREATE VIEW items_asof AS SELECT * FROM read_parquet('{items}') "
            f"WHERE {day} IS NULL OR first_seen <= {day}"
        )
        con.execute(
            f"CREATE VIEW events_all AS SELECT *, CAST(ts AS DATE) AS day "
            f"FROM read_parquet([{listed}], union_by_name = true)"
        )
        split = data / "split.parquet"
        con.execute(
            f"CREATE VIEW holdout AS SELECT event_id FROM read_parquet('{split}')"
            if split.exists()
            else "CREATE VIEW holdout AS SELECT NULL::VARCHAR AS event_id WHERE false"
        )
        _train_view(con, "events_all")
        yield con
    finally:
        con.close()


def _train_view(con: duckdb.DuckDBPyConnection, events: str) -> None:
    con.execute(
        f"CREATE TEMP VIEW train_events AS SELECT * FROM {events} "
        "WHERE event_id NOT IN (SELECT event_id FROM holdout)"
    )
    con.execute("CREATE TEMP VIEW sid_items AS SELECT * FROM items_asof")


def load_tokenizer_data(
    data: Path | str,
    as_of: dt.date | None = None,
    events_through: dt.date | None = None,
    held_out: pd.Series | None = None,
) -> TokenizerData:
    """Read catalogue, engagement sequences and counts from a warehouse or a parquet folder.

    as_of: catalogue day (None = every item); events_through: last event day used
    (default as_of; the daily pipeline passes the day before, so day d's engagements,
    which the retriever evaluates on, never shape day d's SIDs); held_out: event ids of a
    warehouse to leave out (the leave-one-out protocol's validation and test engagements).
    """
    if events_through is None:
        events_through = as_of
    elif as_of is not None and events_through > as_of:
        raise ValueError(f"events_through {events_through} is after the catalogue day {as_of}")
    with open_tables(data, as_of, held_out) as con:
        items = con.execute("SELECT * FROM sid_items ORDER BY item_id").df()
        if items.empty:
            raise ValueError(f"{data}: no items first seen on or before {as_of}")
        counts = (
            item_event_counts(con, events_through).set_index("item_id").reindex(items["item_id"])
        )
        counts = counts.fillna(0).astype("int64").reset_index()
        kinds = ", ".join(f"'{k}'" for k in ENGAGEMENTS)
        ev = con.execute(
            f"SELECT user_id, item_id FROM train_events WHERE event_type IN ({kinds}) "
            "AND (? IS NULL OR day <= ?) AND item_id IN (SELECT item_id FROM sid_items) "
            "ORDER BY user_id, ts, event_id",
            [events_through, events_through],
        ).df()
        held_out = con.execute("SELECT count(*) FROM holdout").fetchone()[0]
    rows = pd.Index(items["item_id"]).get_indexer(ev["item_id"])  # (E,)
    users = ev["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else []
    sequences = []
    for seq in np.split(rows, starts[1:]) if len(rows) else []:
        keep = np.r_[True, seq[1:] != seq[:-1]]  # click -> cart -> purchase of one item: once
        sequences.append(seq[keep].astype(np.int64))
    h = hashlib.sha1()
    h.update("\n".join(items["item_id"]).encode())
    h.update(pd.util.hash_pandas_object(items, index=False).to_numpy().tobytes())
    h.update(counts[["exposures", "interactions"]].to_numpy().tobytes())
    h.update(rows.astype(np.int64).tobytes())
    h.update(f"{as_of}/{events_through}".encode())
    return TokenizerData(
        items, sequences, counts, str(data), as_of, events_through, int(held_out), h.hexdigest()
    )
