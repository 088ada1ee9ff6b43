"""Readers of user data folders (parquet, CSV, RecBole, Amazon 5-core) on small hand-made files."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ingestion.canonical import SCHEMAS
from ingestion.readers import SourceError, SourceTables, read_source
from sidflow.config import DataParams

DAY = 1_388_534_400  # 2014-01-01 00:00:00 UTC, epoch seconds
REVIEW = {"event_type": "purchase", "scene": "review"}


def _check_canonical(tables: SourceTables) -> None:
    for table in ("events", "items", "users"):
        assert list(getattr(tables, table).columns) == [c.name for c in SCHEMAS[table]]
    assert str(tables.events["ts"].dtype) == "datetime64[ns, UTC]"
    assert str(tables.events["position"].dtype) == "Int64"
    assert tables.events["price"].dtype == "float64"


def _prefix(rel: str) -> str:
    return hashlib.sha1(rel.encode()).hexdigest()[:8]


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


# ---------------------------------------------------------------- parquet and CSV folders


def test_parquet_folder_in_canonical_names(tmp_path):
    ts = pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:00", "2024-01-02 12:00"], utc=True)
    events = pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3"],
            "ts": ts,
            "user_id": ["u1", "u2", "u1"],
            "item_id": ["i1", "i2", "i2"],
            "request_id": ["r1", None, "r3"],
            "scene": ["feed", "search", "feed"],
            "event_type": ["exposure", "click", "wishlist"],  # unknown types pass through
            "position": pd.array([1, None, 3], dtype="Int64"),
            "price": [9.5, None, 2.0],
        }
    )
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i2", "i2"],  # a duplicate is kept: the contract's business
            "title": ["One", "Two", "Two again"],
            "cat_l1": ["A", None, None],
            "cat_l2": ["B", None, None],
            "cat_l3": [None, None, None],
            "brand": ["x", "y", "y"],
            "seller": ["s", "s", "s"],
            "price": [9.5, 2.0, 2.0],
            "first_seen": [dt.date(2023, 12, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 2)],
        }
    )
    users = pd.DataFrame(
        {"user_id": ["u1", "u2"], "age_bucket": ["18-24", None], "region": ["north", "south"]}
    )
    events.to_parquet(tmp_path / "events.parquet")
    items.to_parquet(tmp_path / "items.parquet")
    users.to_parquet(tmp_path / "users.parquet")

    got = read_source(DataParams(source="parquet", path=tmp_path))

    _check_canonical(got)
    assert got.name == "parquet"
    pd.testing.assert_frame_equal(got.events, events)
    assert got.items["title"].tolist() == ["One", "Two", "Two again"]
    assert got.items["first_seen"].tolist() == items["first_seen"].tolist()
    assert got.users.to_dict("records") == users.to_dict("records")
    assert got.files == [tmp_path / f"{t}.parquet" for t in ("events", "items", "users")]
    assert got.report["rows"] == {"events": 3, "items": 3, "users": 2}
    assert got.report["derived"] == [] and got.report["unparsed_ts"] == 0
    assert got.report["missing_metadata"]["cat_l3"] == 3


def test_csv_with_column_mapping_epoch_seconds_and_constants(tmp_path):
    _write(
        tmp_path / "events.csv",
        "customer,sku,when,amount,rating\n"
        f"u1,i1,{DAY + 10},3.5,5\n"
        f"u2,i2,{DAY + 86400}.5,abc,4\n"  # float seconds; a price that is not a number
        f"u1,i2,{DAY + 86400},,3\n"
        "u3,i3,,1.0,1\n",  # no timestamp: NaT, quarantined by the contract
    )
    data = DataParams(
        source="csv",
        path=tmp_path,
        columns={"user_id": "customer", "item_id": "sku", "ts": "when", "price": "amount"},
        ts_unit="s",
        constants=REVIEW,
    )
    got = read_source(data, name="shop")

    _check_canonical(got)
    ev = got.events
    assert got.name == "shop" and len(ev) == 4
    assert ev["ts"].iloc[0] == pd.Timestamp(DAY + 10, unit="s", tz="UTC")
    assert ev["ts"].iloc[1] == pd.Timestamp((DAY + 86400) * 1000 + 500, unit="ms", tz="UTC")
    assert ev["ts"].isna().tolist() == [False, False, False, True]
    assert got.report["unparsed_ts"] == 0  # an empty cell is null, not unparsed
    assert ev["price"].iloc[0] == 3.5 and ev["price"].iloc[1:3].isna().all()
    assert got.report["unparsed_values"] == {"events.price": 1}
    assert set(ev["event_type"]) == {"purchase"} and set(ev["scene"]) == {"review"}
    assert ev["request_id"].isna().all() and ev["position"].isna().all()
    assert ev["event_id"].tolist() == [f"{_prefix('events.csv')}-{k:09d}" for k in range(4)]
    assert got.report["ignored_columns"] == {"events": ["rating"]}
    # No items / users tables: the log's distinct ids, first_seen from the first event.
    assert got.items["item_id"].tolist() == ["i1", "i2", "i3"]
    assert got.items.drop(columns=["item_id", "first_seen"]).isna().all().all()
    day1, day2 = dt.date(2014, 1, 1), dt.date(2014, 1, 2)
    assert got.items["first_seen"].tolist() == [day1, day2, day1]  # i3: the source's first day
    assert got.users["user_id"].tolist() == ["u1", "u2", "u3"]
    assert got.report["derived"] == ["event_id", "items", "users", "first_seen"]


def test_epoch_milliseconds(tmp_path):
    pd.DataFrame(
        {"user_id": [7, 8], "item_id": [1.0, None], "ms": [DAY * 1000 + 250, 10**18]}
    ).to_parquet(tmp_path / "events.parquet")
    data = DataParams(
        source="parquet",
        path=tmp_path,
        columns={"ts": "ms"},
        ts_unit="ms",
        constants={"event_type": "click", "scene": "feed"},
    )
    got = read_source(data)
    assert got.events["ts"].iloc[0] == pd.Timestamp(DAY * 1000 + 250, unit="ms", tz="UTC")
    assert pd.isna(got.events["ts"].iloc[1])  # out of range: NaT, counted
    assert got.report["unparsed_ts"] == 1
    # Numeric ids become strings, without a float's '.0'.
    assert got.events["user_id"].tolist() == ["7", "8"]
    assert got.events["item_id"].tolist() == ["1", None]


def test_item_and_user_tables_with_their_own_mapping(tmp_path):
    _write(
        tmp_path / "events.csv",
        "user_id,item_id,ts,event_type,scene,position\n"
        "u1,i1,2024-01-01,click,feed,2\n"
        "u1,i2,2024-01-02,click,feed,2.5\n",  # not a whole position: null, counted
    )
    _write(
        tmp_path / "items.csv", "sku,name,added,cost\ni1,One,2023-05-01,3\ni2,Two,oops,\ni9,,,\n"
    )
    _write(tmp_path / "users.csv", "user_id,age\nu1,18-24\nu1,25-34\n")
    data = DataParams(
        source="csv",
        path=tmp_path,
        item_columns={"item_id": "sku", "title": "name", "first_seen": "added", "price": "cost"},
        user_columns={"age_bucket": "age"},
    )
    got = read_source(data)

    _check_canonical(got)
    assert got.events["position"].tolist() == [2, pd.NA]
    items = got.items.set_index("item_id")
    assert items["title"].tolist() == ["One", "Two", None] and items.loc["i1", "price"] == 3.0
    # first_seen as given; where missing or unparsable, the item's first event day
    # (an item never in an event: the source's first day).
    assert items["first_seen"].tolist() == [
        dt.date(2023, 5, 1),
        dt.date(2024, 1, 2),
        dt.date(2024, 1, 1),
    ]
    assert got.users["age_bucket"].tolist() == ["18-24", "25-34"]  # duplicates kept
    assert got.report["unparsed_values"] == {"events.position": 1, "items.first_seen": 1}
    assert got.report["derived"] == ["event_id", "first_seen"]


def test_numeric_ts_without_ts_unit_names_file_column_and_setting(tmp_path):
    pd.DataFrame({"user_id": ["u1"], "item_id": ["i1"], "time": [DAY]}).to_parquet(
        tmp_path / "events.parquet"
    )
    data = DataParams(source="parquet", path=tmp_path, columns={"ts": "time"}, constants=REVIEW)
    with pytest.raises(SourceError, match="data.ts_unit") as err:
        read_source(data)
    assert err.value.file == str(tmp_path / "events.parquet") and err.value.column == "time"
    assert "events.parquet, column 'time'" in str(err.value)
    # The same in CSV, where the numbers are strings.
    _write(tmp_path / "csv" / "events.csv", f"user_id,item_id,ts\nu1,i1,{DAY}\n")
    with pytest.raises(SourceError, match=r"events\.csv, column 'ts'.*data\.ts_unit: s"):
        read_source(DataParams(source="csv", path=tmp_path / "csv", constants=REVIEW))


def test_missing_user_column_says_which_setting_to_set(tmp_path):
    _write(tmp_path / "events.csv", "customer,item_id,ts\nu1,i1,2024-01-01T10:00:00Z\n")
    with pytest.raises(SourceError, match="data.columns.user_id") as err:
        read_source(DataParams(source="csv", path=tmp_path, constants=REVIEW))
    assert err.value.column == "user_id" and "customer" in str(err.value)
    # A mapped column that is not in the file is named too.
    with pytest.raises(SourceError, match=r"column 'buyer'.*data\.columns\.user_id"):
        read_source(
            DataParams(source="csv", path=tmp_path, columns={"user_id": "buyer"}, constants=REVIEW)
        )


def test_event_type_and_scene_must_come_from_the_log_or_a_constant(tmp_path):
    _write(tmp_path / "events.csv", "user_id,item_id,ts\nu1,i1,2024-01-01\n")
    with pytest.raises(SourceError, match="data.constants.event_type"):
        read_source(DataParams(source="csv", path=tmp_path, constants={"scene": "feed"}))
    with pytest.raises(SourceError, match="data.constants.scene"):
        read_source(DataParams(source="csv", path=tmp_path, constants={"event_type": "click"}))
    with pytest.raises(SourceError, match="not one of data.scenes"):
        read_source(
            DataParams(
                source="csv", path=tmp_path, constants={"event_type": "click", "scene": "shelf"}
            )
        )


def test_csv_bad_lines_are_skipped_and_reported_every_other_row_kept(tmp_path):
    rows = [
        b"user_id,item_id,ts,title_note\n",
        b"u1,i1,2024-01-01T00:00:00Z,plain\n",
        b'u2,i2,2024-01-01T01:00:00Z,"two\nlines"\n',  # one record over physical lines 3-4
        b"u3,caf\xe9,2024-01-01T02:00:00Z,latin-1\n",  # line 5: not UTF-8
        b"u4,i4\n",  # line 6: short
        b"\n",  # blank lines are not records
        b"u5,i5,not a time,x\n",  # kept: NaT for the contract
        b"u6,i6,2024-01-02T00:00:00+02:00,last",  # no final newline
    ]
    _write(tmp_path / "events" / "2024-01.csv", b"".join(rows))
    got = read_source(DataParams(source="csv", path=tmp_path, constants=REVIEW))

    ev = got.events
    assert ev["user_id"].tolist() == ["u1", "u2", "u5", "u6"]
    assert got.report["ignored_columns"] == {"events": ["title_note"]}
    skipped = got.report["skipped_lines"]
    assert [(s["file"], s["line"]) for s in skipped] == [
        ("events/2024-01.csv", 5),
        ("events/2024-01.csv", 6),
    ]
    assert "UTF-8" in skipped[0]["reason"] and skipped[0]["raw"] == (
        "u3,caf\\xe9,2024-01-01T02:00:00Z,latin-1"
    )
    assert "2 fields" in skipped[1]["reason"] and skipped[1]["raw"] == "u4,i4"
    # Record numbers count the skipped records, so fixing a line never renames the others.
    prefix = _prefix("events/2024-01.csv")
    assert ev["event_id"].tolist() == [f"{prefix}-{k:09d}" for k in (0, 1, 4, 5)]
    assert got.report["unparsed_ts"] == 1
    assert ev["ts"].iloc[3] == pd.Timestamp("2024-01-01T22:00:00Z")  # +02:00 -> UTC


def test_csv_unclosed_quote_costs_one_line(tmp_path):
    _write(
        tmp_path / "events.csv",
        'user_id,item_id,ts\nu1,"i1,2024-01-01\nu2,i2,2024-01-02\nu3,i3,2024-01-03\n',
    )
    got = read_source(DataParams(source="csv", path=tmp_path, constants=REVIEW))
    assert got.events["user_id"].tolist() == ["u2", "u3"]
    assert [s["line"] for s in got.report["skipped_lines"]] == [2]


def test_events_split_over_partition_folders(tmp_path):
    def part(day: str, users: list[str]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "user_id": users,
                "item_id": ["i1"] * len(users),
                "ts": [f"{day}T0{k}:00:00" for k in range(len(users))],
            }
        )

    for day in ("2014-07-24", "2014-07-25"):
        (tmp_path / f"events/day={day}").mkdir(parents=True)
    part("2014-07-25", ["u3"]).to_parquet(tmp_path / "events/day=2014-07-25/part-0.parquet")
    part("2014-07-24", ["u1", "u2"]).to_parquet(tmp_path / "events/day=2014-07-24/part-0.parquet")
    part("2014-07-24", ["u4"]).to_parquet(tmp_path / "events/day=2014-07-24/part-1.parquet")
    _write(tmp_path / "events/_SUCCESS", b"")
    _write(tmp_path / "events/.tmp/part-9.parquet", b"half written")  # hidden: not read
    got = read_source(DataParams(source="parquet", path=tmp_path, constants=REVIEW))

    assert got.report["files"] == [
        "events/day=2014-07-24/part-0.parquet",
        "events/day=2014-07-24/part-1.parquet",
        "events/day=2014-07-25/part-0.parquet",
    ]
    assert got.events["user_id"].tolist() == ["u1", "u2", "u4", "u3"]
    assert got.events["event_id"].is_unique and len(got.events) == 4
    assert got.events["ts"].dt.date.astype(str).tolist() == ["2014-07-24"] * 3 + ["2014-07-25"]
    assert got.events["ts"].dt.tz is not None  # naive datetime strings are read as UTC


def test_folder_errors(tmp_path):
    with pytest.raises(SourceError, match="no interaction log"):
        read_source(DataParams(source="csv", path=tmp_path))
    with pytest.raises(ValueError, match="world"):
        read_source(DataParams(source="world"))


# ---------------------------------------------------------------- RecBole atomic files

INTER = (
    "uid:token\titem_id:token\trating:float\ttimestamp:float\n"
    f"u1\t10\t5.0\t{DAY}\n"
    f"u2\t11\t3.0\t{DAY + 86400}.0\n"
    f"u1\t11\t4.0\t{DAY + 90000}\n"
)


def test_recbole_inter_and_item(tmp_path):
    _write(tmp_path / "toys.inter", INTER)
    _write(
        tmp_path / "toys.item",
        "item_id:token\ttitle:token_seq\tcategories:token_seq\tbrand:token\tprice:float\t"
        "sales_rank:float\n"
        "10\tWooden Puzzle\tToys Puzzles Jigsaw\tAcme\t9.5\t12\n"
        '11\t"Robot, ""Kit"""\t\'Toys & Games\', \'Robots\'\t\t\t3\n',
    )
    got = read_source(DataParams(source="recbole", path=tmp_path, columns={"user_id": "uid"}))

    _check_canonical(got)
    ev = got.events
    assert ev["user_id"].tolist() == ["u1", "u2", "u1"] and ev["item_id"].tolist() == [
        "10",
        "11",
        "11",
    ]
    assert ev["ts"].iloc[1] == pd.Timestamp(DAY + 86400, unit="s", tz="UTC")
    assert set(ev["event_type"]) == {"purchase"} and set(ev["scene"]) == {"review"}
    it = got.items.set_index("item_id")
    assert it.loc["10", ["cat_l1", "cat_l2", "cat_l3"]].tolist() == ["Toys", "Puzzles", "Jigsaw"]
    assert it.loc["11", ["cat_l1", "cat_l2"]].tolist() == ["Toys & Games", "Robots"]
    assert pd.isna(it.loc["11", "cat_l3"]) and pd.isna(it.loc["11", "price"])
    assert it.loc["11", "title"] == 'Robot, "Kit"' and it.loc["10", "price"] == 9.5
    assert it["first_seen"].tolist() == [dt.date(2014, 1, 1), dt.date(2014, 1, 2)]
    assert got.report["ignored_columns"] == {"events": ["rating"], "items": ["sales_rank"]}
    assert got.report["dataset"] == "toys" and got.report["ts_unit"] == "s"
    assert got.files == [tmp_path / "toys.inter", tmp_path / "toys.item"]


