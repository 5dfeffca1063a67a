import CDalle
@testable import DalleCAPI
@testable import DalleCore
@testable import DalleImageIO
import XCTest

/// Judged candidate sets: the file, `CandidateSetSource`'s examples, the session that makes a set
/// from a model's own candidates, and CLIP training on one (hard negatives).
final class CandidateSetTests: XCTestCase {
    typealias World = ShapesWorld
    let pool = ThreadPool(threads: 1)

    static let blank: RGBImage = { (try? RGBImage(width: 64, height: 64, pixels: [UInt8](repeating: 128, count: 64 * 64 * 3)))! }()

    /// Three training captions; candidates [blank, rendering] for the first, [blank, blank] for the
    /// second, [rendering, blank] for the third; a rendering of each as its reference.
    func handMadeSet() throws -> World.CandidateSet {
        let samples = try (0..<3).map { try World.trainingSample(seed: 5, index: UInt64($0)) }
        let right = try samples.map { try World.render(caption: $0.caption, seed: 77) }
        let candidates = [[Self.blank, right[0]], [Self.blank, Self.blank], [right[2], Self.blank]]
        let passed = try zip(candidates, samples).map { images, sample in try images.map { try World.judge($0, caption: sample.caption).passed } }
        XCTAssertEqual(passed, [[false, true], [false, false], [true, false]])
        return try World.CandidateSet(captions: samples.map(\.caption.text), candidates: candidates, passed: passed,
                                      references: samples.map(\.image))
    }

    func testFileRoundTripAndBadFiles() throws {
        let set = try handMadeSet()
        let path = NSTemporaryDirectory() + "/candidates-\(getpid()).safetensors"
        defer { unlink(path) }
        try set.write(to: path)
        XCTAssertEqual(try World.CandidateSet(path: path), set)

        let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden").path
        XCTAssertThrowsError(try World.CandidateSet(path: golden + "/dvae/model.safetensors")) {
            XCTAssertTrue("\($0)".contains("is not a libdalle candidate set"), "\($0)")
        }
        // A set whose tensors do not fit its captions.
        var writer = SafetensorsWriter()
        writer.metadata = ["format": World.CandidateSet.format, "captions": "a red circle\na blue square"]
        try writer.add("candidates", bytes: Self.blank.pixels, dtype: .u8, shape: [1, 1, 64, 64, 3])
        try writer.add("passed", bytes: [1], dtype: .u8, shape: [1, 1])
        try writer.add("references", bytes: Self.blank.pixels, dtype: .u8, shape: [1, 64, 64, 3])
        try writer.write(to: path)
        XCTAssertThrowsError(try World.CandidateSet(path: path)) { XCTAssertTrue("\($0)".contains("for its 2 captions"), "\($0)") }

        XCTAssertThrowsError(try World.CandidateSet(captions: ["a red circle"], candidates: [[Self.blank]], passed: [[true, false]],
                                                    references: [Self.blank]))
        XCTAssertThrowsError(try World.CandidateSet(captions: [], candidates: [], passed: [], references: []))
    }

    func testJoiningShards() throws {
        let set = try handMadeSet()
        let joined = try World.CandidateSet(joining: [set, set])
        XCTAssertEqual(joined.captions, set.captions + set.captions)
        XCTAssertEqual(joined.candidates, set.candidates + set.candidates)
        XCTAssertEqual(joined.passed, set.passed + set.passed)
        XCTAssertEqual(joined.references, set.references + set.references)
        XCTAssertEqual(try World.CandidateSet(joining: [set]), set)
        let fewer = try World.CandidateSet(captions: ["a red circle"], candidates: [[Self.blank]], passed: [[true]],
                                           references: [Self.blank])
        XCTAssertThrowsError(try World.CandidateSet(joining: [set, fewer])) {
            XCTAssertTrue("\($0)".contains("candidate set 2 has 1 candidates of 64x64 per caption"), "\($0)")
        }
        XCTAssertThrowsError(try World.CandidateSet(joining: []))
    }

