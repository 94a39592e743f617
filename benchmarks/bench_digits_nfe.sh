#!/bin/bash
# The digits judge per sampler and NFE on a trained ddpm_digits run: README's "digits per NFE" table.
# Usage: benchmarks/bench_digits_nfe.sh RUN_DIR [OUT.jsonl] [SAMPLER:NFE ...]   (RUN_DIR from
#   python -m trainers.image train --config ddpm_digits --out RUN_DIR; or fm_digits, with e.g.
#   flow:1:--solver=euler ... ddim:10 — "S:" alone is S's default NFE, a third field adds options)
# 500 samples per cell, seeds 1, 2, 3; the summary (mean ± sd over the seeds of confidence, share
# above 0.9 and class entropy) is printed at the end.
set -euo pipefail
R=${1:?run directory}
out=${2:-digits_nfe.jsonl}
specs=("${@:3}")
[ ${#specs[@]} -gt 0 ] || specs=("ddpm:" "ddim:10" "ddim:20" "dpmpp-2m:10" "dpmpp-2m:20" "unipc:10" "unipc:20" "edm:10" "edm:20")
: > "$out"
for seed in 1 2 3; do
  for spec in "${specs[@]}"; do
    IFS=: read -r s nfe extra <<< "$spec"
    args="--sampler $s"; [ -n "$nfe" ] && args="$args --nfe $nfe"; [ -n "$extra" ] && args="$args $extra"
    r=$(python -m trainers.image evaluate --run "$R" --n 500 --bpd-n 0 --no-record --seed $seed --json $args)
    echo "{\"sampler\": \"$s\", \"seed\": $seed, \"report\": $r}" >> "$out"
  done
done
python - "$out" <<'PY'
import json, statistics as st, sys
from collections import defaultdict
text, dec, i, cells = open(sys.argv[1]).read(), json.JSONDecoder(), 0, defaultdict(list)
while i < len(text):
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text):
        row, i = dec.raw_decode(text, i)
        rep = row["report"]
        s = rep["samples"]
        cells[(row["sampler"], rep["nfe"])].append((s["mean_confidence"], s["frac_confident"], s["class_entropy"]))
for (s, nfe), v in cells.items():
    conf, frac, ent = zip(*v)
    print(f"{s:10s} NFE {nfe:5d}  confidence {st.mean(conf):.3f} ± {st.stdev(conf):.3f}  "
          f"share > 0.9 {st.mean(frac):.3f} ± {st.stdev(frac):.3f}  "
          f"class entropy {st.mean(ent):.3f} ± {st.stdev(ent):.3f}  ({len(v)} seeds)")
PY
