"""The federated wire schema, the FeatureSpec from sufficient statistics, FedAvg/FedProx, and a server that refuses
bad updates by name and does not wait for dead or silent organisations. No torch processes here: peers are
threads speaking the real protocol over the real local socket."""

from __future__ import annotations

import io
import itertools
import threading
import time
from multiprocessing.connection import Client

import numpy as np
import pytest
import torch

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.features.spec import FeatureSpec, NumericFeature
from fulqrun_ml.federated.aggregate import ClientUpdate, fedavg
from fulqrun_ml.federated.feature_stats import feature_statistics, fit_from_statistics
from fulqrun_ml.federated.local import FedProxCallback
from fulqrun_ml.federated.messages import MessageRejected, decode, encode
from fulqrun_ml.federated.server import FederatedServer
from tests.unit.tabular_data import SPEC, frame

SHAPES = {"w": (2, 3), "b": (3,)}
STATE = {"w": np.zeros((2, 3), np.float32), "b": np.ones(3, np.float32)}


def update_bytes(who: str, delta: dict, n: int = 10, round_index: int = 1, **extra) -> bytes:
    header = {"client_id": who, "round": round_index, "n_examples": n, "val_log_loss": 0.5, "n_val": 4, **extra}
    return encode("update", header, delta)


def test_update_round_trips_and_only_parameters_cross() -> None:
    delta = {"w": np.full((2, 3), 0.5, np.float32), "b": np.zeros(3, np.float32)}
    message = decode(update_bytes("a", delta), "a", SHAPES)
    assert message.type == "update" and set(message.tensors) == set(SHAPES)
    np.testing.assert_array_equal(message.tensors["w"], delta["w"])
    # A row-level tensor riding along is refused by name, whatever its shape.
    with pytest.raises(MessageRejected, match="client 'a': tensor 'rows'"):
        decode(update_bytes("a", {**delta, "rows": np.zeros((50, 20), np.float32)}), "a", SHAPES)
    with pytest.raises(MessageRejected, match=r"tensor 'w'.*shape"):
        decode(update_bytes("a", {**delta, "w": np.zeros((4, 3), np.float32)}), "a", SHAPES)
    with pytest.raises(MessageRejected, match=r"tensor 'b'.*missing"):
        decode(update_bytes("a", {"w": delta["w"]}), "a", SHAPES)
    # An extra header field (rows as a list) and a list where a scalar belongs are refused.
    with pytest.raises(MessageRejected, match=r"unexpected.*labels"):
        decode(update_bytes("a", delta, labels=[0, 1, 1]), "a", SHAPES)
    bad_stats = {"client_id": "a", "n_rows": 3, "numeric": {"x": {"count": 3, "mean": [1.0, 2.0], "m2": 0.0}}}
    with pytest.raises(MessageRejected, match=r"stats.numeric.x.mean"):
        decode(encode("stats", {**bad_stats, "categories": {}}), "a")
    # Tensors are allowed in update/weights messages only; metrics hold known scalars only.
    with pytest.raises(MessageRejected, match="carries tensors"):
        decode(encode("hello", {"client_id": "a"}, {"x": np.zeros(3)}), "a")
    with pytest.raises(MessageRejected, match="unknown metrics"):
        decode(encode("metrics", {"client_id": "a", "metrics": {"test": {"scores": 1.0}}}), "a")


def test_pickled_payloads_are_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, w=np.array([{"row": 1}], dtype=object), b=np.zeros(3, np.float32))
    head = b'{"client_id": "a", "n_examples": 1, "n_val": 0, "round": 1, "type": "update", "val_log_loss": 0.1}'
    data = len(head).to_bytes(4, "big") + head + buffer.getvalue()
    with pytest.raises(MessageRejected, match="client 'a': tensors"):
        decode(data, "a", SHAPES)


@pytest.mark.parametrize("parts", [[1.0], [0.6, 0.3, 0.1]])
def test_federated_feature_spec_equals_central_fit(parts: list[float]) -> None:
    rows = frame(400, seed=5)
    bounds = np.cumsum([0, *[round(p * len(rows)) for p in parts]])
    shards = [rows.iloc[a:b] for a, b in itertools.pairwise(bounds)]
    federated = fit_from_statistics(SPEC, [feature_statistics(SPEC, s) for s in shards])
    central = SPEC.fit(rows)
    assert federated.vocabularies == central.vocabularies
    assert federated.modes == central.modes
    for name in central.means:
        assert federated.means[name] == pytest.approx(central.means[name], rel=1e-12, abs=1e-12)
        assert federated.stds[name] == pytest.approx(central.stds[name], rel=1e-12)
    np.testing.assert_allclose(federated.encode(rows)["continuous"], central.encode(rows)["continuous"], atol=1e-6)


