"""Lead conversion with lead behaviour vs tabular-only: `fulqrun_ml.benchmarks.sequence_leads` (see its --help)."""

from fulqrun_ml.benchmarks.sequence_leads import main

if __name__ == "__main__":
    raise SystemExit(main())
