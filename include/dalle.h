/*
 * dalle.h - the C API of libdalle, OpenAI's DALL-E in a self-contained shared library.
 *
 * Version 0.2: the text tokenizer, the discrete VAE (images <-> token grids), the
 * transformer (generate), CLIP (rerank), the Shapes World (render, judge, eval) and
 * training.
 *
 * ABI policy: fields are only ever appended to the params and info structs, and callers
 * set their `struct_size`, so a caller built against an older header keeps working. The
 * library's SONAME (libdalle.so.0) changes its major number only on an ABI break.
 *
 * Conventions
 *   - Every fallible function returns a dalle_status. On failure it also sets a message
 *     saying what was wrong: dalle_last_error() (per thread) and, for calls that take a
 *     context, dalle_context_last_error(ctx). Messages are UTF-8, NUL-terminated.
 *   - Params structs start with `uint32_t struct_size` (set by the *_default_params()
 *     functions, or sizeof by the caller); see the ABI policy above.
 *   - Ownership: inputs are borrowed for the duration of the call only. Everything the
 *     library allocates for the caller has a matching dalle_*_free, and every free
 *     function accepts NULL. Output structs are zeroed on failure, so freeing them
 *     after a failed call is always safe.
 *   - Handles that were freed, or never came from the library, are rejected with
 *     DALLE_INVALID_ARGUMENT where detectable (the library keeps a registry of live
 *     handles); they are never dereferenced.
 *   - The library never writes to stdout. It writes to stderr only through the default
 *     logger, which dalle_log_set / dalle_log_set_level replace or silence.
 *
 * Thread safety
 *   A dalle_model is immutable once loaded: any number of threads may use it at once,
 *   and any number of contexts may share it. A dalle_context holds everything a call
 *   mutates (thread pool, scratch memory, seed, last error) and must be used by one
 *   thread at a time; a second thread calling into a busy context gets
 *   DALLE_INVALID_ARGUMENT. The exceptions are dalle_cancel, which any thread may call
 *   at any time, and the free functions, which must not race with other calls on the
 *   same handle. A model may be freed before its contexts: they keep its weights alive
 *   until they are freed. dalle_log_set and dalle_log_set_level are thread-safe; the log
 *   callback may be called from any thread that calls into the library. Progress
 *   callbacks are called on the thread that made the call. Results do not depend on a
 *   context's thread count.
 */
#ifndef DALLE_H
#define DALLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define DALLE_VERSION_MAJOR 0
#define DALLE_VERSION_MINOR 2
#define DALLE_VERSION_PATCH 0
#define DALLE_VERSION_STRING "0.2.0"

/* DALLE_API marks the functions libdalle exports. */
#if defined(_WIN32)
#  if defined(DALLE_BUILD)
#    define DALLE_API __declspec(dllexport)
#  else
#    define DALLE_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define DALLE_API __attribute__((visibility("default")))
#else
#  define DALLE_API
#endif

/* DALLE_DEPRECATED(hint) marks an entry point that a later version will remove. */
#if defined(__GNUC__) || defined(__clang__)
#  define DALLE_DEPRECATED(hint) __attribute__((deprecated(hint)))
#elif defined(_MSC_VER)
#  define DALLE_DEPRECATED(hint) __declspec(deprecated(hint))
#else
#  define DALLE_DEPRECATED(hint)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------- */
/* Status codes, log levels, components, phases (enums are stored as int32_t / uint32_t) */

typedef int32_t dalle_status;
enum {
    DALLE_OK = 0,
    DALLE_INVALID_ARGUMENT = 1, /* a NULL pointer, wrong size, bad shape, unknown handle */
    DALLE_BAD_FILE = 2,         /* a malformed model file (truncated, bad header, shapes) */
    DALLE_UNSUPPORTED = 3,      /* well formed, but not something this build can do      */
    DALLE_IO_ERROR = 4,         /* opening or reading a file failed                       */
    DALLE_OUT_OF_MEMORY = 5,    /* an allocation failed or a size is too large            */
    DALLE_CANCELLED = 6,        /* a progress callback or dalle_cancel stopped the call   */
    DALLE_INTERNAL_ERROR = 7    /* a bug in libdalle: please report the message           */
};

typedef int32_t dalle_log_level;
enum {
    DALLE_LOG_DEBUG = 0,
    DALLE_LOG_INFO = 1,
    DALLE_LOG_WARN = 2,
    DALLE_LOG_ERROR = 3,
    DALLE_LOG_NONE = 4          /* as a minimum level: deliver nothing */
};

/* Bits of dalle_model_info.components: the parts a model file holds. */
enum {
    DALLE_COMPONENT_DVAE = 1 << 0,
    DALLE_COMPONENT_TOKENIZER = 1 << 1,
    DALLE_COMPONENT_TRANSFORMER = 1 << 2,
    DALLE_COMPONENT_CLIP = 1 << 3,
    DALLE_COMPONENT_UNCLIP = 1 << 4     /* DALL-E 2 (tools/convert_unclip.py): images, no tokens */
};

/* What a progress callback is reporting on. */
typedef int32_t dalle_phase;
enum {
    DALLE_PHASE_LOAD = 0,       /* steps: header, then one per component   */
    DALLE_PHASE_ENCODE = 1,     /* steps: one per image                    */
    DALLE_PHASE_DECODE = 2      /* steps: one per token grid               */
};

/* The seed value that asks the context to pick a random seed (see dalle_context_seed). */
#define DALLE_SEED_RANDOM ((uint64_t)0xFFFFFFFFFFFFFFFFull)

/* The most images or token grids one dalle_encode / dalle_decode call accepts. */
#define DALLE_MAX_BATCH 4096

