"""The one settings model: `params.yaml` parsed and checked by pydantic.

Every entry point (CLI, Dagster, DVC stages, tests) loads settings through
`load_params`, so a wrong key or value fails at start with a message that names it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PARAMS_PATH = PROJECT_ROOT / "params.yaml"


class ParamsError(ValueError):
    """Raised when params.yaml is missing, unparsable or invalid; the message names the key."""


class Strict(BaseModel):
    """Base for every settings block: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class WorldSize(Strict):
    """Size preset of the synthetic world."""

    users: int = Field(gt=0)
    items: int = Field(gt=0, description="items in the catalogue on the first day")
    new_items_per_day: int = Field(ge=0)
    days: int = Field(gt=0)
    requests_per_user_day: float = Field(gt=0)


class WorldParams(Strict):
    """Synthetic e-commerce world: seed, start day, size presets and the one in use."""

    seed: int = 7
    start_date: dt.date = dt.date(2026, 1, 1)
    size: str = "small"
    items_per_request: int = Field(10, gt=0, le=50)
    sizes: dict[str, WorldSize]

    @model_validator(mode="after")
    def _size_is_known(self) -> WorldParams:
        if self.size not in self.sizes:
            raise ValueError(f"world.size '{self.size}' is not one of {sorted(self.sizes)}")
        return self

    @property
    def preset(self) -> WorldSize:
        """The size preset selected by `world.size`."""
        return self.sizes[self.size]

    def days(self) -> list[dt.date]:
        """Every simulated day of the selected preset, in order."""
        return [self.start_date + dt.timedelta(days=i) for i in range(self.preset.days)]


EVENT_FIELDS = (
    "event_id",
    "ts",
    "user_id",
    "item_id",
    "request_id",
    "scene",
    "event_type",
    "position",
    "price",
)  # the canonical events columns (ingestion/canonical.py)
ITEM_FIELDS = (
    "item_id",
    "title",
    "cat_l1",
    "cat_l2",
    "cat_l3",
    "brand",
    "seller",
    "price",
    "first_seen",
)
USER_FIELDS = ("user_id", "age_bucket", "region")
DEFAULT_AMAZON = Path("../shared/data/amazon-beauty-2014-5core")  # relative to params.yaml


class DataParams(Strict):
    """Which source feeds the pipeline, how its files name things, and its daily calendar.

    Sources: `world` (the embedded synthetic world), `parquet` and `csv` (folders with an
    interaction log and optional item / user tables), `amazon` (an Amazon 2014 5-core
    category laid out like `../shared/data/amazon-beauty-2014-5core`) and `recbole` (RecBole
    atomic files, `<name>.inter` and optional `<name>.item`).
    """

    source: Literal["world", "parquet", "csv", "amazon", "recbole"] = "world"
    path: Path | None = None  # the source's folder; amazon: the Beauty folder beside the repo
    # canonical field -> the source's column, only for those named differently
    columns: dict[str, str] = {}
    item_columns: dict[str, str] = {}
    user_columns: dict[str, str] = {}
    ts_unit: Literal["datetime", "s", "ms"] = "datetime"  # epoch seconds / milliseconds
    constants: dict[str, str] = {}  # fields the log does not carry, e.g. {event_type: purchase}
    # The daily calendar: days from `daily_from` on are daily Dagster partitions; every earlier
    # day lands as one history batch. null = the source's last `daily_days` days.
    daily_from: dt.date | None = None
    daily_days: int = Field(7, ge=1)
    scenes: list[str] = ["feed", "search", "similar", "review"]

    @model_validator(mode="after")
    def _mapping_names_fields(self) -> DataParams:
        for key, fields in (
            ("columns", EVENT_FIELDS),
            ("constants", EVENT_FIELDS),
            ("item_columns", ITEM_FIELDS),
            ("user_columns", USER_FIELDS),
        ):
            unknown = sorted(set(getattr(self, key)) - set(fields))
            if unknown:
                raise ValueError(f"data.{key}: {unknown} are not canonical fields {list(fields)}")
        both = sorted(set(self.columns) & set(self.constants))
        if both:
            raise ValueError(f"data.columns and data.constants both set {both}")
        if self.source in ("parquet", "csv", "recbole") and self.path is None:
            raise ValueError(f"data.path must name the folder of the {self.source} source")
        return self


STRING_FIELDS = tuple(
    dict.fromkeys(
        f
        for f in (*EVENT_FIELDS, *ITEM_FIELDS, *USER_FIELDS)
        if f not in ("ts", "position", "price", "first_seen")
    )
)  # the canonical string columns of events, items and users
NUMBER_FIELDS = ("position", "price")  # events.position, events.price, items.price


