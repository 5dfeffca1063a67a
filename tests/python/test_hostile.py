"""Hostile input through the Python binding (tests/hostile/run.sh also runs this file against the
AddressSanitizer build): malformed model bytes, images of every wrong shape and dtype, floats that
are not numbers, strings that are not UTF-8, absurd sizes. Each must raise a Python exception
(the library's error class, ValueError or TypeError), never crash or allocate what it was told.
The integer range and NUL checks are in test_package.py."""
import math
import os
import resource
import struct
import subprocess
import sys

import numpy as np
import pytest

import dalle
from conftest import REPO

GOLDEN = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden")
GEN_MODEL = os.path.join(GOLDEN, "generate", "model.safetensors")
CLIP_MODEL = os.path.join(GOLDEN, "clip", "clip_tiny.safetensors")
REFUSED = (dalle.DalleError, ValueError, TypeError)


@pytest.fixture(scope="module")
def gen():
    with dalle.Model(GEN_MODEL) as model, dalle.Context(model, threads=1, seed=3) as ctx:
        yield ctx


@pytest.fixture(scope="module")
def clip():
    with dalle.Model(CLIP_MODEL) as model, dalle.Context(model, threads=1) as ctx:
        yield ctx


def model_bytes():
    with open(GEN_MODEL, "rb") as f:
        return f.read()


@pytest.mark.parametrize("make", [
    lambda b: b"", lambda b: b"\0" * 7, lambda b: b[:8], lambda b: b[:len(b) // 2],
    lambda b: struct.pack("<Q", 2 ** 64 - 1) + b[8:], lambda b: struct.pack("<Q", 2) + b"{}" + b[10:],
    lambda b: struct.pack("<Q", 100000) + b"[" * 100000, lambda b: os.urandom(4096),
], ids=["empty", "short", "header-only", "half", "huge-header-length", "tiny-header", "deep-json", "random"])
def test_malformed_model_bytes(make):
    data = make(model_bytes())
    for source in (data, bytearray(data), memoryview(data)):
        with pytest.raises(dalle.DalleError):
            dalle.Model(source)


@pytest.mark.parametrize("images", [
    np.zeros((32, 32), np.uint8), np.zeros((1, 1, 32, 32, 3), np.uint8), np.zeros((1, 32, 32, 3), np.float32),
    np.zeros((1, 32, 32, 1), np.uint8), np.zeros((1, 32, 32, 2), np.uint8), np.zeros((1, 32, 32, 5), np.uint8),
    np.zeros((1, 31, 32, 3), np.uint8), np.zeros((1, 0, 0, 3), np.uint8), np.zeros((1, 32, 32, 0), np.uint8),
    [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)], b"\0" * 100, "not an image", 5,
], ids=["2d", "5d", "float", "grey", "two-channels", "five-channels", "not-square", "empty", "no-channels",
        "mixed-sizes", "bytes-not-whole", "str", "int"])
def test_encode_refuses_bad_images(gen, images):
    with pytest.raises(REFUSED):
        gen.encode(images)


def test_encode_takes_strided_views(gen):
    wide = np.random.default_rng(0).integers(0, 256, (1, 32, 64, 3), dtype=np.uint8)
    view = wide[:, :, ::2]  # not contiguous: the binding copies it
    np.testing.assert_array_equal(gen.encode(view), gen.encode(np.ascontiguousarray(view)))


@pytest.mark.parametrize("tokens", [
    np.zeros((8,), np.int32), np.zeros((1, 1, 8, 8), np.int32), np.zeros((1, 8, 7), np.int32),
    np.zeros((1, 0, 0), np.int32), np.full((1, 8, 8), -1, np.int32), np.full((1, 8, 8), 2 ** 31 - 1, np.int32),
    np.zeros((1, 8, 8), np.complex64), np.zeros((1, 8, 8), bool), [[0] * 63], [["a"] * 64],
], ids=["1d", "4d", "not-square", "empty-grid", "negative", "int32-max", "complex", "bool", "short-list", "strings"])
def test_decode_refuses_bad_tokens(gen, tokens):
    with pytest.raises(REFUSED):
        gen.decode(tokens)


