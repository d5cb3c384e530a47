"""Freshness from a CRM write to a served prediction by id: `fulqrun_ml.benchmarks.freshness`."""

from fulqrun_ml.benchmarks.freshness import main

if __name__ == "__main__":
    raise SystemExit(main())
