"""Spark vs DuckDB deal-win snapshot benchmark: `fulqrun_ml.benchmarks.spark_scale` (see its --help)."""

from fulqrun_ml.benchmarks.spark_scale import main

if __name__ == "__main__":
    main()