def test_median_imputed_columns_are_refused_by_name() -> None:
    spec = FeatureSpec(numeric=(NumericFeature("gap", "x", impute_missing=True),), categorical=())
    with pytest.raises(FieldValidationError, match="field 'gap': impute_missing"):
        fit_from_statistics(spec, [])


def test_fedavg_weights_by_examples() -> None:
    updates = [
        ClientUpdate("a", {"w": np.full((2, 3), 1.0, np.float32), "b": np.zeros(3, np.float32)}, 30, 0.5, 1),
        ClientUpdate("b", {"w": np.full((2, 3), -1.0, np.float32), "b": np.ones(3, np.float32)}, 10, 0.5, 1),
    ]
    new = fedavg(STATE, updates)
    np.testing.assert_allclose(new["w"], 0.5)  # (30 * 1 - 10 * 1) / 40
    np.testing.assert_allclose(new["b"], 1.25)  # 1 + 10 / 40
    np.testing.assert_array_equal(fedavg(STATE, [])["w"], STATE["w"])


def test_fedprox_adds_the_proximal_gradient() -> None:
    class Holder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(2, 1)

    module = Holder()
    anchor = {k: v.detach().clone() - 1.0 for k, v in module.net.named_parameters()}
    for p in module.net.parameters():
        p.grad = torch.zeros_like(p)
    FedProxCallback(0.1, anchor).on_after_backward(None, module)
    for p in module.net.parameters():
        torch.testing.assert_close(p.grad, torch.full_like(p, 0.1))  # mu * (w - (w - 1))


def fake_client(address: str, authkey: bytes, who: str, behaviour: str, n: int, value: float) -> None:
    conn = Client(address, family="AF_UNIX", authkey=authkey)
    conn.send_bytes(encode("hello", {"client_id": who}))
    decode(conn.recv_bytes(), "server", SHAPES)  # the round's weights
    if behaviour == "die":  # mid-round, before answering
        conn.close()
        return
    delta = {"w": np.full((2, 3), value, np.float32), "b": np.full(3, value, np.float32)}
    if behaviour == "nan":
        delta["w"][1, 2] = np.nan
    if behaviour == "shape":
        delta["b"] = np.zeros(4, np.float32)
    if behaviour == "rows":
        delta["rows"] = np.zeros((n, 20), np.float32)
    if behaviour == "fail":  # its data broke: one located line, no rows
        conn.send_bytes(encode("failed", {"client_id": who, "error": "field 'value': must be >= 0"}))
    elif behaviour != "hang":
        conn.send_bytes(update_bytes(who, delta, n))
    try:
        while True:  # until the server says stop or closes
            conn.recv_bytes()
    except (EOFError, OSError):
        pass


def test_server_refuses_bad_updates_by_name_and_does_not_wait_for_dead_clients() -> None:
    server = FederatedServer(b"k" * 32, round_timeout_s=1.5)
    seen: list[str] = []
    server.tap = lambda who, data: seen.append(who)
    cast = {"good_a": ("ok", 30, 1.0), "good_b": ("ok", 10, -1.0), "nan": ("nan", 10, 5.0), "shape": ("shape", 10, 5.0)}
    cast |= {"rows": ("rows", 10, 5.0), "dies": ("die", 10, 5.0), "hangs": ("hang", 10, 5.0), "fails": ("fail", 10, 0)}
    threads = [
        threading.Thread(target=fake_client, args=(server.address, server.authkey, who, *spec), daemon=True)
        for who, spec in cast.items()
    ]
    for thread in threads:
        thread.start()
    try:
        assert sorted(server.accept(len(cast), timeout_s=20)) == sorted(cast)
        started = time.monotonic()
        new_state, summary = server.run_round(1, STATE, 0.0, 1)
        assert time.monotonic() - started < 6  # the silent client costs the deadline, not forever
    finally:
        server.close()
    assert sorted(summary["accepted"]) == ["good_a", "good_b"]
    np.testing.assert_allclose(new_state["w"], 0.5)  # only the two good deltas, weighted 30:10
    refused = {e["client_id"]: e for e in server.events}
    assert refused["nan"]["what"] == "tensor 'w'" and "NaN" in refused["nan"]["reason"]
    assert refused["shape"]["what"] == "tensor 'b'" and "shape" in refused["shape"]["reason"]
    assert refused["rows"]["what"] == "tensor 'rows'"
    assert refused["dies"]["dropped"] and "disconnected" in refused["dies"]["reason"]
    assert refused["hangs"]["dropped"] and "no reply within 1.5 s" in refused["hangs"]["reason"]
    assert refused["fails"]["dropped"] and "field 'value'" in refused["fails"]["reason"]
    assert not refused["nan"]["dropped"]  # a refused update leaves the client in the federation
    assert "hangs" not in seen and "dies" not in seen
