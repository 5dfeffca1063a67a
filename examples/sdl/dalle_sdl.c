/* libdalle in an SDL2 program, as a game or an art tool would embed it: a prompt is drawn on a
 * worker thread while the window stays responsive, with a progress bar fed by the progress
 * callback; each candidate appears as soon as it is made; when all are in, they are ranked
 * (CLIP score + the model's tuned weight x the transformer's log-likelihood) and shown best
 * first, the best one framed. Esc cancels the drawing through dalle_cancel; Esc again (or
 * closing the window) quits.
 *
 *   make examples            (builds build/examples/dalle-sdl when pkg-config finds sdl2)
 *   build/examples/dalle-sdl [options] "a small red circle"
 *
 * Options:
 *   --model FILE          a model with a tokenizer, a transformer and a dVAE (CLIP to rank);
 *                         default: dalle_model_load_default ($DALLE_MODEL, the installed one, ...)
 *   --count N             candidates, 1 ... 16 (default 8)
 *   --seed S              candidate i is drawn from seed S + i (default 1)
 *   --threads T           worker threads of the library (default 0: every core)
 *   --screenshot FILE     when drawing ends (done, cancelled or failed), save the window as a BMP and exit
 *   --press-escape-at N   press Esc by itself after N token steps (shows cancelling without a keyboard)
 *
 * SDL2 draws with the window surface only (no renderer, no fonts): status goes to the title
 * and to stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <SDL.h>

#include "dalle.h"

#define MAX_CANDIDATES 16
#define MARGIN 8
#define BAR_HEIGHT 14
#define COLUMNS 4

typedef struct job {
    /* Set before the worker starts. */
    dalle_context *ctx;
    const char *prompt;
    int count;
    uint64_t seed;
    float likelihood_weight;  /* the model's tuned weight (dalle_model_info) */
    int can_rank;             /* the model has CLIP */
    int press_escape_at;      /* 0 = never */
    Uint32 wake_event;        /* pushed whenever something changed */

    /* Written by the worker; read by the main thread under `lock`. */
    SDL_mutex *lock;
    dalle_image images[MAX_CANDIDATES];
    float log_likelihoods[MAX_CANDIDATES];
    float clip_scores[MAX_CANDIDATES];
    int arrived;
    int order[MAX_CANDIDATES];  /* display order, best first once ranked */
    int ranked;
    int finished;
    dalle_status status;        /* of the call that ended the job */
    char message[512];

    SDL_atomic_t progress;      /* thousandths of the whole job */
    SDL_atomic_t cancel;        /* set by Esc */
    SDL_atomic_t escape_pressed;
    int current;                /* the candidate being drawn (worker only) */
} job;

static void wake(job *j) {
    SDL_Event event;
    SDL_zero(event);
    event.type = j->wake_event;
    SDL_PushEvent(&event);
}

/* Called on the worker thread by dalle_generate (tokens, then decoding) and dalle_rerank. */
static bool on_progress(dalle_phase phase, int32_t step, int32_t total, void *user_data) {
    job *j = user_data;
    if (total > 0 && phase == DALLE_PHASE_GENERATE) {
        /* Drawing is the job's first 95 %, ranking the rest. */
        SDL_AtomicSet(&j->progress, (int)((j->current + (double)step / total) * 950.0 / j->count));
        wake(j);
        if (j->press_escape_at > 0 && j->current * total + step >= j->press_escape_at &&
            SDL_AtomicCAS(&j->escape_pressed, 0, 1)) {
            SDL_Event key;
            SDL_zero(key);
            key.type = SDL_KEYDOWN;
            key.key.keysym.sym = SDLK_ESCAPE;
            SDL_PushEvent(&key);
        }
    }
    return SDL_AtomicGet(&j->cancel) == 0; /* dalle_cancel does the same; this also covers a call not yet started */
}

static void finish(job *j, dalle_status status, const char *message) {
    SDL_LockMutex(j->lock);
    j->status = status;
    snprintf(j->message, sizeof j->message, "%s", message);
    j->finished = 1;
    SDL_UnlockMutex(j->lock);
    wake(j);
}

