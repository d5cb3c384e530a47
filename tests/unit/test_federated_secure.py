"""Secure aggregation and client-level DP on the federated updates, over the real socket protocol: peers are threads
running the client's own masking/clipping code (`client.outgoing_update`) against the real server.

Guarantees tested: the server's view of one organisation's update is uncorrelated with it, yet the unmasked
aggregate equals plain FedAvg; a client gone before the round is left out of the masks, one gone after masking
voids the round; DP clips each update to C and adds noise of std sigma C / K to the mean; epsilon follows the RDP
accounting of a Gaussian mechanism composed over rounds."""

from __future__ import annotations

import math
import threading
from multiprocessing.connection import Client

import numpy as np
import pytest

from fulqrun_ml.federated.aggregate import ClientUpdate, fedavg
from fulqrun_ml.federated.client import outgoing_update
from fulqrun_ml.federated.client_dp import ClientDP, accounting, clip, global_norm
from fulqrun_ml.federated.federation import FederatedSettings
from fulqrun_ml.federated.messages import FederatedError, decode, encode
from fulqrun_ml.federated.secure_agg import PairwiseMasker, dequantize
from fulqrun_ml.federated.server import FederatedServer

SHAPES = {"w": (40, 50), "b": (50,)}
STATE = {name: np.zeros(shape, np.float32) for name, shape in SHAPES.items()}
ROWS = {"a": 300, "b": 100, "c": 50, "d": 20}


