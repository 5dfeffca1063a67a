/* Misuse of every function in include/dalle.h: NULL pointers, freed and made-up handles, wrong
 * struct_size, absurd sizes and counts, bad strings, bad images. Every call must answer with
 * the documented status and a message; a crash or a sanitizer report fails the run.
 *
 *   capi_misuse GENERATE_MODEL CLIP_MODEL DVAE_MODEL UNCLIP_MODEL DIR
 *
 * GENERATE_MODEL: tokenizer + transformer + dVAE (Golden/generate); CLIP_MODEL: CLIP + tokenizer
 * (Golden/clip/clip_tiny); DVAE_MODEL: a dVAE alone;
 * UNCLIP_MODEL: the tiny unCLIP bundle (Golden/unclip); DIR: a writable scratch folder.
 * tests/hostile/coverage.py checks that every function of the header is called here. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dalle.h"

static int failures = 0, checks = 0;

/* The call must return `expected` and leave a message (dalle_last_error or the context's). */
#define EXPECT(expected, call, message_fn) do { \
    dalle_status got_ = (call); checks++; \
    const char *message_ = (message_fn); \
    if (got_ != (expected) || (got_ != DALLE_OK && (message_ == NULL || message_[0] == '\0'))) { \
        fprintf(stderr, "FAIL line %d: %s returned %s (expected %s), message '%s'\n", __LINE__, #call, \
                dalle_status_string(got_), dalle_status_string(expected), message_ ? message_ : "(null)"); \
        failures++; \
    } } while (0)
#define EXPECT_G(expected, call) EXPECT(expected, call, dalle_last_error())
#define EXPECT_C(ctx, expected, call) EXPECT(expected, call, dalle_context_last_error(ctx))
/* Any error status, with a message (where several checks may come first). */
#define EXPECT_FAIL(call, message_fn) do { dalle_status got_ = (call); checks++; const char *message_ = (message_fn); \
    if (got_ == DALLE_OK || message_ == NULL || message_[0] == '\0') { \
        fprintf(stderr, "FAIL line %d: %s returned %s, message '%s'\n", __LINE__, #call, dalle_status_string(got_), \
                message_ ? message_ : "(null)"); failures++; } } while (0)
