#!/usr/bin/env python3
"""Peer benchmark for `napctl bench`: bare onnxruntime inference of the same ONNX model, same
thread count, on the same machine. Prints frames per second (and JSON with --json).

    python3 -m venv /tmp/ort && /tmp/ort/bin/pip install onnxruntime numpy
    /tmp/ort/bin/python3 host-tools/bench/onnxruntime_peer.py MODEL.onnx --threads 1 --frames 200

Bare inference only (no decode, no preprocessing, no scoring): the ratio
napctl frames/s / onnxruntime frames/s therefore understates our speed.
"""
import argparse
import json
import time

import numpy as np
import onnxruntime as ort


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = a.threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, a.size, a.size)).astype(np.float32)
    for _ in range(5):
        session.run(None, {name: x})
    laps = []
    start = time.perf_counter()
    for _ in range(a.frames):
        t = time.perf_counter()
        session.run(None, {name: x})
        laps.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    laps.sort()
    result = {
        "onnxruntime": ort.__version__,
        "threads": a.threads,
        "frames": a.frames,
        "median_us": laps[len(laps) // 2] * 1e6,
        "p99_us": laps[min(len(laps) - 1, int(0.99 * len(laps)))] * 1e6,
        "frames_per_second": a.frames / wall,
    }
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print("onnxruntime {onnxruntime}, {threads} thread(s): median {median_us:.0f} us, "
              "p99 {p99_us:.0f} us, {frames_per_second:.1f} frames/s".format(**result))


if __name__ == "__main__":
    main()
