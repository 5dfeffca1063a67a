import CDalle
@testable import DalleCAPI
@testable import DalleCore
import XCTest

/// generate keeping the best candidates by CLIP score (`keepBest`, `keep_best`, `--rerank`),
/// and encode/decode through DALLE-pytorch's DiscreteVAE.
final class RerankGenerateTests: XCTestCase {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden").path
    static let transformerBundle = golden + "/transformer/defaults.safetensors"

    /// A bundle with all four components: the golden generate bundle (transformer, DiscreteVAE,
    /// tokenizer) plus a seeded tiny CLIP over the same vocabulary (written once per run).
    static let bundlePath: String = {
        let path = "/tmp/libdalle-rerank-generate-test-\(getpid()).safetensors"
        do {
            let source = try SafetensorsFile(path: golden + "/generate/model.safetensors")
            var writer = SafetensorsWriter()
            writer.metadata = source.metadata
            writer.metadata["components"] = "clip,dvae,tokenizer,transformer"
            for name in source.names {
                guard let info = source.info(name) else { continue }
                try writer.add(name, bytes: try source.bytes(name), dtype: info.dtype, shape: info.shape)
            }
            var clipMetadata = try SafetensorsFile(path: CLIPTests.golden + "/clip_tiny.safetensors").metadata
                .filter { $0.key.hasPrefix("clip.") }
            clipMetadata["clip.vocab_size"] = source.metadata["tokenizer.vocab_size"]
            let config = try CLIPConfig(metadata: clipMetadata)
            for (key, value) in config.metadata { writer.metadata[key] = value }
            let weights = CLIPSeededWeights(config: config, seed: 5)
            for (name, shape) in CLIPSeededWeights.parameterShapes(config) {
                try writer.add(name, try weights.tensor(name, shape: shape))
            }
            try writer.write(to: path)
        } catch {
            XCTFail("cannot write the test bundle: \(error)")
        }
        return path
    }()

    static let prompt = "a red ball"

    func session() throws -> DalleSession {
        let model = try DalleModel(path: Self.bundlePath)
        XCTAssertEqual(model.components, [.clip, .dvae, .tokenizer, .transformer])
        return try DalleSession(model: model, threads: 2)
    }

    func testKeepBestReturnsTheTopCandidatesByRerankScoreBestFirst() throws {
        let session = try session()
        let options = GenerationOptions(count: 5, seed: 7, sampling: SamplingOptions(temperature: 1.5))
        let all = try session.generate(prompt: Self.prompt, options: options)
        XCTAssertEqual(all.count, 5)
        XCTAssertEqual(all.scores, [])
        let size = all.imageSize, imageBytes = size * size * 3, imageLength = all.gridSize * all.gridSize
        let ranked = try all.pixels.withUnsafeBufferPointer { pixels in
            try session.rerank(prompt: Self.prompt, images: (0..<all.count).map {
                ImageView(width: size, height: size, channels: 3,
                          pixels: UnsafeBufferPointer(rebasing: pixels[($0 * imageBytes)..<(($0 + 1) * imageBytes)]))
            })
        }
        // Distinct candidates, so the ranking is a real one.
        XCTAssertEqual(Set((0..<all.count).map { Array(all.tokens[($0 * imageLength)..<(($0 + 1) * imageLength)]) }).count, all.count)
        XCTAssertNotEqual(ranked.order, Array(0..<all.count), "the test wants a ranking that is not the draw order")

        for keep in [1, 3, 5] {
            var best = options
            best.keepBest = keep
            let kept = try session.generate(prompt: Self.prompt, options: best)
            let top = Array(ranked.order.prefix(keep))
            XCTAssertEqual(kept.count, keep)
            XCTAssertEqual(kept.scores, top.map { ranked.scores[$0] })
            XCTAssertEqual(kept.tokens, top.flatMap { all.tokens[($0 * imageLength)..<(($0 + 1) * imageLength)] })
            XCTAssertEqual(kept.pixels, top.flatMap { all.pixels[($0 * imageBytes)..<(($0 + 1) * imageBytes)] })
            XCTAssertEqual(kept.scores, kept.scores.sorted(by: >))
            XCTAssertEqual(kept.seed, all.seed)
            XCTAssertEqual(kept.generatedTokenCount, all.generatedTokenCount)
        }
    }

