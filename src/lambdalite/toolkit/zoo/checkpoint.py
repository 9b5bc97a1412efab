"""Read a PyTorch checkpoint (`torch.save` of a state dict) into numpy arrays, without torch.

    state = read_state_dict(Path("weights.pth"))   # {"_conv_stem.weight": ndarray, ...}

A checkpoint is a pickle, and unpickling calls whatever the pickle names: a hostile `.pth` runs
`os.system` as easily as it rebuilds a tensor. So the pickle is read by a restricted Unpickler:
`find_class` resolves only the names that rebuilding tensors and plain containers needs (`ALLOWED`)
and hands back inert stand-ins of our own, never torch's functions; any other name (`os.system`,
`builtins.eval`, a `torch.nn.Module` class, numpy's reconstructors...) stops the read with
`UnsafeCheckpointError` before anything is called. Persistent ids must be storage records. The
result may hold only dicts, lists, tuples, strings, numbers, None and tensors, and every tensor's
shape, strides and offset are checked against its storage before an array is made.

Both formats `torch.save` writes are read:

* zip (torch >= 1.6): `<dir>/data.pkl`, each storage in `<dir>/data/<key>`, raw little-endian;
* legacy (`_use_new_zipfile_serialization=False`, and every file before 1.6): a magic number, a
  protocol version and a system-info pickle, the state pickle, the list of storage keys, then each
  storage as an int64 element count followed by its bytes.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from lambdalite.errors import BundleError

__all__ = ["ALLOWED", "CheckpointError", "UnsafeCheckpointError", "load_checkpoint", "read_state_dict"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_MAX_DIMS = 32


class CheckpointError(BundleError):
    """Raised when a checkpoint is not one `torch.save` wrote, or is truncated or inconsistent."""


class UnsafeCheckpointError(CheckpointError):
    """Raised when a checkpoint's pickle names anything but tensors and plain containers."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    """`torch.FloatStorage` and friends: only a dtype here (not callable)."""

    name: str
    dtype: str  # numpy dtype name; "bfloat16" is widened to float32


_STORAGE_TYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


@dataclass(frozen=True, slots=True)
class _Storage:
    key: str
    type: _StorageType
    numel: int


@dataclass(frozen=True, slots=True)
class _StorageView:
    root: _Storage
    offset: int
    numel: int


@dataclass(frozen=True, slots=True)
class _TensorRef:
    """A tensor to materialize once the storages are read."""

    storage: _Storage | _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _int(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise CheckpointError(f"checkpoint: {what} is {value!r}, not a non-negative integer")
    return value


def _ints(value: object, what: str) -> tuple[int, ...]:
    if type(value) is not tuple or len(value) > _MAX_DIMS:
        raise CheckpointError(f"checkpoint: {what} is {value!r}, not a tuple of at most {_MAX_DIMS} integers")
    return tuple(_int(v, what) for v in value)


def _rebuild_tensor(storage: object, storage_offset: object, size: object, stride: object) -> _TensorRef:
    if not isinstance(storage, _Storage | _StorageView):
        raise CheckpointError(f"checkpoint: a tensor's storage is {type(storage).__name__}, not a storage record")
    shape, strides = _ints(size, "a tensor's size"), _ints(stride, "a tensor's stride")
    if len(shape) != len(strides):
        raise CheckpointError(f"checkpoint: a tensor has size {shape} but stride {strides}")
    return _TensorRef(storage, _int(storage_offset, "a tensor's storage offset"), shape, strides)


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> _TensorRef:
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: object, requires_grad: object = False, backward_hooks: object = None) -> object:
    if not isinstance(data, _TensorRef):
        raise CheckpointError(f"checkpoint: a parameter wraps {type(data).__name__}, not a tensor")
    return data


