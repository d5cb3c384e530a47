"""Automated feature generation vs the hand-declared set: `fulqrun_ml.benchmarks.autofeatures` (see its --help)."""

from fulqrun_ml.benchmarks.autofeatures import main

if __name__ == "__main__":
    raise SystemExit(main())