class ContractParams(Strict):
    """The data contracts (data_contracts/, docs/data-quality.md): limits on values, when a
    batch is quarantined whole, and when a day stops at the data gate."""

    # a batch whose share of rows breaking a rule exceeds this is quarantined whole; the day
    # stops only when that is the source's own batch
    max_quarantine_fraction: float = Field(0.05, ge=0, le=1)
    min_valid_rows: int = Field(1, ge=0)  # a day (or the history) with fewer good rows stops
    # characters a string value may have, per canonical column; `default` for the others
    max_length: dict[str, int] = {"default": 200, "user_id": 64, "item_id": 64, "title": 1000}
    # inclusive [low, high] of every number column
    ranges: dict[str, tuple[float, float]] = {"price": (0.0, 1_000_000.0), "position": (0, 1000)}
    examples: int = Field(20, ge=0)  # quarantined rows listed in the CLI's JSON and Dagster

    @model_validator(mode="after")
    def _limits_name_columns(self) -> ContractParams:
        unknown = sorted(set(self.max_length) - {"default", *STRING_FIELDS})
        if unknown:
            raise ValueError(
                f"contracts.max_length: {unknown} are not string columns {list(STRING_FIELDS)}"
            )
        if "default" not in self.max_length:
            raise ValueError("contracts.max_length needs a `default` length")
        if any(n < 1 for n in self.max_length.values()):
            raise ValueError("contracts.max_length: every length must be >= 1")
        if sorted(self.ranges) != sorted(NUMBER_FIELDS):
            raise ValueError(f"contracts.ranges must give exactly {list(NUMBER_FIELDS)}")
        for column, (low, high) in self.ranges.items():
            if low > high:
                raise ValueError(f"contracts.ranges.{column}: {low} > {high}")
        return self

    def length(self, column: str) -> int:
        """The longest value allowed in string column `column`."""
        return self.max_length.get(column, self.max_length["default"])


class RetrieverModelParams(Strict):
    """UniRec generative retriever architecture (unirec §3.3-3.5); every part switchable."""

    chain: list[str] = ["cat_l2", "cat_l3"]  # Chain-of-Attribute (§3.3); [] = direct SID
    task_bos: bool = True  # Task-Conditioned BOS (§3.4); False = one fixed BOS
    task_gate: bool = True  # MMoE with one gate per task (§3.5.2 eq. 15); False = one shared gate
    content_summary: bool = True  # hashed Cartesian pairs of path tokens (§3.4 eq. 7)
    cs_pairs: list[tuple[str, str]] = [
        ("cat_l2", "s0"),
        ("cat_l2", "s1"),
        ("cat_l3", "s0"),
        ("cat_l3", "s1"),
        ("s0", "s1"),
    ]
    cs_hashes: int = Field(3, ge=1, le=3)  # M hash functions: x+y, x*y, p1*x+p2*y
    d_hash: int = Field(32, gt=0)
    capacity_sids: bool = True  # False = plain RQ-KMeans SIDs (ablation / TIGER-like)
    self_attention: bool = True  # causal self-attention over the decoding path
    encoder_layers: int = Field(0, ge=0)  # self-attention blocks over the history (0 = as §3.5)
    # SASRec-style causal self-attention blocks over the behaviour sequence (0 = as §3.5)
    seq_layers: int = Field(0, ge=0)
    # weight of the all-position next-item cross-entropy: every causal sequence state predicts
    # the next item through the item head's output vectors (needs seq_layers and item_head)
    next_item_weight: float = Field(0.0, ge=0)
    d_model: int = Field(128, gt=0)
    n_layers: int = Field(3, gt=0)  # D
    n_heads: int = Field(8, gt=0)
    n_experts: int = Field(4, gt=0)  # MMoE SwiGLU experts
    ffn_mult: float = Field(2.0, gt=0)  # expert hidden = ffn_mult * d_model
    d_field: int = Field(32, gt=0)  # embedding size of each sparse field
    d_prefix: int = Field(16, gt=0)  # rank-head prefix embedding per decoded token
    mask_blocks: int = Field(1, ge=1)  # MaskNet blocks per rank head
    history_len: int = Field(20, gt=0)  # T: behaviour sequence length
    mm_len: int = Field(20, ge=0)  # L_mm: history items whose SIDs are appended; 0 = off
    seq_fields: list[str] = ["item_id", "seller", "brand", "cat_l2", "cat_l3"]
    profile_fields: list[str] = ["user_id", "age_bucket", "region"]
    dropout: float = Field(0.0, ge=0, lt=1)  # see params.yaml
    node_dim: int = Field(0, ge=0)  # per-trie-edge output vectors in the rank heads; 0 = off
    trie_softmax: bool = False  # each step's softmax over the trie node's children only
    node_tie: bool = False  # edge vectors also read the input item embeddings below the edge
    item_head: bool = False  # full-catalogue item softmax from the BOS state (item_head.py)
    item_head_weight: float = Field(1.0, ge=0)  # w: beam re-rank by log p_path + w log p_item
    # UNGER §3.4.3 intra-modality knowledge distillation (models/retriever/ikd.py): a learnable
    # summary token after the decoder input, InfoNCE against the target's integrated embedding
    ikd: bool = False
    ikd_weight: float = Field(1.0, ge=0)  # lambda of eq. 12: L = L_GR + lambda * L_IKD
    ikd_temperature: float = Field(0.07, gt=0)  # tau of eq. 11


