"""`fulqrun-ml bench score` as a script: `fulqrun_ml.benchmarks.scoring` (see its --help)."""

from fulqrun_ml.benchmarks.scoring import main

if __name__ == "__main__":
    raise SystemExit(main())
