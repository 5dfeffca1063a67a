#!/usr/bin/env python3
"""Writes the safetensors fixtures for Tests/DalleCoreTests/SafetensorsTests.swift.

Uses Python's reference `safetensors` writer (pip install safetensors numpy; no torch).
Every value comes from a formula or a literal that the Swift tests repeat, so the
tests need only the committed files. The reference writer orders metadata keys by
hash, so regenerating mixed.safetensors may permute its "__metadata__" members (the
tests do not depend on that order). Run from the repository root:

    python3 tools/make_golden_safetensors.py
"""
import os

import numpy as np
from safetensors import TensorSpec, serialize

OUT = "Tests/DalleCoreTests/Golden/safetensors"
KEEP_ALIVE = []  # arrays whose memory the TensorSpecs point at


def entry(array, dtype_name=None):
    """A tensor as the low-level serializer takes it (numpy has no bfloat16)."""
    array = np.array(array, order="C", copy=True)  # keeps 0-d arrays 0-d
    KEEP_ALIVE.append(array)
    return TensorSpec(
        dtype=dtype_name or array.dtype.name,
        shape=array.shape,
        data_ptr=array.ctypes.data,
        data_len=array.nbytes,
    )


def bfloat16(values):
    """bfloat16 bits (as uint16) of float32 values that bfloat16 holds exactly."""
    bits = np.array(values, dtype="<f4").view("<u4")
    assert np.all(bits & 0xFFFF == 0) or np.any(np.isnan(values)), values
    return (bits >> 16).astype("<u2")


# Special float16 values: zeros, normals, the largest finite, the smallest normal,
# the smallest and largest subnormals, infinities and NaN.
F16_BITS = [0x0000, 0x8000, 0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0400, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x7E00]
BF16_VALUES = [1.0, -2.5, 3.140625, 2.0**-130, 3.3895313892515355e38, float("inf"), float("-inf")]


def mixed():
    """Several dtypes, shapes including a scalar and an empty tensor, libdalle-style metadata."""
    tensors = {
        "dvae.f32": entry((np.arange(24, dtype="<f4").reshape(2, 3, 4) - 12) * 0.25),
        "dvae.f16": entry(np.array(F16_BITS, dtype="<u2").view("<f2")),
        "dvae.bf16": entry(bfloat16(BF16_VALUES).reshape(7, 1), "bfloat16"),
        "dvae.f64": entry(np.arange(6, dtype="<f8").reshape(3, 2) / 8),
        "dvae.i32": entry(np.arange(-3, 3, dtype="<i4")),
        "dvae.i64": entry(np.array([-(2**40), 0, 2**40], dtype="<i8")),
        "dvae.u8": entry(np.arange(256, dtype="u1").reshape(16, 16)),
        "dvae.scalar": entry(np.array(7.5, dtype="<f4")),
        "dvae.empty": entry(np.zeros((0, 3), dtype="<f4")),
    }
    metadata = {
        "format": "libdalle",
        "format_version": "1",
        "components": "dvae",
        "dvae.n_hid": "256",
        "note": "quote \" backslash \\ tab \t unicode \u00e9\u2713\U0001F600",
    }
    return bytes(serialize(tensors, metadata=metadata))


def writer_reference():
    """A file SafetensorsWriter must reproduce byte for byte (one metadata key, since
    the reference writer orders several keys by hash)."""
    tensors = {
        "b.f32": entry(np.arange(5, dtype="<f4") * 0.5),
        "a.f16": entry(np.arange(3, dtype="<f2") - 1),
        "c.bf16": entry(bfloat16([1.0, -2.0]), "bfloat16"),
        "d.u8": entry(np.arange(3, dtype="u1")),
        "e.i32": entry(np.array([7, -7], dtype="<i4")),
    }
    return bytes(serialize(tensors, metadata={"format": "libdalle"}))


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in [("mixed", mixed()), ("writer_reference", writer_reference())]:
        with open(os.path.join(OUT, name + ".safetensors"), "wb") as f:
            f.write(data)
        print(f"{name}.safetensors: {len(data)} bytes")


if __name__ == "__main__":
    main()
