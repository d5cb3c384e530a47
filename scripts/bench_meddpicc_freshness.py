"""Commit -> Redis freshness of the MEDDPICC and note features: `fulqrun_ml.benchmarks.meddpicc_freshness`."""

from fulqrun_ml.benchmarks.meddpicc_freshness import main

if __name__ == "__main__":
    raise SystemExit(main())
