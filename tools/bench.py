#!/usr/bin/env python3
"""Side-by-side kernel timings: libdalle (dalle-bench) vs numpy / PyTorch.

    python3 tools/bench.py [gemm|conv|dvae] [--threads N] [--bench PATH]

gemm (default): `dalle-bench gemm`, then numpy's matmul (OpenBLAS) on the same (m, n, k)
shapes in the same run; prints GFLOPS side by side. The rows "f32/bf16/q8_0 weights, ..." are
libdalle's Linear layer (y = x · Wᵀ, m rows, n outputs, k inputs) with W stored in that format
and widened while it is packed, against numpy's f32 matmul of the same shape.
conv: `dalle-bench conv` (the full dVAE encoder's and decoder's layer list at 256x256 with
random weights), then the same layers with torch.nn.functional (needs torch); prints the
encoder and decoder totals side by side.
dvae: `dalle-bench dvae` (the DVAE model, OpenAI configuration, random weights: encode and
decode of one 256x256 image), then OpenAI's `dall_e` Encoder/Decoder (needs torch and
dall-e) on the same sizes.

`--threads` sets OMP/OPENBLAS/MKL thread counts (before numpy/torch are imported) and is
passed to dalle-bench; 0 means every core. `--bench` uses an already built dalle-bench.

Both sides run with glibc's malloc told to keep freed memory (GLIBC_TUNABLES, set by
re-running this script): otherwise every large tensor faults in fresh zeroed pages, which
in a VM that hands freed pages back to the host can cost more than the arithmetic.
`--fresh-pages` measures without it.
"""
import argparse
import os
import subprocess
import sys
import time


def dalle_bench(bench, mode, threads):
    cmd = [bench] if bench else ["swift", "run", "-c", "release", "dalle-bench"]
    return subprocess.run(cmd + [mode, "--threads", str(threads)], check=True,
                          capture_output=True, text=True).stdout


def run_dalle(bench, threads):
    out = dalle_bench(bench, "gemm", threads)
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


# No mmap for big blocks, never trim the heap: freed tensors are reused in place.
RETAIN_MEMORY = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000"

GROUPS = [256, 512, 1024, 2048]  # the dVAE's channels per group (n_hid = 256)
BLOCKS = 2
GAIN = 1 / 64


