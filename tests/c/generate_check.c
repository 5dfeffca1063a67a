/* dalle_generate's defaults and prompt checks from C, against the default model (which records
 * a reranking weight and the Shapes World's vocabulary):
 *   - dalle_generate_default_params() reranks by the model's tuned likelihood weight
 *     (DALLE_LIKELIHOOD_WEIGHT_MODEL): the order of that weight set by hand, not CLIP's alone,
 *     and the kept images' CLIP score + weight x log-likelihood descend; a caller built before
 *     likelihood_weight was appended still ranks by CLIP alone;
 *   - a prompt with words outside the model's vocabulary counts them in
 *     dalle_generate_info.unknown_words and names them in a warning log line; a caption of its
 *     world gets neither; an info struct from before unknown_words was appended keeps its size.
 *
 *   generate_check [MODEL.safetensors]      (default: dalle_model_load_default) */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, \
                                                #cond, dalle_last_error()); failures++; } } while (0)

#define CANDIDATES 6
#define PROMPT "a small red circle"

/* Warning lines from dalle_generate, joined. */
static char warnings[4096];
static void on_log(dalle_log_level level, const char *message, void *user_data) {
    (void)user_data;
    if (level == DALLE_LOG_WARN && strncmp(message, "dalle_generate", 14) == 0 &&
        strlen(warnings) + strlen(message) + 2 < sizeof warnings) {
        strcat(warnings, message);
        strcat(warnings, "\n");
    }
}

/* The CANDIDATES candidates of seed `seed` ranked with `weight` (all kept, best first): their
 * tokens into *tokens (caller frees), CLIP scores and log-likelihoods. */
static dalle_status ranked(dalle_context *ctx, dalle_generate_params params, uint64_t seed, dalle_tokens *tokens,
                           float *scores, float *log_likelihoods) {
    params.count = CANDIDATES;
    params.keep_best = CANDIDATES;
    params.seed = seed;
    params.out_scores = scores;
    params.out_log_likelihoods = log_likelihoods;
    dalle_image_batch images = {0};
    dalle_status status = dalle_generate(ctx, PROMPT, &params, &images, tokens, NULL);
    dalle_image_batch_free(&images);
    return status;
}

static int same_tokens(const dalle_tokens *a, const dalle_tokens *b) {
    return a->count == b->count && a->rows == b->rows && a->cols == b->cols &&
           memcmp(a->data, b->data, sizeof(int32_t) * a->count * a->rows * a->cols) == 0;
}

static void check_likelihood_weight(dalle_context *ctx, float tuned) {
    dalle_generate_params defaults = dalle_generate_default_params();
    CHECK(defaults.likelihood_weight == DALLE_LIKELIHOOD_WEIGHT_MODEL);
    CHECK(tuned > 0);

    /* A seed whose ranking by the tuned weight differs from CLIP's alone, so the test shows which one ran. */
    for (uint64_t seed = 1; seed <= 6; seed++) {
        dalle_tokens by_default = {0}, by_hand = {0}, by_clip = {0}, by_old_caller = {0};
        float scores[CANDIDATES], lls[CANDIDATES], clip_scores[CANDIDATES], clip_lls[CANDIDATES], unused[CANDIDATES];
        CHECK(ranked(ctx, defaults, seed, &by_default, scores, lls) == DALLE_OK);
        for (int i = 0; i + 1 < CANDIDATES; i++)
            CHECK(scores[i] + tuned * lls[i] >= scores[i + 1] + tuned * lls[i + 1]);

        dalle_generate_params hand = defaults;
        hand.likelihood_weight = tuned;
        CHECK(ranked(ctx, hand, seed, &by_hand, unused, unused) == DALLE_OK);
        CHECK(same_tokens(&by_default, &by_hand));

        dalle_generate_params clip = defaults;
        clip.likelihood_weight = 0;
        CHECK(ranked(ctx, clip, seed, &by_clip, clip_scores, clip_lls) == DALLE_OK);
        for (int i = 0; i + 1 < CANDIDATES; i++) CHECK(clip_scores[i] >= clip_scores[i + 1]);

        /* Built before likelihood_weight: struct_size ends before it, and the field is not read. */
        dalle_generate_params old = defaults;
        old.struct_size = (uint32_t)offsetof(dalle_generate_params, likelihood_weight);
        dalle_image_batch images = {0};
        old.count = old.keep_best = CANDIDATES;
        old.seed = seed;
        CHECK(dalle_generate(ctx, PROMPT, &old, &images, &by_old_caller, NULL) == DALLE_OK);
        dalle_image_batch_free(&images);
        CHECK(same_tokens(&by_old_caller, &by_clip));

        int differs = !same_tokens(&by_default, &by_clip);
        printf("seed %llu: the tuned weight %.1f ranks %s CLIP alone\n", (unsigned long long)seed, tuned,
               differs ? "otherwise than" : "as");
        dalle_tokens_free(&by_default);
        dalle_tokens_free(&by_hand);
        dalle_tokens_free(&by_clip);
        dalle_tokens_free(&by_old_caller);
        if (differs) return;
    }
    fprintf(stderr, "FAIL: no seed in 1 ... 6 ranks differently by the tuned weight and by CLIP alone\n");
    failures++;
}

