#!/usr/bin/env bash
# The README's "first ten minutes", replayed as a new user would on a fresh clone:
# install, the demo, its report, TensorBoard, a folder of one's own photos, predict.
#   bash tests/first_ten_minutes.sh        (make test-all runs it in a fresh clone: tests/test_first_ten_minutes.py)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== 1. install"
make install
. .venv/bin/activate
kerasxfer --help

echo "== 2. the demo"
make demo
grep -q "wins\*\*\|No clear winner" runs/demo/report/report.md

echo "== 3. the report and TensorBoard"
head -5 runs/demo/report/report.md
port=$(python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
tensorboard --logdir runs --host 127.0.0.1 --port "$port" >/dev/null 2>&1 &
tb=$!
trap 'kill $tb 2>/dev/null || true' EXIT
for i in $(seq 60); do
  if python -c "import json, sys, urllib.request; runs = json.load(urllib.request.urlopen('http://127.0.0.1:$port/data/runs')); sys.exit(0 if any('demo/transfer' in r for r in runs) else 1)" 2>/dev/null; then
    echo "TensorBoard serves the demo's runs on port $port"; break
  fi
  [ "$i" = 60 ] && { echo "TensorBoard did not come up" >&2; exit 1; }
  sleep 1
done
kill $tb

echo "== 4. a folder of your own photos (here: crops of scikit-image's photos, two classes)"
python - <<'PY'
import os
import numpy as np
import skimage.data
from PIL import Image
for name, img in (("cat", skimage.data.chelsea()), ("coffee", skimage.data.coffee())):
    os.makedirs(f"runs/photos/{name}", exist_ok=True)
    h, w = img.shape[:2]
    for i in range(8):
        y, x = (i * 17) % (h // 3), (i * 29) % (w // 3)
        Image.fromarray(img[y:y + 2 * h // 3, x:x + 2 * w // 3]).save(f"runs/photos/{name}/{i}.jpg")
PY
kerasxfer scratch --dataset=runs/photos --image_size=32 --epochs=2 --out_dir=runs/photos-scratch

echo "== 5. predict"
make predict RUN=runs/demo/transfer IMAGES=runs/photos/cat/0.jpg
kerasxfer predict --run=runs/photos-scratch --images=runs/photos --output=runs/photos-predictions.csv
test -s runs/photos-predictions.csv
echo "first ten minutes: all steps worked"
