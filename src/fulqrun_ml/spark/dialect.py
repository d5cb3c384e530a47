"""DuckDB SQL spelled for Spark SQL: the ONE place where the two dialects differ.

The snapshot queries are written once, in DuckDB's dialect (`data/snapshots_duckdb.py`), and Spark runs the
same text after these rewrites, so a change to a definition reaches both engines. Spark 4 already accepts
`expr::TYPE`, named WINDOW clauses, `INTERVAL n DAY`, `VALUES` CTEs with column lists and ordinal ORDER BY;
what it lacks are DuckDB's type names and the 'infinity' timestamp. A query using a DuckDB construct not
listed here (ASOF joins, list functions) is refused with its name, rather than failing later inside Spark.
"""

from __future__ import annotations

import re

# DuckDB spelling -> Spark spelling. 'infinity' must be rewritten before the bare type names.
REWRITES: tuple[tuple[str, str], ...] = (
    (r"'infinity'::TIMESTAMPTZ", "TIMESTAMP'9999-12-31 23:59:59.999999'"),
    (r"::TIMESTAMPTZ\b", "::TIMESTAMP"),
    (r"::VARCHAR\b", "::STRING"),
    (r"::UUID\b", "::STRING"),  # Spark reads the ids as strings already
)
UNSUPPORTED = ("ASOF", "list_transform", "list_sort", "list_position", "list_contains", "epoch_us")


class UnsupportedDialectError(ValueError):
    """The query uses a DuckDB construct that has no translation here yet."""


def to_spark(sql: str) -> str:
    """The DuckDB query `sql` as Spark SQL; raises UnsupportedDialectError naming an untranslated construct."""
    for word in UNSUPPORTED:
        if re.search(rf"\b{word}\b", sql, flags=re.IGNORECASE):
            raise UnsupportedDialectError(f"DuckDB construct '{word}' has no Spark translation in spark/dialect.py")
    for pattern, replacement in REWRITES:
        sql = re.sub(pattern, replacement, sql, flags=re.IGNORECASE)
    return sql
