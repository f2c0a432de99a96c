#!/usr/bin/env python3
"""Dev script: the reference preprocessing (PIL + numpy), and checks of the Rust one against it.

Not run by `cargo test`. Needs a scratch venv: `pip install pillow numpy onnxruntime onnx`.
The shared data folder is $NAP_SHARED_DATA (default: <workspace>/../shared/data).

    python preprocess_pil_reference.py find-convention [N]
        Tries candidate crop/resize conventions on N images per set (default 30) through
        onnxruntime and prints how far each is from reference/dev_scores.tsv (lse, nap).
    python preprocess_pil_reference.py expected FILE...
        Prints the PIL-computed numbers stored in runtime/tests/preprocess.rs.
    python preprocess_pil_reference.py compare DUMP_DIR
        Compares a dump written by the ignored Rust test `dump_for_pil_comparison`
        (NAP_PREPROCESS_DUMP=DUMP_DIR cargo test -p nap-runtime --test preprocess -- --ignored
        dump_for_pil_comparison) with PIL: decoder, resize and tensor differences, and the scores
        of the Rust tensors against dev_scores.tsv.

The reference convention (reproduces every lse/nap of dev_scores.tsv to < 1e-6 relative):
    img = Image.open(path).convert("RGB")
    side = round(0.875 * min(w, h))          # Python round: half to even
    left, top = int((w - side) / 2), int((h - side) / 2)
    img = img.crop((left, top, left + side, top + side)).resize((224, 224), Image.BILINEAR)
    x = (np.asarray(img, np.float32) - 127.5) / 127.5   # HWC -> CHW
"""

import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("NAP_SHARED_DATA") or HERE.parent.parent.parent / "shared" / "data")
SETS = ["id-imagenet", "ood-dtd", "ood-patterns"]
SIZE, FRAC = 224, 0.875
PREPOOL = "MobilenetV2/Conv_1/Relu6"


def ref_box(w, h, frac=FRAC):
    side = round(frac * min(w, h))
    left, top = int((w - side) / 2), int((h - side) / 2)
    return (left, top, left + side, top + side)


def ref_resized(img):
    """The reference's crop + resize of an RGB PIL image: u8 HWC array."""
    return np.asarray(img.crop(ref_box(*img.size)).resize((SIZE, SIZE), Image.BILINEAR))


