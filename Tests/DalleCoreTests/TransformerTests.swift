import XCTest
@testable import DalleCore

/// DALLE-pytorch's transformer (and DiscreteVAE) against golden files from
/// tools/make_golden_transformer.py: "defaults" (rotary, shift_tokens, full / axial_row /
/// axial_col / conv_like), "learned_pos" (learned text + axial positions, no shift,
/// axial_row / axial_col / axial_row / conv_like) and "options" (sandwich_norm, stable,
/// shared attention and feed-forward weights).
final class TransformerTests: XCTestCase {
    static let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Golden/transformer").path
    static let goldenNames = ["defaults", "learned_pos", "options"]

    struct Golden {
        let bundle: SafetensorsFile
        let config: TransformerConfig
        let model: DalleTransformer
        let ref: SafetensorsFile
        func ints(_ name: String) throws -> [Int32] { try ref.tensor(name).scalars.map { Int32($0) } }
    }

    func golden(_ name: String) throws -> Golden {
        let bundle = try SafetensorsFile(path: Self.goldenDirectory + "/\(name).safetensors")
        let config = try TransformerConfig(metadata: bundle.metadata)
        return Golden(bundle: bundle, config: config, model: try DalleTransformer(config: config, weights: bundle),
                      ref: try SafetensorsFile(path: Self.goldenDirectory + "/\(name).ref.safetensors"))
    }

