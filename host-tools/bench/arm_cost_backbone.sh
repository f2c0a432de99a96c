#!/usr/bin/env bash
# Backbone instructions per frame of an aarch64 napctl under qemu-aarch64, counted by the
# arm-cost plugin (../shared/tools/arm-cost; build it with its build.sh first).
#
# usage: arm_cost_backbone.sh CPU NAPCTL BUNDLE [napctl bench options...]
#   CPU     qemu's core, e.g. cortex-a72 (Pi 4 class) or cortex-a76 (Pi 5 class)
#   NAPCTL  an aarch64 build of napctl
# Environment: PLUGIN (default ../shared/tools/arm-cost/insncount.so).
#
# `napctl bench --raw-frames` reads the clock between a frame's stages; qemu-user gives aarch64
# guests no vDSO, so each read is a clock_gettime system call (113), which the plugin marks. The
# backbone is the one stage above 20 M instructions; the median over 3 frames is printed, in
# millions.
set -euo pipefail
if (($# < 3)); then
    sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
cpu=$1 napctl=$2 bundle=$3
shift 3
plugin=${PLUGIN:-../shared/tools/arm-cost/insncount.so}
[[ -f $plugin ]] || { echo "no arm-cost plugin at $plugin (run its build.sh, or set PLUGIN)" >&2; exit 1; }
marks=$(mktemp)
trap 'rm -f "$marks"' EXIT
QEMU_CPU=$cpu qemu-aarch64 -plugin "$plugin,out=$marks,mark=113" \
    "$napctl" bench "$bundle" --threads 1 --rounds 1 --frames 3 --raw-frames --json "$@" >/dev/null
awk '$1 == "mark" { if (seen) { d = $3 - last; if (d > 20e6) print d } last = $3; seen = 1 }' "$marks" |
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "no backbone stage found in the marks" > "/dev/stderr"; exit 1 }
        printf "%.1f\n", v[int((NR + 1) / 2)] / 1e6 }'