def test_recbole_inter_alone_and_overrides(tmp_path):
    _write(tmp_path / "toys.inter", INTER)
    data = DataParams(
        source="recbole",
        path=tmp_path,
        columns={"user_id": "uid"},
        constants={"event_type": "click", "scene": "feed"},
    )
    got = read_source(data)
    assert got.items["item_id"].tolist() == ["10", "11"]
    assert got.users["user_id"].tolist() == ["u1", "u2"]
    assert set(got.events["event_type"]) == {"click"} and set(got.events["scene"]) == {"feed"}
    with pytest.raises(SourceError, match="data.columns.user_id"):
        read_source(DataParams(source="recbole", path=tmp_path))  # the file says uid
    _write(tmp_path / "toys.test.inter", INTER)
    with pytest.raises(SourceError, match="exactly one"):
        read_source(data)


# ---------------------------------------------------------------- Amazon 5-core layout

# Toys: sorted ASINs A009 B001 B002 B003 = PLRec/TiCoSeRec ids 1..4; P5 ids differ.
P5_ITEMS = {"B003": "1", "B001": "2", "B002": "3", "A009": "4"}
TICO = {
    1: [(2, 0), (3, 1), (4, 1)],
    2: [(1, 0), (2, 2), (4, 3)],
    3: [(3, 1), (1, 2), (2, 3), (4, 4)],
}
ITEM_FILE = (
    "item_id:token\ttitle:token\tsales_type:token\tsales_rank:float\tcategories:token_seq\t"
    "price:float\tbrand:token\n"
    "1\tPuzzle &amp; Co\tToys\t1.0\t'Toys & Games', 'Puzzles'\t9.99\tAcme\n"
    "2\tRobot\tToys\t\t'Toys & Games', 'Robots', 'Kits'\t\tBotCo\n"
    "3\t\tToys\t\t'Toys & Games'\t5.0\t\n"
    "4\tBall\tToys\t\t'Toys & Games', 'Sports'\t3.5\tAcme\n"
)


