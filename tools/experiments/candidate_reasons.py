#!/usr/bin/env python3
"""Why a model's candidates fail: reads a judged candidate set (`dalle candidates --out SET`), judges
every failing candidate again for the judge's reason, and prints per caption group (one object, counting,
relation) the captions, the share with a passing candidate, the pass rate and the commonest reasons,
with colours, shapes and numbers replaced by C, S and N so that alike failures count together.
Needs only the Python binding (numpy).

    PYTHONPATH=bindings/python python3 tools/experiments/candidate_reasons.py SET.safetensors [--top 8]
"""
import argparse
import collections
import json
import re

import numpy as np

import dalle

COLOURS = r"\b(red|green|blue|yellow|purple|orange|white|black)\b"
SHAPES = r"\b(circle|square|triangle)s?\b"


def read_candidate_set(path):
    """(captions, {"candidates": [N, K, S, S, 3], "passed": [N, K], "references": [N, S, S, 3]}) of a
    candidate set file, as uint8 arrays."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    if metadata.get("format") != "libdalle.shapes-candidates":
        raise SystemExit(f"{path} is not a libdalle candidate set")

    def tensor(name):
        start, end = header[name]["data_offsets"]
        return np.frombuffer(data[8 + n + start:8 + n + end], dtype=np.uint8).reshape(header[name]["shape"])

    return metadata["captions"].split("\n"), {name: tensor(name) for name in ("candidates", "passed", "references")}


def group(caption):
    if any(r in caption for r in (" left of ", " right of ", " above ", " below ")):
        return "relation"
    return "counting" if caption.startswith(("two ", "three ")) else "one object"


def pattern(reason):
    """The reason with colours, shapes and numbers replaced, cut at its first 60 characters."""
    return re.sub(r"\d+(\.\d+)?", "N", re.sub(SHAPES, "S", re.sub(COLOURS, "C", reason)))[:60]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("candidate_set")
    parser.add_argument("--top", type=int, default=8, help="reasons printed per group")
    args = parser.parse_args()
    captions, tensors = read_candidate_set(args.candidate_set)
    stats = {}
    for caption, images, verdicts in zip(captions, tensors["candidates"], tensors["passed"]):
        s = stats.setdefault(group(caption), {"captions": 0, "any": 0, "passed": 0, "failed": 0,
                                              "reasons": collections.Counter()})
        s["captions"] += 1
        s["any"] += int(verdicts.any())
        s["passed"] += int(verdicts.sum())
        for image, ok in zip(images, verdicts):
            if not ok:
                s["failed"] += 1
                s["reasons"][pattern(dalle.shapes_judge(image, caption)[1])] += 1
    for name in ("one object", "counting", "relation"):
        if name not in stats:
            continue
        s = stats[name]
        total = s["passed"] + s["failed"]
        print(f"{name}: {s['captions']} captions, {100 * s['any'] / s['captions']:.1f} % with a passing candidate, "
              f"{100 * s['passed'] / total:.1f} % of {total} candidates pass; failing candidates by reason:")
        for reason, count in s["reasons"].most_common(args.top):
            print(f"  {count:6d}  {100 * count / s['failed']:5.1f} %  {reason}")


if __name__ == "__main__":
    main()
