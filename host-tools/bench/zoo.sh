#!/usr/bin/env bash
# The development zoo, every model as a user would run it: `napctl split` with no options, then
# all 1150 shared images scored and compared with the zoo's reference scores (top-1 agreement,
# share of images with lse and S_NAP within 1%, the worst relative difference), then `napctl
# eval` of the float bundle on id-imagenet vs ood-dtd (FPR95 ID+ and AUROC per method).
#
#   host-tools/bench/zoo.sh [SHARED_DATA]      (default: ../shared/data)
#
# Needs target/release/napctl (cargo build --release -p napctl) and python3.
set -euo pipefail
data=${1:-../shared/data}
napctl=${NAPCTL:-target/release/napctl}
[[ -x $napctl ]] || { echo "$napctl is missing: cargo build --release -p napctl" >&2; exit 1; }
images=$data/images
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for onnx in "$data"/zoo/*.onnx; do
  name=$(basename "$onnx" .onnx)
  echo "== $name"
  "$napctl" split "$onnx" -o "$work/$name.nap"
  "$napctl" score "$work/$name.nap" "$images/id-imagenet" "$images/ood-dtd" "$images/ood-patterns" \
    -o "$work/$name.tsv" 2>/dev/null
  python3 - "$data/zoo/${name}_dev_scores.tsv" "$work/$name.tsv" <<'EOF'
import csv, sys
def table(path):
    return {(r["set"], r["file"]): r for r in csv.DictReader(open(path), delimiter="\t")}
ref, ours = table(sys.argv[1]), table(sys.argv[2])
assert ref.keys() == ours.keys(), "scored images differ from the reference's"
rel = lambda k, col: abs(float(ours[k][col]) - float(ref[k][col])) / abs(float(ref[k][col]))
n = len(ref)
top1 = sum(ours[k]["top1"] == ref[k]["top1"] for k in ref)
close = sum(rel(k, "lse") <= 0.01 and rel(k, "nap") <= 0.01 for k in ref)
worst = max(max(rel(k, "lse"), rel(k, "nap")) for k in ref)
print(f"{n} images: top-1 agreement {100 * top1 / n:.2f}%, lse and S_NAP within 1% on "
      f"{100 * close / n:.2f}%, worst relative difference {100 * worst:.2f}%")
EOF
  "$napctl" eval "$work/$name.nap" --id "$images/id-imagenet" --ood "$images/ood-dtd" --no-cache 2>/dev/null \
    | sed -n '/^ood-dtd/,/^$/p'
done
