"""Model names are directory names (`models/<name>/`, `<triton repository>/<name>/`): check them before any path.

Why: a name comes from the command line (`export --name`, `models show NAME`), a config or an HTTP route, and
`Path(models_dir) / "../x"` or `/ "/etc"` would publish, read or audit outside the registry; a NUL byte makes the
OS call fail with a raw ValueError; non-ASCII names look alike in different Unicode normal forms on different
filesystems. One rule, applied where a name first becomes a path: ASCII letters, digits, `_ . @ -`, starting with a
letter or digit (so never `.`, `..` or a hidden file), at most 128 characters.
"""

from __future__ import annotations

import re
from pathlib import Path

from fulqrun_ml.errors import RegistryError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}", re.ASCII)


def check_model_name(name: object) -> str:
    """`name` when it is a safe model name, else a RegistryError quoting it (escaped, shortened) and the rule."""
    if isinstance(name, str) and _NAME.fullmatch(name) and ".." not in name:
        return name
    shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
    raise RegistryError(
        f"model name {shown} is not allowed: use 1-128 ASCII letters, digits, '_', '.', '@' or '-', starting with a "
        "letter or digit (a model name is a directory name)"
    )


def model_root(models_dir: Path | str, name: object) -> Path:
    """`<models_dir>/<name>` for a checked name: the one way the registry turns a name into a path."""
    return Path(models_dir) / check_model_name(name)
