from __future__ import annotations

import numpy as np
import pytest

from lambdalite.engines import default_threads, load_engine, threads_for
from lambdalite.errors import EngineError

from models import tiny_classifier_onnx, tiny_reference


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


def test_threads_from_the_environment(monkeypatch):
    monkeypatch.setenv("LAMBDALITE_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("LAMBDALITE_THREADS", "lots")
    with pytest.raises(EngineError, match="LAMBDALITE_THREADS"):
        default_threads()
    monkeypatch.delenv("LAMBDALITE_THREADS")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
    assert default_threads() == 1