class RetrieverTrainParams(Strict):
    """Training loop: AdamW, warm-up + cosine decay, clipping (unirec §3.5.4, eq. 19)."""

    lr: float = Field(1e-3, gt=0)  # paper 3e-4 (production scale); 1e-3 for short runs
    weight_decay: float = Field(0.01, ge=0)
    batch_size: int = Field(256, gt=0)
    epochs: float = Field(3.0, gt=0)
    max_steps: int | None = None
    warmup_steps: int = Field(200, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    engagement_weights: dict[str, float] = {"click": 1.0, "cart": 2.0, "purchase": 3.0}
    seed: int = 0
    num_threads: int | None = None  # torch CPU threads; None = torch default
    # Polyak / EMA weight averaging: validation and the returned model use the averaged
    # weights; None = off (the last step's weights)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    # validate every this many steps on the validation split (leave-one-out protocol) and
    # keep the best checkpoint by validation Recall@10; 0 = keep the last step's weights
    eval_every: int = Field(0, ge=0)
    # with eval_every: stop once validation Recall@10 has not improved for this many
    # evaluations in a row (early stopping, as RecBole's stopping_step); 0 = run every step
    patience: int = Field(0, ge=0)


class RetrieverEvalParams(Strict):
    """Evaluation protocol (DESIGN.md): held-out split, beam width, cut-offs, sample cap."""

    # day: day d's engagements are held out; leave_one_out: each user's last engagement
    # through d (models/retriever/protocol.py); auto: leave_one_out without exposures
    protocol: Literal["auto", "day", "leave_one_out"] = "auto"
    beam_size: int = Field(200, gt=0)
    hr_ks: list[int] = [50, 100, 200]
    rank_ks: list[int] = [5, 10, 20]
    max_samples: int | None = 2000
    batch_size: int = Field(16, gt=0)
    valid_samples: int = Field(2000, gt=0)  # validation users decoded per model selection
    valid_beam: int = Field(50, gt=0)  # their beam width
    # the Task BOS held-out and validation samples are decoded with. serving: the behaviour
    # serving asks with (click when the log has clicks, else its main engagement) and the
    # sample's scene, so offline HR is what serving delivers; label: the target's own
    # behaviour, an oracle (serving cannot know whether the next engagement is a purchase)
    bos: Literal["serving", "label"] = "serving"
    # the split the run's evaluation decodes: test, or (leave_one_out) valid, which measures a
    # lever on validation without decoding test (benchmarks/amazon.py --validation-only)
    held_out: Literal["test", "valid"] = "test"


class WarmStartParams(Strict):
    """Daily retrain from yesterday's weights (models/retriever/warm.py, models/ranker/warm.py)."""

    enabled: bool = True
    days: int = Field(1, ge=1)  # train on the engagements of this many days before d
    epochs: float = Field(2.0, gt=0)
    lr: float = Field(5e-4, gt=0)
    cold_every_days: int = Field(7, ge=1)  # a cold start on the whole window this often
    min_sid_kept: float = Field(0.99, ge=0, le=1)  # share of old items whose SID is unchanged


class RetrieverParams(Strict):
    """The generative retriever: model, training and evaluation settings."""

    model: RetrieverModelParams = RetrieverModelParams()
    train: RetrieverTrainParams = RetrieverTrainParams()
    eval: RetrieverEvalParams = RetrieverEvalParams()
    warm_start: WarmStartParams = WarmStartParams()


class FeaturesParams(Strict):
    """Feature store (features/): windows, Bayesian prior, Feast TTLs, online store profile."""

    windows_days: list[int] = [1, 7, 30]  # sliding windows (d-w, d] of every windowed count
    prior_strength: float = Field(20.0, gt=0)  # m of the Beta prior behind smoothed CTR/CVR
    ttl_days: dict[Literal["item_stats", "user_stats", "u2i"], int] = {
        "item_stats": 35,
        "user_stats": 35,
        "u2i": 35,
    }
    # the online store: sqlite (embedded) | redis; auto: sqlite locally, redis in the deployment
    # profile (`Params` resolves auto, so readers see sqlite or redis)
    online_store: Literal["auto", "sqlite", "redis"] = "auto"
    redis_address: str = "127.0.0.1:6379"  # host:port of redis-server for the redis profile
    # Feast's registry: file (registry.db in the working folder) | sql (`registry_url`, shared
    # by every process and machine); auto: file locally, sql in the deployment profile
    registry: Literal["auto", "file", "sql"] = "auto"
    registry_url: str = "postgresql+psycopg2://sidflow@127.0.0.1:5432/sidflow_feast"
    # the file registry's path; null: <workdir>/feast/registry.db (a shared folder lets serving
    # replicas read the pipeline's feature definitions)
    registry_path: Path | None = None

    @model_validator(mode="after")
    def _windows_and_ttls(self) -> FeaturesParams:
        w = self.windows_days
        if not w or any(x <= 0 for x in w) or sorted(set(w)) != w:
            raise ValueError(f"features.windows_days must be increasing positive days, got {w}")
        for view, ttl in self.ttl_days.items():
            # Rows are written only when a window changes (features/sql): a row must stay
            # valid until the next one, at most max(window) days later.
            if ttl <= w[-1]:
                raise ValueError(f"features.ttl_days.{view}={ttl} must exceed the largest window")
        return self


class SidEncoderParams(Strict):
    """Item encoder behind collaborative/fused embeddings: SASRec-style next-item model plus
    UNGER's modality adaptation layer and InfoNCE alignment (unger §3.3, eqs. 2-5)."""

    dim: int = Field(64, gt=0)  # embedding size fed to the quantiser
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    max_len: int = Field(20, ge=2)  # history window (DESIGN.md caps histories at 20)
    epochs: int = Field(20, ge=1)  # fresh training
    warm_epochs: int = Field(5, ge=1)  # daily rebuild, warm-started from the previous encoder
    batch_size: int = Field(256, gt=0)
    lr: float = Field(1e-3, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    align_weight: float = Field(1.0, ge=0)  # lambda of the alignment loss (eq. 5)
    temperature: float = Field(0.07, gt=0)  # InfoNCE temperature (eq. 3)
    threads: int | None = Field(1, ge=1)  # torch CPU threads while training; None = default


class SidParams(Strict):
    """Semantic IDs: capacity-constrained residual k-means (unirec §3.2, Algorithm 1)."""

    K: int = Field(256, ge=2)  # codes per layer
    L: int = Field(3, ge=1)  # layers (plus one dedup level)
    tau: float = Field(1.05, ge=1)  # load tolerance: V_k <= tau * C_cap
    capacity: bool = True  # False = plain RQ-KMeans (TIGER-like ablation)
    embedding: Literal["fused", "semantic", "collaborative"] = "fused"
    weights: Literal["auto", "exposure", "interaction", "uniform"] = "auto"
    weight_smoothing: float = Field(1.0, gt=0)  # added to every count so that w_i > 0
    max_iter: int = Field(30, ge=1)
    tol: float = Field(1e-4, ge=0)  # stop when |dJ| <= tol * J
    init_sample: int = Field(16384, ge=1)  # residuals k-means++ seeds from
    seed: int = 2024
    update: Literal["incremental", "rebuild"] = "incremental"  # daily: keep or re-learn codes
    rebuild_every_days: int = Field(7, ge=0)  # incremental: full rebuild this often; 0 = never
    compare_plain: bool = True  # also fit plain RQ-KMeans for the side-by-side metrics
    device: Literal["auto", "cpu", "cuda"] = "auto"
    encoder: SidEncoderParams = SidEncoderParams()


class RankerParams(Strict):
    """DIG ranker (models/ranker/): DIN + DCNv2 + MoE mixer shared by rank and retrieval paths."""

    train_days: int = Field(3, ge=1)  # exposures of the days before d train; day d is held out
    max_eval: int = Field(30000, ge=100)  # held-out exposures scored (sampled by request)
    negatives_per_positive: int = Field(4, ge=1)  # sources without exposures (Amazon)
    d_emb: int = Field(32, ge=4)  # e_v / e_sid width (DIG §3.2: SID embeddings match e_v)
    d_field: int = Field(16, ge=2)
    history_len: int = Field(20, ge=1)
    cross_layers: int = Field(2, ge=0)  # DCNv2
    n_experts: int = Field(4, ge=1)  # MoE
    expert_hidden: int = Field(128, ge=8)
    u2t_hidden: int = Field(64, ge=8)  # MLP_u2t per layer (eq. 14)
    use_u2i: bool = True  # ablation: false drops the u2i cross features (DIG Ablation 2)
    u2t: Literal["mlp", "bucket_mean", "mlp_on_bucket_mean"] = "mlp"  # bucket_mean: Ablation 3
    lambda_commit: float = Field(0.25, ge=0)  # eq. 8
    lambda_sem: float = Field(0.1, ge=0)
    lambda_u2t: float = Field(0.1, ge=0)  # DIG §4.1: lambda_3 = 0.1
    ema_decay: float = Field(0.99, gt=0, lt=1)  # codebook EMA (§3.2)
    # SIDs: fixed = the SID table's codes (DIG's fixed-SID ablation); learned = re-assigned
    # each step by argmin against the EMA codebooks (eq. 2-3), initialised from the table
    sid: Literal["fixed", "learned"] = "fixed"
    sid_warmup: float = Field(0.3, ge=0, le=1)  # learned: share of steps on the table's codes
    # rank-path objectives, one logit each (click first: the rank path of eq. 6); purchase is
    # the predicted engagement RFT's reward aggregates (unirec eq. 21)
    objectives: list[Literal["click", "cart", "purchase"]] = ["click", "purchase"]
    mari: bool = True  # serving: user blocks of the Mixer's first matmuls once per request (MaRI)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    batch_size: int = Field(1024, ge=8)
    epochs: float = Field(2.0, gt=0)
    min_steps: int = Field(50, ge=1)  # small sources: at least this many steps
    max_steps: int | None = Field(None, ge=1)
    seed: int = 0
    # daily retrain from yesterday's ranker on the newest day's exposures (models/ranker/warm.py)
    warm_start: WarmStartParams = WarmStartParams(lr=1e-3)

    @model_validator(mode="after")
    def _click_first(self) -> RankerParams:
        if not self.objectives or self.objectives[0] != "click":
            raise ValueError(f"ranker.objectives must start with click, got {self.objectives}")
        if len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"ranker.objectives repeats an objective: {self.objectives}")
        return self


class AlignmentParams(Strict):
    """RFT + DPO alignment of the retriever (models/alignment/, unirec §3.6)."""

    lambda_rft: float = Field(20.0, ge=0)  # lambda_RFT : lambda_DPO = 20 : 3
    lambda_dpo: float = Field(3.0, ge=0)
    rft_lambda: float = Field(0.5, ge=0)  # eq. 24: weight (1 + lambda * A~) * alpha
    clip: float = Field(2.0, gt=0)  # eq. 23: c_clip
    # eq. 21's R: `predicted` aggregates the ranker's predicted engagement y^_k (unirec eq. 21):
    # R = sum_k reward_weights[k] * y^_k + reward_weights.gmv * log1p(y^_purchase * price);
    # `logged`: R = engagement_value[behaviour] + gmv_weight * log1p(logged GMV)
    reward: Literal["predicted", "logged"] = "predicted"
    reward_weights: dict[Literal["click", "cart", "purchase", "gmv"], float] = {
        "click": 1.0,
        "purchase": 3.0,
        "gmv": 1.0,
    }
    gmv_weight: float = Field(1.0, ge=0)  # logged reward: R = engagement + w * log1p(GMV)
    engagement_value: dict[str, float] = {"click": 1.0, "cart": 2.0, "purchase": 3.0}
    beta: float = Field(0.1, gt=0)  # eq. 27
    pairs_per_request: int = Field(4, ge=1)
    train_days: int = Field(3, ge=1)  # requests of the days before d give DPO pairs
    lr: float = Field(2e-4, gt=0)
    batch_size: int = Field(256, ge=8)
    epochs: float = Field(1.0, gt=0)  # passes over the RFT samples ...
    max_steps: int = Field(150, ge=1)  # ... capped at this many steps
    max_hr_drop: float = Field(0.01, ge=0)  # served only if HR@50 (all) drops at most this
    # share of the held-out users whose samples decide acceptance; the others' samples give the
    # reported before / after figures (disjoint, so the report is not the deciding sample)
    acceptance_share: float = Field(0.5, gt=0, lt=1)
    seed: int = 0


class SidGateParams(Strict):
    """SID table gate (DESIGN.md Gates): collisions, codebook use, exposure concentration."""

    max_collision_rate: float = Field(0.10, ge=0, le=1)  # share of items sharing a full path
    min_utilisation: float = Field(0.30, ge=0, le=1)  # codes used / K, every layer
    max_top1_share: float = Field(0.60, ge=0, le=1)  # top-1% codes' exposure share, every layer


class RetrieverGateParams(Strict):
    """Retriever gate: HR@K floors (all and purchase samples) and no regression vs promoted."""

    hr_floor: dict[int, float] = {50: 0.05, 100: 0.10, 200: 0.15}
    purchase_hr_floor: dict[int, float] = {50: 0.03, 100: 0.06, 200: 0.10}
    tolerance: float = Field(0.03, ge=0)  # may trail the promoted model's HR@K by this much


class RankerGateParams(Strict):
    """Ranker gate: AUC floor and max rank-vs-retrieval AUC gap (DIG Table 4)."""

    min_auc: float = Field(0.60, ge=0, le=1)
    max_auc_gap: float = Field(0.05, ge=0)


class GatesParams(Strict):
    """Thresholds of the blocking asset checks that decide promotion."""

    sid: SidGateParams = SidGateParams()
    retriever: RetrieverGateParams = RetrieverGateParams()
    ranker: RankerGateParams = RankerGateParams()


class SimulationParams(Strict):
    """Closed-loop A/B simulation (`sidflow simulate`): served days after the logged window."""

    days: int = Field(1, ge=0)  # served days; daily partitions extend this far past the world
    user_fraction: float = Field(0.25, gt=0, le=1)  # share of the world's users who send requests
    seed: int = 11  # response draws
    # share of the requesting users (a stable hash of the salt and user id) served by the
    # world's logging policy: the status-quo arm the models' lifts are measured against
    status_quo_share: float = Field(0.2, ge=0, lt=1)


class BucketParams(Strict):
    """One A/B bucket: a share of the users, which registry entry it serves and which model
    retrieves its candidates: `unirec` (the bundle's generative retriever) or `dig` (the
    bundle's DIG ranker as retriever, dig §3.4; a bundle without a ranker serves UniRec)."""

    name: str = Field(min_length=1, max_length=32)
    share: float = Field(gt=0, le=1)
    model: Literal["promoted", "candidate"]
    retriever: Literal["unirec", "dig"] = "unirec"


AbMetric = Literal["ctr", "purchases_per_request", "gmv_per_request"]


class AbTestParams(Strict):
    """The online A/B decision (serving/abstats.py): intervals over users, SRM, guardrails."""

    primary_metric: AbMetric = "ctr"  # its lift's interval must lie above 0 to promote
    guardrails: list[AbMetric] = ["purchases_per_request"]  # a significant drop blocks promotion
    confidence: float = Field(0.95, gt=0.5, lt=1)  # two-sided interval level
    interval: Literal["delta", "bootstrap"] = "delta"  # delta method | user-level bootstrap
    bootstrap_samples: int = Field(2000, ge=100)
    seed: int = 0  # bootstrap draws
    min_users: int = Field(200, ge=2)  # per arm, before any decision
    min_requests: int = Field(400, ge=1)  # per arm, before any decision
    srm_alpha: float = Field(0.001, gt=0, lt=1)  # SRM chi-square p below this: no decision


class NearlineParams(Strict):
    """Near-line candidates (serving/nearline.py): the bundle step precomputes the beam output
    of every active user and scene; requests with exactly that input skip the beam search."""

    enabled: bool = False  # on where traffic pays for it (params.yaml)
    active_days: int = Field(7, ge=0)  # users with an engagement in these days (0: every user)
    batch: int = Field(64, ge=1)  # requests per beam-search pass while precomputing


class ServingParams(Strict):
    """The BentoML service (serving/): limits, A/B buckets, promotion by online evidence."""

    port: int = Field(3001, ge=1, le=65535)  # Dagster's UI has 3000
    max_k: int = Field(100, ge=1)
    max_history: int = Field(50, ge=0)
    max_id_length: int = Field(64, ge=1)
    beam_size: int = Field(50, ge=1)  # retrieval candidates per request (ranked down to k)
    batch_wait_ms: float = Field(
        0.0, ge=0
    )  # extra wait for more requests (queued ones always join)
    max_batch: int = Field(32, ge=1)
    # torch intra-op threads per worker: a micro-batch of small matmuls loses more to thread
    # hand-offs than it gains (benchmarks/serve.py: HTTP p50 81 -> 60 ms, 18 -> 23 req/s)
    torch_threads: int = Field(1, ge=1)
    workers: int = Field(1, ge=1)  # BentoML worker processes (each loads the bundles)
    nearline: NearlineParams = NearlineParams()
    # OpenTelemetry spans for /recommend. BentoML creates them even without a tracing exporter,
    # where they go nowhere (0.2-1 ms of a ~3 ms HTTP overhead here); on with an exporter.
    trace_recommend: bool = False
    salt: str = "sidflow-ab-1"
    buckets: list[BucketParams] = [
        BucketParams(name="control", share=0.8, model="promoted"),
        BucketParams(name="treatment", share=0.2, model="candidate"),
    ]
    qa_token_env: str = "SIDFLOW_QA_TOKEN"  # the QA bucket override needs this env var's value
    # Where the registry file and the exposure log live (sidflow/workdir.py); null: in the
    # working folder. A shared folder lets several serving replicas and the pipeline meet.
    registry_path: Path | None = None
    exposure_log_dir: Path | None = None
    # the BentoML model store newly promoted bundles are loaded from when the running Bento
    # does not carry them; null: <workdir>/bentoml/models (where the pipeline saves them)
    model_store_dir: Path | None = None
    ab: AbTestParams = AbTestParams()  # when the online A/B evidence promotes a candidate

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> ServingParams:
        total = sum(b.share for b in self.buckets)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"serving.buckets: shares sum to {total}, not 1")
        if len({b.name for b in self.buckets}) != len(self.buckets):
            raise ValueError("serving.buckets: bucket names must be unique")
        return self


