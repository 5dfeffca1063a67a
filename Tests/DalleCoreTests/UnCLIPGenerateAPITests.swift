import CDalle
@testable import DalleCAPI
import DalleCore
import Foundation
import XCTest

/// DALL·E 2 through the C API: the tiny unCLIP bundle (Golden/unclip, tools/make_golden_unclip.py)
/// loads as an "unclip" component and dalle_generate draws what UnCLIPPipeline draws, the same
/// for any thread count, with progress per denoising step.
final class UnCLIPGenerateAPITests: XCTestCase {
    static let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Golden/unclip/tiny_unclip_f16.safetensors").path

    func lastError() -> String { String(cString: dalle_last_error()) }

    func testGenerateDrawsWhatThePipelineDraws() throws {
        var model: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file(Self.path, nil, &model), dalle_status(DALLE_OK), lastError())
        defer { dalle_model_free(model) }
        var info = dalle_model_info()
        info.struct_size = UInt32(MemoryLayout<dalle_model_info>.size)
        XCTAssertEqual(dalle_model_get_info(model, &info), dalle_status(DALLE_OK))
        XCTAssertNotEqual(info.components & UInt32(DALLE_COMPONENT_UNCLIP), 0)
        var component = dalle_component_info()
        component.struct_size = UInt32(MemoryLayout<dalle_component_info>.size)
        var count: Int32 = 0
        XCTAssertEqual(dalle_model_component_count(model, &count), dalle_status(DALLE_OK))
        XCTAssertEqual(dalle_model_get_component(model, count - 1, &component), dalle_status(DALLE_OK))
        XCTAssertEqual(component.capabilities, UInt32(DALLE_CAN_GENERATE))

        func generate(threads: Int32, progress: Bool = false) throws -> (pixels: [UInt8], size: Int, steps: Int) {
            var params = DalleCAPI.dalle_context_default_params()
            params.n_threads = threads
            var ctx: OpaquePointer? = nil
            XCTAssertEqual(dalle_context_create(model, &params, &ctx), dalle_status(DALLE_OK), lastError())
            defer { dalle_context_free(ctx) }
            final class Steps { var count = 0 }
            let steps = Steps()
            var gp = DalleCAPI.dalle_generate_default_params()
            gp.count = 2
            gp.seed = 7
            if progress {
                gp.progress = { phase, _, _, user in
                    if phase == Int32(DALLE_PHASE_GENERATE) { Unmanaged<Steps>.fromOpaque(user!).takeUnretainedValue().count += 1 }
                    return true
                }
                gp.progress_user_data = Unmanaged.passUnretained(steps).toOpaque()
            }
            var images = dalle_image_batch()
            var tokens = dalle_tokens()
            XCTAssertEqual(dalle_generate(ctx, "a red cat on the mat", &gp, &images, &tokens, nil), dalle_status(DALLE_OK),
                           String(cString: dalle_context_last_error(ctx)))
            defer { dalle_image_batch_free(&images); dalle_tokens_free(&tokens) }
            XCTAssertEqual(images.count, 2)
            XCTAssertEqual(tokens.count, 0, "an unCLIP model makes no image tokens")
            let first = try XCTUnwrap(images.images).pointee
            let size = Int(first.width), bytes = size * size * 3
            let pixels = (0..<Int(images.count)).flatMap { Array(UnsafeBufferPointer(start: images.images![$0].data, count: bytes)) }
            return (pixels, size, steps.count)
        }
        let one = try generate(threads: 1, progress: true)
        XCTAssertEqual(one.pixels, try generate(threads: 2).pixels, "the same images at 1 and 2 threads")
        XCTAssertEqual(one.steps, 1 + 25 + 25 + 7, "progress: the start, then every denoising step")

