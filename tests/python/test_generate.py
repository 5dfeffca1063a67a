"""Context.generate against the golden generate model (tools/make_golden_generate.py)."""
import json
import os

import numpy as np
import pytest

import dalle
from dalle import _lib
from conftest import MODEL, REPO

GEN_MODEL = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden", "generate", "model.safetensors")


@pytest.fixture(scope="module")
def ctx():
    with dalle.Model(GEN_MODEL) as model, dalle.Context(model, threads=2, seed=3) as context:
        yield context


def test_generate_shapes_seed_and_determinism(ctx):
    result = ctx.generate("a red ball", count=3, seed=11, temperature=0.9, top_k=8, top_p=0.95, cond_scale=1.5)
    assert result.images.shape == (3, 32, 32, 3) and result.images.dtype == np.uint8
    assert result.tokens.shape == (3, 8, 8)
    assert (result.seed, result.prompt_tokens, result.truncated_tokens, result.generated_tokens) == (11, 3, 0, 64)
    again = ctx.generate("a red ball", count=1, seed=11, temperature=0.9, top_k=8, top_p=0.95, cond_scale=1.5, images=False)
    assert again.images is None
    assert np.array_equal(again.tokens[0], result.tokens[0])  # image i does not depend on count
    assert len(result.log_likelihoods) == 3 and all(-20 < x < 0 for x in result.log_likelihoods)
    assert again.log_likelihoods == result.log_likelihoods[:1]
    assert ctx.generate("a red ball", images=False).seed == 3  # the context's seed


def test_greedy_matches_reference(ctx):
    with open(os.path.join(REPO, "Tests", "DalleCoreTests", "Golden", "generate", "ref.safetensors"), "rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        entry = json.loads(f.read(header_size))["greedy"]
        f.seek(8 + header_size + entry["data_offsets"][0])
        greedy = np.frombuffer(f.read(entry["data_offsets"][1] - entry["data_offsets"][0]), dtype="<i4").reshape(entry["shape"])
    result = ctx.generate("a red ball on green grass", top_k=1, images=False)
    assert result.tokens.reshape(-1).tolist() == greedy[0].tolist()


def test_priming_truncation_and_progress(ctx):
    first = ctx.generate("", images=False)
    assert first.prompt_tokens == 0
    steps = []
    primed = ctx.generate("", count=2, prime=first.tokens[0], prime_rows=3,
                          progress=lambda phase, step, total: steps.append((phase, step, total)))
    assert np.array_equal(primed.tokens[:, :3], np.repeat(first.tokens[:1, :3], 2, axis=0))
    assert primed.generated_tokens == 40
    assert [s for p, s, t in steps if p == _lib.DALLE_PHASE_GENERATE] == list(range(41))
    assert [s for p, s, t in steps if p == _lib.DALLE_PHASE_DECODE] == [0, 1, 2]
    long = ctx.generate("one two three four five six seven eight nine ten eleven twelve thirteen", images=False)
    assert long.prompt_tokens == 12 and long.truncated_tokens == 20  # 32 tokens with this model's 600 merges


def test_cancel_and_errors(ctx):
    with pytest.raises(dalle.CancelledError):
        ctx.generate("x", progress=lambda phase, step, total: step < 3)
    with pytest.raises(ZeroDivisionError):  # an exception in the callback stops the call and is re-raised
        ctx.generate("x", progress=lambda phase, step, total: 1 / 0)
    for kwargs, fragment in [({"count": 0}, "count"), ({"temperature": 0}, "temperature"), ({"top_p": 0}, "top_p"),
                             ({"top_k": -1}, "top_k"), ({"prime": [1, 2], "prime_rows": 1}, "prime")]:
        with pytest.raises(dalle.InvalidArgumentError, match=fragment):
            ctx.generate("x", **kwargs)
    assert ctx.generate("x", images=False).tokens.shape == (1, 8, 8)  # the context still works
    with dalle.Model(MODEL) as dvae_only, dalle.Context(dvae_only) as other:
        with pytest.raises(dalle.UnsupportedError, match="no transformer"):
            other.generate("x")


def with_metadata(path, out, **entries):
    """A copy of the safetensors file at `path` with `entries` added to its metadata."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"].update(entries)
    text = json.dumps(header).encode()
    with open(out, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data[8 + n:])
    return str(out)


def test_the_models_guidance_scale_is_the_default(tmp_path):
    guided = with_metadata(GEN_MODEL, tmp_path / "guided.safetensors", **{"transformer.cond_scale": "2.5"})
    with dalle.Model(GEN_MODEL) as plain, dalle.Model(guided) as model, dalle.Context(model, threads=1) as ctx:
        assert plain.cond_scale == 1.0 and model.cond_scale == 2.5
        default = ctx.generate("a red ball", count=2, seed=5, images=False).tokens
        assert np.array_equal(default, ctx.generate("a red ball", count=2, seed=5, cond_scale=2.5, images=False).tokens)
        assert not np.array_equal(default, ctx.generate("a red ball", count=2, seed=5, cond_scale=1, images=False).tokens)
    bad = with_metadata(GEN_MODEL, tmp_path / "bad.safetensors", **{"transformer.cond_scale": "strong"})
    with pytest.raises(dalle.DalleError, match="transformer.cond_scale"):
        dalle.Model(bad)


def test_words_outside_the_model_vocabulary_are_counted_and_logged():
    """The default model records the Shapes World's words: a prompt outside them draws, with
    Generation.unknown_words and a warning through the log callback; a caption of its world has neither."""
    messages = []
    dalle.set_log_callback(lambda level, message: messages.append((level, message)))
    try:
        with dalle.Model(os.path.join(REPO, "models", "shapes-world.safetensors")) as model, \
                dalle.Context(model, threads=2, seed=1) as context:
            result = context.generate("A photo of a cat!", images=False)
            assert result.unknown_words == 2 and result.tokens.shape == (1, 16, 16)
            assert [m for level, m in messages if level == _lib.DALLE_LOG_WARN and "'photo', 'cat'" in m]
            messages.clear()
            assert context.generate("a small red circle", images=False).unknown_words == 0
            assert context.generate("", images=False).unknown_words == 0
            assert not messages
    finally:
        dalle.set_log_callback(None)
    # A model that records no vocabulary checks nothing.
    with dalle.Model(GEN_MODEL) as model, dalle.Context(model) as context:
        assert context.generate("a photo of a cat", images=False).unknown_words == 0