class LifecycleParams(Strict):
    """Which engines run (`profile`, docs/deployment.md) and when the daily job runs
    (orchestration/automation.py)."""

    # local: embedded engines, one process; deployment: PostgreSQL-backed Dagster with its
    # daemon (schedule and sensor on), Redis + SQL registry for Feast, an MLflow server
    profile: Literal["local", "deployment"] = "local"
    schedule_hour: int = Field(2, ge=0, le=23)  # UTC hour of `daily_retrain`
    schedule_cron: str | None = None  # a cron of its own instead (UTC), e.g. "30 1 * * 1-5"
    sensor_interval_s: int = Field(60, ge=1)  # `new_data_sensor` runs at most this often
    # the job `new_data_sensor` starts for a day with new data: daily_pipeline (the whole graph)
    # | daily_data (ingest, contracts, warehouse, feature tables; training then waits for the
    # schedule, e.g. when data lands several times a day)
    sensor_job: Literal["daily_pipeline", "daily_data"] = "daily_pipeline"
    train_ranker: bool = True  # the DIG ranker, its gate and the RFT + DPO aligned retriever

    @property
    def cron(self) -> str:
        """The `daily_retrain` schedule's cron (UTC)."""
        return self.schedule_cron or f"0 {self.schedule_hour} * * *"