#define CHECK(cond) do { checks++; if (!(cond)) { \
    fprintf(stderr, "FAIL line %d: %s (last error: %s)\n", __LINE__, #cond, dalle_last_error()); failures++; } } while (0)

enum { BAD = DALLE_INVALID_ARGUMENT };

static bool stop_at_once(dalle_phase phase, int32_t step, int32_t total, void *user_data) {
    (void)phase; (void)step; (void)total; (void)user_data;
    return false;
}

static dalle_model *load(const char *path) {
    dalle_model *model = NULL;
    if (dalle_model_load_file(path, NULL, &model) != DALLE_OK) {
        fprintf(stderr, "cannot load %s: %s\n", path, dalle_last_error());
        exit(2);
    }
    return model;
}

static dalle_context *context(dalle_model *model) {
    dalle_context_params params = dalle_context_default_params();
    params.n_threads = 1;
    params.seed = 1;
    dalle_context *ctx = NULL;
    if (dalle_context_create(model, &params, &ctx) != DALLE_OK) {
        fprintf(stderr, "cannot create a context: %s\n", dalle_last_error());
        exit(2);
    }
    return ctx;
}

/* Handles that never came from the library, and one that was freed. */
static dalle_model *const FAKE_MODEL = (dalle_model *)(uintptr_t)0x1000;
static dalle_context *const FAKE_CONTEXT = (dalle_context *)(uintptr_t)0x2000;

static void count_messages(dalle_log_level level, const char *message, void *user_data) {
    (void)level; (void)message;
    ++*(int *)user_data;
}

static void library(void) {
    CHECK(dalle_version() != NULL && strcmp(dalle_version(), DALLE_VERSION_STRING) == 0);
    CHECK(dalle_system_info() != NULL && dalle_system_info()[0] != '\0');
    const dalle_status statuses[] = {-1, 8, 100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
        CHECK(dalle_status_string(statuses[i]) != NULL && dalle_status_string(statuses[i])[0] != '\0');
    CHECK(dalle_last_error() != NULL);
    int logged = 0;
    dalle_log_set(count_messages, &logged);
    const dalle_log_level levels[] = {-1, -5, 5, 100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof levels / sizeof *levels; i++) {
        dalle_log_set_level(levels[i]);
        CHECK(strstr(dalle_last_error(), "level") != NULL);
    }
    CHECK(logged == (int)(sizeof levels / sizeof *levels));
    dalle_log_set(NULL, NULL);
    dalle_log_set_level(DALLE_LOG_NONE);
}

static void models(const char *path, const char *dir) {
    dalle_model *model = FAKE_MODEL;
    dalle_model_params params = dalle_model_default_params();
    CHECK(params.struct_size == sizeof params);
    EXPECT_G(BAD, dalle_model_load_file(NULL, NULL, &model));
    CHECK(model == NULL);
    EXPECT_G(BAD, dalle_model_load_file(path, NULL, NULL));
    EXPECT_G(DALLE_IO_ERROR, dalle_model_load_file("", NULL, &model));
    EXPECT_G(DALLE_IO_ERROR, dalle_model_load_file("/nonexistent/model.safetensors", NULL, &model));
    CHECK(dalle_model_load_file(dir, NULL, &model) != DALLE_OK && model == NULL);
    CHECK(dalle_model_load_file("/dev/null", NULL, &model) != DALLE_OK && model == NULL);
    CHECK(dalle_model_load_file("/dev/zero", NULL, &model) != DALLE_OK && model == NULL);
    CHECK(dalle_model_load_file("/proc/self/maps", NULL, &model) != DALLE_OK && model == NULL);
    char fifo[4096];
    snprintf(fifo, sizeof fifo, "%s/fifo.safetensors", dir);
    remove(fifo);
    if (mkfifo(fifo, 0600) == 0) /* nobody writes to it: the load must not wait */
        CHECK(dalle_model_load_file(fifo, NULL, &model) != DALLE_OK && model == NULL);
    char long_path[8192];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    CHECK(dalle_model_load_file(long_path, NULL, &model) != DALLE_OK && model == NULL);
    CHECK(dalle_model_load_file("\xff\xfe.safetensors", NULL, &model) != DALLE_OK && model == NULL);
    const uint32_t sizes[] = {0, 1, 3, (uint32_t)sizeof params - 1, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        params.struct_size = sizes[i];
        EXPECT_G(BAD, dalle_model_load_file(path, &params, &model));
        EXPECT_G(BAD, dalle_model_load_default(&params, &model));
    }
    params = dalle_model_default_params();
    params.progress = stop_at_once;
    EXPECT_G(DALLE_CANCELLED, dalle_model_load_file(path, &params, &model));
    CHECK(model == NULL);
    EXPECT_G(BAD, dalle_model_load_default(NULL, NULL));

    unsigned char bytes[64] = {0};
    EXPECT_G(BAD, dalle_model_load_buffer(NULL, 10, NULL, &model));
    EXPECT_G(BAD, dalle_model_load_buffer(bytes, 10, NULL, NULL));
    CHECK(dalle_model_load_buffer(bytes, 0, NULL, &model) != DALLE_OK && model == NULL);
    CHECK(dalle_model_load_buffer(bytes, sizeof bytes, NULL, &model) == DALLE_BAD_FILE && model == NULL);
    /* A size the system cannot copy (the bytes past the buffer are never read). */
    EXPECT_G(DALLE_OUT_OF_MEMORY, dalle_model_load_buffer(bytes, (size_t)1 << 46, NULL, &model));
    CHECK(dalle_model_load_buffer(bytes, SIZE_MAX, NULL, &model) != DALLE_OK && model == NULL);

    /* Made-up, freed and NULL models. */
    dalle_model *freed = load(path);
    dalle_model_free(freed);
    dalle_model *const bad_models[] = {NULL, FAKE_MODEL, freed};
    for (size_t i = 0; i < 3; i++) {
        dalle_model_info info = {0};
        info.struct_size = sizeof info;
        EXPECT_G(BAD, dalle_model_get_info(bad_models[i], &info));
        int32_t count = 7;
        EXPECT_G(BAD, dalle_model_component_count(bad_models[i], &count));
        dalle_component_info component = {0};
        component.struct_size = sizeof component;
        EXPECT_G(BAD, dalle_model_get_component(bad_models[i], 0, &component));
        uint32_t size = 7;
        EXPECT_G(BAD, dalle_clip_embedding_size(bad_models[i], &size));
        dalle_context *ctx = FAKE_CONTEXT;
        EXPECT_G(BAD, dalle_context_create(bad_models[i], NULL, &ctx));
        CHECK(ctx == NULL);
    }
    dalle_model_free(NULL);
    dalle_model_free(FAKE_MODEL);
    dalle_model_free(freed); /* a second free is ignored */

    model = load(path);
    EXPECT_G(BAD, dalle_model_get_info(model, NULL));
    EXPECT_G(BAD, dalle_model_component_count(model, NULL));
    EXPECT_G(BAD, dalle_model_get_component(model, 0, NULL));
    /* struct_size: too small is refused; larger than the library knows fills only what it knows. */
    unsigned char big[4096];
    memset(big, 0xAB, sizeof big);
    ((dalle_model_info *)(void *)big)->struct_size = sizeof big;
    EXPECT_G(DALLE_OK, dalle_model_get_info(model, (dalle_model_info *)(void *)big));
    CHECK(big[sizeof big - 1] == 0xAB && big[sizeof(dalle_model_info) + 8] == 0xAB);
    memset(big, 0xAB, sizeof big);
    ((dalle_component_info *)(void *)big)->struct_size = sizeof big;
    EXPECT_G(DALLE_OK, dalle_model_get_component(model, 0, (dalle_component_info *)(void *)big));
    CHECK(big[sizeof big - 1] == 0xAB);
    for (uint32_t size = 0; size < 4; size++) {
        dalle_model_info info = {0};
        info.struct_size = size;
        EXPECT_G(BAD, dalle_model_get_info(model, &info));
        dalle_component_info component = {0};
        component.struct_size = size;
        EXPECT_G(BAD, dalle_model_get_component(model, 0, &component));
    }
    int32_t count = 0;
    EXPECT_G(DALLE_OK, dalle_model_component_count(model, &count));
    const int32_t indices[] = {-1, count, count + 1, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof indices / sizeof *indices; i++) {
        dalle_component_info component = {0};
        component.struct_size = sizeof component;
        EXPECT_G(BAD, dalle_model_get_component(model, indices[i], &component));
    }
    dalle_model_free(model);
}

static void contexts(const char *path) {
    dalle_model *model = load(path);
    dalle_context_params params = dalle_context_default_params();
    CHECK(params.struct_size == sizeof params);
    dalle_context *ctx = FAKE_CONTEXT;
    EXPECT_G(BAD, dalle_context_create(model, NULL, NULL));
    const int32_t threads[] = {-1, -100, INT32_MIN, INT32_MAX, 1 << 20};
    for (size_t i = 0; i < sizeof threads / sizeof *threads; i++) {
        params.n_threads = threads[i];
        EXPECT_G(BAD, dalle_context_create(model, &params, &ctx));
        CHECK(ctx == NULL);
    }
    params = dalle_context_default_params();
    const uint32_t sizes[] = {0, 1, 3, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        params.struct_size = sizes[i];
        EXPECT_G(BAD, dalle_context_create(model, &params, &ctx));
    }

    /* Made-up, freed and NULL contexts: every call that takes one refuses it. */
    dalle_context *freed = context(model);
    dalle_context_free(freed);
    dalle_context *const bad[] = {NULL, FAKE_CONTEXT, freed};
    for (size_t i = 0; i < 3; i++) {
        CHECK(dalle_context_last_error(bad[i]) != NULL && dalle_context_last_error(bad[i])[0] != '\0');
        CHECK(dalle_context_seed(bad[i]) == 0);
        CHECK(dalle_context_threads(bad[i]) == 0);
        dalle_cancel(bad[i]);
        size_t n = 0;
        EXPECT_G(BAD, dalle_tokenize(bad[i], "a", DALLE_TOKENIZE_RAW, NULL, 0, &n, NULL));
        dalle_image image = {8, 8, 3, calloc(8 * 8, 3)};
        dalle_tokens tokens = {0};
        EXPECT_G(BAD, dalle_encode(bad[i], &image, 1, &tokens));
        int32_t ids[64] = {0};
        dalle_tokens grid = {1, 8, 8, ids};
        dalle_image_batch images = {0};
        EXPECT_G(BAD, dalle_decode(bad[i], &grid, &images));
        EXPECT_G(BAD, dalle_generate(bad[i], "a", NULL, NULL, &tokens, NULL));
        float embedding[16], scores[1];
        EXPECT_G(BAD, dalle_clip_encode_text(bad[i], "a", embedding, 16));
        EXPECT_G(BAD, dalle_clip_encode_images(bad[i], &image, 1, embedding, 16));
        EXPECT_G(BAD, dalle_rerank(bad[i], "a", &image, 1, scores, NULL));
        dalle_eval_report report = {0};
        report.struct_size = sizeof report;
        EXPECT_G(BAD, dalle_shapes_eval(bad[i], NULL, &report));
        EXPECT_G(BAD, dalle_shapes_candidates(bad[i], NULL, 1, "/tmp/never-written.safetensors"));
        free(image.data);
    }
    dalle_context_free(NULL);
    dalle_context_free(FAKE_CONTEXT);
    dalle_context_free(freed);

    /* The context keeps its model alive after dalle_model_free. */
    ctx = context(model);
    dalle_model_free(model);
    size_t n = 0;
    EXPECT_C(ctx, DALLE_OK, dalle_tokenize(ctx, "a red circle", DALLE_TOKENIZE_RAW, NULL, 0, &n, NULL));
    dalle_context_free(ctx);
}

static void text(const char *generate_path, const char *dvae_only_path) {
    dalle_model *model = load(generate_path);
    dalle_context *ctx = context(model);
    size_t n = 99;
    int32_t ids[4];
    bool truncated;
    EXPECT_C(ctx, BAD, dalle_tokenize(ctx, NULL, DALLE_TOKENIZE_RAW, NULL, 0, &n, NULL));
    EXPECT_C(ctx, BAD, dalle_tokenize(ctx, "a", DALLE_TOKENIZE_RAW, NULL, 0, NULL, NULL));
    const dalle_tokenize_mode modes[] = {-1, 4, 100, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
        EXPECT_C(ctx, BAD, dalle_tokenize(ctx, "a", modes[i], NULL, 0, &n, NULL));
    EXPECT_C(ctx, BAD, dalle_tokenize(ctx, "a", DALLE_TOKENIZE_RAW, NULL, 4, &n, NULL));
    EXPECT_C(ctx, BAD, dalle_tokenize(ctx, "a red circle left of a blue square", DALLE_TOKENIZE_RAW, ids, 1, &n, &truncated));
    CHECK(n > 1);
    EXPECT_C(ctx, BAD, dalle_tokenize(ctx, "\xff\xfe bad utf-8", DALLE_TOKENIZE_RAW, NULL, 0, &n, NULL));
    EXPECT_C(ctx, BAD, dalle_tokenize(ctx, "\xc3", DALLE_TOKENIZE_CLIP, NULL, 0, &n, NULL));
    EXPECT_C(ctx, BAD, dalle_tokenize(ctx, "\xed\xa0\x80", DALLE_TOKENIZE_CLIP, NULL, 0, &n, NULL));
    size_t big = (size_t)1 << 20;
    char *long_text = malloc(big + 1);
    for (size_t i = 0; i < big; i++) long_text[i] = "ab \t\n!'s"[i % 8];
    long_text[big] = '\0';
    for (dalle_tokenize_mode mode = DALLE_TOKENIZE_MODEL; mode <= DALLE_TOKENIZE_DALLE; mode++)
        EXPECT_C(ctx, DALLE_OK, dalle_tokenize(ctx, long_text, mode, NULL, 0, &n, NULL));
    free(long_text);
    dalle_context_free(ctx);
    dalle_model_free(model);

    model = load(dvae_only_path);
    ctx = context(model);
    EXPECT_C(ctx, DALLE_UNSUPPORTED, dalle_tokenize(ctx, "a", DALLE_TOKENIZE_MODEL, NULL, 0, &n, NULL));
    dalle_tokens tokens = {0};
    EXPECT_C(ctx, DALLE_UNSUPPORTED, dalle_generate(ctx, "a", NULL, NULL, &tokens, NULL));
    uint32_t size = 0;
    EXPECT_G(DALLE_UNSUPPORTED, dalle_clip_embedding_size(model, &size));
    dalle_context_free(ctx);
    dalle_model_free(model);
}

static void dvae(const char *path) {
    dalle_model *model = load(path);
    dalle_context *ctx = context(model);
    dalle_model_info info = {0};
    info.struct_size = sizeof info;
    EXPECT_G(DALLE_OK, dalle_model_get_info(model, &info));
    const uint32_t side = info.image_size, grid = info.token_grid_size;
    uint8_t *pixels = calloc((size_t)side * side, 4);
    dalle_tokens tokens = {7, 7, 7, (int32_t *)(uintptr_t)0x10};
    dalle_image good = {side, side, 3, pixels};
    EXPECT_C(ctx, BAD, dalle_encode(ctx, NULL, 1, &tokens));
    CHECK(tokens.data == NULL && tokens.count == 0);
    EXPECT_C(ctx, BAD, dalle_encode(ctx, &good, 1, NULL));
    EXPECT_C(ctx, BAD, dalle_encode(ctx, &good, DALLE_MAX_BATCH + 1, &tokens));
    EXPECT_C(ctx, BAD, dalle_encode(ctx, &good, UINT32_MAX, &tokens));
    const dalle_image bad_images[] = {
        {side, side, 3, NULL}, {side + 1, side, 3, pixels}, {side, side - 1, 3, pixels}, {0, 0, 3, pixels},
        {side, side, 0, pixels}, {side, side, 1, pixels}, {side, side, 2, pixels}, {side, side, 5, pixels},
        {side, side, UINT32_MAX, pixels}, {UINT32_MAX, UINT32_MAX, 3, pixels}, {UINT32_MAX, side, 4, pixels},
    };
    for (size_t i = 0; i < sizeof bad_images / sizeof *bad_images; i++)
        EXPECT_C(ctx, BAD, dalle_encode(ctx, &bad_images[i], 1, &tokens));
    dalle_image two[2] = {good, bad_images[1]};
    EXPECT_C(ctx, BAD, dalle_encode(ctx, two, 2, &tokens));
    CHECK(tokens.data == NULL);

    int32_t *ids = calloc((size_t)grid * grid * 2, sizeof *ids);
    dalle_image_batch images = {7, (dalle_image *)(uintptr_t)0x10};
    dalle_tokens grids = {1, grid, grid, ids};
    EXPECT_C(ctx, BAD, dalle_decode(ctx, NULL, &images));
    CHECK(images.images == NULL && images.count == 0);
    EXPECT_C(ctx, BAD, dalle_decode(ctx, &grids, NULL));
    const dalle_tokens bad_grids[] = {
        {1, grid, grid, NULL}, {DALLE_MAX_BATCH + 1, grid, grid, ids},
        {UINT32_MAX, grid, grid, ids}, {1, grid + 1, grid, ids}, {1, grid, 1, ids}, {1, 0, 0, ids},
        {1, UINT32_MAX, UINT32_MAX, ids}, {UINT32_MAX, UINT32_MAX, UINT32_MAX, ids},
    };
    for (size_t i = 0; i < sizeof bad_grids / sizeof *bad_grids; i++)
        EXPECT_C(ctx, BAD, dalle_decode(ctx, &bad_grids[i], &images));
    const int32_t bad_ids[] = {-1, (int32_t)info.codebook_size, INT32_MAX, INT32_MIN};
    for (size_t i = 0; i < sizeof bad_ids / sizeof *bad_ids; i++) {
        ids[grid * grid - 1] = bad_ids[i];
        EXPECT_C(ctx, BAD, dalle_decode(ctx, &grids, &images));
        CHECK(images.images == NULL);
    }
    ids[grid * grid - 1] = 0;
    dalle_tokens_free(NULL);
    dalle_tokens zeroed = {0};
    dalle_tokens_free(&zeroed);
    dalle_image_batch_free(NULL);
    dalle_image_batch empty = {0};
    dalle_image_batch_free(&empty);
    free(ids);
    free(pixels);
    dalle_context_free(ctx);
    dalle_model_free(model);
}

static void generate(const char *path) {
    dalle_model *model = load(path);
    dalle_context *ctx = context(model);
    dalle_model_info info = {0};
    info.struct_size = sizeof info;
    EXPECT_G(DALLE_OK, dalle_model_get_info(model, &info));
    const uint32_t grid = info.token_grid_size;
    dalle_tokens tokens = {0};
    dalle_image_batch images = {0};
    dalle_generate_params defaults = dalle_generate_default_params(), p;
    CHECK(defaults.struct_size == sizeof defaults);
    EXPECT_C(ctx, BAD, dalle_generate(ctx, "a", NULL, NULL, NULL, NULL));
    EXPECT_C(ctx, BAD, dalle_generate(ctx, NULL, NULL, NULL, &tokens, NULL));
    EXPECT_C(ctx, BAD, dalle_generate(ctx, "\xff bad", NULL, NULL, &tokens, NULL));
#define BAD_PARAM(field, value) do { p = defaults; p.field = (value); \
    EXPECT_C(ctx, BAD, dalle_generate(ctx, "a", &p, &images, &tokens, NULL)); \
    CHECK(tokens.data == NULL && images.images == NULL); } while (0)
    BAD_PARAM(struct_size, 0);
    BAD_PARAM(struct_size, 3);
    BAD_PARAM(struct_size, 0xFFFFFFFFu);
    BAD_PARAM(count, 0);
    BAD_PARAM(count, DALLE_MAX_GENERATE + 1);
    BAD_PARAM(count, UINT32_MAX);
    BAD_PARAM(temperature, 0);
    BAD_PARAM(temperature, -1);
    BAD_PARAM(temperature, NAN);
    BAD_PARAM(temperature, INFINITY);
    BAD_PARAM(top_k, -1);
    BAD_PARAM(top_k, INT32_MIN);
    BAD_PARAM(top_p, 0);
    BAD_PARAM(top_p, 1.5f);
    BAD_PARAM(top_p, NAN);
    BAD_PARAM(cond_scale, NAN);
    BAD_PARAM(cond_scale, INFINITY);
    BAD_PARAM(likelihood_weight, -2);     /* -1 is DALLE_LIKELIHOOD_WEIGHT_MODEL */
    BAD_PARAM(likelihood_weight, NAN);
    BAD_PARAM(keep_best, 2);          /* more than count (1) */
    BAD_PARAM(prime_rows, 1);         /* without prime_tokens */
    BAD_PARAM(prime_rows, grid);
    BAD_PARAM(prime_rows, UINT32_MAX);
    int32_t *prime = calloc(grid, sizeof *prime);
    prime[0] = -1;
    p = defaults;
    p.prime_rows = 1;
    p.prime_tokens = prime;
    EXPECT_C(ctx, BAD, dalle_generate(ctx, "a", &p, NULL, &tokens, NULL));
    prime[0] = (int32_t)info.codebook_size;
    EXPECT_C(ctx, BAD, dalle_generate(ctx, "a", &p, NULL, &tokens, NULL));
    free(prime);
    p = defaults;
    p.count = 2;
    p.keep_best = 1; /* this model has no CLIP */
    EXPECT_C(ctx, DALLE_UNSUPPORTED, dalle_generate(ctx, "a", &p, &images, NULL, NULL));
    dalle_generate_info gen_info = {0};
    gen_info.struct_size = 2;
    EXPECT_C(ctx, BAD, dalle_generate(ctx, "a", NULL, NULL, &tokens, &gen_info));
    p = defaults;
    p.progress = stop_at_once;
    EXPECT_C(ctx, DALLE_CANCELLED, dalle_generate(ctx, "a", &p, &images, &tokens, NULL));
    CHECK(tokens.data == NULL && images.images == NULL);
    dalle_context_free(ctx);
    dalle_model_free(model);
}

/* unCLIP's settings: checked before any denoising. */
static void unclip(const char *path) {
    dalle_model *model = load(path);
    dalle_context *ctx = context(model);
    dalle_generate_params defaults = dalle_generate_default_params(), p;
    dalle_image_batch images = {0};
#define BAD_UNCLIP(field, value) do { p = defaults; p.field = (value); \
    EXPECT_C(ctx, BAD, dalle_generate(ctx, "a", &p, &images, NULL, NULL)); CHECK(images.images == NULL); } while (0)
    BAD_UNCLIP(prior_steps, 1001);
    BAD_UNCLIP(decoder_steps, UINT32_MAX);
    BAD_UNCLIP(super_res_steps, 1u << 31);
    BAD_UNCLIP(prior_guidance, -1);
    BAD_UNCLIP(prior_guidance, NAN);
    BAD_UNCLIP(decoder_guidance, INFINITY);
    BAD_UNCLIP(decoder_guidance, -INFINITY);
    BAD_UNCLIP(count, DALLE_MAX_GENERATE + 1);
    dalle_tokens tokens = {0};
    p = defaults;
    EXPECT_FAIL(dalle_generate(ctx, "a", &p, NULL, &tokens, NULL), dalle_context_last_error(ctx));
    CHECK(tokens.data == NULL);
    dalle_context_free(ctx);
    dalle_model_free(model);
}

static void clip(const char *path) {
    dalle_model *model = load(path);
    dalle_context *ctx = context(model);
    uint32_t size = 0;
    EXPECT_G(BAD, dalle_clip_embedding_size(model, NULL));
    EXPECT_G(DALLE_OK, dalle_clip_embedding_size(model, &size));
    float *embeddings = calloc((size_t)size * 2, sizeof *embeddings);
    EXPECT_C(ctx, BAD, dalle_clip_encode_text(ctx, NULL, embeddings, size));
    EXPECT_C(ctx, BAD, dalle_clip_encode_text(ctx, "", embeddings, size));
    EXPECT_C(ctx, BAD, dalle_clip_encode_text(ctx, "\xff", embeddings, size));
    EXPECT_C(ctx, BAD, dalle_clip_encode_text(ctx, "a", NULL, size));
    EXPECT_C(ctx, BAD, dalle_clip_encode_text(ctx, "a", embeddings, size - 1));
    EXPECT_C(ctx, BAD, dalle_clip_encode_text(ctx, "a", embeddings, 0));
    EXPECT_C(ctx, BAD, dalle_clip_encode_text(ctx, "a", embeddings, UINT32_MAX));
    uint8_t *pixels = calloc(64 * 64, 4);
    dalle_image good = {64, 48, 3, pixels};
    const dalle_image bad_images[] = {
        {64, 48, 3, NULL}, {0, 48, 3, pixels}, {64, 0, 3, pixels}, {64, 48, 2, pixels}, {64, 48, 0, pixels},
        {32769, 1, 3, pixels}, {1, 32769, 3, pixels}, {32768, 32768, 3, pixels}, {UINT32_MAX, UINT32_MAX, 3, pixels},
    };
    EXPECT_C(ctx, BAD, dalle_clip_encode_images(ctx, NULL, 1, embeddings, size));
    EXPECT_C(ctx, BAD, dalle_clip_encode_images(ctx, &good, 0, embeddings, size));
    EXPECT_C(ctx, BAD, dalle_clip_encode_images(ctx, &good, DALLE_MAX_BATCH + 1, embeddings, size));
    EXPECT_C(ctx, BAD, dalle_clip_encode_images(ctx, &good, 1, NULL, size));
    EXPECT_C(ctx, BAD, dalle_clip_encode_images(ctx, &good, 1, embeddings, size + 1));
    float scores[2];
    uint32_t order[2];
    for (size_t i = 0; i < sizeof bad_images / sizeof *bad_images; i++) {
        EXPECT_C(ctx, BAD, dalle_clip_encode_images(ctx, &bad_images[i], 1, embeddings, size));
        dalle_image pair[2] = {good, bad_images[i]};
        EXPECT_C(ctx, BAD, dalle_rerank(ctx, "a", pair, 2, scores, order));
    }
    EXPECT_C(ctx, BAD, dalle_rerank(ctx, "a", &good, 1, NULL, NULL));
    EXPECT_C(ctx, BAD, dalle_rerank(ctx, NULL, &good, 1, scores, order));
    EXPECT_C(ctx, BAD, dalle_rerank(ctx, "", &good, 1, scores, order));
    EXPECT_C(ctx, BAD, dalle_rerank(ctx, "a", NULL, 1, scores, order));
    EXPECT_C(ctx, BAD, dalle_rerank(ctx, "a", &good, 0, scores, order));
    EXPECT_C(ctx, BAD, dalle_rerank(ctx, "a", &good, UINT32_MAX, scores, order));
    EXPECT_C(ctx, DALLE_OK, dalle_rerank(ctx, "a", &good, 1, scores, NULL));
    free(pixels);
    free(embeddings);
    dalle_context_free(ctx);
    dalle_model_free(model);
}

static void shapes(const char *generate_path, const char *dir) {
    dalle_image image = {7, 7, 7, (uint8_t *)(uintptr_t)0x10};
    EXPECT_G(BAD, dalle_shapes_render(NULL, 1, &image));
    CHECK(image.data == NULL);
    EXPECT_G(BAD, dalle_shapes_render("a red circle", 1, NULL));
    const char *bad_captions[] = {"", "a", "a pink circle", "a red circle left of", "A RED CIRCLE",
                                  "a  red circle", "\xff\xfe", "two two red circles", "nine red circles"};
    bool passed;
    char reason[8];
    for (size_t i = 0; i < sizeof bad_captions / sizeof *bad_captions; i++)
        EXPECT_G(BAD, dalle_shapes_render(bad_captions[i], 1, &image));
    EXPECT_G(DALLE_OK, dalle_shapes_render("a red circle", UINT64_MAX, &image));
    for (size_t i = 0; i < sizeof bad_captions / sizeof *bad_captions; i++)
        EXPECT_G(BAD, dalle_shapes_judge(&image, bad_captions[i], &passed, reason, sizeof reason));
    EXPECT_G(BAD, dalle_shapes_judge(NULL, "a red circle", &passed, NULL, 0));
    EXPECT_G(BAD, dalle_shapes_judge(&image, NULL, &passed, NULL, 0));
    EXPECT_G(BAD, dalle_shapes_judge(&image, "a red circle", NULL, NULL, 0));
    EXPECT_G(BAD, dalle_shapes_judge(&image, "a blue square", &passed, NULL, 5));
    EXPECT_G(DALLE_OK, dalle_shapes_judge(&image, "a blue square", &passed, reason, 1));
    CHECK(!passed && reason[0] == '\0');
    EXPECT_G(DALLE_OK, dalle_shapes_judge(&image, "a blue square", &passed, reason, sizeof reason));
    CHECK(memchr(reason, 0, sizeof reason) != NULL);
    dalle_image wrong[] = {{63, 64, 3, image.data}, {64, 64, 2, image.data}, {64, 64, 3, NULL},
                           {UINT32_MAX, UINT32_MAX, 3, image.data}};
    for (size_t i = 0; i < sizeof wrong / sizeof *wrong; i++)
        EXPECT_G(BAD, dalle_shapes_judge(&wrong[i], "a red circle", &passed, NULL, 0));

    char path[4096];
    snprintf(path, sizeof path, "%s/misuse.png", dir);
    EXPECT_G(BAD, dalle_image_write_png(NULL, &image));
    EXPECT_G(BAD, dalle_image_write_png(path, NULL));
    dalle_image bad_png[] = {{64, 64, 3, NULL}, {0, 64, 3, image.data}, {64, 64, 2, image.data},
                             {64, 64, 1, image.data}, {1u << 14, 1u << 14, 3, image.data},
                             {UINT32_MAX, UINT32_MAX, 3, image.data}};
    for (size_t i = 0; i < sizeof bad_png / sizeof *bad_png; i++)
        EXPECT_G(BAD, dalle_image_write_png(path, &bad_png[i]));
    EXPECT_G(DALLE_IO_ERROR, dalle_image_write_png("/nonexistent/dir/x.png", &image));
    EXPECT_G(DALLE_IO_ERROR, dalle_image_write_png(dir, &image));
    dalle_image_free(&image);
    dalle_image_free(&image); /* zeroed: ignored */
    dalle_image_free(NULL);

    dalle_image read = {7, 7, 7, (uint8_t *)(uintptr_t)0x10};
    EXPECT_G(BAD, dalle_image_read_file(NULL, &read));
    CHECK(read.data == NULL);
    EXPECT_G(BAD, dalle_image_read_file(path, NULL));
    EXPECT_G(DALLE_IO_ERROR, dalle_image_read_file("/nonexistent.png", &read));
    CHECK(dalle_image_read_file(dir, &read) != DALLE_OK && read.data == NULL);
    EXPECT_G(DALLE_BAD_FILE, dalle_image_read_file(generate_path, &read));
    CHECK(dalle_image_read_file("/dev/null", &read) != DALLE_OK && read.data == NULL);

    size_t length = 0;
    char caption[4];
    EXPECT_G(BAD, dalle_shapes_training_sample(1, 0, NULL, 0, NULL, NULL));
    EXPECT_G(BAD, dalle_shapes_training_sample(1, 0, NULL, 5, &length, NULL));
    EXPECT_G(BAD, dalle_shapes_training_sample(1, 0, caption, sizeof caption, &length, NULL));
    CHECK(length > sizeof caption);
    EXPECT_G(DALLE_OK, dalle_shapes_training_sample(UINT64_MAX, UINT64_MAX, NULL, 0, &length, NULL));
}

static void evaluation(const char *dvae_only_path, const char *dir) {
    dalle_model *model = load(dvae_only_path);
    dalle_context *ctx = context(model);
    dalle_eval_params defaults = dalle_eval_default_params(), p;
    CHECK(defaults.struct_size == sizeof defaults);
    dalle_eval_report report = {0};
    report.struct_size = sizeof report;
    EXPECT_C(ctx, BAD, dalle_shapes_eval(ctx, NULL, NULL));
    report.struct_size = 1;
    EXPECT_C(ctx, BAD, dalle_shapes_eval(ctx, NULL, &report));
    report.struct_size = sizeof report;
#define BAD_EVAL(field, value) do { p = defaults; p.field = (value); \
    EXPECT_C(ctx, BAD, dalle_shapes_eval(ctx, &p, &report)); \
    EXPECT_FAIL(dalle_shapes_candidates(ctx, &p, 1, out), dalle_context_last_error(ctx)); } while (0)
    char out[4096];
    snprintf(out, sizeof out, "%s/misuse-candidates.safetensors", dir);
    BAD_EVAL(struct_size, 0);
    BAD_EVAL(struct_size, 0xFFFFFFFFu);
    BAD_EVAL(candidates, DALLE_MAX_GENERATE + 1);
    BAD_EVAL(per_template, 100001);
    BAD_EVAL(per_held_out_pair, UINT32_MAX);
    BAD_EVAL(reconstruction_samples, UINT32_MAX);
    BAD_EVAL(temperature, NAN);
    BAD_EVAL(top_p, 2);
    BAD_EVAL(top_k, -1);
    BAD_EVAL(cond_scale, INFINITY);
    BAD_EVAL(likelihood_weight, -2);
    /* Generation needs a transformer; this model has only a dVAE. */
    p = defaults;
    EXPECT_C(ctx, DALLE_UNSUPPORTED, dalle_shapes_eval(ctx, &p, &report));
    EXPECT_C(ctx, BAD, dalle_shapes_candidates(ctx, &p, 0, out));
    EXPECT_C(ctx, BAD, dalle_shapes_candidates(ctx, &p, 100001, out));
    EXPECT_C(ctx, BAD, dalle_shapes_candidates(ctx, &p, 1, NULL));
    dalle_context_free(ctx);
    dalle_model_free(model);
}

