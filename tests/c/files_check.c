/* dalle_model_load_default, dalle_image_read_file and dalle_image_write_png from C: every bad
 * argument is a status plus a message, never a crash.
 *
 *   files_check MODEL.safetensors found|missing DIR
 *
 * MODEL: any model file (loaded through $DALLE_MODEL). found: without $DALLE_MODEL the default
 * model must load (from the library's installation or checkout); missing: it must not, and the
 * message must name every place looked at. DIR: where the PNG files are written. */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, \
                                                #cond, dalle_last_error()); failures++; } } while (0)

static void check_default_model(const char *model_path, int expect_found) {
    dalle_model *model = (dalle_model *)1;
    CHECK(dalle_model_load_default(NULL, NULL) == DALLE_INVALID_ARGUMENT);
    CHECK(strstr(dalle_last_error(), "out_model is NULL") != NULL);

    setenv("DALLE_MODEL", "/nonexistent/dir/model.safetensors", 1);
    CHECK(dalle_model_load_default(NULL, &model) == DALLE_IO_ERROR && model == NULL);
    CHECK(strstr(dalle_last_error(), "DALLE_MODEL is /nonexistent/dir/model.safetensors, which cannot be read") != NULL);

    setenv("DALLE_MODEL", model_path, 1);
    dalle_model_params params = dalle_model_default_params();
    CHECK(dalle_model_load_default(&params, &model) == DALLE_OK && model != NULL);
    dalle_model_free(model);
    params.struct_size = 3;
    CHECK(dalle_model_load_default(&params, &model) == DALLE_INVALID_ARGUMENT && model == NULL);

    unsetenv("DALLE_MODEL");
    dalle_status status = dalle_model_load_default(NULL, &model);
    if (expect_found) {
        CHECK(status == DALLE_OK && model != NULL);
        dalle_model_info info = {0};
        info.struct_size = sizeof info;
        CHECK(dalle_model_get_info(model, &info) == DALLE_OK && info.image_size == DALLE_SHAPES_IMAGE_SIZE);
        dalle_model_free(model);
    } else {
        const char *message = dalle_last_error();
        CHECK(status == DALLE_IO_ERROR && model == NULL);
        CHECK(strstr(message, "looked at $DALLE_MODEL (unset), ") != NULL);
        CHECK(strstr(message, "/share/dalle/models/shapes-world.safetensors, ") != NULL);
        CHECK(strstr(message, "/models/shapes-world.safetensors. Set DALLE_MODEL") != NULL);
        printf("without a default model: %s\n", message);
    }
}

static void check_png(const char *dir) {
    char path[4096], missing[4096];
    snprintf(path, sizeof path, "%s/files_check.png", dir);
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.png", dir);
    uint8_t rgba[5 * 3 * 4], rgb[5 * 3 * 3];
    for (int i = 0; i < 5 * 3; i++) {
        for (int c = 0; c < 3; c++) rgb[i * 3 + c] = rgba[i * 4 + c] = (uint8_t)(i * 17 + c * 80);
        rgba[i * 4 + 3] = (uint8_t)i;
    }
    dalle_image image = {5, 3, 3, rgb};
    CHECK(dalle_image_write_png(path, &image) == DALLE_OK);
    dalle_image read = {0, 0, 0, NULL};
    CHECK(dalle_image_read_file(path, &read) == DALLE_OK);
    CHECK(read.width == 5 && read.height == 3 && read.channels == 3 && read.data != NULL);
    CHECK(read.data != NULL && memcmp(read.data, rgb, sizeof rgb) == 0);
    dalle_image_free(&read);
    CHECK(read.data == NULL && read.width == 0);
    dalle_image_free(&read); /* a zeroed image is ignored */

    dalle_image with_alpha = {5, 3, 4, rgba};
    CHECK(dalle_image_write_png(path, &with_alpha) == DALLE_OK);
    CHECK(dalle_image_read_file(path, &read) == DALLE_OK);
    CHECK(read.channels == 3 && read.data != NULL && memcmp(read.data, rgb, sizeof rgb) == 0);
    dalle_image_free(&read);

    CHECK(dalle_image_write_png(NULL, &image) == DALLE_INVALID_ARGUMENT);
    CHECK(strstr(dalle_last_error(), "path is NULL") != NULL);
    CHECK(dalle_image_write_png(path, NULL) == DALLE_INVALID_ARGUMENT);
    dalle_image bad = image;
    bad.channels = 2;
    CHECK(dalle_image_write_png(path, &bad) == DALLE_INVALID_ARGUMENT);
    CHECK(strstr(dalle_last_error(), "image->channels is 2") != NULL);
    bad = image;
    bad.width = 0;
    CHECK(dalle_image_write_png(path, &bad) == DALLE_INVALID_ARGUMENT);
    bad = image;
    bad.width = 4000000000u; /* the product of the sides overflows 32 bits */
    bad.height = 4000000000u;
    CHECK(dalle_image_write_png(path, &bad) == DALLE_INVALID_ARGUMENT);
    CHECK(strstr(dalle_last_error(), "is 4000000000x4000000000") != NULL);
    bad = image;
    bad.data = NULL;
    CHECK(dalle_image_write_png(path, &bad) == DALLE_INVALID_ARGUMENT);
    CHECK(dalle_image_write_png(missing, &image) == DALLE_IO_ERROR);

    read.width = 7;
    CHECK(dalle_image_read_file(NULL, &read) == DALLE_INVALID_ARGUMENT && read.width == 0);
    CHECK(dalle_image_read_file(path, NULL) == DALLE_INVALID_ARGUMENT);
    CHECK(dalle_image_read_file(missing, &read) == DALLE_IO_ERROR && read.data == NULL);
    CHECK(dalle_image_read_file(__FILE__, &read) == DALLE_BAD_FILE && read.data == NULL);
    CHECK(strstr(dalle_last_error(), "not a PNG") != NULL);
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[2], "found") != 0 && strcmp(argv[2], "missing") != 0)) {
        fprintf(stderr, "usage: %s MODEL.safetensors found|missing DIR\n", argv[0]);
        return 2;
    }
    dalle_log_set_level(DALLE_LOG_NONE);
    check_default_model(argv[1], strcmp(argv[2], "found") == 0);
    check_png(argv[3]);
    if (failures == 0) printf("files_check: ok\n");
    return failures != 0;
}