def normalize(u8_hwc):
    return ((u8_hwc.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1)


def load(set_, file):
    return Image.open(DATA / "images" / set_ / file).convert("RGB")


def files_of(set_):
    return sorted(f for f in os.listdir(DATA / "images" / set_) if not f.endswith(".tsv"))


def reference_scores():
    ref = {}
    lines = (DATA / "reference" / "dev_scores.tsv").read_text().splitlines()
    for line in lines[1:]:
        s, f, t, lse, nap, msp = line.split("\t")
        ref[(s, f)] = (int(t), float(lse), float(nap), float(msp))
    return ref


_session = None


def scores(x):
    """(top1, lse, nap, msp) of an NCHW batch, with the pre-pool tensor as a second output."""
    global _session
    import onnx
    import onnxruntime as ort

    if _session is None:
        model = onnx.load(DATA / "mobilenetv2" / "mobilenet_v2_1.0_224.onnx")
        model.graph.output.append(
            onnx.helper.make_tensor_value_info(PREPOOL, onnx.TensorProto.FLOAT, None))
        _session = ort.InferenceSession(model.SerializeToString(),
                                        providers=["CPUExecutionProvider"])
    logits, a = _session.run(["logits", PREPOOL], {"input": x})
    logits = logits.reshape(len(x), -1).astype(np.float64)
    a = a.astype(np.float64)
    m = logits.max(1, keepdims=True)
    e = np.exp(logits - m)
    lse = m[:, 0] + np.log(e.sum(1))
    nap = ((a.max((2, 3)) / (a.mean((2, 3)) + 1.0)) ** 2).mean(1)
    return logits.argmax(1), lse, nap, (e / e.sum(1, keepdims=True)).max(1)


def rel(a, b):
    return np.abs(np.asarray(a) / np.asarray(b) - 1)


def find_convention(n):
    ref = reference_scores()

    def crop_then_resize(side_fn, off_fn, box_resize=False):
        def run(img):
            w, h = img.size
            side = side_fn(FRAC * min(w, h))
            l, t = off_fn((w - side) / 2), off_fn((h - side) / 2)
            box = (l, t, l + side, t + side)
            if box_resize:
                return np.asarray(img.resize((SIZE, SIZE), Image.BILINEAR, box=box))
            return np.asarray(img.crop(box).resize((SIZE, SIZE), Image.BILINEAR))
        return run

    def float_box(img):
        w, h = img.size
        side = FRAC * min(w, h)
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        return np.asarray(img.resize((SIZE, SIZE), Image.BILINEAR, box=box))

    def half_up(x):
        return math.floor(x + 0.5)

    cands = {}
    for sn, sf in [("int", int), ("round", round), ("half_up", half_up), ("ceil", math.ceil)]:
        for on, of in [("int", int), ("round", round), ("half_up", half_up)]:
            cands[f"crop side={sn} offset={on}"] = crop_then_resize(sf, of)
    cands["resize box=int ints"] = crop_then_resize(int, int, box_resize=True)
    cands["resize box=float"] = float_box
    for s in SETS:
        fs = files_of(s)
        fs = fs[:: max(1, len(fs) // n)][:n]
        imgs = [load(s, f) for f in fs]
        r = np.array([ref[(s, f)][1:3] for f in fs])
        for name, fn in cands.items():
            _, lse, nap, _ = scores(np.stack([normalize(fn(im)) for im in imgs]))
            print(f"{s:13s} {name:30s} max rel err lse {rel(lse, r[:, 0]).max():.1e} "
                  f"nap {rel(nap, r[:, 1]).max():.1e}")


def expected(files):
    """Prints `PilExpected` literals for runtime/tests/preprocess.rs."""
    picks = [(0, 0, 0), (1, 112, 112), (2, 223, 223), (0, 50, 170)]
    for path in files:
        set_, file = path.split("/")
        img = load(set_, file)
        t = normalize(ref_resized(img))
        means = t.reshape(3, -1).mean(1, dtype=np.float64)
        left, top, right, _ = ref_box(*img.size)
        vals = ", ".join(f"(({c}, {y}, {x}), {str(t[c, y, x])})" for c, y, x in picks)
        print(f"    PilExpected {{\n        file: \"{path}\",\n"
              f"        crop: CropBox {{ left: {left}, top: {top}, side: {right - left} }},\n"
              f"        means: [{', '.join(f'{m:.7f}' for m in means)}],\n"
              f"        values: [{vals}],\n    }},")


def read_dump(path):
    raw = path.read_bytes()
    w, h = np.frombuffer(raw[:8], "<u4")
    return np.frombuffer(raw[8:], np.uint8).reshape(h, w, 3)


def fpr95_auroc(id_scores, ood_scores):
    """ID = positive: tau = 5th percentile of ID (numpy linear), FPR95 = share of OOD >= tau;
    AUROC with ties averaged. Both in percent."""
    tau = np.percentile(id_scores, 5)
    fpr = float(np.mean(np.asarray(ood_scores) >= tau))
    both = np.concatenate([id_scores, ood_scores])
    order = both.argsort(kind="mergesort")
    ranks = np.empty(len(both))
    sorted_ = both[order]
    i = 0
    while i < len(both):  # average ranks over ties
        j = i
        while j + 1 < len(both) and sorted_[j + 1] == sorted_[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n1, n0 = len(id_scores), len(ood_scores)
    auroc = (ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    return 100 * fpr, 100 * auroc


def print_metrics(ours, ref):
    """Energy, NAP and NAP-E (w = 0.6) FPR95 / AUROC from our scores and from the reference."""
    def methods(lse, nap):
        lse, nap = np.asarray(lse), np.asarray(nap)
        nape = 0.6 * np.log(np.maximum(lse, 1e-12)) + 0.4 * np.log(np.maximum(nap, 1e-12))
        return {"Energy": lse, "NAP": nap, "NAP-E": nape}
    for ood in ["ood-dtd", "ood-patterns"]:
        if "id-imagenet" not in ours or ood not in ours:
            continue
        line = []
        for name in ["Energy", "NAP", "NAP-E"]:
            got = [methods(*ours[s])[name] for s in ("id-imagenet", ood)]
            want = [methods(*ref[s])[name] for s in ("id-imagenet", ood)]
            g, w = fpr95_auroc(*got), fpr95_auroc(*want)
            line.append(f"{name} {g[0]:.1f}/{g[1]:.1f} (ref {w[0]:.1f}/{w[1]:.1f})")
        print(f"  {ood} FPR95/AUROC, ID positive: " + "; ".join(line))


def compare(dump):
    dump = Path(dump)
    ref = reference_scores()
    worst = {}
    ours, theirs = {}, {}
    for s in SETS:
        if not (dump / s).is_dir():
            continue
        names = sorted(p.name[: -len(".resized.rgb")] for p in (dump / s).glob("*.resized.rgb"))
        dec_diff, rs_diff, t_diff, rs_frac, t_frac = [], [], [], [], []
        batch_x, batch_f = [], []
        lse_err, nap_err, top_mis = [], [], 0

        def flush():
            nonlocal top_mis, batch_x, batch_f
            if not batch_x:
                return
            t, lse, nap, _ = scores(np.stack(batch_x))
            r = np.array([ref[(s, f)] for f in batch_f])
            ours.setdefault(s, ([], []))[0].extend(lse)
            ours[s][1].extend(nap)
            theirs.setdefault(s, ([], []))[0].extend(r[:, 1])
            theirs[s][1].extend(r[:, 2])
            lse_err.extend(rel(lse, r[:, 1]))
            nap_err.extend(rel(nap, r[:, 2]))
            top_mis += int((t != r[:, 0]).sum())
            batch_x, batch_f = [], []

        for f in names:
            rust = read_dump(dump / s / f"{f}.resized.rgb").astype(int)
            pil_img = load(s, f)
            pil = ref_resized(pil_img).astype(int)
            d = np.abs(rust - pil)
            t_diff.append(d.max())
            t_frac.append((d > 0).mean())
            dec_path = dump / s / f"{f}.decoded.rgb"
            if dec_path.exists():
                dec = read_dump(dec_path)
                dec_diff.append(np.abs(dec.astype(int) - np.asarray(pil_img).astype(int)).max())
                # The resize alone: PIL's crop+resize of the Rust-decoded pixels.
                pil_on_rust = ref_resized(Image.fromarray(dec)).astype(int)
                dr = np.abs(rust - pil_on_rust)
                rs_diff.append(dr.max())
                rs_frac.append((dr > 0).mean())
            batch_x.append(normalize(rust.astype(np.uint8)))
            batch_f.append(f)
            if len(batch_x) == 64:
                flush()
        flush()
        print(f"{s}: {len(names)} images")
        if dec_diff:
            print(f"  decoder  |rust - PIL| max over images {max(dec_diff)} (u8), "
                  f"images with any difference {sum(d > 0 for d in dec_diff)}/{len(dec_diff)}")
            print(f"  resize   |rust - PIL| on the same pixels: max {max(rs_diff)} (u8 levels), "
                  f"mean share of differing values {np.mean(rs_frac):.2e}")
        print(f"  pipeline |rust - PIL| max {max(t_diff)} u8 levels = {max(t_diff) / 127.5:.4f} "
              f"in the tensor; mean share of differing values {np.mean(t_frac):.2e}")
        print(f"  scores of rust tensors vs dev_scores.tsv: lse rel max {max(lse_err):.2e} "
              f"median {np.median(lse_err):.2e}; nap rel max {max(nap_err):.2e} "
              f"median {np.median(nap_err):.2e}; top1 mismatches {top_mis}")
        worst[s] = max(t_diff)
    print_metrics(ours, theirs)
    return worst


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "help"
    if cmd == "find-convention":
        find_convention(int(sys.argv[2]) if len(sys.argv) > 2 else 30)
    elif cmd == "expected":
        expected(sys.argv[2:])
    elif cmd == "compare":
        compare(sys.argv[2])
    else:
        print(__doc__)
