"""Replay weeks of daily refresh on the simulator: `fulqrun_ml.benchmarks.refresh_replay` (see its --help)."""

from fulqrun_ml.benchmarks.refresh_replay import main

if __name__ == "__main__":
    raise SystemExit(main())
