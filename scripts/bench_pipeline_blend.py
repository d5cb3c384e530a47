"""Forecast leaderboard section `pipeline_blend`: `fulqrun_ml.benchmarks.pipeline_blend_study`."""

from fulqrun_ml.benchmarks.pipeline_blend_study import main

if __name__ == "__main__":
    raise SystemExit(main())
