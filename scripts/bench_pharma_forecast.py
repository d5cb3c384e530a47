"""Forecast leaderboard section `pharma` (TRx / NRx by HCP and territory): `fulqrun_ml.benchmarks.pharma_forecast`."""

from fulqrun_ml.benchmarks.pharma_forecast import main

if __name__ == "__main__":
    raise SystemExit(main())
