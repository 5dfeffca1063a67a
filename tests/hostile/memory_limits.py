#!/usr/bin/env python3
"""The hostile-input suite's memory limits: tests/hostile/driver.c on each seed model under a
ladder of address-space limits (RLIMIT_AS, what `ulimit -v` sets), from the least a process
that calls the library at all needs, in steps, up to the first limit under which every call
succeeds. Each run must end with a status (the driver exits 0: DALLE_OK, or
DALLE_OUT_OF_MEMORY and a message); a signal — the allocator stopping the process — fails it.

    python3 tests/hostile/memory_limits.py --driver DRIVER --lib-dir DIR [--step MIB] [--threads 1,2]

A release build only: AddressSanitizer reserves terabytes of address space for its shadow.
Needs the Python standard library only.
"""
import argparse
import concurrent.futures
import os
import resource
import subprocess
import sys

from run import SEEDS

MIB = 1 << 20


def run(driver, env, model, limit):
    """The driver's exit status and output on `model` under an address-space limit of `limit` bytes."""
    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    proc = subprocess.run([driver, model], capture_output=True, text=True, errors="replace", env=env,
                          preexec_fn=limited, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def lowest_start(driver, env):
    """The least limit (in MiB) under which the driver runs and reports a missing file: below it the
    process cannot start (the dynamic loader and the runtimes' own start-up), a test of nothing."""
    low, high = 1, 1024
    missing = os.path.join(os.path.dirname(driver), "no-such-model.safetensors")
    while low < high:
        middle = (low + high) // 2
        if run(driver, env, missing, middle * MIB)[0] == 0:
            high = middle
        else:
            low = middle + 1
    return low


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--driver", required=True, help="the compiled tests/hostile/driver.c")
    parser.add_argument("--lib-dir", required=True, help="where libdalle.so.0 is")
    parser.add_argument("--step", type=float, default=1.5, help="MiB between limits")
    parser.add_argument("--threads", default="1,2", help="the driver's context thread counts, one ladder each")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    failures, runs = [], 0
    for threads in args.threads.split(","):
        env = dict(os.environ, LD_LIBRARY_PATH=args.lib_dir, DALLE_DRIVER_THREADS=threads)
        start = lowest_start(args.driver, env)
        print(f"{threads} thread(s); a process that calls libdalle starts under {start} MiB of address space")
        runs += ladders(args, env, start, failures)
    for failure in failures:
        print("FAILED:", failure, file=sys.stderr)
    print(f"{runs} runs, {len(failures)} failures")
    sys.exit(1 if failures else 0)


def ladders(args, env, start, failures):
    """Runs each seed's ladder of limits from `start` MiB; appends failures; returns the run count."""
    runs = 0
    for name, model in SEEDS.items():
        limit, completed, refused, first = start * MIB, False, 0, None
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            while not completed:
                limits = [int(limit + i * args.step * MIB) for i in range(args.jobs)]
                for value, (status, output) in zip(limits, pool.map(lambda v: run(args.driver, env, model, v), limits)):
                    runs += 1
                    if status != 0:
                        failures.append(f"{name} under {value / MIB:.1f} MiB: exit {status}\n{output[-2000:]}")
                    elif "out of memory" in output:
                        refused += 1
                    else:
                        completed, first = True, first or value
                limit = limits[-1] + int(args.step * MIB)
                if limit > 4096 * MIB:
                    failures.append(f"{name}: still refused under 4 GiB")
                    break
        if first:
            print(f"  {name}: {refused} limits refused with DALLE_OUT_OF_MEMORY, every call succeeded under {first / MIB:.0f} MiB")
    return runs


if __name__ == "__main__":
    main()
