"""The bare path: what a hand-written script does to classify one image with onnxruntime.

    python benchmarks/bare_predict.py BUNDLE_DIR IMAGE

Same model bytes, same decode (JPEG draft), resize+crop, normalisation, run, softmax and top-5
as `lambdalite predict --json`, with none of lambdalite: the benchmarks' floor. The other
benchmarks import its steps so every comparison uses the same bare path.
"""

import io
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (256, 256))
    return img.convert("RGB")


def preprocess(img: Image.Image) -> np.ndarray:
    w, h = img.size
    scale = 256 / min(w, h)
    img = img.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
    w, h = img.size
    left, top = (w - 224) // 2, (h - 224) // 2
    img = img.crop((left, top, left + 224, top + 224))
    return np.ascontiguousarray(((np.asarray(img, np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None])


def run(session: ort.InferenceSession, labels: list, x: np.ndarray) -> list:
    logits = session.run(None, {"input": x})[0][0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return [{"className": labels[i], "probability": float(p[i])} for i in np.argsort(-p)[:5]]


def load(bundle: str, threads: int = 0) -> tuple:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    with open(f"{bundle}/model.onnx", "rb") as f:
        session = ort.InferenceSession(f.read(), options, providers=["CPUExecutionProvider"])
    with open(f"{bundle}/labels.txt") as f:
        labels = f.read().splitlines()
    return session, labels


if __name__ == "__main__":
    session, labels = load(sys.argv[1])
    with open(sys.argv[2], "rb") as f:
        data = f.read()
    print(json.dumps(run(session, labels, preprocess(decode(data)))))
