"""DP-SGD privacy-utility report: `fulqrun_ml.benchmarks.privacy` (see its --help) -> reports/privacy.{json,png}."""

from fulqrun_ml.benchmarks.privacy import main

if __name__ == "__main__":
    main()
