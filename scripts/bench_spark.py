"""Spark vs DuckDB benchmarks, same SQL text, same CRM, same run.

.venv/bin/python scripts/bench_spark.py [--opportunities N ...]    # deal-win snapshot: benchmarks.spark_scale
.venv/bin/python scripts/bench_spark.py features [--opportunities N ...]  # full feature build, ASOF joins
                                                  # included: benchmarks.spark_features (bench_data.json)
"""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["features"]:
        from fulqrun_ml.benchmarks.spark_features import main as features_main

        features_main(sys.argv[2:])
    else:
        from fulqrun_ml.benchmarks.spark_scale import main

        main()
