"""Keras 3 classifiers in the spirit of seed 001's clothing model, built offline (torch backend).

Run in a subprocess, since Keras fixes its backend at first import:

    python tests/keras_models.py small OUT_DIR PHOTO...      # a small Xception-like net
    python tests/keras_models.py xception OUT_DIR PHOTO...   # keras.applications.Xception, 299x299
    python tests/keras_models.py lambda OUT_DIR              # a model with a Lambda layer

writes OUT_DIR/model.keras (and model.h5, the legacy format seed 001's checkpoints use) and
prints JSON: {"size": [h, w], "classes": [...], "reference": {photo: probabilities}}. The
reference probabilities come the way seed 001's function computes them (keras-image-helper's
'xception' preprocessor): the photo opened with PIL, made RGB, resized to the input size with
NEAREST, then x / 127.5 - 1, through the Keras model. Weights are seeded random (no download);
the head is scaled so the probabilities are spread, not a near tie.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"

import keras
import numpy as np

CLASSES = ["dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt"]


def small(size: int = 71) -> keras.Model:
    """Xception's building blocks (strided conv, separable convs, batch norm, 'same' max pooling, residual)."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    residual = keras.layers.Conv2D(16, 1, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.SeparableConv2D(16, 3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = keras.layers.add([x, residual])
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(CLASSES))(x)
    return keras.Model(inputs, outputs)


def xception(size: int = 299) -> keras.Model:
    """Seed 001's model: Xception (no ImageNet weights here), pooled, and a 10-class dense head."""
    base = keras.applications.Xception(weights=None, include_top=False, input_shape=(size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(base.output)
    outputs = keras.layers.Dense(len(CLASSES))(x)
    return keras.Model(base.input, outputs)


def seed001_input(path: str, size: tuple[int, int]) -> np.ndarray:
    """keras-image-helper's `create_preprocessor('xception', target_size)`, as seed 001 uses it."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode != "RGB":
            img = img.convert("RGB")
        img = img.resize(size, Image.NEAREST)
    x = np.array(img, dtype="float32")[None]
    return x / 127.5 - 1.0


def main() -> None:
    kind, out = sys.argv[1], Path(sys.argv[2])
    photos = sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    if kind == "lambda":
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        keras.Model(inputs, keras.layers.Dense(3)(x)).save(out / "model.keras")
        return
    model = small() if kind == "small" else xception()
    head = model.layers[-1]
    kernel = np.asarray(head.kernel.numpy())
    rng = np.random.default_rng(0)
    probe = rng.uniform(-1, 1, (4, *model.input_shape[1:])).astype("float32")
    head.kernel.assign(rng.normal(0, 1, kernel.shape).astype("float32"))
    for _ in range(12):  # scale the head until the logits span a few units
        if float(np.asarray(model.predict(probe, verbose=0)).std()) > 1.0:
            break
        head.kernel.assign(np.asarray(head.kernel.numpy()) * 3.0)
    model.save(out / "model.keras")
    if kind == "small":
        model.save(out / "model.h5")  # Keras 2's format (legacy): what ModelCheckpoint wrote for seed 001
    h, w = model.input_shape[1:3]
    reference = {}
    for path in photos:
        logits = np.asarray(model.predict(seed001_input(path, (w, h)), verbose=0), np.float64)[0]
        e = np.exp(logits - logits.max())
        reference[Path(path).name] = (e / e.sum()).tolist()
    print(json.dumps({"size": [h, w], "classes": CLASSES, "reference": reference}))


if __name__ == "__main__":
    main()
