/*
 * dalle.hpp - a header-only C++17 wrapper of dalle.h: handles that free themselves, results
 * that own the library's buffers, and dalle::Error exceptions carrying the status and message.
 *
 *   dalle::Model model("shapes-world.safetensors");
 *   dalle::Context ctx(model);
 *   dalle_generate_params params = dalle_generate_default_params();
 *   params.count = 4;
 *   dalle::Generation result = ctx.generate("a red circle", params);
 *   // result.images[i]: a dalle_image; result.tokens.grid(i): its token ids
 *
 * Thread safety is that of dalle.h: a Model may be shared by any number of threads and
 * Contexts; a Context is used by one thread at a time (cancel() from any thread).
 */
#ifndef DALLE_HPP
#define DALLE_HPP

#if !defined(__cplusplus) || (__cplusplus < 201703L && (!defined(_MSVC_LANG) || _MSVC_LANG < 201703L))
#  error "dalle.hpp needs C++17; from C, include dalle.h"
#endif

#include "dalle.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace dalle {

/* A failed libdalle call: status() is the dalle_status, what() the library's message. */
class Error : public std::runtime_error {
public:
    Error(dalle_status status, const std::string &message) : std::runtime_error(message), status_(status) {}
    dalle_status status() const noexcept { return status_; }

private:
    dalle_status status_;
};

namespace detail {

/* Throws dalle::Error for a status other than DALLE_OK, with `message` (or the status's
 * description when the library left none). */
inline void check(dalle_status status, const char *message) {
    if (status != DALLE_OK)
        throw Error(status, message && *message ? message : dalle_status_string(status));
}

struct ModelDeleter {
    void operator()(dalle_model *model) const noexcept { dalle_model_free(model); }
};

struct ContextDeleter {
    void operator()(dalle_context *ctx) const noexcept { dalle_context_free(ctx); }
};

/* A struct the library filled (out() is the C call's output argument), released with `Free`
 * when its owner goes. Move-only: the moved-from one is zeroed, which `Free` ignores. */
template <typename T, void (*Free)(T *)>
class Owned {
public:
    Owned() noexcept = default;
    Owned(Owned &&other) noexcept : value_(other.value_) { other.value_ = T{}; }
    Owned &operator=(Owned &&other) noexcept {
        if (this != &other) {
            Free(&value_);
            value_ = other.value_;
            other.value_ = T{};
        }
        return *this;
    }
    Owned(const Owned &) = delete;
    Owned &operator=(const Owned &) = delete;
    ~Owned() { Free(&value_); }

    const T &get() const noexcept { return value_; }
    T *out() noexcept { return &value_; }

private:
    T value_{};
};

}  // namespace detail

/* The loaded library's version, "MAJOR.MINOR.PATCH" (compare with DALLE_VERSION_STRING). */
inline std::string version() { return dalle_version(); }

/* Images the library allocated, freed with the object. Move-only. */
class ImageBatch {
public:
    std::size_t size() const noexcept { return batch_.get().count; }
    bool empty() const noexcept { return size() == 0; }
    /* Image i (i < size()): width, height, channels and its RGB8 pixels. */
    const dalle_image &operator[](std::size_t i) const noexcept { return batch_.get().images[i]; }
    const dalle_image *begin() const noexcept { return batch_.get().images; }
    const dalle_image *end() const noexcept { return begin() + size(); }

private:
    friend class Context;
    detail::Owned<dalle_image_batch, dalle_image_batch_free> batch_;
};

/* An image the library allocated (read_png), freed with the object. Move-only. */
class Image {
public:
    uint32_t width() const noexcept { return get().width; }
    uint32_t height() const noexcept { return get().height; }
    uint32_t channels() const noexcept { return get().channels; }
    /* height() rows of width() * channels() bytes, RGB8. */
    const uint8_t *data() const noexcept { return get().data; }
    const dalle_image &get() const noexcept { return image_.get(); }

private:
    friend Image read_png(const std::string &path);
    detail::Owned<dalle_image, dalle_image_free> image_;
};

/* Reads a PNG file as RGB8 (alpha dropped). Throws dalle::Error. */
inline Image read_png(const std::string &path) {
    Image image;
    detail::check(dalle_image_read_file(path.c_str(), image.image_.out()), dalle_last_error());
    return image;
}

/* Writes `image` (RGB, or RGBA with the alpha dropped) to `path` as an RGB8 PNG. Throws dalle::Error. */
inline void write_png(const std::string &path, const dalle_image &image) {
    detail::check(dalle_image_write_png(path.c_str(), &image), dalle_last_error());
}

/* Token grids the library allocated (count grids of rows x cols ids), freed with the object.
 * Move-only; get() is the plain struct, to pass back to Context::decode. */
class Tokens {
public:
    std::size_t count() const noexcept { return get().count; }
    std::size_t rows() const noexcept { return get().rows; }
    std::size_t cols() const noexcept { return get().cols; }
    /* The rows() * cols() ids of grid i (i < count()), row-major. */
    const int32_t *grid(std::size_t i) const noexcept { return get().data + i * rows() * cols(); }
    const dalle_tokens &get() const noexcept { return tokens_.get(); }

private:
    friend class Context;
    detail::Owned<dalle_tokens, dalle_tokens_free> tokens_;
};

