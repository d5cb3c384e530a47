"""DuckDB SQL spelled for Spark SQL: the ONE place where the two dialects differ.

The snapshot and feature queries are written once, in DuckDB's dialect (`data/snapshots_duckdb.py`,
`features/deal_features_duckdb.py`), and Spark runs the same text after these rewrites, so a change to a
definition reaches both engines. Spark 4 already accepts `expr::TYPE`, named WINDOW clauses, QUALIFY,
`count(*) FILTER (...) OVER`, `INTERVAL n DAY`, `VALUES` CTEs with column lists and ordinal ORDER BY; what it
lacks are DuckDB's type names, the 'infinity' timestamp, `epoch_us`, DOUBLE division of DECIMAL literals,
and the ASOF join (translated by `spark/asof.py`). A query using a DuckDB construct not translated here (list
functions) is refused with its name, rather than failing later inside Spark.
"""

from __future__ import annotations

import re

from fulqrun_ml.spark.asof import UnsupportedDialectError, translate_asof_joins

__all__ = ["REWRITES", "UNSUPPORTED", "UnsupportedDialectError", "to_spark"]

# DuckDB spelling -> Spark spelling. 'infinity' must be rewritten before the bare type names.
REWRITES: tuple[tuple[str, str], ...] = (
    (r"'infinity'::TIMESTAMPTZ", "TIMESTAMP'9999-12-31 23:59:59.999999'"),
    (r"::TIMESTAMPTZ\b", "::TIMESTAMP"),
    (r"::VARCHAR\b", "::STRING"),
    (r"::UUID\b", "::STRING"),  # Spark reads the ids as strings already
    # BIGINT microseconds since the epoch in both; every use divides by a (now DOUBLE) literal, as DuckDB does.
    (r"\bepoch_us\(", "unix_micros("),
)
UNSUPPORTED = ("list_transform", "list_sort", "list_position", "list_contains")
# A decimal literal outside quotes (not part of a name, a number with an exponent, or a typed literal).
_DECIMAL = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\w.])")
_QUOTED = re.compile(r"('(?:[^']|'')*')")


def _double_literals(sql: str) -> str:
    """`2.0` -> `2.0D` outside string literals. DuckDB divides DECIMALs in DOUBLE (`(wins + 2.0) / (n + 5.0)`
    is a DOUBLE there); Spark keeps DECIMAL(38, s) and rounds, so its quotients would differ in the last
    digits. As DOUBLE literals, Spark's arithmetic is DuckDB's."""
    parts = _QUOTED.split(sql)
    return "".join(part if i % 2 else _DECIMAL.sub(r"\1D", part) for i, part in enumerate(parts))


def to_spark(sql: str) -> str:
    """The DuckDB query `sql` as Spark SQL; raises UnsupportedDialectError naming an untranslated construct."""
    for word in UNSUPPORTED:
        if re.search(rf"\b{word}\b", sql, flags=re.IGNORECASE):
            raise UnsupportedDialectError(f"DuckDB construct '{word}' has no Spark translation in spark/dialect.py")
    sql = translate_asof_joins(_double_literals(sql))
    for pattern, replacement in REWRITES:
        sql = re.sub(pattern, replacement, sql, flags=re.IGNORECASE)
    return sql
