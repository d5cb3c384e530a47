"""Sequence + tabular fusion vs tabular-only on deal win: `fulqrun_ml.benchmarks.sequence_study` (see its --help)."""

from fulqrun_ml.benchmarks.sequence_study import main

if __name__ == "__main__":
    raise SystemExit(main())