/* What Context::generate returns: the images, their image tokens, and what the call did
 * with the prompt and the seed (info.prompt_tokens, info.truncated_tokens, info.seed, ...). */
struct Generation {
    ImageBatch images;
    Tokens tokens;
    dalle_generate_info info{};
};

/* Weights loaded from a model file or buffer: immutable, shareable. Move-only. */
class Model {
public:
    /* Loads the model file at `path`; params NULL = defaults. Throws dalle::Error. */
    explicit Model(const std::string &path, const dalle_model_params *params = nullptr) {
        dalle_model *model = nullptr;
        detail::check(dalle_model_load_file(path.c_str(), params, &model), dalle_last_error());
        handle_.reset(model);
    }

    /* Loads the default model: $DALLE_MODEL, else the installed one (see dalle_model_load_default). */
    static Model load_default(const dalle_model_params *params = nullptr) {
        dalle_model *model = nullptr;
        detail::check(dalle_model_load_default(params, &model), dalle_last_error());
        return Model(model);
    }

    /* Loads a model from the `size` bytes at `data` (read during the call only). */
    static Model from_buffer(const void *data, std::size_t size, const dalle_model_params *params = nullptr) {
        dalle_model *model = nullptr;
        detail::check(dalle_model_load_buffer(data, size, params, &model), dalle_last_error());
        return Model(model);
    }

    /* What the model holds: components, image and token-grid sizes, parameter count. */
    dalle_model_info info() const {
        dalle_model_info info{};
        info.struct_size = sizeof info;
        detail::check(dalle_model_get_info(get(), &info), dalle_last_error());
        return info;
    }

    /* The C handle, valid while this Model (or a Context on it) lives; NULL once moved from. */
    dalle_model *get() const noexcept { return handle_.get(); }

private:
    explicit Model(dalle_model *model) noexcept : handle_(model) {}
    std::unique_ptr<dalle_model, detail::ModelDeleter> handle_;
};

/* Per-caller state on a model (threads, seed, scratch memory); one thread at a time.
 * Keeps the model's weights alive. Move-only. */
class Context {
public:
    /* threads 0 = all cores; seed DALLE_SEED_RANDOM = pick one (see seed()). */
    explicit Context(const Model &model, int32_t threads = 0, uint64_t seed = DALLE_SEED_RANDOM) {
        dalle_context_params params = dalle_context_default_params();
        params.n_threads = threads;
        params.seed = seed;
        create(model, params);
    }

    Context(const Model &model, const dalle_context_params &params) { create(model, params); }

    uint64_t seed() const noexcept { return dalle_context_seed(get()); }
    int32_t threads() const noexcept { return dalle_context_threads(get()); }
    /* Asks the call running on this context to stop (it throws DALLE_CANCELLED); any thread. */
    void cancel() noexcept { dalle_cancel(get()); }

    /* Token ids of `text` (see dalle_tokenize); *truncated, when given, says whether it was cut. */
    std::vector<int32_t> tokenize(const std::string &text, dalle_tokenize_mode mode = DALLE_TOKENIZE_MODEL,
                                  bool *truncated = nullptr) {
        std::size_t count = 0;
        check(dalle_tokenize(get(), text.c_str(), mode, nullptr, 0, &count, truncated));
        std::vector<int32_t> ids(count);
        check(dalle_tokenize(get(), text.c_str(), mode, ids.data(), ids.size(), &count, truncated));
        return ids;
    }

    /* Token grids of n_images images (borrowed for the call). */
    Tokens encode(const dalle_image *images, uint32_t n_images) {
        Tokens out;
        check(dalle_encode(get(), images, n_images, out.tokens_.out()));
        return out;
    }

    /* RGB images of token grids (borrowed for the call). */
    ImageBatch decode(const dalle_tokens &tokens) {
        ImageBatch out;
        check(dalle_decode(get(), &tokens, out.batch_.out()));
        return out;
    }

    /* params.count images for `prompt` ("" = unconditional), with their tokens and the call's
     * info. params.out_scores / out_log_likelihoods, when set, are the caller's arrays. */
    Generation generate(const std::string &prompt,
                        const dalle_generate_params &params = dalle_generate_default_params()) {
        Generation out;
        out.info.struct_size = sizeof out.info;
        check(dalle_generate(get(), prompt.c_str(), &params, out.images.batch_.out(), out.tokens.tokens_.out(),
                             &out.info));
        return out;
    }

    /* The C handle; NULL once moved from. */
    dalle_context *get() const noexcept { return handle_.get(); }

private:
    void create(const Model &model, const dalle_context_params &params) {
        dalle_context *ctx = nullptr;
        detail::check(dalle_context_create(model.get(), &params, &ctx), dalle_last_error());
        handle_.reset(ctx);
    }

    void check(dalle_status status) const { detail::check(status, dalle_context_last_error(get())); }

    std::unique_ptr<dalle_context, detail::ContextDeleter> handle_;
};

}  // namespace dalle

#endif /* DALLE_HPP */
