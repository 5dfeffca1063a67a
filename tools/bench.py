#!/usr/bin/env python3
"""Side-by-side GEMM throughput: libdalle (dalle-bench gemm) vs numpy/OpenBLAS.

Runs `swift run -c release dalle-bench gemm --threads N`, then numpy's matmul on the
same (m, n, k) shapes in the same process run, and prints a table:

    python3 tools/bench.py [--threads N] [--bench PATH]

`--threads` sets OMP/OPENBLAS/MKL thread counts for numpy (before it is imported) and is
passed to dalle-bench; 0 means every core. `--bench` uses an already built dalle-bench.
"""
import argparse
import os
import subprocess
import sys
import time


def run_dalle(bench, threads):
    cmd = [bench] if bench else ["swift", "run", "-c", "release", "dalle-bench"]
    out = subprocess.run(cmd + ["gemm", "--threads", str(threads)], check=True,
                         capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 6 and parts[1].isdigit():
            rows.append((parts[0], int(parts[1]), int(parts[2]), int(parts[3]), float(parts[5])))
    if not rows:
        sys.exit("dalle-bench printed no results:\n" + out)
    return rows


def numpy_gflops(np, m, n, k):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    flops = 2.0 * m * n * k
    reps = max(2, int(4e9 / flops))
    best = float("inf")
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="threads for both (0 = all cores)")
    ap.add_argument("--bench", help="path to a built dalle-bench (default: swift run)")
    args = ap.parse_args()
    threads = args.threads or os.cpu_count()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import numpy as np  # after the thread variables are set

    rows = run_dalle(args.bench, threads)
    print(f"threads: {threads}")
    print(f"{'shape':<26}{'m':>6}{'n':>7}{'k':>7}{'libdalle':>10}{'numpy':>9}{'ratio':>7}")
    for name, m, n, k, ours in rows:
        theirs = numpy_gflops(np, m, n, k)
        print(f"{name:<26}{m:>6}{n:>7}{k:>7}{ours:>10.1f}{theirs:>9.1f}{ours / theirs:>7.2f}")
    print("(GFLOPS, best of several runs; ratio = libdalle / numpy)")


if __name__ == "__main__":
    main()
