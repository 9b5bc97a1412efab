"""Hugging Face image classifiers built offline from configs, with small seeded random weights.

Each kind copies the image processor its hub checkpoints use (class, resize rule, crop,
resample, mean/std) at a small input size, so `lambdalite import` meets the same
preprocessor_config.json a user's folder has. The classifier head is scaled up so that
the random model's probabilities are spread (not a near tie between classes) and depend on
the picture. Needs torch and transformers (the `export` extra); nothing is downloaded.

    python tests/hf_models.py vit DIR     # write one folder, as the fixture script does
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

KINDS = ("vit", "convnext", "resnet", "mobilenet_v2", "swin")
LABELS = ["tabby cat", "golden retriever", "espresso", "space shuttle", "motor scooter"]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def _config_and_processor(kind: str) -> tuple[Any, Any]:
    import transformers as T

    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {n: i for i, n in enumerate(LABELS)}}
    if kind == "vit":  # google/vit-base-patch16-224: 224x224 warp, bilinear, mean/std 0.5
        config = T.ViTConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=64, **labels
        )
        processor = T.ViTImageProcessorPil(size={"height": 64, "width": 64}, resample=2)
    elif kind == "convnext":  # facebook/convnext-tiny-224: shortest_edge 224, crop_pct 0.875, bicubic
        config = T.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], **labels)
        processor = T.ConvNextImageProcessorPil(
            size={"shortest_edge": 64}, crop_pct=0.875, resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
        )
    elif kind == "resnet":  # microsoft/resnet-50: ConvNeXt's processor, shortest_edge 224, crop_pct 0.875
        config = T.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic", **labels
        )
        processor = T.ConvNextImageProcessorPil(
            size={"shortest_edge": 72}, crop_pct=0.875, resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
        )
    elif kind == "mobilenet_v2":  # google/mobilenet_v2_1.0_224: shortest_edge 256, crop 224, bilinear, 0.5
        config = T.MobileNetV2Config(depth_multiplier=0.35, image_size=64, **labels)
        processor = T.MobileNetV2ImageProcessorPil(
            size={"shortest_edge": 73}, crop_size={"height": 64, "width": 64}, resample=2
        )
    elif kind == "swin":  # microsoft/swin-tiny-patch4-window7-224: ViT's processor, bicubic, ImageNet mean/std
        config = T.SwinConfig(
            image_size=64, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4, **labels
        )
        processor = T.ViTImageProcessorPil(
            size={"height": 64, "width": 64}, resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
        )
    else:
        raise ValueError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
    return config, processor


def build(kind: str, folder: Path, seed: int = 0) -> Path:
    """Write a `save_pretrained` folder (config, preprocessor config, safetensors) for `kind`."""
    import torch
    import transformers as T

    config, processor = _config_and_processor(kind)
    torch.manual_seed(seed)
    model = T.AutoModelForImageClassification.from_config(config).eval()
    h, w = _input_hw(processor)
    noise = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        norms = []
        for module in model.modules():  # convolutions scaled to keep the signal alive (He init)
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # a plain average over the batches below
                norms.append(module)
        if norms:  # batch-norm statistics measured on images, as training leaves them
            model.train()
            for _ in range(4):
                model(pixel_values=torch.rand(8, 3, h, w, generator=noise) * 4 - 2)
            model.eval()
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        head.weight.normal_(0, 1.0)
        # Spread the logits: scale the head until they span several units.
        for _ in range(12):
            logits = model(pixel_values=torch.randn(4, 3, h, w, generator=torch.Generator().manual_seed(1))).logits
            if float(logits.std()) > 1.0:
                break
            head.weight.mul_(3.0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _input_hw(processor: Any) -> tuple[int, int]:
    crop = getattr(processor, "crop_size", None)
    if getattr(processor, "do_center_crop", False) and crop is not None:
        return crop.height, crop.width
    size = processor.size
    if size.height:
        return size.height, size.width
    return size.shortest_edge, size.shortest_edge


if __name__ == "__main__":
    build(sys.argv[1], Path(sys.argv[2]))
