#!/usr/bin/env python3
"""Checks that the int8 path gives the same verdicts on aarch64 as on x86_64.

    int8_verdicts.py threshold X86.tsv            prints the median x86 score (the threshold)
    int8_verdicts.py compare X86.tsv NAPD.jsonl T checks napd's verdicts against x86's

X86.tsv is `napctl score` output on x86_64; NAPD.jsonl is napd's log of the same frames on
aarch64 with --threshold T. Integer matrix products are exact on both; the float parts
(depthwise convolutions, the few pointwise convolutions kept float, residual adds, head) differ
in summation order and fused multiply-adds, which can move an activation across a u8 code
boundary, and one code moved changes the layers after it. x86_64 also runs those float pointwise
convolutions on nap-core's kernel where aarch64 keeps tract's: on x86_64 alone, switching
between the two moved int8 scores by up to 0.8% on 24 shared photos (float bundle: 2e-7). So:
every frame has a verdict, scores agree within SCORE_TOLERANCE (relative), and verdicts are equal
except for a frame whose x86 score is within that tolerance of the threshold.
"""
import csv
import json
import statistics
import sys

SCORE_TOLERANCE = 0.02


def x86_scores(path):
    with open(path, newline="") as f:
        return {row["file"]: float(row["score"]) for row in csv.DictReader(f, delimiter="\t")}


def main():
    mode = sys.argv[1]
    x86 = x86_scores(sys.argv[2])
    if mode == "threshold":
        print(f"{statistics.median(x86.values()):.6f}")
        return
    threshold = float(sys.argv[4])
    verdicts = {}
    with open(sys.argv[3]) as f:
        for line in f:
            entry = json.loads(line)
            if entry.get("type") == "verdict":
                verdicts[entry["frame"]] = entry
    problems = []
    missing = sorted(set(x86) - set(verdicts))
    if missing:
        problems.append(f"no aarch64 verdict for {missing}")
    worst = 0.0
    flagged = 0
    for frame, score in sorted(x86.items()):
        v = verdicts.get(frame)
        if v is None:
            continue
        tol = SCORE_TOLERANCE * max(abs(score), 1.0)
        worst = max(worst, abs(v["score"] - score) / max(abs(score), 1.0))
        flagged += v["ood"]
        if abs(v["score"] - score) > tol:
            problems.append(f"{frame}: score {v['score']} on aarch64, {score} on x86")
        if v["ood"] != (score < threshold) and abs(score - threshold) > tol:
            problems.append(f"{frame}: verdict ood={v['ood']} on aarch64, score {score} on x86")
    print(f"{len(verdicts)} aarch64 verdicts, {flagged} OOD at threshold {threshold}; "
          f"largest relative score difference {worst:.2e} (tolerance {SCORE_TOLERANCE})")
    if problems:
        sys.exit("\n".join(problems))


if __name__ == "__main__":
    main()
