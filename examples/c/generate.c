/* Text -> images through libdalle's C API: generate, then a variation that keeps the top
 * rows of the first image's tokens (image priming), then a generation cancelled mid-way.
 *
 *   cc generate.c -I../../include -L../../build/lib -ldalle -o generate
 *   LD_LIBRARY_PATH=../../build/lib ./generate MODEL.safetensors "a red ball"
 *
 * MODEL needs a tokenizer, a transformer and a dVAE. Every status is checked; on failure the
 * library's message is printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle.h"

static int fail(const char *what, dalle_status status, const char *message) {
    fprintf(stderr, "generate: %s failed (%s): %s\n", what, dalle_status_string(status), message);
    return 1;
}

/* Prints a line every quarter of the tokens; cancels once *user_data steps have been seen. */
static bool on_progress(dalle_phase phase, int32_t step, int32_t total, void *user_data) {
    const int32_t *stop_at = user_data;
    if (phase == DALLE_PHASE_GENERATE && total >= 4 && step % (total / 4) == 0)
        fprintf(stderr, "  token %d/%d\n", step, total);
    if (phase == DALLE_PHASE_DECODE) fprintf(stderr, "  decoded %d/%d\n", step, total);
    return !(stop_at && phase == DALLE_PHASE_GENERATE && step >= *stop_at);
}

/* Mean of all pixel values: a one-number summary of an image. */
static double mean_pixel(const dalle_image *image) {
    size_t n = (size_t)image->width * image->height * image->channels;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += image->data[i];
    return n ? sum / (double)n : 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.safetensors PROMPT\n", argv[0]);
        return 2;
    }
    dalle_model *model = NULL;
    dalle_status status = dalle_model_load_file(argv[1], NULL, &model);
    if (status != DALLE_OK) return fail("dalle_model_load_file", status, dalle_last_error());

    dalle_context_params ctx_params = dalle_context_default_params();
    ctx_params.seed = 42;
    dalle_context *ctx = NULL;
    status = dalle_context_create(model, &ctx_params, &ctx);
    if (status != DALLE_OK) return fail("dalle_context_create", status, dalle_last_error());

    /* 1. Four candidates for the prompt, sampled with top-k and the guidance scale the model
     *    was tuned for. */
    dalle_model_info model_info = {0};
    model_info.struct_size = sizeof model_info;
    status = dalle_model_get_info(model, &model_info);
    if (status != DALLE_OK) return fail("dalle_model_get_info", status, dalle_last_error());
    dalle_generate_params params = dalle_generate_default_params();
    params.count = 4;
    params.top_k = 16;
    params.cond_scale = model_info.cond_scale;
    params.progress = on_progress;
    float log_likelihoods[4]; /* each image's mean log-probability per token: the model's confidence */
    params.out_log_likelihoods = log_likelihoods;
    dalle_image_batch images = {0};
    dalle_tokens tokens = {0};
    dalle_generate_info info = {0};
    info.struct_size = sizeof info;
    status = dalle_generate(ctx, argv[2], &params, &images, &tokens, &info);
    if (status != DALLE_OK) return fail("dalle_generate", status, dalle_context_last_error(ctx));
    printf("prompt: %u tokens (%u dropped), seed %llu, %u image tokens each\n", info.prompt_tokens,
           info.truncated_tokens, (unsigned long long)info.seed, info.generated_tokens);
    for (uint32_t i = 0; i < images.count; i++) {
        printf("image %u: %ux%u, mean pixel %.1f, log-likelihood %.3f per token, first tokens", i,
               images.images[i].width, images.images[i].height, mean_pixel(&images.images[i]), log_likelihoods[i]);
        for (uint32_t t = 0; t < 6; t++) printf(" %d", tokens.data[i * tokens.rows * tokens.cols + t]);
        printf("\n");
    }

    /* 2. A variation of image 0: its top half kept, the rest generated again. */
    const uint32_t cols = tokens.cols, keep_rows = tokens.rows / 2;
    dalle_generate_params variation = dalle_generate_default_params();
    variation.count = 2;
    variation.seed = 7;
    variation.prime_rows = keep_rows;
    variation.prime_tokens = tokens.data; /* grid 0's first rows; borrowed for the call */
    dalle_tokens varied = {0};
    status = dalle_generate(ctx, argv[2], &variation, NULL, &varied, NULL);
    if (status != DALLE_OK) return fail("dalle_generate (variation)", status, dalle_context_last_error(ctx));
    if (memcmp(varied.data, tokens.data, (size_t)keep_rows * cols * sizeof(int32_t)) != 0) {
        fprintf(stderr, "generate: the variation lost its primed rows\n");
        return 1;
    }
    printf("variation: kept %u of %u rows\n", keep_rows, varied.rows);

    /* 3. A generation cancelled by its progress callback after 5 tokens. */
    int32_t stop_at = 5;
    params.progress_user_data = &stop_at;
    dalle_image_batch cancelled = {0};
    status = dalle_generate(ctx, argv[2], &params, &cancelled, NULL, NULL);
    if (status != DALLE_CANCELLED || cancelled.images != NULL) {
        fprintf(stderr, "generate: expected DALLE_CANCELLED, got %s\n", dalle_status_string(status));
        return 1;
    }
    printf("cancelled: %s\n", dalle_context_last_error(ctx));

    /* 4. Bad input is an error with a message, never a crash. */
    params.progress_user_data = NULL;
    params.temperature = 0;
    status = dalle_generate(ctx, argv[2], &params, &cancelled, NULL, NULL);
    if (status != DALLE_INVALID_ARGUMENT) return fail("the temperature check", status, "accepted 0");
    printf("rejected: %s\n", dalle_context_last_error(ctx));

    dalle_tokens_free(&varied);
    dalle_tokens_free(&tokens);
    dalle_image_batch_free(&images);
    dalle_context_free(ctx);
    dalle_model_free(model);
    printf("ok\n");
    return 0;
}
