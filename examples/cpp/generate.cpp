// Text -> images through dalle.hpp, the C++17 wrapper of libdalle: load a model, generate
// candidates, save them as PNG files, decode their tokens again, and see a bad parameter come
// back as dalle::Error.
//
//   c++ -std=c++17 generate.cpp $(pkg-config --cflags --libs dalle) -o generate
//   ./generate "a red circle" [MODEL.safetensors]
//
// Without MODEL it loads the default model ($DALLE_MODEL, else the installed one). The images
// go to generate-0.png, generate-1.png in the current directory.
//
// or with CMake: find_package(dalle REQUIRED) and target_link_libraries(app dalle::dalle).
// Nothing to free by hand: the model, the context and every result release themselves.
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "dalle.hpp"

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        std::fprintf(stderr, "usage: %s PROMPT [MODEL.safetensors]\n", argv[0]);
        return 2;
    }
    const char *prompt = argv[1];
    try {
        std::printf("libdalle %s (header %s)\n", dalle::version().c_str(), DALLE_VERSION_STRING);
        dalle::Model model = argc == 3 ? dalle::Model(argv[2]) : dalle::Model::load_default();
        dalle_model_info info = model.info();
        dalle::Context ctx(model, 0, 42);

        dalle_generate_params params = dalle_generate_default_params();
        params.count = 2;
        params.top_k = 16;
        params.cond_scale = info.cond_scale;  // the guidance scale the model was tuned for
        dalle::Generation result = ctx.generate(prompt, params);
        std::printf("%zu images of %ux%u, %zu token grids of %zux%zu, seed %llu, %u prompt tokens\n",
                    result.images.size(), result.images[0].width, result.images[0].height, result.tokens.count(),
                    result.tokens.rows(), result.tokens.cols(), static_cast<unsigned long long>(result.info.seed),
                    result.info.prompt_tokens);

        for (std::size_t i = 0; i < result.images.size(); i++)
            dalle::write_png("generate-" + std::to_string(i) + ".png", result.images[i]);
        dalle::Image saved = dalle::read_png("generate-1.png");
        if (saved.width() != result.images[1].width ||
            std::memcmp(saved.data(), result.images[1].data, std::size_t(saved.width()) * saved.height() * 3) != 0) {
            std::fprintf(stderr, "generate: generate-1.png holds other pixels\n");
            return 1;
        }

        // Decoding the tokens again gives the same pixels; results are movable, not copyable.
        dalle::ImageBatch again = ctx.decode(result.tokens.get());
        dalle::ImageBatch moved = std::move(again);
        std::size_t bytes = std::size_t(moved[1].width) * moved[1].height * moved[1].channels;
        if (moved.size() != 2 || std::memcmp(moved[1].data, result.images[1].data, bytes) != 0) {
            std::fprintf(stderr, "generate: decoding the tokens again gave other pixels\n");
            return 1;
        }

        params.top_p = 1.5f;
        try {
            ctx.generate(prompt, params);
            std::fprintf(stderr, "generate: top_p 1.5 was accepted\n");
            return 1;
        } catch (const dalle::Error &e) {
            std::printf("rejected (%s): %s\n", dalle_status_string(e.status()), e.what());
        }
    } catch (const dalle::Error &e) {
        std::fprintf(stderr, "generate: %s (%s)\n", e.what(), dalle_status_string(e.status()));
        return 1;
    }
    std::printf("ok\n");
    return 0;
}
