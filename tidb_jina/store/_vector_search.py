"""The facade's vector search: the schema check, the query's checks, the engine's search.

Every call of the facade first checks that nobody dropped or re-created the table
(``TableBase._loaded``: one read of the database). A search whose answer itself proves
the schema unchanged skips it (``unchecked_search``): the embedded engine's fast search
reads the winners' rows together with the schema cookie of the state they come from,
and its answer stands only when that cookie is the one the table's shape was read under
(``Backend.search_unchecked``, ``_fresh.search_fresh``). At 100,000 x 768 with a 1%
filter that read was about 6% of a search (issue 18's sixth round).

Anything else (a table not read yet, a drop pending, a metric to settle, a query that
does not fit the shape as last read, a backend that cannot prove it) takes the checked
way, which reads the shape again if needed and then says what is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tidb_jina._errors import TiDBJinaError
from tidb_jina.store import _vector, _zero_vectors
from tidb_jina.store._backend import Query, SearchOptions
from tidb_jina.store._results import SearchResult

if TYPE_CHECKING:
    from tidb_jina.store._table_base import TableBase


def vector_search(table: TableBase, vector: Any, options: SearchOptions) -> list[SearchResult]:
    """``VectorTable.search``'s work once the options are checked."""
    quick = unchecked_search(table, vector, options)
    if quick is not None:
        return quick
    sa_table, dimension, metric = table._loaded()  # first (the table's dimension wins)
    query = _vector.as_vector(vector, dimension)
    if sa_table is None or options.ids == []:
        return []
    _zero_vectors.check_query(query, metric)
    return _zero_vectors.defined(table._backend.search(sa_table, Query(vector=query), options))


def unchecked_search(
    table: TableBase, vector: Any, options: SearchOptions
) -> list[SearchResult] | None:
    """The results, or None: check the schema and search the usual way."""
    state, metric = table._state, table._settings.metric
    sa_table, shape = state.view  # one state: the table and the shape it was read with
    if (
        not state.loaded
        or state.drop_pending
        or sa_table is None
        or shape is None
        or state.metric not in (None, metric)
    ):
        return None
    try:
        query = _vector.as_vector(vector, table._declared_dimension or shape.dimension)
        _zero_vectors.check_query(query, metric)
    except TiDBJinaError:
        return None  # the checked way reads the shape first, then explains
    found = table._backend.search_unchecked(sa_table, query, options)
    return None if found is None else _zero_vectors.defined(found)
