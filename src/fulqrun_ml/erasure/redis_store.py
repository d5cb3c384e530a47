"""The Redis store (online feature rows, note embeddings, the view registry): every key is looked at, by name and
by value, so a subject is found wherever a writer put it, not only under the layouts this code knows.

Why scan everything: the feature store keys rows by entity id (`fq:fv:{view}:{version}:{id}`, tenant rows as
`@org/id`), but other writers (the by-id backend's caches, future views) may use other layouts. SCAN walks the
keyspace without blocking Redis. Values are matched inside Redis first (the MENTIONS script: a plain,
case-insensitive substring search per batch of keys), because parsing every value of 10k feature rows in Python
cost ~8 s per pass on a 10k-opportunity CRM (scripts/bench_erasure.py); only the keys it returns are fetched and
decided on in Python with the same token rules as every other store.

Erasure: a key whose name holds one of the subject's ids is deleted (the entity's whole feature row); a value
that mentions the subject under another key is removed from it (a hash field, a list or set member) or, for a
plain string, the key is deleted. Each Redis command is atomic on its own, and a rerun finds only what is left.
"""

from __future__ import annotations

from typing import Any

import redis

from fulqrun_ml.erasure.matcher import Matcher
from fulqrun_ml.erasure.subject import ErasureError
from fulqrun_ml.online.store import safe_url
from fulqrun_ml.serving.tls import require_tls_url

BATCH = 500
# Server-side pre-filter: which of KEYS mention any of ARGV (lower-case tokens) in their name or values. Run per
# batch of BATCH keys so Redis is never blocked for long; only the (few) matching keys travel to Python.
MENTIONS = """
local hits = {}
for _, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key)['ok']
  local parts = {key}
  local values = {}
  if kind == 'hash' then values = redis.call('HGETALL', key)
  elseif kind == 'string' then values = {redis.call('GET', key)}
  elseif kind == 'list' then values = redis.call('LRANGE', key, 0, -1)
  elseif kind == 'set' then values = redis.call('SMEMBERS', key)
  elseif kind == 'zset' then values = redis.call('ZRANGE', key, 0, -1)
  end
  for i = 1, #values do parts[#parts + 1] = values[i] end
  local text = string.lower(table.concat(parts, '\\31'))
  for _, token in ipairs(ARGV) do
    if string.find(text, token, 1, true) then hits[#hits + 1] = key; break end
  end
end
return hits
"""


class RedisStore:
    """One Redis database, by URL (the password stays in the URL, never in messages)."""

    name = "redis"

    def __init__(self, url: str, socket_timeout: float = 2.0) -> None:
        self.location = safe_url(url)
        try:
            self.client = redis.Redis.from_url(
                require_tls_url(url, "the Redis URL"),
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                decode_responses=True,
            )
        except ValueError as err:
            raise ErasureError(f"redis URL {self.location!r} is not a Redis URL: {err}") from None

    def _mentioning(self, matcher: Matcher) -> list[str]:
        """Keys whose name or values contain one of the subject's tokens (the MENTIONS script, batch by batch)."""
        tokens = [t.lower() for t in matcher.tokens]
        found: list[str] = []
        try:
            script = self.client.register_script(MENTIONS)
            keys = list(self.client.scan_iter(count=1000))
            for start in range(0, len(keys), BATCH):
                found += script(keys=keys[start : start + BATCH], args=tokens)
        except redis.exceptions.RedisError as err:
            raise ErasureError(f"redis {self.location} failed while scanning: {type(err).__name__}") from None
        return found

    def _entries(self, keys: list[str] | None = None) -> list[tuple[str, str, Any]]:
        """(key, type, value) of every key (or of `keys`); values as Python containers of strings."""
        out: list[tuple[str, str, Any]] = []
        try:
            keys = list(self.client.scan_iter(count=1000)) if keys is None else keys
            for start in range(0, len(keys), BATCH):
                chunk = keys[start : start + BATCH]
                pipe = self.client.pipeline(transaction=False)
                for key in chunk:
                    pipe.type(key)
                types = pipe.execute()
                pipe = self.client.pipeline(transaction=False)
                for key, kind in zip(chunk, types, strict=True):
                    {
                        "hash": pipe.hgetall,
                        "string": pipe.get,
                        "list": lambda k, p=pipe: p.lrange(k, 0, -1),
                        "set": pipe.smembers,
                        "zset": lambda k, p=pipe: p.zrange(k, 0, -1),
                    }.get(kind, pipe.exists)(key)
                out.extend(zip(chunk, types, pipe.execute(), strict=True))
        except redis.exceptions.RedisError as err:
            raise ErasureError(f"redis {self.location} failed while scanning: {type(err).__name__}") from None
        return out

    def texts(self) -> list[tuple[str, list[str]]]:
        """(key, every text it holds: field names, values, members) for the PII scan."""
        return [(key, _strings(kind, value)) for key, kind, value in self._entries()]

    def count(self, matcher: Matcher) -> dict[str, int]:
        """Keys whose name or value mentions the subject (key names are not reported: they hold ids)."""
        entries = self._entries(self._mentioning(matcher))
        hits = sum(1 for key, kind, value in entries if matcher.count_text("\x1f".join([key, *_strings(kind, value)])))
        return {"keys": hits} if hits else {}

    def erase(self, matcher: Matcher) -> dict[str, int]:
        """Remove the subject (module docstring); `keys_with_hits` is what one scan found before removing."""
        deleted = trimmed = hits = 0
        try:
            for key, kind, value in self._entries(self._mentioning(matcher)):
                if not matcher.count_text("\x1f".join([key, *_strings(kind, value)])):
                    continue
                hits += 1
                if matcher.count_text(key) or kind == "string":
                    deleted += int(self.client.delete(key))
                elif kind == "hash":
                    fields = [f for f, v in value.items() if matcher.count_text(f) or matcher.count_text(v)]
                    trimmed += int(self.client.hdel(key, *fields)) if fields else 0
                elif kind == "list":
                    trimmed += sum(int(self.client.lrem(key, 0, m)) for m in value if matcher.count_text(m))
                elif kind in ("set", "zset"):
                    remove = self.client.srem if kind == "set" else self.client.zrem
                    trimmed += sum(int(remove(key, m)) for m in value if matcher.count_text(m))
        except redis.exceptions.RedisError as err:
            raise ErasureError(f"redis {self.location} failed while erasing: {type(err).__name__}") from None
        return {"keys_with_hits": hits, "keys_deleted": deleted, "values_removed": trimmed}


def _strings(kind: str, value: Any) -> list[str]:
    if kind == "hash":
        return [s for pair in value.items() for s in pair]
    if kind == "string":
        return [value or ""]
    if kind in ("list", "set", "zset"):
        return list(value)
    return []