@pytest.mark.parametrize("kwargs", [
    {"temperature": math.nan}, {"temperature": math.inf}, {"temperature": 0.0}, {"temperature": -1.0},
    {"top_p": math.nan}, {"top_p": 1.5}, {"top_p": 0.0}, {"cond_scale": math.nan}, {"cond_scale": -math.inf},
    {"likelihood_weight": math.nan}, {"likelihood_weight": -1.0}, {"temperature": "1"}, {"top_k": 1.5},
    {"count": 0}, {"count": 257}, {"keep_best": 2}, {"keep_best": 2 ** 32 - 1}, {"prime_rows": 8, "prime": [0] * 64},
    {"prime_rows": 2, "prime": [0] * 15}, {"prime_rows": 1, "prime": [-1] * 8}, {"prime_rows": 1, "prime": ["x"] * 8},
], ids=lambda kwargs: ",".join(f"{k}={v!r}"[:30] for k, v in kwargs.items()))
def test_generate_refuses_bad_settings(gen, kwargs):
    with pytest.raises(REFUSED):
        gen.generate("a red ball", images=False, **kwargs)


@pytest.mark.parametrize("prompt", ["\ud800", b"a red ball", None, 5], ids=["lone-surrogate", "bytes", "none", "int"])
def test_prompts_that_are_not_text(gen, prompt):
    with pytest.raises(REFUSED):
        gen.generate(prompt, images=False)


def test_long_and_odd_prompts_are_fine(gen):
    for prompt in ["x" * 1_000_000, "\u202e\u0301" * 1000, "\U0001f600" * 500, "\t\n\r " * 1000]:
        generation = gen.generate(prompt, images=False)
        assert generation.tokens.shape == (1, 8, 8)
        ids, _ = gen.tokenize(prompt, mode="raw")
        assert all(isinstance(i, int) for i in ids)
    with pytest.raises(REFUSED):
        gen.tokenize("a", mode="bogus")


@pytest.mark.parametrize("images", [
    np.zeros((1, 32769, 3), np.uint8), np.zeros((0, 5, 3), np.uint8), np.zeros((5, 5, 2), np.uint8),
    np.zeros((8, 8, 3), np.float64), [], [np.zeros((8, 8, 3), np.uint8), np.zeros((1, 32769, 3), np.uint8)],
], ids=["too-wide", "no-rows", "two-channels", "float", "none", "one-bad-of-two"])
def test_clip_refuses_bad_images(clip, images):
    with pytest.raises(REFUSED):
        clip.rerank("a red ball", images)
    with pytest.raises(REFUSED):
        clip.clip_encode_images(images)


def test_clip_refuses_empty_prompts(clip):
    with pytest.raises(REFUSED):
        clip.rerank("", [np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(REFUSED):
        clip.clip_encode_text("")


def test_png_files_that_are_not(tmp_path):
    for name, data in {"empty": b"", "text": b"hello", "signature": b"\x89PNG\r\n\x1a\n",
                       "truncated": open(os.path.join(GOLDEN, "png", "big_rgb.png"), "rb").read()[:200]}.items():
        path = tmp_path / f"{name}.png"
        path.write_bytes(data)
        with pytest.raises(dalle.DalleError):
            dalle.read_image(path)
    with pytest.raises(REFUSED):
        dalle.write_png(tmp_path / "x.png", np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(REFUSED):
        dalle.write_png(tmp_path / "x.png", b"\0" * 10, width=2 ** 31, height=2 ** 31)
    with pytest.raises(dalle.DalleIOError):
        dalle.write_png(tmp_path / "no" / "dir" / "x.png", np.zeros((4, 4, 3), np.uint8))


def test_shapes_with_bad_input():
    with pytest.raises(REFUSED):
        dalle.shapes_judge(np.zeros((63, 64, 3), np.uint8), "a red circle")
    with pytest.raises(REFUSED):
        dalle.shapes_judge(np.zeros((64, 64, 3), np.uint8), "a red circle \udcff")
    with pytest.raises(REFUSED):
        dalle.shapes_render("a " * 100000)


def test_a_mapping_the_system_refuses_is_out_of_memory(tmp_path):
    """A 4 GB model file under a 1 GB address-space limit: DALLE_OUT_OF_MEMORY, not an abort.
    In a child process of the release library (ASan cannot run under an address-space limit)."""
    huge = tmp_path / "huge.safetensors"
    with open(huge, "wb") as f:
        f.truncate(4 << 30)  # sparse: no disk used
    code = ("import dalle, sys\n"
            "try:\n    dalle.Model(sys.argv[1])\n"
            "except dalle.DalleOutOfMemoryError as e:\n    print('refused:', e)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "DALLE_LIBRARY")}
    env["PYTHONPATH"] = os.path.join(REPO, "bindings", "python")
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    result = subprocess.run([sys.executable, "-c", code, str(huge)], capture_output=True, text=True, env=env,
                            preexec_fn=limit, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "refused: " in result.stdout and "cannot map" in result.stdout, result.stdout