static int worker(void *data) {
    job *j = data;
    for (int i = 0; i < j->count; i++) {
        if (SDL_AtomicGet(&j->cancel)) {
            finish(j, DALLE_CANCELLED, "cancelled");
            return 0;
        }
        j->current = i;
        dalle_generate_params params = dalle_generate_default_params();
        params.seed = j->seed + (uint64_t)i;
        params.progress = on_progress;
        params.progress_user_data = j;
        float log_likelihood = 0;
        params.out_log_likelihoods = &log_likelihood;
        dalle_image_batch batch = {0};
        dalle_status status = dalle_generate(j->ctx, j->prompt, &params, &batch, NULL, NULL);
        if (status != DALLE_OK) {
            finish(j, status, dalle_context_last_error(j->ctx));
            return 0;
        }
        /* Keep a copy: the batch is the library's. */
        dalle_image image = batch.images[0];
        size_t bytes = (size_t)image.width * image.height * image.channels;
        unsigned char *pixels = malloc(bytes);
        if (!pixels) {
            dalle_image_batch_free(&batch);
            finish(j, DALLE_OUT_OF_MEMORY, "out of memory");
            return 0;
        }
        memcpy(pixels, image.data, bytes);
        image.data = pixels;
        dalle_image_batch_free(&batch);
        SDL_LockMutex(j->lock);
        j->images[i] = image;
        j->log_likelihoods[i] = log_likelihood;
        j->order[i] = i;
        j->arrived = i + 1;
        SDL_UnlockMutex(j->lock);
        printf("candidate %d: log-likelihood %.3f per token\n", i, log_likelihood);
        fflush(stdout);
        wake(j);
    }
    if (j->can_rank && j->count > 1 && j->prompt[0]) {
        /* CLIP scores all candidates at once; the order adds the tuned weight x log-likelihood,
         * as dalle_generate's keep_best does. */
        dalle_status status = dalle_rerank(j->ctx, j->prompt, j->images, (uint32_t)j->count, j->clip_scores, NULL);
        if (status != DALLE_OK) {
            finish(j, status, dalle_context_last_error(j->ctx));
            return 0;
        }
        int order[MAX_CANDIDATES];
        for (int i = 0; i < j->count; i++) order[i] = i;
        for (int a = 1; a < j->count; a++) { /* insertion sort, best first, ties in drawing order */
            int k = order[a], b = a;
            float score = j->clip_scores[k] + j->likelihood_weight * j->log_likelihoods[k];
            while (b > 0 && j->clip_scores[order[b - 1]] + j->likelihood_weight * j->log_likelihoods[order[b - 1]] < score) {
                order[b] = order[b - 1];
                b--;
            }
            order[b] = k;
        }
        SDL_LockMutex(j->lock);
        memcpy(j->order, order, sizeof order);
        j->ranked = 1;
        SDL_UnlockMutex(j->lock);
        for (int r = 0; r < j->count; r++) {
            int k = order[r];
            printf("rank %d: candidate %d, score %.3f (clip %.3f + %.1f x log-likelihood %.3f)\n", r, k,
                   j->clip_scores[k] + j->likelihood_weight * j->log_likelihoods[k], j->clip_scores[k],
                   j->likelihood_weight, j->log_likelihoods[k]);
        }
    }
    SDL_AtomicSet(&j->progress, 1000);
    finish(j, DALLE_OK, j->ranked ? "ranked, best first" : "done");
    return 0;
}

static void fill(SDL_Surface *surface, int x, int y, int w, int h, Uint8 r, Uint8 g, Uint8 b) {
    SDL_Rect rect = {x, y, w, h};
    SDL_FillRect(surface, &rect, SDL_MapRGB(surface->format, r, g, b));
}