    /// The first passing candidate, else the reference; failing candidates as negatives, at most as many as asked.
    func testSourceExamples() throws {
        let set = try handMadeSet()
        let source = try CandidateSetSource(set: set, imageSize: 64)
        XCTAssertEqual(source.count, 3)
        let examples = try (0..<3).map { try source.example(at: $0) }
        XCTAssertEqual(examples.map(\.caption), set.captions)
        XCTAssertEqual(examples.map(\.image), [set.candidates[0][1], set.references[1], set.candidates[2][0]])
        XCTAssertEqual(examples.map(\.negatives.count), [1, 2, 1])
        XCTAssertEqual(examples[1].negatives, [Self.blank, Self.blank])
        XCTAssertEqual(try CandidateSetSource(set: set, imageSize: 64, negativesPerExample: 1).example(at: 1).negatives.count, 1)
        let small = try CandidateSetSource(set: set, imageSize: 16).example(at: 0)
        XCTAssertEqual([small.image.width] + small.negatives.map(\.width), [16, 16])
        XCTAssertThrowsError(try source.example(at: 3))
        XCTAssertThrowsError(try CandidateSetSource(set: set, imageSize: 0))
        let split = try source.trainingAndValidation(validationFraction: 0.3)
        XCTAssertEqual([split.training.count, split.validation.count], [2, 1])
    }

    /// Each epoch takes a caption's next passing candidate and its next failing ones, round again;
    /// the trainer's batches of a later pass over the data see them.
    func testSourceTakesCandidatesInTurnByEpoch() throws {
        let sample = try World.trainingSample(seed: 5, index: 0)
        let (a, b) = (try World.render(caption: sample.caption, seed: 77), try World.render(caption: sample.caption, seed: 78))
        let other = try World.render(caption: try World.trainingSample(seed: 5, index: 1).caption, seed: 77)
        let candidates = [a, Self.blank, b, other, Self.blank]
        let passed = try candidates.map { try World.judge($0, caption: sample.caption).passed }
        XCTAssertEqual(passed, [true, false, true, false, false])
        let set = try World.CandidateSet(captions: [sample.caption.text], candidates: [candidates], passed: [passed],
                                         references: [sample.image])
        let source = try CandidateSetSource(set: set, imageSize: 64, negativesPerExample: 2)
        let epochs = try (0..<4).map { try source.example(at: 0, epoch: $0) }
        XCTAssertEqual(epochs.map(\.image), [a, b, a, b])
        XCTAssertEqual(epochs.map(\.negatives), [[Self.blank, other], [Self.blank, Self.blank], [other, Self.blank], [Self.blank, other]])
        XCTAssertEqual(try source.example(at: 0), epochs[0])
        XCTAssertEqual(try CandidateSetSource(set: set, imageSize: 64, negativesPerExample: 1).example(at: 0, epoch: 1).negatives, [other])
        XCTAssertThrowsError(try source.example(at: 0, epoch: -1))

        let tokenizer = try TrainingSetup.trainTokenizer(try ShapesWorldSource(seed: 0, count: 200), vocabularySize: 560)
        let config = CLIPConfig(embedDim: 8, imageResolution: 16, visionPatchSize: 8, visionWidth: 16, visionLayers: 1, visionHeads: 2,
                                contextLength: 16, vocabSize: 0, textWidth: 16, textLayers: 1, textHeads: 2).metadata
        let stage = try TrainingSetup.stage("clip", config: config, checkpoint: nil, seed: 2, tokenizer: tokenizer,
                                            imageTokenizer: nil, pool: pool)
        var options = TrainingOptions()
        (options.steps, options.batchSize, options.validationCount) = (3, 1, 0)
        let small = try CandidateSetSource(set: set, imageSize: 16)
        let trainer = try Trainer(stage: stage, training: small, validation: TrainingSubset(base: small, indices: []), options: options, pool: pool)
        XCTAssertEqual(try (0..<3).map { try trainer.batch(at: $0)[0] }, try (0..<3).map { try small.example(at: 0, epoch: $0) })
    }

