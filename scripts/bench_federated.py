"""Federated vs centralised vs local-only report: `fulqrun_ml.benchmarks.federated` (see its --help) ->
reports/federated.{json,md,png}."""

from fulqrun_ml.benchmarks.federated import main

if __name__ == "__main__":
    main()
