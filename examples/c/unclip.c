/* DALL-E 2 (unCLIP) through libdalle's C API: images of a prompt (the best kept by the bundle's
 * CLIP), variations of an image, and the frames between two prompts.
 *
 *   cc unclip.c -I../../include -L../../build/lib -ldalle -o unclip
 *   LD_LIBRARY_PATH=../../build/lib ./unclip UNCLIP.safetensors "a red cat" IMAGE.png [NOISE.safetensors]
 *
 * UNCLIP is a bundle from tools/convert_unclip.py with an image encoder (--image-encoder). NOISE,
 * when given, is caller noise for the first call (dalle.h's DALLE_UNCLIP_NOISE). Every status is
 * checked; on failure the library's message is printed. */
#include <stdio.h>

#include "dalle.h"

static int fail(const char *what, dalle_context *ctx) {
    fprintf(stderr, "unclip: %s failed: %s\n", what, ctx ? dalle_context_last_error(ctx) : dalle_last_error());
    return 1;
}

/* One line per stage: the prior's, decoder's and super-resolution's steps arrive in order. */
static bool on_progress(dalle_phase phase, int32_t step, int32_t total, void *user_data) {
    (void)user_data;
    if (phase == DALLE_PHASE_GENERATE && (step == total || step == 0)) fprintf(stderr, "  step %d/%d\n", step, total);
    return true;
}

static double mean_pixel(const dalle_image *image) {
    size_t n = (size_t)image->width * image->height * image->channels;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += image->data[i];
    return n ? sum / (double)n : 0;
}

static void print_batch(const char *what, const dalle_image_batch *images) {
    printf("%s: %u image(s) of %ux%u, mean pixel", what, images->count, images->images[0].width, images->images[0].height);
    for (uint32_t i = 0; i < images->count; i++) printf(" %.1f", mean_pixel(&images->images[i]));
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: %s UNCLIP.safetensors PROMPT IMAGE.png [NOISE.safetensors]\n", argv[0]);
        return 2;
    }
    dalle_model *model = NULL;
    if (dalle_model_load_file(argv[1], NULL, &model) != DALLE_OK) return fail("dalle_model_load_file", NULL);
    dalle_context *ctx = NULL;
    if (dalle_context_create(model, NULL, &ctx) != DALLE_OK) return fail("dalle_context_create", NULL);

    /* Images of the prompt: 3 candidates, the bundle's CLIP keeps the best 2. Few steps keep it quick. */
    dalle_generate_params gp = dalle_generate_default_params();
    gp.count = 3;
    gp.keep_best = 2;
    gp.seed = 7;
    gp.prior_steps = 5;
    gp.decoder_steps = 5;
    gp.super_res_steps = 3;
    gp.progress = on_progress;
    float scores[2];
    gp.out_scores = scores;
    dalle_image_batch images = {0};
    if (dalle_generate(ctx, argv[2], &gp, &images, NULL, NULL) != DALLE_OK) return fail("dalle_generate", ctx);
    print_batch("prompt", &images);
    printf("CLIP scores, best first: %.3f %.3f\n", scores[0], scores[1]);
    dalle_image_batch_free(&images);

    /* Variations of an image: its CLIP image embedding takes the prior's place; the prompt is "". */
    dalle_image input = {0};
    if (dalle_image_read_file(argv[3], &input) != DALLE_OK) return fail("dalle_image_read_file", NULL);
    dalle_generate_params vp = dalle_generate_default_params();
    vp.count = 2;
    vp.seed = 7;
    vp.decoder_steps = 5;
    vp.super_res_steps = 3;
    vp.init_image = &input;
    if (argc == 5) { vp.count = 1; vp.noise_path = argv[4]; }  /* diffusers' recorded noise for one variation */
    if (dalle_generate(ctx, "", &vp, &images, NULL, NULL) != DALLE_OK) return fail("dalle_generate (variations)", ctx);
    print_batch("variations", &images);
    dalle_image_batch_free(&images);
    dalle_image_free(&input);

    /* The frames between two prompts (spherical interpolation of their CLIP text embeddings). */
    dalle_generate_params ip = dalle_generate_default_params();
    ip.count = 3;
    ip.seed = 7;
    ip.prior_steps = ip.decoder_steps = 3;
    ip.super_res_steps = 2;
    ip.interpolate_to = "two blue squares";
    if (dalle_generate(ctx, argv[2], &ip, &images, NULL, NULL) != DALLE_OK) return fail("dalle_generate (interpolation)", ctx);
    print_batch("interpolation", &images);
    dalle_image_batch_free(&images);

    /* A bad request is an error with a reason, never a crash: a 2-channel image without pixels. */
    dalle_image bad = {2, 2, 2, NULL};
    vp.noise_path = NULL;
    vp.init_image = &bad;
    if (dalle_generate(ctx, "", &vp, &images, NULL, NULL) == DALLE_OK) return fail("rejecting a 2-channel image", ctx);
    printf("rejected: %s\n", dalle_context_last_error(ctx));

    dalle_context_free(ctx);
    dalle_model_free(model);
    return 0;
}