    /// A model's set is `generate`'s images for the training stream's captions (draws from
    /// `captionSeed(i)`), the judge's verdicts, and `encode`/`decode` of each caption's training
    /// rendering; the same for any thread count.
    func testSessionSetMatchesGenerateAndTheJudge() throws {
        func makeSession(threads: Int) throws -> DalleSession {
            try DalleSession(model: try DalleModel(path: EvaluationRunTests.clipBundle), threads: threads)
        }
        let session = try makeSession(threads: 1)
        let set = try session.makeShapesCandidateSet(captions: 2, count: 2, seed: 3)
        XCTAssertEqual(try makeSession(threads: 2).makeShapesCandidateSet(captions: 2, count: 2, seed: 3), set)
        let seeds = World.EvaluationOptions(seed: 3)
        for i in 0..<2 {
            let sample = try World.trainingSample(seed: 3, index: UInt64(i))
            XCTAssertEqual(set.captions[i], sample.caption.text)
            let generated = try session.generate(prompt: sample.caption.text, options: GenerationOptions(count: 2, seed: seeds.captionSeed(i)))
            XCTAssertEqual(set.candidates[i].flatMap(\.pixels), generated.pixels)
            XCTAssertEqual(set.passed[i], try set.candidates[i].map { try World.judge($0, caption: sample.caption).passed })
            let tokens = try sample.image.withView { try session.encode([$0]) }
            XCTAssertEqual(set.references[i].pixels, try tokens.withUnsafeBufferPointer { try session.decode(tokens: $0, count: 1) })
        }
        XCTAssertThrowsError(try session.makeShapesCandidateSet(captions: 0, count: 2, seed: 3)) {
            XCTAssertTrue("\($0)".contains("captions is 0"), "\($0)")
        }
        XCTAssertThrowsError(try session.makeShapesCandidateSet(captions: 1, count: 0, seed: 3)) {
            XCTAssertTrue("\($0)".contains("candidates is 0"), "\($0)")
        }
        XCTAssertThrowsError(try session.makeShapesCandidateSet(captions: 3, count: 1, seed: 3, progress: { step, _ in step < 2 })) {
            XCTAssertEqual($0 as? DalleError, .cancelled)
        }
    }

    /// CLIP's batch is the examples' images, then their negatives; the negatives raise the loss.
    func testCLIPTrainsAgainstTheNegatives() throws {
        let set = try handMadeSet()
        let examples = try (0..<3).map { try CandidateSetSource(set: set, imageSize: 16).example(at: $0) }
        let tokenizer = try TrainingSetup.trainTokenizer(try ShapesWorldSource(seed: 0, count: 200), vocabularySize: 560)
        let config = CLIPConfig(embedDim: 8, imageResolution: 16, visionPatchSize: 8, visionWidth: 16, visionLayers: 1, visionHeads: 2,
                                contextLength: 16, vocabSize: 0, textWidth: 16, textLayers: 1, textHeads: 2).metadata
        let stage = try XCTUnwrap(try TrainingSetup.stage("clip", config: config, checkpoint: nil, seed: 2, tokenizer: tokenizer,
                                                          imageTokenizer: nil, pool: pool) as? CLIPStage)
        XCTAssertEqual(try stage.images(examples), examples.map(\.image) + examples.flatMap(\.negatives))
        var plain = examples
        for i in plain.indices { plain[i].negatives = [] }
        XCTAssertGreaterThan(try stage.evaluate(examples, pool: pool), try stage.evaluate(plain, pool: pool))
    }

    /// dalle_shapes_candidates writes the session's set; NULL and bad arguments are errors, not traps.
    func testCAPIWritesTheSessionSet() throws {
        var model: OpaquePointer?
        XCTAssertEqual(dalle_model_load_file(EvaluationRunTests.clipBundle, nil, &model), dalle_status(DALLE_OK))
        defer { dalle_model_free(model) }
        var ctx: OpaquePointer?
        XCTAssertEqual(dalle_context_create(model, nil, &ctx), dalle_status(DALLE_OK))
        defer { dalle_context_free(ctx) }
        let path = NSTemporaryDirectory() + "/c-candidates-\(getpid()).safetensors"
        defer { unlink(path) }
        var params = DalleCAPI.dalle_eval_default_params()
        (params.candidates, params.seed) = (2, 6)
        XCTAssertEqual(dalle_shapes_candidates(ctx, &params, 2, path), dalle_status(DALLE_OK), String(cString: dalle_context_last_error(ctx)))
        let session = try DalleSession(model: try DalleModel(path: EvaluationRunTests.clipBundle), threads: 1)
        XCTAssertEqual(try World.CandidateSet(path: path), try session.makeShapesCandidateSet(captions: 2, count: 2, seed: 6))

        XCTAssertEqual(dalle_shapes_candidates(ctx, &params, 2, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("out_path is NULL"))
        XCTAssertEqual(dalle_shapes_candidates(ctx, &params, 0, path), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("captions is 0"))
        XCTAssertEqual(dalle_shapes_candidates(ctx, &params, 1, "/nonexistent/dir/x.safetensors"), dalle_status(DALLE_IO_ERROR))
        var small = params
        small.struct_size = 8
        XCTAssertEqual(dalle_shapes_candidates(ctx, &small, 1, path), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(dalle_shapes_candidates(nil, &params, 1, path), dalle_status(DALLE_INVALID_ARGUMENT))
    }
}