    /// likelihoodWeight w ranks by CLIP score + w x mean log-likelihood; scores stay CLIP's.
    func testLikelihoodWeightRanksByCLIPScorePlusWeightedLogLikelihood() throws {
        let session = try session()
        let options = GenerationOptions(count: 5, seed: 7, sampling: SamplingOptions(temperature: 1.5), keepBest: 5)
        let byCLIP = try session.generate(prompt: Self.prompt, options: options)
        let imageLength = byCLIP.gridSize * byCLIP.gridSize
        func grids(_ result: GeneratedImages) -> [[Int32]] {
            (0..<result.count).map { Array(result.tokens[($0 * imageLength)..<(($0 + 1) * imageLength)]) }
        }
        XCTAssertEqual(byCLIP.scores, byCLIP.scores.sorted(by: >))
        XCTAssertNotEqual(byCLIP.logLikelihoods, byCLIP.logLikelihoods.sorted(by: >), "the test wants CLIP's order to differ from the likelihood's")
        for weight: Float in [0.5, 10_000] {
            var weighted = options
            weighted.likelihoodWeight = weight
            let result = try session.generate(prompt: Self.prompt, options: weighted)
            let order = DalleSession.bestFirst((0..<5).map { byCLIP.scores[$0] + weight * byCLIP.logLikelihoods[$0] })
            XCTAssertEqual(grids(result), order.map { grids(byCLIP)[$0] }, "weight \(weight)")
            XCTAssertEqual(result.scores, order.map { byCLIP.scores[$0] })
            XCTAssertEqual(result.logLikelihoods, order.map { byCLIP.logLikelihoods[$0] })
        }
        var likelihoodFirst = options
        likelihoodFirst.likelihoodWeight = 10_000
        XCTAssertEqual(try session.generate(prompt: Self.prompt, options: likelihoodFirst).logLikelihoods, byCLIP.logLikelihoods.sorted(by: >))
        for bad: Float in [-1, .nan, .infinity] {
            var invalid = options
            invalid.likelihoodWeight = bad
            XCTAssertThrowsError(try session.generate(prompt: Self.prompt, options: invalid)) {
                XCTAssertTrue("\($0)".contains("likelihood_weight is \(bad)"), "\($0)")
            }
        }
    }

    func testKeepBestErrors() throws {
        let session = try session()
        func assertError(_ options: GenerationOptions, prompt: String = RerankGenerateTests.prompt, decode: Bool = true,
                         on session: DalleSession, _ expected: String, line: UInt = #line) {
            XCTAssertThrowsError(try session.generate(prompt: prompt, options: options, decodeImages: decode), line: line) {
                XCTAssertTrue("\($0)".contains(expected), "\($0)", line: line)
            }
        }
        assertError(GenerationOptions(count: 2, keepBest: 3), on: session, "keep_best is 3; it must be in 0 ... count (2)")
        assertError(GenerationOptions(count: 2, keepBest: -1), on: session, "keep_best is -1")
        assertError(GenerationOptions(count: 2, keepBest: 1), decode: false, on: session, "keep_best needs the images decoded")
        assertError(GenerationOptions(count: 2, keepBest: 1), prompt: "", on: session, "the prompt is empty")

        let noCLIP = try DalleSession(model: try DalleModel(path: Self.golden + "/generate/model.safetensors"))
        XCTAssertThrowsError(try noCLIP.generate(prompt: Self.prompt, options: GenerationOptions(count: 2, keepBest: 1))) {
            guard case DalleError.unsupported(let message) = $0 else { return XCTFail("\($0)") }
            XCTAssertTrue(message.contains("no clip component"), message)
        }
        // keepBest 0 on the same bundle is plain generation.
        XCTAssertEqual(try noCLIP.generate(prompt: Self.prompt, options: GenerationOptions(count: 2)).count, 2)
    }

