"""A/B bucket assignment: a stable hash of (salt, user_id) over the configured traffic shares.

The same user lands in the same bucket in every process and after every restart (no state,
no Python `hash` randomisation); changing the salt reshuffles everyone. A QA override names a
bucket explicitly and is honoured only with the token held in the environment.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from sidflow.config import BucketParams, ServingParams


def unit_interval(salt: str, user_id: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, user_id): the first 8 bytes of SHA-256."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(sp: ServingParams, user_id: str) -> BucketParams:
    """The user's bucket: cumulative shares in configuration order."""
    u = unit_interval(sp.salt, user_id)
    edge = 0.0
    for bucket in sp.buckets:
        edge += bucket.share
        if u < edge:
            return bucket
    return sp.buckets[-1]  # shares sum to 1 up to rounding


def override(sp: ServingParams, bucket_name: str | None, token: str | None) -> BucketParams | None:
    """The bucket a QA request asks for, if its token matches the environment's (else None)."""
    expected = os.environ.get(sp.qa_token_env)
    if not bucket_name or not expected or not token:
        return None
    if not hmac.compare_digest(expected.encode(), token.encode()):
        return None
    return next((b for b in sp.buckets if b.name == bucket_name), None)
