"""One organisation's process: builds its own rows, and sends the server only statistics, deltas and metrics.

The process is started with `spawn` (a fresh interpreter that shares no memory with the server) and talks to the
server over a local socket (`multiprocessing.connection`, authenticated by a per-federation key). Everything it
sends goes through `messages.encode`, and the server checks it with `messages.decode`. The conversation:

    -> hello(client_id)
    -> stats(count/mean/M2 per numeric feature, category counts)      or failed(error) if its data is unusable
    <- spec(fitted FeatureSpec)
    with secure aggregation:  <- key_request  -> public_key(X25519)  <- peer_keys(every client's public key)
    repeat:  <- weights(purpose=train, round, mu, local_epochs, clip_norm, roster)
                -> update(delta, n_examples, val_log_loss, n_val), or masked_update when the roster is not empty
             <- weights(purpose=evaluate)                         -> metrics(val/test AUC, log loss, ...)
    <- stop

With clip_norm > 0 (client-level DP, client_dp.py) the delta is clipped here, before it leaves, and weighs 1.
Under secure aggregation the client sends (weight x delta) fixed-point and masked (secure_agg.py), with weight its
training rows (FedAvg) or 1 (DP), so the server's unmasked sum is the numerator of the mean.
"""

from __future__ import annotations

import logging
from multiprocessing.connection import Client, Connection
from typing import Any

import torch
from omegaconf import OmegaConf

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.federated.aggregate import load_shared_state, shapes_of, shared_state
from fulqrun_ml.federated.client_dp import clip
from fulqrun_ml.federated.feature_stats import feature_statistics
from fulqrun_ml.federated.local import build_net, split_metrics, train_locally, use_spec
from fulqrun_ml.federated.messages import FederatedError, decode, encode
from fulqrun_ml.federated.organisations import OrganisationProfile, organisation_datamodule
from fulqrun_ml.federated.secure_agg import PairwiseMasker

log = logging.getLogger(__name__)


def client_main(address: str, authkey: bytes, profile: dict[str, Any], index: int, config_yaml: str) -> None:
    """Entry point of a client process (multiprocessing spawn target)."""
    torch.set_num_threads(1)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning").setLevel(logging.WARNING)
    run_client(address, authkey, profile, index, config_yaml)


def run_client(address: str, authkey: bytes, profile: dict[str, Any], index: int, config_yaml: str) -> None:
    """Connect, say hello, answer until stop; a server that went away ends the client quietly."""
    organisation = OrganisationProfile(**profile)
    conn = Client(address, family="AF_UNIX", authkey=authkey)
    try:
        conn.send_bytes(encode("hello", {"client_id": organisation.name}))
        serve(conn, organisation, index, OmegaConf.create(config_yaml))
    except (EOFError, ConnectionError):
        log.info("client %s: the server closed the connection", organisation.name)
    finally:
        conn.close()


def serve(conn: Connection, organisation: OrganisationProfile, index: int, cfg: Any) -> None:
    """Answer the server until it says stop; rows stay in this function's datamodule."""
    who = organisation.name
    try:
        datamodule = organisation_datamodule(cfg, organisation, index)
        datamodule.setup("fit")
        stats = feature_statistics(datamodule.feature_spec, datamodule.frames["train"])
    except (FulqrunMLError, ValueError) as error:  # located data errors go to the server as one line
        conn.send_bytes(encode("failed", {"client_id": who, "error": str(error)}))
        return
    conn.send_bytes(encode("stats", {"client_id": who, **stats}))
    spec = FittedFeatureSpec.from_dict(decode(conn.recv_bytes(), "server").header["spec"])
    use_spec(datamodule, spec)
    net = build_net(cfg.model.net, spec)
    shapes = shapes_of(shared_state(net))
    n_train = len(datamodule.frames["train"])
    masker = PairwiseMasker(who)
    while True:
        message = decode(conn.recv_bytes(), "server", shapes)
        if message.type == "stop":
            return
        if message.type == "key_request":
            conn.send_bytes(encode("public_key", {"client_id": who, "public_key": masker.public_key}))
            continue
        if message.type == "peer_keys":
            masker.set_peers(message.header["keys"])
            continue
        load_shared_state(net, message.tensors)
        head = message.header
        if head["purpose"] == "evaluate":
            metrics = {s: split_metrics(net, spec, datamodule.frames[s]) for s in ("val", "test")}
            conn.send_bytes(encode("metrics", {"client_id": who, "metrics": metrics}))
            continue
        val = split_metrics(net, spec, datamodule.frames["val"])  # the global model's, before local steps
        seed = int(cfg.seed) * 1000 + 31 * index + head["round"]
        net = train_locally(cfg.task.module, net, datamodule, head["local_epochs"], head["mu"], seed)
        after = shared_state(net)
        delta = {name: after[name] - message.tensors[name] for name in shapes}
        update = {
            "client_id": who,
            "round": head["round"],
            "n_examples": n_train,
            "val_log_loss": float(val["log_loss"] or 0.0),
            "n_val": int(val["n"]),
        }
        conn.send_bytes(outgoing_update(masker, update, delta, head))


def outgoing_update(masker: PairwiseMasker, update: dict[str, Any], delta: dict[str, Any], head: dict) -> bytes:
    """The update message for this round's weights header: clipped when DP asks, masked when a roster is given.
    A roster the masker refuses (too small, unknown peer) becomes a `failed` message: nothing readable leaves."""
    if head["clip_norm"] > 0:
        delta = clip(delta, head["clip_norm"])
    if not head["roster"]:
        return encode("update", update, delta)
    weight = 1.0 if head["clip_norm"] > 0 else float(update["n_examples"])
    try:
        masked = masker.mask({k: v * weight for k, v in delta.items()}, head["roster"].split(","), head["round"])
    except FederatedError as error:
        return encode("failed", {"client_id": update["client_id"], "error": str(error)})
    return encode("masked_update", update, masked)
