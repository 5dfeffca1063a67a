/* One hostile-input case: loads a (possibly mutated) model file and exercises every
 * capability it reports, checking only that the library answers with a status.
 *
 *   driver [--buffer] MODEL.safetensors
 *
 * --buffer loads through dalle_model_load_buffer instead of dalle_model_load_file.
 * Exit status: 0 when every call returned a status (DALLE_OK or an error with a message),
 * 3 when a call reported DALLE_INTERNAL_ERROR or broke a documented promise (an output
 * not zeroed on failure, an empty message), 2 on a usage error. A crash is a signal, which
 * tests/hostile/run.py reports. Every allocation is freed, so the same program serves
 * `make check-valgrind`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle.h"

static int broken = 0;

/* Reports a failed call; an internal error or a failure without a message is a finding. The
 * message is read here, after the call (C leaves the order of a call's arguments open): the
 * context's when ctx is given, else this thread's. */
static dalle_status note(const char *what, dalle_status status, const dalle_context *ctx) {
    if (status == DALLE_OK) return status;
    const char *message = ctx ? dalle_context_last_error(ctx) : dalle_last_error();
    printf("%s: %s: %s\n", what, dalle_status_string(status), message);
    if (status == DALLE_INTERNAL_ERROR || message == NULL || message[0] == '\0') {
        fprintf(stderr, "FINDING: %s returned %s with message '%s'\n", what, dalle_status_string(status),
                message ? message : "(null)");
        broken = 1;
    }
    return status;
}

static void finding(const char *what) {
    fprintf(stderr, "FINDING: %s\n", what);
    broken = 1;
}

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(n > 0 ? (size_t)n : 1);
    if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return data;
}

/* A side x side RGB image of a diagonal gradient (caller frees data). */
static dalle_image gradient(uint32_t side_w, uint32_t side_h) {
    dalle_image image = {side_w, side_h, 3, malloc((size_t)side_w * side_h * 3)};
    for (size_t i = 0; image.data && i < (size_t)side_w * side_h * 3; i++) image.data[i] = (uint8_t)(i * 7);
    return image;
}

static void exercise_tokenizer(dalle_context *ctx) {
    const char *text = "a small red circle left of two blue squares";
    for (dalle_tokenize_mode mode = DALLE_TOKENIZE_MODEL; mode <= DALLE_TOKENIZE_DALLE; mode++) {
        size_t count = 0;
        if (note("tokenize (size)", dalle_tokenize(ctx, text, mode, NULL, 0, &count, NULL), ctx) != DALLE_OK)
            continue;
        int32_t *ids = malloc((count ? count : 1) * sizeof *ids);
        bool truncated = false;
        note("tokenize", dalle_tokenize(ctx, text, mode, ids, count, &count, &truncated), ctx);
        free(ids);
    }
}

static void exercise_dvae(dalle_context *ctx, const dalle_model_info *info) {
    if (info->image_size == 0 || info->image_size > 1024) return;
    dalle_image image = gradient(info->image_size, info->image_size);
    dalle_tokens tokens = {0};
    if (note("encode", dalle_encode(ctx, &image, 1, &tokens), ctx) == DALLE_OK) {
        dalle_image_batch images = {0};
        if (note("decode", dalle_decode(ctx, &tokens, &images), ctx) == DALLE_OK &&
            (images.count != 1 || images.images == NULL || images.images[0].data == NULL))
            finding("decode returned OK without an image");
        dalle_image_batch_free(&images);
    } else if (tokens.data != NULL || tokens.count != 0) {
        finding("a failed encode left its output set");
    }
    dalle_tokens_free(&tokens);
    free(image.data);
}

/* Generates one image with every row but the last primed, so a case costs one row of tokens. */
static void exercise_transformer(dalle_context *ctx, const dalle_model_info *info) {
    dalle_generate_params params = dalle_generate_default_params();
    params.count = 1;
    params.seed = 5;
    params.top_k = 4;
    uint32_t grid = info->token_grid_size;
    int32_t *prime = NULL;
    if (grid > 1 && grid <= 256) {
        prime = calloc((size_t)grid * (grid - 1), sizeof *prime);
        params.prime_rows = grid - 1;
        params.prime_tokens = prime;
    }
    dalle_tokens tokens = {0};
    dalle_image_batch images = {0};
    dalle_generate_info gen_info = {0};
    gen_info.struct_size = sizeof gen_info;
    bool decode = (info->components & DALLE_COMPONENT_DVAE) != 0;
    dalle_status status = dalle_generate(ctx, "a red circle", &params, decode ? &images : NULL, &tokens, &gen_info);
    if (note("generate", status, ctx) != DALLE_OK && (tokens.data || images.images))
        finding("a failed generate left its outputs set");
    dalle_image_batch_free(&images);
    dalle_tokens_free(&tokens);
    if ((info->components & DALLE_COMPONENT_CLIP) && decode) {
        /* Two candidates, the better one by CLIP kept. */
        params.count = 2;
        params.keep_best = 1;
        float score = 0;
        params.out_scores = &score;
        status = dalle_generate(ctx, "a red circle", &params, &images, NULL, NULL);
        if (note("generate (keep_best)", status, ctx) != DALLE_OK && images.images)
            finding("a failed generate left its images set");
        dalle_image_batch_free(&images);
    }
    free(prime);
}

