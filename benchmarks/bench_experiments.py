"""Run time of each guided experiment (trainers/experiments.py) with its shipped settings, one torch
thread, each from a cold start (no model shared between experiments). Prints; asserts nothing.

    python benchmarks/bench_experiments.py [NAME ...]
"""
import sys
import time

from trainers import experiments


def main(names):
    names = names or list(experiments.EXPERIMENTS)
    total = 0.0
    print(f"{'experiment':<26} {'seconds':>8}  verdict  measured")
    for name in names:
        experiments.clear_cache()
        start = time.perf_counter()
        result = experiments.run(name)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{name:<26} {seconds:>8.1f}  {'holds' if result.holds else 'FAILS':<7}  {result.measured}", flush=True)
    print(f"{'total':<26} {total:>8.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
