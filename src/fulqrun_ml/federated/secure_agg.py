"""Secure aggregation by pairwise additive masking: the server learns the sum of the updates, not any one of them.

The scheme (Bonawitz et al. 2017, "Practical Secure Aggregation", without its dropout-recovery half):

- every organisation makes an X25519 key pair and sends the server only its public key; the server relays the
  roster of public keys to everyone;
- each pair (u, v) derives the same secret from its Diffie-Hellman exchange. HKDF turns it into an AES key, and
  AES-CTR keyed by it, with the round as nonce, expands into one pseudo-random mask per pair and round;
- an update is first made fixed-point (round(x * 2**32) as a 64-bit integer), because masks cancel exactly only
  in modular integer arithmetic (float masks would either leave rounding residue or hide too little). The
  lower-named client of each pair adds the pair's mask, the other subtracts it, all mod 2**64;
- the server adds the masked updates mod 2**64: every pair's mask appears once with + and once with -, so the
  sum is the true fixed-point sum. Each masked update alone is uniformly distributed: it is independent of the
  client's update as long as at least one peer of that client keeps its secret.

Why each round carries a roster: a client masks only against the peers the server says take part in this round.
A client that dropped before the round (its socket closed) is left out of the roster, so the others' masks still
cancel. What is NOT handled: a client in the roster that drops after masking. Its peers' masks for it stay in the
sum, and Bonawitz et al. recover them with Shamir shares of the pair seeds, which this scheme does not have.
The server detects the case (a roster member's masked update is missing) and discards that round's aggregate.
The threat model is an honest-but-curious server: one that lies about the roster (e.g. sends a client a roster of
itself plus a key it controls) or colludes with all but one client could learn that client's update; rosters
below MIN_ROSTER are refused by the client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fulqrun_ml.federated.messages import FederatedError

FRACTION_BITS = 32  # fixed point: 2**-32 resolution
SCALE = float(2**FRACTION_BITS)
MAX_ABS = float(2**24)  # per-client bound; a sum of up to 2**7 such clients still fits the signed 64-bit range
MIN_ROSTER = 2
_INFO = b"fulqrun-ml secure aggregation pair mask v1"


def quantize(tensors: Mapping[str, np.ndarray], who: str) -> dict[str, np.ndarray]:
    """Float tensors as fixed-point uint64 residues (two's complement); refuses values it cannot represent."""
    out = {}
    for name, value in tensors.items():
        value = np.asarray(value, dtype=np.float64)
        if not np.isfinite(value).all():
            raise FederatedError(f"client '{who}': tensor '{name}' holds NaN or infinite values; not masked")
        if np.abs(value).max(initial=0.0) >= MAX_ABS:
            raise FederatedError(f"client '{who}': tensor '{name}' exceeds the fixed-point range ±{MAX_ABS:g}")
        out[name] = np.rint(value * SCALE).astype(np.int64).view(np.uint64)
    return out


def dequantize(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """uint64 residues back to float64 (read as signed)."""
    return {name: value.view(np.int64).astype(np.float64) / SCALE for name, value in tensors.items()}


def sum_residues(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The element-wise sum mod 2**64 of masked updates (numpy's uint64 addition wraps)."""
    total = {name: np.zeros_like(value, dtype=np.uint64) for name, value in parts[0].items()}
    for part in parts:
        for name in total:
            total[name] += part[name]
    return total


def public_key_hex(key: X25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


class PairwiseMasker:
    """One client's side: its key pair, its peers' pair keys, and the masking of one round's update."""

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self._private = X25519PrivateKey.generate()
        self.public_key = public_key_hex(self._private)
        self._pair_keys: dict[str, bytes] = {}

    def set_peers(self, public_keys: Mapping[str, str]) -> None:
        """Derive one AES key per peer from the relayed roster of public keys (its own entry is skipped)."""
        for peer, key_hex in public_keys.items():
            if peer == self.client_id:
                continue
            try:
                peer_key = X25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
                shared = self._private.exchange(peer_key)
            except ValueError as error:
                raise FederatedError(f"client '{self.client_id}': public key of '{peer}' unusable: {error}") from None
            low, high = sorted((self.client_id, peer))
            info = _INFO + b"|" + low.encode() + b"|" + high.encode()
            self._pair_keys[peer] = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared)

    def mask(self, tensors: Mapping[str, np.ndarray], roster: Sequence[str], round_index: int) -> dict[str, np.ndarray]:
        """`tensors` fixed-point and masked against every other roster member for this round."""
        peers = [p for p in roster if p != self.client_id]
        if self.client_id not in roster or len(roster) < MIN_ROSTER:
            raise FederatedError(
                f"client '{self.client_id}': round {round_index} roster {sorted(roster)} must hold this client and "
                f">= {MIN_ROSTER} clients; refusing to send an update the server could read"
            )
        unknown = sorted(set(peers) - set(self._pair_keys))
        if unknown:
            raise FederatedError(f"client '{self.client_id}': no public key for roster members {unknown}")
        masked = quantize(tensors, self.client_id)
        names = sorted(masked)
        sizes = [masked[n].size for n in names]
        for peer in peers:
            stream = pair_stream(self._pair_keys[peer], round_index, sum(sizes))
            sign_add = self.client_id < peer
            offset = 0
            for name, size in zip(names, sizes, strict=True):
                piece = stream[offset : offset + size].reshape(masked[name].shape)
                masked[name] = masked[name] + piece if sign_add else masked[name] - piece
                offset += size
        return masked


def pair_stream(key: bytes, round_index: int, count: int) -> np.ndarray:
    """`count` pseudo-random uint64 words from AES-256-CTR; both peers compute the same. The round fills the
    counter block's high 8 bytes and the block counter the low 8, so no two rounds' streams overlap."""
    if round_index < 0:
        raise FederatedError(f"round {round_index}: masks are defined for training rounds (>= 0) only")
    nonce = round_index.to_bytes(8, "big") + bytes(8)
    encryptor = Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()
    return np.frombuffer(encryptor.update(bytes(8 * count)), dtype=np.uint64)
