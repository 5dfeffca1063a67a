"""Low-level ctypes mirror of include/dalle.h, one-to-one: constants, structs, callback
types and function prototypes. The pleasant API is in dalle/__init__.py."""

import ctypes
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char_p, c_float, c_int32, c_size_t,
                    c_uint8, c_uint32, c_uint64, c_void_p)

# Status codes
DALLE_OK = 0
DALLE_INVALID_ARGUMENT = 1
DALLE_BAD_FILE = 2
DALLE_UNSUPPORTED = 3
DALLE_IO_ERROR = 4
DALLE_OUT_OF_MEMORY = 5
DALLE_CANCELLED = 6
DALLE_INTERNAL_ERROR = 7

# Log levels
DALLE_LOG_DEBUG = 0
DALLE_LOG_INFO = 1
DALLE_LOG_WARN = 2
DALLE_LOG_ERROR = 3
DALLE_LOG_NONE = 4

dalle_tokenize_mode = c_int32
DALLE_TOKENIZE_MODEL = 0
DALLE_TOKENIZE_RAW = 1
DALLE_TOKENIZE_CLIP = 2
DALLE_TOKENIZE_DALLE = 3

# Components
DALLE_COMPONENT_DVAE = 1 << 0
DALLE_COMPONENT_TOKENIZER = 1 << 1
DALLE_COMPONENT_TRANSFORMER = 1 << 2
DALLE_COMPONENT_CLIP = 1 << 3
DALLE_COMPONENT_UNCLIP = 1 << 4
DALLE_CAN_TOKENIZE = 1 << 0
DALLE_CAN_GENERATE = 1 << 1
DALLE_CAN_ENCODE = 1 << 2
DALLE_CAN_DECODE = 1 << 3
DALLE_CAN_EMBED = 1 << 4
DALLE_CAN_TRAIN = 1 << 5

# Weight types of a bundle
DALLE_WEIGHTS_F32 = 0
DALLE_WEIGHTS_F16 = 1
DALLE_WEIGHTS_BF16 = 2
DALLE_WEIGHTS_Q8_0 = 3
DALLE_WEIGHTS_Q4_0 = 4

# Progress phases
DALLE_PHASE_LOAD = 0
DALLE_PHASE_ENCODE = 1
DALLE_PHASE_DECODE = 2
DALLE_PHASE_GENERATE = 3
DALLE_PHASE_CLIP = 4
DALLE_PHASE_EVAL = 5

DALLE_SEED_RANDOM = 0xFFFFFFFFFFFFFFFF
DALLE_MAX_BATCH = 4096
DALLE_MAX_GENERATE = 256
DALLE_LIKELIHOOD_WEIGHT_MODEL = -1.0
DALLE_SHAPES_IMAGE_SIZE = 64


dalle_status = c_int32
dalle_log_level = c_int32
dalle_phase = c_int32

dalle_progress_callback = CFUNCTYPE(c_bool, dalle_phase, c_int32, c_int32, c_void_p)
dalle_log_callback = CFUNCTYPE(None, dalle_log_level, c_char_p, c_void_p)


class dalle_image(Structure):
    _fields_ = [("width", c_uint32), ("height", c_uint32), ("channels", c_uint32),
                ("data", POINTER(c_uint8))]


class dalle_image_batch(Structure):
    _fields_ = [("count", c_uint32), ("images", POINTER(dalle_image))]


class dalle_tokens(Structure):
    _fields_ = [("count", c_uint32), ("rows", c_uint32), ("cols", c_uint32),
                ("data", POINTER(c_int32))]


class dalle_model_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("progress", dalle_progress_callback),
                ("progress_user_data", c_void_p)]


class dalle_model_info(Structure):
    _fields_ = [("struct_size", c_uint32), ("components", c_uint32), ("image_size", c_uint32),
                ("image_channels", c_uint32), ("token_grid_size", c_uint32),
                ("codebook_size", c_uint32), ("n_params", c_uint64), ("cond_scale", c_float),
                ("likelihood_weight", c_float)]


class dalle_component_info(Structure):
    _fields_ = [("struct_size", c_uint32), ("component", c_uint32), ("capabilities", c_uint32),
                ("reserved", c_uint32), ("n_params", c_uint64), ("name", ctypes.c_char * 32),
                ("variant", ctypes.c_char * 32)]


class dalle_context_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("n_threads", c_int32), ("seed", c_uint64),
                ("progress", dalle_progress_callback), ("progress_user_data", c_void_p)]


