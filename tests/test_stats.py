"""sidflow.stats: the mean ± sd and standard errors the results tables report."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sidflow.stats import mean_sd, sample_sd, standard_error

values = st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=20)


@given(values)
def test_sample_sd_and_standard_error_match_numpy(v):
    assert np.isclose(sample_sd(v), np.std(v, ddof=1))
    assert np.isclose(standard_error(v), np.std(v, ddof=1) / np.sqrt(len(v)))


def test_one_seed_has_no_sd():
    assert sample_sd([0.5]) is None and standard_error([0.5]) is None
    assert mean_sd([0.5]) == "0.5000 ± n/a"
    assert mean_sd([0.0830, 0.0846]) == "0.0838 ± 0.0011"
