#!/bin/bash
# The digits judge per sampler and NFE on a trained ddpm_digits run: README's "digits per NFE" table.
# Usage: benchmarks/bench_digits_nfe.sh RUN_DIR [OUT.jsonl]   (RUN_DIR from
#   python -m trainers.image train --config ddpm_digits --out RUN_DIR)
# 500 samples per cell, seeds 1, 2, 3; the summary (mean ± sd over the seeds) is printed at the end.
set -euo pipefail
R=${1:?run directory}
out=${2:-digits_nfe.jsonl}
: > "$out"
for seed in 1 2 3; do
  for spec in "ddpm:" "ddim:10" "ddim:20" "dpmpp-2m:10" "dpmpp-2m:20" "unipc:10" "unipc:20" "edm:10" "edm:20"; do
    s=${spec%%:*}; nfe=${spec##*:}
    args="--sampler $s"; [ -n "$nfe" ] && args="$args --nfe $nfe"
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
        cells[(row["sampler"], rep["nfe"])].append((rep["samples"]["mean_confidence"], rep["samples"]["frac_confident"]))
for (s, nfe), v in cells.items():
    conf, frac = zip(*v)
    print(f"{s:10s} NFE {nfe:5d}  confidence {st.mean(conf):.3f} ± {st.stdev(conf):.3f}  "
          f"share > 0.9 {st.mean(frac):.3f} ± {st.stdev(frac):.3f}  ({len(v)} seeds)")
PY
