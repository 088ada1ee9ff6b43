"""A/B statistics (serving/abstats.py) and the promotion rule: intervals over users that cover
a known difference, an SRM check that flags a skewed split, and no promotion on an A/A split."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from serving import ab, abstats
from sidflow.config import AbTestParams, ServingParams, load_params

SHARES = {"control": 0.8, "treatment": 0.2}


def synthetic_users(
    rng: np.random.Generator,
    n: dict[str, int],
    ctr: dict[str, float],
    buy: dict[str, float] | None = None,
    spread: float = 10.0,
) -> pd.DataFrame:
    """A `user_table`-like frame: per user Poisson requests of 10 slots, a user-specific CTR
    ~ Beta(mean ctr[arm], concentration `spread`) (users differ: clicks cluster by user),
    purchases ~ Binomial(clicks, buy[arm]) at price 20."""
    rows = []
    for arm, n_users in n.items():
        requests = rng.poisson(3, n_users) + 1
        exposures = 10 * requests
        p = rng.beta(ctr[arm] * spread, (1 - ctr[arm]) * spread, n_users)
        clicks = rng.binomial(exposures, p)
        purchases = rng.binomial(clicks, (buy or {}).get(arm, 0.2))
        rows.append(
            pd.DataFrame(
                {
                    "arm": arm,
                    "user_id": [f"{arm}-{i}" for i in range(n_users)],
                    "requests": requests,
                    "exposures": exposures,
                    "clicks": clicks,
                    "purchases": purchases,
                    "gmv": 20.0 * purchases,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def test_delta_interval_covers_a_known_difference_and_the_exposure_level_one_does_not():
    """200 replicates with a true CTR difference of +0.01 between arms: the interval over
    users covers it ~95% of the time; a binomial interval over exposures (the naive one),
    blind to users' clustered clicks, is too narrow and covers far less often."""
    rng = np.random.default_rng(1)
    truth = 0.01
    covered = naive_covered = 0
    reps = 200
    for _ in range(reps):
        users = synthetic_users(
            rng, {"control": 400, "treatment": 400}, {"control": 0.05, "treatment": 0.06}
        )
        c = abstats.compare(users, "treatment", "control", "ctr")
        covered += c.diff_low <= truth <= c.diff_high
        # Fieller's lift interval excludes 0 exactly when the difference's interval does
        assert c.significant == (c.diff_low > 0 or c.diff_high < 0)
        s = abstats.arm_summary(users).set_index("arm")
        se = np.sqrt(
            sum(s.loc[a, "ctr"] * (1 - s.loc[a, "ctr"]) / s.loc[a, "exposures"] for a in s.index)
        )
        naive_covered += abs(c.diff - truth) <= 1.96 * se
    assert 0.90 <= covered / reps <= 0.99, covered
    assert naive_covered / reps < 0.85, naive_covered


def test_fieller_lift_interval():
    # a precise reference: close to the linearised interval, asymmetric around the lift
    lo, hi = abstats.fieller(1.1, 0.0004, 1.0, 0.0004, 1.96)
    assert lo < 0.1 < hi and hi - 0.1 > 0.1 - lo
    assert (lo, hi) == pytest.approx((0.1 - 1.96 * 0.0297, 0.1 + 1.96 * 0.0297), abs=0.01)
    # a reference indistinguishable from 0: the lift is unbounded
    assert abstats.fieller(1.0, 0.01, 0.1, 0.01, 1.96) == (float("-inf"), float("inf"))


def test_bootstrap_and_delta_intervals_agree():
    users = synthetic_users(
        np.random.default_rng(2),
        {"control": 800, "treatment": 300},
        {"control": 0.05, "treatment": 0.055},
    )
    for metric in abstats.METRICS:
        d = abstats.compare(users, "treatment", "control", metric, method="delta")
        b = abstats.compare(
            users, "treatment", "control", metric, method="bootstrap", bootstrap_samples=1000
        )
        assert d.lift == pytest.approx(b.lift)
        width_d, width_b = d.lift_high - d.lift_low, b.lift_high - b.lift_low
        assert width_b == pytest.approx(width_d, rel=0.15), metric
        assert b.lift_low == pytest.approx(d.lift_low, abs=0.15 * width_d)


