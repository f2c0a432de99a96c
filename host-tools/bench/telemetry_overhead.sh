#!/usr/bin/env bash
# napd's frames/s with telemetry off and on (MQTT with every verdict published, and Prometheus
# metrics), alternating runs on one bundle and folder so both see the same machine load.
#
#   host-tools/bench/telemetry_overhead.sh BUNDLE.nap IMAGE_DIR [ROUNDS] [WORKERS]
#
# Needs target/release/napd (cargo build --release -p napd) and mosquitto (Debian's package);
# starts its own broker on a free port of 127.0.0.1. Prints each run and the medians.
set -euo pipefail
bundle=$1 images=$2 rounds=${3:-5} workers=${4:-2}
napd=${NAPD:-target/release/napd}
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[[ -x $napd ]] || { echo "$napd is missing: cargo build --release -p napd" >&2; exit 1; }
[[ -x $mosquitto ]] || { echo "mosquitto is missing (apt install mosquitto)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
trap 'kill $broker 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(free_port)
user=""; [[ $(id -u) == 0 ]] && user="user root"
printf '%s\nlistener %s 127.0.0.1\nallow_anonymous true\n' "$user" "$port" > "$work/mosquitto.conf"
"$mosquitto" -c "$work/mosquitto.conf" 2>/dev/null &
broker=$!
sleep 0.5

# The threshold only decides which verdicts are OOD; the median score of the bundle's ID set is
# not needed for a speed comparison, so a fixed one is given and the drift alarm is off.
run() {
  local log="$work/$1.jsonl"
  rm -f "$log"
  "$napd" --bundle "$bundle" --source "dir:$images" --workers "$workers" --threshold 8 \
      --drift-window 0 --log "jsonl:$log" "${@:2}" 2>/dev/null
  python3 - "$log" <<'EOF'
import json, sys
final = [json.loads(l) for l in open(sys.argv[1]) if '"final"' in l][-1]
mqtt = final.get("mqtt")
print(final["fps"], f"(mqtt: {mqtt['sent']} sent, {mqtt['acked']} acked)" if mqtt else "-")
EOF
}

off=() on=()
for r in $(seq "$rounds"); do
  a=$(run off)
  b=$(run on --mqtt "mqtt://127.0.0.1:$port" --mqtt-all-verdicts --device-id bench \
      --metrics "127.0.0.1:$(free_port)")
  off+=("${a%% *}") on+=("${b%% *}")
  echo "round $r: off ${a%% *} fps, on ${b%% *} fps ${b#* }"
done
python3 - "${off[*]}" "${on[*]}" <<'EOF'
import statistics, sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
m_off, m_on = statistics.median(off), statistics.median(on)
print(f"median: off {m_off:.2f} fps, on {m_on:.2f} fps, on/off {m_on / m_off:.4f}")
EOF
