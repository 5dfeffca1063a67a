#!/usr/bin/env python3
"""How far a CLIP tells a left/right relation from its mirror image: for N seeded captions "a A to the
left of / to the right of a B" (training pairs), renders the caption, mirrors the picture (the same objects
and sizes, only the sides swapped), and sums the caption's score difference (own picture minus mirror) and
the opposite caption's (mirror minus own). Prints the margin's mean and standard deviation over the captions
and how often it is positive: a CLIP blind to relations has margin 0. Needs only the Python binding (numpy).

    PYTHONPATH=bindings/python python3 tools/experiments/clip_mirror_margin.py MODEL [MODEL ...] [--count 150]
"""
import argparse
import random

import numpy as np

import dalle

COLOURS = "red green blue yellow purple orange white black".split()
SHAPES = ["circle", "square", "triangle"]
HELD_OUT = {("purple", "triangle"), ("orange", "circle"), ("white", "square")}
SIDES = ["to the left of", "to the right of"]


def captions(count, seed):
    """[(caption, opposite caption)] of left/right relations between two different training pairs."""
    rng = random.Random(seed)

    def pair(avoid=None):
        while True:
            p = (rng.choice(COLOURS), rng.choice(SHAPES))
            if p not in HELD_OUT and p != avoid:
                return p

    out = []
    for _ in range(count):
        a = pair()
        b = pair(a)
        side = rng.choice(SIDES)
        other = SIDES[1 - SIDES.index(side)]
        out.append((f"a {a[0]} {a[1]} {side} a {b[0]} {b[1]}", f"a {a[0]} {a[1]} {other} a {b[0]} {b[1]}"))
    return out


def mirror_scores(ctx, caption, opposite, seed):
    """Scores of (the caption's rendering, its mirror) against the caption and against its opposite."""
    image = dalle.shapes_render(caption, seed=seed)
    pictures = [image, np.ascontiguousarray(image[:, ::-1])]
    return ctx.rerank(caption, pictures)[0], ctx.rerank(opposite, pictures)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    items = captions(args.count, args.seed)
    for path in args.models:
        margins = []
        with dalle.Model(path) as model, dalle.Context(model, threads=1, seed=0) as ctx:
            for k, (caption, opposite) in enumerate(items):
                own, flipped = mirror_scores(ctx, caption, opposite, k)
                margins.append((own[0] - own[1]) + (flipped[1] - flipped[0]))
        margins = np.array(margins)
        print(f"{path}: mirror margin {margins.mean():.3f} (sd {margins.std():.3f}), "
              f"positive for {100 * (margins > 0).mean():.0f} % of {len(margins)} captions")


if __name__ == "__main__":
    main()
