"""`recommend(records, k)` against a running Triton: the SDK's next best actions from the served `<name>_actions`.

Same records in and the same rows out as the in-process `recommend.sdk.recommend` (a test checks the answers are
equal): per deal, the top-k actions with `uplift_win_probability`, its 95% interval, `uplift_expected_revenue`, a
plain `reason` and `supported`, ranked 1..k. Records are checked locally with the SDK's own rules first
(`sdk.check_states`), so a bad record is a FieldValidationError naming the field before anything is sent; the
server checks again (it never trusts a client), and its field errors come back as FieldValidationError too.
Why it lives in recommend/ and not serving/: it reuses the SDK's record validation, which sits above serving.
`fulqrun-ml recommend` (bulk scoring of every open deal) keeps the in-process path: no server needed for a batch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.recommend.sdk import MODEL_NAME, check_states
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.codec import Protocol, RetryPolicy
from fulqrun_ml.serving.nba import K_INPUT, OUTPUT, actions_name


class TritonRecommender:
    """Blocking client of `<name>_actions` over HTTP or gRPC (retries and error mapping from TritonPredictionClient)."""

    def __init__(
        self,
        url: str,
        model_name: str = MODEL_NAME,
        protocol: Protocol = "http",
        model_version: str = "",
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.client = TritonPredictionClient(
            url,
            actions_name(model_name),
            protocol=protocol,
            model_version=model_version,
            retry=retry,
            timeout_s=timeout_s,
        )

    def recommend(self, records: list[Mapping[str, Any]], k: int = 5) -> list[dict[str, Any]]:
        """Top-k actions per record, one dict per (record, rank), in record then rank order."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise FieldValidationError("k", f"expected a positive integer, got {k!r}")
        states = check_states(records)
        columns = {name: states[name].to_numpy() for name, _ in self.client.inputs if name != K_INPUT}
        columns[K_INPUT] = np.full(len(states), k, dtype=np.int64)
        answers = self.client.infer(columns)[OUTPUT].reshape(-1)
        rows = []
        for opportunity_id, answer in zip(states["opportunity_id"], answers, strict=True):
            rows.extend({"opportunity_id": opportunity_id, **action} for action in json.loads(answer))
        return rows

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> TritonRecommender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recommend(
    records: list[Mapping[str, Any]],
    k: int = 5,
    url: str = "127.0.0.1:8000",
    model_name: str = MODEL_NAME,
    protocol: Protocol = "http",
) -> list[dict[str, Any]]:
    """One call: the served next best actions for `records` (see TritonRecommender.recommend)."""
    with TritonRecommender(url, model_name, protocol) as recommender:
        return recommender.recommend(records, k)
