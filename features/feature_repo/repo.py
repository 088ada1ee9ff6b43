"""sidflow's Feast objects, as `feast apply` reads them (module-level names).

The definitions are built in `features/definitions.py` from `features/schema.py` and the
`features` block of params.yaml (windows, TTLs); the parquet sources point into the working
folder ($SIDFLOW_WORKDIR, else params.yaml's `workdir`). Feature tables are written by
`sidflow features --day D` or the Dagster asset `feature_tables`.
"""

import sidflow  # noqa: F401  (telemetry settings)
from features.definitions import build_repo
from sidflow.config import load_params
from sidflow.workdir import Workdir

_params = load_params()
_repo = build_repo(Workdir(_params.workdir).features_dir, _params.features)

# Entities: who and what the features describe (join keys user_id, item_id, cat_l2, ...).
user, item, cat_l2, cat_l3, brand, seller = _repo.entities.values()

# Sources: one folder of daily parquet files per view.
(
    item_stats_source,
    user_stats_source,
    user_cat_l2_source,
    user_cat_l3_source,
    user_brand_source,
    user_seller_source,
) = _repo.sources.values()

# Feature views: item exposure stats, user stats, and the u2i cross stats (DIG §3.1).
item_stats, user_stats, user_cat_l2, user_cat_l3, user_brand, user_seller = _repo.views.values()

# Feature services, one per consumer.
ranker, retriever, sid_weights = _repo.services.values()