        var options = UnCLIPPipeline.Options()
        options.seed = 7
        let expected = try UnCLIPPipeline(bundle: try SafetensorsFile(path: Self.path))
            .generate(prompts: ["a red cat on the mat", "a red cat on the mat"], options: options)
        XCTAssertEqual(one.size, expected.shape[3])
        var rgb = [UInt8](repeating: 0, count: one.pixels.count)
        let bytes = one.size * one.size * 3
        for n in 0..<2 {
            try rgb.withUnsafeMutableBufferPointer { out in
                try ImageConversion.writeRGB8(expected, image: n, into: UnsafeMutableBufferPointer(rebasing: out[(n * bytes)..<((n + 1) * bytes)]))
            }
        }
        XCTAssertEqual(one.pixels, rgb)
    }

    /// The appended step counts and guidance scales reach the pipeline; bad ones are errors.
    func testStepsAndGuidanceFromTheParams() throws {
        var model: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file(Self.path, nil, &model), dalle_status(DALLE_OK), lastError())
        defer { dalle_model_free(model) }
        var ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(model, nil, &ctx), dalle_status(DALLE_OK), lastError())
        defer { dalle_context_free(ctx) }
        var gp = DalleCAPI.dalle_generate_default_params()
        (gp.seed, gp.prior_steps, gp.decoder_steps, gp.super_res_steps, gp.prior_guidance, gp.decoder_guidance) = (5, 3, 2, 2, 2, 3)
        var images = dalle_image_batch()
        XCTAssertEqual(dalle_generate(ctx, "two blue squares", &gp, &images, nil, nil), dalle_status(DALLE_OK),
                       String(cString: dalle_context_last_error(ctx)))
        defer { dalle_image_batch_free(&images) }
        var options = UnCLIPPipeline.Options()
        (options.seed, options.priorSteps, options.decoderSteps, options.superResolutionSteps) = (5, 3, 2, 2)
        (options.priorGuidance, options.decoderGuidance) = (2, 3)
        let expected = try UnCLIPPipeline(bundle: try SafetensorsFile(path: Self.path)).generate(prompts: ["two blue squares"], options: options)
        let size = expected.shape[3]
        var rgb = [UInt8](repeating: 0, count: size * size * 3)
        try rgb.withUnsafeMutableBufferPointer { try ImageConversion.writeRGB8(expected, image: 0, into: $0) }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: try XCTUnwrap(images.images).pointee.data, count: rgb.count)), rgb)

        for (field, message) in [(\dalle_generate_params.prior_steps, "1001 steps"), (\dalle_generate_params.super_res_steps, "1001 steps")] {
            var bad = DalleCAPI.dalle_generate_default_params()
            bad[keyPath: field] = 1001
            var out = dalle_image_batch()
            XCTAssertEqual(dalle_generate(ctx, "x", &bad, &out, nil, nil), dalle_status(DALLE_INVALID_ARGUMENT))
            XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains(message), String(cString: dalle_context_last_error(ctx)))
        }
        var bad = DalleCAPI.dalle_generate_default_params()
        bad.decoder_guidance = .nan
        var out = dalle_image_batch()
        XCTAssertEqual(dalle_generate(ctx, "x", &bad, &out, nil, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertNil(out.images)
    }

    static let noisePath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Golden/unclip/noise_one_image.safetensors").path

    /// A context on the tiny bundle, for `body`.
    func withContext(_ body: (OpaquePointer?) throws -> Void) throws {
        var model: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file(Self.path, nil, &model), dalle_status(DALLE_OK), lastError())
        defer { dalle_model_free(model) }
        var ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(model, nil, &ctx), dalle_status(DALLE_OK), lastError())
        defer { dalle_context_free(ctx) }
        try body(ctx)
    }

    /// The RGB8 pixels of the first image `dalle_generate` makes for the chain's first prompt.
    func generateFirstPrompt(_ ctx: OpaquePointer?, _ gp: inout dalle_generate_params) -> (dalle_status, [UInt8]) {
        var images = dalle_image_batch()
        defer { dalle_image_batch_free(&images) }
        let status = dalle_generate(ctx, "a red cat on the mat", &gp, &images, nil, nil)
        guard status == dalle_status(DALLE_OK), let first = images.images?.pointee else { return (status, []) }
        return (status, Array(UnsafeBufferPointer(start: first.data, count: Int(first.width * first.height * 3))))
    }

    /// diffusers' recorded noise for the chain's first image, given by path or in memory, makes
    /// the chain's first image (within one 8-bit level).
    func testCallerNoiseReproducesTheGoldenChain() throws {
        let golden = UnCLIPGolden.item(try UnCLIPGolden.file("chain").tensor("image"), 0)
        let side = golden.shape[2], plane = side * side
        try withContext { ctx in
            var gp = DalleCAPI.dalle_generate_default_params()
            gp.seed = 3  // every draw is given: the seed does not matter
            let (status, pixels) = Self.noisePath.withCString { path -> (dalle_status, [UInt8]) in
                gp.noise_path = path
                defer { gp.noise_path = nil }
                return generateFirstPrompt(ctx, &gp)
            }
            XCTAssertEqual(status, dalle_status(DALLE_OK), String(cString: dalle_context_last_error(ctx)))
            XCTAssertEqual(pixels.count, plane * 3)
            var worst: Float = 0
            for p in 0..<plane {
                for c in 0..<3 { worst = max(worst, abs(Float(pixels[p * 3 + c]) - golden.scalars[c * plane + p] * 255)) }
            }
            print("unclip parity dalle_generate with the recorded noise: max |pixel - golden x 255| = \(worst)")
            XCTAssertLessThanOrEqual(worst, 1)

            let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: Self.noisePath)))
            let fromMemory = bytes.withUnsafeBytes { buffer -> [UInt8] in
                gp.noise_data = buffer.baseAddress
                gp.noise_size = UInt64(buffer.count)
                defer { (gp.noise_data, gp.noise_size) = (nil, 0) }
                return generateFirstPrompt(ctx, &gp).1
            }
            XCTAssertEqual(fromMemory, pixels)
        }
    }

    /// Noise of another name, dtype or shape, with a NaN, or given two ways is an error that says
    /// which tensor and what was expected; a model that is not unCLIP takes none.
    func testBadCallerNoiseIsAnError() throws {
        let recorded = try SafetensorsFile(path: Self.noisePath)
        func file(_ edit: (inout SafetensorsWriter) throws -> Void) throws -> [UInt8] {
            var writer = SafetensorsWriter()
            try edit(&writer)
            return writer.serialized()
        }
        var nan = try recorded.tensor("decoder_latents")
        nan.scalars[5] = .nan
        let cases: [([UInt8], String)] = [
            (try file { try $0.add("decoder_latents", Tensor(zeros: [1, 3, 4, 4])) },
             "noise tensor 'decoder_latents' has shape [1, 3, 4, 4], expected [1, 3, 8, 8]"),
            (try file { try $0.add("prior_step_noise", Tensor(zeros: [25, 1, 32])) }, "expected [24, 1, 32] [prior steps - 1"),
            (try file { try $0.add("latents", Tensor(zeros: [1])) }, "unexpected noise tensor 'latents'"),
            (try file { try $0.add("prior_latents", try recorded.tensor("prior_latents"), as: .f16) }, "'prior_latents' is F16, expected F32"),
            (try file { try $0.add("decoder_latents", nan) }, "'decoder_latents' holds nan at index 5"),
            (Array("not a safetensors file".utf8), "safetensors buffer"),
        ]
        try withContext { ctx in
            for (bytes, message) in cases {
                var gp = DalleCAPI.dalle_generate_default_params()
                let status = bytes.withUnsafeBytes { buffer -> dalle_status in
                    gp.noise_data = buffer.baseAddress
                    gp.noise_size = UInt64(buffer.count)
                    return generateFirstPrompt(ctx, &gp).0
                }
                XCTAssertNotEqual(status, dalle_status(DALLE_OK), message)
                let error = String(cString: dalle_context_last_error(ctx))
                XCTAssertTrue(error.contains(message), "'\(error)' lacks '\(message)'")
            }
            var gp = DalleCAPI.dalle_generate_default_params()
            gp.count = 2  // the file holds one image's noise
            var status = Self.noisePath.withCString { path -> dalle_status in
                gp.noise_path = path
                return generateFirstPrompt(ctx, &gp).0
            }
            XCTAssertEqual(status, dalle_status(DALLE_INVALID_ARGUMENT))
            XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("'decoder_latents' has shape [1, 3, 8, 8], expected [2, 3, 8, 8]"),
                          String(cString: dalle_context_last_error(ctx)))
            gp = DalleCAPI.dalle_generate_default_params()
            let byte: UInt8 = 0
            status = withUnsafePointer(to: byte) { data in
                Self.noisePath.withCString { path -> dalle_status in
                    (gp.noise_path, gp.noise_data, gp.noise_size) = (path, UnsafeRawPointer(data), 1)
                    return generateFirstPrompt(ctx, &gp).0
                }
            }
            XCTAssertEqual(status, dalle_status(DALLE_INVALID_ARGUMENT))
            XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("both set"))
            gp = DalleCAPI.dalle_generate_default_params()
            gp.noise_size = 8
            XCTAssertEqual(generateFirstPrompt(ctx, &gp).0, dalle_status(DALLE_INVALID_ARGUMENT))
            XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("noise_data is NULL"))
        }
    }

    /// A borrowed C image of `image` for `body`.
    func withCImage<T>(_ image: RGBImage, channels: UInt32 = 3, _ body: (UnsafePointer<dalle_image>) throws -> T) rethrows -> T {
        var pixels = image.pixels
        return try pixels.withUnsafeMutableBufferPointer { buffer in
            var c = dalle_image(width: UInt32(image.width), height: UInt32(image.height), channels: channels, data: buffer.baseAddress)
            return try withUnsafePointer(to: &c) { try body($0) }
        }
    }

    /// Every image of a dalle_generate call against the golden float images [N, 3, S, S]: at most one 8-bit level apart.
    func assertMatches(_ images: dalle_image_batch, _ golden: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Int(images.count), golden.shape[0], what, file: file, line: line)
        let side = golden.shape[2], plane = side * side
        var worst: Float = 0
        for n in 0..<min(Int(images.count), golden.shape[0]) {
            let data = images.images![n].data!
            for p in 0..<plane {
                for c in 0..<3 { worst = max(worst, abs(Float(data[p * 3 + c]) - golden.scalars[(n * 3 + c) * plane + p] * 255)) }
            }
        }
        print("unclip parity \(what) through dalle_generate: max |pixel - golden x 255| = \(worst)")
        XCTAssertLessThanOrEqual(worst, 1, what, file: file, line: line)
    }

    /// Variations (init_image), text interpolation (interpolate_to) and image interpolation
    /// (init_image + interpolate_to_image) through dalle_generate with the recorded noise reproduce
    /// diffusers' images; keep_best reranks with the bundle's own CLIP.
    func testVariationsInterpolationsAndKeepBest() throws {
        let golden = try UnCLIPGolden.file("variation")
        let (first, second) = (try UnCLIPVariationTests.image("input_image"), try UnCLIPVariationTests.image("second_image"))
        func noisePath(_ name: String) -> String { UnCLIPGolden.directory + "/\(name).safetensors" }
        try withContext { ctx in
            func run(_ prompt: String, _ edit: (inout dalle_generate_params) -> Void, noise: String?) -> (dalle_status, dalle_image_batch) {
                var gp = DalleCAPI.dalle_generate_default_params()
                edit(&gp)
                var images = dalle_image_batch()
                let status = (noise.map(noisePath) ?? "").withCString { path -> dalle_status in
                    if noise != nil { gp.noise_path = path }
                    return dalle_generate(ctx, prompt, &gp, &images, nil, nil)
                }
                return (status, images)
            }
            final class Steps { var count = 0 }
            let steps = Steps()
            var (status, images) = withCImage(first) { image in
                run("", { gp in
                    (gp.init_image, gp.decoder_steps, gp.super_res_steps) = (image, 5, 3)
                    gp.progress = { _, _, _, user in Unmanaged<Steps>.fromOpaque(user!).takeUnretainedValue().count += 1; return true }
                    gp.progress_user_data = Unmanaged.passUnretained(steps).toOpaque()
                }, noise: "variation_noise")
            }
            XCTAssertEqual(status, dalle_status(DALLE_OK), String(cString: dalle_context_last_error(ctx)))
            assertMatches(images, try golden.tensor("variation.image"), "variation")
            XCTAssertEqual(steps.count, 1 + 5 + 3, "progress: the start, the decoder's and the super-resolution's steps")
            dalle_image_batch_free(&images)

            (status, images) = "two blue squares".withCString { end in
                run("a red cat on the mat", { gp in
                    (gp.count, gp.interpolate_to, gp.prior_steps, gp.decoder_steps, gp.super_res_steps) = (3, end, 3, 3, 2)
                }, noise: "text_interpolation_noise")
            }
            XCTAssertEqual(status, dalle_status(DALLE_OK), String(cString: dalle_context_last_error(ctx)))
            assertMatches(images, try golden.tensor("text_interpolation.image"), "text interpolation")
            dalle_image_batch_free(&images)

            (status, images) = withCImage(first) { a in
                withCImage(second) { b in
                    run("", { gp in
                        (gp.count, gp.init_image, gp.interpolate_to_image, gp.decoder_steps, gp.super_res_steps) = (3, a, b, 3, 2)
                    }, noise: "image_interpolation_noise")
                }
            }
            XCTAssertEqual(status, dalle_status(DALLE_OK), String(cString: dalle_context_last_error(ctx)))
            assertMatches(images, try golden.tensor("image_interpolation.image"), "image interpolation")
            dalle_image_batch_free(&images)

            // keep_best: the bundle's image encoder with its text encoder as CLIP.
            var scores = [Float](repeating: 0, count: 2)
            (status, images) = scores.withUnsafeMutableBufferPointer { out in
                run("a red cat", { gp in
                    (gp.count, gp.keep_best, gp.out_scores, gp.seed) = (3, 2, out.baseAddress, 5)
                    (gp.prior_steps, gp.decoder_steps, gp.super_res_steps) = (2, 2, 2)
                }, noise: nil)
            }
            XCTAssertEqual(status, dalle_status(DALLE_OK), String(cString: dalle_context_last_error(ctx)))
            XCTAssertEqual(images.count, 2)
            XCTAssertGreaterThanOrEqual(scores[0], scores[1])
            XCTAssertNotEqual(scores[0], 0)
            dalle_image_batch_free(&images)

            // Bad requests: each a clear error.
            let bad: [(String, (inout dalle_generate_params) -> Void, String)] = [
                ("a cat", { _ in }, "take the prompt \"\""),
                ("", { gp in (gp.interpolate_to_image, gp.init_image) = (gp.init_image, nil) }, "from a prompt to a prompt or from an image to an image"),
                ("", { $0.keep_best = 1 }, "the prompt is empty"),
            ]
            for (prompt, edit, message) in bad {
                (status, images) = withCImage(first) { image in run(prompt, { gp in gp.init_image = image; edit(&gp) }, noise: nil) }
                XCTAssertNotEqual(status, dalle_status(DALLE_OK), message)
                XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains(message), String(cString: dalle_context_last_error(ctx)))
                XCTAssertNil(images.images)
            }
            (status, images) = withCImage(first, channels: 2) { image in run("", { $0.init_image = image }, noise: nil) }
            XCTAssertEqual(status, dalle_status(DALLE_INVALID_ARGUMENT))
            XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("init_image.channels is 2"))
            (status, images) = "x".withCString { end in
                withCImage(first) { image in run("", { gp in (gp.interpolate_to_image, gp.interpolate_to) = (image, end) }, noise: nil) }
            }
            XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("both set"))
            (status, images) = "x".withCString { end in run("", { gp in gp.interpolate_to = end }, noise: nil) }
            XCTAssertEqual(status, dalle_status(DALLE_OK), "from the empty prompt to another: a valid interpolation")
            dalle_image_batch_free(&images)
        }

        // A bundle without an image encoder: keep_best and variations say what is missing.
        let bytes = try UnCLIPBundleWithout.imageEncoder()
        var model: OpaquePointer? = nil
        XCTAssertEqual(bytes.withUnsafeBytes { dalle_model_load_buffer($0.baseAddress, $0.count, nil, &model) }, dalle_status(DALLE_OK), lastError())
        defer { dalle_model_free(model) }
        var ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(model, nil, &ctx), dalle_status(DALLE_OK), lastError())
        defer { dalle_context_free(ctx) }
        var gp = DalleCAPI.dalle_generate_default_params()
        (gp.count, gp.keep_best) = (2, 1)
        var images = dalle_image_batch()
        XCTAssertEqual(dalle_generate(ctx, "a red cat", &gp, &images, nil, nil), dalle_status(DALLE_UNSUPPORTED))
        XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("--image-encoder"), String(cString: dalle_context_last_error(ctx)))
        gp = DalleCAPI.dalle_generate_default_params()
        let status = withCImage(first) { image -> dalle_status in
            gp.init_image = image
            return dalle_generate(ctx, "", &gp, &images, nil, nil)
        }
        XCTAssertEqual(status, dalle_status(DALLE_UNSUPPORTED))
        XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("no image encoder"), String(cString: dalle_context_last_error(ctx)))
    }
}