# (module, name) -> what the restricted Unpickler resolves it to. Nothing else is ever resolved.
ALLOWED: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGE_TYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    """Resolves only `ALLOWED`; persistent ids only as storage records."""

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except (KeyError, TypeError):
            pass
        hint = ""
        if module.startswith(("torch.nn", "__main__")):
            hint = " (a whole model was saved: save its state_dict() instead)"
        raise UnsafeCheckpointError(
            f"checkpoint refused: it names {module}.{name}, and a checkpoint may only hold tensors and plain "
            f"containers{hint}; nothing in it was run"
        )

    def persistent_load(self, pid: Any) -> Any:
        if type(pid) is not tuple or not pid or pid[0] not in ("storage", b"storage"):
            raise UnsafeCheckpointError(
                f"checkpoint refused: a persistent id {str(pid)[:80]!r} is not a storage record; nothing in it was run"
            )
        if len(pid) == 5:
            _, storage_type, key, _location, numel = pid
            view = None
        elif len(pid) == 6:
            _, storage_type, key, _location, numel, view = pid
        else:
            raise CheckpointError(f"checkpoint: a storage record has {len(pid)} fields, not 5 or 6")
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"checkpoint: a storage's type is {storage_type!r}, not a torch storage type")
        if type(key) is not str:
            raise CheckpointError(f"checkpoint: a storage key is {key!r}, not a string")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type, _int(numel, "a storage's size"))
        elif storage.type != storage_type or storage.numel != numel:
            raise CheckpointError(f"checkpoint: storage {key} is declared twice, differently")
        if view is None:
            return storage
        if type(view) is not tuple or len(view) != 3:
            raise CheckpointError(f"checkpoint: storage {key} has a malformed view {view!r}")
        _view_key, offset, size = view
        offset, size = _int(offset, "a storage view's offset"), _int(size, "a storage view's size")
        if offset + size > storage.numel:
            raise CheckpointError(f"checkpoint: a view of storage {key} reaches past its end")
        return _StorageView(storage, offset, size)


def _load_pickle(file: IO[bytes], storages: dict[str, _Storage]) -> Any:
    try:
        return _Unpickler(file, storages).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise CheckpointError(f"checkpoint: its pickle is unreadable ({type(exc).__name__}: {exc})") from None


def _array(raw: bytes, storage: _Storage, little_endian: bool) -> npt.NDArray[Any]:
    dtype_name = storage.type.dtype
    if dtype_name == "bfloat16":
        halves = np.frombuffer(raw, dtype="<u2" if little_endian else ">u2").astype(np.uint32)
        return (halves << 16).view(np.float32)
    dtype = np.dtype(dtype_name).newbyteorder("<" if little_endian else ">")
    return np.frombuffer(raw, dtype=dtype).astype(np.dtype(dtype_name).newbyteorder("="))


def _itemsize(storage: _Storage) -> int:
    return 2 if storage.type.dtype == "bfloat16" else np.dtype(storage.type.dtype).itemsize


def _materialize(value: Any, arrays: dict[str, npt.NDArray[Any]], depth: int = 0) -> Any:
    if depth > 64:
        raise CheckpointError("checkpoint: containers nested more than 64 deep")
    if isinstance(value, _TensorRef):
        return _tensor(value, arrays)
    if isinstance(value, dict):  # OrderedDict included
        out = OrderedDict() if isinstance(value, OrderedDict) else {}
        for k, v in value.items():
            out[_materialize(k, arrays, depth + 1)] = _materialize(v, arrays, depth + 1)
        return out
    if type(value) in (list, tuple):
        items = [_materialize(v, arrays, depth + 1) for v in value]
        return items if type(value) is list else tuple(items)
    if value is None or type(value) in (str, bytes, int, float, bool, complex):
        return value
    raise CheckpointError(f"checkpoint: it holds a {type(value).__name__}, not a tensor or a plain container")


