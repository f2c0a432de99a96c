#!/usr/bin/env python3
"""The int8 peer for `onnxruntime_peer.py`: onnxruntime's own static quantization (QDQ format,
per-channel int8 weights, u8 activations) of the same ONNX model, calibrated on the same photos
`napctl quantize --calib` reads.

    /tmp/ort/bin/pip install onnxruntime onnx numpy pillow
    /tmp/ort/bin/python3 host-tools/bench/onnxruntime_int8.py MODEL.onnx PHOTOS_DIR -o int8.onnx
    /tmp/ort/bin/python3 host-tools/bench/onnxruntime_peer.py int8.onnx --threads 1 --frames 300

Photos are prepared as napctl's defaults do for MobileNetV2: shorter side to size / 0.875,
centre crop, (x - 127.5) / 127.5, NCHW.
"""
import argparse
import os

import numpy as np
from PIL import Image
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process


def frame(path, size):
    img = Image.open(path).convert("RGB")
    scale = size / 0.875 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = (np.asarray(img, dtype=np.float32) - 127.5) / 127.5
    return x.transpose(2, 0, 1)[None]


class Photos(CalibrationDataReader):
    def __init__(self, paths, name, size):
        self.frames = iter([{name: frame(p, size)} for p in paths])

    def get_next(self):
        return next(self.frames, None)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("photos")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--count", type=int, default=40, help="calibration photos (sorted by name)")
    p.add_argument("--size", type=int, default=224)
    a = p.parse_args()

    import onnx
    name = onnx.load(a.model).graph.input[0].name
    paths = sorted(os.path.join(a.photos, f) for f in os.listdir(a.photos)
                   if f.lower().endswith((".jpg", ".jpeg", ".png")))[:a.count]
    if not paths:
        raise SystemExit(f"no photos in {a.photos}")
    prepared = a.output + ".prep.onnx"
    quant_pre_process(a.model, prepared, skip_symbolic_shape=True)
    quantize_static(prepared, a.output, Photos(paths, name, a.size),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    os.remove(prepared)
    print(f"{a.output}: static QDQ int8, per-channel weights, {len(paths)} calibration photos")


if __name__ == "__main__":
    main()
