"""DuckDB's ASOF join spelled in Spark SQL (Spark has none), as a text rewrite of the one query definition.

`L ASOF LEFT JOIN R a ON a.k = L.k AND L.t >= a.t` takes, per left row, the right row with the newest
`a.t` at or before `L.t`. Each right row is the latest exactly over the span [a.t, next a.t of the same key),
so the join becomes an equi-join on the key plus a range test against that span, with the span's end from a
window `lead()` over the right side:

    LEFT JOIN (SELECT *, lead(t) OVER (PARTITION BY k ORDER BY t) AS _asof_bound FROM R _asof_src) a
      ON a.k = L.k AND a.t <= L.t AND (a._asof_bound IS NULL OR L.t < a._asof_bound)

Why this form and not a LATERAL `ORDER BY t DESC LIMIT 1` (which Spark 4 also accepts): Spark decorrelates
that into a nested-loop join of every distinct left time with every right row, before the key is applied;
the span join is partitioned by the key, so its cost is per key (a deal's touches x its as_of dates).
Strict `>` and the reversed direction (`L.t < a.t`: the next row after, via `lag()`) map the same way.
Right rows tied on (key, time) have an empty span except one, so at most one row matches, as in DuckDB
(whose pick among ties is arbitrary; the project's queries deduplicate ties first). A NULL time on either
side matches nothing, as in DuckDB. Only the shape the project writes is translated (one key equality AND
one time comparison); any other ASOF join is refused by name.
"""

from __future__ import annotations

import re

_HEAD = re.compile(r"\bASOF\s+(LEFT\s+)?JOIN\s+", re.IGNORECASE)
_ALIAS_ON = re.compile(r"\s+(?:AS\s+)?(?P<alias>\w+)\s+ON\s+", re.IGNORECASE)
_COND = re.compile(
    r"(?P<a>[\w.]+)\s*=\s*(?P<b>[\w.]+)\s+AND\s+(?P<lhs>[\w.]+)\s*(?P<op><=|>=|<|>)\s*(?P<rhs>[\w.]+)",
    re.IGNORECASE,
)
_AFTER = re.compile(r"\s*(AND|OR)\b", re.IGNORECASE)
_FLIP = {">=": "<=", "<=": ">=", ">": "<", "<": ">"}


class UnsupportedDialectError(ValueError):
    """The query uses a DuckDB construct that has no translation here yet."""


def _relation_end(sql: str, start: int) -> int:
    """End of the relation starting at `start`: a name, or a parenthesised subquery (quotes respected)."""
    if sql[start] != "(":
        match = re.compile(r"[\w.]+").match(sql, start)
        if not match:
            raise UnsupportedDialectError(f"ASOF join: no relation after 'ASOF JOIN' at: {sql[start : start + 60]!r}")
        return match.end()
    depth, quoted = 0, False
    for i in range(start, len(sql)):
        char = sql[i]
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return i + 1
    raise UnsupportedDialectError("ASOF join: unbalanced parentheses in its relation")


def _span_join(left: bool, relation: str, alias: str, key: str, outer_key: str, time: str, op: str, at: str) -> str:
    """The span form of one ASOF join; `op` compares the left time `at` with the right time (`at op a.time`)."""
    newest = op in (">=", ">")  # newest row at/before `at`; else the oldest at/after it
    bound = "lead" if newest else "lag"
    if newest:
        inside = f"{alias}.{time} {'<=' if op == '>=' else '<'} {at}"
        before_end = f"{at} {'<' if op == '>=' else '<='} {alias}._asof_bound"
    else:
        inside = f"{alias}.{time} {'>=' if op == '<=' else '>'} {at}"
        before_end = f"{at} {'>' if op == '<=' else '>='} {alias}._asof_bound"
    return (
        f"{'LEFT ' if left else ''}JOIN (SELECT *, {bound}({time}) OVER (PARTITION BY {key} ORDER BY {time}) "
        f"AS _asof_bound FROM {relation} _asof_src) {alias} "
        f"ON {alias}.{key} = {outer_key} AND {inside} AND ({alias}._asof_bound IS NULL OR {before_end})"
    )


def translate_asof_joins(sql: str) -> str:
    """Every `ASOF [LEFT] JOIN` of `sql` as a span join (module docstring); other text unchanged."""
    out, position = [], 0
    while match := _HEAD.search(sql, position):
        start = match.end()
        end = _relation_end(sql, start)
        relation = sql[start:end]
        if relation.startswith("("):
            relation = "(" + translate_asof_joins(relation[1:-1]) + ")"
        alias_on = _ALIAS_ON.match(sql, end)
        cond = _COND.match(sql, alias_on.end()) if alias_on else None
        if not alias_on or not cond or _AFTER.match(sql, cond.end()):
            shown = " ".join(sql[match.start() : match.start() + 160].split())
            raise UnsupportedDialectError(
                f"ASOF join not of the form 'ASOF [LEFT] JOIN r a ON a.key = x AND x_time >= a.time': {shown!r}"
            )
        alias = alias_on.group("alias")
        mine = f"{alias}."
        a, b, lhs, op, rhs = cond.group("a", "b", "lhs", "op", "rhs")
        if a.startswith(mine) == b.startswith(mine) or lhs.startswith(mine) == rhs.startswith(mine):
            raise UnsupportedDialectError(f"ASOF join on '{alias}': each condition must compare {alias}.x with x")
        key, outer_key = (a, b) if a.startswith(mine) else (b, a)
        time, at = (rhs, lhs) if rhs.startswith(mine) else (lhs, rhs)
        if lhs.startswith(mine):
            op = _FLIP[op]  # now: at <op> alias.time
        joined = _span_join(
            bool(match.group(1)), relation, alias, key[len(mine) :], outer_key, time[len(mine) :], op, at
        )
        out.append(sql[position : match.start()] + joined)
        position = cond.end()
    out.append(sql[position:])
    return "".join(out)