class DagsterParams(Strict):
    """The Dagster instance and executor (orchestration/instance.py, docs/deployment.md)."""

    # run, event log and schedule storage: sqlite (in the working folder's DAGSTER_HOME) |
    # postgres (`postgres_url`); auto: sqlite locally, postgres in the deployment profile
    storage: Literal["auto", "sqlite", "postgres"] = "auto"
    postgres_url: str = "postgresql+psycopg2://sidflow@127.0.0.1:5432/sidflow_dagster"
    # in_process (one process, the embedded default) | multiprocess (each step its own process);
    # auto: in_process locally, multiprocess in the deployment profile
    executor: Literal["auto", "in_process", "multiprocess"] = "auto"
    max_concurrent: int = Field(2, ge=1)  # multiprocess: steps of one run at a time
    max_concurrent_runs: int = Field(1, ge=1)  # runs at a time (the run queue)


class TrackingParams(Strict):
    """MLflow experiment tracking of every training and alignment run (models/tracking.py)."""

    enabled: bool = True
    # any MLflow tracking URI; auto: SQLite under the working folder locally, `server_url` in
    # the deployment profile
    uri: str = "auto"
    server_url: str = "http://127.0.0.1:5000"  # the team's MLflow tracking server
    experiment: str = "sidflow"


