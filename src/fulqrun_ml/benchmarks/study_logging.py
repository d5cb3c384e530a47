"""The log set-up every training study's command shares: its own progress at INFO, the training libraries'
per-epoch chatter only from WARNING up (a study trains dozens of runs; their banners drown the study's lines)."""

from __future__ import annotations

import logging

TRAINING_LOGGERS = ("pytorch_lightning", "lightning", "lightning_fabric", "torch")


def configure_study_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in TRAINING_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
