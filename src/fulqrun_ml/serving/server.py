"""Start and stop a real Triton Inference Server (the binary bundled in `nvidia-pytriton`) on loopback.

Why run the binary and not PyTriton's Python API: users get a standard Triton model repository that
the NGC container on a GPU host serves unchanged. The facts this relies on are in
../shared/TRITON_ON_CPU.md: a backend directory holding the Python backend and its 3.11 stub,
LD_LIBRARY_PATH = this interpreter's LIBDIR then `nvidia_pytriton.libs`, the venv's bin/ first on PATH
(so `model.py` imports the venv's onnxruntime), and every endpoint bound to 127.0.0.1.

The server runs in its own process group, so `stop()` ends it and every Python-backend stub it spawned.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psutil
import requests

from fulqrun_ml.errors import ServingError
from fulqrun_ml.serving.access import control_key as default_control_key
from fulqrun_ml.serving.access import restricted_api_flags
from fulqrun_ml.serving.gateway import InferenceGateway
from fulqrun_ml.serving.integrity import verify_repository
from fulqrun_ml.serving.tls import GrpcServerTLS

log = logging.getLogger(__name__)
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _pytriton_paths() -> tuple[Path, Path, Path]:
    """(tritonserver binary, Python backend dir, bundled shared-library dir) from the installed wheel."""
    try:
        import pytriton
    except ImportError as exc:  # pragma: no cover - a broken install, not a code path
        raise ServingError("nvidia-pytriton is not installed; run scripts/bootstrap") from exc
    root = Path(pytriton.__file__).parent / "tritonserver"
    libs = Path(pytriton.__file__).parent.parent / "nvidia_pytriton.libs"
    return root / "bin" / "tritonserver", root, libs


def _backend_directory(target: Path) -> Path:
    """Assemble backends/python/ = libtriton_python.so + utils + the stub for this Python version."""
    _, root, _ = _pytriton_paths()
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copy2(root / "backends" / "python" / name, python_dir / name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise ServingError(f"the bundled Triton has no Python backend stub for Python {version}")
    shutil.copy2(stub, python_dir / "triton_python_backend_stub")
    return target


def server_environment() -> dict[str, str]:
    _, _, libs = _pytriton_paths()
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, str(libs), env.get("LD_LIBRARY_PATH")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


class TritonServer:
    """A tritonserver process serving `model_repository`; use as a context manager."""

    def __init__(
        self,
        model_repository: Path,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        explicit_models: list[str] | None = None,
        log_path: Path | None = None,
        control_key: str | None = None,
        gateway: bool = False,
        tls: GrpcServerTLS | None = None,
    ) -> None:
        self.model_repository = Path(model_repository)
        # gRPC over TLS when given or configured in the environment (serving/tls.py); checked before any start.
        self.tls = tls or GrpcServerTLS.from_env()
        # The model-control/repository API answers only requests with this key (serving/access.py).
        self.control_key = control_key or default_control_key(self.model_repository)
        self.http_port = http_port or free_port()
        # gateway=True: clients reach `http_port` through InferenceGateway (malformed requests get 400, see
        # serving/gateway.py) and Triton's own HTTP endpoint listens on another loopback port behind it.
        self.triton_http_port = free_port() if gateway else self.http_port
        self.use_gateway = gateway
        self.gateway: InferenceGateway | None = None
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.explicit_models = explicit_models
        self._workdir = Path(tempfile.mkdtemp(prefix="fulqrun-triton-"))
        self.log_path = Path(log_path) if log_path else self._workdir / "tritonserver.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{HOST}:{self.grpc_port}"

    def command(self) -> list[str]:
        binary, _, _ = _pytriton_paths()
        backends = _backend_directory(self._workdir / "backends")
        cmd = [
            str(binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--http-address={HOST}",
            f"--grpc-address={HOST}",
            f"--metrics-address={HOST}",
            f"--http-port={self.triton_http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--log-verbose=0",
            *restricted_api_flags(self.control_key),
            *(self.tls.flags() if self.tls else []),
        ]
        if self.explicit_models is not None:
            cmd.append("--model-control-mode=explicit")
            cmd += [f"--load-model={name}" for name in self.explicit_models]
        return cmd

    def start(self, timeout_s: float = 120.0) -> TritonServer:
        verify_repository(self.model_repository, self.explicit_models)  # no tampered version is ever loaded
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=server_environment(),
                start_new_session=True,  # own process group: stop() reaches the backend stubs too
            )
        try:
            if self.use_gateway:  # a fresh one per start: a stopped gateway's thread cannot run again
                self.gateway = InferenceGateway(f"{HOST}:{self.triton_http_port}", HOST, self.http_port).start()
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("Triton ready: http=%s grpc=%s (log %s)", self.http_url, self.grpc_url, self.log_path)
        return self

    def served_models(self) -> list[str]:
        """The models this server is meant to serve: the explicit list, else every model in the repository."""
        if self.explicit_models is not None:
            return list(self.explicit_models)
        if not self.model_repository.is_dir():
            return []
        return sorted(p.name for p in self.model_repository.iterdir() if (p / "config.pbtxt").is_file())

    def is_ready(self) -> bool:
        """Server ready AND every served model ready. Triton's own /v2/health/ready (even with strict readiness)
        only covers models that are loaded, so a model unloaded behind our back left it answering 200."""
        base = f"http://{self.http_url}/v2"
        try:
            if requests.get(f"{base}/health/ready", timeout=1).status_code != 200:
                return False
            return all(
                requests.get(f"{base}/models/{name}/ready", timeout=1).status_code == 200
                for name in self.served_models()
            )
        except requests.RequestException:
            return False

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServingError(f"tritonserver exited with code {self.process.returncode}:\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.25)
        raise ServingError(f"tritonserver not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the whole process group (graceful: in-flight requests finish), SIGKILL if it lingers."""
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.process is not None and self.process.poll() is None:
            pgid = os.getpgid(self.process.pid)
            os.killpg(pgid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.process.wait()
            # Stubs may outlive the server by a moment; make sure none is orphaned, and wait until they are
            # gone: a stub that is still exiting holds its prediction-log spool file's flock, so a shipper
            # running right after stop() would take the file for one still being written.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            wait_for_group_exit(pgid, timeout_s)
        self.process = None
        shutil.rmtree(self._workdir / "backends", ignore_errors=True)

    def __enter__(self) -> TritonServer:
        return self.start() if self.process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def wait_for_group_exit(pgid: int, timeout_s: float) -> None:
    """Block until no live (non-zombie) process is left in process group `pgid`; SIGKILL delivery is async."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = False
        for proc in psutil.process_iter(["status"]):
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                    alive = True
                    break
        if not alive:
            return
        time.sleep(0.02)
    log.warning("tritonserver: processes of group %d still alive %.0fs after SIGKILL", pgid, timeout_s)