def test_srm_flags_a_skewed_split_and_passes_a_fair_one():
    rng = np.random.default_rng(3)
    fair = rng.random(10_000) < 0.8
    ok = abstats.srm_check({"control": int(fair.sum()), "treatment": int((~fair).sum())}, SHARES)
    assert not ok.mismatch and ok.p_value > 0.001
    skewed = abstats.srm_check({"control": 7_800, "treatment": 2_200}, SHARES)  # 78/22, not 80/20
    assert skewed.mismatch and skewed.p_value < 1e-5
    assert skewed.expected == pytest.approx({"control": 8_000, "treatment": 2_000})
    # an arm the configuration does not know is not part of the test; shares renormalise
    three = {"control": 0.64, "treatment": 0.16, "status_quo": 0.2}
    assert not abstats.srm_check({"control": 8_000, "treatment": 2_000}, three).mismatch


def test_the_hash_split_passes_its_own_srm_check():
    sp = ServingParams()
    names = [ab.assign(sp, f"u{i:07d}").name for i in range(20_000)]
    counts = pd.Series(names).value_counts().to_dict()
    assert not abstats.srm_check(counts, {b.name: b.share for b in sp.buckets}).mismatch


def test_a_real_lift_is_promoted_and_a_small_sample_decides_nothing():
    rule = AbTestParams()
    rng = np.random.default_rng(4)
    users = synthetic_users(
        rng, {"control": 2_000, "treatment": 500}, {"control": 0.05, "treatment": 0.07}
    )
    d = abstats.decide(users, "treatment", "control", SHARES, rule)
    assert d.promote, d.reason
    small = users.groupby("arm").head(150)
    d = abstats.decide(small, "treatment", "control", SHARES, rule)
    assert not d.promote and "too small a sample" in d.reason


def test_srm_and_guardrails_block_promotion():
    rule = AbTestParams()
    rng = np.random.default_rng(5)
    # CTR up 40%, but each click buys far less often: purchases per request drop
    users = synthetic_users(
        rng,
        {"control": 2_000, "treatment": 500},
        {"control": 0.05, "treatment": 0.07},
        buy={"control": 0.3, "treatment": 0.1},
    )
    d = abstats.decide(users, "treatment", "control", SHARES, rule)
    assert not d.promote and d.reason.startswith("guardrail"), d.reason
    # the same winning treatment, but a third of control's users never reached the log
    users = synthetic_users(
        rng, {"control": 1_300, "treatment": 500}, {"control": 0.05, "treatment": 0.07}
    )
    d = abstats.decide(users, "treatment", "control", SHARES, rule)
    assert not d.promote and d.reason.startswith("sample-ratio mismatch"), d.reason


def test_aa_splits_are_promoted_at_most_at_the_error_rate():
    """300 A/A tests (both arms one distribution): the one-sided rule promotes ~2.5% of
    them; clearly more would mean the intervals are too narrow."""
    rule = AbTestParams()
    rng = np.random.default_rng(6)
    promoted = sum(
        abstats.decide(
            synthetic_users(
                rng, {"control": 800, "treatment": 200}, {"control": 0.05, "treatment": 0.05}
            ),
            "treatment",
            "control",
            SHARES,
            rule,
        ).promote
        for _ in range(300)
    )
    assert promoted / 300 <= 0.06, promoted


def test_an_aa_split_in_the_world_is_not_promoted():
    """Both buckets served the same lists (the world's logging policy) to the small world's
    users; the world responds; the promotion asset's rule keeps control."""
    from ingestion.world import World
    from ingestion.world.closed_loop import day_requests, responses_to_events, status_quo_lists
    from orchestration.assets.serve import decide

    params = load_params(overrides={"world.size": "small"})
    world = World(params.world)
    day = params.world.days()[-1] + dt.timedelta(days=1)
    requests = day_requests(world, day, 1.0)
    shown = status_quo_lists(world, requests, day, seed=1)
    bucket = {u: ab.assign(params.serving, u).name for u in requests["user_id"].unique()}
    shown["bucket"] = shown["user_id"].map(bucket)
    shown["model"] = shown["bucket"].map({"control": "model-A", "treatment": "model-A-again"})
    responses = responses_to_events(world, shown, seed=2)
    users = abstats.user_table(shown, responses)
    users["model"] = users["arm"].map({"control": "model-A", "treatment": "model-A-again"})
    state = {"promoted": {"tag": "model-A"}, "candidate": {"tag": "model-A-again"}}
    d = decide(state, users, params.serving)
    assert not d.promote
    assert "does not exclude" in d.reason, d.reason  # decided on the interval, not a small sample
    assert not d.srm["mismatch"]
    # and with nothing under test (treatment serves the promoted model too) nothing is decided
    same = users.assign(model="model-A")
    assert not decide({"promoted": {"tag": "model-A"}}, same, params.serving).promote
