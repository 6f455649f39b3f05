"""Review of issue 18's sixth round: the query's checks by one dot product.

``_vector._plain_float32`` (is the query finite?) and ``_zero_vectors.check_query`` (has
it a cosine distance?) now take one BLAS dot product, falling back to the value-by-value
checks near 0 and on overflow. Each is compared here with the rule it replaces, for
vectors at the edges: tiny values whose squares vanish in float32, denormals, values
whose squares overflow, NaN and infinities in any position, the float32 extremes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tidb_jina import InvalidVectorError
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._vector import _plain_float32, as_matrix, as_vector
from tidb_jina.store._zero_vectors import _no_float32_norm, check_query

_F32_MAX = float(np.finfo(np.float32).max)
_TINY = float(np.finfo(np.float32).smallest_subnormal)


def _vectors() -> list[np.ndarray]:
    rng = np.random.default_rng(6)
    out = [rng.normal(size=d).astype(np.float32) for d in (1, 3, 768, 16383)]
    for scale in (1e-23, 1e-22, 1e-20, 1e-19, 1e-30, 1e-40, _TINY, 1e18, 1e19, 1e20, 1e30):
        out.append((rng.normal(size=384) * scale).astype(np.float32))
    out += [
        np.zeros(8, dtype=np.float32),
        np.full(8, _TINY, dtype=np.float32),
        np.full(16383, 1e-23, dtype=np.float32),
        np.array([_F32_MAX, -_F32_MAX, 1.0], dtype=np.float32),
        np.array([0, 0, 1e-22, 0], dtype=np.float32),
        np.array([1e-23] * 3 + [0.0], dtype=np.float32),
        np.array([1e19, 1e19, 1e19], dtype=np.float32),
    ]
    for bad in (math.nan, math.inf, -math.inf):
        for at in (0, 5, 383):
            v = rng.normal(size=384).astype(np.float32)
            v[at] = bad
            out.append(v)
        v = np.full(384, 1e20, dtype=np.float32)
        v[7] = bad  # beside values whose squares overflow
        out.append(v)
    return out


@pytest.mark.parametrize("index", range(len(_vectors())))
def test_as_vector_accepts_and_refuses_as_value_by_value(index):
    vector = _vectors()[index]
    finite = bool(np.isfinite(vector).all())
    if finite:
        got = as_vector(vector, vector.shape[0])
        assert np.array_equal(got, vector)
        assert np.array_equal(as_matrix(vector[None, :], vector.shape[0])[0], vector)
    else:
        assert not _plain_float32(vector, vector.shape[0])
        with pytest.raises(InvalidVectorError, match="NaN and infinity"):
            as_vector(vector, vector.shape[0])


@pytest.mark.parametrize("index", range(len(_vectors())))
def test_check_query_refuses_exactly_the_vectors_without_a_float32_norm(index):
    vector = _vectors()[index]
    if not np.isfinite(vector).all():
        return  # refused before (``as_vector``)
    refused = bool(_no_float32_norm(vector[None, :])[0])
    if refused:
        with pytest.raises(InvalidVectorError, match="query vector"):
            check_query(vector, DistanceMetric.COSINE)
    else:
        check_query(vector, DistanceMetric.COSINE)
    for metric in (DistanceMetric.L2, DistanceMetric.INNER_PRODUCT):
        check_query(vector, metric)  # only cosine needs a norm


def test_the_edges_are_where_the_rule_says():
    """The rule itself (so the comparison above cannot pass vacuously)."""
    check_query(np.full(4, 1e-19, dtype=np.float32), DistanceMetric.COSINE)
    for vector in (np.zeros(4, dtype=np.float32), np.full(4, 1e-23, dtype=np.float32)):
        with pytest.raises(InvalidVectorError, match="query vector"):
            check_query(vector, DistanceMetric.COSINE)
    big = np.full(4, 1e20, dtype=np.float32)  # squares overflow: finite, storable
    assert np.array_equal(as_vector(big, 4), big)
    check_query(big, DistanceMetric.COSINE)
