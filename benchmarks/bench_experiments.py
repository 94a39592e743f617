"""Each guided experiment (trainers/studies/experiments.py) with its shipped settings, one torch thread, each from
a cold start (no model shared between experiments), then its negative control: the run time, the verdict
over its seeds, every figure as mean ± sd with the per-seed values, and the control's verdict (it must
not hold). Prints; asserts nothing.

    python benchmarks/bench_experiments.py [NAME ...] [--json results.json] [key=value ...]

key=value overrides apply to every experiment that has that parameter (e.g. seeds=5).
"""
import argparse
import json
import sys
import time

from trainers.studies import experiments


def _figures(result) -> list[str]:
    width = max(len(experiments.short_label(result, k)) for k in result.figures)
    out = []
    for key, mean in result.figures.items():
        label = experiments.short_label(result, key)
        seeds = ", ".join(f"{v:.4g}" for v in result.per_seed[key])
        out.append(f"    {label:<{width}}  {experiments.format_value(mean, result.spread[key]):>22}   [{seeds}]")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("args", nargs="*", help="experiment names and key=value overrides")
    parser.add_argument("--json", help="write every result (claim and control) to this JSON file")
    parser.add_argument("--no-control", action="store_true", help="skip the negative controls")
    a = parser.parse_args(argv)
    names = [x for x in a.args if "=" not in x] or list(experiments.EXPERIMENTS)
    overrides = dict(x.split("=", 1) for x in a.args if "=" in x)
    results, total = {}, 0.0
    for name in names:
        e = experiments.get(name)
        params = {k: v for k, v in overrides.items() if k in e.defaults}
        row = {}
        for control in ((False,) if a.no_control else (False, True)):
            experiments.clear_cache()
            start = time.perf_counter()
            result = e.run(params, control=control)
            seconds = time.perf_counter() - start
            total += seconds
            row["control" if control else "claim"] = result.to_dict()
            if not control:
                print(f"{name}: {'holds' if result.holds else 'DOES NOT HOLD'} over seeds "
                      f"{', '.join(map(str, result.seeds))} ({seconds:.1f} s)", flush=True)
                print(f"  measured: {result.measured}")
                print("\n".join(_figures(result)))
            else:
                verdict = "does not hold, as it must" if not result.holds else "HOLDS: the criterion cannot fail"
                print(f"  control ({e.control}): {verdict} ({seconds:.1f} s)")
                print(f"    {result.measured}", flush=True)
        results[name] = row
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1)
    print(f"total {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
