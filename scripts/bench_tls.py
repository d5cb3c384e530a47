"""TLS cost on Triton gRPC: `fulqrun_ml.benchmarks.tls` (see its --help) -> reports/bench_tls.json."""

from fulqrun_ml.benchmarks.tls import main

if __name__ == "__main__":
    main()
