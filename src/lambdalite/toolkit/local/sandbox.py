"""The first code each instance process runs: Lambda's filesystem and limits, then awslambdaric.

    python -m lambdalite.toolkit.local.sandbox HANDLER      (configured by $_LAMBDALITE_SANDBOX, JSON)
    python -m lambdalite.toolkit.local.sandbox --probe      (prints what this machine allows, as JSON)

Inside Lambda only /tmp is writable (512 MB by default) and everything else is read-only. Here:

* As root (a private mount namespace): a fresh tmpfs of the configured size over /tmp, the root
  remounted read-only (writes fail with EROFS, as on Lambda), /dev/shm hidden, and the code,
  model and Python paths that lived under /tmp bound back read-only at the same paths. The code
  is also bound read-only at /var/task, Lambda's LAMBDA_TASK_ROOT (stack traces show its paths);
  when the host has no /var/task, a tmpfs over /var gets one, the host's entries of /var bound
  back (read-only) beside it, so nothing is created on the host. Layers are at /opt, read-only:
  one bound there, several merged (an overlay, a later layer's files over an earlier one's).
* Landlock (Linux >= 5.13, no root needed): writes allowed only beneath /tmp (or the private
  TMPDIR) and to /dev/null and friends. Without a mount namespace this is what keeps the code
  read-only; the /tmp quota is then only per file (RLIMIT_FSIZE).
* rlimits: an address-space backstop well above the memory size (the parent watches the memory
  of the whole process tree and enforces the real cap), Lambda's 1,024 file descriptors, and the
  parent's death kills us. The process is a child subreaper: a descendant orphaned by its parent
  stays in this tree, counted against the memory size and killed with the instance.

Then `python -m awslambdaric HANDLER` runs in this same process (no second interpreter start).
This module runs on the function's cold path, so it imports only the standard library's smallest
pieces.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

__all__ = [
    "CONFIG_ENV",
    "LAYERS_ROOT",
    "TASK_ROOT",
    "bind_back",
    "enter",
    "enter_or_exit",
    "hold_under_tmp",
    "landlock_abi",
    "layers_at_opt",
    "main",
    "private_tmp",
    "probe",
    "restrict_writes",
    "task_root",
    "run_awslambdaric",
]

CONFIG_ENV = "_LAMBDALITE_SANDBOX"
TASK_ROOT = "/var/task"  # where Lambda puts the function's code
LAYERS_ROOT = "/opt"  # and its layers

_CLONE_NEWNS = 0x00020000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_CHILD_SUBREAPER = 36
_SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture (generic syscall table)
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_RULE_PATH_BENEATH = 1
_LANDLOCK_CREATE_RULESET_VERSION = 1
# Landlock filesystem rights that change the filesystem (we never restrict reading or executing).
_WRITE_FILE = 1 << 1
_REMOVE_DIR = 1 << 4
_REMOVE_FILE = 1 << 5
_MAKE_ALL = sum(1 << bit for bit in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_REFER = 1 << 13  # ABI 2
_TRUNCATE = 1 << 14  # ABI 3
_WRITABLE_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")

_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _enc(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_c().mount(_enc(source), _enc(target), _enc(fstype), flags, _enc(data)), f"mount {target}")


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is missing or disabled."""
    try:
        abi = _c().syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _LANDLOCK_CREATE_RULESET_VERSION)
    except (AttributeError, OSError):
        return 0
    return max(int(abi), 0)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _read_only_bind(source: str, target: str) -> None:
    _mount(source, target, None, _MS_BIND | _MS_REC)
    _mount(None, target, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)


