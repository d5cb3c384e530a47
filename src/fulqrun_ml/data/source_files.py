"""Reading one exported table file, with errors a user can act on.

Why its own module: pandas and pyarrow raise `EmptyDataError`, `UnicodeDecodeError` (with an offset into their
read buffer, not the file) or `ArrowInvalid`, none naming the table or the line; every file source turns them into
one `SourceError` naming table, file and line here. `SourceError` lives here too (re-exported by sources.py) so
both modules share it without an import cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.errors import FulqrunMLError


class SourceError(FulqrunMLError):
    """A source cannot be read: a missing file or table, an unreachable database, an ambiguous export."""


def read_table_file(file: Path, table: str, **csv_options: Any) -> pd.DataFrame:
    """Read one exported table, turning pandas/pyarrow's raw errors into a SourceError naming the file, the table
    and (for an undecodable byte) the line, so a user sees what to fix instead of a parser traceback."""
    try:
        if file.suffix == ".csv":
            return pd.read_csv(file, encoding="utf-8", **csv_options)
        return pd.read_parquet(file)
    except pd.errors.EmptyDataError:
        raise SourceError(f"table '{table}' ({file}) is empty: not even a header row") from None
    except UnicodeDecodeError:
        raise SourceError(f"table '{table}' ({file}): {_first_bad_byte(file)}; export the file as UTF-8") from None
    except pd.errors.ParserError as err:
        raise SourceError(f"table '{table}' ({file}) is not a readable CSV: {err}") from None
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError: not a Parquet file
        raise SourceError(f"table '{table}' ({file}) cannot be read: {err}") from None


def _first_bad_byte(file: Path) -> str:
    """Where the first non-UTF-8 byte is. pandas' UnicodeDecodeError counts from the start of its read buffer,
    not the file, so the position is found again here (only on this error path, so reading the file is fine)."""
    data = file.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        # Line 1 is the header, so line n holds data row n - 2 (0-based), as the contract report counts rows.
        where = "the header" if line == 1 else f"line {line} (data row {line - 2})"
        return f"byte 0x{data[err.start]:02x} at offset {err.start} in {where} is not UTF-8"
    return "the file is not UTF-8"