/* Draws the progress bar and the candidates into the window surface. */
static void draw(SDL_Surface *surface, job *j, int cell) {
    fill(surface, 0, 0, surface->w, surface->h, 32, 32, 36);
    int bar_width = surface->w - 2 * MARGIN;
    fill(surface, MARGIN, MARGIN, bar_width, BAR_HEIGHT, 70, 70, 76);
    int done = SDL_AtomicGet(&j->progress);
    fill(surface, MARGIN, MARGIN, bar_width * done / 1000, BAR_HEIGHT, 80, 200, 120);

    SDL_LockMutex(j->lock);
    for (int k = 0; k < j->count; k++) {
        int x = MARGIN + (k % COLUMNS) * (cell + MARGIN);
        int y = 2 * MARGIN + BAR_HEIGHT + (k / COLUMNS) * (cell + MARGIN);
        int index = j->order[k];
        if (k >= j->arrived) {
            fill(surface, x, y, cell, cell, 48, 48, 54); /* not drawn yet */
            continue;
        }
        if (j->ranked && k == 0) fill(surface, x - 4, y - 4, cell + 8, cell + 8, 250, 210, 40); /* the best */
        dalle_image *image = &j->images[index];
        SDL_Surface *rgb = SDL_CreateRGBSurfaceWithFormatFrom(image->data, (int)image->width, (int)image->height, 24,
                                                              (int)image->width * 3, SDL_PIXELFORMAT_RGB24);
        SDL_Surface *converted = rgb ? SDL_ConvertSurface(rgb, surface->format, 0) : NULL;
        if (converted) {
            SDL_Rect target = {x, y, cell, cell};
            SDL_BlitScaled(converted, NULL, surface, &target);
        }
        SDL_FreeSurface(converted);
        SDL_FreeSurface(rgb);
    }
    SDL_UnlockMutex(j->lock);
}

