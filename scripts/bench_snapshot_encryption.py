"""Cost of sealing run snapshots at rest: `fulqrun_ml.benchmarks.snapshot_encryption` (see its --help) ->
reports/bench_snapshot_encryption.json."""

from fulqrun_ml.benchmarks.snapshot_encryption import main

if __name__ == "__main__":
    main()
