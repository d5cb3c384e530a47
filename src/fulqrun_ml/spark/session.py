"""A Spark session configured like the DuckDB builds: UTC session time, bounded local resources.

UTC matters for parity: Spark renders and compares TIMESTAMP (local time zone) values in the session time
zone, and `INTERVAL n DAY` arithmetic crosses DST boundaries differently in any other zone.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyspark is the optional extra `spark`; imported lazily so the package imports without it
    from pyspark.sql import SparkSession


def local_session(master: str = "local[2]", shuffle_partitions: int = 4, app: str = "fulqrun-ml") -> SparkSession:
    """A (shared, via getOrCreate) Spark session. On a cluster, spark-submit supplies the master instead."""
    from pyspark.sql import SparkSession

    # Python workers run this interpreter (the venv with fulqrun_ml), not whatever `python3` is on PATH;
    # PySpark reads the variable, not the conf, when it starts the context.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.pyspark.python", sys.executable)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.ansi.enabled", "true")
        .getOrCreate()
    )
