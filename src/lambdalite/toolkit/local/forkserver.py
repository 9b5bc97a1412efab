"""Inside the snapshot (template) process: take the snapshot, then fork one instance per restore.

    python -m lambdalite.toolkit.local.forkserver HANDLER   (configured by $_LAMBDALITE_SANDBOX, JSON)

`lambdalite serve --snapstart` starts one template process the way it starts an instance (the
sandbox of `sandbox.py`, then the official `awslambdaric` in the same process), with
`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`.
awslambdaric then runs the function's init, the `before snapshot` hooks, and calls
`GET /runtime/restore/next`, the point at which Lambda snapshots the microVM. Here that call is
wrapped (`install`): the template calls the real endpoint once (the emulator logs INIT_REPORT),
then becomes a fork server. For every restore the emulator sends, over a Unix socket, the new
instance's Runtime API address and a pipe for its output; the template forks, and the child

* leaves the template's process group (`setsid`) and dies with the template (`PR_SET_PDEATHSIG`),
* writes its stdout and stderr to its own pipe,
* gets a private /tmp: an overlay of the snapshot's /tmp (copy on write, as a restored microVM's
  disk), with Landlock then keeping every other path read-only (when the machine allows a mount
  namespace; without one, every instance shares the template's TMPDIR),
* puts Python's `random` back in the snapshot's state (a fork reseeds it; a restored microVM
  does not, so code that forgets to reseed must show it here too),
* loads awslambdaric's native Runtime API client only now (its address is fixed when the library
  loads, so the template never loads it), pointed at the instance's own Runtime API,
* and returns from `restore_next` by calling the real one on that API: awslambdaric goes on to
  run the `after restore` hooks and then polls for invocations, exactly as after a restore.

The template reaps its children and reports each exit status on the same socket. Only the
thread that forks survives a fork (a Firecracker snapshot keeps them all): a snapshot taken with
other threads running logs a warning naming how many.

Messages (SOCK_SEQPACKET, one JSON object each):
  emulator -> template  {"restore": N, "api": "127.0.0.1:PORT"}  with the output pipe's write end
  template -> emulator  {"restored": N, "pid": PID}  |  {"exit": PID, "code": RETURNCODE}
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from typing import Any

__all__ = ["install", "main"]

_PR_SET_PDEATHSIG = 1
_CLONE_NEWNS = 0x00020000
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REC = 16384
_MS_PRIVATE = 1 << 18


def main() -> None:
    from lambdalite.toolkit.local import sandbox

    config = json.loads(os.environ.pop(sandbox.CONFIG_ENV, "{}"))
    # With a mount namespace, each restored instance gets its own /tmp, and Landlock after it.
    sandbox.enter_or_exit(dict(config, landlock=0) if config.get("mount") else config)
    install(int(config["snapshot"]["control_fd"]), config)
    sandbox.run_awslambdaric(sys.argv[1:])


def install(control_fd: int, config: dict[str, Any]) -> None:
    """Wrap awslambdaric's `restore_next` so that this process becomes the fork server."""
    # awslambdaric's native client reads AWS_LAMBDA_RUNTIME_API once, when its library loads:
    # keep it unloaded here (awslambdaric tolerates that until its first poll) so each child
    # loads it with its own address.
    sys.modules["runtime_client"] = None  # type: ignore[assignment]
    from awslambdaric import lambda_runtime_client as client_module

    real_restore_next = client_module.BaseLambdaRuntimeClient.restore_next
    control = socket.socket(fileno=control_fd)

    def restore_next(client: Any) -> None:
        real_restore_next(client)  # the snapshot point: the emulator logs the init and answers at once
        _warn_about_threads()
        _serve_forks(control, client, client_module, config)  # returns only in a restored child
        real_restore_next(client)  # the restore, on the child's own Runtime API

    client_module.BaseLambdaRuntimeClient.restore_next = restore_next


def _warn_about_threads() -> None:
    try:
        count = len(os.listdir("/proc/self/task"))
    except OSError:
        return
    if count > 1:
        print(
            f"lambdalite: {count - 1} thread(s) besides the main one (native ones included) run at snapshot time; "
            "instances restored here are forked and keep only the main thread (Lambda's snapshot keeps them all)",
            file=sys.stderr,
            flush=True,
        )


