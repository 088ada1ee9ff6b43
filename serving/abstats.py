"""A/B statistics over users: per-arm metrics, differences with 95% intervals, SRM, decision.

The unit of randomisation is the user (`serving/ab.py` hashes user ids), so every interval is
computed over users, never over requests or exposures: a user's requests and clicks are
correlated, and an exposure-level binomial interval is too narrow.

Every metric is a ratio of per-user sums, M = sum_u Y_u / sum_u X_u:

| metric | Y_u | X_u |
|---|---|---|
| `ctr` | clicks | exposures |
| `purchases_per_request` | purchases | requests |
| `gmv_per_request` | GMV | requests |

Intervals (`serving.ab.interval`):
- `delta` (default): the delta method for a ratio of means (Deng, Knoblich, Lu 2018,
  "Applying the Delta Method in Metric Analytics", eq. 2):
  Var(M) ~ (s_y^2 - 2 M s_xy + M^2 s_x^2) / (n mean_x^2); the arms are independent, so
  Var(M_t - M_c) = Var(M_t) + Var(M_c): a normal interval for the difference. The relative
  lift M_t / M_c - 1 gets Fieller's interval from the same variances (asymmetric; it
  excludes 0 exactly when the difference's interval does, which a linearised lift
  interval does not guarantee when the reference arm is small and noisy).
- `bootstrap`: a user-level Poisson bootstrap (each user's row drawn Poisson(1) times per
  replicate, arms resampled independently), percentile intervals; slower, no normal
  approximation.

SRM (sample-ratio mismatch): Pearson's chi-square of the users per arm against the configured
shares; a p-value below `serving.ab.srm_alpha` means the split is broken (a bucketing bug,
a bot, a logging loss) and no decision is taken on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd
from scipy import stats

METRICS = {
    "ctr": ("clicks", "exposures"),
    "purchases_per_request": ("purchases", "requests"),
    "gmv_per_request": ("gmv", "requests"),
}
LABELS = {"ctr": "CTR", "purchases_per_request": "purchases/req", "gmv_per_request": "GMV/req"}


def user_table(shown: pd.DataFrame, responses: pd.DataFrame, arm: str = "bucket") -> pd.DataFrame:
    """Per (arm, user): requests, exposures, clicks, purchases, gmv.

    `shown`: one row per shown slot with request_id, user_id, item_id and the `arm` column;
    `responses`: click/purchase events with request_id, item_id, event_type, price (other
    event types are ignored). A response counts once per shown slot it answers.
    """
    slots = shown[["request_id", "item_id", "user_id", arm]].drop_duplicates(
        ["request_id", "item_id"]
    )
    resp = responses.loc[
        responses["event_type"].isin(["click", "purchase"]),
        ["request_id", "item_id", "event_type", "price"],
    ]
    resp = resp.drop_duplicates(["request_id", "item_id", "event_type"])
    resp = resp.merge(slots, on=["request_id", "item_id"], how="inner")
    per_user = slots.groupby([arm, "user_id"], sort=True).agg(
        requests=("request_id", "nunique"), exposures=("item_id", "size")
    )
    kinds = resp.assign(
        clicks=(resp["event_type"] == "click").astype(int),
        purchases=(resp["event_type"] == "purchase").astype(int),
        gmv=np.where(resp["event_type"] == "purchase", resp["price"].astype(float), 0.0),
    )
    sums = kinds.groupby([arm, "user_id"])[["clicks", "purchases", "gmv"]].sum()
    out = per_user.join(sums, how="left").fillna({"clicks": 0, "purchases": 0, "gmv": 0.0})
    out = out.astype({"clicks": int, "purchases": int}).reset_index()
    return out.rename(columns={arm: "arm"})


def arm_summary(users: pd.DataFrame) -> pd.DataFrame:
    """Per arm: users, requests, exposures, clicks, purchases, GMV and the three metrics."""
    g = users.groupby("arm", sort=True)
    out = g[["requests", "exposures", "clicks", "purchases", "gmv"]].sum()
    out.insert(0, "users", g.size())
    for metric, (num, den) in METRICS.items():
        out[metric] = out[num] / out[den].where(out[den] > 0)
    return out.reset_index()


def ratio_delta(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """(M, Var(M)) of M = sum y / sum x over n users, by the delta method."""
    n = len(y)
    if n < 2 or x.sum() <= 0:
        return float("nan"), float("nan")
    mx, my = x.mean(), y.mean()
    m = my / mx
    cov = np.cov(np.vstack([y, x]), ddof=1)
    var = (cov[0, 0] - 2 * m * cov[0, 1] + m * m * cov[1, 1]) / (n * mx * mx)
    return float(m), float(max(var, 0.0))


@dataclass
class Comparison:
    """One arm against a reference arm on one metric: difference and relative lift, with
    their intervals at `confidence`."""

    metric: str
    arm: str
    reference: str
    value: float
    reference_value: float
    diff: float
    diff_low: float
    diff_high: float
    lift: float  # value / reference_value - 1
    lift_low: float
    lift_high: float
    users: int
    reference_users: int

    @property
    def significant(self) -> bool:
        """The lift's interval excludes zero."""
        return bool(self.lift_low > 0 or self.lift_high < 0)

    def to_json(self) -> dict:
        return {**asdict(self), "significant": self.significant}