class DvcParams(Strict):
    """DVC versioning of the SID tables (models/tokenizer/versions.py)."""

    # where every SID version is pushed: a folder (relative to this file; outside the working
    # folder, so `make clean` keeps it) or a DVC remote URL (s3://, gs://, ssh://, with the
    # DVC plugin installed)
    remote_url: str = ".dvc-remote"
    push: bool = True  # sid_table adds each version to the DVC cache and pushes it


class TrainParams(Strict):
    """How every training stage runs (retriever, ranker, alignment; models/launch.py)."""

    # > 1: torchrun with this many processes, one per GPU on CUDA (NCCL, bf16 autocast),
    # gloo on CPU; 1: the asset's own process
    nproc_per_node: int = Field(1, ge=1)


# (block, key, local engine, deployment engine): what `auto` means in each profile
PROFILE_ENGINES = [
    ("features", "online_store", "sqlite", "redis"),
    ("features", "registry", "file", "sql"),
    ("dagster", "storage", "sqlite", "postgres"),
    ("dagster", "executor", "in_process", "multiprocess"),
]


def by_profile(setting: str, profile: str, local: str, deployment: str) -> str:
    """An engine setting with `auto` resolved for the profile."""
    if setting != "auto":
        return setting
    return deployment if profile == "deployment" else local