def true_delta(who: str, round_index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([ord(who[0]), round_index])
    return {name: rng.normal(0.1, 0.05, shape).astype(np.float32) for name, shape in SHAPES.items()}


def peer(address: str, authkey: bytes, who: str, quit_after: str = "") -> None:
    """One organisation: the protocol's secure set-up, then an update per round until stop (or until it quits)."""
    conn = Client(address, family="AF_UNIX", authkey=authkey)
    masker = PairwiseMasker(who)
    try:
        conn.send_bytes(encode("hello", {"client_id": who}))
        while True:
            message = decode(conn.recv_bytes(), "server", SHAPES)
            if message.type == "stop":
                return
            if message.type == "key_request":
                conn.send_bytes(encode("public_key", {"client_id": who, "public_key": masker.public_key}))
            elif message.type == "peer_keys":
                masker.set_peers(message.header["keys"])
                if quit_after == "keys":
                    return
            elif message.type == "weights":
                if quit_after == f"weights {message.header['round']}":
                    return
                head = {"client_id": who, "round": message.header["round"], "n_examples": ROWS[who]}
                update = {**head, "val_log_loss": 0.5, "n_val": 10}
                delta = true_delta(who, head["round"])
                if quit_after == "no clip":  # a client that ignores the clipping norm
                    conn.send_bytes(encode("update", update, delta))
                else:
                    conn.send_bytes(outgoing_update(masker, update, delta, message.header))
    except (EOFError, OSError):
        pass
    finally:
        conn.close()


def federation(quitters: dict[str, str], **server_options) -> tuple[FederatedServer, list[threading.Thread]]:
    server = FederatedServer(b"k" * 32, round_timeout_s=5.0, **server_options)
    threads = [
        threading.Thread(target=peer, args=(server.address, server.authkey, who, quitters.get(who, "")), daemon=True)
        for who in ROWS
    ]
    for thread in threads:
        thread.start()
    assert sorted(server.accept(len(ROWS), timeout_s=20)) == sorted(ROWS)
    if server.secure:
        server.exchange_keys()
    return server, threads


def plain_fedavg(round_index: int, members: list[str]) -> dict[str, np.ndarray]:
    updates = [ClientUpdate(w, true_delta(w, round_index), ROWS[w], 0.5, 10) for w in members]
    return fedavg(STATE, updates)


def test_server_sees_masked_updates_only_yet_the_sum_is_fedavg() -> None:
    seen: dict[str, bytes] = {}
    server, _ = federation({}, secure=True)
    server.tap = lambda who, data: seen.setdefault(who, data)
    try:
        new_state, summary = server.run_round(1, STATE, 0.0, 1)
    finally:
        server.close()
    assert sorted(summary["accepted"]) == sorted(ROWS) and not server.events
    expected = plain_fedavg(1, list(ROWS))
    for name in SHAPES:
        np.testing.assert_allclose(new_state[name], expected[name], rtol=0, atol=1e-6)
    # What the server received from "a": every tensor masked; as numbers it is noise around the true update.
    message = decode(seen["a"], "a", SHAPES)
    assert message.type == "masked_update" and all(t.dtype == np.uint64 for t in message.tensors.values())
    view = np.concatenate([v.ravel() for v in dequantize(message.tensors).values()])
    truth = np.concatenate([v.ravel() * ROWS["a"] for v in true_delta("a", 1).values()])
    assert abs(np.corrcoef(view, truth)[0, 1]) < 0.1  # 2,050 values: |r| ~ 0.02 by chance, 1.0 unmasked
    assert np.abs(view - truth).mean() > 1e6  # masks span the fixed-point range; the update is ~30


def test_clients_gone_before_masking_are_left_out_and_after_masking_void_the_round() -> None:
    server, threads = federation({"d": "keys", "c": "weights 2"}, secure=True)
    try:
        threads[list(ROWS).index("d")].join(10)  # "d" left after the key exchange, before round 1
        first, summary1 = server.run_round(1, STATE, 0.0, 1)
        second, summary2 = server.run_round(2, first, 0.0, 1)  # "c" takes round 2's weights, never answers
    finally:
        server.close()
    assert sorted(summary1["accepted"]) == ["a", "b", "c"]
    expected = plain_fedavg(1, ["a", "b", "c"])
    for name in SHAPES:
        np.testing.assert_allclose(first[name], expected[name], rtol=0, atol=1e-6)
    assert summary2.get("discarded") and summary2["accepted"] == []
    for name in SHAPES:
        np.testing.assert_array_equal(second[name], first[name])  # a voided round changes nothing
    reasons = {e["client_id"]: e["reason"] for e in server.events}
    assert "disconnected" in reasons["d"] and "round discarded" in reasons["c"]


def test_a_client_refuses_a_roster_the_server_could_read() -> None:
    masker = PairwiseMasker("a")
    header = {"round": 1, "clip_norm": 0.0, "roster": "a"}
    update = {"client_id": "a", "round": 1, "n_examples": 5, "val_log_loss": 0.5, "n_val": 1}
    sent = decode(outgoing_update(masker, update, true_delta("a", 1), header), "a", SHAPES)
    assert sent.type == "failed" and "roster" in sent.header["error"] and not sent.tensors


def test_client_dp_clips_each_update_and_noises_the_mean() -> None:
    delta = true_delta("a", 1)
    assert global_norm(delta) > 1.0
    assert global_norm(clip(delta, 1.0)) == pytest.approx(1.0)
    sigma, c = 0.5, 1.0
    server, _ = federation({"d": "no clip"}, dp=ClientDP(sigma, c), noise_rng=np.random.default_rng(0))
    try:
        new_state, summary = server.run_round(1, STATE, 0.0, 1)
    finally:
        server.close()
    honest = ["a", "b", "c"]
    assert sorted(summary["accepted"]) == honest and server.noised_rounds == 1
    refused = {e["client_id"]: e for e in server.events}
    assert refused["d"]["what"] == "update" and "> clip 1.0" in refused["d"]["reason"]
    clipped = [clip(true_delta(w, 1), c) for w in honest]
    for name in SHAPES:
        mean = sum(d[name] for d in clipped) / len(honest)  # unweighted: every organisation weighs 1 under DP
        noise = (new_state[name] - mean).ravel()
        assert abs(noise.mean()) < 0.02
        assert np.std(noise) == pytest.approx(sigma * c / len(honest), rel=0.15)


def test_epsilon_is_the_composed_gaussian_mechanism() -> None:
    dp = ClientDP(noise_multiplier=1.0, clip_norm=1.0, delta=1e-5)
    eps = {rounds: accounting(dp, rounds, 4)["epsilon"] for rounds in (1, 10, 40)}
    assert eps[1] < eps[10] < eps[40]
    # RDP of the Gaussian mechanism at order a is T a / (2 sigma^2); the classical conversion bounds epsilon.
    for rounds, value in eps.items():
        bound = min(rounds * a / 2 + math.log(1e5) / (a - 1) for a in np.linspace(1.1, 64, 2000))
        assert 0.7 * bound < value <= bound
    assert accounting(ClientDP(4.0, 1.0, 1e-5), 10, 4)["epsilon"] < eps[10]


def test_config_knobs_are_checked_by_name() -> None:
    settings = FederatedSettings.from_config(
        {"algorithm": "fedavg", "rounds": 2, "secure_aggregation": True, "dp": {"noise_multiplier": 0.3}}
    )
    assert settings.secure_aggregation and settings.dp.enabled and settings.dp.clip_norm == 0.1
    with pytest.raises(FederatedError, match=r"federated\.dp\.noise_multiplier"):
        FederatedSettings.from_config({"algorithm": "fedavg", "rounds": 2, "dp": {"noise_multiplier": -1}})
    with pytest.raises(FederatedError, match=r"federated\.dp has unknown keys"):
        FederatedSettings.from_config({"algorithm": "fedavg", "rounds": 2, "dp": {"epsilon": 3}})
    with pytest.raises(FederatedError, match=r"federated\.secure_aggregation"):
        FederatedSettings.from_config({"algorithm": "fedavg", "rounds": 2, "secure_aggregation": "yes"})
