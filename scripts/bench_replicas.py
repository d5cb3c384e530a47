"""Triton replicas behind nginx (throughput/p99 direct vs nginx x1/x2, failed requests per SIGKILL):
`fulqrun_ml.benchmarks.replicas`; writes reports/bench_replicas.json."""

from fulqrun_ml.benchmarks.replicas import main

if __name__ == "__main__":
    main()
