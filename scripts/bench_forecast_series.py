"""Forecast leaderboard sections `user_tables` and `hierarchy`: `fulqrun_ml.benchmarks.forecast_series_study`."""

from fulqrun_ml.benchmarks.forecast_series_study import main

if __name__ == "__main__":
    raise SystemExit(main())
