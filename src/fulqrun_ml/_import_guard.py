"""Keep pandera from importing pandas-on-Spark (`pyspark.pandas`) as a side effect.

pandera (0.3x, `pandera/external_config.py`) imports `pyspark.pandas` whenever pyspark is installed, only so that
pyspark can patch pandas' typing for pandas-on-Spark users. Since the `spark` extra is installed, that cost every
process that validates a table about 0.4 s and printed pyspark's "does not fully support pandas >= 3" warning on
every CLI command. This project's Spark code uses `pyspark.sql` only, so the import is refused for pandera alone
(pandera catches the ImportError and goes on); anyone else importing `pyspark.pandas` gets it as usual.
A stdlib meta-path finder is the smallest hook that does this; no library offers it.
"""

from __future__ import annotations

import importlib.abc
import sys
from types import FrameType

_REFUSED_MODULE = "pyspark.pandas"
_REFUSED_FOR = "pandera.external_config"


def _imported_by(module_name: str, frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_globals.get("__name__") == module_name:
            return True
        frame = frame.f_back
    return False


class _RefusePandasOnSparkForPandera(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname == _REFUSED_MODULE and _imported_by(_REFUSED_FOR, sys._getframe(1)):
            raise ModuleNotFoundError(f"{_REFUSED_MODULE} is not imported for pandera (fulqrun_ml._import_guard)")
        return None


def install() -> None:
    """Idempotent: one finder at the front of sys.meta_path."""
    if not any(isinstance(finder, _RefusePandasOnSparkForPandera) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RefusePandasOnSparkForPandera())
