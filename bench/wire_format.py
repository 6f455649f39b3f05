"""TiDB wire format: encode 768-d vectors to TiDB's text and parse it back.

Ours (the VECTOR type's bind/result processors, validation included) against the
`tidb-vector` package's SQLAlchemy VectorType processors, which langchain-community's and
llama-index's TiDB stores use. Also checks that float32 values round-trip exactly.

Goal: at least 5x faster both ways, with float32 values round-tripping exactly.

    python bench/wire_format.py [--dim 768] [--n 200]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import Row, median_seconds, table
from sqlalchemy.dialects import mysql

from tidb_jina.store import VECTOR


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--n", type=int, default=200, help="vectors per timed batch")
    args = parser.parse_args()
    from tidb_vector.sqlalchemy import VectorType

    dialect = mysql.pymysql.dialect()
    rng = np.random.default_rng(0)
    vectors = list(rng.standard_normal((args.n, args.dim)).astype(np.float32))
    ours_bind = VECTOR(args.dim).bind_processor(dialect)
    ours_result = VECTOR(args.dim).result_processor(dialect, None)
    peer_bind = VectorType(args.dim).bind_processor(dialect)
    peer_result = VectorType(args.dim).result_processor(dialect, None)

    ours_texts = [ours_bind(v) for v in vectors]
    peer_texts = [peer_bind(v) for v in vectors]
    pairs_ours = zip(ours_texts, vectors, strict=True)
    pairs_peer = zip(peer_texts, vectors, strict=True)
    exact_ours = all(np.array_equal(ours_result(t), v) for t, v in pairs_ours)
    exact_peer = all(np.array_equal(peer_result(t), v) for t, v in pairs_peer)

    repeat = 5
    enc_ours = median_seconds(lambda: [ours_bind(v) for v in vectors], repeat) / args.n
    enc_peer = median_seconds(lambda: [peer_bind(v) for v in vectors], repeat) / args.n
    dec_ours = median_seconds(lambda: [ours_result(t) for t in ours_texts], repeat) / args.n
    dec_peer = median_seconds(lambda: [peer_result(t) for t in ours_texts], repeat) / args.n
    print(f"## TiDB wire format, {args.dim}-d float32, per vector\n")
    print(
        table(
            [
                Row("encode to text", enc_ours, "tidb-vector", enc_peer, "5x faster", 0.2),
                Row("parse text", dec_ours, "tidb-vector", dec_peer, "5x faster", 0.2),
            ]
        )
    )
    size_ours = sum(map(len, ours_texts)) / args.n
    size_peer = sum(map(len, peer_texts)) / args.n
    print(f"\nbytes per vector: ours {size_ours:.0f}, tidb-vector {size_peer:.0f}")
    print(f"float32 round trip exact: ours {exact_ours}, tidb-vector {exact_peer}")
    assert exact_ours, "our encoding must round-trip float32 exactly"


if __name__ == "__main__":
    main()
