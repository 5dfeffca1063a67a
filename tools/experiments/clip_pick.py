#!/usr/bin/env python3
"""How well CLIP models pick among the same generated candidates: generates N candidates for a seeded
set of Shapes World captions once with one model (cached in an .npz with the judge's verdict on each),
then lets each CLIP model given pick the best for every caption and prints, per group, the share of
captions whose pick passes the judge beside the average and any-of-N rates. Unlike `dalle eval`, which
samples again for every model, the candidates stay fixed, so CLIP runs can be compared in seconds.
Needs only the Python binding (numpy).

    PYTHONPATH=bindings/python python3 tools/experiments/clip_pick.py --generator MODEL --cache cands.npz CLIP_MODEL [...]
"""
import argparse
import os
import random

import numpy as np

import dalle

COLOURS = "red green blue yellow purple orange white black".split()
SHAPES = ["circle", "square", "triangle"]
RELATIONS = ["to the left of", "to the right of", "above", "below"]
HELD_OUT = [("purple", "triangle"), ("orange", "circle"), ("white", "square")]


def obj(rng, pair=None, avoid=None):
    while pair is None:
        p = (rng.choice(COLOURS), rng.choice(SHAPES))
        if p not in HELD_OUT and p != avoid:
            pair = p
    size = rng.choice(["", "", "small ", "large "])
    return pair, f"{size}{pair[0]} {pair[1]}"


def captions(per_group, seed):
    """[(group, caption)]: one object, counting, relation (training pairs), then held-out pairs in any template."""
    rng = random.Random(seed)
    out = []
    for _ in range(per_group):
        out.append(("one object", "a " + obj(rng)[1]))
    for _ in range(per_group):
        out.append(("counting", f"{rng.choice(['two', 'three'])} {obj(rng)[1]}s"))
    for _ in range(per_group):
        a, ta = obj(rng)
        out.append(("relation", f"a {ta} {rng.choice(RELATIONS)} a {obj(rng, avoid=a)[1]}"))
    for k in range(per_group):
        held, th = obj(rng, pair=HELD_OUT[k % 3])
        template = k // 3 % 3
        if template == 0:
            out.append(("held-out pairs", "a " + th))
        elif template == 1:
            out.append(("held-out pairs", f"{rng.choice(['two', 'three'])} {th}s"))
        else:
            other = obj(rng, avoid=held)[1]
            a, b = (th, other) if rng.random() < 0.5 else (other, th)
            out.append(("held-out pairs", f"a {a} {rng.choice(RELATIONS)} a {b}"))
    return out


def make_candidates(generator, per_group, count, seed, threads, sampling):
    items = captions(per_group, seed)
    images, passed, likelihoods = [], [], []
    with dalle.Model(generator) as model, dalle.Context(model, threads=threads, seed=seed) as ctx:
        for k, (_, caption) in enumerate(items):
            result = ctx.generate(caption, count=count, seed=seed * 100003 + k, **sampling)
            images.append(result.images)
            likelihoods.append(result.log_likelihoods)
            passed.append([dalle.shapes_judge(image, caption)[0] for image in result.images])
    return ([g for g, _ in items], [c for _, c in items], np.stack(images), np.array(passed), np.array(likelihoods))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip_models", nargs="*")
    parser.add_argument("--generator", default="models/shapes-world.safetensors")
    parser.add_argument("--cache", required=True, help="candidates file (.npz), made when missing")
    parser.add_argument("--per-group", type=int, default=60)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling of the candidates, as for generate")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--likelihood-weights", default="0",
                        help="comma-separated w: pick by CLIP score + w x the transformer's mean log-likelihood per token")
    parser.add_argument("--reasons", action="store_true",
                        help="also count the failed picks, and all candidates, that fail on a relation's direction alone")
    args = parser.parse_args()
    if not os.path.exists(args.cache):
        groups, texts, images, passed, likelihoods = make_candidates(args.generator, args.per_group, args.candidates, args.seed,
                                                        args.threads, dict(temperature=args.temperature, top_k=args.top_k,
                                                                           top_p=args.top_p))
        np.savez_compressed(args.cache, groups=groups, captions=texts, images=images, passed=passed, likelihoods=likelihoods)
    data = np.load(args.cache)
    groups, texts, images, passed = list(data["groups"]), list(data["captions"]), data["images"], data["passed"]
    likelihoods = data["likelihoods"] if "likelihoods" in data else None
    weights = [float(w) for w in args.likelihood_weights.split(",")]
    if likelihoods is None and weights != [0.0]:
        parser.error(f"{args.cache} holds no log-likelihoods (made before they were cached); make it again")
    names = list(dict.fromkeys(groups))
    rows = [[x == g for x in groups] for g in names]
    print(f"{len(texts)} captions x {images.shape[1]} candidates; average / any-of-N pass rate per group: " + ", ".join(
        f"{g} {100 * passed[r].mean():.1f} / {100 * passed[r].any(axis=1).mean():.1f}" for g, r in zip(names, rows)))
    if args.reasons:
        direction = sum(not ok and "centroid" in why for k, text in enumerate(texts) for ok, why in
                        (dalle.shapes_judge(image, str(text)) for image in images[k]))
        print(f"candidates failing on a relation's direction alone: {direction} of {images.shape[0] * images.shape[1]}")
    if likelihoods is not None:
        picks = passed[np.arange(len(texts)), likelihoods.argmax(axis=1)]
        row = ", ".join(f"{g} {100 * picks[r].mean():.1f}" for g, r in zip(names, rows))
        print(f"the likeliest candidate passes for {row}, all {100 * picks.mean():.1f} %")
    for path in args.clip_models:
        scores = []
        with dalle.Model(path) as model, dalle.Context(model, threads=args.threads, seed=0) as ctx:
            for k, caption in enumerate(texts):
                scores.append(ctx.rerank(str(caption), list(images[k]))[0])
        scores = np.array(scores)
        for w in weights:
            ranked = scores + w * likelihoods if w else scores
            chosen = ranked.argmax(axis=1)
            picks = passed[np.arange(len(texts)), chosen]
            row = ", ".join(f"{g} {100 * picks[r].mean():.1f}" for g, r in zip(names, rows))
            print(f"{path}{f' + {w} x log-likelihood' if w else ''}: CLIP's pick passes for {row}, all {100 * picks.mean():.1f} %")
        if args.reasons:
            chosen = scores.argmax(axis=1)
            why_failed = [dalle.shapes_judge(images[k][chosen[k]], str(texts[k]))[1] for k in range(len(texts)) if not passed[k, chosen[k]]]
            print(f"  failed picks: {len(why_failed)}, on a relation's direction alone: "
                  f"{sum('centroid' in why for why in why_failed)}")


if __name__ == "__main__":
    main()