class Params(Strict):
    """All of sidflow's settings."""

    _source: Path | None = PrivateAttr(default=None)  # the settings file they were read from

    @property
    def source_path(self) -> Path | None:
        """The settings file these were loaded from (None when built in code)."""
        return self._source

    workdir: Path = Path(".sidflow")
    data: DataParams = DataParams()
    world: WorldParams
    contracts: ContractParams = ContractParams()
    retriever: RetrieverParams = RetrieverParams()
    ranker: RankerParams = RankerParams()
    alignment: AlignmentParams = AlignmentParams()
    features: FeaturesParams = FeaturesParams()
    sid: SidParams = SidParams()
    gates: GatesParams = GatesParams()
    simulation: SimulationParams = SimulationParams()
    serving: ServingParams = ServingParams()
    lifecycle: LifecycleParams = LifecycleParams()
    dagster: DagsterParams = DagsterParams()
    tracking: TrackingParams = TrackingParams()
    dvc: DvcParams = DvcParams()
    train: TrainParams = TrainParams()

    @model_validator(mode="before")
    @classmethod
    def _engines_for_the_profile(cls, raw: object) -> object:
        # `auto` engine settings become the profile's engine: readers see concrete values
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        life = raw.get("lifecycle") or {}
        profile = life.profile if isinstance(life, BaseModel) else life.get("profile", "local")
        for block, key, local, deployment in PROFILE_ENGINES:
            section = raw.get(block) or {}
            section = section.model_dump() if isinstance(section, BaseModel) else dict(section)
            section[key] = by_profile(section.get(key, "auto"), profile, local, deployment)
            raw[block] = section
        return raw

    def resolve(self, root: Path) -> Params:
        """Return a copy whose relative paths are anchored at `root` (the params file's folder)."""
        env_workdir = os.environ.get("SIDFLOW_WORKDIR")
        workdir = Path(env_workdir) if env_workdir else self.workdir
        folder = self.data.path or (DEFAULT_AMAZON if self.data.source == "amazon" else None)
        data = self.data.model_copy(update={"path": _anchor(folder, root) if folder else None})
        sp = self.serving
        serving = sp.model_copy(
            update={
                k: _anchor(getattr(sp, k), root) if getattr(sp, k) else None
                for k in ("registry_path", "exposure_log_dir", "model_store_dir")
            }
        )
        fp = self.features
        reg = fp.registry_path
        features = fp.model_copy(update={"registry_path": _anchor(reg, root) if reg else None})
        url = self.dvc.remote_url
        dvc = self.dvc.model_copy(
            update={"remote_url": url if "://" in url else str(_anchor(Path(url), root))}
        )
        return self.model_copy(
            update={
                "workdir": _anchor(workdir, root),
                "data": data,
                "serving": serving,
                "features": features,
                "dvc": dvc,
            }
        )


