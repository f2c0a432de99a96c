#!/usr/bin/env python3
"""Train the project's default model: a small MobileNetV2-style CNN on Fashion-MNIST, exported to ONNX.

Data: the idx files of the Debian package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist).
Input: float32 [1, 3, 28, 28] named `input`, NCHW, RGB with the grey value in all three channels,
normalized as (pixel - MEAN) / STD with pixel in 0..255 (same MEAN/STD for every channel), no crop.
Output: `logits` [1, 10].

The head is the torchvision form: last 1x1 conv + ReLU6 (the pre-pool activation, in [0, 6]) ->
global average pooling -> flatten -> linear, exported as GlobalAveragePool -> Flatten -> Gemm.

    python3 train.py --out fashion_mnv2.onnx --epochs 10
"""

import argparse
import os

# Idle OpenMP workers sleep instead of spinning: on a busy 2-core machine spinning workers made each
# training step up to 5x slower. Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from idx import find, read_idx

# Pixel statistics of the 60,000 training images (0..255), rounded to two decimals; the bundle takes
# them per channel in pixel units: --mean 72.94 72.94 72.94 --std 90.02 90.02 90.02.
MEAN = 72.94
STD = 90.02
CLASSES = [
    "tshirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",
]
SEED = 0


def load_split(data_dir, prefix):
    images = read_idx(find(data_dir, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find(data_dir, f"{prefix}-labels-idx1-ubyte"))
    return images, labels


def to_input(images_u8):
    """uint8 [N, 28, 28] -> float32 [N, 3, 28, 28], normalized as the runtime does."""
    x = torch.from_numpy(images_u8.astype(np.float32))
    x = (x - MEAN) / STD
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def conv_bn(cin, cout, k, stride=1, groups=1, act=True):
    layers = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + ReLU6, depthwise 3x3 + ReLU6, 1x1 linear projection."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1))
        layers.append(conv_bn(hidden, hidden, 3, stride, groups=hidden))
        layers.append(conv_bn(hidden, cout, 1, act=False))
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.residual else y


def make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class FashionMNv2(nn.Module):
    """MobileNetV2 at width 0.5, shortened for a 28x28 input: stride-2 stem (14x14), one more stride 2,
    so the pre-pool activation is C x 7 x 7. The first four stages of MobileNetV2 with fewer repeats."""

    # (expansion t, channels c at width 1.0, repeats n, first stride s), as in the MobileNetV2 paper.
    SETTINGS = [
        (1, 16, 1, 1),  # 14x14
        (6, 24, 2, 2),  # 7x7
        (6, 32, 2, 1),  # 7x7
        (6, 64, 2, 1),  # 7x7
    ]

    def __init__(self, width=0.5, last_channels=256, num_classes=10):
        super().__init__()
        cin = make_divisible(32 * width)
        layers = [conv_bn(3, cin, 3, stride=2)]
        for t, c, n, s in self.SETTINGS:
            cout = make_divisible(c * width)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        # Final 1x1 conv + ReLU6: its output is the pre-pool activation A (C x 7 x 7, in [0, 6]).
        layers.append(conv_bn(cin, last_channels, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))  # exported as GlobalAveragePool
        x = torch.flatten(x, 1)  # Flatten
        return self.classifier(x)  # Gemm


def augment(x, gen):
    """Random horizontal flip, a random shift of up to 2 pixels (black padding), and per image a
    random gamma in [1/e, e] and gain in [0.6, 1.6] on the 0..255 pixel, clipped.

    The photometric part is what makes the logits (energy) separate Fashion-MNIST from MNIST: without
    it, the bright, high-contrast digit strokes drive the last features harder than any garment, and
    energy AUROC against the MNIST demo frames was ~70% instead of ~93% (6 epochs each).
    """
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = 2
    bg = -MEAN / STD  # a black pixel after normalization
    xp = F.pad(x, (pad, pad, pad, pad), value=bg)
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    x = xp[:, :, dy : dy + 28, dx : dx + 28]
    pix = (x * STD + MEAN).clamp(0, 255) / 255
    gamma = torch.exp(torch.empty(n, 1, 1, 1).uniform_(-1.0, 1.0, generator=gen))
    gain = torch.empty(n, 1, 1, 1).uniform_(0.6, 1.6, generator=gen)
    pix = (pix.pow(gamma) * gain).clamp(0, 1) * 255
    return (pix - MEAN) / STD


@torch.no_grad()
def evaluate(model, x, y, batch=1000):
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="fashion_mnv2.onnx", help="the ONNX file to write")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.2, help="peak SGD learning rate (one-cycle)")
    ap.add_argument("--weight-decay", type=float, default=4e-5)
    ap.add_argument("--last-channels", type=int, default=256, help="channels of the pre-pool activation")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()

    t0 = time.time()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)

    train_u8, train_y = load_split(args.data_dir, "train")
    test_u8, test_y = load_split(args.data_dir, "t10k")
    x_train, y_train = to_input(train_u8), torch.from_numpy(train_y.astype(np.int64))
    x_test, y_test = to_input(test_u8), torch.from_numpy(test_y.astype(np.int64))
    print(f"data: {len(x_train)} train, {len(x_test)} test images from {args.data_dir}")
    print(f"pixel mean/std of the train set: {train_u8.mean():.4f} / {train_u8.std():.4f} (used: {MEAN} / {STD})")

    model = FashionMNv2(last_channels=args.last_channels)
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {params}")

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
    )
    steps_per_epoch = len(x_train) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.25
    )

    for epoch in range(args.epochs):
        model.train()
        te = time.time()
        perm = torch.randperm(len(x_train), generator=gen)
        total, seen = 0.0, 0
        for step in range(steps_per_epoch):
            idx = perm[step * args.batch : (step + 1) * args.batch]
            xb, yb = augment(x_train[idx], gen), y_train[idx]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        acc = evaluate(model, x_test, y_test)
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {total / seen:.4f}, test acc {100 * acc:.2f}%, "
            f"{time.time() - te:.0f} s",
            flush=True,
        )

    acc = evaluate(model, x_test, y_test)
    train_time = time.time() - t0

    model.eval()
    dummy = torch.zeros(1, 3, 28, 28)
    export_kwargs = dict(
        input_names=["input"],
        output_names=["logits"],
        opset_version=13,
        do_constant_folding=True,
    )
    try:
        torch.onnx.export(model, dummy, args.out, dynamo=False, **export_kwargs)
    except TypeError:  # torch < 2.5 has no `dynamo` argument
        torch.onnx.export(model, dummy, args.out, **export_kwargs)
    print(f"test accuracy: {100 * acc:.2f}%")
    print(f"wall time: {train_time:.0f} s (training and evaluation, {args.threads} threads)")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)")


if __name__ == "__main__":
    main()