/* ---------------------------------------------------------------------------------- */
/* Handles and plain data */

/* Weights loaded from a model file: immutable, shareable across threads and contexts. */
typedef struct dalle_model dalle_model;
/* Per-caller state on a model: threads, seed, scratch memory, last error, cancel flag. */
typedef struct dalle_context dalle_context;

/* An 8-bit image, rows top to bottom, pixels interleaved (RGBRGB... or RGBARGBA...),
 * no padding: data holds height * width * channels bytes. */
typedef struct dalle_image {
    uint32_t width;
    uint32_t height;
    uint32_t channels;          /* 3 (RGB); inputs may also be 4 (RGBA, alpha ignored) */
    uint8_t *data;
} dalle_image;

/* Images the library allocated (dalle_decode); free with dalle_image_batch_free. */
typedef struct dalle_image_batch {
    uint32_t count;
    dalle_image *images;
} dalle_image_batch;

/* `count` token grids of rows x cols image-token ids, row-major, grid after grid:
 * data holds count * rows * cols ids. When the library allocated it (dalle_encode),
 * free it with dalle_tokens_free; when the caller built it, the caller owns it. */
typedef struct dalle_tokens {
    uint32_t count;
    uint32_t rows;
    uint32_t cols;
    int32_t *data;
} dalle_tokens;

/* Called with step = 0 before the first step and after each of `total` steps.
 * Return false to stop: the call then returns DALLE_CANCELLED, having freed everything
 * it allocated. Called on the thread that made the call. */
typedef bool (*dalle_progress_callback)(dalle_phase phase, int32_t step, int32_t total,
                                        void *user_data);

/* Receives one message (UTF-8, no trailing newline) at or above the minimum level. */
typedef void (*dalle_log_callback)(dalle_log_level level, const char *message,
                                   void *user_data);

/* ---------------------------------------------------------------------------------- */
/* Library */

/* "MAJOR.MINOR.PATCH" of the loaded library (compare with DALLE_VERSION_STRING). Static. */
DALLE_API const char *dalle_version(void);

/* A short static description of a status code ("invalid argument", ...). */
DALLE_API const char *dalle_status_string(dalle_status status);

/* The message of the last failed call made on this thread, or "" when the last call
 * succeeded. Valid until this thread's next call into the library. */
DALLE_API const char *dalle_last_error(void);

/* A static one-line description of the build and machine: version, SIMD level, cores. */
DALLE_API const char *dalle_system_info(void);

/* Routes log messages to `callback` (NULL restores the default logger, which writes
 * "libdalle: LEVEL: message" lines to stderr). */
DALLE_API void dalle_log_set(dalle_log_callback callback, void *user_data);

/* Messages below `min_level` are dropped (default DALLE_LOG_WARN; DALLE_LOG_NONE
 * silences the library). A level outside DALLE_LOG_DEBUG ... DALLE_LOG_NONE is ignored and
 * reported (dalle_last_error and the log). */
DALLE_API void dalle_log_set_level(dalle_log_level min_level);

/* ---------------------------------------------------------------------------------- */
/* Models */

typedef struct dalle_model_params {
    uint32_t struct_size;                 /* sizeof(dalle_model_params)             */
    dalle_progress_callback progress;     /* DALLE_PHASE_LOAD steps; may be NULL     */
    void *progress_user_data;
} dalle_model_params;

/* What a loaded model holds. Set struct_size = sizeof(dalle_model_info) before calling
 * dalle_model_get_info; fields the model lacks are 0. */
typedef struct dalle_model_info {
    uint32_t struct_size;
    uint32_t components;        /* DALLE_COMPONENT_* bits                                 */
    uint32_t image_size;        /* dVAE: images are image_size x image_size pixels        */
    uint32_t image_channels;    /* dVAE: 3                                                */
    uint32_t token_grid_size;   /* dVAE: token grids are token_grid_size squared          */
    uint32_t codebook_size;     /* dVAE: image-token ids are 0 ..< codebook_size          */
    uint64_t n_params;          /* parameters of all loaded components                    */
    float cond_scale;           /* transformer: the guidance scale the model was tuned for
                                   (use it as dalle_generate_params.cond_scale); 1 = none */
    float likelihood_weight;    /* the log-likelihood weight in reranking the model was
                                   tuned for (dalle_generate_params.likelihood_weight);
                                   0 = none (CLIP alone)                                  */
} dalle_model_info;

DALLE_API dalle_model_params dalle_model_default_params(void);

/* Loads a libdalle model file (safetensors; see tools/) from `path`. `params` may be NULL
 * for defaults. On success *out_model is a new model, to be freed with dalle_model_free;
 * on failure it is set to NULL. */
DALLE_API dalle_status dalle_model_load_file(const char *path, const dalle_model_params *params,
                                             dalle_model **out_model);

/* Loads a model from the `size` bytes at `data` (a model file read into memory). The
 * buffer is only read during the call; the caller may free it afterwards. */
DALLE_API dalle_status dalle_model_load_buffer(const void *data, size_t size,
                                               const dalle_model_params *params,
                                               dalle_model **out_model);

/* Loads the default model, shapes-world.safetensors, from the first place that has it:
 * $DALLE_MODEL; share/dalle/models/ of the prefix the library is installed in
 * (PREFIX/lib/libdalle.so -> PREFIX/share/dalle/models/, where `make install` puts it); the
 * library's own directory; the models/ folder of the checkout it was built in (build/lib ->
 * ../../models/). `params` may be NULL for defaults. A $DALLE_MODEL that cannot be read, or no
 * model in any of these places, is DALLE_IO_ERROR with a message naming every place looked at.
 * On failure *out_model is set to NULL. */
