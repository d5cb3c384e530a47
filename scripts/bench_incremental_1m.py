"""Deal-win training at 1M opportunities from the DuckDB-built snapshot: `fulqrun_ml.benchmarks.incremental_1m`."""

from fulqrun_ml.benchmarks.incremental_1m import main

if __name__ == "__main__":
    raise SystemExit(main())
