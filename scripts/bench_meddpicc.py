"""Deal-win MEDDPICC / text ablation: `fulqrun_ml.benchmarks.meddpicc_cli` (see its --help)."""

from fulqrun_ml.benchmarks.meddpicc_cli import main

if __name__ == "__main__":
    main()
