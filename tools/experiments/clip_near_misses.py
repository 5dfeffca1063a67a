#!/usr/bin/env python3
"""How well a model's CLIP tells a Shapes World caption from its near misses: for N random captions of
each kind, renders the caption and each near miss (the other number or one object, the opposite relation,
another colour, another shape) and counts how often CLIP scores the caption's own rendering above the near
miss's. 50 % is chance. "mirrored" is the strictest relation test: for a left/right caption, its rendering
against the same picture mirrored (the same objects and sizes, only the sides swapped), scored by both the
caption and its opposite (a win when both prefer their own picture). Needs only the Python binding
(numpy); used to compare CLIP training runs.

    PYTHONPATH=bindings/python python3 tools/experiments/clip_near_misses.py MODEL [MODEL ...] [--count 60]
"""
import argparse
import random

import dalle
from clip_mirror_margin import mirror_scores

COLOURS = "red green blue yellow purple orange white black".split()
SHAPES = ["circle", "square", "triangle"]
OPPOSITE = {"to the left of": "to the right of", "to the right of": "to the left of", "above": "below", "below": "above"}
HELD_OUT = {("purple", "triangle"), ("orange", "square"), ("white", "circle")}


def pair(rng, avoid=None):
    while True:
        p = (rng.choice(COLOURS), rng.choice(SHAPES))
        if p not in HELD_OUT and p != avoid:
            return p


def near_miss_sets(count, seed):
    """{kind: [(caption, [near misses])]}, training pairs only."""
    rng, sides = random.Random(seed), random.Random(seed + 1)  # (the other kinds' captions as before "mirrored")
    sets = {"counting": [], "relation": [], "colour": [], "shape": [], "mirrored": []}
    for _ in range(count):
        c, s = pair(rng)
        n, m = rng.choice([("two", "three"), ("three", "two")])
        sets["counting"].append((f"{n} {c} {s}s", [f"{m} {c} {s}s", f"a {c} {s}"]))
        c2, s2 = pair(rng, avoid=(c, s))
        r = rng.choice(list(OPPOSITE))
        sets["relation"].append((f"a {c} {s} {r} a {c2} {s2}", [f"a {c} {s} {OPPOSITE[r]} a {c2} {s2}"]))
        other = [x for x in COLOURS if x != c and (x, s) not in HELD_OUT]
        sets["colour"].append((f"a {c} {s}", [f"a {rng.choice(other)} {s}"]))
        other = [x for x in SHAPES if x != s and (c, x) not in HELD_OUT]
        sets["shape"].append((f"a {c} {s}", [f"a {c} {rng.choice(other)}"]))
        side = sides.choice(["to the left of", "to the right of"])
        sets["mirrored"].append((f"a {c} {s} {side} a {c2} {s2}", [f"a {c} {s} {OPPOSITE[side]} a {c2} {s2}"]))
    return sets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--count", type=int, default=60, help="captions per kind (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sets = near_miss_sets(args.count, args.seed)
    for path in args.models:
        results = []
        with dalle.Model(path) as model, dalle.Context(model, threads=1, seed=0) as ctx:
            for kind, items in sets.items():
                wins = total = 0
                for k, (caption, misses) in enumerate(items):
                    if kind == "mirrored":
                        own, flipped = mirror_scores(ctx, caption, misses[0], k)
                        wins += int(own[0] > own[1] and flipped[1] > flipped[0])
                        total += 1
                        continue
                    images = [dalle.shapes_render(c, seed=k) for c in [caption] + misses]
                    scores, _ = ctx.rerank(caption, images)
                    wins += sum(int(scores[0] > s) for s in scores[1:])
                    total += len(misses)
                results.append(f"{kind} {100 * wins / total:.0f} %")
        print(f"{path}: own rendering scored above the near miss's: " + ", ".join(results))


if __name__ == "__main__":
    main()