    func testCAPIKeepBest() throws {
        let session = try session()
        let options = GenerationOptions(count: 4, seed: 11, keepBest: 2)
        let expected = try session.generate(prompt: Self.prompt, options: options)

        var model: OpaquePointer? = nil, ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file(Self.bundlePath, nil, &model), dalle_status(DALLE_OK))
        XCTAssertEqual(dalle_context_create(model, nil, &ctx), dalle_status(DALLE_OK))
        defer { dalle_context_free(ctx); dalle_model_free(model) }
        var params = DalleCAPI.dalle_generate_default_params()
        XCTAssertEqual(params.keep_best, 0)
        XCTAssertNil(params.out_scores)
        XCTAssertNil(params.out_log_likelihoods)
        params.count = 4
        params.seed = 11
        params.keep_best = 2
        var scores = [Float](repeating: .nan, count: 2), logLikelihoods = [Float](repeating: .nan, count: 2)
        var images = dalle_image_batch(), tokens = dalle_tokens()
        let status = scores.withUnsafeMutableBufferPointer { buffer in
            logLikelihoods.withUnsafeMutableBufferPointer { likelihoodBuffer in
                params.out_scores = buffer.baseAddress
                params.out_log_likelihoods = likelihoodBuffer.baseAddress
                return dalle_generate(ctx, Self.prompt, &params, &images, &tokens, nil)
            }
        }
        XCTAssertEqual(status, dalle_status(DALLE_OK), String(cString: dalle_context_last_error(ctx)))
        defer { dalle_image_batch_free(&images); dalle_tokens_free(&tokens) }
        XCTAssertEqual(scores, expected.scores)
        XCTAssertEqual(logLikelihoods, expected.logLikelihoods)
        // The kept images' log-likelihoods follow them out of the draw order.
        var all = options
        all.keepBest = 0
        let drawn = try session.generate(prompt: Self.prompt, options: all, decodeImages: false)
        let gridLength = expected.gridSize * expected.gridSize
        for k in 0..<2 {
            let index = try XCTUnwrap((0..<4).first { Array(drawn.tokens[($0 * gridLength)..<(($0 + 1) * gridLength)]) == Array(expected.tokens[(k * gridLength)..<((k + 1) * gridLength)]) })
            XCTAssertEqual(expected.logLikelihoods[k], drawn.logLikelihoods[index])
        }
        XCTAssertEqual(images.count, 2)
        XCTAssertEqual(tokens.count, 2)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: tokens.data, count: expected.tokens.count)), expected.tokens)
        let imageBytes = expected.imageSize * expected.imageSize * 3
        for n in 0..<2 {
            XCTAssertEqual(Array(UnsafeBufferPointer(start: images.images[n].data, count: imageBytes)),
                           Array(expected.pixels[(n * imageBytes)..<((n + 1) * imageBytes)]))
        }

        // A caller built before keep_best was appended passes the shorter struct: all images.
        var old = DalleCAPI.dalle_generate_default_params()
        old.struct_size = UInt32(MemoryLayout<dalle_generate_params>.offset(of: \.keep_best) ?? 0)
        old.count = 3
        old.keep_best = 1  // past struct_size: not read
        var oldTokens = dalle_tokens()
        XCTAssertEqual(dalle_generate(ctx, Self.prompt, &old, nil, &oldTokens, nil), dalle_status(DALLE_OK))
        XCTAssertEqual(oldTokens.count, 3)
        dalle_tokens_free(&oldTokens)

        // likelihood_weight reaches the ranking; a caller built before it was appended ranks by CLIP alone.
        var weighted = params
        weighted.out_scores = nil
        weighted.likelihood_weight = 10_000
        var weightedTokens = dalle_tokens()
        var strongLikelihood = options
        strongLikelihood.likelihoodWeight = 10_000
        let expectedWeighted = try session.generate(prompt: Self.prompt, options: strongLikelihood)
        var weightedImages = dalle_image_batch()
        XCTAssertEqual(dalle_generate(ctx, Self.prompt, &weighted, &weightedImages, &weightedTokens, nil), dalle_status(DALLE_OK))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: weightedTokens.data, count: expectedWeighted.tokens.count)), expectedWeighted.tokens)
        dalle_tokens_free(&weightedTokens)
        dalle_image_batch_free(&weightedImages)
        weighted.struct_size = UInt32(MemoryLayout<dalle_generate_params>.offset(of: \.likelihood_weight) ?? 0)
        XCTAssertEqual(dalle_generate(ctx, Self.prompt, &weighted, &weightedImages, &weightedTokens, nil), dalle_status(DALLE_OK))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: weightedTokens.data, count: expected.tokens.count)), expected.tokens)
        dalle_tokens_free(&weightedTokens)
        dalle_image_batch_free(&weightedImages)
        weighted.struct_size = UInt32(MemoryLayout<dalle_generate_params>.size)
        weighted.likelihood_weight = -2
        XCTAssertEqual(dalle_generate(ctx, Self.prompt, &weighted, &weightedImages, &weightedTokens, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("likelihood_weight is -2.0"))

        params.keep_best = 5
        params.out_scores = nil
        XCTAssertEqual(dalle_generate(ctx, Self.prompt, &params, &images, &tokens, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertNil(images.images)
        XCTAssertNil(tokens.data)
        params.keep_best = 1
        XCTAssertEqual(dalle_generate(ctx, Self.prompt, &params, nil, &tokens, nil), dalle_status(DALLE_INVALID_ARGUMENT))
    }

    /// encode/decode through a bundle whose image tokenizer is DALLE-pytorch's DiscreteVAE.
    func testEncodeDecodeWithDiscreteVAE() throws {
        let model = try DalleModel(path: Self.transformerBundle)
        let tokenizer = try model.requireImageTokenizer()
        XCTAssertFalse(tokenizer is DVAE)
        let session = try DalleSession(model: model, threads: 2)
        let size = tokenizer.imageSize, grid = tokenizer.gridSize
        XCTAssertEqual(size, 32)
        XCTAssertEqual(grid, 8)
        let pixels = (0..<(2 * size * size * 3)).map { (i: Int) -> UInt8 in UInt8(truncatingIfNeeded: i * 37 + i / 97) }
        let tokens = try pixels.withUnsafeBufferPointer { all in
            try session.encode((0..<2).map {
                ImageView(width: size, height: size, channels: 3,
                          pixels: UnsafeBufferPointer(rebasing: all[($0 * size * size * 3)..<(($0 + 1) * size * size * 3)]))
            })
        }
        XCTAssertEqual(tokens.count, 2 * grid * grid)
        XCTAssertTrue(tokens.allSatisfy { $0 >= 0 && Int($0) < tokenizer.vocabSize })
        let decoded = try tokens.withUnsafeBufferPointer { try session.decode(tokens: $0, count: 2) }
        XCTAssertEqual(decoded.count, 2 * size * size * 3)
        XCTAssertGreaterThan(Set(decoded).count, 1)
        // Decoding is a function of the tokens: the same grid decodes to the same image.
        let firstGrid = Array(tokens[0..<(grid * grid)])
        let twice = try (firstGrid + firstGrid).withUnsafeBufferPointer {
            try session.decode(tokens: $0, count: 2)
        }
        let imageBytes = size * size * 3
        let first = Array(decoded[0..<imageBytes])
        XCTAssertEqual(Array(twice[0..<imageBytes]), first)
        XCTAssertEqual(Array(twice[imageBytes...]), first)
        let badToken = [Int32](repeating: Int32(tokenizer.vocabSize), count: grid * grid)
        XCTAssertThrowsError(try badToken.withUnsafeBufferPointer { try session.decode(tokens: $0, count: 1) })
    }
}