class dalle_generate_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("count", c_uint32), ("seed", c_uint64), ("temperature", c_float),
                ("top_k", c_int32), ("top_p", c_float), ("cond_scale", c_float), ("prime_rows", c_uint32),
                ("prime_tokens", POINTER(c_int32)), ("progress", dalle_progress_callback),
                ("progress_user_data", c_void_p), ("keep_best", c_uint32), ("out_scores", POINTER(c_float)),
                ("out_log_likelihoods", POINTER(c_float)), ("likelihood_weight", c_float),
                ("prior_steps", c_uint32), ("decoder_steps", c_uint32), ("super_res_steps", c_uint32),
                ("prior_guidance", c_float), ("decoder_guidance", c_float),
                ("noise_path", c_char_p), ("noise_data", c_void_p), ("noise_size", c_uint64),
                ("init_image", POINTER(dalle_image)), ("interpolate_to", c_char_p),
                ("interpolate_to_image", POINTER(dalle_image))]


class dalle_generate_info(Structure):
    _fields_ = [("struct_size", c_uint32), ("prompt_tokens", c_uint32), ("truncated_tokens", c_uint32),
                ("generated_tokens", c_uint32), ("seed", c_uint64), ("unknown_words", c_uint32)]


class dalle_eval_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("candidates", c_uint32), ("seed", c_uint64), ("per_template", c_uint32),
                ("per_held_out_pair", c_uint32), ("reconstruction_samples", c_uint32), ("temperature", c_float),
                ("top_k", c_int32), ("top_p", c_float), ("cond_scale", c_float), ("progress", dalle_progress_callback),
                ("progress_user_data", c_void_p), ("likelihood_weight", c_float)]


class dalle_eval_group(Structure):
    _fields_ = [("captions", c_uint32), ("candidates", c_uint32), ("passed_best_by_clip", c_int32),
                ("passed_candidates", c_uint32), ("passed_any", c_uint32)]


class dalle_eval_report(Structure):
    _fields_ = [("struct_size", c_uint32), ("has_clip", c_uint32), ("one_object", dalle_eval_group),
                ("counting", dalle_eval_group), ("relation", dalle_eval_group), ("held_out", dalle_eval_group),
                ("total", dalle_eval_group), ("reconstruction_images", c_uint32), ("reconstruction_passed", c_uint32)]


dalle_model_p = c_void_p
dalle_context_p = c_void_p

dalle_train_callback = CFUNCTYPE(c_bool, c_int32, c_int32, c_float, c_float, c_void_p)


class dalle_train_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("n_threads", c_int32), ("stage", c_char_p), ("data", c_char_p),
                ("out_path", c_char_p), ("tokenizer_path", c_char_p), ("dvae_path", c_char_p), ("config", c_char_p),
                ("steps", c_int32), ("batch_size", c_int32), ("learning_rate", c_float), ("warmup_steps", c_int32),
                ("weight_decay", c_float), ("gradient_clip", c_float), ("seed", c_uint64), ("validation_count", c_int32),
                ("checkpoint_every", c_int32), ("vocab_size", c_int32), ("progress", dalle_train_callback),
                ("progress_user_data", c_void_p), ("dvae_schedule", c_char_p), ("init_path", c_char_p),
                ("freeze", c_char_p), ("caption_dropout", c_float), ("caption_negatives", c_int32)]


class dalle_bundle_params(Structure):
    _fields_ = [("struct_size", c_uint32), ("weight_type", c_int32), ("cond_scale", c_float), ("likelihood_weight", c_float)]


