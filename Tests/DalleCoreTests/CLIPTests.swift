import XCTest
import DalleImageIO
@testable import DalleCore

/// CLIP against OpenAI's `openai-clip` (fixtures from tools/make_golden_clip.py).
final class CLIPTests: XCTestCase {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Golden/clip").path

    func assertClose(_ actual: [Float], _ expected: [Float], atol: Float, rtol: Float, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, what, file: file, line: line)
        var worst: Float = 0, at = 0
        for i in 0..<min(actual.count, expected.count) {
            let excess = abs(actual[i] - expected[i]) - (atol + rtol * abs(expected[i]))
            if excess > worst { (worst, at) = (excess, i) }
        }
        XCTAssertEqual(worst, 0, "\(what)[\(at)] = \(actual[at]), expected \(expected[at])", file: file, line: line)
    }

    // MARK: Seeded reference weights (ViT-B/32 in full, and a small config)

    func runSeeded(_ name: String, threads: Int = 0) throws {
        let io = try SafetensorsFile(path: Self.golden + "/seeded_\(name).safetensors")
        let config = try CLIPConfig(metadata: io.metadata)
        let seed = try XCTUnwrap(io.metadata["seed"].flatMap { UInt64($0) })
        let clip = try CLIP(config: config, weights: CLIPSeededWeights(config: config, seed: seed))
        let pool = ThreadPool(threads: threads)
        let tokens = try io.tensor("tokens").scalars.map { Int32($0) }
        let texts = stride(from: 0, to: tokens.count, by: 77).map { Array(tokens[$0..<($0 + 77)]) }
        let images = try clip.encodeImages(io.tensor("pixels"), pool: pool)
        let textEmbeddings = try clip.encodeText(texts, pool: pool)
        assertClose(images.scalars, try io.tensor("image_embeddings").scalars, atol: 1e-4, rtol: 1e-4, "\(name) image")
        assertClose(textEmbeddings.scalars, try io.tensor("text_embeddings").scalars, atol: 1e-4, rtol: 1e-4, "\(name) text")
        assertClose(clip.logits(images: images, texts: textEmbeddings).scalars, try io.tensor("logits").scalars,
                    atol: 1e-3, rtol: 0, "\(name) logits")
    }

    func testSeededSmallMatchesReference() throws { try runSeeded("small") }
    func testSeededViTB32MatchesReference() throws { try runSeeded("vitb32") }

    func testSeededWeightsMatchPython() throws {
        // Values printed by tools/clip_reference.py's seeded_tensor("visual.conv1.weight", (32, 3, 8, 8), 7).
        let t = CLIPSeededWeights.draw(name: "clip.visual.conv1.weight", shape: [32, 3, 8, 8], seed: 7)
        XCTAssertEqual(Array(t.scalars.prefix(4)), [0.012802371755242348, 0.027748657390475273, -0.0529242567718029, -0.06651316583156586])
    }

    func testResultsIndependentOfThreadCount() throws {
        let config = CLIPConfig(embedDim: 16, imageResolution: 32, visionPatchSize: 8, visionWidth: 32, visionLayers: 2,
                                visionHeads: 2, contextLength: 77, vocabSize: 50, textWidth: 32, textLayers: 2, textHeads: 4)
        let clip = try CLIP(config: config, weights: CLIPSeededWeights(config: config, seed: 3))
        let pixels = CLIPSeededWeights.draw(name: "pixels", shape: [3, 3, 32, 32], seed: 1)
        var text = [Int32](repeating: 0, count: 77)
        text[0] = 48; text[1] = 7; text[2] = 49
        let one = try clip.encodeImages(pixels, pool: ThreadPool(threads: 1))
        let three = try clip.encodeImages(pixels, pool: ThreadPool(threads: 3))
        XCTAssertEqual(one, three)
        XCTAssertEqual(try clip.encodeText([text, text], pool: ThreadPool(threads: 1)),
                       try clip.encodeText([text, text], pool: ThreadPool(threads: 4)))
        // Each image's embedding does not depend on the rest of the batch.
        let alone = try clip.encodeImages(try Tensor(shape: [1, 3, 32, 32], scalars: Array(pixels.scalars[0..<(3 * 32 * 32)])),
                                          pool: ThreadPool(threads: 2))
        XCTAssertEqual(alone.scalars, Array(one.scalars[0..<16]))
    }

    // MARK: Bundles, layouts, errors

    func testConfigMetadataRoundTripAndErrors() throws {
        XCTAssertEqual(try CLIPConfig(metadata: CLIPConfig.vitB32.metadata), .vitB32)
        func with(_ key: String, _ value: String?) -> [String: String] {
            var m = CLIPConfig.vitB32.metadata
            m[key] = value
            return m
        }
        XCTAssertThrowsError(try CLIPConfig(metadata: with("clip.kind", "resnet")))
        XCTAssertThrowsError(try CLIPConfig(metadata: with("clip.vision_width", nil)))
        XCTAssertThrowsError(try CLIPConfig(metadata: with("clip.vision_width", "77x")))
        XCTAssertThrowsError(try CLIPConfig(metadata: with("clip.vision_heads", "5")))
        XCTAssertThrowsError(try CLIPConfig(metadata: with("clip.vision_patch_size", "30")))
        XCTAssertThrowsError(try CLIPConfig(metadata: with("clip.embed_dim", "-1")))
    }

    func testStrictLoading() throws {
        let config = try CLIPConfig(metadata: try SafetensorsFile(path: Self.golden + "/clip_tiny.safetensors").metadata)
        var weights = InMemoryWeights()
        for (name, shape) in CLIPSeededWeights.parameterShapes(config) {
            weights.tensors[name] = CLIPSeededWeights.draw(name: name, shape: shape, seed: 1)
        }
        XCTAssertNoThrow(try CLIP(config: config, weights: weights))
        var extra = weights
        extra.tensors["clip.visual.transformer.resblocks.1.ln_1.weight"] = Tensor(zeros: [32])
        XCTAssertThrowsError(try CLIP(config: config, weights: extra)) { XCTAssertTrue("\($0)".contains("resblocks.1")) }
        var missing = weights
        missing.tensors["clip.visual.proj"] = nil
        XCTAssertThrowsError(try CLIP(config: config, weights: missing)) { XCTAssertTrue("\($0)".contains("visual.proj")) }
        var wrong = weights
        wrong.tensors["clip.ln_final.bias"] = Tensor(zeros: [17])
        XCTAssertThrowsError(try CLIP(config: config, weights: wrong)) { XCTAssertTrue("\($0)".contains("ln_final")) }
    }

    func testBadInputsThrow() throws {
        let model = try DalleModel(path: Self.golden + "/clip_tiny.safetensors")
        let clip = try model.requireCLIP()
        let pool = ThreadPool(threads: 1)
        XCTAssertThrowsError(try clip.encodeImages(Tensor(zeros: [1, 3, 31, 32]), pool: pool))
        XCTAssertThrowsError(try clip.encodeText([[1, 2, 3]], pool: pool))
        var bad = [Int32](repeating: 0, count: 77)
        bad[3] = 49408
        XCTAssertThrowsError(try clip.encodeText([bad], pool: pool))
        bad[3] = -1
        XCTAssertThrowsError(try clip.encodeText([bad], pool: pool))
        XCTAssertEqual(try clip.encodeImages(Tensor(zeros: [0, 3, 32, 32]), pool: pool).shape, [0, 32])
    }

    // MARK: Tiny bundle end to end (converter output, HF layout, preprocessing, tokens)

    func tinyImages() throws -> [RGBImage] {
        let io = try SafetensorsFile(path: Self.golden + "/tiny_expected.safetensors")
        return try (io.metadata["images"] ?? "").split(separator: "\n").map {
            try PNG.read(path: Self.golden + "/" + $0)
        }
    }

    func checkTiny(_ model: DalleModel) throws {
        let io = try SafetensorsFile(path: Self.golden + "/tiny_expected.safetensors")
        let clip = try model.requireCLIP()
        let pool = ThreadPool(threads: 2)
        let images = try tinyImages()
        let pixels = try images.withViews { try CLIPPreprocess.tensor(from: $0, size: 32) }
        let imageEmbeddings = try clip.encodeImages(pixels, pool: pool)
        let tokens = try io.tensor("tokens").scalars.map { Int32($0) }
        let texts = stride(from: 0, to: tokens.count, by: 77).map { Array(tokens[$0..<($0 + 77)]) }
        let textEmbeddings = try clip.encodeText(texts, pool: pool)
        assertClose(imageEmbeddings.scalars, try io.tensor("image_embeddings").scalars, atol: 1e-4, rtol: 1e-4, "tiny image")
        assertClose(textEmbeddings.scalars, try io.tensor("text_embeddings").scalars, atol: 1e-4, rtol: 1e-4, "tiny text")
        assertClose(clip.logits(images: imageEmbeddings, texts: textEmbeddings).scalars,
                    try io.tensor("logits").scalars, atol: 1e-3, rtol: 0, "tiny logits")
    }

    func testTinyBundleMatchesReference() throws {
        let model = try DalleModel(path: Self.golden + "/clip_tiny.safetensors")
        XCTAssertTrue(model.components.contains(.clip))
        try checkTiny(model)
    }

    func testTinyHuggingFaceCheckpointLoadsDirectly() throws {
        let model = try DalleModel(path: Self.golden + "/clip_tiny_hf.safetensors")
        XCTAssertEqual(model.components, .clip)
        try checkTiny(model)
    }

    func testTinySessionTokensAndRerankMatchReference() throws {
        let io = try SafetensorsFile(path: Self.golden + "/tiny_expected.safetensors")
        let session = try DalleSession(model: try DalleModel(path: Self.golden + "/clip_tiny.safetensors"), threads: 2)
        let prompts = (io.metadata["prompts"] ?? "").split(separator: "\n").map(String.init)
        let tokens = try io.tensor("tokens").scalars.map { Int32($0) }
        let logits = try io.tensor("logits").scalars
        let images = try tinyImages()
        for (p, prompt) in prompts.enumerated() {
            XCTAssertEqual(try session.clipTokens(prompt), Array(tokens[(p * 77)..<((p + 1) * 77)]), prompt)
            let result = try images.withViews { try session.rerank(prompt: prompt, images: $0) }
            let expected = (0..<images.count).map { logits[$0 * prompts.count + p] }
            assertClose(result.scores, expected, atol: 1e-3, rtol: 0, "rerank '\(prompt)'")
            XCTAssertEqual(result.order, expected.indices.sorted { expected[$0] > expected[$1] })
        }
        XCTAssertThrowsError(try images.withViews { try session.rerank(prompt: "", images: $0) })
        XCTAssertThrowsError(try session.rerank(prompt: "a cat", images: []))
        let noCLIP = try DalleSession(model: try DalleModel(path: Self.golden + "/../dvae/model.safetensors"))
        XCTAssertThrowsError(try images.withViews { try noCLIP.rerank(prompt: "a cat", images: $0) }) {
            XCTAssertTrue("\($0)".contains("no clip component"))
        }
    }

    // MARK: Preprocessing (Pillow's bicubic resize + centre crop)

    func testPreprocessingMatchesPillow() throws {
        for (w, h) in [(300, 200), (150, 257), (224, 224), (48, 40)] {
            let image = try PNG.read(path: Self.golden + "/image_\(w)x\(h).png")
            for n in [224, 32] {
                let expected = try PNG.read(path: Self.golden + "/preprocessed_\(w)x\(h)_\(n).png")
                let actual = try image.withView { try CLIPPreprocess.resizeAndCrop($0, size: n) }
                XCTAssertEqual(actual.width, n)
                let worst = zip(actual.pixels, expected.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 99
                // The requirement is within 1/255; the implementation matches Pillow exactly.
                XCTAssertEqual(worst, 0, "\(w)x\(h) → \(n)")
            }
        }
    }

    func testPreprocessingRejectsBadImages() throws {
        let bytes = [UInt8](repeating: 0, count: 12)
        try bytes.withUnsafeBufferPointer { p in
            XCTAssertThrowsError(try CLIPPreprocess.resizeAndCrop(ImageView(width: 2, height: 2, channels: 2, pixels: p), size: 4))
            XCTAssertThrowsError(try CLIPPreprocess.resizeAndCrop(ImageView(width: 3, height: 2, channels: 3, pixels: p), size: 4))
            XCTAssertThrowsError(try CLIPPreprocess.resizeAndCrop(ImageView(width: 0, height: 2, channels: 3, pixels: p), size: 4))
            XCTAssertNoThrow(try CLIPPreprocess.resizeAndCrop(ImageView(width: 2, height: 2, channels: 3, pixels: p), size: 4))
            // 4x1 upscaled to a short side of 224 is fine; 4x1 to 16384 would be 65536x16384 pixels.
            XCTAssertNoThrow(try CLIPPreprocess.resizeAndCrop(ImageView(width: 4, height: 1, channels: 3, pixels: p), size: 224))
            XCTAssertThrowsError(try CLIPPreprocess.resizeAndCrop(ImageView(width: 4, height: 1, channels: 3, pixels: p), size: 16384)) {
                XCTAssertTrue("\($0)".contains("aspect ratio"))
            }
        }
    }
}
