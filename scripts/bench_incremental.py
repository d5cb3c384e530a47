"""`fulqrun-ml bench incremental` as a script: `fulqrun_ml.benchmarks.incremental` (see its --help)."""

from fulqrun_ml.benchmarks.incremental import main

if __name__ == "__main__":
    raise SystemExit(main())
