"""Image classification: one forward pass, softmax when the model gives logits, top-k labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lambdalite.core.bundle import Bundle
from lambdalite.core.images import DEFAULT_LIMITS, DecodeLimits, Preprocessor
from lambdalite.engines import Engine, load_engine
from lambdalite.errors import BundleError, EngineError, InputError
from lambdalite.tasks.base import Capabilities, Preprocess, TensorAccess

__all__ = ["Classifier", "load", "softmax", "top_k"]

Prediction = list[dict[str, Any]]


def softmax(x: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    z = x.astype(np.float64) - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: npt.NDArray[np.float64] = e / e.sum(axis=-1, keepdims=True)
    return out


def top_k(probs: npt.NDArray[np.floating[Any]], labels: Sequence[str], k: int) -> Prediction:
    """The `k` most probable classes as the DJL list, best first, probabilities as plain floats."""
    k = max(1, min(k, probs.shape[-1]))
    if k < probs.shape[-1]:
        idx = np.argpartition(-probs, k - 1)[:k]
        idx = idx[np.argsort(-probs[idx], kind="stable")]
    else:
        idx = np.argsort(-probs, kind="stable")
    return [{"className": labels[i], "probability": float(probs[i])} for i in idx.tolist()]


class Classifier:
    kind = "image-classification"

    def __init__(
        self,
        bundle: Bundle,
        engine: Engine,
        labels: list[str],
        *,
        limits: DecodeLimits = DEFAULT_LIMITS,
        preprocess: Preprocess | None = None,
    ) -> None:
        self.bundle = bundle
        self.engine = engine
        self.labels = labels
        spec = bundle.manifest.input
        self.preprocess: Preprocess = preprocess or Preprocessor.from_spec(spec, limits)
        self.input_name = spec.name or engine.inputs[0].name
        names = [o.name for o in engine.outputs]
        out_name = bundle.manifest.output.name
        if out_name is not None and out_name not in names:
            raise BundleError(
                f"lambdalite.json: output.name: the model has no output {out_name!r} (it has {', '.join(names)})"
            )
        self.output_index = names.index(out_name) if out_name else 0
        self.apply_softmax = bundle.manifest.output.kind == "logits"
        self.default_top_k = bundle.manifest.output.top_k
        batch_dim = next((i.shape[0] for i in engine.inputs if i.name == self.input_name and i.shape), -1)
        self.max_batch = None if batch_dim in (-1, 0) else batch_dim
        self._check_labels()
        self.capabilities = Capabilities(
            labels=tuple(labels), tensors=TensorAccess(engine, self.input_name, self.preprocess)
        )

    def _check_labels(self) -> None:
        out = self.engine.outputs[self.output_index]
        classes = out.shape[-1] if out.shape else -1
        if classes > 0 and classes != len(self.labels):
            raise BundleError(
                f"bundle {self.bundle.manifest.name}: the model has {classes} classes but "
                f"{self.bundle.manifest.files['labels'].path} lists {len(self.labels)}"
            )

    def class_probabilities(self, batch: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
        """Run a preprocessed batch and return class probabilities, one row per sample."""
        if self.max_batch is not None and batch.shape[0] > self.max_batch:
            parts = [
                self.class_probabilities(batch[i : i + self.max_batch])
                for i in range(0, batch.shape[0], self.max_batch)
            ]
            return np.concatenate(parts)
        raw = self.engine.run({self.input_name: batch})[self.output_index]
        scores = np.asarray(raw).reshape(batch.shape[0], -1)
        if scores.dtype != np.float32 and scores.dtype != np.float64:
            scores = scores.astype(np.float32)
        if self.apply_softmax:
            return softmax(scores)
        return scores.astype(np.float64)

    def predict(self, images: Sequence[bytes], **options: Any) -> list[Prediction]:
        if not images:
            raise InputError("no images to classify")
        k = options.get("top_k")
        if k is None:
            k = self.default_top_k
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InputError(f"top_k must be a positive whole number, not {k!r}")
        batch = np.stack([self.preprocess(data) for data in images])
        probs = self.class_probabilities(batch)
        return [top_k(row, self.labels, k) for row in probs]

    def warmup(self) -> None:
        h, w = self.bundle.manifest.input.size
        shape = (1, 3, h, w) if self.bundle.manifest.input.layout == "NCHW" else (1, h, w, 3)
        dtype = {"float32": np.float32, "uint8": np.uint8, "int8": np.int8}[self.bundle.manifest.input.dtype]
        try:
            self.engine.run({self.input_name: np.zeros(shape, dtype)})
        except EngineError as exc:
            raise BundleError(
                f"bundle {self.bundle.manifest.name}: the model does not accept the input the "
                f"manifest describes ({shape}, {dtype.__name__}): {exc}"
            ) from exc


def load(
    bundle: Bundle, *, threads: int, limits: DecodeLimits = DEFAULT_LIMITS, preprocess: Preprocess | None = None
) -> Classifier:
    model, check = bundle.read_deferred("model")
    labels = bundle.read_lines("labels")
    try:
        engine = load_engine(bundle.manifest.engine, model, threads=threads)
    except Exception:
        check()  # a corrupt file explains a load failure better than the engine can
        raise
    check()
    return Classifier(bundle, engine, labels, limits=limits, preprocess=preprocess)
