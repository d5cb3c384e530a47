"""The prediction log's throughput cost and shipping rate as a script: `fulqrun_ml.benchmarks.prediction_log`."""

from fulqrun_ml.benchmarks.prediction_log import main

if __name__ == "__main__":
    raise SystemExit(main())
