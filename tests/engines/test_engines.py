from __future__ import annotations

import os

import numpy as np
import pytest

from lambdalite.engines import cpu_quota, default_threads, load_engine, threads_for
from lambdalite.errors import EngineError

from helpers import FIXTURES
from helpers.models import tiny_classifier_onnx, tiny_reference


def test_onnx_engine_runs_the_tiny_model():
    engine = load_engine("onnxruntime", tiny_classifier_onnx(), threads=1)
    assert [i.name for i in engine.inputs] == ["pixels"]
    assert engine.inputs[0].shape == (-1, 3, 8, 8)
    assert engine.outputs[0].shape == (-1, 4)
    x = np.random.default_rng(0).random((3, 3, 8, 8), dtype=np.float32)
    [out] = engine.run({"pixels": x})
    np.testing.assert_allclose(out, tiny_reference(x), rtol=1e-5, atol=1e-6)


def test_unknown_engine():
    with pytest.raises(EngineError, match="unknown engine 'tensorflow'"):
        load_engine("tensorflow", b"")


def test_garbage_model_fails_cleanly():
    with pytest.raises(EngineError, match="cannot load the model"):
        load_engine("onnxruntime", b"definitely not onnx", threads=1)


def test_wrong_input_shape_fails_cleanly():
    engine = load_engine("onnxruntime", tiny_classifier_onnx(), threads=1)
    with pytest.raises(EngineError, match="failed to run"):
        engine.run({"pixels": np.zeros((1, 4, 8, 8), np.float32)})


@pytest.mark.parametrize(
    ("cpus", "quota", "memory", "expected"),
    [
        (2, None, 128, 1),  # Lambda shows 2 cores at 128 MB but gives a fraction of one
        (2, None, 1769, 1),  # exactly one vCPU
        (2, None, 3538, 2),
        (2, None, 10240, 2),  # never more than the CPUs we can run on
        (8, None, 10240, 6),  # 10,240 MB buys about 5.8 vCPUs
        (8, None, 3008, 2),
        (16, 1.5, None, 2),  # a cgroup quota of 1.5 CPUs
        (16, 0.3, None, 1),
        (4, None, None, 4),
    ],
)
def test_threads_follow_cpus_quota_and_lambda_memory(cpus, quota, memory, expected):
    assert threads_for(cpus, quota, memory) == expected


def test_default_threads_follow_the_memory_size():
    """At 128 MB Lambda gives a fraction of a vCPU: one thread, however many CPUs are visible."""
    assert default_threads(128) == 1
    assert default_threads() == threads_for(len(os.sched_getaffinity(0)), cpu_quota(), None)


def test_every_engine_gives_the_same_answer_on_the_same_network():
    """The tiny network as ONNX, TorchScript and TFLite (NHWC): one answer within tolerance."""
    pytest.importorskip("torch")

    from helpers.models import tiny_torchscript

    x = np.random.default_rng(4).random((2, 3, 8, 8), dtype=np.float32)
    onnx_engine = load_engine("onnxruntime", tiny_classifier_onnx(), threads=1)
    torch_engine = load_engine("torchscript", tiny_torchscript(), threads=1)
    tflite = (FIXTURES / "tiny.tflite").read_bytes()
    litert_engine = load_engine("litert", tflite, threads=1)
    [a] = onnx_engine.run({"pixels": x})
    [b] = torch_engine.run({"input": x})
    [c] = litert_engine.run({"pixels": x.transpose(0, 2, 3, 1)})
    want = tiny_reference(x)
    for got in (a, b, c):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_torchscript_engine_errors_are_clean():
    pytest.importorskip("torch")
    from helpers.models import tiny_torchscript

    with pytest.raises(EngineError, match="cannot load the model as TorchScript"):
        load_engine("torchscript", b"PK\x03\x04 not really a zip", threads=1)
    engine = load_engine("torchscript", tiny_torchscript(), threads=1)
    with pytest.raises(EngineError, match="torch failed to run the model"):
        engine.run({"input": np.zeros((1, 5, 8), np.float32)})
    with pytest.raises(EngineError, match="takes one input"):
        engine.run({"a": np.zeros(1, np.float32), "b": np.zeros(1, np.float32)})
