"""Big ``$in`` lists: get / count / delete against search with the same filter.

Issue 14: a 10,000-value ``$in`` (an allow-list of tenants, of document ids) used to
spend seconds in SQLite and then fail with "Expression tree is too large" in get, count
and delete, while search succeeded. Now the list is bound once as a JSON array and
tested with one membership lookup per JSON type.

Baseline, measured in the same run: ``search`` (k = every matching row) with the same
filter on the same table. Goal: get, count and delete each within 2x of it. Delete is
timed on a fresh copy of the table file each round (the copy is not timed).

    python bench/filter_in_lists.py [--n 100000] [--values 10000] [--dim 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import Row, median_seconds, table

from tidb_jina.store import VectorTable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--values", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    ids = [str(i) for i in range(args.n)]
    # Half the tenants are strings, half numbers: both membership paths are timed.
    metas = [{"tenant": f"t{i}" if i % 2 else i, "group": i % 10} for i in range(args.n)]
    wanted = [f"t{i}" for i in range(1, args.values, 2)] + list(range(0, args.values, 2))
    flt = {"tenant": {"$in": wanted}}

    folder = Path(tempfile.mkdtemp())
    master = folder / "master.db"
    store = VectorTable(f"sqlite:///{master}", table_name="bench")
    store.upsert(vectors, ids=ids, metadatas=metas)
    matching = sum(1 for m in metas if m["tenant"] in set(wanted))
    query = rng.standard_normal(args.dim).astype(np.float32)

    def search() -> int:
        return len(store.search(query, k=max(matching, 1), filter=flt))

    def get() -> int:
        return len(store.get(filter=flt))

    def count() -> int:
        return store.count(flt)

    assert search() == get() == count() == matching, (search(), get(), count(), matching)
    t_search = median_seconds(search, args.repeat)
    t_get = median_seconds(get, args.repeat)
    t_count = median_seconds(count, args.repeat)
    store.close()

    delete_times = []
    for round_ in range(args.repeat):
        copy = folder / f"copy{round_}.db"
        shutil.copyfile(master, copy)
        table_copy = VectorTable(f"sqlite:///{copy}", table_name="bench")
        start = time.perf_counter()
        deleted = table_copy.delete(filter=flt)
        delete_times.append(time.perf_counter() - start)
        assert deleted == matching and table_copy.count() == args.n - matching
        table_copy.close()
    t_delete = statistics.median(delete_times)

    label = f"{args.values:,}-value $in, {args.n:,} rows, {matching:,} match"
    rows = [
        Row(f"get ({label})", t_get, "search, same filter", t_search, "<= 2x", 2.0),
        Row(f"count ({label})", t_count, "search, same filter", t_search, "<= 2x", 2.0),
        Row(f"delete ({label})", t_delete, "search, same filter", t_search, "<= 2x", 2.0),
    ]
    print(table(rows))


if __name__ == "__main__":
    main()