/* The Shapes World evaluation of the dVAE alone (a few reconstructions), for 64x64 dVAEs. */
static void exercise_eval(dalle_context *ctx, const dalle_model_info *info) {
    if (info->image_size != DALLE_SHAPES_IMAGE_SIZE) return;
    dalle_eval_params params = dalle_eval_default_params();
    params.candidates = 0;
    params.per_template = 1;
    params.per_held_out_pair = 0;
    params.reconstruction_samples = 1;
    dalle_eval_report report = {0};
    report.struct_size = sizeof report;
    note("shapes_eval", dalle_shapes_eval(ctx, &params, &report), ctx);
}

static void exercise_clip(dalle_context *ctx, const dalle_model *model) {
    uint32_t size = 0;
    if (note("clip_embedding_size", dalle_clip_embedding_size(model, &size), NULL) != DALLE_OK) return;
    if (size == 0 || size > 65536) {
        finding("dalle_clip_embedding_size returned OK with an implausible size");
        return;
    }
    float *embedding = malloc(2 * (size_t)size * sizeof *embedding);
    note("clip_encode_text", dalle_clip_encode_text(ctx, "a red circle", embedding, size), ctx);
    dalle_image images[2] = {gradient(40, 30), gradient(9, 70)};
    note("clip_encode_images", dalle_clip_encode_images(ctx, images, 2, embedding, size), ctx);
    float scores[2];
    uint32_t order[2];
    note("rerank", dalle_rerank(ctx, "a red circle", images, 2, scores, order), ctx);
    free(images[0].data);
    free(images[1].data);
    free(embedding);
}

/* DALL-E 2: the fewest denoising steps, tokens are not part of it. */
static void exercise_unclip(dalle_context *ctx) {
    dalle_generate_params params = dalle_generate_default_params();
    params.seed = 3;
    params.prior_steps = params.decoder_steps = params.super_res_steps = 1;
    dalle_image_batch images = {0};
    if (note("generate (unclip)", dalle_generate(ctx, "a red cat", &params, &images, NULL, NULL), ctx) != DALLE_OK && images.images)
        finding("a failed generate left its images set");
    dalle_image_batch_free(&images);
}

int main(int argc, char **argv) {
    int use_buffer = argc == 3 && strcmp(argv[1], "--buffer") == 0;
    if (argc != 2 + use_buffer) {
        fprintf(stderr, "usage: %s [--buffer] MODEL.safetensors\n", argv[0]);
        return 2;
    }
    const char *path = argv[1 + use_buffer];
    dalle_log_set_level(DALLE_LOG_NONE);
    dalle_model *model = (dalle_model *)&broken; /* must be set to NULL on failure */
    dalle_status status;
    if (use_buffer) {
        size_t size = 0;
        unsigned char *data = read_file(path, &size);
        if (!data) {
            fprintf(stderr, "driver: cannot read %s\n", path);
            return 2;
        }
        status = dalle_model_load_buffer(data, size, NULL, &model);
        free(data);
    } else {
        status = dalle_model_load_file(path, NULL, &model);
    }
    if (note("load", status, NULL) != DALLE_OK) {
        if (model != NULL) finding("a failed load did not set *out_model to NULL");
        return broken ? 3 : 0;
    }

    dalle_model_info info = {0};
    info.struct_size = sizeof info;
    note("get_info", dalle_model_get_info(model, &info), NULL);
    int32_t count = 0;
    note("component_count", dalle_model_component_count(model, &count), NULL);
    for (int32_t i = 0; i < count; i++) {
        dalle_component_info component = {0};
        component.struct_size = sizeof component;
        if (note("get_component", dalle_model_get_component(model, i, &component), NULL) == DALLE_OK &&
            (memchr(component.name, 0, sizeof component.name) == NULL ||
             memchr(component.variant, 0, sizeof component.variant) == NULL))
            finding("a component's name or variant is not NUL-terminated");
    }
    printf("loaded: components 0x%x, image %u, grid %u, codebook %u, %llu parameters\n", info.components,
           info.image_size, info.token_grid_size, info.codebook_size, (unsigned long long)info.n_params);

    dalle_context_params ctx_params = dalle_context_default_params();
    /* DALLE_DRIVER_THREADS: the context's thread count (default 1; memory_limits.py sets it). */
    const char *threads = getenv("DALLE_DRIVER_THREADS");
    ctx_params.n_threads = threads ? (uint32_t)atoi(threads) : 1;
    ctx_params.seed = 1;
    dalle_context *ctx = NULL;
    if (note("context_create", dalle_context_create(model, &ctx_params, &ctx), NULL) == DALLE_OK) {
        if (info.components & DALLE_COMPONENT_TOKENIZER) exercise_tokenizer(ctx);
        if (info.components & DALLE_COMPONENT_DVAE) exercise_dvae(ctx, &info);
        if (info.components & DALLE_COMPONENT_DVAE) exercise_eval(ctx, &info);
        if (info.components & DALLE_COMPONENT_TRANSFORMER) exercise_transformer(ctx, &info);
        if (info.components & DALLE_COMPONENT_CLIP) exercise_clip(ctx, model);
        if (info.components & DALLE_COMPONENT_UNCLIP) exercise_unclip(ctx);
    }
    dalle_context_free(ctx);
    dalle_model_free(model);
    printf("done%s\n", broken ? " (with findings)" : "");
    return broken ? 3 : 0;
}
