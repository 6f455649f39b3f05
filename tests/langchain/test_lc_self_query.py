"""Self-query: ``TiDBTranslator`` and langchain-classic's ``SelfQueryRetriever``.

Every ``Comparator`` and ``Operator`` is translated, then the filter runs on the real
store (every engine) and must select exactly the rows a plain Python reading of the
comparison selects. The end-to-end test drives ``SelfQueryRetriever`` with a fake LLM
that answers with the structured query JSON, as a real model would.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.language_models import FakeListLLM
from langchain_core.structured_query import (
    Comparator,
    Comparison,
    Operation,
    Operator,
    StructuredQuery,
)

from langchain_tidb_jina import ProviderEmbeddings, TiDBTranslator, TiDBVectorStore
from tidb_jina import InvalidFilterError
from tidb_jina.testing import LexicalEmbedder

pytest.importorskip("lark")
from langchain_classic.chains.query_constructor.schema import AttributeInfo
from langchain_classic.retrievers.self_query.base import SelfQueryRetriever

MakeStore = Callable[..., TiDBVectorStore]

MOVIES: dict[str, tuple[str, dict[str, Any]]] = {
    "m1": (
        "A bunch of scientists bring back dinosaurs and mayhem breaks loose",
        {
            "year": 1993,
            "rating": 7.7,
            "genre": "science fiction",
            "title": "Jurassic Park",
            "tags": ["dinosaurs", "island"],
            "released": "1993-06-11",
        },
    ),
    "m2": (
        "Leo DiCaprio gets lost in a dream within a dream within a dream",
        {
            "year": 2010,
            "rating": 8.2,
            "genre": "thriller",
            "title": "Inception",
            "tags": ["dreams", "heist"],
            "released": "2010-07-16",
        },
    ),
    "m3": (
        "A psychologist gets lost in a series of dreams within dreams",
        {
            "year": 2006,
            "rating": 8.6,
            "genre": "anime",
            "title": "Paprika",
            "tags": ["dreams"],
            "released": "2006-11-25",
        },
    ),
    "m4": (
        "A bunch of normal-sized women are supremely wholesome and some men pine after them",
        {
            "year": 2019,
            "rating": 8.3,
            "genre": "drama",
            "title": "Little Women",
            "released": "2019-12-25",
        },
    ),
    "m5": (
        "Toys come alive and have a blast doing so",
        {
            "year": 1995,
            "genre": "animated",
            "title": "Toy Story",
            "tags": ["toys"],
            "released": "1995-11-22",
        },
    ),
    "m6": (
        "Three men walk into the Zone, three men walk out of the Zone",
        {
            "year": 1979,
            "rating": 9.9,
            "genre": "science fiction",
            "title": "Stalker",
            "tags": ["zone"],
            "released": "1979-05-25",
        },
    ),
}


@pytest.fixture
def movies(make_store: MakeStore) -> TiDBVectorStore:
    store = make_store(ProviderEmbeddings(provider=LexicalEmbedder(dimension=64)))
    ids = list(MOVIES)
    store.add_texts([MOVIES[i][0] for i in ids], [MOVIES[i][1] for i in ids], ids=ids)
    return store


def _matching(store: TiDBVectorStore, query: StructuredQuery) -> set[str]:
    text, kwargs = TiDBTranslator().visit_structured_query(query)
    return {d.id for d in store.similarity_search(text, k=len(MOVIES), **kwargs) if d.id}


def _where(predicate: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {i for i, (_, meta) in MOVIES.items() if predicate(meta)}


def _cmp(comparator: Comparator, attribute: str, value: Any) -> Comparison:
    return Comparison(comparator=comparator, attribute=attribute, value=value)


# --- every comparator and operator, translated and run --------------------------------------

CASES: list[tuple[str, Any, Callable[[dict[str, Any]], bool]]] = [
    (
        "eq",
        _cmp(Comparator.EQ, "genre", "science fiction"),
        lambda m: m["genre"] == "science fiction",
    ),
    (
        "ne",
        _cmp(Comparator.NE, "genre", "science fiction"),
        lambda m: m["genre"] != "science fiction",
    ),
    ("gt", _cmp(Comparator.GT, "rating", 8.3), lambda m: m.get("rating", 0) > 8.3),
    ("gte", _cmp(Comparator.GTE, "rating", 8.3), lambda m: m.get("rating", 0) >= 8.3),
    ("lt", _cmp(Comparator.LT, "year", 1995), lambda m: m["year"] < 1995),
    ("lte", _cmp(Comparator.LTE, "year", 1995), lambda m: m["year"] <= 1995),
    (
        "in",
        _cmp(Comparator.IN, "genre", ["anime", "drama"]),
        lambda m: m["genre"] in ("anime", "drama"),
    ),
    ("in-scalar", _cmp(Comparator.IN, "genre", "anime"), lambda m: m["genre"] == "anime"),
    (
        "nin",
        _cmp(Comparator.NIN, "genre", ["anime", "drama"]),
        lambda m: m["genre"] not in ("anime", "drama"),
    ),
    ("like-substring", _cmp(Comparator.LIKE, "title", "Wom"), lambda m: "Wom" in m["title"]),
    ("like-pattern", _cmp(Comparator.LIKE, "title", "T%"), lambda m: m["title"].startswith("T")),
    ("like-literal-underscore", _cmp(Comparator.LIKE, "title", "_aprika"), lambda m: False),
    (
        "contain-array",
        _cmp(Comparator.CONTAIN, "tags", "dreams"),
        lambda m: "dreams" in m.get("tags", []),
    ),
    ("contain-string", _cmp(Comparator.CONTAIN, "title", "Park"), lambda m: "Park" in m["title"]),
    (
        "contain-all",
        _cmp(Comparator.CONTAIN, "tags", ["dreams", "heist"]),
        lambda m: {"dreams", "heist"} <= set(m.get("tags", [])),
    ),
    (
        "date",
        _cmp(Comparator.GTE, "released", {"date": "2006-01-01", "type": "date"}),
        lambda m: m["released"] >= "2006-01-01",
    ),
    (
        "date-object",
        _cmp(Comparator.LT, "released", datetime.date(1995, 11, 22)),
        lambda m: m["released"] < "1995-11-22",
    ),
    (
        "datetime-typed",
        _cmp(Comparator.GT, "released", {"datetime": "2010-07-16T00:00:00", "type": "datetime"}),
        lambda m: m["released"] > "2010-07-16T00:00:00",
    ),
    (
        "and",
        Operation(
            operator=Operator.AND,
            arguments=[
                _cmp(Comparator.EQ, "genre", "science fiction"),
                _cmp(Comparator.GT, "year", 1990),
            ],
        ),
        lambda m: m["genre"] == "science fiction" and m["year"] > 1990,
    ),
    (
        "or",
        Operation(
            operator=Operator.OR,
            arguments=[_cmp(Comparator.EQ, "genre", "anime"), _cmp(Comparator.LT, "year", 1980)],
        ),
        lambda m: m["genre"] == "anime" or m["year"] < 1980,
    ),
    (
        "not",
        Operation(operator=Operator.NOT, arguments=[_cmp(Comparator.GT, "rating", 8.0)]),
        lambda m: not m.get("rating", 0) > 8.0,
    ),
    (
        "not-many",
        Operation(
            operator=Operator.NOT,
            arguments=[
                _cmp(Comparator.EQ, "genre", "anime"),
                _cmp(Comparator.EQ, "genre", "drama"),
            ],
        ),
        lambda m: m["genre"] not in ("anime", "drama"),
    ),
    (
        "nested",
        Operation(
            operator=Operator.AND,
            arguments=[
                Operation(
                    operator=Operator.OR,
                    arguments=[
                        _cmp(Comparator.CONTAIN, "tags", "dreams"),
                        _cmp(Comparator.LIKE, "title", "Toy"),
                    ],
                ),
                Operation(
                    operator=Operator.NOT, arguments=[_cmp(Comparator.EQ, "genre", "thriller")]
                ),
            ],
        ),
        lambda m: (
            ("dreams" in m.get("tags", []) or "Toy" in m["title"]) and m["genre"] != "thriller"
        ),
    ),
]


@pytest.mark.parametrize(("name", "directive", "expected"), CASES, ids=[c[0] for c in CASES])
def test_each_translation_selects_exactly_the_matching_rows(
    movies: TiDBVectorStore, name: str, directive: Any, expected: Callable[..., bool]
) -> None:
    query = StructuredQuery(query="movie", filter=directive, limit=None)
    assert _matching(movies, query) == _where(expected)


def test_every_langchain_comparator_and_operator_is_allowed() -> None:
    covered = {c[1].comparator for c in CASES if isinstance(c[1], Comparison)}
    assert set(TiDBTranslator.allowed_comparators) == set(Comparator) == covered
    covered_ops = {c[1].operator for c in CASES if isinstance(c[1], Operation)}
    assert set(TiDBTranslator.allowed_operators) == set(Operator) == covered_ops


def test_translations_are_plain_filter_dicts() -> None:
    t = TiDBTranslator()
    assert _cmp(Comparator.IN, "g", "x").accept(t) == {"g": {"$in": ["x"]}}
    assert _cmp(Comparator.LIKE, "t", "50%_off").accept(t) == {"t": {"$like": "50%_off"}}
    assert _cmp(Comparator.LIKE, "t", "a_b").accept(t) == {"t": {"$like": "%a\\_b%"}}
    not_op = Operation(operator=Operator.NOT, arguments=[_cmp(Comparator.EQ, "a", 1)])
    assert not_op.accept(t) == {"$not": {"a": {"$eq": 1}}}
    assert t.visit_structured_query(StructuredQuery(query="q", filter=None, limit=2)) == ("q", {})


def test_untranslatable_values_are_clear_errors() -> None:
    with pytest.raises(InvalidFilterError, match=r"like\(\) compares text"):
        _cmp(Comparator.LIKE, "year", 1999).accept(TiDBTranslator())
    with pytest.raises(InvalidFilterError, match="at least one condition"):
        Operation(operator=Operator.AND, arguments=[]).accept(TiDBTranslator())


@pytest.mark.parametrize("value", [{"type": "date"}, {"type": "datetime", "datetime": None}])
def test_a_typed_value_without_its_text_is_an_error_not_a_match_on_missing_fields(
    movies: TiDBVectorStore, value: Any
) -> None:
    """Read as None it would be ``$eq None``, which selects every row lacking the field:
    a filter wider than the query."""
    query = StructuredQuery(query="movie", filter=_cmp(Comparator.EQ, "rating", value), limit=None)
    with pytest.raises(InvalidFilterError, match="needs its ISO text"):
        _matching(movies, query)


@pytest.mark.parametrize("attribute", ["$or", "$not", "$and"])
def test_operator_names_as_attributes_are_refused_with_a_clear_error(attribute: str) -> None:
    with pytest.raises(InvalidFilterError, match="starting with '\\$' are filter operators"):
        _cmp(Comparator.EQ, attribute, 1).accept(TiDBTranslator())


# --- end to end: SelfQueryRetriever driven by a fake LLM -----------------------------------

FIELDS = [
    AttributeInfo(name="genre", description="The genre of the movie", type="string"),
    AttributeInfo(name="year", description="The year the movie was released", type="integer"),
    AttributeInfo(name="rating", description="A 1-10 rating for the movie", type="float"),
    AttributeInfo(name="tags", description="Keywords of the plot", type="list[string]"),
    AttributeInfo(name="title", description="The title", type="string"),
]


def _llm_answer(query: str, filter: str, limit: int | None = None) -> str:
    body: dict[str, Any] = {"query": query, "filter": filter}
    if limit is not None:
        body["limit"] = limit
    return f"```json\n{json.dumps(body)}\n```"


def _retriever(store: TiDBVectorStore, answers: list[str], **kw: Any) -> SelfQueryRetriever:
    return SelfQueryRetriever.from_llm(
        FakeListLLM(responses=answers),
        store,
        "Brief summary of a movie",
        FIELDS,
        structured_query_translator=TiDBTranslator(),
        search_kwargs={"k": len(MOVIES)},
        **kw,
    )


def test_self_query_retriever_returns_only_documents_matching_the_generated_filter(
    movies: TiDBVectorStore,
) -> None:
    generated = (
        'and(or(eq("genre", "science fiction"), contain("tags", "dreams")), '
        'gte("year", 1990), nin("title", ["Inception"]), not(lt("rating", 8.0)))'
    )
    retriever = _retriever(movies, [_llm_answer("dreams and dinosaurs", generated)])
    docs = retriever.invoke("highly rated sci-fi or dream movies since 1990, not Inception")
    expected = _where(
        lambda m: (
            (m["genre"] == "science fiction" or "dreams" in m.get("tags", []))
            and m["year"] >= 1990
            and m["title"] != "Inception"
            and not m.get("rating", 0) < 8.0
        )  # $not matches a missing rating (MongoDB)
    )
    assert {d.id for d in docs} == expected == {"m3"}
    for doc in docs:
        assert doc.metadata["year"] >= 1990 and doc.metadata["title"] != "Inception"


async def test_self_query_retriever_async_with_limit_and_like(movies: TiDBVectorStore) -> None:
    answers = [_llm_answer("movie", 'like("title", "T%")', limit=1)]
    retriever = _retriever(movies, answers, enable_limit=True)
    docs = await retriever.ainvoke("one movie whose title starts with T")
    assert len(docs) == 1 and docs[0].metadata["title"].startswith("T")


def test_self_query_without_a_filter_searches_everything(movies: TiDBVectorStore) -> None:
    retriever = _retriever(movies, [_llm_answer("dinosaurs", "NO_FILTER")])
    docs = retriever.invoke("dinosaurs")
    assert len(docs) == len(MOVIES) and docs[0].id == "m1"


# --- restrictions: base_filter survives the generated filter --------------------------------

SCI_FI = {"genre": "science fiction"}


def test_search_kwargs_filter_is_replaced_by_the_generated_one_in_langchain(
    movies: TiDBVectorStore,
) -> None:
    """LangChain's SelfQueryRetriever merges ``{**search_kwargs, **generated}``: a
    restriction in ``search_kwargs["filter"]`` stops applying (why ``base_filter`` exists;
    this test notices if LangChain changes that)."""
    retriever = SelfQueryRetriever.from_llm(
        FakeListLLM(responses=[_llm_answer("movie", 'gte("year", 2000)')]),
        movies,
        "Brief summary of a movie",
        FIELDS,
        structured_query_translator=TiDBTranslator(),
        search_kwargs={"k": len(MOVIES), "filter": SCI_FI},
    )
    assert {d.id for d in retriever.invoke("recent movies")} == {"m2", "m3", "m4"}


@pytest.mark.parametrize(
    ("generated", "expected"),
    [
        ('gte("year", 1990)', {"m1"}),  # sci-fi AND since 1990
        ('or(eq("genre", "anime"), eq("genre", "drama"))', set()),  # cannot widen past it
        ('not(eq("genre", "science fiction"))', set()),
        ("NO_FILTER", {"m1", "m6"}),  # the restriction alone
    ],
)
async def test_base_filter_is_anded_with_every_generated_filter(
    movies: TiDBVectorStore, generated: str, expected: set[str]
) -> None:
    translator = TiDBTranslator(base_filter=SCI_FI)
    answers = [_llm_answer("movie", generated)] * 2
    retriever = SelfQueryRetriever.from_llm(
        FakeListLLM(responses=answers),
        movies,
        "Brief summary of a movie",
        FIELDS,
        structured_query_translator=translator,
        search_kwargs={"k": len(MOVIES)},
    )
    assert {d.id for d in retriever.invoke("movies")} == expected
    assert {d.id for d in await retriever.ainvoke("movies")} == expected


def test_base_filter_is_checked_when_the_translator_is_built() -> None:
    with pytest.raises(InvalidFilterError, match=r"\$bogus"):
        TiDBTranslator(base_filter={"genre": {"$bogus": 1}})
    plain = StructuredQuery(query="q", filter=_cmp(Comparator.EQ, "a", 1), limit=None)
    assert TiDBTranslator(base_filter={"t": "x"}).visit_structured_query(plain) == (
        "q",
        {"filter": {"$and": [{"t": "x"}, {"a": {"$eq": 1}}]}},
    )
