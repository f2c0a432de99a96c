#!/usr/bin/env bash
# napd on a 640x480, 30 fps RTSP camera: a real gst-rtsp-server streams a 60 s MJPEG video made
# from real photos (each resized to 640x480, cycled) and napd scores it with 2 workers. Prints
# frames, verdicts, drops, frames/s while streaming, p50 / p99 latency (from the frame leaving
# the RTSP depayloader and decoder to its verdict) and napd's peak RSS.
#
#   host-tools/bench/rtsp_camera.sh BUNDLE.nap IMAGE_DIR [SECONDS] [WORKERS]
#
# Needs target/release/napd built with GStreamer (cargo build --release -p napd --features
# gstreamer), the test RTSP server (cargo build -p nap-tests --features gstreamer --bin
# rtsp-serve), and gst-launch-1.0 with the base and good plugins.
set -euo pipefail
bundle=$1 images=$2 seconds=${3:-60} workers=${4:-2}
napd=${NAPD:-target/release/napd}
server=${RTSP_SERVE:-target/debug/rtsp-serve}
[[ -x $napd ]] || { echo "$napd is missing: cargo build --release -p napd --features gstreamer" >&2; exit 1; }
[[ -x $server ]] || { echo "$server is missing: cargo build -p nap-tests --features gstreamer --bin rtsp-serve" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
trap 'kill $rtsp 2>/dev/null || true; rm -rf "$work"' EXIT

# Every photo once as a 640x480 4:2:0 JPEG, then a sequence cycling through them at 30 fps.
mkdir -p "$work/photos" "$work/seq"
n=0
for f in "$images"/*.jpg "$images"/*.JPEG "$images"/*.png; do
  [[ -f $f ]] || continue
  gst-launch-1.0 -q filesrc location="$f" ! decodebin ! videoconvert ! videoscale \
    ! video/x-raw,width=640,height=480,format=I420 ! jpegenc quality=90 \
    ! filesink location="$work/photos/$(printf %04d $n).jpg"
  n=$((n + 1))
done
frames=$((seconds * 30))
for ((i = 0; i < frames; i++)); do
  ln -s "$work/photos/$(printf %04d $((i % n))).jpg" "$work/seq/$(printf %05d $i).jpg"
done
gst-launch-1.0 -q multifilesrc location="$work/seq/%05d.jpg" index=0 stop-index=$((frames - 1)) \
  caps=image/jpeg,framerate=30/1 ! avimux ! filesink location="$work/camera.avi"
echo "camera: $frames frames (640x480, 30 fps) from $n photos"

port=$(free_port)
"$server" "$port" "$work/camera.avi" > "$work/server.out" &
rtsp=$!
until grep -q ready "$work/server.out"; do sleep 0.1; done

log="$work/napd.jsonl"
"$napd" --bundle "$bundle" --threshold 0 --drift-window 0 --workers "$workers" \
  --source "rtsp://127.0.0.1:$port/cam" --stats-ms 5000 --log "jsonl:$log" 2> "$work/napd.err" &
pid=$!
# The stream's end is a loss for a camera source: stop napd there.
until grep -q '"event":"lost"' "$log" 2>/dev/null; do
  kill -0 $pid 2>/dev/null || { cat "$work/napd.err" >&2; exit 1; }
  sleep 0.2
done
kill -INT $pid
wait $pid || true

python3 - "$log" <<'EOF'
import json, sys
from datetime import datetime
log = [json.loads(l) for l in open(sys.argv[1])]
verdicts = [v for v in log if v["type"] == "verdict"]
end = next(v for v in reversed(log) if v["type"] == "final")
t = [datetime.fromisoformat(v["time"].replace("Z", "+00:00")).timestamp() for v in verdicts]
fps = (len(t) - 1) / (t[-1] - t[0])
print(f"frames {end['frames']}  verdicts {end['verdicts']}  dropped {end['dropped']}  "
      f"rejected {end['bad']}  fps {fps:.2f}  p50 {end['p50_us'] / 1000:.1f} ms  "
      f"p99 {end['p99_us'] / 1000:.1f} ms  peak RSS {end['peak_rss_kib'] / 1024:.1f} MiB")
EOF
