/* Rerank images by how well they match a prompt with the model's CLIP.
 *
 *   cc -std=c99 examples/c/rerank.c -Iinclude -Lbuild/lib -ldalle -o rerank
 *   LD_LIBRARY_PATH=build/lib ./rerank MODEL.safetensors "a prompt"
 *
 * The model needs a clip and a tokenizer component (tools/convert_clip.py). The images are
 * synthetic, of different sizes: CLIP's preprocessing resizes and crops each one. */
#include <stdio.h>
#include <stdlib.h>

#include "dalle.h"

#define N_IMAGES 3

static int check(dalle_status status, dalle_context *ctx, const char *what) {
    if (status == DALLE_OK) return 1;
    fprintf(stderr, "%s failed: %s: %s\n", what, dalle_status_string(status),
            ctx ? dalle_context_last_error(ctx) : dalle_last_error());
    return 0;
}

/* A width x height RGB image: kind 0 red stripes, 1 a colour ramp, 2 a yellow disc on blue. */
static dalle_image make_image(uint32_t width, uint32_t height, int kind) {
    dalle_image image;
    uint32_t x, y;
    image.width = width;
    image.height = height;
    image.channels = 3;
    image.data = malloc((size_t)width * height * 3);
    if (!image.data) return image;
    for (y = 0; y < height; y++) {
        for (x = 0; x < width; x++) {
            uint8_t *p = image.data + ((size_t)y * width + x) * 3;
            long dx = (long)x - (long)width / 2, dy = (long)y - (long)height / 2;
            int in_disc = dx * dx + dy * dy < (long)(width * width) / 9;
            p[0] = kind == 0 ? ((x / 20) % 2 ? 20 : 240) : kind == 1 ? (uint8_t)(x * 255 / width) : (in_disc ? 250 : 10);
            p[1] = kind == 0 ? 50 : kind == 1 ? (uint8_t)(y * 255 / height) : (in_disc ? 250 : 10);
            p[2] = kind == 0 ? 50 : kind == 1 ? 128 : (in_disc ? 40 : 80);
        }
    }
    return image;
}

int main(int argc, char **argv) {
    dalle_model *model = NULL;
    dalle_context *ctx = NULL;
    dalle_image images[N_IMAGES];
    float scores[N_IMAGES];
    uint32_t order[N_IMAGES], size = 0, k;
    float *embedding = NULL;
    int ok = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.safetensors \"a prompt\"\n", argv[0]);
        return 2;
    }
    images[0] = make_image(300, 200, 0);
    images[1] = make_image(224, 224, 1);
    images[2] = make_image(90, 120, 2);
    for (k = 0; k < N_IMAGES; k++) {
        if (!images[k].data) { fprintf(stderr, "out of memory\n"); return 1; }
    }

    if (!check(dalle_model_load_file(argv[1], NULL, &model), NULL, "dalle_model_load_file")) goto done;
    if (!check(dalle_context_create(model, NULL, &ctx), NULL, "dalle_context_create")) goto done;

    if (!check(dalle_rerank(ctx, argv[2], images, N_IMAGES, scores, order), ctx, "dalle_rerank")) goto done;
    for (k = 0; k < N_IMAGES; k++) {
        printf("%.4f image %u (%ux%u)\n", scores[order[k]], order[k], images[order[k]].width, images[order[k]].height);
    }

    if (!check(dalle_clip_embedding_size(model, &size), NULL, "dalle_clip_embedding_size")) goto done;
    embedding = malloc(size * sizeof(float));
    if (!embedding) goto done;
    if (!check(dalle_clip_encode_text(ctx, argv[2], embedding, size), ctx, "dalle_clip_encode_text")) goto done;
    printf("text embedding: %u values, first %.4f\n", size, embedding[0]);

    /* Bad input is an error with a message, never a crash. */
    if (dalle_rerank(ctx, "", images, N_IMAGES, scores, order) != DALLE_INVALID_ARGUMENT) goto done;
    printf("empty prompt rejected: %s\n", dalle_context_last_error(ctx));
    if (dalle_rerank(ctx, argv[2], images, 0, scores, order) != DALLE_INVALID_ARGUMENT) goto done;
    printf("zero images rejected: %s\n", dalle_context_last_error(ctx));
    ok = 1;
    printf("ok\n");

done:
    free(embedding);
    for (k = 0; k < N_IMAGES; k++) free(images[k].data);
    dalle_context_free(ctx);
    dalle_model_free(model);
    return ok ? 0 : 1;
}
