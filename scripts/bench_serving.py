"""`fulqrun-ml bench serve` as a script: `fulqrun_ml.benchmarks.serving` (see its --help)."""

from fulqrun_ml.benchmarks.serving import main

if __name__ == "__main__":
    raise SystemExit(main())
