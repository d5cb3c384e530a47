"""The federation server: it accepts organisations on a local socket, and sees only what the message schema allows.

Why the server never blocks on one client: every wait is `multiprocessing.connection.wait` with a deadline.
A client that dies mid-round closes its socket (EOF) and is dropped at once. A client that hangs is dropped
when the round's deadline passes. In both cases the round is aggregated from the clients that answered. A
client whose message breaks the schema, or whose delta holds NaN/inf, is refused for that round by client id
and tensor name (`events`), and it stays in the federation. `tap`, when set, sees every received message's raw
bytes. The schema test uses it to prove that nothing but deltas and counts crossed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener, wait
from pathlib import Path
from typing import Any

import numpy as np

from fulqrun_ml.federated.aggregate import ClientUpdate, apply_step, check_update, fedavg, plain_sum
from fulqrun_ml.federated.client_dp import ClientDP, global_norm, noised_mean
from fulqrun_ml.federated.messages import FederatedError, Message, MessageRejected, decode, encode
from fulqrun_ml.federated.secure_agg import dequantize, sum_residues

log = logging.getLogger(__name__)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class FederatedServer:
    """Connections to the organisations, and one method per protocol step; each step has a deadline."""

    def __init__(
        self,
        authkey: bytes,
        round_timeout_s: float = 300.0,
        secure: bool = False,
        dp: ClientDP | None = None,
        noise_rng: np.random.Generator | None = None,
    ) -> None:
        self.secure = secure  # pairwise-masked updates only (secure_agg.py); the server sees their sum
        self.dp = dp or ClientDP()
        self.noise_rng = noise_rng or np.random.default_rng()  # OS entropy unless a test pins it
        self.noised_rounds = 0  # rounds that released a noised aggregate: what the accountant composes
        self._dir = Path(tempfile.mkdtemp(prefix="fulqrun-fed-"))
        self.address = str(self._dir / "server.sock")
        self.authkey = authkey
        self.round_timeout_s = float(round_timeout_s)
        self._listener = Listener(self.address, family="AF_UNIX", authkey=authkey)
        self.clients: dict[str, Connection] = {}
        self.events: list[dict[str, Any]] = []  # rejections and drops, with the client and the reason
        self.tap: Callable[[str, bytes], None] | None = None

    def accept(self, expected: int, timeout_s: float) -> list[str]:
        """Wait up to `timeout_s` for `expected` clients to connect and say hello; returns their ids."""
        deadline = time.monotonic() + timeout_s
        accepted: list[Connection] = []

        def accept_loop() -> None:
            while len(accepted) < expected:
                try:
                    accepted.append(self._listener.accept())
                except (OSError, EOFError, AuthenticationError):  # closed at the deadline, or a bad handshake
                    if time.monotonic() >= deadline:
                        return

        thread = threading.Thread(target=accept_loop, daemon=True)
        thread.start()
        thread.join(timeout_s)
        if thread.is_alive():
            self._listener.close()  # unblocks accept()
            thread.join(5)
        for conn in list(accepted):
            if not conn.poll(max(0.0, deadline - time.monotonic()) + 1.0):
                self._event("connect", "?", "no hello")
                conn.close()
                continue
            try:
                message = decode(conn.recv_bytes(MAX_MESSAGE_BYTES), "?")
            except (MessageRejected, EOFError, OSError) as error:
                self._event("connect", "?", str(error))
                conn.close()
                continue
            who = message.header.get("client_id", "?")
            if message.type != "hello" or who in self.clients:
                self._event("connect", who, "first message must be a hello with a unique client_id")
                conn.close()
                continue
            self.clients[who] = conn
        if not self.clients:
            raise FederatedError(f"no organisation connected within {timeout_s:.0f} s")
        return list(self.clients)

    def collect(
        self, expected: str, stage: str, shapes: Mapping[str, tuple[int, ...]] | None = None
    ) -> dict[str, Message]:
        """One `expected` message from every client before the deadline. Dead and silent clients are dropped,
        schema breaks are refused for this stage, and a client's `failed` message drops it with its reason."""
        pending = {conn: who for who, conn in self.clients.items()}
        replies: dict[str, Message] = {}
        deadline = time.monotonic() + self.round_timeout_s
        while pending and (remaining := deadline - time.monotonic()) > 0:
            for conn in wait(list(pending), timeout=remaining):
                who = pending.pop(conn)
                try:
                    data = conn.recv_bytes(MAX_MESSAGE_BYTES)
                except (EOFError, OSError) as error:
                    self.drop(who, stage, f"disconnected ({type(error).__name__})")
                    continue
                if self.tap is not None:
                    self.tap(who, data)
                try:
                    message = decode(data, who, shapes)
                    if message.header.get("client_id") != who:
                        raise MessageRejected(who, "client_id", f"says {message.header.get('client_id')!r}")
                    if message.type == "failed":
                        self.drop(who, stage, f"failed: {message.header['error']}")
                        continue
                    if message.type != expected:
                        raise MessageRejected(who, message.type, f"expected a {expected} message")
                except MessageRejected as error:
                    self._event(stage, who, str(error), what=error.what)
                    continue
                replies[who] = message
        for who in pending.values():
            self.drop(who, stage, f"no reply within {self.round_timeout_s:g} s")
        return replies

    def broadcast(self, kind: str, header: Mapping[str, Any], tensors: Mapping[str, np.ndarray] | None = None) -> None:
        """Send one message to every client; a client whose socket is gone is dropped."""
        data = encode(kind, header, tensors)
        for who, conn in list(self.clients.items()):
            try:
                conn.send_bytes(data)
            except (OSError, EOFError) as error:
                self.drop(who, kind, f"disconnected ({type(error).__name__})")

    def exchange_keys(self) -> None:
        """Secure aggregation's set-up: collect every client's X25519 public key and relay the roster of keys."""
        self.broadcast("key_request", {})
        replies = self.collect("public_key", "key exchange")
        for who in set(self.clients) - set(replies):  # refused its key: it cannot take part in masking
            self.drop(who, "key exchange", "no usable public key")
        self.broadcast("peer_keys", {"keys": {who: m.header["public_key"] for who, m in sorted(replies.items())}})

    def reap(self, stage: str) -> None:
        """Drop clients whose socket closed since the last step, so the next roster leaves them out. Between
        steps a client sends nothing: anything readable is EOF, or a message out of turn (refused)."""
        for who, conn in list(self.clients.items()):
            if not conn.poll(0):
                continue
            try:
                conn.recv_bytes(MAX_MESSAGE_BYTES)
                self._event(stage, who, "sent a message out of turn; ignored")
            except (EOFError, OSError) as error:
                self.drop(who, stage, f"disconnected ({type(error).__name__})")

    def run_round(
        self, round_index: int, state: Mapping[str, np.ndarray], mu: float, local_epochs: int
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """One FedAvg/FedProx round (masked and/or with client-level DP when configured); returns the new global
        state and what happened (accepted, refused, val loss)."""
        stage = f"round {round_index}"
        if self.secure:
            self.reap(stage)
        roster = sorted(self.clients) if self.secure else []
        clip_norm = self.dp.clip_norm if self.dp.enabled else 0.0
        header = {"round": round_index, "purpose": "train", "mu": float(mu), "local_epochs": int(local_epochs)}
        self.broadcast("weights", {**header, "clip_norm": clip_norm, "roster": ",".join(roster)}, state)
        kind = "masked_update" if self.secure else "update"
        replies = self.collect(kind, stage, {k: tuple(v.shape) for k, v in state.items()})
        updates = []
        for who, message in replies.items():
            head = message.header
            update = ClientUpdate(who, message.tensors, head["n_examples"], head["val_log_loss"], head["n_val"])
            try:
                if head["round"] != round_index:
                    raise MessageRejected(who, "round", f"{head['round']} is not the current round {round_index}")
                if self.secure:  # only the counts can be checked: the tensors are masked
                    if update.n_examples <= 0 or not np.isfinite(update.val_log_loss):
                        raise MessageRejected(who, "n_examples/val_log_loss", "not a positive count / finite loss")
                else:
                    check_update(update)
                    if clip_norm and global_norm(update.delta) > clip_norm * (1 + 1e-4):
                        raise MessageRejected(who, "update", f"norm {global_norm(update.delta):.4g} > clip {clip_norm}")
            except MessageRejected as error:
                self._event(stage, who, str(error), what=error.what)
                continue
            updates.append(update)
        n_val = sum(u.n_val for u in updates)
        summary = {
            "round": round_index,
            "accepted": [u.client_id for u in updates],
            "examples": sum(u.n_examples for u in updates),
            # of the global model this round started from
            "val_log_loss_before": sum(u.val_log_loss * u.n_val for u in updates) / n_val if n_val else None,
        }
        missing = sorted(set(roster) - {u.client_id for u in updates})
        if missing:  # their peers' masks stay in the sum: nothing usable this round (secure_agg.py)
            self._event(stage, ",".join(missing), "masked update missing after masking; round discarded")
            return {k: v.copy() for k, v in state.items()}, {**summary, "accepted": [], "discarded": True}
        return self.aggregate(state, updates), summary

    def aggregate(self, state: Mapping[str, np.ndarray], updates: list[ClientUpdate]) -> dict[str, np.ndarray]:
        """FedAvg's weighted mean, or with DP the noised unweighted mean; under secure aggregation from the
        unmasked sum of the clients' pre-weighted (or clipped) fixed-point updates."""
        if not updates:
            return {k: v.copy() for k, v in state.items()}
        if self.secure:
            summed = dequantize(sum_residues([u.delta for u in updates]))
        elif self.dp.enabled:
            summed = plain_sum(updates)
        else:
            return fedavg(state, updates)
        if self.dp.enabled:
            self.noised_rounds += 1
            return apply_step(state, noised_mean(summed, len(updates), self.dp, self.noise_rng))
        total = float(sum(u.n_examples for u in updates))
        return apply_step(state, {name: value / total for name, value in summed.items()})

    def evaluate(self, state: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        """Each organisation's val/test metrics of `state`, computed on its own rows."""
        header = {"round": -1, "purpose": "evaluate", "mu": 0.0, "local_epochs": 0, "clip_norm": 0.0, "roster": ""}
        self.broadcast("weights", header, state)
        replies = self.collect("metrics", "evaluate")
        return {who: message.header["metrics"] for who, message in replies.items()}

    def drop(self, who: str, stage: str, reason: str) -> None:
        conn = self.clients.pop(who, None)
        if conn is not None:
            conn.close()
        self._event(stage, who, reason, dropped=True)

    def _event(self, stage: str, who: str, reason: str, what: str | None = None, dropped: bool = False) -> None:
        event = {"stage": stage, "client_id": who, "reason": reason, "dropped": dropped}
        if what is not None:
            event["what"] = what
        self.events.append(event)
        log.warning("federation %s: client %s %s: %s", stage, who, "dropped" if dropped else "refused", reason)

    def close(self) -> None:
        """Tell the remaining clients to stop and release the socket."""
        self.broadcast("stop", {})
        for conn in self.clients.values():
            conn.close()
        self.clients.clear()
        self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)