DALLE_API dalle_status dalle_model_load_default(const dalle_model_params *params, dalle_model **out_model);

/* Releases the caller's reference; contexts still using the model keep it alive. */
DALLE_API void dalle_model_free(dalle_model *model);

/* Fills the first out_info->struct_size bytes of *out_info. */
DALLE_API dalle_status dalle_model_get_info(const dalle_model *model, dalle_model_info *out_info);

/* Bits of dalle_component_info.capabilities: what a component lets the model do. */
enum {
    DALLE_CAN_TOKENIZE = 1 << 0,    /* prompts to token ids (dalle_tokenize)               */
    DALLE_CAN_GENERATE = 1 << 1,    /* images from prompts (dalle_generate)                */
    DALLE_CAN_ENCODE = 1 << 2,      /* images to tokens (dalle_encode)                     */
    DALLE_CAN_DECODE = 1 << 3,      /* tokens to images (dalle_decode)                     */
    DALLE_CAN_EMBED = 1 << 4,       /* embeddings and reranking (dalle_rerank)             */
    DALLE_CAN_TRAIN = 1 << 5        /* trainable by dalle_train                            */
};

/* One component of a loaded model: every model family describes its parts this way, so a
 * program can list what any model file holds without knowing its family. Set struct_size =
 * sizeof(dalle_component_info) before calling dalle_model_get_component. */
typedef struct dalle_component_info {
    uint32_t struct_size;
    uint32_t component;         /* its DALLE_COMPONENT_* bit                               */
    uint32_t capabilities;      /* DALLE_CAN_* bits                                        */
    uint32_t reserved;          /* 0                                                       */
    uint64_t n_params;          /* parameters it loaded                                    */
    char name[32];              /* its name in the file ("dvae", "tokenizer", ...), NUL-terminated */
    char variant[32];           /* its configuration's kind ("openai", "dalle-pytorch", "vit",
                                   "clip-bpe", ...), NUL-terminated                        */
} dalle_component_info;

/* Sets *out_count to the number of components `model` loaded. */
DALLE_API dalle_status dalle_model_component_count(const dalle_model *model, int32_t *out_count);

/* Describes component `index` (0 ..< the count, in loading order) of `model`: fills the first
 * out_info->struct_size bytes of *out_info. */
DALLE_API dalle_status dalle_model_get_component(const dalle_model *model, int32_t index,
                                                 dalle_component_info *out_info);

/* ---------------------------------------------------------------------------------- */
/* Contexts */

typedef struct dalle_context_params {
    uint32_t struct_size;                 /* sizeof(dalle_context_params)           */
    int32_t n_threads;                    /* worker threads; 0 = all online cores   */
    uint64_t seed;                        /* DALLE_SEED_RANDOM = pick one           */
    dalle_progress_callback progress;     /* encode/decode steps; may be NULL        */
    void *progress_user_data;
} dalle_context_params;

DALLE_API dalle_context_params dalle_context_default_params(void);

/* Creates a context on `model` (which it keeps alive). `params` may be NULL for
 * defaults. On failure *out_ctx is set to NULL. Free with dalle_context_free. */
DALLE_API dalle_status dalle_context_create(const dalle_model *model,
                                            const dalle_context_params *params,
                                            dalle_context **out_ctx);

DALLE_API void dalle_context_free(dalle_context *ctx);

/* The message of the last failed call on ctx, or "" when it succeeded. Valid until the
 * next call on ctx. Never NULL (an invalid ctx gets a static message). */
DALLE_API const char *dalle_context_last_error(const dalle_context *ctx);

/* The seed the context uses (the one picked when DALLE_SEED_RANDOM was asked for);
 * 0 for an invalid ctx. */
DALLE_API uint64_t dalle_context_seed(const dalle_context *ctx);

/* The number of worker threads the context uses; 0 for an invalid ctx. */
DALLE_API int32_t dalle_context_threads(const dalle_context *ctx);

/* Asks the call running on ctx to stop at its next step (it returns DALLE_CANCELLED).
 * Safe from any thread, including a progress callback. A call that starts after the
 * request is not affected. */
DALLE_API void dalle_cancel(dalle_context *ctx);

/* ---------------------------------------------------------------------------------- */
/* Text: the BPE tokenizer (CLIP's byte-level BPE; models may carry their own merges) */

/* Which ids dalle_tokenize returns (stored as int32_t). */
typedef int32_t dalle_tokenize_mode;
enum {
    /* The model's own text stream: DALLE_TOKENIZE_DALLE at the transformer's text length
     * when the model has a transformer, otherwise DALLE_TOKENIZE_CLIP. */
    DALLE_TOKENIZE_MODEL = 0,
    /* BPE ids only: no start/end tokens, no padding, never truncated. */
    DALLE_TOKENIZE_RAW = 1,
    /* clip.tokenize(text, 77, truncate=True): <|startoftext|>, ids, <|endoftext|>, then 0
     * up to 77 ids; a longer text keeps its first 76 ids and ends with <|endoftext|>. */
    DALLE_TOKENIZE_CLIP = 2,
    /* DALL-E's text (DALLE-pytorch's tokenizer): ids without start/end tokens, then 0 up
     * to the text length (the transformer's, else 256); a longer text keeps its first ids. */
    DALLE_TOKENIZE_DALLE = 3
};

