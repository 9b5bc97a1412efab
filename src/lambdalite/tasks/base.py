"""What every task is: the declared interface, and the capabilities a task may offer.

A task answers `predict` (encoded images in, JSON-ready results out) and `warmup`. What else it
offers is declared in `capabilities`, never probed: a caller that needs class names asks
`task.capabilities.labels` and gets None when the task has none; a protocol that feeds tensors
to the model itself (the Open Inference Protocol) asks `task.capabilities.tensors`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from lambdalite.core.bundle import Bundle
from lambdalite.core.images import DecodeLimits
from lambdalite.engines import Engine

__all__ = ["Capabilities", "Preprocess", "Task", "TaskFactory", "TensorAccess"]

Preprocess = Callable[[bytes], npt.NDArray[np.generic]]  # encoded image -> one sample (no batch axis)


class TensorAccess(NamedTuple):
    """The task's one model, for callers that feed it tensors: its engine, the input the images
    go to, and how an encoded image becomes a sample for that input."""

    engine: Engine
    input_name: str
    preprocess: Preprocess


class Capabilities(NamedTuple):
    """What a task offers besides `predict`; None means: this task does not."""

    labels: tuple[str, ...] | None = None  # class names, index -> name (classifiers)
    tensors: TensorAccess | None = None  # one model fed tensors directly (not a multi-model or code task)


class Task(Protocol):
    """A loaded model that answers requests."""

    kind: str  # the manifest's task: "image-classification", "image-to-text"
    bundle: Bundle
    capabilities: Capabilities

    def predict(self, images: Sequence[bytes], **options: Any) -> list[Any]: ...

    def warmup(self) -> None: ...


class TaskFactory(Protocol):
    """A task module's `load`: `preprocess` replaces the bundle's own input preprocessing."""

    def __call__(
        self, bundle: Bundle, *, threads: int, limits: DecodeLimits, preprocess: Preprocess | None = None
    ) -> Task: ...
