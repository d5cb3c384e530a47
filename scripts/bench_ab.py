"""The A/B validity benchmark as a script: `fulqrun_ml.benchmarks.ab_validity` (see its --help)."""

from fulqrun_ml.benchmarks.ab_validity import main

if __name__ == "__main__":
    raise SystemExit(main())