/* Tokenizes utf8_text (NUL-terminated UTF-8; captions are cleaned and lower-cased as
 * CLIP does) into out_ids, which the caller supplies with room for `capacity` ids.
 * *out_count receives the number of ids the result has. Size first: with out_ids NULL
 * and capacity 0 the call only reports *out_count; when out_ids is too small the call
 * writes nothing, sets *out_count and returns DALLE_INVALID_ARGUMENT. *out_truncated
 * (may be NULL) says whether the text had more tokens than fit. Errors: NULL text or
 * out_count, text that is not UTF-8, an unknown mode (DALLE_INVALID_ARGUMENT); a model
 * without a tokenizer (DALLE_UNSUPPORTED). */
DALLE_API dalle_status dalle_tokenize(dalle_context *ctx, const char *utf8_text, dalle_tokenize_mode mode,
                                      int32_t *out_ids, size_t capacity, size_t *out_count,
                                      bool *out_truncated);

/* ---------------------------------------------------------------------------------- */
/* dVAE: images <-> image tokens */

/* Encodes n_images images (each image_size x image_size, 3 or 4 channels) into token
 * grids: out_tokens gets n_images grids of token_grid_size x token_grid_size ids, in a
 * buffer the library allocates (free with dalle_tokens_free). `images` is borrowed. */
DALLE_API dalle_status dalle_encode(dalle_context *ctx, const dalle_image *images,
                                    uint32_t n_images, dalle_tokens *out_tokens);

/* Decodes token grids (token_grid_size square, ids below codebook_size) into RGB images
 * of image_size x image_size; out_images is allocated by the library (free with
 * dalle_image_batch_free). `tokens` is borrowed. */
DALLE_API dalle_status dalle_decode(dalle_context *ctx, const dalle_tokens *tokens,
                                    dalle_image_batch *out_images);

/* Frees tokens->data if the library allocated it and zeroes *tokens. */
DALLE_API void dalle_tokens_free(dalle_tokens *tokens);

/* Frees the images of a batch the library allocated and zeroes *images. */
DALLE_API void dalle_image_batch_free(dalle_image_batch *images);

/* ---------------------------------------------------------------------------------- */
/* Generate: prompt -> text tokens -> image tokens (transformer) -> images (dVAE) */

/* Progress phase of dalle_generate's sampling loop: one step per generated image token.
 * Decoding the images then reports DALLE_PHASE_DECODE steps, one per image. */
enum { DALLE_PHASE_GENERATE = 3 };

/* The most images one dalle_generate call makes (each needs its own KV cache). */
#define DALLE_MAX_GENERATE 256

/* dalle_generate_params.likelihood_weight: rank by the weight the model was tuned for, as the
 * CLI and the Python binding do. dalle_generate_default_params() sets it; a caller built before
 * likelihood_weight was appended ranks by CLIP alone. */
#define DALLE_LIKELIHOOD_WEIGHT_MODEL (-1.0f)

typedef struct dalle_generate_params {
    uint32_t struct_size;             /* sizeof(dalle_generate_params)                       */
    uint32_t count;                   /* images to generate, 1 ... DALLE_MAX_GENERATE (1)     */
    uint64_t seed;                    /* DALLE_SEED_RANDOM (default) = the context's seed;
                                         image i depends only on the seed, not on count     */
    float temperature;                /* > 0; logits are divided by it (1)                   */
    int32_t top_k;                    /* keep the top_k likeliest tokens; 0 = all (0), 1 = greedy */
    float top_p;                      /* keep the likeliest tokens up to this mass, (0, 1] (1) */
    float cond_scale;                 /* classifier-free guidance against the empty caption:
                                         null + (cond - null) * cond_scale; 1 = off (1); the
                                         model's tuned scale is dalle_model_info.cond_scale  */
    uint32_t prime_rows;              /* rows of image tokens given, 0 ..< token_grid_size (0) */
    const int32_t *prime_tokens;      /* prime_rows * token_grid_size ids (e.g. the first rows
                                         of a dalle_encode grid), shared by all images; NULL
                                         when prime_rows is 0. Borrowed for the call.         */
    dalle_progress_callback progress; /* GENERATE, DECODE, then CLIP steps (keep_best);
                                         NULL = the context's                               */
    void *progress_user_data;
    uint32_t keep_best;               /* 0 = return all count images (0); else 1 ... count:
                                         score the candidates with CLIP against the prompt
                                         and return only the best keep_best, best first
                                         (needs CLIP, out_images and a non-empty prompt)     */
    float *out_scores;                /* NULL, or the caller's keep_best floats: the CLIP
                                         scores of the kept images, best first (NULL)       */
    float *out_log_likelihoods;       /* NULL, or the caller's floats, one per returned image
                                         (keep_best of them, else count): the transformer's
                                         mean log-probability per generated token (nats,
                                         before temperature/top-k/top-p; guided logits under
                                         guidance), a confidence to rank by (NULL)         */
    float likelihood_weight;          /* keep_best ranks by CLIP score + likelihood_weight x
                                         that log-likelihood; >= 0, 0 = CLIP alone, or
                                         DALLE_LIKELIHOOD_WEIGHT_MODEL (default): the weight
                                         the model was tuned for (dalle_model_info.
                                         likelihood_weight; 0 when it records none)         */
    uint32_t prior_steps;             /* unCLIP models: denoising steps of the prior, 1 ... 1000;
                                         0 = Karlo's 25 (0)                                  */
    uint32_t decoder_steps;           /* unCLIP: steps of the decoder; 0 = 25 (0)            */
    uint32_t super_res_steps;         /* unCLIP: steps of the super-resolution; 0 = 7 (0)    */
    float prior_guidance;             /* unCLIP: the prior's guidance scale, > 0; 0 = 4 (0)  */
    float decoder_guidance;           /* unCLIP: the decoder's guidance scale, > 0; 0 = 8 (0) */
    const char *noise_path;           /* unCLIP: NULL, or a safetensors file of caller-given
                                         noise (DALLE_UNCLIP_NOISE below) (NULL)              */
    const void *noise_data;           /* unCLIP: or the same file's bytes in memory; borrowed
                                         for the call; at most one of the two (NULL)          */
    uint64_t noise_size;              /* bytes at noise_data (0)                              */
    const dalle_image *init_image;    /* unCLIP: NULL, or an image (any size, 3 or 4 channels;
                                         resized and centre-cropped as CLIP's preprocessing)
                                         to make `count` variations of: its CLIP image
                                         embedding replaces the prior's; the prompt must be ""
                                         and the bundle needs an image encoder. Borrowed (NULL) */
    const char *interpolate_to;       /* unCLIP: NULL, or a prompt: the `count` images are the
                                         frames of the spherical interpolation from `prompt`'s
                                         CLIP embeddings to this one's, fractions 0 ... 1 (NULL) */
    const dalle_image *interpolate_to_image; /* unCLIP: NULL, or an image: the frames from
                                         init_image's CLIP image embedding to this one's, every
                                         frame from the same decoder latents. Borrowed (NULL) */
} dalle_generate_params;

