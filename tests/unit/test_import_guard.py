"""pandera must not drag pandas-on-Spark into every process (fulqrun_ml._import_guard), and only pandera is refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("pyspark")

PROBE = """
import sys
import fulqrun_ml.data.table_checks  # imports pandera
print("after pandera:", "pyspark.pandas" in sys.modules)
import pyspark.pandas  # a direct import still works
print("direct:", "pyspark.pandas" in sys.modules)
"""


def test_pandera_does_not_import_pandas_on_spark_but_others_may() -> None:
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", PROBE], capture_output=True, text=True, check=True)
    assert "after pandera: False" in out.stdout, out.stdout + out.stderr
    assert "direct: True" in out.stdout, out.stdout + out.stderr
