"""Real local Lambdas for the tests: in process (a LambdaServer on a background loop) or the CLI.

Every server listens on 127.0.0.1 and an ephemeral port, and tags its instances with a unique
environment variable, so a test can prove that no process it started outlives it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from lambdalite.toolkit.local.messages import FunctionConfig, InvokeResult, SandboxCaps
from lambdalite.toolkit.local.server import Fallback, LambdaServer, not_found

from helpers import HANDLERS

LAMBDALITE = Path(sys.executable).parent / "lambdalite"
MARK = "LAMBDALITE_TEST_MARK"
T = TypeVar("T")


def config(handler: str, **overrides: Any) -> FunctionConfig:
    """A FunctionConfig for a handler in tests/handlers, tagged with a fresh process mark."""
    environment = {MARK: uuid.uuid4().hex, **overrides.pop("environment", {})}
    args: dict[str, Any] = {
        "name": "probe",
        "handler": handler,
        "code_dir": str(HANDLERS),
        "memory_mb": 512,
        "timeout_s": 10.0,
        "max_concurrency": 1,
        "idle_timeout_s": 60.0,
        "environment": environment,
    }
    args.update(overrides)
    return FunctionConfig(**args)


def processes_with(mark: str) -> list[int]:
    """Every live process whose environment carries MARK=mark."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def wait_until_gone(mark: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_with(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


class ServerThread:
    """A LambdaServer running on its own event loop in a daemon thread."""

    def __init__(self, cfg: FunctionConfig, caps: SandboxCaps, fallback: Fallback = not_found) -> None:
        self.config = cfg
        self.logs: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = LambdaServer(cfg, log=self.logs.append, caps=caps, fallback=fallback)
        self.port = 0

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self.port = self.call(self.server.start("127.0.0.1", 0))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
        left = wait_until_gone(self.config.environment[MARK])
        assert left == [], f"processes left behind: {left}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def invoke(self, event: Any = None, **kwargs: Any) -> InvokeResult:
        payload = event if isinstance(event, bytes) else json.dumps(event if event is not None else {}).encode()
        return self.call(self.server.invoke(payload, **kwargs))

    def log_text(self) -> str:
        return "\n".join(self.logs)


def lambda_client(url: str, read_timeout: float = 60) -> Any:
    """boto3's Lambda client, pointed at a local endpoint, retries off (429 would be retried)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 0}, read_timeout=read_timeout, connect_timeout=5),
    )


class ServeProcess:
    """`lambdalite serve ... --port 0` as a real process; logs to files, stopped with SIGTERM."""

    def __init__(self, tmp_path: Path, *args: str, mark: str | None = None, env: dict[str, str] | None = None) -> None:
        self.env = env
        self.mark = mark or uuid.uuid4().hex
        self.out_path = tmp_path / f"serve-{self.mark[:8]}.out"
        self.err_path = tmp_path / f"serve-{self.mark[:8]}.err"
        self.args = [str(LAMBDALITE), "serve", *args, "--port", "0", "--env", f"{MARK}={self.mark}"]
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> ServeProcess:
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            m = re.search(r"Invoke API\s+http://127\.0\.0\.1:(\d+)/", self.err_path.read_text())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"serve did not start: {self.err_path.read_text()}")

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()