/* DALLE_UNCLIP_NOISE: caller-given noise for an unCLIP run (to reproduce a diffusers run step
 * for step, or to walk the latent space). The file holds float32 tensors named
 *   prior_latents [B, E]            prior_step_noise [P-1, B, E]
 *   decoder_latents [B, 3, H, W]    decoder_step_noise [D-1, B, 3, H, W]
 *   super_res_latents [B, 3, H', W']  super_res_step_noise [S-1, B, 3, H', W']
 * with B = count, E the CLIP embedding width, H x W the decoder's and H' x W' the
 * super-resolution's sample sizes (the bundle's configs), P/D/S the step counts; step noise in
 * step order, none for the last step. Any subset may be given; the rest is drawn from the seed.
 * Another name, another dtype, a wrong shape or a value that is not finite is
 * DALLE_INVALID_ARGUMENT naming the tensor and what was expected. */

/* What a dalle_generate call did with the prompt and the seed. */
typedef struct dalle_generate_info {
    uint32_t struct_size;             /* set to sizeof(dalle_generate_info) by the caller    */
    uint32_t prompt_tokens;           /* text tokens of the prompt that were used            */
    uint32_t truncated_tokens;        /* text tokens dropped past the model's text length     */
    uint32_t generated_tokens;        /* image tokens generated per image                    */
    uint64_t seed;                    /* the seed the draws used                             */
    uint32_t unknown_words;           /* distinct words of the prompt outside the vocabulary
                                         the model records (its training captions'; each is
                                         also named in a warning log line); 0 when the model
                                         records none                                       */
} dalle_generate_info;

/* The defaults noted on each field: one image, the context's seed, plain sampling, no guidance,
 * and reranking (when keep_best is set) by the model's tuned likelihood weight. */
DALLE_API dalle_generate_params dalle_generate_default_params(void);

/* Generates params->count images for `prompt` (UTF-8, NUL-terminated; "" = unconditional;
 * a prompt longer than the model's text length is truncated, reported in out_info and as a
 * warning log line; words outside the vocabulary the model records, which it was never shown,
 * are counted in out_info and named in a warning log line). The model needs a tokenizer and a
 * transformer, and a dVAE when out_images is set. `params` may be NULL for defaults.
 *   out_images: the images, image_size x image_size RGB (free with dalle_image_batch_free),
 *               or NULL to skip decoding;
 *   out_tokens: the image tokens of each image, count grids of token_grid_size squared
 *               (free with dalle_tokens_free), or NULL;
 *   out_info:   filled up to out_info->struct_size bytes, or NULL.
 * With params->keep_best = K > 0, the count candidates are scored as dalle_rerank would and
 * out_images and out_tokens hold only the best K of them, best first (K entries each).
 * An unCLIP (DALL-E 2) model makes images only (out_tokens gets none): of the prompt; with
 * params->init_image, variations of that image; with interpolate_to / interpolate_to_image,
 * the count frames between two prompts or two images. keep_best ranks with the bundle's CLIP
 * (its image encoder and text encoder; DALLE_UNSUPPORTED without an image encoder).
 * At least one of out_images and out_tokens must be non-NULL. A cancelled call
 * (progress callback or dalle_cancel) returns DALLE_CANCELLED within one token step,
 * with the outputs zeroed and nothing allocated. */
DALLE_API dalle_status dalle_generate(dalle_context *ctx, const char *prompt,
                                      const dalle_generate_params *params,
                                      dalle_image_batch *out_images, dalle_tokens *out_tokens,
                                      dalle_generate_info *out_info);

/* ---------------------------------------------------------------------------------- */
/* CLIP: how well images match a prompt (rerank generated candidates) */

/* Progress phase of CLIP image embedding: one step per batch of up to 8 images. */
enum { DALLE_PHASE_CLIP = 4 };

/* Images for CLIP may have any size and aspect ratio (3 or 4 channels, sides up to
 * 32768, at most 2^26 pixels): each is resized (bicubic, short side to CLIP's input size)
 * and centre-cropped as OpenAI's CLIP preprocessing does; alpha is ignored. Prompts are
 * UTF-8, NUL-terminated, non-empty, and truncated to CLIP's 77 tokens. These calls need
 * a model with CLIP and a tokenizer (DALLE_UNSUPPORTED otherwise). */

/* *out_size = the length of CLIP embeddings (embed_dim; 512 for ViT-B/32). */
DALLE_API dalle_status dalle_clip_embedding_size(const dalle_model *model, uint32_t *out_size);

