"""Identifiers on the TiDB path: TiDB's reserved words, and quoting that knows them.

SQLAlchemy quotes an identifier on MySQL dialects only when it is in MySQL's reserved
list. TiDB's grammar reserves more words (``until``, ``ilike``, ``tablesample``,
``tidb_current_tso``): unquoted, ``CREATE TABLE until (...)`` is a syntax error on TiDB.
:data:`TIDB_RESERVED_WORDS` is the ``ReservedKeyword`` token list of TiDB's parser
(``pingcap/tidb`` ``pkg/parser/parser.y``, the tokens under "The following tokens belong
to ReservedKeyword"); a table named with one of them is built with a ``quoted_name``
that forces quoting under every dialect, and the hand-written DDL quotes it the same way.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.mysql.reserved_words import RESERVED_WORDS_MYSQL
from sqlalchemy.sql.elements import quoted_name

# pkg/parser/parser.y, %token <ident> ... "The following tokens belong to ReservedKeyword".
_PARSER_Y_RESERVED = """
    add all alter analyze and array as asc between bigint binary blob both by call cascade
    case change char character check collate column constraint continue convert create
    cross cume_dist current_date current_role current_time current_timestamp current_user
    cursor database databases day_hour day_microsecond day_minute day_second decimal
    default delayed delete dense_rank desc describe distinct distinctrow div double drop
    dual else elseif enclosed escaped except exists exit explain false fetch first_value
    float float4 float8 for force foreign from fulltext generated grant group groups having
    high_priority hour_microsecond hour_minute hour_second if ignore ilike in index infile
    inner inout insert int int1 int2 int3 int4 int8 integer intersect interval into is
    iterate join key keys kill lag last_value lead leading leave left like limit linear
    lines load localtime localtimestamp lock long longblob longtext low_priority match
    maxvalue mediumblob mediumint mediumtext middleint minute_microsecond minute_second mod
    natural not no_write_to_binlog nth_value ntile null numeric of on optimize option
    optionally or order out outer outfile over partition percent_rank precision primary
    procedure range rank read real recursive references regexp release rename repeat
    replace require restrict revoke right rlike row rows row_number second_microsecond
    select set show smallint spatial sql sqlexception sqlstate sqlwarning sql_big_result
    sql_calc_found_rows sql_small_result ssl starting stored straight_join table
    tablesample terminated then tidb_current_tso tinyblob tinyint tinytext to trailing
    trigger true union unique unlock unsigned until update usage use using utc_date
    utc_time utc_timestamp values varbinary varchar varcharacter varying virtual when where
    while window with write xor year_month zerofill
"""
TIDB_RESERVED_WORDS = frozenset(_PARSER_Y_RESERVED.split())
# The words SQLAlchemy's MySQL dialect would leave unquoted.
TIDB_ONLY_RESERVED_WORDS = TIDB_RESERVED_WORDS - RESERVED_WORDS_MYSQL


def needs_quotes(name: str) -> bool:
    """True when ``name`` is a reserved word in TiDB's grammar (any case)."""
    return name.lower() in TIDB_RESERVED_WORDS


def table_identifier(name: str) -> str:
    """``name`` as a SQLAlchemy table name that TiDB can parse: quoted when reserved."""
    return quoted_name(name, True) if needs_quotes(name) else name


def quote(dialect: sa.Dialect, name: str) -> str:
    """``name`` quoted for hand-written DDL: by the dialect, and always when TiDB
    reserves it."""
    return dialect.identifier_preparer.quote(table_identifier(name))
