"""The ctypes binding: round trips, errors carrying the library's messages, handles,
callbacks, numpy and plain-bytes paths, and the struct layout ctypes assumes."""
import ctypes
import gc
import json
import os
import threading

import numpy as np
import pytest

import dalle
from dalle import _lib
from conftest import MODEL, REPO


@pytest.fixture(scope="module")
def model():
    with dalle.Model(MODEL) as m:
        yield m


@pytest.fixture
def ctx(model):
    with dalle.Context(model, threads=1) as c:
        yield c


def synthetic(n, size, channels=3):
    y, x = np.mgrid[0:size, 0:size]
    images = [np.stack([(x * 7 + y * 3 + c * 50 + k * 31) % 256 for c in range(3)], axis=-1) for k in range(n)]
    out = np.stack(images).astype(np.uint8)
    if channels == 4:
        out = np.concatenate([out, np.full(out.shape[:3] + (1,), 17, np.uint8)], axis=-1)
    return out


def test_version_and_info(model):
    assert dalle.version() == dalle.__version__
    assert dalle.system_info().startswith("libdalle ")
    assert model.components == ["dvae"]
    (part,) = model.component_info
    assert (part.name, part.variant, part.capabilities) == ("dvae", "openai", ("encode", "decode", "train"))
    assert part.n_params == model.n_params
    assert (model.image_size, model.token_grid_size, model.codebook_size) == (32, 4, 128)
    assert model.n_params > 10_000
    assert "image_size=32" in repr(model)


def test_round_trip_numpy(ctx):
    images = synthetic(3, 32)
    tokens = ctx.encode(images)
    assert tokens.shape == (3, 4, 4) and tokens.dtype == np.int32
    assert ((tokens >= 0) & (tokens < 128)).all()
    decoded = ctx.decode(tokens)
    assert decoded.shape == (3, 32, 32, 3) and decoded.dtype == np.uint8
    # A single image, a list of images and RGBA input all give the same grids.
    np.testing.assert_array_equal(ctx.encode(images[0])[0], tokens[0])
    np.testing.assert_array_equal(ctx.encode(list(images)), tokens)
    np.testing.assert_array_equal(ctx.encode(synthetic(3, 32, channels=4)), tokens)
    np.testing.assert_array_equal(ctx.decode(tokens[1]), decoded[1:2])


def test_round_trip_without_numpy(ctx, monkeypatch):
    images = synthetic(2, 32)
    expected_tokens = ctx.encode(images)
    expected_pixels = ctx.decode(expected_tokens)
    monkeypatch.setattr(dalle, "_np", None)
    tokens = ctx.encode(images.tobytes())
    assert tokens == [list(map(int, t.ravel())) for t in expected_tokens]
    pixels = ctx.decode(tokens)
    assert isinstance(pixels, bytes) and pixels == expected_pixels.tobytes()
    with pytest.raises(dalle.InvalidArgumentError, match="not a whole number"):
        ctx.encode(b"\x00" * 100)


def test_load_from_bytes_matches_file(model, ctx):
    with open(MODEL, "rb") as f:
        data = f.read()
    with dalle.Model(data) as m2, dalle.Context(m2, threads=2) as c2:
        assert m2.n_params == model.n_params
        images = synthetic(2, 32)
        np.testing.assert_array_equal(c2.encode(images), ctx.encode(images))


def test_thread_count_does_not_change_results(model):
    images = synthetic(2, 32)
    results = []
    for threads in (1, 2, 0):
        with dalle.Context(model, threads=threads, seed=7) as c:
            assert c.seed == 7
            tokens = c.encode(images)
            results.append((tokens, c.decode(tokens)))
    for tokens, pixels in results[1:]:
        np.testing.assert_array_equal(tokens, results[0][0])
        np.testing.assert_array_equal(pixels, results[0][1])


def test_errors_carry_the_library_message(ctx, tmp_path):
    with pytest.raises(dalle.InvalidArgumentError, match=r"images\[0\] is 16x16; this model takes 32x32"):
        ctx.encode(synthetic(1, 16))
    bad = np.zeros((1, 4, 4), np.int32)
    bad[0, 2, 1] = 128
    with pytest.raises(dalle.InvalidArgumentError, match=r"token 9 of grid 0 is 128; ids must be in 0..<128") as e:
        ctx.decode(bad)
    assert e.value.status == _lib.DALLE_INVALID_ARGUMENT
    with pytest.raises(dalle.InvalidArgumentError, match="token grids are 5x5"):
        ctx.decode(np.zeros((1, 5, 5), np.int32))
    with pytest.raises(dalle.DalleIOError, match="nonexistent"):
        dalle.Model(str(tmp_path / "nonexistent.safetensors"))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(open(MODEL, "rb").read()[:1000])
    with pytest.raises(dalle.BadFileError):
        dalle.Model(truncated)
    with pytest.raises(dalle.BadFileError):
        dalle.Model(b"\x00" * 64)


