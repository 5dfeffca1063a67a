"""The binding's guards and conveniences: integers the C types cannot hold, NUL characters and
float token ids raise ValueError before any call; default_model(); Generation.to_pil() / save();
PNG files through the library (read_image, write_png)."""
import os
import sys

import numpy as np
import pytest

import dalle
from conftest import MODEL, REPO

GEN_MODEL = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden", "generate", "model.safetensors")


@pytest.fixture(scope="module")
def gen():
    with dalle.Model(GEN_MODEL) as model, dalle.Context(model, threads=1, seed=3) as ctx:
        yield ctx


@pytest.mark.parametrize("kwargs, shown", [
    ({"count": 2 ** 32}, "count is 4294967296"), ({"count": -1}, "count is -1"),
    ({"seed": 2 ** 64}, "seed is 18446744073709551616"), ({"seed": -3}, "seed is -3"),
    ({"top_k": 2 ** 31}, "top_k is 2147483648"), ({"keep_best": -1}, "keep_best is -1"),
    ({"prime_rows": 2 ** 40}, "prime_rows is 1099511627776"),
])
def test_generate_rejects_integers_out_of_c_range(gen, kwargs, shown):
    with pytest.raises(ValueError, match=shown):
        gen.generate("a red ball", **kwargs)


def test_integers_out_of_range_elsewhere():
    with dalle.Model(MODEL) as model:
        with pytest.raises(ValueError, match="threads is 2147483648"):
            dalle.Context(model, threads=2 ** 31)
        with pytest.raises(ValueError, match="seed is -1"):
            dalle.Context(model, seed=-1)
        with dalle.Context(model, seed=np.uint64(2 ** 64 - 1)) as ctx:  # numpy integers are integers
            assert ctx.seed != 0
        with pytest.raises(TypeError, match="threads must be an integer, got 1.5"):
            dalle.Context(model, threads=1.5)
    with pytest.raises(ValueError, match="seed is -1"):
        dalle.shapes_render("a red circle", seed=-1)
    with pytest.raises(ValueError, match="index is 18446744073709551616"):
        dalle.shapes_training_sample(0, 2 ** 64)
    with pytest.raises(ValueError, match="steps is 4294967296"):
        dalle.train("dvae", "shapes", "/nonexistent/x.safetensors", steps=2 ** 32)


def test_token_ids_must_be_int32_integers(gen):
    grid = gen.generate("a red ball", images=False).tokens
    with pytest.raises(ValueError, match="integer ids, got dtype float64"):
        gen.decode(grid.astype(np.float64))
    wide = grid.astype(np.int64)
    wide[0, 1, 2] = 2 ** 32 + 5
    with pytest.raises(ValueError, match="the id 4294967301, out of int32 range"):
        gen.decode(wide)
    with pytest.raises(ValueError, match="prime must hold integer ids"):
        gen.generate("a red ball", prime=grid[0].astype(np.float32), prime_rows=1)
    assert gen.decode(grid.astype(np.uint8)).shape == (1, 32, 32, 3)  # any integer dtype in range


def test_token_ids_without_numpy(gen, monkeypatch):
    grid = gen.generate("a red ball", images=False).tokens.reshape(-1).tolist()
    monkeypatch.setattr(dalle, "_np", None)
    with pytest.raises(ValueError, match="token id is 2147483648"):
        gen.decode([grid[:-1] + [2 ** 31]])
    with pytest.raises(TypeError, match="token id must be an integer, got 1.0"):
        gen.decode([grid[:-1] + [1.0]])


def test_strings_with_nul_are_rejected(gen, tmp_path):
    with pytest.raises(ValueError, match="prompt contains a NUL"):
        gen.generate("a red\0ball")
    with pytest.raises(ValueError, match="text contains a NUL"):
        gen.tokenize("a\0b")
    with pytest.raises(ValueError, match="model path contains a NUL"):
        dalle.Model(str(tmp_path) + "/x\0y.safetensors")
    with pytest.raises(ValueError, match="caption contains a NUL"):
        dalle.shapes_render("a red circle\0 to the left")
    with pytest.raises(ValueError, match="out_path contains a NUL"):
        dalle.bundle([GEN_MODEL], "out\0.safetensors")


