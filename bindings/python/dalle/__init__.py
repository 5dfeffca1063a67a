"""libdalle from Python: load a model, encode images to dVAE tokens, decode them back.

    import dalle
    with dalle.Model("model.safetensors") as model, dalle.Context(model, threads=0) as ctx:
        tokens = ctx.encode(images)        # numpy (N, S, S, 3) uint8 -> (N, G, G) int32
        images = ctx.decode(tokens)        # (N, G, G) int32 -> (N, S, S, 3) uint8
        result = ctx.generate("a red ball", count=4, seed=1)   # .images, .tokens, .seed, ...
        result.save("out-{i}.png")         # PNG files, through the library
    dalle.default_model()                  # $DALLE_MODEL, else the installed shapes-world.safetensors

Without numpy, images are bytes (N·S·S·3, RGB8) and token grids are lists of ints.
Every failure raises a `dalle.DalleError` subclass carrying the library's message; arguments the
C types cannot hold (an integer out of range, a string with a NUL, float token ids) raise
ValueError before any call.
"""

from __future__ import annotations

import ctypes
import json
import operator
import os
import sys
from collections import namedtuple
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _lib
from ._lib import lib

try:
    import numpy as _np
except ImportError:  # numpy is optional
    _np = None

__all__ = ["Model", "Component", "Context", "Generation", "DalleError", "InvalidArgumentError", "BadFileError", "UnsupportedError",
           "DalleIOError", "DalleOutOfMemoryError", "CancelledError", "InternalError", "version",
           "system_info", "set_log_callback", "set_log_level", "shapes_render", "shapes_training_sample",
           "shapes_judge", "default_model", "read_image", "write_png", "train", "bundle"]

PathLike = Union[str, "os.PathLike[str]"]
# progress(phase, step, total): return False to cancel.
ProgressFn = Callable[[int, int, int], Optional[bool]]

__version__ = lib.dalle_version().decode()


class DalleError(Exception):
    """A failed libdalle call: `status` is the dalle_status code, `message` the library's text."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class InvalidArgumentError(DalleError, ValueError): pass
class BadFileError(DalleError): pass
class UnsupportedError(DalleError): pass
class DalleIOError(DalleError, OSError): pass
class DalleOutOfMemoryError(DalleError, MemoryError): pass
class CancelledError(DalleError): pass
class InternalError(DalleError): pass


_ERRORS = {
    _lib.DALLE_INVALID_ARGUMENT: InvalidArgumentError, _lib.DALLE_BAD_FILE: BadFileError,
    _lib.DALLE_UNSUPPORTED: UnsupportedError, _lib.DALLE_IO_ERROR: DalleIOError,
    _lib.DALLE_OUT_OF_MEMORY: DalleOutOfMemoryError, _lib.DALLE_CANCELLED: CancelledError,
    _lib.DALLE_INTERNAL_ERROR: InternalError,
}


def _check(status, message_fn=None):
    if status != _lib.DALLE_OK:
        raw = message_fn() if message_fn else lib.dalle_last_error()
        message = raw.decode("utf-8", "replace") if raw else lib.dalle_status_string(status).decode()
        raise _ERRORS.get(status, DalleError)(status, message)


# The C types of integer arguments: (lowest, highest).
_C_INTS = {"int32_t": (-2 ** 31, 2 ** 31 - 1), "uint32_t": (0, 2 ** 32 - 1), "uint64_t": (0, 2 ** 64 - 1)}


def _c_int(name: str, value: Any, c_type: str, low: Optional[int] = None) -> int:
    """`value` as an int that the C type holds (and at least `low`), else ValueError naming it
    (TypeError for a non-integer); ctypes would silently wrap it."""
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    lowest, highest = _C_INTS[c_type]
    lowest = lowest if low is None else max(lowest, low)
    if not lowest <= n <= highest:
        raise ValueError(f"{name} is {value!r}; it must be in {lowest}...{highest}")
    return n


def _c_string(name: str, text: Union[str, bytes]) -> bytes:
    """`text` as NUL-terminated UTF-8 for C; ValueError when it holds a NUL (C would cut it there)."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if b"\0" in data:
        raise ValueError(f"{name} contains a NUL character: {text!r}")
    return data


def _c_path(name: str, path: PathLike) -> bytes:
    """A file system path for C; ValueError when it holds a NUL."""
    return _c_string(name, os.fsencode(path))


