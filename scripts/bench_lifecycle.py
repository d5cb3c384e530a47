"""Lifecycle stage + CSAT report: `fulqrun_ml.benchmarks.lifecycle` (see --help) -> reports/lifecycle_csat.{json,md}."""

from fulqrun_ml.benchmarks.lifecycle import main

if __name__ == "__main__":
    main()