/* Writes the CLIP text embedding of `prompt` (not normalised, as CLIP's encode_text) into
 * the caller's out_embedding[embedding_size]; embedding_size must equal
 * dalle_clip_embedding_size. */
DALLE_API dalle_status dalle_clip_encode_text(dalle_context *ctx, const char *prompt,
                                              float *out_embedding, uint32_t embedding_size);

/* Writes the CLIP image embeddings of n_images images (1 ... DALLE_MAX_BATCH; not
 * normalised, as CLIP's encode_image) into the caller's out_embeddings[n_images *
 * embedding_size], image after image. `images` is borrowed. */
DALLE_API dalle_status dalle_clip_encode_images(dalle_context *ctx, const dalle_image *images,
                                                uint32_t n_images, float *out_embeddings,
                                                uint32_t embedding_size);

/* Scores n_images images (1 ... DALLE_MAX_BATCH) against `prompt`: out_scores[i] =
 * exp(logit_scale) * cos(image i, prompt) (CLIP's logits_per_image), and out_order[k] = the
 * index of the k-th best image (best first; ties in input order). Both arrays hold n_images
 * values and belong to the caller; either may be NULL, not both. */
DALLE_API dalle_status dalle_rerank(dalle_context *ctx, const char *prompt,
                                    const dalle_image *images, uint32_t n_images,
                                    float *out_scores, uint32_t *out_order);

/* ---------------------------------------------------------------------------------- */
/* Shapes World: the synthetic captions and images of the evaluation (no model needed) */

/* Captions follow the Shapes World grammar (lower case, single spaces, no punctuation;
 * e.g. "a small red circle", "two blue squares", "a red circle left of a green square"),
 * UTF-8 and NUL-terminated; held-out colour-shape pairs are valid captions. Images are
 * DALLE_SHAPES_IMAGE_SIZE square. These calls need no model or context: errors are
 * reported by the status and dalle_last_error(). */
#define DALLE_SHAPES_IMAGE_SIZE 64

/* Renders `caption` (placement drawn from `seed`) into *out_image, a DALLE_SHAPES_IMAGE_SIZE
 * square RGB image the library allocates (free with dalle_image_free). A caption outside
 * the grammar is DALLE_INVALID_ARGUMENT, with a message naming the wrong word. */
DALLE_API dalle_status dalle_shapes_render(const char *caption, uint64_t seed, dalle_image *out_image);

/* Sample `index` of the Shapes World training stream `seed` (standard template mix; the
 * held-out pairs never appear; a function of seed and index alone). The caption goes into caption_buf, which the caller supplies with
 * room for caption_capacity bytes, NUL included; *out_caption_len receives its length
 * without the NUL. Size first: with caption_buf NULL and caption_capacity 0 the call only
 * reports *out_caption_len; when caption_buf is too small the call writes nothing, sets
 * *out_caption_len and returns DALLE_INVALID_ARGUMENT. out_image (may be NULL) receives the
 * sample's image, allocated by the library (free with dalle_image_free). */
DALLE_API dalle_status dalle_shapes_training_sample(uint64_t seed, uint64_t index, char *caption_buf,
                                                    size_t caption_capacity, size_t *out_caption_len,
                                                    dalle_image *out_image);

/* Judges `image` (DALLE_SHAPES_IMAGE_SIZE square, 3 or 4 channels, alpha ignored; borrowed)
 * against `caption` by the Shapes World rules: *out_passed says whether it shows the
 * caption. reason_buf (may be NULL with reason_capacity 0) receives why it failed ("" on a
 * pass), truncated to reason_capacity bytes with its NUL. Errors: NULL image, caption or
 * out_passed, a caption outside the grammar or not UTF-8, an image of another size
 * (DALLE_INVALID_ARGUMENT). */
DALLE_API dalle_status dalle_shapes_judge(const dalle_image *image, const char *caption, bool *out_passed,
                                          char *reason_buf, size_t reason_capacity);

/* Frees image->data if the library allocated it (dalle_shapes_render,
 * dalle_shapes_training_sample, dalle_image_read_file) and zeroes *image; NULL and zeroed
 * images are ignored. */
DALLE_API void dalle_image_free(dalle_image *image);

/* The Shapes World evaluation (`dalle eval`): generate candidates for a fixed, seeded set
 * of captions of every template and of the held-out pairs, judge every image, and run world
 * images through the dVAE. */

/* Progress phase of dalle_shapes_eval: one step per caption, then one per reconstruction. */
enum { DALLE_PHASE_EVAL = 5 };

typedef struct dalle_eval_params {
    uint32_t struct_size;             /* sizeof(dalle_eval_params)                           */
    uint32_t candidates;              /* images per caption, 0 ... DALLE_MAX_GENERATE (8); 0:
                                         the reconstructions alone (dalle_shapes_eval)      */
    uint64_t seed;                    /* seed of the captions, of each caption's draws and of
                                         the reconstruction images (0); DALLE_SEED_RANDOM =
                                         the context's seed                                 */
    uint32_t per_template;            /* captions per template, 0 ... 100000 (50)            */
    uint32_t per_held_out_pair;       /* captions per held-out pair, 0 ... 100000 (10)       */
    uint32_t reconstruction_samples;  /* training images run through the dVAE, besides one
                                         rendering of each caption, 0 ... 100000 (200)      */
    float temperature;                /* sampling, as dalle_generate_params (1)              */
    int32_t top_k;                    /* (0)                                                 */
    float top_p;                      /* (1)                                                 */
    float cond_scale;                 /* (1)                                                 */
    dalle_progress_callback progress; /* DALLE_PHASE_EVAL steps; NULL = the context's        */
    void *progress_user_data;
    float likelihood_weight;          /* CLIP's pick, as dalle_generate_params
                                         (DALLE_LIKELIHOOD_WEIGHT_MODEL: the model's)        */
} dalle_eval_params;