def _serve_forks(control: socket.socket, client: Any, client_module: Any, config: dict[str, Any]) -> None:
    import random

    template = os.getpid()

    def reap(signum: int, frame: Any) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            _send(control, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})

    signal.signal(signal.SIGCHLD, reap)
    while True:
        try:
            message, fds, _flags, _addr = socket.recv_fds(control, 4096, 1)
        except OSError:
            message, fds = b"", []
        if not message:  # the emulator is gone
            os._exit(0)
        command = json.loads(message)
        out_fd = fds[0]
        sys.stdout.flush()
        sys.stderr.flush()
        state = random.getstate()
        pid = os.fork()
        if pid == 0:
            _become_instance(command, out_fd, control, template, config)
            random.setstate(state)  # as a restored snapshot: the fork's reseed undone
            _point_runtime_client(client, client_module, command["api"])
            return
        os.close(out_fd)
        _send(control, {"restored": command["restore"], "pid": pid})


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    try:
        control.send(json.dumps(message).encode())
    except OSError:
        pass  # the emulator is gone; the read side notices


def _become_instance(command: dict[str, Any], out_fd: int, control: socket.socket, template: int, config: Any) -> None:
    from lambdalite.toolkit.local import sandbox

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    control.close()
    os.setsid()
    sandbox._c().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != template:
        os._exit(1)  # the template died while we forked
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    os.close(out_fd)
    try:
        if config.get("mount"):
            _private_tmp(int(config["tmp_size_mb"]), list(config.get("expose", [])))
        if config.get("landlock") and config.get("mount"):  # without a mount namespace it is inherited
            sandbox.restrict_writes(int(config["landlock"]), ["/tmp"])
    except OSError as exc:
        print(f"lambdalite sandbox: {exc}", file=sys.stderr, flush=True)
        os._exit(70)


def _private_tmp(size_mb: int, expose: list[str]) -> None:
    """This instance's /tmp: the snapshot's /tmp as the lower layer of an overlay, writes private;
    the code and Python paths that live under /tmp bound back read-only, as in the template."""
    from lambdalite.toolkit.local import sandbox

    sandbox._check(sandbox._c().unshare(_CLONE_NEWNS), "unshare")
    sandbox._mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    keep = sandbox.hold_under_tmp(expose)
    lower = os.open("/tmp", os.O_PATH | os.O_CLOEXEC)
    try:
        sandbox._mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size_mb}m,mode=1777")
        upper = os.open("/tmp", os.O_PATH | os.O_CLOEXEC)
        try:
            os.mkdir("/tmp/.upper", 0o1777)
            os.mkdir("/tmp/.work", 0o700)
            layers = f"lowerdir=/proc/self/fd/{lower},upperdir=/proc/self/fd/{upper}/.upper"
            sandbox._mount(
                "overlay", "/tmp", "overlay", _MS_NOSUID | _MS_NODEV, f"{layers},workdir=/proc/self/fd/{upper}/.work"
            )
        except OSError:  # no overlayfs here: a copy does the same, slower
            os.rmdir("/tmp/.work")
            os.rmdir("/tmp/.upper")
            _copy_tree(f"/proc/self/fd/{lower}", "/tmp")
        finally:
            os.close(upper)
    finally:
        os.close(lower)
    sandbox.bind_back(keep)


def _copy_tree(source: str, target: str) -> None:
    import shutil

    for name in os.listdir(source):
        src, dst = os.path.join(source, name), os.path.join(target, name)
        if os.path.isdir(src) and not os.path.islink(src):
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst, follow_symlinks=False)


def _point_runtime_client(client: Any, client_module: Any, api: str) -> None:
    """Load awslambdaric's native client now, for this instance's Runtime API (as its bootstrap would)."""
    os.environ["AWS_LAMBDA_RUNTIME_API"] = api
    client.lambda_runtime_address = api
    del sys.modules["runtime_client"]
    import runtime_client

    runtime_client.initialize_client(client_module._user_agent())
    client_module.runtime_client = runtime_client


if __name__ == "__main__":
    main()