def test_context_manager_and_closed_handles(model):
    with dalle.Context(model) as c:
        pass
    with pytest.raises(dalle.InvalidArgumentError, match="closed"):
        c.encode(synthetic(1, 32))
    c.close()  # closing twice is fine
    # The C layer rejects a stale handle instead of crashing.
    status = _lib.lib.dalle_encode(c._handle or 0x1234, None, 0, ctypes.byref(_lib.dalle_tokens()))
    assert status == _lib.DALLE_INVALID_ARGUMENT
    assert b"not a live dalle_context" in _lib.lib.dalle_last_error()


def test_context_outlives_closed_model():
    m = dalle.Model(MODEL)
    c = dalle.Context(m)
    m.close()
    assert c.encode(synthetic(1, 32)).shape == (1, 4, 4)
    c.close()


def test_progress_and_cancel(model):
    calls = []
    with dalle.Context(model, progress=lambda phase, step, total: calls.append((phase, step, total))) as c:
        gc.collect()  # the binding keeps its ctypes callback alive
        tokens = c.encode(synthetic(2, 32))
        assert calls == [(_lib.DALLE_PHASE_ENCODE, s, 2) for s in range(3)]

    with dalle.Context(model, progress=lambda phase, step, total: step < 1) as c:
        with pytest.raises(dalle.CancelledError, match="cancelled"):
            c.decode(tokens)
        assert c.decode(tokens[:0]).shape == (0, 32, 32, 3)

    def boom(phase, step, total):
        raise KeyError("from the callback")

    with dalle.Context(model, progress=boom) as c:
        with pytest.raises(KeyError, match="from the callback"):
            c.encode(synthetic(1, 32))

    def cancel_from_other_thread(phase, step, total):
        if step == 1:
            t = threading.Thread(target=c.cancel)
            t.start()
            t.join()
        return True

    with dalle.Context(model, progress=cancel_from_other_thread) as c:
        with pytest.raises(dalle.CancelledError):
            c.encode(synthetic(3, 32))

    loads = []
    with dalle.Model(MODEL, progress=lambda *a: loads.append(a)):
        pass
    assert [a[1] for a in loads] == [0, 1, 2] and loads[0][0] == _lib.DALLE_PHASE_LOAD
    with pytest.raises(dalle.CancelledError):
        dalle.Model(MODEL, progress=lambda *a: False)


def test_log_callback():
    lines = []
    dalle.set_log_callback(lambda level, message: lines.append((level, message)))
    dalle.set_log_level(_lib.DALLE_LOG_DEBUG)
    try:
        gc.collect()
        with pytest.raises(dalle.InvalidArgumentError):
            dalle.Model(b"")
        assert any("dalle_model_load_buffer" in m for _, m in lines)
    finally:
        dalle.set_log_level(_lib.DALLE_LOG_WARN)
        dalle.set_log_callback(None)


def test_ctypes_layout_matches_c():
    table = {}
    with open(os.path.join(REPO, "tests", "c", "abi_layout.txt")) as f:
        for line in f:
            name, size, *fields = line.split()
            table[name] = (int(size), {fields[i]: int(fields[i + 1]) for i in range(0, len(fields), 2)})
    for name, (size, offsets) in table.items():
        struct = getattr(_lib, name)
        assert ctypes.sizeof(struct) == size, name
        assert {f: getattr(struct, f).offset for f, _ in struct._fields_} == offsets, name


def test_constants_match_the_header():
    import re
    header = re.sub(r"/\*.*?\*/", " ", open(os.path.join(REPO, "include", "dalle.h")).read(), flags=re.S)
    constants = dict(re.findall(r"\b(DALLE_[A-Z0-9_]+) = ([^,}\n]+)", header))
    constants.update(re.findall(r"#define (DALLE_[A-Z0-9_]+) (\(\(uint64_t\)0x[0-9A-F]+ull\)|\d+)\s*$", header, flags=re.M))
    constants.update(re.findall(r"#define (DALLE_[A-Z0-9_]+) \((-?[0-9]+\.[0-9]+)f\)\s*$", header, flags=re.M))
    assert "DALLE_LIKELIHOOD_WEIGHT_MODEL" in constants
    assert len(constants) > 30
    for name, text in constants.items():
        if name.startswith("DALLE_VERSION_"):
            continue  # the library's version, asked of the library (dalle.version())
        value = eval(re.sub(r"\(\(uint64_t\)(0x[0-9A-F]+)ull\)", r"\1", text))
        assert getattr(_lib, name) == value, name


def test_prototypes_cover_the_header():
    header = open(os.path.join(REPO, "include", "dalle.h")).read()
    import re
    declared = set(re.findall(r"DALLE_API[^;(]*?\b(dalle_\w+)\s*\(", header))
    assert declared == set(_lib.PROTOTYPES)


def test_log_level_out_of_range_is_a_value_error():
    with pytest.raises(ValueError, match="level is -5"):
        dalle.set_log_level(-5)


