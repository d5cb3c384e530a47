"""Every command quoted in the guides runs, and every error message the troubleshooting guide quotes exists.

Commands: each line of a ```bash block in docs/user-guide.md, docs/troubleshooting.md and docs/deployment.md
that calls `fulqrun-ml` (or `.venv/bin/fulqrun-ml`), `make` or `scripts/...` is run in a throwaway directory
(FULQRUN_ROOT) holding a copy of the session's tiny registry, in-process through the CLI's own `main` (the
imports are shared with the suite; a subprocess would pay them per line). A trailing marker changes what is
expected:
- none: exit status 0;
- `# docs-test: fails "<text>"`: exit status 2 and <text> in the one-line error (the troubleshooting examples);
- `# docs-test: server`: a long-running server; it is started as `main` would start it, on a free port, its
  page is fetched (HTTP 200 with the app's title) and it is stopped;
- `# docs-test: skip <reason>`: not run (a long-lived service, root, the network, minutes of training); the
  reason must name what covers it, and the skips are counted.
`train`/`run` lines get the tiny-data overrides appended. Messages: each backticked message in the first
column of troubleshooting.md's tables must occur in the code (src/, serving/, scripts/) with `…` as the gaps.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from fulqrun_ml.project import REPO_ROOT

from ..conftest import FAST_TRAINER, TINY_DATA

GUIDES = ("user-guide.md", "troubleshooting.md", "deployment.md")
RUNNERS = ("fulqrun-ml", ".venv/bin/fulqrun-ml", "make", "scripts/")
MARKER = re.compile(r"#\s*docs-test:\s*(skip|server|fails)\b(.*)$")
MAX_SKIPS = 10  # few: a guide is only trustworthy if its commands are run


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str
    mode: str  # run | fails | server | skip
    detail: str

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)


def quoted_commands() -> list[Command]:
    out = []
    for name in GUIDES:
        fenced = False
        for number, raw in enumerate((REPO_ROOT / "docs" / name).read_text().splitlines(), 1):
            if raw.startswith("```"):
                fenced = raw.strip() == "```bash"
                continue
            line = raw.strip()
            if not fenced or not line.startswith(RUNNERS):
                continue
            marker = MARKER.search(line)
            mode, detail = (marker.group(1), marker.group(2).strip()) if marker else ("run", "")
            out.append(Command(name, number, line, mode, detail.strip('"') if mode == "fails" else detail))
    return out


COMMANDS = quoted_commands()


@pytest.fixture(scope="module")
def workspace(published, tmp_path_factory) -> Path:
    """An empty deployment directory with the tiny registry as its `models/` (a copy: commands may promote)."""
    version, _ = published
    root = tmp_path_factory.mktemp("docs-root")
    shutil.copytree(version.path.parent, root / "models" / version.name)
    return root


def _cli(argv: list[str]) -> tuple[int, str]:
    from fulqrun_ml.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse and Hydra exit; their status is the answer
            code = exc.code if isinstance(exc.code, int) else 1
    return int(code or 0), err.getvalue()


def _serve_dashboard(argv: list[str]) -> str:
    """What `fulqrun-ml dashboard ...` does (dashboard.app.main), on a free port and stoppable: the page's HTML."""
    from werkzeug.serving import make_server

    from fulqrun_ml.dashboard.app import create_app, parse
    from fulqrun_ml.dashboard.context import build_context

    a = parse(argv)
    orgs = tuple(a.organization) if a.organization else None
    ctx = build_context(a.models_dir, a.reports_dir, a.cache_dir, a.crm_dir, a.triton, orgs, a.recommendations, a.views,
                        a.logs_dir, views_dsn_env=a.views_dsn_env, insights_config=a.insights_config)  # fmt: skip
    server = make_server("127.0.0.1", 0, create_app(ctx).server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/", timeout=30) as reply:
            assert reply.status == 200
            return reply.read().decode()
    finally:
        server.shutdown()


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.doc}:{c.line}" for c in COMMANDS])
def test_quoted_command_runs(command: Command, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if command.mode == "skip":
        pytest.skip(command.detail)
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("FULQRUN_ROOT", str(workspace))
    monkeypatch.delenv("FULQRUN_VIEWS_DSN", raising=False)
    argv = command.argv
    if argv[0] not in ("fulqrun-ml", ".venv/bin/fulqrun-ml"):
        pytest.fail(f"{command.doc}:{command.line}: only fulqrun-ml lines run in-process; mark `{argv[0]}` skip")
    argv = argv[1:]
    if command.mode == "server":
        assert argv[0] == "dashboard", "the only long-running command run here is the dashboard"
        assert "<title>FulQrun analytics</title>" in _serve_dashboard(argv[1:])
        return
    if argv[0] in ("train", "run"):
        argv += [*TINY_DATA, *FAST_TRAINER]
    code, err = _cli(argv)
    if command.mode == "fails":
        assert code == 2 and command.detail in err, f"{command.text}: exit {code}, {err!r}"
        assert err.startswith("error: ") and "Traceback" not in err
    else:
        assert code == 0, f"{command.text}: exit {code}: {err[-800:]}"


def test_skips_are_few_and_say_why() -> None:
    skips = [c for c in COMMANDS if c.mode == "skip"]
    assert len(skips) <= MAX_SKIPS, [f"{c.doc}:{c.line}" for c in skips]
    assert all(len(c.detail) > 10 for c in skips), [c.text for c in skips if len(c.detail) <= 10]
    assert {c.doc for c in COMMANDS} == set(GUIDES)  # every guide quotes commands
    assert sum(c.mode in ("run", "fails", "server") for c in COMMANDS) >= 8


def troubleshooting_messages() -> list[str]:
    rows = [
        line for line in (REPO_ROOT / "docs" / "troubleshooting.md").read_text().splitlines() if line.startswith("| `")
    ]
    return [row.split(" | ")[0][2:].strip()[1:].rsplit("`", 1)[0] for row in rows]


def test_every_quoted_error_message_exists_in_the_code() -> None:
    code = "\n".join(
        p.read_text(errors="replace") for d in ("src", "serving", "scripts") for p in (REPO_ROOT / d).rglob("*.py")
    )
    messages = troubleshooting_messages()
    assert len(messages) >= 40
    missing = [m for m in messages if not all(piece.strip() in code for piece in m.split("…") if piece.strip())]
    assert not missing, f"quoted in docs/troubleshooting.md but not in the code: {missing}"
