"""A filter whose rows exceed ``_gathered.SINGLE_ELEMENTS`` (scored in blocks), on a
real embedded table written while it is searched: every answer is the brute-force one
over the rows the table holds at that moment (never a deleted, replaced or
non-matching row)."""

from __future__ import annotations

import numpy as np
import pytest

from tidb_jina.store import VectorTable, _gathered

DIM = 384


def _brute(rows: dict[str, tuple[np.ndarray, dict]], q: np.ndarray, g: int, k: int, metric: str):
    ids = [i for i, (_, m) in rows.items() if m["g"] == g]
    mat = np.stack([rows[i][0] for i in ids]).astype(np.float64)
    qq = q.astype(np.float64)
    if metric == "cosine":
        d = 1 - (mat / np.linalg.norm(mat, axis=1, keepdims=True)) @ (qq / np.linalg.norm(qq))
    elif metric == "l2":
        d = np.linalg.norm(mat - qq, axis=1)
    else:
        d = -(mat @ qq)
    order = np.argsort(d, kind="stable")[:k]
    return [ids[j] for j in order], d[order]


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_blocked_filter_after_writes(tmp_path, monkeypatch, metric: str) -> None:
    rng = np.random.default_rng(13)
    blocked: list[int] = []
    real = _gathered.gathered_distances

    def counted(*a):
        out = real(*a)
        blocked.append(out is not None)
        return out

    monkeypatch.setattr(_gathered, "gathered_distances", counted)
    table = VectorTable(f"sqlite:///{tmp_path / 'g.db'}", table_name="g", metric=metric)
    n = 3300
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(n)]
    metas = [{"g": 1 if i % 11 else 2} for i in range(n)]  # 3000 rows match g == 1
    table.upsert(vectors, ids=ids, metadatas=metas)
    rows = {i: (v, m) for i, v, m in zip(ids, vectors, metas, strict=True)}
    queries = rng.standard_normal((3, DIM)).astype(np.float32)

    def check() -> None:
        for q in [*queries, rows["r5"][0]]:
            got = table.search(q, k=10, filter={"g": 1})
            want_ids, want_d = _brute(rows, q, 1, 10, metric)
            assert [h.id for h in got] == want_ids
            assert np.allclose([h.distance for h in got], want_d, rtol=1e-4, atol=1e-4)
            assert all(h.metadata == {"g": 1} for h in got)

    check()
    # replace near winners (new vectors, some moved out of the filter), delete others
    q0 = queries[0]
    near = _brute(rows, q0, 1, 40, metric)[0]
    moved = near[:10]
    new = rng.standard_normal((len(moved), DIM)).astype(np.float32)
    new_meta = [{"g": 2 if j % 2 else 1} for j in range(len(moved))]
    table.upsert(new, ids=moved, metadatas=new_meta)
    rows.update({i: (v, m) for i, v, m in zip(moved, new, new_meta, strict=True)})
    gone = near[10:20]
    assert table.delete(gone) == len(gone)
    for i in gone:
        del rows[i]
    check()
    assert blocked and all(blocked)  # every filtered search here was scored in blocks