def fieller(mt: float, vt: float, mc: float, vc: float, z: float) -> tuple[float, float]:
    """The interval of the lift mt / mc - 1 by Fieller's theorem (independent estimates with
    variances vt, vc): every r with (mt - r mc)^2 <= z^2 (vt + r^2 vc). At r = 1 this is the
    difference's test, so the lift's interval excludes 0 exactly when the difference's does.
    Unbounded (-inf, inf) when mc itself is not significantly away from 0."""
    a = mc * mc - z * z * vc
    b = -2 * mt * mc
    c = mt * mt - z * z * vt
    disc = b * b - 4 * a * c
    if not np.isfinite([a, b, c]).all():
        return float("nan"), float("nan")
    if a <= 0 or disc < 0:
        return float("-inf"), float("inf")
    root = np.sqrt(disc)
    return float((-b - root) / (2 * a) - 1), float((-b + root) / (2 * a) - 1)


def _weights(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    return rng.poisson(1.0, (b, n)).astype(np.float64)


def compare(
    users: pd.DataFrame,
    arm: str,
    reference: str,
    metric: str,
    confidence: float = 0.95,
    method: str = "delta",
    bootstrap_samples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """`arm` against `reference` on `metric` over the users of `user_table`."""
    num, den = METRICS[metric]
    t = users[users["arm"] == arm]
    c = users[users["arm"] == reference]
    yt, xt = t[num].to_numpy(float), t[den].to_numpy(float)
    yc, xc = c[num].to_numpy(float), c[den].to_numpy(float)
    mt, vt = ratio_delta(yt, xt)
    mc, vc = ratio_delta(yc, xc)
    diff = mt - mc
    lift = mt / mc - 1 if mc else float("nan")
    alpha = 1 - confidence
    if method == "bootstrap" and len(t) > 1 and len(c) > 1:
        rng = np.random.default_rng(seed)
        wt, wc = _weights(rng, bootstrap_samples, len(t)), _weights(rng, bootstrap_samples, len(c))
        with np.errstate(divide="ignore", invalid="ignore"):
            bt = (wt @ yt) / (wt @ xt)
            bc = (wc @ yc) / (wc @ xc)
            bd, bl = bt - bc, bt / bc - 1
        q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
        (d_lo, d_hi), (l_lo, l_hi) = np.nanpercentile(bd, q), np.nanpercentile(bl, q)
    else:
        z = NormalDist().inv_cdf(1 - alpha / 2)
        sd_d = np.sqrt(vt + vc)
        d_lo, d_hi = diff - z * sd_d, diff + z * sd_d
        l_lo, l_hi = fieller(mt, vt, mc, vc, z)
    return Comparison(
        metric,
        arm,
        reference,
        mt,
        mc,
        diff,
        float(d_lo),
        float(d_hi),
        lift,
        float(l_lo),
        float(l_hi),
        len(t),
        len(c),
    )


@dataclass
class SrmCheck:
    """Pearson chi-square of the users per arm against the configured shares."""

    observed: dict[str, int]
    expected: dict[str, float]
    chi2: float
    p_value: float
    alpha: float

    @property
    def mismatch(self) -> bool:
        return bool(self.p_value < self.alpha)

    def to_json(self) -> dict:
        return {**asdict(self), "mismatch": self.mismatch}


def srm_check(observed: dict[str, int], shares: dict[str, float], alpha: float = 0.001) -> SrmCheck:
    """SRM test of `observed` users per arm against `shares` (renormalised over the arms
    observed and configured: an arm nobody reached is not part of the test)."""
    arms = [a for a in shares if a in observed]
    total = sum(observed[a] for a in arms)
    weight = sum(shares[a] for a in arms)
    expected = {a: total * shares[a] / weight for a in arms}
    if len(arms) < 2 or total == 0:
        return SrmCheck(dict(observed), expected, 0.0, 1.0, alpha)
    chi2, p = stats.chisquare([observed[a] for a in arms], [expected[a] for a in arms])
    return SrmCheck(dict(observed), expected, float(chi2), float(p), alpha)


@dataclass
class Decision:
    """Whether the treatment arm's model is promoted, why, and the evidence."""

    promote: bool
    reason: str
    srm: dict | None
    comparisons: list[dict]

    def to_json(self) -> dict:
        return asdict(self)


def decide(
    users: pd.DataFrame,
    treatment: str,
    control: str,
    shares: dict[str, float],
    ab,  # noqa: ANN001 - sidflow.config.AbTestParams
) -> Decision:
    """The promotion rule (`serving.ab`), in order:

    1. minimum sample: at least `min_users` users and `min_requests` requests in each arm;
    2. no sample-ratio mismatch (SRM p-value >= `srm_alpha`);
    3. guardrails: no metric in `guardrails` drops significantly (its lift's interval lies
       wholly below zero);
    4. the primary metric's lift interval lies wholly above zero.
    """
    summary = arm_summary(users).set_index("arm")
    arms = [treatment, control]
    if any(a not in summary.index for a in arms):
        return Decision(False, f"no traffic in {' and '.join(arms)}", None, [])
    metrics = [ab.primary_metric, *[g for g in ab.guardrails if g != ab.primary_metric]]
    comps = [
        compare(
            users, treatment, control, m, ab.confidence, ab.interval, ab.bootstrap_samples, ab.seed
        )
        for m in metrics
    ]
    srm = srm_check({a: int(summary.loc[a, "users"]) for a in arms}, shares, ab.srm_alpha)
    evidence = [c.to_json() for c in comps]
    small = [
        f"{a}: {int(summary.loc[a, 'users'])} users / {int(summary.loc[a, 'requests'])} requests"
        for a in arms
        if summary.loc[a, "users"] < ab.min_users or summary.loc[a, "requests"] < ab.min_requests
    ]
    if small:
        need = f"need {ab.min_users} users and {ab.min_requests} requests per arm"
        return Decision(
            False, f"too small a sample ({'; '.join(small)}; {need})", srm.to_json(), evidence
        )
    if srm.mismatch:
        return Decision(
            False,
            f"sample-ratio mismatch: users {srm.observed} vs expected "
            f"{ {k: round(v) for k, v in srm.expected.items()} } (p={srm.p_value:.2g})",
            srm.to_json(),
            evidence,
        )
    primary, guards = comps[0], comps[1:]
    if ab.primary_metric in ab.guardrails:
        guards = [primary, *guards]
    dropped = [g for g in guards if g.lift_high < 0]
    pct = round(100 * ab.confidence)
    text = _lift_text(primary, pct)
    if dropped:
        why = "; ".join(_lift_text(g, pct) for g in dropped)
        return Decision(False, f"guardrail: significant drop ({why})", srm.to_json(), evidence)
    if primary.lift_low > 0:
        return Decision(True, f"{text}: excludes 0", srm.to_json(), evidence)
    return Decision(False, f"{text}: does not exclude a lift <= 0", srm.to_json(), evidence)


def _lift_text(c: Comparison, pct: int) -> str:
    return (
        f"{LABELS[c.metric]} lift {c.lift:+.1%} [{c.lift_low:+.1%}, {c.lift_high:+.1%}] "
        f"({pct}% CI, {c.users} vs {c.reference_users} users)"
    )
