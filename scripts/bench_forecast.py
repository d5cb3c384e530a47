"""Revenue-forecast leaderboard: `fulqrun_ml.benchmarks.forecast_study` (see its --help)."""

from fulqrun_ml.benchmarks.forecast_study import main

if __name__ == "__main__":
    raise SystemExit(main())
