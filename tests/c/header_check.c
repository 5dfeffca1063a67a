/* Compiled as strict C99 and as C++ by run_c_and_python.sh: the header must build with
 * -Wall -Wextra -pedantic -Wstrict-prototypes -Werror on its own, and link against
 * libdalle with nothing else. */
#include "dalle.h"
#include "dalle.h" /* include guard */

#include <stdio.h>
#include <string.h>

static bool progress(dalle_phase phase, int32_t step, int32_t total, void *user_data) {
    (void)phase; (void)step; (void)total; (void)user_data;
    return true;
}

static void log_line(dalle_log_level level, const char *message, void *user_data) {
    (void)level; (void)message; (void)user_data;
}

int main(void) {
    int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); failures++; } } while (0)
    CHECK(strcmp(dalle_version(), DALLE_VERSION_STRING) == 0);
    CHECK(strcmp(dalle_status_string(DALLE_BAD_FILE), "bad model file") == 0);
    dalle_log_set(log_line, NULL);
    dalle_log_set_level(DALLE_LOG_DEBUG);

    dalle_model_params mp = dalle_model_default_params();
    CHECK(mp.struct_size == sizeof(dalle_model_params));
    mp.progress = progress;
    dalle_model *model = (dalle_model *)1;
    CHECK(dalle_model_load_file(NULL, &mp, &model) == DALLE_INVALID_ARGUMENT);
    CHECK(model == NULL);
    CHECK(strstr(dalle_last_error(), "path is NULL") != NULL);

    dalle_context_params cp = dalle_context_default_params();
    CHECK(cp.struct_size == sizeof(dalle_context_params) && cp.seed == DALLE_SEED_RANDOM && cp.n_threads == 0);
    dalle_context *ctx = NULL;
    CHECK(dalle_context_create(NULL, &cp, &ctx) == DALLE_INVALID_ARGUMENT);
    dalle_tokens tokens = {0, 0, 0, NULL};
    dalle_image_batch images = {0, NULL};
    CHECK(dalle_encode(NULL, NULL, 0, &tokens) == DALLE_INVALID_ARGUMENT);
    CHECK(dalle_decode(NULL, &tokens, &images) == DALLE_INVALID_ARGUMENT);
    CHECK(strcmp(dalle_context_last_error(NULL), "") != 0);
    dalle_bundle_params bp = dalle_bundle_default_params();
    CHECK(bp.struct_size == sizeof(dalle_bundle_params) && bp.weight_type == DALLE_WEIGHTS_F16 && bp.cond_scale == 1);
    bp.weight_type = 7;
    const char *no_parts[1] = {NULL};
    CHECK(dalle_bundle_with_params(no_parts, 1, "unused.safetensors", &bp) == DALLE_INVALID_ARGUMENT);
    CHECK(strstr(dalle_last_error(), "weight_type is 7") != NULL);
    bp = dalle_bundle_default_params();
    CHECK(dalle_bundle_with_params(no_parts, 1, "unused.safetensors", &bp) == DALLE_INVALID_ARGUMENT);
    CHECK(strstr(dalle_last_error(), "part_paths[0]") != NULL);
    bp.struct_size = 4;
    CHECK(dalle_bundle_with_params(no_parts, 1, "unused.safetensors", &bp) == DALLE_INVALID_ARGUMENT);
    CHECK(dalle_bundle(NULL, 1, "unused.safetensors", true) == DALLE_INVALID_ARGUMENT);
    dalle_tokens_free(&tokens);
    dalle_image_batch_free(&images);
    dalle_tokens_free(NULL);
    dalle_image_batch_free(NULL);
    dalle_model_free(NULL);
    dalle_context_free(NULL);
    dalle_log_set(NULL, NULL);
    dalle_log_set_level(DALLE_LOG_WARN);
    printf("%s: %s\n", failures ? "FAIL" : "ok", dalle_system_info());
    return failures ? 1 : 0;
}