def task_root(code_dir: str, target: str = TASK_ROOT) -> None:
    """Bind `code_dir` read-only at `target` (/var/task) inside this mount namespace."""
    if not os.path.isdir(target):
        parent, name = os.path.split(target)
        entries: list[tuple[str, str | int]] = []
        for entry in sorted(os.listdir(parent)):
            path = os.path.join(parent, entry)
            if os.path.islink(path):
                entries.append((entry, os.readlink(path)))
            else:
                entries.append((entry, os.open(path, os.O_PATH | os.O_CLOEXEC)))
        _mount("tmpfs", parent, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=64k,mode=755")
        for entry, kept in entries:
            path = os.path.join(parent, entry)
            if isinstance(kept, str):
                os.symlink(kept, path)
                continue
            if os.path.isdir(f"/proc/self/fd/{kept}"):
                os.mkdir(path)
            else:
                open(path, "a").close()
            _read_only_bind(f"/proc/self/fd/{kept}", path)
            os.close(kept)
        os.mkdir(target)
        _mount(None, parent, None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    _read_only_bind(code_dir, target)


def layers_at_opt(layers: list[str], target: str = LAYERS_ROOT) -> None:
    """The layers' content read-only at /opt: one bound there, several as a read-only overlay."""
    if len(layers) == 1:
        _read_only_bind(layers[0], target)
    elif layers:
        lower = ":".join(reversed(layers))  # overlayfs: the leftmost lower directory is on top
        _mount("overlay", target, "overlay", _MS_RDONLY | _MS_NOSUID | _MS_NODEV, f"lowerdir={lower}")


def private_tmp(size_mb: int, expose: list[str], code_dir: str | None = None, layers: list[str] | None = None) -> None:
    """A new mount namespace: tmpfs over /tmp, read-only root, `expose` paths bound back read-only,
    `code_dir` (if given) read-only at /var/task and `layers` at /opt."""
    _check(_c().unshare(_CLONE_NEWNS), "unshare")
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)  # nothing we mount leaks to the host
    keep = hold_under_tmp(expose)  # opened inside the new namespace, before /tmp is covered
    _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={size_mb}m,mode=1777")
    bind_back(keep)
    if os.path.isdir("/dev/shm"):
        _mount("tmpfs", "/dev/shm", "tmpfs", _MS_RDONLY | _MS_NOSUID | _MS_NODEV, "size=4k")  # Lambda has none
    if code_dir is not None:
        task_root(code_dir)
    if layers:
        layers_at_opt(layers)
    _mount(None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)  # only this namespace's view of /


def hold_under_tmp(expose: list[str]) -> list[tuple[str, int]]:
    """`O_PATH` descriptors of the `expose` paths under /tmp, taken before /tmp is covered."""
    keep = []
    for path in dict.fromkeys(os.path.realpath(p) for p in expose):
        if _under(path, "/tmp") and os.path.exists(path):
            keep.append((path, os.open(path, os.O_PATH | os.O_CLOEXEC)))
    return keep


def bind_back(keep: list[tuple[str, int]]) -> None:
    """Bind the held paths back, read-only, at the same places under the new /tmp."""
    for path, fd in keep:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()
        _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        _mount(None, path, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        os.close(fd)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def restrict_writes(abi: int, writable_dirs: list[str]) -> None:
    """Landlock: from now on this process and its children may write only beneath `writable_dirs`."""
    handled = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_ALL
    if abi >= 2:
        handled |= _REFER
    if abi >= 3:
        handled |= _TRUNCATE
    libc = _c()
    attr = _RulesetAttr(handled)
    ruleset = _check(
        libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0),
        "landlock_create_ruleset",
    )
    try:
        file_rights = handled & (_WRITE_FILE | _TRUNCATE)
        for path, rights in [*((d, handled) for d in writable_dirs), *((f, file_rights) for f in _WRITABLE_DEVICES)]:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rule = _PathBeneathAttr(rights, fd)
                _check(
                    libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0),
                    f"landlock_add_rule {path}",
                )
            finally:
                os.close(fd)
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        _check(libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset)


def _limits(config: dict[str, Any]) -> None:
    import resource
    import signal

    if config.get("address_space_mb"):
        cap = int(config["address_space_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    if config.get("file_size_mb"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG instead
        cap = int(config["file_size_mb"]) * 2**20
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))  # Lambda's file descriptor quota


def enter(config: dict[str, Any]) -> None:
    """Apply `config` to this process: parent watch, /tmp, read-only filesystem, rlimits."""
    _c().prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)  # SIGKILL when the emulator goes away
    _c().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphaned descendants stay in our tree (memory, kill)
    if config.get("parent") and os.getppid() != config["parent"]:
        os._exit(1)  # the emulator died before we got here
    tmp = config.get("tmp", "/tmp")
    if config.get("mount"):
        private_tmp(
            int(config["tmp_size_mb"]), list(config.get("expose", [])), config.get("task_root"), config.get("layers")
        )
        tmp = "/tmp"
    if config.get("landlock"):
        restrict_writes(int(config["landlock"]), [tmp])
    _limits(config)
    if config.get("cwd"):
        os.chdir(config["cwd"])  # re-enter the code directory through its read-only mount
    code_dir = config.get("task_root") if config.get("mount") else None
    if code_dir:  # `python -m` put the host's path of the code first: the code is at /var/task now
        sys.path[:] = list(dict.fromkeys(TASK_ROOT if p and os.path.realpath(p) == code_dir else p for p in sys.path))
    for path in list(sys.path_importer_cache):  # looked up (and missing) before the mounts
        if _under(path, TASK_ROOT) or _under(path, LAYERS_ROOT):
            del sys.path_importer_cache[path]


def probe() -> dict[str, Any]:
    """What this machine allows; run in a throwaway process (it leaves a mount namespace behind)."""
    result: dict[str, Any] = {"landlock": landlock_abi(), "mount": False, "mount_error": None}
    try:
        _check(_c().unshare(_CLONE_NEWNS), "unshare")
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
        _mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=1777")
        _mount(None, "/", None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY)
        result["mount"] = True
    except OSError as exc:
        result["mount_error"] = str(exc)
    return result


def main() -> None:
    if sys.argv[1:] == ["--probe"]:
        print(json.dumps(probe()))
        return
    config = json.loads(os.environ.pop(CONFIG_ENV, "{}"))
    enter_or_exit(config)
    run_awslambdaric(sys.argv[1:])


def enter_or_exit(config: dict[str, Any]) -> None:
    """`enter`, or exit 70 with one line saying why the sandbox could not be set up."""
    try:
        enter(config)
    except OSError as exc:
        print(f"lambdalite sandbox: {exc}", file=sys.stderr, flush=True)
        os._exit(70)


def run_awslambdaric(args: list[str]) -> None:
    """`python -m awslambdaric ARGS`, in this process."""
    import runpy

    sys.argv = ["awslambdaric", *args]
    runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