static void training(const char *generate_path, const char *dir) {
    dalle_train_params defaults = dalle_train_default_params(), p;
    CHECK(defaults.struct_size == sizeof defaults);
    char out[4096];
    snprintf(out, sizeof out, "%s/misuse-train.safetensors", dir);
    EXPECT_G(BAD, dalle_train(NULL));
#define BAD_TRAIN(field, value) do { p = defaults; p.stage = "dvae"; p.data = "shapes"; p.out_path = out; \
    p.steps = 1; p.batch_size = 1; p.validation_count = 1; p.field = (value); remove(out); \
    EXPECT_FAIL(dalle_train(&p), dalle_last_error()); } while (0)
    BAD_TRAIN(struct_size, 0);
    BAD_TRAIN(struct_size, 0xFFFFFFFFu);
    BAD_TRAIN(stage, NULL);
    BAD_TRAIN(stage, "bogus");
    BAD_TRAIN(stage, "\xff");
    BAD_TRAIN(data, NULL);
    BAD_TRAIN(data, "shapes:1,2");
    BAD_TRAIN(data, "shapes:-1,1,1");
    BAD_TRAIN(data, "/nonexistent/folder");
    BAD_TRAIN(out_path, NULL);
    BAD_TRAIN(n_threads, -1);
    BAD_TRAIN(steps, 0);
    BAD_TRAIN(steps, -1);
    BAD_TRAIN(batch_size, 0);
    BAD_TRAIN(batch_size, INT32_MAX);
    BAD_TRAIN(learning_rate, NAN);
    BAD_TRAIN(learning_rate, -1);
    BAD_TRAIN(warmup_steps, -1);
    BAD_TRAIN(weight_decay, NAN);
    BAD_TRAIN(gradient_clip, -INFINITY);
    BAD_TRAIN(validation_count, -1);
    BAD_TRAIN(checkpoint_every, -1);
    BAD_TRAIN(caption_dropout, 2);
    BAD_TRAIN(caption_negatives, 9);
    BAD_TRAIN(config, "garbage");
    BAD_TRAIN(config, "n_hid=-1");
    BAD_TRAIN(config, "n_hid=99999999999999999999");
    BAD_TRAIN(config, "n_hid=1000000,n_blk_per_group=1000000");
    BAD_TRAIN(dvae_schedule, "kmeans=-5");
    BAD_TRAIN(dvae_schedule, "nonsense");
    BAD_TRAIN(init_path, "/nonexistent.safetensors");
    p = defaults;
    p.stage = "tokenizer";
    p.data = "shapes";
    p.out_path = out;
    p.vocab_size = -1;
    EXPECT_G(BAD, dalle_train(&p));
    p.vocab_size = INT32_MAX;
    EXPECT_G(BAD, dalle_train(&p));
    p = defaults;
    p.stage = "transformer";
    p.data = "shapes";
    p.out_path = out;
    p.tokenizer_path = "/nonexistent.safetensors";
    p.dvae_path = generate_path;
    EXPECT_G(DALLE_IO_ERROR, dalle_train(&p));

    dalle_bundle_params bundle = dalle_bundle_default_params();
    CHECK(bundle.struct_size == sizeof bundle);
    const char *parts[] = {generate_path};
    const char *null_part[] = {NULL};
    const char *missing_part[] = {"/nonexistent.safetensors"};
    snprintf(out, sizeof out, "%s/misuse-bundle.safetensors", dir);
    EXPECT_G(BAD, dalle_bundle(NULL, 1, out, true));
    EXPECT_G(BAD, dalle_bundle(parts, 0, out, true));
    EXPECT_G(BAD, dalle_bundle(parts, 1, NULL, true));
    EXPECT_G(BAD, dalle_bundle(null_part, 1, out, true));
    CHECK(dalle_bundle(missing_part, 1, out, true) != DALLE_OK);
    EXPECT_G(DALLE_IO_ERROR, dalle_bundle(parts, 1, "/nonexistent/dir/b.safetensors", false));
    EXPECT_G(BAD, dalle_bundle_with_params(NULL, 1, out, NULL));
    EXPECT_G(BAD, dalle_bundle_with_params(parts, SIZE_MAX, out, NULL));
    EXPECT_G(BAD, dalle_bundle_with_params(parts, 1, NULL, NULL));