def torch_dvae_layers(torch, threads):
    """(encoder, decoder) (wall, cpu) seconds of the dVAE layer list in PyTorch, 2nd pass."""
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)

    def conv(x, cout, k, relu=False, residual=None, scale=1.0):
        cin = x.shape[1]
        w = torch.randn(cout, cin, k, k, generator=gen) / (cin * k * k) ** 0.5
        b = torch.randn(cout, generator=gen) * 0.1
        y = F.conv2d(F.relu(x) if relu else x, w, b, padding=(k - 1) // 2)
        return y if residual is None else residual + scale * y

    def block(x, cout, kernels):
        ident = x if x.shape[1] == cout else conv(x, cout, 1)
        h = x
        for i, k in enumerate(kernels):
            last = i == len(kernels) - 1
            h = conv(h, cout if last else cout // 4, k, relu=True,
                     residual=ident if last else None, scale=GAIN)
        return h

    def encoder():
        x = conv(torch.randn(1, 3, 256, 256, generator=gen), GROUPS[0], 7)
        for g, ch in enumerate(GROUPS):
            if g:
                x = F.max_pool2d(x, 2)
            for _ in range(BLOCKS):
                x = block(x, ch, [3, 3, 3, 1])
        return conv(x, 8192, 1, relu=True)

    def decoder():
        x = torch.randn(1, 128, 32, 32, generator=gen)
        for g, ch in enumerate(reversed(GROUPS)):
            if g:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            for _ in range(BLOCKS):
                x = block(x, ch, [1, 3, 3, 3])
        return conv(x, 6, 1, relu=True)

    def timed(f):
        w0, c0 = time.perf_counter(), time.process_time()
        f()
        return time.perf_counter() - w0, time.process_time() - c0

    with torch.no_grad():
        for _ in range(2):
            enc, dec = timed(encoder), timed(decoder)
    return enc, dec


def conv_main(args, threads):
    import torch  # after the thread variables are set
    totals, enc, dec = {}, (float("inf"),) * 2, (float("inf"),) * 2
    for _ in range(args.repeat):  # alternate rounds, keep each side's fastest
        for line in dalle_bench(args.bench, "conv", threads).splitlines():
            parts = line.split("\t")
            if parts[0] in ("encoder total", "decoder total"):
                name, wall = parts[0].split()[0], (float(parts[2]), float(parts[3]))
                totals[name] = min(totals.get(name, wall), wall)
        e, d = torch_dvae_layers(torch, threads)
        enc, dec = min(enc, e), min(dec, d)
    print(f"threads: {threads}")
    print(f"{'dVAE layers @256x256':<22}{'libdalle s':>11}{'torch s':>9}{'ratio':>7}"
          f"{'libdalle cpu-s':>16}{'torch cpu-s':>13}")
    for name, theirs in (("encoder", enc), ("decoder", dec)):
        ours = totals[name]
        print(f"{name:<22}{ours[0]:>11.3f}{theirs[0]:>9.3f}{theirs[0] / ours[0]:>7.2f}"
              f"{ours[1]:>16.3f}{theirs[1]:>13.3f}")
    print(f"(best of {args.repeat} rounds of two passes; ratio = torch / libdalle wall time, "
          "> 1 means libdalle is faster)")


def torch_dvae(torch, threads, passes=3):
    """Best (wall, cpu) seconds of dall_e's Encoder and Decoder on one 256x256 image."""
    from dall_e.decoder import Decoder
    from dall_e.encoder import Encoder
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    enc, dec = Encoder().eval(), Decoder().eval()
    image = torch.rand(1, 3, 256, 256)
    best_enc = best_dec = (float("inf"),) * 2
    with torch.no_grad():
        for _ in range(passes):
            w0, c0 = time.perf_counter(), time.process_time()
            tokens = torch.argmax(enc(image), dim=1)
            best_enc = min(best_enc, (time.perf_counter() - w0, time.process_time() - c0))
            w0, c0 = time.perf_counter(), time.process_time()
            one_hot = torch.nn.functional.one_hot(tokens, num_classes=enc.vocab_size)
            torch.sigmoid(dec(one_hot.permute(0, 3, 1, 2).float())[:, :3])
            best_dec = min(best_dec, (time.perf_counter() - w0, time.process_time() - c0))
    return best_enc, best_dec


def dvae_main(args, threads):
    import torch  # after the thread variables are set
    ours, theirs = {}, {}
    for _ in range(args.repeat):  # alternate rounds, keep each side's fastest
        for line in dalle_bench(args.bench, "dvae", threads).splitlines():
            parts = line.split("\t")
            if parts[0] in ("encode", "decode"):
                t = (float(parts[2]), float(parts[3]))
                ours[parts[0]] = min(ours.get(parts[0], t), t)
        for name, t in zip(("encode", "decode"), torch_dvae(torch, threads)):
            theirs[name] = min(theirs.get(name, t), t)
    print(f"threads: {threads}")
    print(f"{'dVAE 256x256, batch 1':<22}{'libdalle s':>11}{'dall_e s':>9}{'ratio':>7}"
          f"{'libdalle cpu-s':>16}{'dall_e cpu-s':>14}")
    for name in ("encode", "decode"):
        a, b = ours[name], theirs[name]
        print(f"{name:<22}{a[0]:>11.3f}{b[0]:>9.3f}{b[0] / a[0]:>7.2f}{a[1]:>16.3f}{b[1]:>14.3f}")
    print(f"(best of {args.repeat} rounds of several passes; ratio = dall_e / libdalle wall time, "
          "> 1 means libdalle is faster)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="gemm", choices=["gemm", "conv", "dvae"])
    ap.add_argument("--threads", type=int, default=0, help="threads for both (0 = all cores)")
    ap.add_argument("--bench", help="path to a built dalle-bench (default: swift run)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds to alternate (best kept)")
    ap.add_argument("--fresh-pages", action="store_true",
                    help="leave glibc's malloc returning freed memory to the system")
    args = ap.parse_args()
    if not args.fresh_pages and "GLIBC_TUNABLES" not in os.environ:
        os.environ["GLIBC_TUNABLES"] = RETAIN_MEMORY
        os.execv(sys.executable, [sys.executable] + sys.argv)
    threads = args.threads or os.cpu_count()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if args.mode == "conv":
        return conv_main(args, threads)
    if args.mode == "dvae":
        return dvae_main(args, threads)
    import numpy as np  # after the thread variables are set

    # Alternate whole rounds and keep each side's best, so a burst of other load on the
    # machine does not land on one side only.
    best = {}
    for _ in range(args.repeat):
        for name, m, n, k, ours in run_dalle(args.bench, threads):
            theirs = numpy_gflops(np, m, n, k)
            old = best.get((name, m, n, k), (0.0, 0.0))
            best[(name, m, n, k)] = (max(old[0], ours), max(old[1], theirs))
    print(f"threads: {threads}")
    print(f"{'shape':<30}{'m':>6}{'n':>7}{'k':>7}{'libdalle':>10}{'numpy':>9}{'ratio':>7}")
    for (name, m, n, k), (ours, theirs) in best.items():
        print(f"{name:<30}{m:>6}{n:>7}{k:>7}{ours:>10.1f}{theirs:>9.1f}{ours / theirs:>7.2f}")
    print(f"(GFLOPS, best of {args.repeat} rounds of several runs; ratio = libdalle / numpy)")


if __name__ == "__main__":
    main()