def test_unclip_bundle_generates_images_without_tokens():
    path = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden", "unclip", "tiny_unclip_f16.safetensors")
    with dalle.Model(path) as model, dalle.Context(model, threads=2, seed=1) as ctx:
        assert model.components == ["tokenizer", "unclip"]
        assert model.component_info[1].capabilities == ("generate",)
        result = ctx.generate("a red cat", count=2)
        assert result.images.shape == (2, 32, 32, 3) and result.tokens.shape == (0, 0, 0)
        assert (result.images == ctx.generate("a red cat", count=2).images).all()
        quick = ctx.generate("a red cat", count=1, prior_steps=3, decoder_steps=2, super_res_steps=2, decoder_guidance=2.0)
        assert quick.images.shape == (1, 32, 32, 3)
        with pytest.raises(dalle.InvalidArgumentError, match="1001 steps"):
            ctx.generate("a red cat", prior_steps=1001)
        with pytest.raises(ValueError, match="-1"):
            ctx.generate("a red cat", decoder_steps=-1)


def _read_safetensors(path):
    """name -> numpy array of a safetensors file holding F32 and U8 tensors."""
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    dtypes = {"F32": np.float32, "U8": np.uint8}
    return {k: np.frombuffer(data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
            for k, v in header.items()}


def test_unclip_caller_noise_reproduces_the_golden_chain():
    golden = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden", "unclip")
    noise_path = os.path.join(golden, "noise_one_image.safetensors")
    expected = _read_safetensors(os.path.join(golden, "chain.safetensors"))["image"][0].transpose(1, 2, 0) * 255
    with dalle.Model(os.path.join(golden, "tiny_unclip_f16.safetensors")) as model, dalle.Context(model) as ctx:
        image = ctx.generate("a red cat on the mat", noise=noise_path).images[0]
        assert np.abs(image.astype(np.float32) - expected).max() <= 1
        noise = _read_safetensors(noise_path)
        assert (ctx.generate("a red cat on the mat", noise=noise).images[0] == image).all()
        assert (ctx.generate("a red cat on the mat", noise=open(noise_path, "rb").read()).images[0] == image).all()
        with pytest.raises(dalle.InvalidArgumentError, match=r"'decoder_latents' has shape \[1, 3, 4, 4\], expected \[1, 3, 8, 8\]"):
            ctx.generate("a red cat", noise={"decoder_latents": np.zeros((1, 3, 4, 4))})
        with pytest.raises(dalle.InvalidArgumentError, match="unexpected noise tensor 'latents'"):
            ctx.generate("a red cat", noise={"latents": np.zeros(1)})
        bad = dict(noise, prior_latents=np.full((1, 32), np.nan))
        with pytest.raises(dalle.InvalidArgumentError, match="'prior_latents' holds nan"):
            ctx.generate("a red cat", noise=bad)
        with pytest.raises(dalle.DalleIOError):
            ctx.generate("a red cat", noise=os.path.join(golden, "missing.safetensors"))


def test_unclip_variations_and_interpolations():
    golden = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden", "unclip")
    recorded = _read_safetensors(os.path.join(golden, "variation.safetensors"))
    image = dalle.read_image(os.path.join(golden, "variation_input.png"))
    with dalle.Model(os.path.join(golden, "tiny_unclip_f16.safetensors")) as model, dalle.Context(model) as ctx:
        varied = ctx.generate("", image=image, decoder_steps=5, super_res_steps=3,
                              noise=os.path.join(golden, "variation_noise.safetensors")).images
        assert np.abs(varied[0].astype(np.float32) - recorded["variation.image"][0].transpose(1, 2, 0) * 255).max() <= 1
        frames = ctx.generate("a red cat on the mat", count=3, interpolate_to="two blue squares", prior_steps=3,
                              decoder_steps=3, super_res_steps=2,
                              noise=os.path.join(golden, "text_interpolation_noise.safetensors")).images
        assert np.abs(frames.astype(np.float32) - recorded["text_interpolation.image"].transpose(0, 2, 3, 1) * 255).max() <= 1
        assert (image == recorded["input_image"]).all()
        frames = ctx.generate("", count=2, image=image, interpolate_to=recorded["second_image"], decoder_steps=2, super_res_steps=2, seed=3).images
        assert frames.shape == (2, 32, 32, 3)
        best = ctx.generate("a red cat", count=3, keep_best=2, prior_steps=2, decoder_steps=2, super_res_steps=2, seed=5)
        assert best.images.shape[0] == 2 and best.scores[0] >= best.scores[1]
        with pytest.raises(dalle.InvalidArgumentError, match='take the prompt ""'):
            ctx.generate("a cat", image=image)
        with pytest.raises(dalle.InvalidArgumentError, match="init_image.channels is 2"):
            ctx.generate("", image=np.zeros((4, 4, 2), dtype=np.uint8))