static int usage(const char *program) {
    fprintf(stderr, "usage: %s [--model FILE] [--count N] [--seed S] [--threads T] [--screenshot FILE.bmp] "
                    "[--press-escape-at N] PROMPT\n", program);
    return 2;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *screenshot = NULL, *prompt = NULL;
    int count = 8, threads = 0, press_escape_at = 0;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--model") == 0 && value) model_path = argv[++i];
        else if (strcmp(arg, "--count") == 0 && value) count = atoi(argv[++i]);
        else if (strcmp(arg, "--seed") == 0 && value) seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(arg, "--threads") == 0 && value) threads = atoi(argv[++i]);
        else if (strcmp(arg, "--screenshot") == 0 && value) screenshot = argv[++i];
        else if (strcmp(arg, "--press-escape-at") == 0 && value) press_escape_at = atoi(argv[++i]);
        else if (arg[0] == '-' && arg[1] == '-') return usage(argv[0]);
        else if (!prompt) prompt = arg;
        else return usage(argv[0]);
    }
    if (!prompt || count < 1 || count > MAX_CANDIDATES || threads < 0) return usage(argv[0]);

    dalle_model *model = NULL;
    dalle_status status = model_path ? dalle_model_load_file(model_path, NULL, &model)
                                     : dalle_model_load_default(NULL, &model);
    if (status != DALLE_OK) {
        fprintf(stderr, "dalle-sdl: cannot load the model: %s\n", dalle_last_error());
        return 1;
    }
    dalle_model_info info = {0};
    info.struct_size = sizeof info;
    dalle_model_get_info(model, &info);
    if (!(info.components & DALLE_COMPONENT_TRANSFORMER) || !(info.components & DALLE_COMPONENT_DVAE)) {
        fprintf(stderr, "dalle-sdl: the model needs a transformer and a dVAE to draw\n");
        dalle_model_free(model);
        return 1;
    }
    dalle_context_params ctx_params = dalle_context_default_params();
    ctx_params.n_threads = threads;
    dalle_context *ctx = NULL;
    if (dalle_context_create(model, &ctx_params, &ctx) != DALLE_OK) {
        fprintf(stderr, "dalle-sdl: %s\n", dalle_last_error());
        dalle_model_free(model);
        return 1;
    }

    if (SDL_Init(SDL_INIT_VIDEO) != 0) {
        fprintf(stderr, "dalle-sdl: SDL_Init: %s\n", SDL_GetError());
        return 1;
    }
    int cell = (int)info.image_size * (info.image_size <= 64 ? 2 : 1);
    int columns = count < COLUMNS ? count : COLUMNS, rows = (count + COLUMNS - 1) / COLUMNS;
    int width = MARGIN + columns * (cell + MARGIN), height = 2 * MARGIN + BAR_HEIGHT + rows * (cell + MARGIN);
    if (width < 240) width = 240;
    SDL_Window *window = SDL_CreateWindow("dalle-sdl", SDL_WINDOWPOS_CENTERED, SDL_WINDOWPOS_CENTERED, width, height, 0);
    if (!window) {
        fprintf(stderr, "dalle-sdl: SDL_CreateWindow: %s\n", SDL_GetError());
        SDL_Quit();
        return 1;
    }

    job j;
    SDL_zero(j);
    j.ctx = ctx;
    j.prompt = prompt;
    j.count = count;
    j.seed = seed;
    j.likelihood_weight = info.likelihood_weight;
    j.can_rank = (info.components & DALLE_COMPONENT_CLIP) != 0;
    j.press_escape_at = press_escape_at;
    j.wake_event = SDL_RegisterEvents(1);
    j.lock = SDL_CreateMutex();
    SDL_Thread *thread = SDL_CreateThread(worker, "dalle", &j);
    if (!thread || j.wake_event == (Uint32)-1 || !j.lock) {
        fprintf(stderr, "dalle-sdl: cannot start the worker: %s\n", SDL_GetError());
        return 1;
    }

    int running = 1, finished = 0, cancelled = 0, exit_code = 0;
    char title[768];
    while (running) {
        SDL_Event event;
        if (!SDL_WaitEventTimeout(&event, 100)) event.type = SDL_FIRSTEVENT;
        do {
            if (event.type == SDL_QUIT) {
                running = 0;
            } else if (event.type == SDL_KEYDOWN && event.key.keysym.sym == SDLK_ESCAPE) {
                if (finished) {
                    running = 0;
                } else if (!cancelled) {
                    cancelled = 1;
                    SDL_AtomicSet(&j.cancel, 1);
                    dalle_cancel(ctx); /* the running dalle_generate returns DALLE_CANCELLED within a step */
                    printf("Esc: cancelling\n");
                }
            }
        } while (SDL_PollEvent(&event));

        SDL_LockMutex(j.lock);
        int now_finished = j.finished, arrived = j.arrived;
        dalle_status job_status = j.status;
        SDL_UnlockMutex(j.lock);
        if (now_finished && !finished) {
            finished = 1;
            if (job_status == DALLE_CANCELLED) printf("cancelled after %d of %d candidates\n", arrived, count);
            else if (job_status != DALLE_OK) {
                fprintf(stderr, "dalle-sdl: %s: %s\n", dalle_status_string(job_status), j.message);
                exit_code = 1;
            }
        }
        if (finished) snprintf(title, sizeof title, "dalle-sdl: \"%s\": %s (Esc quits)", prompt, j.message);
        else snprintf(title, sizeof title, "dalle-sdl: \"%s\": drawing %d of %d (Esc cancels)", prompt,
                      arrived < count ? arrived + 1 : count, count);
        SDL_SetWindowTitle(window, title);

        SDL_Surface *surface = SDL_GetWindowSurface(window);
        if (surface) {
            draw(surface, &j, cell);
            SDL_UpdateWindowSurface(window);
            if (finished && screenshot) {
                if (SDL_SaveBMP(surface, screenshot) != 0) {
                    fprintf(stderr, "dalle-sdl: cannot save %s: %s\n", screenshot, SDL_GetError());
                    exit_code = 1;
                } else {
                    printf("screenshot written to %s\n", screenshot);
                }
                running = 0;
            }
        }
    }
    /* Closing the window while drawing: stop the worker before freeing what it uses. */
    SDL_AtomicSet(&j.cancel, 1);
    dalle_cancel(ctx);
    SDL_WaitThread(thread, NULL);
    for (int i = 0; i < j.arrived; i++) free(j.images[i].data);
    SDL_DestroyMutex(j.lock);
    SDL_DestroyWindow(window);
    SDL_Quit();
    dalle_context_free(ctx);
    dalle_model_free(model);
    return exit_code;
}
