/* Encode -> decode round trip through libdalle's C API on a synthetic image.
 *
 *   cc roundtrip.c -I../../include -L../../build/lib -ldalle -o roundtrip
 *   LD_LIBRARY_PATH=../../build/lib ./roundtrip MODEL.safetensors
 *
 * Every status is checked; on failure the library's message is printed. */
#include <stdio.h>
#include <stdlib.h>

#include "dalle.h"

static int fail(const char *what, dalle_status status, const char *message) {
    fprintf(stderr, "roundtrip: %s failed (%s): %s\n", what, dalle_status_string(status), message);
    return 1;
}

static bool on_progress(dalle_phase phase, int32_t step, int32_t total, void *user_data) {
    (void)user_data;
    static const char *names[] = {"load", "encode", "decode"};
    fprintf(stderr, "  %s %d/%d\n", phase >= 0 && phase <= 2 ? names[phase] : "?", step, total);
    return true; /* false would cancel: the call returns DALLE_CANCELLED */
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL.safetensors\n", argv[0]);
        return 2;
    }
    printf("%s\n", dalle_system_info());

    dalle_model_params model_params = dalle_model_default_params();
    model_params.progress = on_progress;
    dalle_model *model = NULL;
    dalle_status status = dalle_model_load_file(argv[1], &model_params, &model);
    if (status != DALLE_OK) return fail("dalle_model_load_file", status, dalle_last_error());

    dalle_model_info info = {0};
    info.struct_size = sizeof info;
    status = dalle_model_get_info(model, &info);
    if (status != DALLE_OK) return fail("dalle_model_get_info", status, dalle_last_error());
    if (!(info.components & DALLE_COMPONENT_DVAE)) {
        fprintf(stderr, "roundtrip: the model has no dVAE\n");
        return 1;
    }
    printf("model: %ux%u images, %ux%u token grid, codebook %u, %llu parameters\n", info.image_size,
           info.image_size, info.token_grid_size, info.token_grid_size, info.codebook_size,
           (unsigned long long)info.n_params);

    dalle_context_params ctx_params = dalle_context_default_params();
    ctx_params.n_threads = 0; /* all cores */
    ctx_params.progress = on_progress;
    dalle_context *ctx = NULL;
    status = dalle_context_create(model, &ctx_params, &ctx);
    if (status != DALLE_OK) return fail("dalle_context_create", status, dalle_last_error());

    /* A synthetic image: a diagonal colour gradient. */
    const uint32_t size = info.image_size;
    uint8_t *pixels = malloc((size_t)size * size * 3);
    if (!pixels) return 1;
    for (uint32_t y = 0; y < size; y++)
        for (uint32_t x = 0; x < size; x++) {
            uint8_t *p = pixels + ((size_t)y * size + x) * 3;
            p[0] = (uint8_t)(255 * x / size);
            p[1] = (uint8_t)(255 * y / size);
            p[2] = (uint8_t)(255 * (x + y) / (2 * size));
        }
    dalle_image image = {size, size, 3, pixels};

    dalle_tokens tokens = {0};
    status = dalle_encode(ctx, &image, 1, &tokens);
    if (status != DALLE_OK) return fail("dalle_encode", status, dalle_context_last_error(ctx));
    printf("tokens (%ux%u):", tokens.rows, tokens.cols);
    for (uint32_t i = 0; i < tokens.rows * tokens.cols; i++) printf(" %d", tokens.data[i]);
    printf("\n");

    dalle_image_batch decoded = {0};
    status = dalle_decode(ctx, &tokens, &decoded);
    if (status != DALLE_OK) return fail("dalle_decode", status, dalle_context_last_error(ctx));
    if (decoded.count != 1 || decoded.images[0].width != size || decoded.images[0].channels != 3) {
        fprintf(stderr, "roundtrip: unexpected decode output\n");
        return 1;
    }
    double error = 0;
    for (size_t i = 0; i < (size_t)size * size * 3; i++)
        error += abs((int)decoded.images[0].data[i] - (int)pixels[i]);
    printf("decoded %ux%u image, mean absolute difference %.1f / 255\n", decoded.images[0].width,
           decoded.images[0].height, error / ((double)size * size * 3));

    /* Errors come back as a status and a message, never a crash. */
    tokens.data[0] = (int32_t)info.codebook_size;
    dalle_image_batch rejected = {0};
    status = dalle_decode(ctx, &tokens, &rejected);
    if (status != DALLE_INVALID_ARGUMENT) return fail("rejecting a bad token", status, "expected invalid argument");
    printf("bad token rejected: %s\n", dalle_context_last_error(ctx));

    dalle_image_batch_free(&decoded);
    dalle_tokens_free(&tokens);
    free(pixels);
    dalle_context_free(ctx);
    dalle_model_free(model);
    printf("ok\n");
    return 0;
}
