import XCTest
@testable import DalleCore

final class DVAETests: XCTestCase {
    /// A tiny configuration for fast tests that need no fixture: 16×16 images, 2×2 grid.
    static let tiny = DVAEConfig(imageSize: 16, groupCount: 4, hiddenChannels: 8, blocksPerGroup: 1,
                                 inputChannels: 3, outputChannels: 3, vocabSize: 20, initChannels: 8)

    /// Asserts that `body` throws `expected`'s case with a message containing `fragment`.
    func assertThrows<T>(_ body: @autoclosure () throws -> T, _ kind: (DalleError) -> String?, _ fragment: String,
                         file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? DalleError, let message = kind(e) else {
                return XCTFail("unexpected error \(error)", file: file, line: line)
            }
            XCTAssertTrue(message.contains(fragment), "'\(message)' lacks '\(fragment)'", file: file, line: line)
        }
    }
    static func badFile(_ e: DalleError) -> String? { if case .badFile(let m) = e { return m } else { return nil } }
    static func invalid(_ e: DalleError) -> String? { if case .invalidArgument(let m) = e { return m } else { return nil } }
    static func unsupported(_ e: DalleError) -> String? { if case .unsupported(let m) = e { return m } else { return nil } }

    // MARK: Configuration

    func testConfigMetadataRoundTrip() throws {
        let config = try DVAEConfig(metadata: DVAEConfig.openAI.metadata)
        XCTAssertEqual(config, .openAI)
        XCTAssertEqual(config.tokenGridSize, 32)
        XCTAssertEqual(DVAEConfig.openAI.metadata["dvae.n_hid"], "256")
        XCTAssertEqual(try DVAEConfig(metadata: Self.tiny.metadata).tokenGridSize, 2)
    }

    func testBadConfigMetadata() {
        func with(_ key: String, _ value: String?) -> [String: String] {
            var m = DVAEConfig.openAI.metadata
            m[key] = value
            return m
        }
        assertThrows(try DVAEConfig(metadata: with("dvae.n_init", nil)), Self.badFile, "lacks 'dvae.n_init'")
        assertThrows(try DVAEConfig(metadata: with("dvae.kind", nil)), Self.badFile, "dvae.kind")
        assertThrows(try DVAEConfig(metadata: with("dvae.kind", "vqgan")), Self.unsupported, "vqgan")
        assertThrows(try DVAEConfig(metadata: with("dvae.n_hid", "2x")), Self.badFile, "not an integer")
        assertThrows(try DVAEConfig(metadata: with("dvae.n_hid", "0")), Self.badFile, "n_hid")
        assertThrows(try DVAEConfig(metadata: with("dvae.n_hid", "66")), Self.badFile, "multiple of 4")
        assertThrows(try DVAEConfig(metadata: with("dvae.vocab_size", "-3")), Self.badFile, "vocab_size")
        assertThrows(try DVAEConfig(metadata: with("dvae.group_count", "99")), Self.badFile, "group_count")
        assertThrows(try DVAEConfig(metadata: with("dvae.image_size", "100")), Self.badFile, "not divisible")
        assertThrows(try DVAEConfig(metadata: with("dvae.image_size", "99999999999999999999")), Self.badFile, "image_size")
    }

    // MARK: Strict loading

    func testRandomWeightsFollowReferenceInit() throws {
        let weights = DVAE.randomWeights(config: Self.tiny, seed: 7)
        // Encoder: input, 4 blocks of 4 convs, 3 id paths (widths 8→16→32→64), output: 21 convs.
        // Decoder: the same plus an id path from n_init 8 to 64: 22 convs. Each has w and b.
        XCTAssertEqual(weights.names.count, 2 * (21 + 22))
        XCTAssertEqual(weights.tensors, DVAE.randomWeights(config: Self.tiny, seed: 7).tensors)
        XCTAssertNotEqual(weights.tensors, DVAE.randomWeights(config: Self.tiny, seed: 8).tensors)
        let w = try weights.tensor("dvae.encoder.blocks.group_4.block_1.res_path.conv_2.w", shape: [16, 16, 3, 3])
        let variance = w.scalars.reduce(0) { $0 + Double($1 * $1) } / Double(w.count)
        XCTAssertEqual(variance, 1.0 / 144, accuracy: 0.3 / 144)
        let b = try weights.tensor("dvae.decoder.blocks.output.conv.b", shape: [6])
        XCTAssertEqual(b.scalars, [Float](repeating: 0, count: 6))
        XCTAssertTrue(DVAE.randomWeights(config: DVAEConfig(imageSize: 15, groupCount: 4, hiddenChannels: 8,
            blocksPerGroup: 1, inputChannels: 3, outputChannels: 3, vocabSize: 20, initChannels: 8), seed: 1).names.isEmpty)
    }

    func testStrictLoading() throws {
        let weights = DVAE.randomWeights(config: Self.tiny, seed: 1)
        XCTAssertNoThrow(try DVAE(config: Self.tiny, weights: weights))

        var missing = weights
        missing.tensors["dvae.decoder.blocks.group_2.block_1.id_path.b"] = nil
        assertThrows(try DVAE(config: Self.tiny, weights: missing), Self.badFile, "group_2.block_1.id_path.b")

        var wrongShape = weights
        wrongShape.tensors["dvae.encoder.blocks.input.w"] = Tensor(zeros: [8, 3, 5, 5])
        assertThrows(try DVAE(config: Self.tiny, weights: wrongShape), Self.badFile, "dvae.encoder.blocks.input.w")

        var extra = weights
        extra.tensors["dvae.encoder.blocks.group_1.block_2.res_path.conv_1.w"] = Tensor(zeros: [2, 8, 3, 3])
        assertThrows(try DVAE(config: Self.tiny, weights: extra), Self.badFile, "group_1.block_2")

        // Tensors of other components are not the dVAE's business.
        var bundle = weights
        bundle.tensors["transformer.wte"] = Tensor(zeros: [4])
        XCTAssertNoThrow(try DVAE(config: Self.tiny, weights: bundle))

        // Weights made for another configuration.
        var other = Self.tiny
        other.blocksPerGroup = 2
        assertThrows(try DVAE(config: Self.tiny, weights: DVAE.randomWeights(config: other, seed: 1)),
                     Self.badFile, "block_2")
        other = Self.tiny
        other.vocabSize = 21
        assertThrows(try DVAE(config: other, weights: weights), Self.badFile, "shape")
        other.imageSize = 12
        assertThrows(try DVAE(config: other, weights: weights), Self.badFile, "image_size")
    }

    // MARK: Inputs

    func testBadInputsAreErrors() throws {
        let model = try DVAE(config: Self.tiny, weights: DVAE.randomWeights(config: Self.tiny, seed: 2))
        let pool = ThreadPool(threads: 1)
        let grid = [Int32](repeating: 3, count: 4)
        assertThrows(try model.decoderStats(tokens: grid + [20, 0, 0, 0], count: 2, pool: pool), Self.invalid, "token 20")
        assertThrows(try model.decode(tokens: [0, -1, 0, 0], count: 1, pool: pool), Self.invalid, "token -1")
        assertThrows(try model.decode(tokens: grid, count: 2, pool: pool), Self.invalid, "2 grid(s) of 2×2")
        assertThrows(try model.decode(tokens: [], count: 0, pool: pool), Self.invalid, "grid(s)")
        assertThrows(try model.decode(tokens: grid, count: Int.max, pool: pool), Self.invalid, "grid(s)")
        assertThrows(try model.encode(Tensor(zeros: [1, 3, 8, 8]), pool: pool), Self.invalid, "[N, 3, 16, 16]")
        assertThrows(try model.encode(Tensor(zeros: [0, 3, 16, 16]), pool: pool), Self.invalid, "[N, 3, 16, 16]")
        assertThrows(try model.encoderLogits(Tensor(zeros: [3, 16, 16]), pool: pool), Self.invalid, "[N, 3, 16, 16]")
    }

    func testResultsDoNotDependOnThreadCount() throws {
        let model = try DVAE(config: Self.tiny, weights: DVAE.randomWeights(config: Self.tiny, seed: 3))
        var rng = SplitMix64(seed: 9)
        let pixels = try Tensor(shape: [2, 3, 16, 16], scalars: (0..<(2 * 3 * 256)).map { _ in Float(rng.nextUnit()) })
        let tokens = (0..<8).map { _ in Int32(rng.next() % 20) }
        var results: [([Float], [Int32], [Float])] = []
        for threads in [1, 3] {
            let pool = ThreadPool(threads: threads)
            results.append((try model.encoderLogits(pixels, pool: pool).scalars, try model.encode(pixels, pool: pool),
                            try model.decode(tokens: tokens, count: 2, pool: pool).scalars))
        }
        XCTAssertEqual(results[0].0, results[1].0)
        XCTAssertEqual(results[0].1, results[1].1)
        XCTAssertEqual(results[0].2, results[1].2)
        XCTAssertEqual(results[0].1.count, 8)
        XCTAssertTrue(results[0].2.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    // MARK: Golden vectors from OpenAI's dall_e (tools/make_golden_dvae.py)

    static let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Golden/dvae").path

    /// The converted reference model and its recorded inputs and outputs.
    func golden() throws -> (model: DVAE, io: SafetensorsFile) {
        let file = try SafetensorsFile(path: Self.goldenDirectory + "/model.safetensors")
        XCTAssertEqual(file.metadata["format"], "libdalle")
        XCTAssertEqual(file.metadata["components"], "dvae")
        let config = try DVAEConfig(metadata: file.metadata)
        XCTAssertEqual(config, DVAEConfig(imageSize: 32, groupCount: 4, hiddenChannels: 16, blocksPerGroup: 2,
                                          inputChannels: 3, outputChannels: 3, vocabSize: 128, initChannels: 16))
        return (try DVAE(config: config, weights: file),
                try SafetensorsFile(path: Self.goldenDirectory + "/io.safetensors"))
    }

    /// |actual - expected| <= atol + rtol·|expected| everywhere.
    func assertClose(_ actual: Tensor, _ expected: Tensor, atol: Float = 1e-4, rtol: Float = 1e-4,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.shape, expected.shape, file: file, line: line)
        var worst: Float = 0, failures = 0
        for (a, e) in zip(actual.scalars, expected.scalars) {
            let d = abs(a - e)
            worst = max(worst, d)
            if !(d <= atol + rtol * abs(e)) { failures += 1 }
        }
        XCTAssertEqual(failures, 0, "\(failures) values out of tolerance; largest difference \(worst)", file: file, line: line)
    }

    func testEncoderMatchesReference() throws {
        let (model, io) = try golden()
        let images = try io.tensor("images")
        for threads in [1, 3] {
            let pool = ThreadPool(threads: threads)
            assertClose(try model.encoderLogits(images, pool: pool), try io.tensor("encoder_logits"))
            XCTAssertEqual(try model.encode(images, pool: pool), try io.tensor("tokens").scalars.map { Int32($0) })
        }
    }

    func testDecoderMatchesReference() throws {
        let (model, io) = try golden()
        let tokens = try io.tensor("decoder_tokens").scalars.map { Int32($0) }
        XCTAssertTrue(tokens.contains(0) && tokens.contains(127))
        for threads in [1, 3] {
            let pool = ThreadPool(threads: threads)
            assertClose(try model.decoderStats(tokens: tokens, count: 2, pool: pool), try io.tensor("decoder_stats"))
            assertClose(try model.decode(tokens: tokens, count: 2, pool: pool), try io.tensor("decoder_pixels"))
        }
    }

    func testGoldenBundleWithWrongConfigFails() throws {
        let file = try SafetensorsFile(path: Self.goldenDirectory + "/model.safetensors")
        var config = try DVAEConfig(metadata: file.metadata)
        config.blocksPerGroup = 1
        assertThrows(try DVAE(config: config, weights: file), Self.badFile, "unexpected tensor 'dvae.")
        config.blocksPerGroup = 3
        assertThrows(try DVAE(config: config, weights: file), Self.badFile, "block_3")
    }
}