/* Pass counts of one group of captions (rates: divide by captions or candidates). */
typedef struct dalle_eval_group {
    uint32_t captions;
    uint32_t candidates;              /* images judged: captions x candidates per caption    */
    int32_t passed_best_by_clip;      /* captions whose best candidate by CLIP passed; -1
                                         when the model has no CLIP                         */
    uint32_t passed_candidates;       /* images that passed (average candidate = this /
                                         candidates)                                        */
    uint32_t passed_any;              /* captions with at least one passing image (oracle)   */
} dalle_eval_group;

/* What dalle_shapes_eval measured. Set struct_size = sizeof(dalle_eval_report) before the call. */
typedef struct dalle_eval_report {
    uint32_t struct_size;
    uint32_t has_clip;                /* 1 when CLIP ranked the candidates, else 0           */
    dalle_eval_group one_object;
    dalle_eval_group counting;
    dalle_eval_group relation;
    dalle_eval_group held_out;        /* captions with a held-out pair (any template)        */
    dalle_eval_group total;           /* every caption                                       */
    uint32_t reconstruction_images;   /* world images encoded and decoded by the dVAE        */
    uint32_t reconstruction_passed;   /* reconstructions that still pass the judge           */
} dalle_eval_report;

DALLE_API dalle_eval_params dalle_eval_default_params(void);

/* Runs the Shapes World evaluation with the context's model (tokenizer, transformer and a
 * dVAE of DALLE_SHAPES_IMAGE_SIZE images; with CLIP, the candidates are also ranked and
 * CLIP's pick is scored). With params->candidates = 0 it measures the dVAE alone: nothing is
 * generated, the groups count no captions, and a model with only a dVAE will do (for a dVAE
 * in training). `params` may be NULL for defaults. Fills the first
 * out_report->struct_size bytes of *out_report. The result depends on the params alone,
 * not on the thread count. A cancelled call (progress callback or dalle_cancel) returns
 * DALLE_CANCELLED within one generation step. */
DALLE_API dalle_status dalle_shapes_eval(dalle_context *ctx, const dalle_eval_params *params,
                                         dalle_eval_report *out_report);

/* Writes a judged candidate set to out_path (safetensors; as `dalle candidates`): for each of
 * the first `captions` (1 ... 100000) captions of the Shapes World training stream
 * params->seed, params->candidates images drawn with params' sampling, the judge's verdict on
 * each, and the dVAE's reconstruction of the caption's training image. dalle_train_params.data
 * takes the file: CLIP then learns each caption's passing candidate against its failing ones.
 * per_template, per_held_out_pair and reconstruction_samples are not used; candidates must be
 * at least 1. Progress:
 * DALLE_PHASE_EVAL, one step per caption. The file depends on the params alone. */
DALLE_API dalle_status dalle_shapes_candidates(dalle_context *ctx, const dalle_eval_params *params,
                                               uint32_t captions, const char *out_path);

/* ---------------------------------------------------------------------------------- */
/* Image files: PNG in and out, with nothing but the library */

/* Reads the PNG file at `path` (any standard PNG: grey, RGB, palette, with alpha, 1-16 bits,
 * interlaced; at most 2^26 pixels) into *out_image as RGB8 (alpha dropped), allocated by the
 * library (free with dalle_image_free). Errors: NULL arguments (DALLE_INVALID_ARGUMENT), a file
 * that cannot be read (DALLE_IO_ERROR), a malformed PNG (DALLE_BAD_FILE) or one of a kind this
 * decoder lacks (DALLE_UNSUPPORTED). On failure *out_image is zeroed. */
DALLE_API dalle_status dalle_image_read_file(const char *path, dalle_image *out_image);

/* Writes `image` (borrowed; 3 channels, or 4 with the alpha dropped; 1 to 2^26 pixels) to
 * `path` as an RGB8 PNG, replacing any file there. Errors: NULL arguments or data, another
 * channel count, an empty or larger image (DALLE_INVALID_ARGUMENT), a file that cannot be
 * written (DALLE_IO_ERROR). */
DALLE_API dalle_status dalle_image_write_png(const char *path, const dalle_image *image);

/* ---- Training ---------------------------------------------------------------------------
 * Trains one component of a model on the CPU (the paper's recipe: the dVAE with the
 * Gumbel-softmax relaxation, logit-Laplace likelihood and KL weight raised to 6.6; the
 * transformer with text loss 1/8 and image loss 7/8 on the dVAE's tokens; CLIP with the
 * contrastive loss), then dalle_bundle joins the parts into one model file. The output of a
 * stage is a checkpoint that is also a loadable model; when it already exists, training
 * resumes from it exactly (same options required). These calls need no model or context:
 * errors are reported by the status and dalle_last_error(). */

/* Progress of dalle_train: step of total, the batch loss and the latest validation loss
 * (NaN before the first). Return false to stop; a checkpoint is written first. */
typedef bool (*dalle_train_callback)(int32_t step, int32_t total, float loss, float validation_loss,
                                     void *user_data);

