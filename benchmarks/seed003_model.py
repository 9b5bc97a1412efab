"""Seed 003's captioner at its real sizes, with random weights, for benchmarking only (needs torch).

The architecture of sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning, which seed 003 serves:
a ResNet-101 trunk on 256x256 pictures, pooled to 14x14x2048; an LSTM decoder (embedding,
hidden and attention size 512) with soft attention and a sigmoid gate on the context, over a
9,490-word vocabulary. Exported as the image-to-text contract: the encoder also gives the
attention keys and the first h and c; the step takes token, h, c, features, keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lambdalite.toolkit.convert.export import OPSET, quiet

VOCAB_SIZE = 9490
ENCODER_DIM, ATTENTION, EMBED, HIDDEN = 2048, 512, 512, 512


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        nn.init.zeros_(self.body[-1].weight)  # residual branches start at zero: sane random activations
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        ]
        cin = 64
        for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 23, 2), (512, 3, 2)):  # ResNet-101
            for i in range(blocks):
                layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                cin = width * 4
        self.trunk = nn.Sequential(*layers)
        # The tutorial's AdaptiveAvgPool2d((14, 14)) upsamples the 8x8 map; ONNX cannot export that
        # (14 is not a factor of 8), so resize instead: the same shapes, a negligible cost either way.
        self.pool = nn.Upsample(size=(14, 14), mode="bilinear", align_corners=False)
        self.encoder_att = nn.Linear(ENCODER_DIM, ATTENTION)
        self.init_h = nn.Linear(ENCODER_DIM, HIDDEN)
        self.init_c = nn.Linear(ENCODER_DIM, HIDDEN)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.pool(self.trunk(image)).flatten(2).transpose(1, 2)  # (N, 196, 2048)
        mean = features.mean(1)
        return features, self.encoder_att(features), self.init_h(mean), self.init_c(mean)


class Step(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB_SIZE, EMBED)
        self.decoder_att = nn.Linear(HIDDEN, ATTENTION)
        self.full_att = nn.Linear(ATTENTION, 1)
        self.f_beta = nn.Linear(HIDDEN, ENCODER_DIM)
        self.lstm = nn.LSTMCell(EMBED + ENCODER_DIM, HIDDEN)
        self.fc = nn.Linear(HIDDEN, VOCAB_SIZE)
        with torch.no_grad():
            self.fc.bias[2] = -100.0  # never "<end>": every caption decodes to max_length

    def forward(
        self, token: torch.Tensor, h: torch.Tensor, c: torch.Tensor, features: torch.Tensor, keys: torch.Tensor
    ):  # type: ignore[no-untyped-def]
        alpha = torch.softmax(self.full_att(torch.relu(keys + self.decoder_att(h)[:, None])).squeeze(2), dim=1)
        context = torch.sigmoid(self.f_beta(h)) * torch.bmm(alpha[:, None], features).squeeze(1)
        h2, c2 = self.lstm(torch.cat([self.embedding(token), context], 1), (h, c))
        return self.fc(h2), h2, c2


def build(out: Path) -> tuple[Path, Path, list[str]]:
    torch.manual_seed(3)
    out.mkdir(parents=True, exist_ok=True)
    encoder, step = Encoder().eval(), Step().eval()
    batch = {0: "batch"}
    image = torch.zeros(1, 3, 256, 256)
    with quiet(), torch.no_grad():
        torch.onnx.export(
            encoder,
            (image,),
            str(out / "encoder.onnx"),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["features", "keys", "h", "c"],
            dynamic_axes={n: batch for n in ("image", "features", "keys", "h", "c")},
        )
        features, keys, h, c = encoder(image)
        torch.onnx.export(
            step,
            (torch.tensor([1]), h, c, features, keys),
            str(out / "decoder.onnx"),
            dynamo=False,
            opset_version=OPSET,
            input_names=["token", "h", "c", "features", "keys"],
            output_names=["logits", "next_h", "next_c"],
            dynamic_axes={n: batch for n in ("token", "h", "c", "features", "keys", "logits", "next_h", "next_c")},
        )
    vocab = ["<pad>", "<start>", "<end>", "<unk>", *(f"w{i}" for i in range(4, VOCAB_SIZE))]
    return out / "encoder.onnx", out / "decoder.onnx", vocab
