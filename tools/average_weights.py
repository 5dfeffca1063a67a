#!/usr/bin/env python3
"""Averages the weights of one component across checkpoints of the same run (a "model soup"): each tensor
becomes the weighted mean of its values in the files given. Meant for checkpoints that share an ancestor,
such as a transformer before and after a further schedule, where the mean often keeps what each schedule
learnt better than either end. Writes a component-only file in the first file's dtype, with that file's
metadata for the component and no optimizer state; bundle it in front of a model
(`dalle bundle OUT AVERAGED MODEL`). Needs numpy and safetensors.

    python3 tools/average_weights.py A.safetensors B.safetensors [...] --weights 0.5,0.5 --out OUT
"""
import argparse
import json

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="checkpoints or bundles holding the component")
    parser.add_argument("--out", required=True)
    parser.add_argument("--component", default="transformer", help="tensor-name prefix (default transformer)")
    parser.add_argument("--weights", help="comma-separated, one per file, summing to 1 (default: equal)")
    args = parser.parse_args()

    weights = [float(w) for w in args.weights.split(",")] if args.weights else [1 / len(args.files)] * len(args.files)
    if len(weights) != len(args.files) or abs(sum(weights) - 1) > 1e-6:
        parser.error(f"--weights needs {len(args.files)} numbers summing to 1")
    prefix = args.component + "."

    averaged, dtypes, metadata = {}, {}, None
    for path, weight in zip(args.files, weights):
        with safe_open(path, "np") as f:
            names = {name for name in f.keys() if name.startswith(prefix)}
            if not names:
                parser.error(f"{path} has no {args.component} tensors")
            if metadata is None:
                metadata = f.metadata() or {}
                averaged = {name: 0.0 for name in names}
            elif names != set(averaged):
                parser.error(f"{path}'s {args.component} tensors differ from {args.files[0]}'s")
            for name in names:
                tensor = f.get_tensor(name)
                dtypes.setdefault(name, tensor.dtype)
                averaged[name] = averaged[name] + weight * tensor.astype(np.float64)

    kept = {key: value for key, value in metadata.items() if key.startswith(prefix) or key in ("format", "format_version")}
    kept["components"] = args.component
    kept["averaged_from"] = json.dumps({"files": args.files, "weights": weights})
    save_file({name: value.astype(dtypes[name]) for name, value in averaged.items()}, args.out, metadata=kept)
    print(f"wrote {args.out}: {len(averaged)} {args.component} tensors averaged over {len(args.files)} files")


if __name__ == "__main__":
    main()
