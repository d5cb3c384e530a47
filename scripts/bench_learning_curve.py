"""Deal-win learning curve vs the oracle: `fulqrun_ml.benchmarks.learning_curve_cli` (see its --help)."""

from fulqrun_ml.benchmarks.learning_curve_cli import main

if __name__ == "__main__":
    main()