def _safetensors_bytes(name: str, tensors: Dict[str, Any]) -> bytes:
    """A safetensors file holding `tensors` (name -> array) as float32, in memory."""
    if _np is None:
        raise TypeError(f"{name} as a dict of arrays needs numpy; pass a safetensors file's path or bytes")
    header, blobs, offset = {}, [], 0
    for key in sorted(tensors):
        data = _np.ascontiguousarray(tensors[key], dtype=_np.float32).tobytes()
        header[key] = {"dtype": "F32", "shape": list(_np.shape(tensors[key])), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(blobs)


def _token_ids(name: str, tokens: Any) -> Any:
    """`tokens` as an int32 numpy array, or ValueError for non-integer ids or ids out of int32."""
    array = _np.asarray(tokens)
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer ids, got dtype {array.dtype}")
    if array.size:
        low, high = _C_INTS["int32_t"]
        bad = array[(array < low) | (array > high)]
        if bad.size:
            raise ValueError(f"{name} holds the id {bad[0]}, out of int32 range")
    return _np.ascontiguousarray(array, dtype=_np.int32)


def version() -> str:
    """The loaded library's version string."""
    return lib.dalle_version().decode()


def system_info() -> str:
    """One line: version, SIMD level, cores."""
    return lib.dalle_system_info().decode()


DEFAULT_MODEL_NAME = "shapes-world.safetensors"


def default_model_candidates() -> List[str]:
    """Where default_model() looks, in order (after $DALLE_MODEL): share/dalle/models/ of the
    prefix the loaded libdalle.so is installed in (PREFIX/lib), of this Python's prefix, the
    checkout's models/ (this package's source tree), then models/ in the current directory."""
    library_dir = os.path.dirname(os.path.realpath(_lib.lib._name))
    package_dir = os.path.dirname(os.path.abspath(__file__))
    places = [os.path.join(library_dir, "..", "share", "dalle", "models"),
              os.path.join(sys.prefix, "share", "dalle", "models"),
              os.path.join(package_dir, "..", "..", "..", "models"),
              "models"]
    return [os.path.normpath(os.path.join(place, DEFAULT_MODEL_NAME)) for place in places]


def default_model() -> str:
    """The path of the default model, found as the `dalle` CLI finds it: $DALLE_MODEL, else the
    first readable default_model_candidates(). FileNotFoundError names every place it looked."""
    env = os.environ.get("DALLE_MODEL")
    if env:
        if not os.access(env, os.R_OK):
            raise FileNotFoundError(f"DALLE_MODEL is {env}, which cannot be read")
        return env
    candidates = default_model_candidates()
    for path in candidates:
        if os.access(path, os.R_OK):
            return path
    raise FileNotFoundError("no default model found; looked at $DALLE_MODEL (unset), " + ", ".join(candidates)
                            + ". Pass a path or set DALLE_MODEL.")


# Every log callback ever handed to the library stays alive: another thread may still be
# inside an old one while it is being replaced.
_log_callbacks = []


def set_log_callback(fn: Optional[Callable[[int, str], None]]) -> None:
    """Routes library log lines to fn(level, message); None restores the stderr logger."""
    if fn is None:
        lib.dalle_log_set(_lib.dalle_log_callback(), None)
        return
    callback = _lib.dalle_log_callback(lambda level, message, _: fn(level, message.decode("utf-8", "replace")))
    _log_callbacks.append(callback)
    lib.dalle_log_set(callback, None)


def set_log_level(level: int) -> None:
    """Drops messages below level (dalle._lib.DALLE_LOG_*; DALLE_LOG_NONE silences)."""
    if not isinstance(level, int) or not _lib.DALLE_LOG_DEBUG <= level <= _lib.DALLE_LOG_NONE:
        raise ValueError(f"level is {level!r}; use DALLE_LOG_DEBUG ({_lib.DALLE_LOG_DEBUG}) ... DALLE_LOG_NONE ({_lib.DALLE_LOG_NONE})")
    lib.dalle_log_set_level(level)


class _Progress:
    """Wraps a Python progress function fn(phase, step, total) -> bool|None as a C callback.
    An exception in fn stops the call; it is re-raised once the call returns."""

    def __init__(self, fn):
        self.fn = fn
        self.error = None
        self.c_callback = _lib.dalle_progress_callback(self._call) if fn else _lib.dalle_progress_callback()

    def _call(self, phase, step, total, _user_data):
        try:
            return self.fn(phase, step, total) is not False
        except BaseException as e:  # noqa: BLE001 - re-raised after the C call
            self.error = e
            return False

    def reraise(self):
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def _pillow() -> Any:
    """PIL.Image, or ImportError saying that Pillow is needed."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("Generation.to_pil() needs Pillow: pip install Pillow") from None
    return Image


class Generation(namedtuple("Generation", "images tokens prompt_tokens truncated_tokens generated_tokens seed "
                                          "scores log_likelihoods unknown_words", defaults=(0,))):
    """What Context.generate returns: images (N, S, S, 3) uint8 (bytes without numpy; None
    when images=False), tokens (N, G, G) int32 (lists without numpy), the prompt's text tokens used and
    dropped (past the model's text length), image tokens generated per image, the seed used, the
    kept images' CLIP scores in rank order (a list; empty unless keep_best reranked them), each image's
    mean log-probability per generated token under the transformer (a list, in the images' order), and
    the number of distinct prompt words outside the vocabulary the model records (words it was never
    trained on, also named in a warning through the log callback; 0 when it records none)."""

    __slots__ = ()

    def _pixels(self) -> List[Tuple[int, bytes]]:
        """(side, RGB8 bytes) of each image; ValueError when it was made with images=False."""
        if self.images is None:
            raise ValueError("this Generation has no images (it was made with images=False)")
        if _np is not None and not isinstance(self.images, bytes):
            return [(image.shape[0], image.tobytes()) for image in self.images]
        count = len(self.tokens)
        side = int(round((len(self.images) // (3 * count)) ** 0.5)) if count else 0
        size = side * side * 3
        return [(side, self.images[i * size:(i + 1) * size]) for i in range(count)]

    def to_pil(self) -> List[Any]:
        """The images as PIL images (RGB), in order. Needs Pillow (ImportError without it)."""
        Image = _pillow()
        return [Image.frombytes("RGB", (side, side), data) for side, data in self._pixels()]

    def save(self, path: PathLike) -> List[str]:
        """Writes the images as PNG files (with the library's encoder: no Pillow needed) and
        returns their paths: one image goes to `path`; with several, `path` must hold "{i}"
        (e.g. "out-{i:03d}.png"), formatted with each image's index."""
        pictures = self._pixels()
        template = os.fspath(path)
        if len(pictures) > 1 and "{i" not in template:
            raise ValueError(f"{len(pictures)} images need a path with {{i}} for the index, got {template!r}")
        paths = [template.format(i=i) if "{i" in template else template for i in range(len(pictures))]
        for (side, data), name in zip(pictures, paths):
            write_png(name, data, width=side, height=side)
        return paths


class Component(namedtuple("Component", "name variant n_params capabilities")):
    """One part of a loaded model (`Model.component_info`): its name in the file ("dvae",
    "tokenizer", "transformer", "clip", ...), its configuration's kind ("openai", "vit", ...),
    its parameter count and what it can do ("tokenize", "generate", "encode", "decode",
    "embed", "train")."""
    __slots__ = ()


_CAPABILITIES = (("tokenize", _lib.DALLE_CAN_TOKENIZE), ("generate", _lib.DALLE_CAN_GENERATE),
                 ("encode", _lib.DALLE_CAN_ENCODE), ("decode", _lib.DALLE_CAN_DECODE),
                 ("embed", _lib.DALLE_CAN_EMBED), ("train", _lib.DALLE_CAN_TRAIN))


class _Owned:
    """A library handle released by close(), at the end of a `with` block, or when collected."""

    _handle = None

    def _free(self, handle):
        raise NotImplementedError

    def close(self) -> None:
        """Releases the handle now (later calls raise InvalidArgumentError); closing twice is fine."""
        if self._handle is not None:
            self._free(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class Model(_Owned):
    """A loaded libdalle model (immutable; share it between contexts and threads).

    `source` is a path (str / os.PathLike) or the file's bytes. `progress(phase, step, total)`
    may return False to cancel loading."""

    def __init__(self, source: Union[PathLike, bytes, bytearray, memoryview], progress: Optional[ProgressFn] = None):
        self._handle = None
        callback = _Progress(progress)
        params = lib.dalle_model_default_params()
        params.progress = callback.c_callback
        handle = _lib.dalle_model_p()
        if isinstance(source, (bytes, bytearray, memoryview)):
            buffer = bytes(source)
            status = lib.dalle_model_load_buffer(buffer, len(buffer), ctypes.byref(params), ctypes.byref(handle))
        else:
            path = _c_path("the model path", source)
            status = lib.dalle_model_load_file(path, ctypes.byref(params), ctypes.byref(handle))
        callback.reraise()
        _check(status)
        self._handle = handle.value
        info = _lib.dalle_model_info()
        info.struct_size = ctypes.sizeof(info)
        _check(lib.dalle_model_get_info(self._handle, ctypes.byref(info)))
        count = ctypes.c_int32()
        _check(lib.dalle_model_component_count(self._handle, ctypes.byref(count)))
        self.component_info: List[Component] = []
        for index in range(count.value):
            part = _lib.dalle_component_info()
            part.struct_size = ctypes.sizeof(part)
            _check(lib.dalle_model_get_component(self._handle, index, ctypes.byref(part)))
            self.component_info.append(Component(
                part.name.decode(), part.variant.decode(), part.n_params,
                tuple(name for name, bit in _CAPABILITIES if part.capabilities & bit)))
        self.components = [part.name for part in self.component_info]
        self.image_size = info.image_size
        self.image_channels = info.image_channels
        self.token_grid_size = info.token_grid_size
        self.codebook_size = info.codebook_size
        self.n_params = info.n_params
        self.cond_scale = info.cond_scale  # the guidance scale the model was tuned for (1 = none)
        self.likelihood_weight = info.likelihood_weight  # the reranking weight it was tuned for (0 = CLIP alone)

    @property
    def handle(self) -> int:
        """The dalle_model pointer, for the ctypes layer (dalle._lib)."""
        if self._handle is None:
            raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT, "the model is closed")
        return self._handle

    def tokenize(self, text: str, mode: str = "model") -> Tuple[List[int], bool]:
        """`Context.tokenize` on a short-lived context: `(ids, truncated)`."""
        with Context(self, threads=1) as ctx:
            return ctx.tokenize(text, mode)

    def _free(self, handle):
        """Releases the model (contexts still open keep its weights alive)."""
        lib.dalle_model_free(handle)

    def __repr__(self) -> str:
        return (f"dalle.Model(components={self.components}, image_size={self.image_size}, "
                f"token_grid_size={self.token_grid_size}, codebook_size={self.codebook_size}, "
                f"n_params={self.n_params}, cond_scale={self.cond_scale}, likelihood_weight={self.likelihood_weight})")


_TOKENIZE_MODES = {"model": _lib.DALLE_TOKENIZE_MODEL, "raw": _lib.DALLE_TOKENIZE_RAW,
                   "clip": _lib.DALLE_TOKENIZE_CLIP, "dalle": _lib.DALLE_TOKENIZE_DALLE}



def _c_likelihood_weight(weight: Optional[float]) -> float:
    """The C likelihood_weight for `weight` (None: the model's tuned weight, C's
    DALLE_LIKELIHOOD_WEIGHT_MODEL); a negative or NaN weight is an InvalidArgumentError."""
    if weight is None:
        return _lib.DALLE_LIKELIHOOD_WEIGHT_MODEL
    if not weight >= 0:
        raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT,
                                   f"likelihood_weight is {float(weight)}; it must be >= 0 (None: the model's)")
    return weight


class Context(_Owned):
    """Per-caller state on a model: threads (0 = all cores), seed (None = random),
    progress(phase, step, total) -> False to cancel. Use from one thread at a time;
    `cancel()` may be called from any thread."""

    def __init__(self, model: Model, threads: int = 0, seed: Optional[int] = None,
                 progress: Optional[ProgressFn] = None):
        self._handle = None
        self.model = model  # keeps the Python object (and its handle) alive
        params = lib.dalle_context_default_params()
        params.n_threads = _c_int("threads", threads, "int32_t")
        params.seed = _lib.DALLE_SEED_RANDOM if seed is None else _c_int("seed", seed, "uint64_t")
        self._progress = _Progress(progress)  # the library calls it for this context's lifetime
        params.progress = self._progress.c_callback
        handle = _lib.dalle_context_p()
        _check(lib.dalle_context_create(model.handle, ctypes.byref(params), ctypes.byref(handle)))
        self._handle = handle.value

    def tokenize(self, text: str, mode: str = "model") -> Tuple[List[int], bool]:
        """Token ids of `text` and whether it was truncated, as `(ids, truncated)`. `mode`:
        "model" (the transformer's text stream if the model has one, else CLIP's), "raw" (no
        start/end tokens, no padding), "clip" (clip.tokenize, 77 ids) or "dalle" (DALL-E's
        text stream, padded with 0 to the text length)."""
        try:
            code = _TOKENIZE_MODES[mode]
        except KeyError:
            raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT,
                                       f"mode is {mode!r}; expected one of {sorted(_TOKENIZE_MODES)}") from None
        data = _c_string("text", text)
        count = ctypes.c_size_t()
        truncated = ctypes.c_bool()
        self._call(lib.dalle_tokenize, data, code, None, 0, ctypes.byref(count), ctypes.byref(truncated))
        ids = (ctypes.c_int32 * count.value)()
        self._call(lib.dalle_tokenize, data, code, ids, count.value, ctypes.byref(count), ctypes.byref(truncated))
        return list(ids), truncated.value

    @property
    def handle(self) -> int:
        """The dalle_context pointer, for the ctypes layer (dalle._lib)."""
        if self._handle is None:
            raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT, "the context is closed")
        return self._handle

    @property
    def seed(self) -> int:
        """The seed the context uses (the one picked when it was made with seed=None)."""
        return lib.dalle_context_seed(self.handle)

    @property
    def threads(self) -> int:
        """The worker threads the context uses."""
        return lib.dalle_context_threads(self.handle)

    def cancel(self) -> None:
        """Asks the call running on this context to stop (any thread)."""
        if self._handle is not None:
            lib.dalle_cancel(self._handle)

    def _call(self, fn, *args):
        handle = self.handle
        status = fn(handle, *args)
        self._progress.reraise()
        _check(status, lambda: lib.dalle_context_last_error(handle))

    def encode(self, images: Any) -> Any:
        """Token grids of images. `images`: a uint8 array (N, S, S, 3|4) or (S, S, 3|4), a list
        of such arrays, or (without numpy) bytes holding N·S·S·3 RGB8 bytes. Returns int32
        (N, G, G) with numpy, else a list of N grids as lists of G·G ints."""
        structs, keep = self._image_structs(images)
        out = _lib.dalle_tokens()
        self._call(lib.dalle_encode, structs, len(structs), ctypes.byref(out))
        try:
            n, g = out.count, out.rows * out.cols
            if _np is not None:
                if n == 0:
                    return _np.zeros((0, out.rows, out.cols), dtype=_np.int32)
                flat = _np.ctypeslib.as_array(out.data, shape=(n * g,)).copy()
                return flat.reshape(n, out.rows, out.cols)
            return [list(out.data[i * g:(i + 1) * g]) for i in range(n)]
        finally:
            del keep
            lib.dalle_tokens_free(ctypes.byref(out))

    def decode(self, tokens: Any) -> Any:
        """RGB8 images of token grids. `tokens`: int array (N, G, G) or (G, G), or a list of
        grids (lists of G·G ints). Returns uint8 (N, S, S, 3) with numpy, else bytes."""
        g = self.model.token_grid_size
        if _np is not None:
            array = _token_ids("tokens", tokens)
            if array.ndim == 2:
                array = array[None]
            if array.ndim != 3:
                raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT,
                                           f"tokens must be (N, {g}, {g}) or ({g}, {g}); got shape {array.shape}")
            n, rows, cols = array.shape
            data = array.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
            keep = array
        else:
            grids = [[_c_int("token id", t, "int32_t") for t in grid] for grid in tokens]
            n, rows, cols = len(grids), g, g
            for i, grid in enumerate(grids):
                if len(grid) != g * g:
                    raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT,
                                               f"token grid {i} has {len(grid)} ids; expected {g * g}")
            keep = (ctypes.c_int32 * (n * g * g))(*[t for grid in grids for t in grid])
            data = ctypes.cast(keep, ctypes.POINTER(ctypes.c_int32))
        request = _lib.dalle_tokens(count=n, rows=rows, cols=cols, data=data)
        out = _lib.dalle_image_batch()
        self._call(lib.dalle_decode, ctypes.byref(request), ctypes.byref(out))
        try:
            s = self.model.image_size
            size = s * s * 3
            chunks = [ctypes.string_at(out.images[i].data, size) for i in range(out.count)]
            if _np is not None:
                flat = _np.frombuffer(b"".join(chunks), dtype=_np.uint8)
                return flat.reshape(out.count, s, s, 3)
            return b"".join(chunks)
        finally:
            del keep
            lib.dalle_image_batch_free(ctypes.byref(out))

    def generate(self, prompt: str, count: int = 1, seed: Optional[int] = None, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, cond_scale: Optional[float] = None, prime: Any = None,
                 prime_rows: int = 0, images: bool = True, keep_best: int = 0,
                 likelihood_weight: Optional[float] = None, progress: Optional[ProgressFn] = None,
                 prior_steps: int = 0, decoder_steps: int = 0, super_res_steps: int = 0,
                 prior_guidance: float = 0.0, decoder_guidance: float = 0.0,
                 noise: Union[PathLike, bytes, Dict[str, Any], None] = None, image: Any = None,
                 interpolate_to: Any = None) -> Generation:
        """Generates `count` images for `prompt` ("" = unconditional) with the model's transformer.
        seed None uses the context's seed; top_k 1 is greedy; cond_scale != 1 is classifier-free
        guidance (None: the model's `cond_scale`). `prime`: image tokens (a grid from encode, or its first rows, or a flat list)
        whose first `prime_rows` rows every image keeps. keep_best K > 0 (needs CLIP in the
        model) returns only the K candidates CLIP scores best against the prompt, best first, ranked by
        CLIP score + likelihood_weight x log-likelihood (None: the model's `likelihood_weight`).
        `progress(phase, step, total)` (phase DALLE_PHASE_GENERATE per token, DALLE_PHASE_DECODE
        per image, then DALLE_PHASE_CLIP per CLIP batch) may return False to cancel
        (CancelledError). With an unCLIP (DALL-E 2) model: prior_steps / decoder_steps / super_res_steps
        and prior_guidance / decoder_guidance (0: Karlo's 25 / 25 / 7 and 4 / 8); it makes no image tokens.
        `noise` (unCLIP): the noise to use instead of drawing it, as a safetensors file's path or bytes,
        or a dict of float32 arrays by name (prior_latents, prior_step_noise, decoder_latents, ... as
        dalle.h's DALLE_UNCLIP_NOISE lists them; needs numpy). `image` (unCLIP with an image encoder;
        numpy (H, W, 3 or 4) uint8, any size; prompt ""): `count` variations of it. `interpolate_to`
        (unCLIP): a prompt, or with `image` an image: the `count` images are the frames of the
        spherical interpolation from `prompt` (or `image`) to it. Returns a Generation."""
        if not isinstance(prompt, str):
            raise TypeError("prompt must be a str")
        text = _c_string("prompt", prompt)
        count, prime_rows = _c_int("count", count, "uint32_t"), _c_int("prime_rows", prime_rows, "uint32_t")
        keep_best = _c_int("keep_best", keep_best, "uint32_t")
        callback = _Progress(progress)
        params = lib.dalle_generate_default_params()
        params.count = count
        params.seed = _lib.DALLE_SEED_RANDOM if seed is None else _c_int("seed", seed, "uint64_t")
        params.temperature, params.top_k, params.top_p = temperature, _c_int("top_k", top_k, "int32_t"), top_p
        params.cond_scale = self.model.cond_scale if cond_scale is None else cond_scale
        params.prime_rows = prime_rows
        params.keep_best = keep_best
        params.likelihood_weight = _c_likelihood_weight(likelihood_weight)
        params.prior_steps = _c_int("prior_steps", prior_steps, "uint32_t")
        params.decoder_steps = _c_int("decoder_steps", decoder_steps, "uint32_t")
        params.super_res_steps = _c_int("super_res_steps", super_res_steps, "uint32_t")
        params.prior_guidance, params.decoder_guidance = prior_guidance, decoder_guidance
        noise_bytes = None
        if isinstance(noise, dict):
            noise = _safetensors_bytes("noise", noise)
        if isinstance(noise, (bytes, bytearray, memoryview)):
            noise_bytes = ctypes.create_string_buffer(bytes(noise), len(noise))
            params.noise_data, params.noise_size = ctypes.cast(noise_bytes, ctypes.c_void_p), len(noise)
        elif noise is not None:
            params.noise_path = _c_path("the noise path", noise)
        start_image = end_image = None
        if image is not None:
            c_image, start_image = _one_image(image, None, None)
            params.init_image = ctypes.pointer(c_image)
        if isinstance(interpolate_to, str):
            params.interpolate_to = _c_string("interpolate_to", interpolate_to)
        elif interpolate_to is not None:
            c_end, end_image = _one_image(interpolate_to, None, None)
            params.interpolate_to_image = ctypes.pointer(c_end)
        # The library writes at most keep_best <= count <= DALLE_MAX_GENERATE scores (it refuses more).
        scores = (ctypes.c_float * max(0, min(keep_best, _lib.DALLE_MAX_GENERATE)))()
        params.out_scores = ctypes.cast(scores, ctypes.POINTER(ctypes.c_float))
        returned = keep_best if keep_best > 0 else count
        log_likelihoods = (ctypes.c_float * max(0, min(returned, _lib.DALLE_MAX_GENERATE)))()
        params.out_log_likelihoods = ctypes.cast(log_likelihoods, ctypes.POINTER(ctypes.c_float))
        keep = None
        if prime is not None and prime_rows:
            g = self.model_grid()
            flat = (_token_ids("prime", prime).reshape(-1).tolist() if _np is not None
                    else [_c_int("prime token id", t, "int32_t") for t in prime])
            if len(flat) < prime_rows * g:
                raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT,
                                           f"prime holds {len(flat)} ids; {prime_rows} rows need {prime_rows * g}")
            keep = (ctypes.c_int32 * (prime_rows * g))(*flat[:prime_rows * g])
            params.prime_tokens = ctypes.cast(keep, ctypes.POINTER(ctypes.c_int32))
        if progress is not None:
            params.progress = callback.c_callback
        out_images, out_tokens, info = _lib.dalle_image_batch(), _lib.dalle_tokens(), _lib.dalle_generate_info()
        info.struct_size = ctypes.sizeof(info)
        handle = self.handle
        status = lib.dalle_generate(handle, text, ctypes.byref(params),
                                    ctypes.byref(out_images) if images else None, ctypes.byref(out_tokens),
                                    ctypes.byref(info))
        del keep, noise_bytes, start_image, end_image
        callback.reraise()
        self._progress.reraise()
        _check(status, lambda: lib.dalle_context_last_error(handle))
        try:
            n, g = out_tokens.count, out_tokens.rows * out_tokens.cols
            if n == 0:  # a model that makes no image tokens (unCLIP)
                tokens = _np.zeros((0, 0, 0), dtype=_np.int32) if _np is not None else []
            elif _np is not None:
                tokens = _np.ctypeslib.as_array(out_tokens.data, shape=(n * g,)).copy().reshape(n, out_tokens.rows, out_tokens.cols)
            else:
                tokens = [list(out_tokens.data[i * g:(i + 1) * g]) for i in range(n)]
            pictures = None
            if images:
                first = out_images.images[0]
                size = first.width * first.height * 3
                raw = b"".join(ctypes.string_at(out_images.images[i].data, size) for i in range(out_images.count))
                pictures = (_np.frombuffer(raw, dtype=_np.uint8).reshape(out_images.count, first.height, first.width, 3)
                            if _np is not None else raw)
            return Generation(pictures, tokens, info.prompt_tokens, info.truncated_tokens, info.generated_tokens, info.seed,
                              list(scores), list(log_likelihoods[:n]), info.unknown_words)
        finally:
            lib.dalle_tokens_free(ctypes.byref(out_tokens))
            lib.dalle_image_batch_free(ctypes.byref(out_images))

    def model_grid(self) -> int:
        """Rows of the image-token grid (the dVAE's, which the transformer's must equal)."""
        return self.model.token_grid_size
    # CLIP: images of any size (uint8 (H, W, 3|4) arrays, or a list of them), prompts as str.

    def clip_embedding_size(self) -> int:
        """The length of the model's CLIP embeddings."""
        size = ctypes.c_uint32()
        _check(lib.dalle_clip_embedding_size(self.model.handle, ctypes.byref(size)))
        return size.value

    def clip_encode_text(self, prompt: str) -> Any:
        """CLIP's text embedding of `prompt` (not normalised): a float32 array (or list) of embed_dim."""
        d = self.clip_embedding_size()
        out = (ctypes.c_float * d)()
        self._call(lib.dalle_clip_encode_text, _c_string("prompt", prompt) if prompt is not None else None, out, d)
        return _np.array(out, dtype=_np.float32) if _np is not None else list(out)

    def clip_encode_images(self, images: Any) -> Any:
        """CLIP's image embeddings (not normalised) of images of any size: float32 (N, embed_dim)."""
        if _np is None:
            raise TypeError("clip_encode_images needs numpy")
        structs, keep = self._image_structs(images)
        d = self.clip_embedding_size()
        out = _np.zeros((len(structs), d), dtype=_np.float32)
        self._call(lib.dalle_clip_encode_images, structs, len(structs),
                   out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), d)
        del keep
        return out

    def rerank(self, prompt: str, images: Any) -> Tuple[Any, List[int]]:
        """Scores images of any size against `prompt` with the model's CLIP. Returns (scores,
        order): scores[i] = exp(logit_scale) · cos(image i, prompt), order = indices best first."""
        if _np is None:
            raise TypeError("rerank needs numpy")
        structs, keep = self._image_structs(images)
        n = len(structs)
        scores = (ctypes.c_float * max(n, 1))()
        order = (ctypes.c_uint32 * max(n, 1))()
        self._call(lib.dalle_rerank, _c_string("prompt", prompt) if prompt is not None else None, structs, n, scores, order)
        del keep
        return _np.array(scores[:n], dtype=_np.float32), [int(i) for i in order[:n]]

    def _eval_params(self, candidates, seed, temperature, top_k, top_p, cond_scale, callback, likelihood_weight=None):
        """dalle_eval_params with these draws (seed None: the context's; cond_scale and
        likelihood_weight None: the model's)."""
        params = lib.dalle_eval_default_params()
        params.candidates = _c_int("candidates", candidates, "uint32_t")
        params.seed = _lib.DALLE_SEED_RANDOM if seed is None else _c_int("seed", seed, "uint64_t")
        params.temperature, params.top_k, params.top_p = temperature, _c_int("top_k", top_k, "int32_t"), top_p
        params.cond_scale = self.model.cond_scale if cond_scale is None else cond_scale
        params.likelihood_weight = _c_likelihood_weight(likelihood_weight)
        if callback.fn:
            params.progress = callback.c_callback
        return params

    def shapes_candidates(self, out_path: PathLike, captions: int, candidates: int = 8, seed: Optional[int] = 0,
                          temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                          cond_scale: Optional[float] = None, progress: Optional[ProgressFn] = None) -> None:
        """Writes a judged candidate set (as `dalle candidates`) to out_path: `candidates` images for
        each of the first `captions` captions of the Shapes World training stream `seed` (None: the
        context's seed), the judge's verdicts and each caption's reconstruction. `train(..., data=
        out_path)` then trains CLIP with the failing candidates as hard negatives. progress as
        shapes_eval (one step per caption)."""
        callback = _Progress(progress)
        params = self._eval_params(candidates, seed, temperature, top_k, top_p, cond_scale, callback)
        handle = self.handle
        status = lib.dalle_shapes_candidates(handle, ctypes.byref(params), _c_int("captions", captions, "uint32_t"),
                                             _c_path("out_path", out_path))
        callback.reraise()
        self._progress.reraise()
        _check(status, lambda: lib.dalle_context_last_error(handle))

    def shapes_eval(self, candidates: int = 8, seed: Optional[int] = 0, per_template: int = 50,
                    per_held_out_pair: int = 10, reconstruction_samples: int = 200, temperature: float = 1.0,
                    top_k: int = 0, top_p: float = 1.0, cond_scale: Optional[float] = None,
                    likelihood_weight: Optional[float] = None, progress: Optional[ProgressFn] = None) -> Dict[str, Any]:
        """The Shapes World evaluation (as `dalle eval`) with this context's model: generates
        `candidates` images for each caption of the fixed, seeded evaluation set, judges them, and
        runs world images through the dVAE (candidates=0: that alone, for a model with only a dVAE
        too). seed None uses the context's seed; cond_scale and
        likelihood_weight (CLIP's pick, as generate) None the model's. `progress(phase,
        step, total)` (DALLE_PHASE_EVAL: one step per caption, then per reconstruction) may return
        False to cancel (CancelledError). Returns a dict: "has_clip", one dict per group ("one
        object", "counting", "relation", "held-out pairs", "all captions") with the counts of
        dalle_eval_group and the rates "best_by_clip" (None without CLIP), "average", "any_of_n"
        and "rerank_lift", and "reconstruction" (images, passed, rate)."""
        callback = _Progress(progress)
        params = self._eval_params(candidates, seed, temperature, top_k, top_p, cond_scale, callback, likelihood_weight)
        params.per_template = _c_int("per_template", per_template, "uint32_t")
        params.per_held_out_pair = _c_int("per_held_out_pair", per_held_out_pair, "uint32_t")
        params.reconstruction_samples = _c_int("reconstruction_samples", reconstruction_samples, "uint32_t")
        report = _lib.dalle_eval_report()
        report.struct_size = ctypes.sizeof(report)
        handle = self.handle
        status = lib.dalle_shapes_eval(handle, ctypes.byref(params), ctypes.byref(report))
        callback.reraise()
        self._progress.reraise()
        _check(status, lambda: lib.dalle_context_last_error(handle))

        def rate(n, d):
            return n / d if d else None

        def group(g):
            best = rate(g.passed_best_by_clip, g.captions) if g.passed_best_by_clip >= 0 else None
            average = rate(g.passed_candidates, g.candidates)
            return {"captions": g.captions, "candidates": g.candidates,
                    "passed_best_by_clip": g.passed_best_by_clip if g.passed_best_by_clip >= 0 else None,
                    "passed_candidates": g.passed_candidates, "passed_any": g.passed_any,
                    "best_by_clip": best, "average": average, "any_of_n": rate(g.passed_any, g.captions),
                    "rerank_lift": best - average if best is not None and average is not None else None}

        result = {"has_clip": bool(report.has_clip)}
        for name, field in [("one object", "one_object"), ("counting", "counting"), ("relation", "relation"),
                            ("held-out pairs", "held_out"), ("all captions", "total")]:
            result[name] = group(getattr(report, field))
        result["reconstruction"] = {"images": report.reconstruction_images, "passed": report.reconstruction_passed,
                                    "rate": rate(report.reconstruction_passed, report.reconstruction_images)}
        return result

    def _image_structs(self, images):
        """dalle_image structs pointing into the caller's pixels, and the objects to keep alive."""
        s = self.model.image_size
        if isinstance(images, (bytes, bytearray, memoryview)):
            raw = bytes(images)
            size = s * s * 3
            if size == 0 or len(raw) % size:
                raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT,
                                           f"{len(raw)} bytes is not a whole number of {s}x{s} RGB images ({size} bytes each)")
            buffer = ctypes.create_string_buffer(raw, len(raw))
            base = ctypes.addressof(buffer)
            structs = (_lib.dalle_image * (len(raw) // size))()
            for i in range(len(structs)):
                structs[i] = _lib.dalle_image(s, s, 3, ctypes.cast(base + i * size, ctypes.POINTER(ctypes.c_uint8)))
            return structs, buffer
        if _np is None:
            raise TypeError("without numpy, images must be bytes of N·S·S·3 RGB8 pixels")
        arrays = [images] if not isinstance(images, (list, tuple)) else list(images)
        batch = []
        for a in arrays:
            a = _np.asarray(a)
            if a.dtype != _np.uint8:
                raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT, f"images must be uint8, got {a.dtype}")
            batch.extend([a] if a.ndim == 3 else list(a) if a.ndim == 4 else [None])
            if a.ndim not in (3, 4):
                raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT,
                                           f"images must be (N, H, W, C) or (H, W, C); got shape {a.shape}")
        batch = [_np.ascontiguousarray(a) for a in batch]
        structs = (_lib.dalle_image * len(batch))()
        for i, a in enumerate(batch):
            h, w, c = a.shape
            structs[i] = _lib.dalle_image(w, h, c, a.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
        return structs, batch

    def _free(self, handle):
        lib.dalle_context_free(handle)


# Shapes World: synthetic captions and images, and the judge of the evaluation (no model).

def _take_image(image):
    """The pixels of a library-allocated dalle_image (freed here): numpy (H, W, 3) uint8, or bytes."""
    try:
        raw = ctypes.string_at(image.data, image.width * image.height * 3)
        return _np.frombuffer(raw, dtype=_np.uint8).reshape(image.height, image.width, 3) if _np is not None else raw
    finally:
        lib.dalle_image_free(ctypes.byref(image))


def read_image(path: PathLike) -> Any:
    """The PNG file at `path` as RGB8 (alpha dropped): numpy (H, W, 3) uint8, or bytes without numpy."""
    out = _lib.dalle_image()
    _check(lib.dalle_image_read_file(_c_path("path", path), ctypes.byref(out)))
    return _take_image(out)


def _one_image(image: Any, width: Optional[int], height: Optional[int]) -> Tuple[Any, Any]:
    """A dalle_image borrowing `image` (numpy (H, W, C) uint8, or bytes of width x height RGB8
    pixels), and the object to keep alive while the library reads it."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        w, h = _c_int("width", width, "uint32_t"), _c_int("height", height, "uint32_t")
        if len(image) != w * h * 3:
            raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT,
                                       f"{len(image)} bytes is not a {w}x{h} RGB image ({w * h * 3} bytes)")
        keep = ctypes.create_string_buffer(bytes(image), len(image))
        return _lib.dalle_image(w, h, 3, ctypes.cast(keep, ctypes.POINTER(ctypes.c_uint8))), keep
    if _np is None:
        raise TypeError("without numpy, an image is bytes of RGB8 pixels")
    keep = _np.ascontiguousarray(image)
    if keep.dtype != _np.uint8 or keep.ndim != 3:
        raise InvalidArgumentError(_lib.DALLE_INVALID_ARGUMENT,
                                   f"image must be (H, W, C) uint8; got shape {keep.shape}, {keep.dtype}")
    h, w, c = keep.shape
    return _lib.dalle_image(w, h, c, keep.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8))), keep


def write_png(path: PathLike, image: Any, width: Optional[int] = None, height: Optional[int] = None) -> None:
    """Writes an RGB8 PNG file: `image` is a numpy (H, W, 3|4) uint8 array (alpha dropped), or
    bytes of width x height RGB pixels (then width and height are needed)."""
    struct, keep = _one_image(image, width, height)
    _check(lib.dalle_image_write_png(_c_path("path", path), ctypes.byref(struct)))
    del keep


def shapes_render(caption: str, seed: int = 0) -> Any:
    """Renders a Shapes World caption: numpy (64, 64, 3) uint8 (bytes without numpy)."""
    out = _lib.dalle_image()
    _check(lib.dalle_shapes_render(_c_string("caption", caption), _c_int("seed", seed, "uint64_t"), ctypes.byref(out)))
    return _take_image(out)


def shapes_training_sample(seed: int, index: int) -> Tuple[str, Any]:
    """Sample `index` of the training stream `seed`: (caption, image)."""
    seed, index = _c_int("seed", seed, "uint64_t"), _c_int("index", index, "uint64_t")
    length = ctypes.c_size_t()
    _check(lib.dalle_shapes_training_sample(seed, index, None, 0, ctypes.byref(length), None))
    buffer = ctypes.create_string_buffer(length.value + 1)
    out = _lib.dalle_image()
    _check(lib.dalle_shapes_training_sample(seed, index, buffer, len(buffer), ctypes.byref(length), ctypes.byref(out)))
    return buffer.value.decode(), _take_image(out)


def shapes_judge(image: Any, caption: str) -> Tuple[bool, str]:
    """Judges a 64x64 RGB/RGBA image (numpy (H, W, C) uint8, or 64·64·3 bytes) against a caption:
    (passed, reason), reason "" on a pass."""
    size = _lib.DALLE_SHAPES_IMAGE_SIZE
    struct, keep = _one_image(image, size, size)
    passed = ctypes.c_bool()
    reason = ctypes.create_string_buffer(4096)
    _check(lib.dalle_shapes_judge(ctypes.byref(struct), _c_string("caption", caption), ctypes.byref(passed), reason,
                                  len(reason)))
    del keep
    return bool(passed.value), reason.value.decode("utf-8", "replace")


def train(stage: str, data: PathLike, out_path: PathLike, tokenizer: Optional[PathLike] = None,
          dvae: Optional[PathLike] = None, config: Optional[Dict[str, Any]] = None, steps: int = 1000,
          batch_size: int = 16, learning_rate: float = 1e-3, warmup_steps: int = 100, weight_decay: float = 0.01,
          gradient_clip: float = 1.0, seed: int = 0, validation_count: int = 64, checkpoint_every: int = 100,
          vocab_size: int = 1024, threads: int = 0, progress: Optional[Callable[[int, int, float, float], Any]] = None,
          dvae_schedule: Optional[Dict[str, Any]] = None, init: Optional[PathLike] = None,
          freeze: Optional[Sequence[str]] = None, caption_dropout: float = 0.0, caption_negatives: int = 0) -> PathLike:
    """Trains one component ("tokenizer", "dvae", "transformer", "clip") on "shapes" (or
    "shapes-near-misses": every caption followed by a near miss, hard negatives for CLIP; "shapes-defects": every
    picture with two defect images, misshapen, merged, missing, extra or resized objects, as CLIP's hard
    negatives; any of the three followed by ":S,C,R" weighs the one object, counting and relation templates,
    default "shapes:1,1,2"), a judged candidate
    set FILE.safetensors (`dalle candidates`: a model's failing candidates as CLIP's hard negatives; several,
    comma-separated, are joined) or a
    folder of NAME.png + NAME.txt, writing a checkpoint to out_path (resumed when it exists). config is a dict of
    model settings, e.g. {"dim": 256}; dvae_schedule a dict of dVAE recipe settings as `dalle train
    --dvae-schedule` takes them, e.g. {"kmeans": 64, "usage": 1}; init a model file whose weights start the run
    (fine-tuning); freeze a list of parameter-name prefixes left unchanged (e.g. ["clip.transformer."]);
    caption_dropout the share of transformer examples trained on the empty caption (for cond_scale);
    caption_negatives how many near misses of each Shapes World caption CLIP trains against (0-8).
    progress(step, total, loss, validation_loss) returning False stops the run after a checkpoint
    (CancelledError). Returns out_path."""
    p = _lib.lib.dalle_train_default_params()
    p.stage, p.data, p.out_path = _c_string("stage", stage), _c_path("data", data), _c_path("out_path", out_path)
    p.tokenizer_path = _c_path("tokenizer", tokenizer) if tokenizer else None
    p.dvae_path = _c_path("dvae", dvae) if dvae else None
    p.config = _c_string("config", ",".join(f"{k}={v}" for k, v in config.items())) if config else None
    p.dvae_schedule = (_c_string("dvae_schedule", ",".join(f"{k}={v}" for k, v in dvae_schedule.items()))
                       if dvae_schedule else None)
    p.init_path = _c_path("init", init) if init else None
    p.freeze = _c_string("freeze", ",".join(freeze)) if freeze else None
    p.caption_dropout = caption_dropout
    p.caption_negatives = _c_int("caption_negatives", caption_negatives, "int32_t")
    p.steps, p.batch_size = _c_int("steps", steps, "int32_t"), _c_int("batch_size", batch_size, "int32_t")
    p.learning_rate, p.warmup_steps = learning_rate, _c_int("warmup_steps", warmup_steps, "int32_t")
    p.weight_decay, p.gradient_clip, p.seed = weight_decay, gradient_clip, _c_int("seed", seed, "uint64_t")
    p.validation_count = _c_int("validation_count", validation_count, "int32_t")
    p.checkpoint_every = _c_int("checkpoint_every", checkpoint_every, "int32_t")
    p.vocab_size, p.n_threads = _c_int("vocab_size", vocab_size, "int32_t"), _c_int("threads", threads, "int32_t")
    callback = _lib.dalle_train_callback(lambda step, total, loss, val, _: bool(progress(step, total, loss, val))) \
        if progress else _lib.dalle_train_callback()
    p.progress = callback
    _check(_lib.lib.dalle_train(ctypes.byref(p)))
    return out_path


def bundle(parts: Sequence[PathLike], out_path: PathLike, dtype: str = "f16", cond_scale: Optional[float] = None,
           likelihood_weight: Optional[float] = None) -> PathLike:
    """Joins trained parts (tokenizer, dvae, transformer, clip files; each component from the first
    part that holds it) into one model file, weights stored as dtype ("f16", "bf16", "f32", or
    "q8" / "q4": linear layers block-quantized as GGUF's q8_0 / q4_0, the rest f16);
    cond_scale and likelihood_weight, when given, are recorded as the model's guidance scale and
    reranking weight (Model.cond_scale, Model.likelihood_weight)."""
    weight_types = {"f32": _lib.DALLE_WEIGHTS_F32, "f16": _lib.DALLE_WEIGHTS_F16, "bf16": _lib.DALLE_WEIGHTS_BF16,
                    "q8": _lib.DALLE_WEIGHTS_Q8_0, "q4": _lib.DALLE_WEIGHTS_Q4_0}
    if dtype not in weight_types:
        raise ValueError(f"dtype must be one of {sorted(weight_types)}, got {dtype!r}")
    p = _lib.lib.dalle_bundle_default_params()
    p.weight_type = weight_types[dtype]
    if cond_scale is not None:
        p.cond_scale = cond_scale
    if likelihood_weight is not None:
        p.likelihood_weight = likelihood_weight
    paths = (ctypes.c_char_p * len(parts))(*[_c_path("part path", x) for x in parts])
    _check(_lib.lib.dalle_bundle_with_params(paths, len(parts), _c_path("out_path", out_path), ctypes.byref(p)))
    return out_path
