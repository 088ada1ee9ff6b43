"""Cross-day dependencies are declared: today's SID table and models start from yesterday's
partition, so the UI shows the chain and a backfill orders the days."""

import dagster as dg

from orchestration.definitions import build_definitions
from sidflow.config import load_params


def test_yesterdays_version_is_an_upstream_partition(workdir):
    defs = build_definitions(load_params(overrides={"world.size": "tiny"}))
    graph = defs.resolve_asset_graph()
    for name in ("sid_table", "retriever_model", "ranker_model"):
        key = dg.AssetKey(name)
        assets = graph.assets_def_for_key(key)
        mapping = assets.get_partition_mapping(key)  # its own earlier partition
        assert isinstance(mapping, dg.TimeWindowPartitionMapping), name
        assert (mapping.start_offset, mapping.end_offset) == (-1, -1), name
        day = "2026-01-03"
        upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
            assets.partitions_def.subset_with_partition_keys([day]),
            assets.partitions_def,
            assets.partitions_def,
        ).partitions_subset.get_partition_keys()
        assert list(upstream) == ["2026-01-02"], name