# name: (restype, argtypes)
PROTOTYPES = {
    "dalle_version": (c_char_p, []),
    "dalle_status_string": (c_char_p, [dalle_status]),
    "dalle_last_error": (c_char_p, []),
    "dalle_system_info": (c_char_p, []),
    "dalle_log_set": (None, [dalle_log_callback, c_void_p]),
    "dalle_log_set_level": (None, [dalle_log_level]),
    "dalle_model_default_params": (dalle_model_params, []),
    "dalle_model_load_file": (dalle_status, [c_char_p, POINTER(dalle_model_params), POINTER(dalle_model_p)]),
    "dalle_model_load_buffer": (dalle_status, [c_void_p, c_size_t, POINTER(dalle_model_params), POINTER(dalle_model_p)]),
    "dalle_model_load_default": (dalle_status, [POINTER(dalle_model_params), POINTER(dalle_model_p)]),
    "dalle_model_free": (None, [dalle_model_p]),
    "dalle_model_get_info": (dalle_status, [dalle_model_p, POINTER(dalle_model_info)]),
    "dalle_model_component_count": (dalle_status, [dalle_model_p, POINTER(c_int32)]),
    "dalle_model_get_component": (dalle_status, [dalle_model_p, c_int32, POINTER(dalle_component_info)]),
    "dalle_context_default_params": (dalle_context_params, []),
    "dalle_context_create": (dalle_status, [dalle_model_p, POINTER(dalle_context_params), POINTER(dalle_context_p)]),
    "dalle_context_free": (None, [dalle_context_p]),
    "dalle_context_last_error": (c_char_p, [dalle_context_p]),
    "dalle_context_seed": (c_uint64, [dalle_context_p]),
    "dalle_context_threads": (c_int32, [dalle_context_p]),
    "dalle_cancel": (None, [dalle_context_p]),
    "dalle_tokenize": (dalle_status, [dalle_context_p, c_char_p, dalle_tokenize_mode, POINTER(c_int32), c_size_t,
                                      POINTER(c_size_t), POINTER(c_bool)]),
    "dalle_encode": (dalle_status, [dalle_context_p, POINTER(dalle_image), c_uint32, POINTER(dalle_tokens)]),
    "dalle_decode": (dalle_status, [dalle_context_p, POINTER(dalle_tokens), POINTER(dalle_image_batch)]),
    "dalle_tokens_free": (None, [POINTER(dalle_tokens)]),
    "dalle_image_batch_free": (None, [POINTER(dalle_image_batch)]),
    "dalle_generate_default_params": (dalle_generate_params, []),
    "dalle_generate": (dalle_status, [dalle_context_p, c_char_p, POINTER(dalle_generate_params),
                                      POINTER(dalle_image_batch), POINTER(dalle_tokens), POINTER(dalle_generate_info)]),
    # CLIP
    "dalle_clip_embedding_size": (dalle_status, [dalle_model_p, POINTER(c_uint32)]),
    "dalle_clip_encode_text": (dalle_status, [dalle_context_p, c_char_p, POINTER(ctypes.c_float), c_uint32]),
    "dalle_clip_encode_images": (dalle_status, [dalle_context_p, POINTER(dalle_image), c_uint32,
                                                POINTER(ctypes.c_float), c_uint32]),
    "dalle_rerank": (dalle_status, [dalle_context_p, c_char_p, POINTER(dalle_image), c_uint32,
                                    POINTER(ctypes.c_float), POINTER(c_uint32)]),
    # Shapes World
    "dalle_shapes_render": (dalle_status, [c_char_p, c_uint64, POINTER(dalle_image)]),
    "dalle_shapes_training_sample": (dalle_status, [c_uint64, c_uint64, ctypes.c_char_p, c_size_t, POINTER(c_size_t),
                                                    POINTER(dalle_image)]),
    "dalle_shapes_judge": (dalle_status, [POINTER(dalle_image), c_char_p, POINTER(c_bool), ctypes.c_char_p, c_size_t]),
    "dalle_image_free": (None, [POINTER(dalle_image)]),
    "dalle_image_read_file": (dalle_status, [c_char_p, POINTER(dalle_image)]),
    "dalle_image_write_png": (dalle_status, [c_char_p, POINTER(dalle_image)]),
    "dalle_eval_default_params": (dalle_eval_params, []),
    "dalle_shapes_eval": (dalle_status, [dalle_context_p, POINTER(dalle_eval_params), POINTER(dalle_eval_report)]),
    "dalle_shapes_candidates": (dalle_status, [dalle_context_p, POINTER(dalle_eval_params), c_uint32, c_char_p]),
    "dalle_train_default_params": (dalle_train_params, []),
    "dalle_train": (dalle_status, [POINTER(dalle_train_params)]),
    "dalle_bundle_default_params": (dalle_bundle_params, []),
    "dalle_bundle_with_params": (dalle_status, [POINTER(c_char_p), c_size_t, c_char_p, POINTER(dalle_bundle_params)]),
    "dalle_bundle": (dalle_status, [POINTER(c_char_p), c_size_t, c_char_p, c_bool]),
}


def candidate_paths():
    """Where libdalle.so is looked for, in order: $DALLE_LIBRARY (an explicit override), inside
    this package (where pip install and make wheel put it), then the repository's build folders
    (.build/release, build/lib)."""
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.abspath(os.path.join(here, "..", "..", ".."))
    paths = []
    if os.environ.get("DALLE_LIBRARY"):
        paths.append(os.environ["DALLE_LIBRARY"])
    paths += [os.path.join(here, "libdalle.so"),
              os.path.join(repo, ".build", "release", "libdalle.so"),
              os.path.join(repo, "build", "lib", "libdalle.so")]
    return paths


def load_library():
    """Loads libdalle.so from the first existing candidate path and declares its prototypes."""
    tried = candidate_paths()
    for path in tried:
        if os.path.exists(path):
            lib = ctypes.CDLL(path)
            break
    else:
        raise OSError("libdalle.so not found; set DALLE_LIBRARY or build it with `swift build -c release`. Tried: "
                      + ", ".join(tried))
    for name, (restype, argtypes) in PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


lib = load_library()
