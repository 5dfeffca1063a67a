"""The Shapes World through the Python binding: render -> judge round trips, the training
stream, and errors carrying the library's message."""

import numpy as np
import pytest

import dalle

CAPTION = "a red circle to the left of a green square"


def test_render_then_judge():
    image = dalle.shapes_render(CAPTION, seed=3)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert dalle.shapes_judge(image, CAPTION) == (True, "")
    assert np.array_equal(image, dalle.shapes_render(CAPTION, seed=3))
    passed, reason = dalle.shapes_judge(image, "two blue squares")
    assert not passed and "two blue squares" in reason


def test_training_sample_passes_its_own_caption():
    caption, image = dalle.shapes_training_sample(5, 17)
    assert image.shape == (64, 64, 3)
    assert dalle.shapes_judge(image, caption) == (True, "")
    assert dalle.shapes_training_sample(5, 17)[0] == caption


def test_errors_carry_the_library_message():
    with pytest.raises(dalle.InvalidArgumentError, match="dalle_shapes_render: invalid argument: .*word"):
        dalle.shapes_render("a purple elephant")
    image = dalle.shapes_render(CAPTION)
    with pytest.raises(dalle.InvalidArgumentError, match="judges 64x64 images"):
        dalle.shapes_judge(image[:32], CAPTION)