def test_default_model(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DALLE_MODEL", raising=False)
    shipped = os.path.join(REPO, "models", "shapes-world.safetensors")
    assert dalle.default_model() == shipped  # the checkout's models/
    monkeypatch.setenv("DALLE_MODEL", GEN_MODEL)
    assert dalle.default_model() == GEN_MODEL
    monkeypatch.setenv("DALLE_MODEL", str(tmp_path / "none.safetensors"))
    with pytest.raises(FileNotFoundError, match="DALLE_MODEL is .*none.safetensors, which cannot be read"):
        dalle.default_model()
    monkeypatch.delenv("DALLE_MODEL")
    nowhere = [str(tmp_path / "a" / "shapes-world.safetensors")]
    monkeypatch.setattr(dalle, "default_model_candidates", lambda: nowhere)
    with pytest.raises(FileNotFoundError, match="looked at \\$DALLE_MODEL \\(unset\\), .*/a/shapes-world.safetensors"):
        dalle.default_model()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "shapes-world.safetensors").write_bytes(b"")
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    candidates = dalle.default_model_candidates()
    assert candidates[-1] == os.path.join("models", "shapes-world.safetensors")
    assert candidates.index(shipped) < len(candidates) - 1  # the checkout's before the current directory's


def test_to_pil_and_save(gen, tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    result = gen.generate("a red ball", count=2, seed=5)
    pictures = result.to_pil()
    assert [p.size for p in pictures] == [(32, 32)] * 2 and pictures[0].mode == "RGB"
    assert np.array_equal(np.asarray(pictures[1]), result.images[1])
    paths = result.save(tmp_path / "out-{i:03d}.png")
    assert paths == [str(tmp_path / "out-000.png"), str(tmp_path / "out-001.png")]
    from PIL import Image
    assert np.array_equal(np.asarray(Image.open(paths[1])), result.images[1])
    with pytest.raises(ValueError, match="2 images need a path with \\{i\\}"):
        result.save(tmp_path / "out.png")
    single = gen.generate("a red ball", seed=5)
    assert single.save(tmp_path / "one.png") == [str(tmp_path / "one.png")]
    with pytest.raises(ValueError, match="images=False"):
        gen.generate("a red ball", images=False).to_pil()
    monkeypatch.setattr(dalle, "_np", None)
    plain = gen.generate("a red ball", count=2, seed=5)
    assert isinstance(plain.images, bytes)
    assert np.array_equal(np.asarray(plain.to_pil()[1]), result.images[1])


def test_save_needs_no_pillow(gen, tmp_path, monkeypatch):
    result = gen.generate("a red ball", count=2, seed=5)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match="to_pil\\(\\) needs Pillow: pip install Pillow"):
        result.to_pil()
    paths = result.save(tmp_path / "{i}.png")  # the library's PNG encoder
    assert [os.path.basename(p) for p in paths] == ["0.png", "1.png"]
    assert np.array_equal(dalle.read_image(paths[1]), result.images[1])


def test_read_image_and_write_png(tmp_path, monkeypatch):
    picture = dalle.shapes_render("a red circle", seed=2)
    rgba = np.concatenate([picture, np.full((64, 64, 1), 9, np.uint8)], axis=-1)
    dalle.write_png(tmp_path / "rgba.png", rgba)  # alpha dropped
    assert np.array_equal(dalle.read_image(tmp_path / "rgba.png"), picture)
    with pytest.raises(dalle.DalleIOError, match="no/such"):
        dalle.write_png(tmp_path / "no" / "such" / "x.png", picture)
    with pytest.raises(dalle.BadFileError, match="not a PNG"):
        dalle.read_image(GEN_MODEL)
    with pytest.raises(dalle.InvalidArgumentError, match="channels is 2"):
        dalle.write_png(tmp_path / "x.png", picture[:, :, :2])
    with pytest.raises(ValueError, match="path contains a NUL"):
        dalle.read_image("a\0b.png")
    monkeypatch.setattr(dalle, "_np", None)
    dalle.write_png(tmp_path / "plain.png", picture.tobytes(), width=64, height=64)
    assert dalle.read_image(tmp_path / "plain.png") == picture.tobytes()
    with pytest.raises(ValueError, match="not a 64x32 RGB image"):
        dalle.write_png(tmp_path / "x.png", picture.tobytes(), width=64, height=32)
