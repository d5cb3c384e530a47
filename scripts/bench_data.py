"""Data-at-scale benchmark: `fulqrun_ml.benchmarks.data_scale` (see its --help)."""

from fulqrun_ml.benchmarks.data_scale import main

if __name__ == "__main__":
    main()