def _anchor(path: Path, root: Path) -> Path:
    return path if path.is_absolute() else (root / path).resolve()


def _format_error(err: ValidationError, source: Path) -> str:
    lines = [f"{source}: invalid settings"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            got = e.get("input")
            shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
            lines.append(f"  {key}: {e['msg']}{shown}")
    return "\n".join(lines)


def load_params(path: Path | str | None = None, overrides: dict | None = None) -> Params:
    """Load and validate params.yaml (or $SIDFLOW_PARAMS); `overrides` are dotted keys.

    Relative paths in the file are resolved against the file's folder, and
    $SIDFLOW_WORKDIR, when set, replaces `workdir` (tests use temp folders). $SIDFLOW_SET, a
    JSON object of dotted keys, adds overrides under `overrides` (how `sidflow serve` hands
    its `--set` to the BentoML process).
    """
    path = Path(path or os.environ.get("SIDFLOW_PARAMS") or DEFAULT_PARAMS_PATH)
    if not path.exists():
        raise ParamsError(f"settings file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    env_set = json.loads(os.environ["SIDFLOW_SET"]) if os.environ.get("SIDFLOW_SET") else {}
    for dotted, value in {**env_set, **(overrides or {})}.items():
        # strings are read as YAML, as in the file: "tiny", "0.5", "{50: 0.1}", "[a, b]"
        set_dotted(raw, dotted, yaml.safe_load(value) if isinstance(value, str) else value)
    try:
        params = Params.model_validate(raw)
    except ValidationError as e:
        raise ParamsError(_format_error(e, path)) from None
    params = params.resolve(path.resolve().parent)
    params._source = path.resolve()
    return params


def set_dotted(tree: dict, dotted: str, value: object) -> None:
    """Set `tree["a"]["b"]["c"] = value` for `dotted` = "a.b.c", creating missing levels."""
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
