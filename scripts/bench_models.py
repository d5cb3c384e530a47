"""Model leaderboard per task, with seeds and intervals: `fulqrun_ml.benchmarks.leaderboard` (see its --help)."""

from fulqrun_ml.benchmarks.leaderboard import main

if __name__ == "__main__":
    raise SystemExit(main())
