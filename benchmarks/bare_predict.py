"""The bare path: what a hand-written script does to classify one image with onnxruntime.

    python benchmarks/bare_predict.py BUNDLE_DIR IMAGE

Same model bytes, same decode (JPEG draft), resize+crop, normalisation, run, softmax and top-5
as `lambdalite predict --json`, with none of lambdalite. The benchmarks' floor.
"""

import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

bundle, image = sys.argv[1], sys.argv[2]
with open(f"{bundle}/model.onnx", "rb") as f:
    session = ort.InferenceSession(f.read(), providers=["CPUExecutionProvider"])
with open(f"{bundle}/labels.txt") as f:
    labels = f.read().splitlines()
img = Image.open(image)
img.draft("RGB", (256, 256))
img = img.convert("RGB")
w, h = img.size
scale = 256 / min(w, h)
img = img.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
w, h = img.size
left, top = (w - 224) // 2, (h - 224) // 2
img = img.crop((left, top, left + 224, top + 224))
x = ((np.asarray(img, np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None]
logits = session.run(None, {"input": np.ascontiguousarray(x)})[0][0]
p = np.exp(logits - logits.max())
p /= p.sum()
top = np.argsort(-p)[:5]
print(json.dumps([{"className": labels[i], "probability": float(p[i])} for i in top]))
