"""Assemble a UniRec retriever from settings, the catalogue, users and a SID table."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from models.retriever.model import UniRec, UniRecConfig
from models.retriever.paths import ItemPaths, build_item_paths, sid_columns
from models.retriever.trie import PathTrie
from models.space import BEHAVIOURS, FeatureSpace, task_names
from sidflow.config import RetrieverModelParams


@dataclass
class RetrieverParts:
    """The pieces a training or serving run needs, built consistently."""

    space: FeatureSpace
    paths: ItemPaths
    trie: PathTrie
    model: UniRec


def build_retriever(
    params: RetrieverModelParams,
    items: pd.DataFrame,
    users: pd.DataFrame,
    sid_table: pd.DataFrame,
    scenes: list[str],
    codebook_size: int | None = None,
    integrated_dim: int = 0,
) -> RetrieverParts:
    """Feature space, item paths, trie and an initialised model for these settings
    (`integrated_dim`: the width of the SID version's item vectors, for `ikd`)."""
    bad = [f for f in params.profile_fields if f not in ("user_id", "age_bucket", "region")]
    if bad:
        raise ValueError(f"retriever.model.profile_fields: unknown user field(s) {bad}")
    space = FeatureSpace.build(items, users, scenes)
    paths = build_item_paths(space.items, sid_table, params.chain, codebook_size)
    k = codebook_size or int(sid_table[sid_columns(sid_table)].to_numpy().max()) + 1
    cfg = UniRecConfig(
        path=paths.spec,
        tasks=task_names(scenes),
        field_vocab=space.field_sizes,
        n_event_types=len(BEHAVIOURS),
        sid_vocab=k,
        model=params,
        integrated_dim=integrated_dim if params.ikd else 0,
    )
    model = UniRec(
        cfg,
        space.item_fields(params.seq_fields),
        space.item_sids(sid_table),
        torch.from_numpy(paths.codes),
        torch.from_numpy(space.ids("item_id", paths.item_ids)),
    )
    return RetrieverParts(space, paths, PathTrie(paths.codes, paths.spec.vocab_sizes), model)
