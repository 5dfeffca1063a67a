#!/usr/bin/env python3
"""Writes Tests/DalleCoreTests/Golden/quant/quant.safetensors: rows of float32 values and
their q8_0 and q4_0 blocks and dequantized values as ggml computes them, through the
`gguf` package's numpy port of ggml's reference quantizers (pip install gguf safetensors
numpy; no torch). Run from the repository root:

    python3 tools/make_golden_quant.py
"""
import os

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from safetensors.numpy import save_file

OUT = "Tests/DalleCoreTests/Golden/quant"

rng = np.random.default_rng(20261206)
rows = [rng.standard_normal(96) * scale for scale in (1.0, 0.02, 300.0)]
special = np.zeros(96)
special[32:64] = np.linspace(-1, 1, 32)       # a block whose extremes are equal in size
special[64:96] = rng.standard_normal(32) * 1e-3
special[70] = -0.5                            # the block's largest magnitude is negative
rows.append(special)
x = np.stack(rows).astype(np.float32)

tensors = {"x": x}
for name, kind in (("q8_0", GGMLQuantizationType.Q8_0), ("q4_0", GGMLQuantizationType.Q4_0)):
    blocks = quantize(x, kind)
    tensors[name] = np.ascontiguousarray(blocks, dtype=np.uint8)
    tensors[name + "_dequantized"] = dequantize(blocks, kind).astype(np.float32)

os.makedirs(OUT, exist_ok=True)
save_file(tensors, os.path.join(OUT, "quant.safetensors"))
print({k: v.shape for k, v in tensors.items()})