    /// |actual - expected| <= atol + rtol·|expected| everywhere.
    func assertClose(_ actual: Tensor, _ expected: Tensor, atol: Float = 1e-4, rtol: Float = 1e-4,
                     _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.shape, expected.shape, message, file: file, line: line)
        var worst: Float = 0, failures = 0
        for (a, e) in zip(actual.scalars, expected.scalars) {
            let d = abs(a - e)
            worst = max(worst, d)
            if !(d <= atol + rtol * abs(e)) { failures += 1 }
        }
        XCTAssertEqual(failures, 0, "\(message): \(failures) values out of tolerance; largest difference \(worst)",
                       file: file, line: line)
    }

    func assertThrows<T>(_ body: @autoclosure () throws -> T, _ fragment: String,
                         file: StaticString = #filePath, line: UInt = #line,
                         _ kind: (DalleError) -> Bool) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? DalleError, kind(e) else { return XCTFail("unexpected error \(error)", file: file, line: line) }
            XCTAssertTrue(e.description.contains(fragment), "'\(e)' lacks '\(fragment)'", file: file, line: line)
        }
    }
    static func badFile(_ e: DalleError) -> Bool { if case .badFile = e { return true } else { return false } }
    static func invalid(_ e: DalleError) -> Bool { if case .invalidArgument = e { return true } else { return false } }
    static func unsupported(_ e: DalleError) -> Bool { if case .unsupported = e { return true } else { return false } }

    // MARK: Golden parity

    func testGoldenConfigs() throws {
        let a = try golden("defaults").config
        XCTAssertEqual(a, TransformerConfig(dim: 64, depth: 4, heads: 4, dimHead: 16, textSeqLen: 16, numTextTokens: 100,
                                            numImageTokens: 64, imageFmapSize: 8,
                                            attnTypes: [.full, .axialRow, .axialCol, .convLike]))
        XCTAssertEqual(a.totalTokens, 100 + 16 + 64)
        XCTAssertEqual(a.imageSeqLen, 64)
        let b = try golden("learned_pos").config
        XCTAssertFalse(b.rotaryEmb || b.shiftTokens)
        XCTAssertEqual(b.attnTypes, [.axialRow, .axialCol, .axialRow, .convLike])
        let c = try golden("options").config
        XCTAssertTrue(c.sandwichNorm && c.stable)
        XCTAssertEqual(c.sharedAttnIds, [0, 1, 0])
        XCTAssertEqual(try TransformerConfig(metadata: c.metadata), c)
    }

    func testLogitsMatchReference() throws {
        for name in Self.goldenNames {
            let g = try golden(name)
            let text = try g.ints("text"), image = try g.ints("image")
            for threads in [1, 3] {
                let pool = ThreadPool(threads: threads)
                let logits = try g.model.logits(text: text, image: image, batch: 2, pool: pool)
                assertClose(logits, try g.ref.tensor("logits"), "\(name) logits, \(threads) threads")
                let prefix = Array(image[0..<3]) + Array(image[g.config.imageSeqLen..<(g.config.imageSeqLen + 3)])
                let prefixLogits = try g.model.logits(text: text, image: prefix, batch: 2, pool: pool)
                assertClose(prefixLogits, try g.ref.tensor("prefix_logits"), "\(name) prefix logits")
            }
        }
    }

    func testGreedyDecodingMatchesReference() throws {
        for name in Self.goldenNames {
            let g = try golden(name)
            let pool = ThreadPool(threads: 2)
            var cache = g.model.makeCache(batch: 2)
            var logits = try g.model.prefill(text: try g.ints("text"), image: [], batch: 2, cache: &cache, pool: pool)
            var tokens: [[Int32]] = [[], []]
            for i in 0..<g.config.imageSeqLen {
                let next = (0..<2).map { b -> Int32 in
                    let row = logits.scalars[(b * g.config.numImageTokens)..<((b + 1) * g.config.numImageTokens)]
                    return Int32(row.indices.max(by: { row[$0] < row[$1] || (row[$0] == row[$1] && $0 > $1) }).unsafelyUnwrapped
                                 - row.startIndex)
                }
                for b in 0..<2 { tokens[b].append(next[b]) }
                if i + 1 < g.config.imageSeqLen { logits = try g.model.step(imageTokens: next, cache: &cache, pool: pool) }
            }
            XCTAssertEqual(tokens[0] + tokens[1], try g.ints("greedy"), name)
            XCTAssertEqual(cache.length, g.config.seqLen)
            assertThrows(try g.model.step(imageTokens: [0, 0], cache: &cache, pool: pool), "cache is full", Self.invalid)
        }
    }

    /// prefill + step logits equal the full forward at every image position.
    func testCacheMatchesFullForward() throws {
        for name in Self.goldenNames {
            let g = try golden(name)
            let c = g.config, pool = ThreadPool(threads: 2)
            let text = try g.ints("text"), image = try g.ints("image")
            let full = try g.model.logits(text: text, image: image, batch: 2, pool: pool)
            let length = c.seqLen
            func expected(_ position: Int) -> [Float] {
                (0..<2).flatMap { b -> [Float] in
                    let row = (b * length + position) * c.totalTokens + c.textVocab
                    return Array(full.scalars[row..<(row + c.numImageTokens)])
                }
            }
            for primed in [0, 5] {
                var cache = g.model.makeCache(batch: 2)
                let prefix = (0..<2).flatMap { b in image[(b * c.imageSeqLen)..<(b * c.imageSeqLen + primed)] }
                var logits = try g.model.prefill(text: text, image: prefix, batch: 2, cache: &cache, pool: pool)
                for i in primed..<c.imageSeqLen {
                    assertClose(logits, try Tensor(shape: [2, c.numImageTokens], scalars: expected(c.textSeqLen + i)),
                                "\(name) position \(i) (primed \(primed))")
                    if i + 1 < c.imageSeqLen {
                        logits = try g.model.step(imageTokens: [image[i], image[c.imageSeqLen + i]], cache: &cache, pool: pool)
                    }
                }
            }
        }
    }

    // MARK: Random weights, loading and errors

    static let small = TransformerConfig(dim: 16, depth: 2, heads: 2, dimHead: 8, textSeqLen: 4, numTextTokens: 10,
                                         numImageTokens: 12, imageFmapSize: 3, attnTypes: [.convLike, .axialRow])

    func testRandomWeightsLoadAndDecodeConsistently() throws {
        for config in [Self.small, { var c = Self.small; c.rotaryEmb = false; c.sandwichNorm = true; return c }()] {
            let weights = DalleTransformer.randomWeights(config: config, seed: 3)
            let model = try DalleTransformer(config: config, weights: weights)
            let pool = ThreadPool(threads: 1)
            let text: [Int32] = [5, 0, 3, 0], image: [Int32] = [1, 2, 3, 4, 5, 6, 7, 8, 9]
            let full = try model.logits(text: text, image: image, batch: 1, pool: pool)
            XCTAssertEqual(full.shape, [1, config.seqLen, config.totalTokens])
            var cache = model.makeCache(batch: 1)
            var logits = try model.prefill(text: text, image: [], batch: 1, cache: &cache, pool: pool)
            for i in 0..<(config.imageSeqLen - 1) {
                let row = (config.textSeqLen + i) * config.totalTokens + config.textVocab
                assertClose(logits, try Tensor(shape: [1, config.numImageTokens],
                                                 scalars: Array(full.scalars[row..<(row + config.numImageTokens)])))
                logits = try model.step(imageTokens: [image[i]], cache: &cache, pool: pool)
            }
        }
        XCTAssertEqual(DalleTransformer.randomWeights(config: Self.small, seed: 1).tensors,
                       DalleTransformer.randomWeights(config: Self.small, seed: 1).tensors)
    }

    /// Threads split outputs, never sums: results are bit-identical for any thread count.
    func testResultsIndependentOfThreadCount() throws {
        let g = try golden("defaults")
        let text = try g.ints("text"), image = try g.ints("image")
        func run(_ threads: Int) throws -> [Float] {
            let pool = ThreadPool(threads: threads)
            var out = try g.model.logits(text: text, image: image, batch: 2, pool: pool).scalars
            var cache = g.model.makeCache(batch: 2)
            out += try g.model.prefill(text: text, image: [], batch: 2, cache: &cache, pool: pool).scalars
            for i in 0..<5 { out += try g.model.step(imageTokens: [image[i], image[i + 64]], cache: &cache, pool: pool).scalars }
            return out
        }
        let one = try run(1)
        XCTAssertEqual(one, try run(2))
        XCTAssertEqual(one, try run(5))
    }

    func testRotaryTableMatchesReference() throws {
        let g = try golden("defaults")
        let stored = try g.bundle.tensor("transformer.transformer.pos_emb")
        let computed = DalleTransformer.rotaryTable(g.config)
        XCTAssertEqual(stored.count, computed.count)
        for (a, b) in zip(stored.scalars, computed) { XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b))) }
    }

    func testStrictLoading() throws {
        let weights = DalleTransformer.randomWeights(config: Self.small, seed: 3)
        var missing = weights
        missing.tensors["transformer.transformer.layers.layers.1.0.fn.fn.fn.fn.fn.to_qkv.weight"] = nil
        assertThrows(try DalleTransformer(config: Self.small, weights: missing), "to_qkv.weight", Self.badFile)
        var wrong = weights
        wrong.tensors["transformer.image_emb.weight"] = Tensor(zeros: [11, 16])
        assertThrows(try DalleTransformer(config: Self.small, weights: wrong), "image_emb.weight", Self.badFile)
        var extra = weights
        extra.tensors["transformer.transformer.layers.layers.2.0.scale"] = Tensor(zeros: [1, 1, 16])
        assertThrows(try DalleTransformer(config: Self.small, weights: extra), "unexpected tensor", Self.badFile)
        // The golden bundle with a wrong configuration.
        let g = try golden("learned_pos")
        var config = g.config
        config.shiftTokens = true
        assertThrows(try DalleTransformer(config: config, weights: g.bundle), "fn.fn.fn.fn.fn.to_qkv", Self.badFile)
    }

    func testConfigMetadataErrors() throws {
        let base = try golden("defaults").bundle.metadata
        func with(_ key: String, _ value: String?) -> [String: String] { var m = base; m[key] = value; return m }
        assertThrows(try TransformerConfig(metadata: with("transformer.reversible", "true")), "reversible", Self.unsupported)
        assertThrows(try TransformerConfig(metadata: with("transformer.kind", "min-dalle")), "min-dalle", Self.unsupported)
        assertThrows(try TransformerConfig(metadata: with("transformer.sparse_attn", "true")), "sparse_attn", Self.unsupported)
        assertThrows(try TransformerConfig(metadata: with("transformer.share_input_output_emb", "true")),
                     "share_input_output_emb", Self.unsupported)
        assertThrows(try TransformerConfig(metadata: with("transformer.attn_types", "full,sparse")), "sparse", Self.unsupported)
        assertThrows(try TransformerConfig(metadata: with("transformer.dim", nil)), "transformer.dim", Self.badFile)
        assertThrows(try TransformerConfig(metadata: with("transformer.heads", "4x")), "not an integer", Self.badFile)
        assertThrows(try TransformerConfig(metadata: with("transformer.depth", "0")), "depth", Self.badFile)
        assertThrows(try TransformerConfig(metadata: with("transformer.dim", "66")), "shift_tokens", Self.unsupported)
        assertThrows(try TransformerConfig(metadata: with("transformer.rotary_emb", "maybe")), "boolean", Self.badFile)
        assertThrows(try TransformerConfig(metadata: with("transformer.shared_attn_ids", "0,0,2,3")), "shares attention id",
                     Self.badFile)
    }

    func testInputErrors() throws {
        let model = try DalleTransformer(config: Self.small, weights: DalleTransformer.randomWeights(config: Self.small, seed: 3))
        let pool = ThreadPool(threads: 1)
        assertThrows(try model.logits(text: [1, 2, 3], image: [], batch: 1, pool: pool), "text holds 3", Self.invalid)
        assertThrows(try model.logits(text: [1, 2, 3, 14], image: [], batch: 1, pool: pool), "text id 14", Self.invalid)
        assertThrows(try model.logits(text: [1, 2, 3, 4], image: [12], batch: 1, pool: pool), "image token 12", Self.invalid)
        assertThrows(try model.logits(text: [1, 2, 3, 4], image: Array(repeating: 0, count: 10), batch: 1, pool: pool),
                     "n ≤ 9", Self.invalid)
        assertThrows(try model.logits(text: [], image: [], batch: 0, pool: pool), "batch", Self.invalid)
        var huge = model.makeCache(batch: 1 << 40)
        assertThrows(try model.prefill(text: [], image: [], batch: 1 << 40, cache: &huge, pool: pool), "would need") { e in
            if case .outOfMemory = e { return true } else { return false }
        }
        var cache = model.makeCache(batch: 1)
        assertThrows(try model.step(imageTokens: [0], cache: &cache, pool: pool), "before prefill", Self.invalid)
        assertThrows(try model.prefill(text: [1, 2, 3, 4], image: Array(repeating: 0, count: 9), batch: 1, cache: &cache,
                                       pool: pool), "n ≤ 8", Self.invalid)
        _ = try model.prefill(text: [1, 2, 3, 4], image: [], batch: 1, cache: &cache, pool: pool)
        assertThrows(try model.prefill(text: [1, 2, 3, 4], image: [], batch: 1, cache: &cache, pool: pool), "empty cache",
                     Self.invalid)
        assertThrows(try model.step(imageTokens: [0, 1], cache: &cache, pool: pool), "2 image tokens", Self.invalid)
        assertThrows(try model.step(imageTokens: [-1], cache: &cache, pool: pool), "image token -1", Self.invalid)
    }

    // MARK: DALLE-pytorch's DiscreteVAE

    func testDiscreteVAEMatchesReference() throws {
        for name in Self.goldenNames {
            let g = try golden(name)
            let tokenizer = try makeImageTokenizer(metadata: g.bundle.metadata, weights: g.bundle)
            guard let vae = tokenizer as? DiscreteVAE else { return XCTFail("\(name): not a DiscreteVAE") }
            XCTAssertEqual(vae.gridSize, g.config.imageFmapSize)
            XCTAssertEqual(vae.vocabSize, g.config.numImageTokens)
            let pixels = try g.ref.tensor("pixels"), codes = try g.ints("codes")
            for threads in [1, 3] {
                let pool = ThreadPool(threads: threads)
                XCTAssertEqual(try vae.encode(pixels, pool: pool), codes, name)
                let raw = try vae.decoderOutput(tokens: codes, count: 2, pool: pool)
                assertClose(raw, try g.ref.tensor("decoded"), "\(name) decoded")
                let images = try vae.decode(tokens: codes, count: 2, pool: pool)
                XCTAssertTrue(zip(images.scalars, raw.scalars).allSatisfy { $0 == min(max($1 * 0.5 + 0.5, 0), 1) })
            }
            XCTAssertEqual(try DiscreteVAEConfig(metadata: vae.config.metadata), vae.config)
        }
    }

    func testDiscreteVAEErrors() throws {
        let g = try golden("defaults")
        let config = try DiscreteVAEConfig(metadata: g.bundle.metadata)
        var missing = InMemoryWeights()
        for name in g.bundle.names where name.hasPrefix("dvae.") && name != "dvae.decoder.1.net.2.bias" {
            missing.tensors[name] = try g.bundle.tensor(name)
        }
        assertThrows(try DiscreteVAE(config: config, weights: missing), "dvae.decoder.1.net.2.bias", Self.badFile)
        var fewer = config
        fewer.numResnetBlocks = 0
        assertThrows(try DiscreteVAE(config: fewer, weights: g.bundle), "dvae.", Self.badFile)
        var m = g.bundle.metadata
        m["dvae.normalization_std"] = "0.5,0,0.5"
        assertThrows(try DiscreteVAEConfig(metadata: m), "normalization", Self.badFile)
        m = g.bundle.metadata
        m["dvae.image_size"] = "48"
        assertThrows(try DiscreteVAEConfig(metadata: m), "power of two", Self.badFile)
        m = g.bundle.metadata
        m["dvae.channels"] = "-3"  // once cut the normalization lists with a negative prefix
        assertThrows(try DiscreteVAEConfig(metadata: m), "'channels' is -3", Self.badFile)
        let vae = try DiscreteVAE(config: config, weights: g.bundle), pool = ThreadPool(threads: 1)
        assertThrows(try vae.encode(Tensor(zeros: [1, 3, 16, 16]), pool: pool), "expects images", Self.invalid)
        assertThrows(try vae.decode(tokens: [64] + Array(repeating: 0, count: 63), count: 1, pool: pool), "token 64",
                     Self.invalid)
        assertThrows(try vae.decode(tokens: [0], count: 1, pool: pool), "8×8", Self.invalid)
    }

    // MARK: Bundles through the pipeline

    func testDalleModelLoadsConvertedCheckpoint() throws {
        let model = try DalleModel(path: Self.goldenDirectory + "/defaults.safetensors")
        XCTAssertTrue(model.components.contains([.dvae, .transformer]))
        XCTAssertNil(model.dvae)
        XCTAssertTrue(model.imageTokenizer is DiscreteVAE)
        XCTAssertEqual(model.transformer?.config, try golden("defaults").config)
        XCTAssertEqual(model.metadata["tokenizer.kind"], "clip-bpe")
        XCTAssertEqual(model.tokenizer?.vocabularySize, 49408)
        XCTAssertEqual(model.skippedComponents, [])
        XCTAssertEqual(model.tokenizer?.encode("a red apple"), [320, 736, 3055])  // DALLE-pytorch's SimpleTokenizer
        let file = try SafetensorsFile(path: Self.goldenDirectory + "/defaults.safetensors")
        var metadata = file.metadata
        metadata["transformer.num_image_tokens"] = "65"
        assertThrows(try DalleModel(metadata: metadata, weights: file), "the dvae has 64", Self.badFile)
    }
}