typedef struct dalle_train_params {
    uint32_t struct_size;             /* sizeof(dalle_train_params)                           */
    int32_t n_threads;                /* 0 = every core (0); results do not depend on it      */
    const char *stage;                /* "tokenizer", "dvae", "transformer" or "clip"         */
    const char *data;                 /* "shapes" (the Shapes World), "shapes-near-misses" (each
                                         caption then a near miss: hard negatives for CLIP),
                                         "shapes-defects" (each picture with two defect images
                                         -- misshapen, merged, missing, extra or resized
                                         objects -- as CLIP's hard negatives); each of
                                         these three may end in ":S,C,R", the weights of
                                         the one object, counting and relation templates
                                         (default 1,1,2), e.g. "shapes:1,2,1";
                                         a judged candidate set FILE.safetensors (`dalle
                                         candidates`: a model's failing candidates are CLIP's
                                         hard negatives; several, comma-separated, are
                                         joined), or a folder of NAME.png + NAME.txt
                                         captions (UTF-8)                                   */
    const char *out_path;             /* checkpoint written (and resumed when it exists)      */
    const char *tokenizer_path;       /* trained tokenizer (transformer, clip), or NULL       */
    const char *dvae_path;            /* trained dVAE (transformer; clip: its images are first
                                         encoded and decoded by it), or NULL                  */
    const char *config;               /* model configuration "key=value,..." (e.g.
                                         "dim=256,depth=4"), or NULL for the defaults        */
    int32_t steps;                    /* optimizer steps (1000)                               */
    int32_t batch_size;               /* examples per step (16)                               */
    float learning_rate;              /* peak AdamW rate after warm-up (1e-3)                 */
    int32_t warmup_steps;             /* linear warm-up, then cosine decay (100)              */
    float weight_decay;               /* AdamW decoupled weight decay (0.01)                  */
    float gradient_clip;              /* max global gradient norm (1)                         */
    uint64_t seed;                    /* data order, initialisation and noise (0)             */
    int32_t validation_count;         /* held-out examples for the validation loss (64)       */
    int32_t checkpoint_every;         /* steps between validation + checkpoint; 0 = end (100) */
    int32_t vocab_size;               /* tokenizer stage: ids to learn (1024)                 */
    dalle_train_callback progress;    /* may be NULL                                          */
    void *progress_user_data;
    const char *dvae_schedule;        /* dvae stage: "name=value,..." settings of the recipe, as
                                         `dalle train --dvae-schedule` (e.g. "kmeans=64,usage=1,
                                         usage-floor=64,anneal=1,noise-warmup=0,fixed-scale=1"),
                                         or NULL for the defaults; a caller built before this
                                         field (smaller struct_size) gets NULL               */
    const char *init_path;            /* a model file whose weights start a new run (fine-tuning,
                                         a fresh optimizer; ignored when resuming), or NULL   */
    const char *freeze;               /* parameters left unchanged: name prefixes separated by
                                         commas (e.g. "clip.transformer."), or NULL          */
    float caption_dropout;            /* transformer: share of examples trained on the empty
                                         caption, for classifier-free guidance (0); callers
                                         built before init_path get NULL, NULL, 0             */
    int32_t caption_negatives;        /* clip: up to this many near misses of each Shapes World
                                         caption (one colour, shape, size, number or relation
                                         changed) as hard negatives, 0...8 (0); callers built
                                         before this field get 0                              */
} dalle_train_params;

DALLE_API dalle_train_params dalle_train_default_params(void);

/* Runs one training stage as `params` describes. Data problems that skip files (unsupported
 * formats, missing captions, unreadable images) are logged as warnings; a folder with no
 * usable pair, a missing tokenizer or dVAE for the stage, or a checkpoint made with other
 * options is DALLE_INVALID_ARGUMENT with a message. A run stopped by the callback returns
 * DALLE_CANCELLED after writing its checkpoint. */
DALLE_API dalle_status dalle_train(const dalle_train_params *params);

/* How weights are stored in a bundle. Q8_0 and Q4_0 store the linear layers' weights in
 * GGUF's blocks of 32 (an f16 scale and 32 int8 or 4-bit values) and the rest in f16. */
typedef int32_t dalle_weight_type;
enum {
    DALLE_WEIGHTS_F32 = 0,
    DALLE_WEIGHTS_F16 = 1,
    DALLE_WEIGHTS_BF16 = 2,
    DALLE_WEIGHTS_Q8_0 = 3,
    DALLE_WEIGHTS_Q4_0 = 4,
};

typedef struct dalle_bundle_params {
    uint32_t struct_size;             /* sizeof(dalle_bundle_params)                          */
    dalle_weight_type weight_type;    /* DALLE_WEIGHTS_* (DALLE_WEIGHTS_F16)                  */
    float cond_scale;                 /* the guidance scale recorded as the model's
                                         (dalle_model_info.cond_scale); needs a transformer
                                         among the parts unless 1; 1 = none recorded (1)    */
    float likelihood_weight;          /* the reranking weight recorded as the model's
                                         (dalle_model_info.likelihood_weight), >= 0; needs
                                         a transformer; < 0 = none recorded (-1)            */
} dalle_bundle_params;

DALLE_API dalle_bundle_params dalle_bundle_default_params(void);

/* Joins the components of `n_parts` trained files (tokenizer, dvae, transformer, clip; each
 * component from the first file that has it) into one model at out_path. params NULL = the
 * defaults. */
DALLE_API dalle_status dalle_bundle_with_params(const char *const *part_paths, size_t n_parts,
                                                const char *out_path, const dalle_bundle_params *params);

/* dalle_bundle_with_params with weights as 16-bit floats when half_precision is true, else
 * 32-bit, and no guidance scale recorded. */
DALLE_API dalle_status dalle_bundle(const char *const *part_paths, size_t n_parts, const char *out_path,
                                    bool half_precision);

#ifdef __cplusplus
}
#endif

#endif /* DALLE_H */