def _toys_folder(root: Path, metadata: bool = True) -> Path:
    asins = sorted(P5_ITEMS)
    users = {"1": "UA", "2": "UB", "3": "UC"}
    maps = {
        "user2id": {v: k for k, v in users.items()},
        "id2user": users,
        "item2id": P5_ITEMS,
        "id2item": {v: k for k, v in P5_ITEMS.items()},
    }
    _write(root / "p5-datamaps/datamaps.json", json.dumps(maps))
    items = "\n".join(f"{u} " + " ".join(str(i) for i, _ in seq) for u, seq in TICO.items())
    times = "\n".join(
        f"{u} " + " ".join(str(DAY + d * 86400) for _, d in seq) for u, seq in TICO.items()
    )
    p5 = "\n".join(
        f"{u} " + " ".join(P5_ITEMS[asins[i - 1]] for i, _ in seq) for u, seq in TICO.items()
    )
    _write(root / "ticoserec/Toys_item_org_rank.txt", items + "\n")
    _write(root / "ticoserec/Toys_time_org_rank.txt", times + "\n")
    _write(root / "s3rec/Toys.txt", p5 + "\n")
    if metadata:
        _write(root / "plrec/item_description.csv", ITEM_FILE)
    return root


def test_amazon_like_category_found_by_pattern(tmp_path):
    folder = _toys_folder(tmp_path / "toys")
    got = read_source(DataParams(source="amazon", path=folder))

    _check_canonical(got)
    assert got.report["category"] == "Toys"
    assert (len(got.events), len(got.items), len(got.users)) == (10, 4, 3)
    assert got.events.groupby("user_id")["item_id"].apply(list).to_dict() == {
        "UA": ["B001", "B002", "B003"],
        "UB": ["A009", "B001", "B003"],
        "UC": ["B002", "A009", "B001", "B003"],
    }
    items = got.items.set_index("item_id")
    assert items.loc["A009", "title"] == "Puzzle & Co" and items.loc["B001", "cat_l3"] == "Kits"
    missing = got.report["missing_metadata"]
    assert (missing["title"], missing["price"], missing["brand"], missing["cat_l2"]) == (1, 1, 1, 1)
    assert len(got.files) == 5 and all(p.is_file() for p in got.files)
    # A second category in the same folder is an error that names both.
    shutil.copy(folder / "ticoserec/Toys_item_org_rank.txt", folder / "Games_item_org_rank.txt")
    with pytest.raises(SourceError, match=r"several categories \['Games', 'Toys'\]"):
        read_source(DataParams(source="amazon", path=folder))


def test_amazon_like_category_without_item_metadata(tmp_path):
    got = read_source(DataParams(source="amazon", path=_toys_folder(tmp_path, metadata=False)))
    assert (len(got.events), len(got.items), len(got.users)) == (10, 4, 3)
    assert got.items["item_id"].tolist() == ["A009", "B001", "B002", "B003"]
    missing = got.report["missing_metadata"]
    assert missing["title"] == missing["price"] == missing["cat_l1"] == 4
    assert got.events["price"].isna().all() and len(got.files) == 4


def test_real_beauty_through_read_source(amazon_path):
    got = read_source(DataParams(source="amazon", path=amazon_path), name="amazon-beauty")
    assert (len(got.events), len(got.items), len(got.users)) == (198_502, 12_101, 22_363)
    assert got.report["category"] == "Beauty" and got.name == "amazon-beauty"
    assert got.report["missing_metadata"]["price"] == 12_101 - 11_516
