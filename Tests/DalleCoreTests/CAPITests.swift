import CDalle
@testable import DalleCAPI
import DalleCore
import Foundation
import XCTest

/// The C API called exactly as a C program calls it: every bad pointer, size and handle
/// must come back as a status plus a message, never a trap.
final class CAPITests: XCTestCase {
    static let repoRoot: String = {
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/DalleCoreTests/CAPITests.swift
        return parts.joined(separator: "/")
    }()
    static let modelPath = repoRoot + "/Tests/DalleCoreTests/Golden/dvae/model.safetensors"

    override class func setUp() {
        DalleCAPI.dalle_log_set_level(dalle_log_level(DALLE_LOG_NONE))
    }

    // MARK: helpers

    func lastError() -> String { String(cString: dalle_last_error()) }

    func loadModel(file: StaticString = #filePath, line: UInt = #line) throws -> OpaquePointer {
        var model: OpaquePointer? = nil
        let status = dalle_model_load_file(Self.modelPath, nil, &model)
        XCTAssertEqual(status, dalle_status(DALLE_OK), lastError(), file: file, line: line)
        return try XCTUnwrap(model, file: file, line: line)
    }

    func makeContext(_ model: OpaquePointer, threads: Int32 = 0) throws -> OpaquePointer {
        var params = DalleCAPI.dalle_context_default_params()
        params.n_threads = threads
        var ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(model, &params, &ctx), dalle_status(DALLE_OK), lastError())
        return try XCTUnwrap(ctx)
    }

    func info(_ model: OpaquePointer) -> dalle_model_info {
        var info = dalle_model_info()
        info.struct_size = UInt32(MemoryLayout<dalle_model_info>.size)
        XCTAssertEqual(dalle_model_get_info(model, &info), dalle_status(DALLE_OK), lastError())
        return info
    }

    /// A smooth synthetic RGB image (seeded by `k`), size×size×channels.
    func syntheticImage(size: Int, channels: Int = 3, k: Int = 0) -> [UInt8] {
        var pixels = [UInt8](repeating: 255, count: size * size * channels)
        for y in 0..<size {
            for x in 0..<size {
                for c in 0..<3 { pixels[(y * size + x) * channels + c] = UInt8((x * 7 + y * 3 + c * 50 + k * 31) % 256) }
            }
        }
        return pixels
    }

    /// Encodes images given as pixel arrays with `channels`; returns status and tokens.
    func encode(_ ctx: OpaquePointer, _ images: [[UInt8]], size: Int, channels: Int = 3) -> (dalle_status, [Int32]) {
        var buffers = images
        var structs: [dalle_image] = []
        var out = dalle_tokens()
        let status: dalle_status = buffers.withUnsafeMutableBufferPointer { all in
            func go(_ i: Int) -> dalle_status {
                if i == all.count { return dalle_encode(ctx, structs, UInt32(structs.count), &out) }
                return all[i].withUnsafeMutableBufferPointer { p in
                    structs.append(dalle_image(width: UInt32(size), height: UInt32(size), channels: UInt32(channels), data: p.baseAddress))
                    return go(i + 1)
                }
            }
            return go(0)
        }
        defer { dalle_tokens_free(&out) }
        let n = Int(out.count) * Int(out.rows) * Int(out.cols)
        return (status, out.data.map { Array(UnsafeBufferPointer(start: $0, count: n)) } ?? [])
    }

    func decode(_ ctx: OpaquePointer, _ tokens: [Int32], count: Int, grid: Int) -> (dalle_status, [UInt8]) {
        var ids = tokens
        var out = dalle_image_batch()
        let status = ids.withUnsafeMutableBufferPointer { p -> dalle_status in
            var request = dalle_tokens(count: UInt32(count), rows: UInt32(grid), cols: UInt32(grid), data: p.baseAddress)
            return dalle_decode(ctx, &request, &out)
        }
        defer { dalle_image_batch_free(&out) }
        var pixels: [UInt8] = []
        for i in 0..<Int(out.count) {
            let image = out.images[i]
            XCTAssertEqual(image.channels, 3)
            pixels += UnsafeBufferPointer(start: image.data, count: Int(image.width * image.height * 3))
        }
        return (status, pixels)
    }

    // MARK: library

    func testVersionStatusStringsAndSystemInfo() {
        XCTAssertEqual(String(cString: dalle_version()), "\(DALLE_VERSION_MAJOR).\(DALLE_VERSION_MINOR).\(DALLE_VERSION_PATCH)")
        XCTAssertEqual(String(cString: dalle_status_string(dalle_status(DALLE_OK))), "ok")
        XCTAssertEqual(String(cString: dalle_status_string(dalle_status(DALLE_CANCELLED))), "cancelled")
        XCTAssertEqual(String(cString: dalle_status_string(99)), "unknown status")
        XCTAssertTrue(String(cString: dalle_system_info()).hasPrefix("libdalle "))
        XCTAssertEqual(DalleCAPI.dalle_model_default_params().struct_size, UInt32(MemoryLayout<dalle_model_params>.size))
        let cp = DalleCAPI.dalle_context_default_params()
        XCTAssertEqual(cp.struct_size, UInt32(MemoryLayout<dalle_context_params>.size))
        XCTAssertEqual(cp.seed, DALLE_SEED_RANDOM)
        XCTAssertEqual(cp.n_threads, 0)
    }

    /// Swift's view of every struct matches the table the C compiler produces (tests/c/abi_layout.txt).
    func testStructLayoutMatchesCTable() throws {
        let text = try String(contentsOfFile: Self.repoRoot + "/tests/c/abi_layout.txt", encoding: .utf8)
        func line<T>(_ name: String, _ type: T.Type, _ fields: [(String, PartialKeyPath<T>)]) -> String {
            ([name, String(MemoryLayout<T>.size)] + fields.flatMap { [$0.0, String(MemoryLayout<T>.offset(of: $0.1) ?? -1)] })
                .joined(separator: " ")
        }
        let swift = [
            line("dalle_image", dalle_image.self, [("width", \.width), ("height", \.height), ("channels", \.channels), ("data", \.data)]),
            line("dalle_image_batch", dalle_image_batch.self, [("count", \.count), ("images", \.images)]),
            line("dalle_tokens", dalle_tokens.self, [("count", \.count), ("rows", \.rows), ("cols", \.cols), ("data", \.data)]),
            line("dalle_model_params", dalle_model_params.self, [("struct_size", \.struct_size), ("progress", \.progress), ("progress_user_data", \.progress_user_data)]),
            line("dalle_model_info", dalle_model_info.self, [("struct_size", \.struct_size), ("components", \.components), ("image_size", \.image_size), ("image_channels", \.image_channels), ("token_grid_size", \.token_grid_size), ("codebook_size", \.codebook_size), ("n_params", \.n_params), ("cond_scale", \.cond_scale), ("likelihood_weight", \.likelihood_weight)]),
            line("dalle_component_info", dalle_component_info.self, [("struct_size", \.struct_size), ("component", \.component), ("capabilities", \.capabilities), ("reserved", \.reserved), ("n_params", \.n_params), ("name", \.name), ("variant", \.variant)]),
            line("dalle_context_params", dalle_context_params.self, [("struct_size", \.struct_size), ("n_threads", \.n_threads), ("seed", \.seed), ("progress", \.progress), ("progress_user_data", \.progress_user_data)]),
            line("dalle_generate_params", dalle_generate_params.self, [("struct_size", \.struct_size), ("count", \.count), ("seed", \.seed), ("temperature", \.temperature), ("top_k", \.top_k), ("top_p", \.top_p), ("cond_scale", \.cond_scale), ("prime_rows", \.prime_rows), ("prime_tokens", \.prime_tokens), ("progress", \.progress), ("progress_user_data", \.progress_user_data), ("keep_best", \.keep_best), ("out_scores", \.out_scores), ("out_log_likelihoods", \.out_log_likelihoods), ("likelihood_weight", \.likelihood_weight), ("prior_steps", \.prior_steps), ("decoder_steps", \.decoder_steps), ("super_res_steps", \.super_res_steps), ("prior_guidance", \.prior_guidance), ("decoder_guidance", \.decoder_guidance), ("noise_path", \.noise_path), ("noise_data", \.noise_data), ("noise_size", \.noise_size), ("init_image", \.init_image), ("interpolate_to", \.interpolate_to), ("interpolate_to_image", \.interpolate_to_image)]),
            line("dalle_generate_info", dalle_generate_info.self, [("struct_size", \.struct_size), ("prompt_tokens", \.prompt_tokens), ("truncated_tokens", \.truncated_tokens), ("generated_tokens", \.generated_tokens), ("seed", \.seed), ("unknown_words", \.unknown_words)]),
            line("dalle_eval_params", dalle_eval_params.self, [("struct_size", \.struct_size), ("candidates", \.candidates), ("seed", \.seed), ("per_template", \.per_template), ("per_held_out_pair", \.per_held_out_pair), ("reconstruction_samples", \.reconstruction_samples), ("temperature", \.temperature), ("top_k", \.top_k), ("top_p", \.top_p), ("cond_scale", \.cond_scale), ("progress", \.progress), ("progress_user_data", \.progress_user_data), ("likelihood_weight", \.likelihood_weight)]),
            line("dalle_eval_group", dalle_eval_group.self, [("captions", \.captions), ("candidates", \.candidates), ("passed_best_by_clip", \.passed_best_by_clip), ("passed_candidates", \.passed_candidates), ("passed_any", \.passed_any)]),
            line("dalle_eval_report", dalle_eval_report.self, [("struct_size", \.struct_size), ("has_clip", \.has_clip), ("one_object", \.one_object), ("counting", \.counting), ("relation", \.relation), ("held_out", \.held_out), ("total", \.total), ("reconstruction_images", \.reconstruction_images), ("reconstruction_passed", \.reconstruction_passed)]),
            line("dalle_bundle_params", dalle_bundle_params.self, [("struct_size", \.struct_size), ("weight_type", \.weight_type), ("cond_scale", \.cond_scale), ("likelihood_weight", \.likelihood_weight)]),
            line("dalle_train_params", dalle_train_params.self, [("struct_size", \.struct_size), ("n_threads", \.n_threads), ("stage", \.stage), ("data", \.data), ("out_path", \.out_path), ("tokenizer_path", \.tokenizer_path), ("dvae_path", \.dvae_path), ("config", \.config), ("steps", \.steps), ("batch_size", \.batch_size), ("learning_rate", \.learning_rate), ("warmup_steps", \.warmup_steps), ("weight_decay", \.weight_decay), ("gradient_clip", \.gradient_clip), ("seed", \.seed), ("validation_count", \.validation_count), ("checkpoint_every", \.checkpoint_every), ("vocab_size", \.vocab_size), ("progress", \.progress), ("progress_user_data", \.progress_user_data), ("dvae_schedule", \.dvae_schedule), ("init_path", \.init_path), ("freeze", \.freeze), ("caption_dropout", \.caption_dropout), ("caption_negatives", \.caption_negatives)]),
        ]
        XCTAssertEqual(swift, text.split(separator: "\n").map(String.init))
    }

    // MARK: models

    /// The generic component query lists what any model holds, in loading order.
    func testComponentsAreDescribedGenerically() throws {
        func components(_ path: String) throws -> [(String, String, UInt32, UInt64)] {
            var model: OpaquePointer? = nil
            XCTAssertEqual(dalle_model_load_file(path, nil, &model), dalle_status(DALLE_OK), lastError())
            defer { dalle_model_free(model) }
            var count: Int32 = -1
            XCTAssertEqual(dalle_model_component_count(model, &count), dalle_status(DALLE_OK))
            return try (0..<count).map { index in
                var info = dalle_component_info()
                info.struct_size = UInt32(MemoryLayout<dalle_component_info>.size)
                XCTAssertEqual(dalle_model_get_component(model, index, &info), dalle_status(DALLE_OK), lastError())
                func text<T>(_ field: T) -> String {
                    withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                }
                XCTAssertEqual(info.component, try XCTUnwrap(ComponentKind.all.first { $0.name == text(info.name) }).component.rawValue)
                return (text(info.name), text(info.variant), info.capabilities, info.n_params)
            }
        }
        let dvae = try components(Self.modelPath)
        XCTAssertEqual(dvae.map(\.0), ["dvae"])
        XCTAssertEqual(dvae[0].1, "openai")
        XCTAssertEqual(dvae[0].2, UInt32(DALLE_CAN_ENCODE | DALLE_CAN_DECODE | DALLE_CAN_TRAIN))
        let shipped = try components(Self.repoRoot + "/models/shapes-world.safetensors")
        XCTAssertEqual(shipped.map(\.0), ["dvae", "tokenizer", "transformer", "clip"])
        XCTAssertEqual(shipped.map(\.1), ["openai", "clip-bpe", "dalle-pytorch", "vit"])
        XCTAssertEqual(shipped[2].2, UInt32(DALLE_CAN_GENERATE | DALLE_CAN_TRAIN))
        XCTAssertEqual(shipped[3].2, UInt32(DALLE_CAN_EMBED | DALLE_CAN_TRAIN))
        XCTAssertTrue(shipped.allSatisfy { $0.0 == "tokenizer" || $0.3 > 0 })

        let model = try loadModel()
        defer { dalle_model_free(model) }
        var info = dalle_component_info()
        info.struct_size = UInt32(MemoryLayout<dalle_component_info>.size)
        XCTAssertEqual(dalle_model_get_component(model, 1, &info), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("index is 1; this model has 1 components"), lastError())
        XCTAssertEqual(dalle_model_get_component(model, -1, &info), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(dalle_model_get_component(model, 0, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(dalle_model_get_component(nil, 0, &info), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(dalle_model_component_count(model, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        info.struct_size = 8
        XCTAssertEqual(dalle_model_get_component(model, 0, &info), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("struct_size is 8"), lastError())
    }

    func testLoadFileInfoAndRoundTrip() throws {
        let model = try loadModel()
        defer { dalle_model_free(model) }
        let i = info(model)
        XCTAssertEqual(i.components, UInt32(DALLE_COMPONENT_DVAE))
        XCTAssertEqual(i.image_size, 32)
        XCTAssertEqual(i.image_channels, 3)
        XCTAssertEqual(i.token_grid_size, 4)
        XCTAssertEqual(i.codebook_size, 128)
        XCTAssertGreaterThan(i.n_params, 10_000)

        let ctx = try makeContext(model)
        defer { dalle_context_free(ctx) }
        let (status, tokens) = encode(ctx, [syntheticImage(size: 32), syntheticImage(size: 32, k: 1)], size: 32)
        XCTAssertEqual(status, dalle_status(DALLE_OK), String(cString: dalle_context_last_error(ctx)))
        XCTAssertEqual(tokens.count, 2 * 16)
        XCTAssertTrue(tokens.allSatisfy { $0 >= 0 && $0 < 128 })
        XCTAssertEqual(String(cString: dalle_context_last_error(ctx)), "")

        let (decodeStatus, pixels) = decode(ctx, tokens, count: 2, grid: 4)
        XCTAssertEqual(decodeStatus, dalle_status(DALLE_OK), String(cString: dalle_context_last_error(ctx)))
        XCTAssertEqual(pixels.count, 2 * 32 * 32 * 3)

        // RGBA input: alpha is ignored.
        var rgba = syntheticImage(size: 32, channels: 4)
        for p in stride(from: 3, to: rgba.count, by: 4) { rgba[p] = UInt8(p % 251) }
        XCTAssertEqual(encode(ctx, [rgba], size: 32, channels: 4).1, Array(tokens[0..<16]))

        // An empty batch is a valid request.
        XCTAssertEqual(encode(ctx, [], size: 32).0, dalle_status(DALLE_OK))
        XCTAssertEqual(decode(ctx, [], count: 0, grid: 4).0, dalle_status(DALLE_OK))
    }

    func testLoadBufferMatchesLoadFile() throws {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.modelPath)))
        var fromBuffer: OpaquePointer? = nil
        XCTAssertEqual(bytes.withUnsafeBytes { dalle_model_load_buffer($0.baseAddress, $0.count, nil, &fromBuffer) },
                       dalle_status(DALLE_OK), lastError())
        let model = try XCTUnwrap(fromBuffer)
        defer { dalle_model_free(model) }
        let fileModel = try loadModel()
        defer { dalle_model_free(fileModel) }
        let a = try makeContext(model), b = try makeContext(fileModel)
        defer { dalle_context_free(a); dalle_context_free(b) }
        let image = syntheticImage(size: 32, k: 5)
        XCTAssertEqual(encode(a, [image], size: 32).1, encode(b, [image], size: 32).1)
        XCTAssertEqual(info(model).n_params, info(fileModel).n_params)
    }

    func testTruncatedAndGarbageBuffersAreRejected() throws {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.modelPath)))
        for length in [1, 7, 8, 9, 64, 200, bytes.count / 2, bytes.count - 1] {
            var model: OpaquePointer? = OpaquePointer(bitPattern: 1)
            let status = bytes.withUnsafeBytes { dalle_model_load_buffer($0.baseAddress, length, nil, &model) }
            XCTAssertNotEqual(status, dalle_status(DALLE_OK), "truncated to \(length) bytes")
            XCTAssertNil(model)
            XCTAssertFalse(lastError().isEmpty)
        }
        var rng = SystemRandomNumberGenerator()
        let garbage = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var model: OpaquePointer? = nil
        XCTAssertEqual(garbage.withUnsafeBytes { dalle_model_load_buffer($0.baseAddress, $0.count, nil, &model) },
                       dalle_status(DALLE_BAD_FILE), lastError())
        XCTAssertTrue(lastError().hasPrefix("dalle_model_load_buffer: "), lastError())
        // A size no allocation can hold is DALLE_OUT_OF_MEMORY (the buffer is never read), not an abort.
        XCTAssertEqual(garbage.withUnsafeBytes { dalle_model_load_buffer($0.baseAddress, 1 << 62, nil, &model) },
                       dalle_status(DALLE_OUT_OF_MEMORY), lastError())
        XCTAssertTrue(lastError().contains("cannot allocate 4611686018427387904 bytes"), lastError())
        XCTAssertNil(model)
    }

    /// A model whose weights hold a NaN or an infinity does not load; the message names the tensor.
    func testNonFiniteWeightsAreRejectedAtLoad() throws {
        let source = try SafetensorsFile(path: Self.modelPath)
        for (dtype, value) in [(DType.f32, Float.nan), (.f16, .infinity), (.bf16, -.infinity)] {
            var writer = SafetensorsWriter()
            writer.metadata = source.metadata
            let victim = try XCTUnwrap(source.names.first { $0.hasSuffix(".w") })
            for name in source.names {
                var t = try source.tensor(name)
                if name == victim { t.scalars[t.count - 1] = value }
                try writer.add(name, t, as: dtype)
            }
            let path = NSTemporaryDirectory() + "/libdalle-nonfinite-\(getpid()).safetensors"
            try writer.write(to: path)
            defer { unlink(path) }
            var model: OpaquePointer? = nil
            XCTAssertEqual(dalle_model_load_file(path, nil, &model), dalle_status(DALLE_BAD_FILE), "\(dtype)")
            XCTAssertTrue(lastError().contains("tensor '\(victim)' holds \(value)"), lastError())
            XCTAssertNil(model)
        }
    }

    func testMissingFileIsAnIOError() {
        var model: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file("/nonexistent/model.safetensors", nil, &model), dalle_status(DALLE_IO_ERROR))
        XCTAssertTrue(lastError().contains("/nonexistent/model.safetensors"), lastError())
    }

    func testSafetensorsOfAnotherKindIsRejected() throws {
        var writer = SafetensorsWriter()
        try writer.add("weight", Tensor(shape: [2, 2], scalars: [1, 2, 3, 4]))
        let foreign = writer.serialized()
        var model: OpaquePointer? = nil
        XCTAssertEqual(foreign.withUnsafeBytes { dalle_model_load_buffer($0.baseAddress, $0.count, nil, &model) },
                       dalle_status(DALLE_BAD_FILE))
        XCTAssertTrue(lastError().contains("not a libdalle model"), lastError())

        // A libdalle bundle without a dVAE loads, but cannot encode.
        writer.metadata = ["format": "libdalle", "format_version": "1", "components": "audio"]  // a component this build skips
        let noDVAE = writer.serialized()
        XCTAssertEqual(noDVAE.withUnsafeBytes { dalle_model_load_buffer($0.baseAddress, $0.count, nil, &model) },
                       dalle_status(DALLE_OK), lastError())
        let loaded = try XCTUnwrap(model)
        defer { dalle_model_free(loaded) }
        XCTAssertEqual(info(loaded).components, 0)
        let ctx = try makeContext(loaded)
        defer { dalle_context_free(ctx) }
        XCTAssertEqual(encode(ctx, [syntheticImage(size: 32)], size: 32).0, dalle_status(DALLE_UNSUPPORTED))
        XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("no dvae component"))

        writer.metadata["format_version"] = "2"
        let newer = writer.serialized()
        XCTAssertEqual(newer.withUnsafeBytes { dalle_model_load_buffer($0.baseAddress, $0.count, nil, &model) },
                       dalle_status(DALLE_UNSUPPORTED))
    }

    func testLoadDefaultReadsDALLE_MODELAndSaysWhereItLooked() throws {
        defer { unsetenv("DALLE_MODEL") }
        setenv("DALLE_MODEL", Self.modelPath, 1)
        var model: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_default(nil, &model), dalle_status(DALLE_OK), lastError())
        XCTAssertEqual(info(try XCTUnwrap(model)).codebook_size, 128)
        dalle_model_free(model)
        setenv("DALLE_MODEL", "/nonexistent/model.safetensors", 1)
        XCTAssertEqual(dalle_model_load_default(nil, &model), dalle_status(DALLE_IO_ERROR))
        XCTAssertNil(model)
        XCTAssertTrue(lastError().contains("DALLE_MODEL is /nonexistent/model.safetensors, which cannot be read"), lastError())
        unsetenv("DALLE_MODEL")
        let places = defaultModelCandidates()
        XCTAssertEqual(places.count, 3)
        XCTAssertTrue(places.allSatisfy { $0.hasPrefix("/") && $0.hasSuffix("/shapes-world.safetensors") }, "\(places)")
        XCTAssertTrue(places[0].hasSuffix("/share/dalle/models/shapes-world.safetensors"), places[0])
        if !places.contains(where: { access($0, R_OK) == 0 }) {
            XCTAssertEqual(dalle_model_load_default(nil, &model), dalle_status(DALLE_IO_ERROR))
            XCTAssertTrue(lastError().contains("looked at $DALLE_MODEL (unset), " + places.joined(separator: ", ")), lastError())
        }
    }

    func testPNGFilesReadAndWritten() throws {
        let golden = Self.repoRoot + "/Tests/DalleCoreTests/Golden/png/ct6_d8_adam7_dyn"  // RGBA, interlaced
        var image = dalle_image()
        XCTAssertEqual(dalle_image_read_file(golden + ".png", &image), dalle_status(DALLE_OK), lastError())
        defer { dalle_image_free(&image) }
        let expected = try Data(contentsOf: URL(fileURLWithPath: golden + ".rgb"))
        let pixels = Data(bytes: try XCTUnwrap(image.data), count: Int(image.width * image.height * 3))
        XCTAssertEqual(image.channels, 3)
        XCTAssertEqual(pixels, expected)

        let path = NSTemporaryDirectory() + "/capi-\(getpid()).png"
        defer { unlink(path) }
        XCTAssertEqual(dalle_image_write_png(path, &image), dalle_status(DALLE_OK), lastError())
        var again = dalle_image()
        XCTAssertEqual(dalle_image_read_file(path, &again), dalle_status(DALLE_OK), lastError())
        defer { dalle_image_free(&again) }
        XCTAssertEqual(Data(bytes: try XCTUnwrap(again.data), count: pixels.count), pixels)

        var huge = image
        (huge.width, huge.height) = (UInt32.max, UInt32.max)
        XCTAssertEqual(dalle_image_write_png(path, &huge), dalle_status(DALLE_INVALID_ARGUMENT))
        var failed = dalle_image(width: 1, height: 1, channels: 3, data: nil)
        XCTAssertEqual(dalle_image_read_file(Self.modelPath, &failed), dalle_status(DALLE_BAD_FILE))
        XCTAssertEqual(failed.width, 0)
    }

    // MARK: bad arguments

    func testNullPointersAndWrongStructSizes() throws {
        var model: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file(nil, nil, &model), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(lastError(), "dalle_model_load_file: invalid argument: path is NULL")
        XCTAssertEqual(dalle_model_load_file(Self.modelPath, nil, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("out_model is NULL"))
        XCTAssertEqual(dalle_model_load_buffer(nil, 10, nil, &model), dalle_status(DALLE_INVALID_ARGUMENT))
        var params = DalleCAPI.dalle_model_default_params()
        params.struct_size = 12
        XCTAssertEqual(dalle_model_load_file(Self.modelPath, &params, &model), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("struct_size is 12"), lastError())
        XCTAssertNil(model)

        let loaded = try loadModel()
        defer { dalle_model_free(loaded) }
        var ctxParams = DalleCAPI.dalle_context_default_params()
        ctxParams.struct_size = 1000
        var ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(loaded, &ctxParams, &ctx), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("dalle_context_params.struct_size is 1000"), lastError())
        ctxParams = DalleCAPI.dalle_context_default_params()
        ctxParams.n_threads = -3
        XCTAssertEqual(dalle_context_create(loaded, &ctxParams, &ctx), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(dalle_context_create(nil, nil, &ctx), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("model is NULL"))

        var smallInfo = dalle_model_info()
        smallInfo.struct_size = 4
        XCTAssertEqual(dalle_model_get_info(loaded, &smallInfo), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(dalle_model_get_info(loaded, nil), dalle_status(DALLE_INVALID_ARGUMENT))

        let context = try makeContext(loaded)
        defer { dalle_context_free(context) }
        var out = dalle_tokens()
        XCTAssertEqual(dalle_encode(nil, nil, 0, &out), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("ctx is NULL"))
        XCTAssertEqual(dalle_encode(context, nil, 1, &out), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(String(cString: dalle_context_last_error(context)).contains("images is NULL"))
        XCTAssertEqual(dalle_encode(context, nil, 0, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(dalle_encode(context, nil, UInt32(DALLE_MAX_BATCH) + 1, &out), dalle_status(DALLE_INVALID_ARGUMENT))
        var images = dalle_image_batch()
        XCTAssertEqual(dalle_decode(context, nil, &images), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(dalle_decode(context, nil, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        var request = dalle_tokens(count: 1, rows: 4, cols: 4, data: nil)
        XCTAssertEqual(dalle_decode(context, &request, &images), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(String(cString: dalle_context_last_error(context)).contains("tokens->data is NULL"))
        // Every free accepts NULL and empty structs.
        dalle_model_free(nil); dalle_context_free(nil); dalle_tokens_free(nil); dalle_image_batch_free(nil)
        dalle_tokens_free(&out); dalle_image_batch_free(&images)
        XCTAssertEqual(String(cString: dalle_context_last_error(nil)), "dalle_context_last_error: ctx is NULL or not a live dalle_context")
    }

    func testWrongImageShapesAreRejected() throws {
        let model = try loadModel()
        defer { dalle_model_free(model) }
        let ctx = try makeContext(model)
        defer { dalle_context_free(ctx) }
        func message() -> String { String(cString: dalle_context_last_error(ctx)) }
        XCTAssertEqual(encode(ctx, [syntheticImage(size: 16)], size: 16).0, dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(message().contains("images[0] is 16x16; this model takes 32x32"), message())
        XCTAssertEqual(encode(ctx, [syntheticImage(size: 32), [UInt8](repeating: 0, count: 32 * 32 * 2)], size: 32, channels: 2).0,
                       dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(message().contains("images[0].channels is 2"), message())
        var image = dalle_image(width: 32, height: 32, channels: 3, data: nil)
        var out = dalle_tokens()
        XCTAssertEqual(dalle_encode(ctx, &image, 1, &out), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(message().contains("images[0].data is NULL"), message())
        image = dalle_image(width: 0xFFFF_FFFF, height: 0xFFFF_FFFF, channels: 4, data: nil)
        XCTAssertEqual(dalle_encode(ctx, &image, 1, &out), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertNil(out.data)
    }

    func testOutOfRangeTokensAndWrongGridsAreRejected() throws {
        let model = try loadModel()
        defer { dalle_model_free(model) }
        let ctx = try makeContext(model)
        defer { dalle_context_free(ctx) }
        func message() -> String { String(cString: dalle_context_last_error(ctx)) }
        var tokens = [Int32](repeating: 3, count: 32)
        tokens[21] = 128
        XCTAssertEqual(decode(ctx, tokens, count: 2, grid: 4).0, dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(message().contains("token 5 of grid 1 is 128; ids must be in 0..<128"), message())
        tokens[21] = -1
        XCTAssertEqual(decode(ctx, tokens, count: 2, grid: 4).0, dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(decode(ctx, tokens, count: 2, grid: 5).0, dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(message().contains("token grids are 5x5; this model's grid is 4x4"), message())
        XCTAssertEqual(decode(ctx, tokens, count: Int(DALLE_MAX_BATCH) + 1, grid: 4).0, dalle_status(DALLE_INVALID_ARGUMENT))
        // The context recovers: the next valid call succeeds and clears the message.
        XCTAssertEqual(decode(ctx, [Int32](repeating: 7, count: 16), count: 1, grid: 4).0, dalle_status(DALLE_OK))
        XCTAssertEqual(message(), "")
    }

    // MARK: handles

    /// A freed handle stays invalid after many new models and contexts are made (their
    /// memory may reuse the freed one's addresses): every call, dalle_cancel included, rejects it.
    func testFreedHandlesAreNeverReused() throws {
        let model = try loadModel()
        let ctx = try makeContext(model)
        dalle_context_free(ctx)
        dalle_model_free(model)
        var made: [OpaquePointer] = []
        for _ in 0..<20 {
            let fresh = try loadModel()
            made.append(fresh)
            made.append(try makeContext(fresh))
        }
        defer {
            for (i, handle) in made.enumerated() { if i % 2 == 1 { dalle_context_free(handle) } }
            for (i, handle) in made.enumerated() { if i % 2 == 0 { dalle_model_free(handle) } }
        }
        XCTAssertFalse(made.contains(model) || made.contains(ctx))
        var info = dalle_model_info()
        info.struct_size = UInt32(MemoryLayout<dalle_model_info>.size)
        XCTAssertEqual(dalle_model_get_info(model, &info), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("is not a live dalle_model"), lastError())
        dalle_cancel(ctx)
        XCTAssertTrue(lastError().contains("is not a live dalle_context"), lastError())
        XCTAssertEqual(dalle_context_seed(made[1]), dalle_context_seed(made[1]), "the new contexts are untouched")
        // A handle of one kind passed as another is named.
        XCTAssertEqual(dalle_model_get_info(made[1], &info), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("is a dalle_context, not a dalle_model"), lastError())
    }

    func testOutOfRangeLogLevelsAreRejected() {
        DalleCAPI.dalle_log_set_level(-5)
        XCTAssertTrue(lastError().contains("min_level is -5"), lastError())
        DalleCAPI.dalle_log_set_level(7)
        XCTAssertTrue(lastError().contains("min_level is 7"), lastError())
        DalleCAPI.dalle_log_set_level(dalle_log_level(DALLE_LOG_NONE))
    }

    func testUseAfterFreeAndDoubleFreeAreRejected() throws {
        let model = try loadModel()
        let ctx = try makeContext(model)
        dalle_model_free(model)
        // The context keeps the model's weights alive.
        XCTAssertEqual(encode(ctx, [syntheticImage(size: 32)], size: 32).0, dalle_status(DALLE_OK))

        dalle_model_free(model)  // double free: rejected, not a crash
        XCTAssertTrue(lastError().contains("is not a live dalle_model"), lastError())
        var info = dalle_model_info()
        info.struct_size = UInt32(MemoryLayout<dalle_model_info>.size)
        XCTAssertEqual(dalle_model_get_info(model, &info), dalle_status(DALLE_INVALID_ARGUMENT))
        var other: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(model, nil, &other), dalle_status(DALLE_INVALID_ARGUMENT))
        // A handle of the wrong kind.
        XCTAssertEqual(dalle_model_get_info(ctx, &info), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("is a dalle_context, not a dalle_model"), lastError())
        // A pointer that never came from the library.
        XCTAssertEqual(dalle_model_get_info(OpaquePointer(bitPattern: 0x1234), &info), dalle_status(DALLE_INVALID_ARGUMENT))

        dalle_context_free(ctx)
        var out = dalle_tokens()
        var image = syntheticImage(size: 32)
        let status = image.withUnsafeMutableBufferPointer { p -> dalle_status in
            var view = dalle_image(width: 32, height: 32, channels: 3, data: p.baseAddress)
            return dalle_encode(ctx, &view, 1, &out)
        }
        XCTAssertEqual(status, dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(lastError().contains("is not a live dalle_context"), lastError())
        dalle_context_free(ctx)
        XCTAssertEqual(dalle_context_seed(ctx), 0)
        dalle_cancel(ctx)
    }

    func testOutputsAreFreedOnceAndForeignPointersRejected() throws {
        let model = try loadModel()
        defer { dalle_model_free(model) }
        let ctx = try makeContext(model)
        defer { dalle_context_free(ctx) }
        var image = syntheticImage(size: 32)
        var out = dalle_tokens()
        XCTAssertEqual(image.withUnsafeMutableBufferPointer { p -> dalle_status in
            var view = dalle_image(width: 32, height: 32, channels: 3, data: p.baseAddress)
            return dalle_encode(ctx, &view, 1, &out)
        }, dalle_status(DALLE_OK))
        var copy = out
        dalle_tokens_free(&out)
        XCTAssertNil(out.data)
        XCTAssertEqual(out.count, 0)
        dalle_tokens_free(&copy)  // the same buffer again: rejected
        XCTAssertTrue(lastError().contains("not a live dalle_tokens data"), lastError())
        var foreign = [Int32](repeating: 0, count: 16)
        foreign.withUnsafeMutableBufferPointer { p in
            var tokens = dalle_tokens(count: 1, rows: 4, cols: 4, data: p.baseAddress)
            dalle_tokens_free(&tokens)
            XCTAssertNotNil(tokens.data)  // left alone
        }
    }

    // MARK: progress, cancellation, threads

    final class ProgressLog {
        var calls: [(Int32, Int32, Int32)] = []
        var stopAt: Int32 = -1
        var cancelContext: OpaquePointer? = nil
    }

    static let progressCallback: dalle_progress_callback = { phase, step, total, userData in
        let log = Unmanaged<ProgressLog>.fromOpaque(userData!).takeUnretainedValue()
        log.calls.append((phase, step, total))
        if step == log.stopAt {
            if let ctx = log.cancelContext { dalle_cancel(ctx); return true }
            return false
        }
        return true
    }

    func testProgressAndCancellation() throws {
        let log = ProgressLog()
        var modelParams = DalleCAPI.dalle_model_default_params()
        modelParams.progress = Self.progressCallback
        modelParams.progress_user_data = Unmanaged.passUnretained(log).toOpaque()
        var model: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file(Self.modelPath, &modelParams, &model), dalle_status(DALLE_OK))
        XCTAssertEqual(log.calls.map { $0.1 }, [0, 1, 2])
        XCTAssertTrue(log.calls.allSatisfy { $0.0 == Int32(DALLE_PHASE_LOAD) && $0.2 == 2 })
        dalle_model_free(model)

        log.calls = []
        log.stopAt = 0
        XCTAssertEqual(dalle_model_load_file(Self.modelPath, &modelParams, &model), dalle_status(DALLE_CANCELLED))
        XCTAssertNil(model)

        let loaded = try loadModel()
        defer { dalle_model_free(loaded) }
        var params = DalleCAPI.dalle_context_default_params()
        params.progress = Self.progressCallback
        params.progress_user_data = Unmanaged.passUnretained(log).toOpaque()
        var created: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(loaded, &params, &created), dalle_status(DALLE_OK))
        let ctx = try XCTUnwrap(created)
        defer { dalle_context_free(ctx) }
        let images = (0..<3).map { syntheticImage(size: 32, k: $0) }

        log.calls = []
        log.stopAt = -1
        let (ok, tokens) = encode(ctx, images, size: 32)
        XCTAssertEqual(ok, dalle_status(DALLE_OK))
        XCTAssertEqual(log.calls.map { $0.1 }, [0, 1, 2, 3])
        XCTAssertTrue(log.calls.allSatisfy { $0.0 == Int32(DALLE_PHASE_ENCODE) && $0.2 == 3 })

        log.stopAt = 2
        let (cancelled, partial) = encode(ctx, images, size: 32)
        XCTAssertEqual(cancelled, dalle_status(DALLE_CANCELLED))
        XCTAssertEqual(partial, [])
        XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("cancelled"))

        // dalle_cancel from inside the callback stops at the next step.
        log.calls = []
        log.cancelContext = ctx
        log.stopAt = 1
        XCTAssertEqual(decode(ctx, tokens, count: 3, grid: 4).0, dalle_status(DALLE_CANCELLED))
        XCTAssertEqual(log.calls.map { $0.1 }, [0, 1])
        XCTAssertEqual(log.calls.last?.0, Int32(DALLE_PHASE_DECODE))

        // A request made before a call does not stop it.
        log.cancelContext = nil
        log.stopAt = -1
        dalle_cancel(ctx)
        XCTAssertEqual(decode(ctx, tokens, count: 3, grid: 4).0, dalle_status(DALLE_OK))
    }

    func testResultsDoNotDependOnThreadCount() throws {
        let model = try loadModel()
        defer { dalle_model_free(model) }
        let images = (0..<2).map { syntheticImage(size: 32, k: $0 + 3) }
        var results: [([Int32], [UInt8])] = []
        for threads in [1, 2, 3, 0] {
            let ctx = try makeContext(model, threads: Int32(threads))
            defer { dalle_context_free(ctx) }
            if threads > 0 { XCTAssertEqual(dalle_context_threads(ctx), Int32(threads)) }
            let (_, tokens) = encode(ctx, images, size: 32)
            let (_, pixels) = decode(ctx, tokens, count: 2, grid: 4)
            results.append((tokens, pixels))
        }
        for r in results.dropFirst() {
            XCTAssertEqual(r.0, results[0].0)
            XCTAssertEqual(r.1, results[0].1)
        }
    }

    func testSeedIsReportedBack() throws {
        let model = try loadModel()
        defer { dalle_model_free(model) }
        var params = DalleCAPI.dalle_context_default_params()
        params.seed = 42
        var ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(model, &params, &ctx), dalle_status(DALLE_OK))
        XCTAssertEqual(dalle_context_seed(ctx), 42)
        dalle_context_free(ctx)
        params.seed = DALLE_SEED_RANDOM
        XCTAssertEqual(dalle_context_create(model, &params, &ctx), dalle_status(DALLE_OK))
        XCTAssertNotEqual(dalle_context_seed(ctx), DALLE_SEED_RANDOM)
        dalle_context_free(ctx)
    }

    /// A progress callback that calls back into its own context gets an error, not a deadlock or a race.
    func testReentrantCallOnABusyContextIsRejected() throws {
        final class Probe { var ctx: OpaquePointer? = nil; var status: dalle_status = -1; var message = "" }
        let probe = Probe()
        let model = try loadModel()
        defer { dalle_model_free(model) }
        var params = DalleCAPI.dalle_context_default_params()
        params.progress = { _, step, _, userData in
            let probe = Unmanaged<Probe>.fromOpaque(userData!).takeUnretainedValue()
            if step == 1 {
                var out = dalle_tokens()
                probe.status = dalle_encode(probe.ctx, nil, 0, &out)
                probe.message = String(cString: dalle_last_error())
            }
            return true
        }
        params.progress_user_data = Unmanaged.passUnretained(probe).toOpaque()
        var ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(model, &params, &ctx), dalle_status(DALLE_OK))
        defer { dalle_context_free(ctx) }
        probe.ctx = ctx
        XCTAssertEqual(encode(try XCTUnwrap(ctx), [syntheticImage(size: 32)], size: 32).0, dalle_status(DALLE_OK))
        XCTAssertEqual(probe.status, dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(probe.message.contains("in use by another thread"), probe.message)
        XCTAssertEqual(String(cString: dalle_context_last_error(ctx)), "")
    }

    /// Contexts on one shared model run in parallel threads and agree with a serial run.
    func testContextsShareOneModelAcrossThreads() throws {
        let model = try loadModel()
        defer { dalle_model_free(model) }
        let images = (0..<4).map { [syntheticImage(size: 32, k: $0)] }
        let serialContext = try makeContext(model, threads: 1)
        let expected = images.map { encode(serialContext, $0, size: 32).1 }
        dalle_context_free(serialContext)
        let lock = NSLock()
        var results = [[Int32]](repeating: [], count: images.count)
        DispatchQueue.concurrentPerform(iterations: images.count) { i in
            var ctx: OpaquePointer? = nil
            var params = DalleCAPI.dalle_context_default_params()
            params.n_threads = 1
            guard dalle_context_create(model, &params, &ctx) == dalle_status(DALLE_OK), let ctx else { return }
            let tokens = encode(ctx, images[i], size: 32).1
            dalle_context_free(ctx)
            lock.lock(); results[i] = tokens; lock.unlock()
        }
        XCTAssertEqual(results, expected)
    }

    // MARK: logging

    final class LogSink { var lines: [(Int32, String)] = [] }

    func testLogCallbackReceivesMessagesAtOrAboveTheLevel() {
        let sink = LogSink()
        dalle_log_set({ level, message, userData in
            Unmanaged<LogSink>.fromOpaque(userData!).takeUnretainedValue().lines.append((level, String(cString: message!)))
        }, Unmanaged.passUnretained(sink).toOpaque())
        defer { dalle_log_set(nil, nil); DalleCAPI.dalle_log_set_level(dalle_log_level(DALLE_LOG_NONE)) }
        DalleCAPI.dalle_log_set_level(dalle_log_level(DALLE_LOG_DEBUG))
        var model: OpaquePointer? = nil
        _ = dalle_model_load_file(nil, nil, &model)
        XCTAssertEqual(sink.lines.last?.0, Int32(DALLE_LOG_DEBUG))
        XCTAssertEqual(sink.lines.last?.1, "dalle_model_load_file: invalid argument: path is NULL")
        DalleCAPI.dalle_log_set_level(dalle_log_level(DALLE_LOG_ERROR))
        sink.lines = []
        _ = dalle_model_load_file(nil, nil, &model)
        dalle_model_free(OpaquePointer(bitPattern: 0x10))
        XCTAssertEqual(sink.lines.count, 1)
        XCTAssertEqual(sink.lines.first?.0, Int32(DALLE_LOG_ERROR))
    }
}