/* Generates one image token grid for `prompt`; returns info.unknown_words and collects the warnings. */
static uint32_t unknown_words(dalle_context *ctx, const char *prompt, uint32_t info_size) {
    dalle_generate_params params = dalle_generate_default_params();
    params.seed = 1;
    dalle_tokens tokens = {0};
    dalle_generate_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = info_size;
    info.unknown_words = 777;
    warnings[0] = 0;
    CHECK(dalle_generate(ctx, prompt, &params, NULL, &tokens, &info) == DALLE_OK);
    CHECK(tokens.count == 1 && (info.prompt_tokens > 0) == (prompt[0] != 0));
    dalle_tokens_free(&tokens);
    return info.unknown_words;
}

static void check_unknown_words(dalle_context *ctx) {
    dalle_log_set(on_log, NULL);
    CHECK(unknown_words(ctx, "a photo of a cat", sizeof(dalle_generate_info)) == 2);
    CHECK(strstr(warnings, "2 words the model was never trained on ('photo', 'cat')") != NULL);
    CHECK(strstr(warnings, "Shapes World captions only") != NULL);
    printf("warning: %s", warnings);

    CHECK(unknown_words(ctx, "A cat, a CAT and a dog!", sizeof(dalle_generate_info)) == 3);
    CHECK(strstr(warnings, "('cat', 'and', 'dog')") != NULL);

    CHECK(unknown_words(ctx, PROMPT, sizeof(dalle_generate_info)) == 0);
    CHECK(warnings[0] == 0);
    CHECK(unknown_words(ctx, "", sizeof(dalle_generate_info)) == 0);
    CHECK(warnings[0] == 0);

    /* Known words out of the grammar's order: a warning, but no unknown words. */
    CHECK(unknown_words(ctx, "circle red a", sizeof(dalle_generate_info)) == 0);
    CHECK(strstr(warnings, "not a caption of the model's grammar") != NULL);

    /* A caller built before unknown_words was appended: the field is not written, the warning still logged. */
    CHECK(unknown_words(ctx, "a photo of a cat", (uint32_t)offsetof(dalle_generate_info, unknown_words)) == 777);
    CHECK(strstr(warnings, "'photo', 'cat'") != NULL);
    dalle_log_set(NULL, NULL);
}

int main(int argc, char **argv) {
    dalle_model *model = NULL;
    dalle_status status = argc > 1 ? dalle_model_load_file(argv[1], NULL, &model) : dalle_model_load_default(NULL, &model);
    if (status != DALLE_OK) {
        fprintf(stderr, "generate_check: cannot load the model: %s\n", dalle_last_error());
        return 1;
    }
    dalle_model_info info = {0};
    info.struct_size = sizeof info;
    CHECK(dalle_model_get_info(model, &info) == DALLE_OK);
    dalle_context_params ctx_params = dalle_context_default_params();
    ctx_params.seed = 1;
    dalle_context *ctx = NULL;
    CHECK(dalle_context_create(model, &ctx_params, &ctx) == DALLE_OK);

    check_likelihood_weight(ctx, info.likelihood_weight);
    check_unknown_words(ctx);

    dalle_context_free(ctx);
    dalle_model_free(model);
    if (failures) {
        fprintf(stderr, "generate_check: %d failure(s)\n", failures);
        return 1;
    }
    printf("generate_check: ok\n");
    return 0;
}
