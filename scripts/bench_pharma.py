"""reports/pharma.json: call and sample effects on NRx vs the simulator's truth (`benchmarks.pharma_effects_report`).

.venv/bin/python scripts/bench_pharma.py --seeds 0 1 2 3 4
"""

from fulqrun_ml.benchmarks.pharma_effects_report import main

if __name__ == "__main__":
    raise SystemExit(main())
