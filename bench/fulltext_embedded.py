"""Embedded full-text search: the CJK-aware index against the unicode61 index it replaced.

Documents are a mix of English, Chinese and Japanese sentences. Baseline, measured in the
same run on a copy of the same rows: the previous index (FTS5 ``unicode61`` over the
``document`` column, external content, kept by triggers), queried with the same BM25
statement shape. Ours: ``VectorTable.full_text_search`` (CJK characters and bigrams,
queue probe before each search).

Goals: an English query within 1.5x of the old index; building the index within 4x
(the text is analysed in Python); a search right after a 100-row write within 3x of a
plain search (the queued rows are indexed first). The old index finds nothing for the
Chinese and Japanese queries; ours finds them (counts printed).

    python bench/fulltext_embedded.py [--n 20000] [--queries 20]
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from _common import Row, paired_per_call, table, timed

from tidb_jina.store import VectorTable

EN = ["database", "vector", "search", "index", "cluster", "query", "storage", "replica"]
ZH = ["数据库", "向量", "搜索", "索引", "集群", "查询", "存储", "首都", "北京"]
JA = ["データベース", "ベクトル", "検索", "東京", "首都", "日本", "寺", "公園"]


def sentence(rng: random.Random, i: int) -> str:
    kind = i % 3
    if kind == 0:
        return " ".join(rng.choice(EN) for _ in range(12)) + "."
    if kind == 1:
        return "".join(rng.choice(ZH) + rng.choice("的是和在") for _ in range(8)) + "。"
    return "".join(rng.choice(JA) + rng.choice("はのでを") for _ in range(8)) + "。"


def old_index(url: str) -> None:
    """The unicode61 index of earlier versions, built as they built it."""
    t = "docs"
    insert = f"INSERT INTO {t}__fts(rowid, document) VALUES (new.rowid, new.document);"  # noqa: S608
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE {t}__fts USING fts5(document, content={t}, "
            "content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')"
        )
        conn.exec_driver_sql(f"CREATE TRIGGER {t}__fts_ai AFTER INSERT ON {t} BEGIN {insert} END")
        conn.exec_driver_sql(f"INSERT INTO {t}__fts({t}__fts) VALUES ('rebuild')")  # noqa: S608
    engine.dispose()


OLD_SEARCH = sa.text(
    "SELECT docs.id, docs.document, docs.meta, -bm25(docs__fts) AS text_score "
    "FROM docs__fts JOIN docs ON docs__fts.rowid = docs.rowid "
    "WHERE docs__fts MATCH :match ORDER BY text_score DESC LIMIT 10"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(0)
    docs = [sentence(rng, i) for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp:
        ours_path, old_path = Path(tmp) / "ours.db", Path(tmp) / "old.db"
        ours = VectorTable(f"sqlite:///{ours_path}", table_name="docs")
        ours.upsert(
            np.ones((args.n, 4), dtype=np.float32),
            ids=[str(i) for i in range(args.n)],
            documents=docs,
        )
        ours.close()
        shutil.copy(ours_path, old_path)
        old_url = f"sqlite:///{old_path}"
        old_build = timed(lambda: old_index(old_url))
        ours = VectorTable(f"sqlite:///{ours_path}", table_name="docs")
        our_build = timed(lambda: ours.full_text_search("database"))
        old_engine = sa.create_engine(old_url)

        def old_search(word: str) -> object:
            with old_engine.connect() as conn:
                return conn.execute(OLD_SEARCH, {"match": f'"{word}"'}).all()

        words = [rng.choice(EN) for _ in range(args.queries)]
        our_query, old_query = paired_per_call(
            [lambda w: ours.full_text_search(w, k=10), old_search], words
        )
        plain = paired_per_call([lambda w: ours.full_text_search(w, k=10)], words)[0]
        counter = iter(range(10**9))

        def write_then_search(word: str) -> object:
            start = args.n + next(counter) * 100
            ours.upsert(
                np.ones((100, 4), dtype=np.float32),
                ids=[str(start + i) for i in range(100)],
                documents=[sentence(rng, i) for i in range(100)],
            )
            return ours.full_text_search(word, k=10)

        def write_only(word: str) -> object:
            start = 10**8 + next(counter) * 100
            return ours.upsert(
                np.ones((100, 4), dtype=np.float32),
                ids=[str(start + i) for i in range(100)],
                documents=[sentence(rng, i) for i in range(100)],
            )

        after_write, write = paired_per_call([write_then_search, write_only], words[:5])
        cjk = {
            q: (len(ours.full_text_search(q, k=100)), len(old_search(q))) for q in ZH[:3] + JA[3:6]
        }
        old_engine.dispose()
        ours.close()
    print(f"{args.n} documents (English, Chinese, Japanese), top 10\n")
    print(
        table(
            [
                Row("English query", our_query, "unicode61 index", old_query, "<= 1.5x", 1.5),
                Row("build the index", our_build, "unicode61 index", old_build, "<= 4x", 4.0),
                Row(
                    "search after a 100-row write (write excluded)",
                    max(after_write - write, 1e-9),
                    "plain search",
                    plain,
                    "<= 3x",
                    3.0,
                ),
            ]
        )
    )
    print("\nCJK queries, hits (ours / old index):")
    for query, (found, old) in cjk.items():
        print(f"  {query}: {found} / {old}")


if __name__ == "__main__":
    main()