def _tensor(ref: _TensorRef, arrays: dict[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
    storage, base = (
        (ref.storage.root, ref.storage.offset) if isinstance(ref.storage, _StorageView) else (ref.storage, 0)
    )
    limit = ref.storage.numel
    data = arrays.get(storage.key)
    if data is None:
        raise CheckpointError(f"checkpoint: storage {storage.key} has no data")
    count = int(np.prod(ref.size, dtype=np.int64)) if ref.size else 1
    if count:
        extent = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True)) + 1
        if extent > limit:
            raise CheckpointError(
                f"checkpoint: a tensor of size {ref.size} reaches past the end of storage {storage.key} "
                f"({extent} > {limit} elements)"
            )
        view = np.lib.stride_tricks.as_strided(
            data[base + ref.offset :],
            shape=ref.size,
            strides=tuple(s * data.itemsize for s in ref.stride),
            writeable=False,
        )
        return np.array(view, order="C")  # a contiguous copy, detached from the storage
    return np.zeros(ref.size, dtype=data.dtype)


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(f"checkpoint {path.name}: a zip checkpoint needs exactly one <dir>/data.pkl")
        prefix = pickles[0][: -len("data.pkl")]
        little_endian = True
        if f"{prefix}byteorder" in archive.namelist():
            order = archive.read(f"{prefix}byteorder").strip()
            if order not in (b"little", b"big"):
                raise CheckpointError(f"checkpoint {path.name}: byteorder is {order[:16]!r}")
            little_endian = order == b"little"
        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as f:
            result = _load_pickle(f, storages)
        arrays = {}
        for key, storage in storages.items():
            name = f"{prefix}data/{key}"
            nbytes = storage.numel * _itemsize(storage)
            try:
                info = archive.getinfo(name)
            except KeyError:
                raise CheckpointError(
                    f"checkpoint {path.name}: storage {key} has no data ({name} is missing)"
                ) from None
            if info.file_size != nbytes:
                raise CheckpointError(
                    f"checkpoint {path.name}: storage {key} holds {info.file_size} bytes, not the {nbytes} it declares"
                )
            arrays[key] = _array(archive.read(info), storage, little_endian)
    return _materialize(result, arrays)


def _read_legacy(path: Path) -> Any:
    size = path.stat().st_size
    with path.open("rb") as f:
        storages: dict[str, _Storage] = {}
        if f.read(1) != b"\x80":  # every legacy checkpoint starts with a PROTO opcode
            raise CheckpointError(f"{path.name} is not a PyTorch checkpoint (neither a zip nor the legacy format)")
        f.seek(0)
        magic = _load_pickle(f, storages)
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(f"{path.name} is not a PyTorch checkpoint (neither a zip nor the legacy format)")
        if _load_pickle(f, storages) != _LEGACY_PROTOCOL:
            raise CheckpointError(f"checkpoint {path.name}: unknown legacy protocol version")
        info = _load_pickle(f, storages)
        little_endian = not isinstance(info, dict) or info.get("little_endian", True) is not False
        result = _load_pickle(f, storages)
        keys = _load_pickle(f, {})
        if type(keys) is not list or any(type(k) is not str for k in keys):
            raise CheckpointError(f"checkpoint {path.name}: the storage key list is malformed")
        arrays = {}
        for key in keys:
            storage = storages.get(key)
            if storage is None:
                raise CheckpointError(f"checkpoint {path.name}: storage {key} has data but no tensor uses it")
            head = f.read(8)
            if len(head) != 8:
                raise CheckpointError(f"checkpoint {path.name} is truncated (storage {key})")
            (numel,) = struct.unpack("<q" if little_endian else ">q", head)
            if numel != storage.numel:
                raise CheckpointError(
                    f"checkpoint {path.name}: storage {key} holds {numel} elements, not {storage.numel}"
                )
            nbytes = numel * _itemsize(storage)
            if nbytes > size - f.tell():
                raise CheckpointError(f"checkpoint {path.name} is truncated (storage {key})")
            arrays[key] = _array(f.read(nbytes), storage, little_endian)
    return _materialize(result, arrays)


def load_checkpoint(path: Path) -> Any:
    """What `torch.load(path, weights_only=True)` would give, with numpy arrays for tensors."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        return _read_legacy(path)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc.strerror or exc}") from None
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"checkpoint {path.name}: a damaged zip ({exc})") from None


def read_state_dict(path: Path) -> dict[str, npt.NDArray[Any]]:
    """The parameters and buffers of a state-dict checkpoint (also one nested under "state_dict")."""
    value = load_checkpoint(path)
    if isinstance(value, dict) and isinstance(value.get("state_dict"), dict):
        value = value["state_dict"]
    if not isinstance(value, dict) or not value:
        raise CheckpointError(f"checkpoint {Path(path).name} holds {type(value).__name__}, not a state dict")
    state = {}
    for name, tensor in value.items():
        if type(name) is not str or not isinstance(tensor, np.ndarray):
            raise CheckpointError(f"checkpoint {Path(path).name}: entry {name!r} is not a named tensor")
        state[name] = tensor
    return state