#define BAD_BUNDLE(field, value) do { dalle_bundle_params b_ = dalle_bundle_default_params(); b_.field = (value); \
    EXPECT_G(BAD, dalle_bundle_with_params(parts, 1, out, &b_)); } while (0)
    BAD_BUNDLE(struct_size, 0);
    BAD_BUNDLE(struct_size, 0xFFFFFFFFu);
    BAD_BUNDLE(weight_type, -1);
    BAD_BUNDLE(weight_type, 5);
    BAD_BUNDLE(weight_type, INT32_MAX);
    BAD_BUNDLE(cond_scale, NAN);
    BAD_BUNDLE(cond_scale, -INFINITY);
    BAD_BUNDLE(likelihood_weight, NAN);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s GENERATE_MODEL CLIP_MODEL DVAE_MODEL UNCLIP_MODEL DIR\n", argv[0]);
        return 2;
    }
    const char *generate_path = argv[1], *clip_path = argv[2], *dvae_path = argv[3], *unclip_path = argv[4];
    const char *dir = argv[5];
    library();
    models(generate_path, dir);
    contexts(generate_path);
    text(generate_path, dvae_path);
    dvae(generate_path);
    generate(generate_path);
    clip(clip_path);
    unclip(unclip_path);
    shapes(generate_path, dir);
    evaluation(dvae_path, dir);
    training(generate_path, dir);
    printf("C API misuse: %d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
