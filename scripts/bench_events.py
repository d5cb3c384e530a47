"""Issue 17 item 1: a user event table through task=events; `fulqrun_ml.benchmarks.event_study` (see its --help)."""

from fulqrun_ml.benchmarks.event_study import main

if __name__ == "__main__":
    raise SystemExit(main())
