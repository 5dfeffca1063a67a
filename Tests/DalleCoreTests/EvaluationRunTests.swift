import CDalle
@testable import DalleCAPI
@testable import DalleCore
import XCTest

/// The Shapes World evaluation: the report's arithmetic, `ShapesWorld.evaluate` over a controlled
/// image source, and `DalleSession.evaluateShapesWorld` / `dalle_shapes_eval` on tiny random bundles.
final class EvaluationRunTests: XCTestCase {
    typealias World = ShapesWorld

    /// 64x64 images, 8x8 token grids of 24 image tokens; a byte-level tokenizer; a seeded tiny CLIP.
    static let dvae = DVAEConfig(imageSize: 64, groupCount: 4, hiddenChannels: 8, blocksPerGroup: 1,
                                 inputChannels: 3, outputChannels: 3, vocabSize: 24, initChannels: 8)
    static let tokenizer: Tokenizer = { (try? Tokenizer(merges: [("r", "e"), ("re", "d</w>"), ("c", "i"), ("ci", "r")]))! }()
    static let transformer = TransformerConfig(dim: 32, depth: 2, heads: 2, dimHead: 16, textSeqLen: 16,
                                               numTextTokens: tokenizer.vocabularySize, numImageTokens: 24,
                                               imageFmapSize: 8, attnTypes: [.full, .axialRow])

    static func writeBundle(clip: Bool) -> String {
        let path = "/tmp/libdalle-eval-test-\(clip ? "clip" : "noclip")-\(getpid()).safetensors"
        do {
            var writer = SafetensorsWriter()
            writer.metadata = ["format": "libdalle", "format_version": "1",
                               "components": clip ? "clip,dvae,tokenizer,transformer" : "dvae,tokenizer,transformer"]
            for (key, value) in dvae.metadata.merging(transformer.metadata, uniquingKeysWith: { a, _ in a }) { writer.metadata[key] = value }
            let tensors = DVAE.randomWeights(config: dvae, seed: 3).tensors
                .merging(DalleTransformer.randomWeights(config: transformer, seed: 11).tensors, uniquingKeysWith: { a, _ in a })
            for (name, tensor) in tensors { try writer.add(name, tensor) }
            try tokenizer.write(to: &writer)
            if clip {
                var clipMetadata = try SafetensorsFile(path: CLIPTests.golden + "/clip_tiny.safetensors").metadata
                    .filter { $0.key.hasPrefix("clip.") }
                clipMetadata["clip.vocab_size"] = String(tokenizer.vocabularySize)
                let config = try CLIPConfig(metadata: clipMetadata)
                for (key, value) in config.metadata { writer.metadata[key] = value }
                let weights = CLIPSeededWeights(config: config, seed: 5)
                for (name, shape) in CLIPSeededWeights.parameterShapes(config) { try writer.add(name, try weights.tensor(name, shape: shape)) }
            }
            try writer.write(to: path)
        } catch {
            XCTFail("cannot write the test bundle: \(error)")
        }
        return path
    }

    /// The bundles' dVAE alone, as a dVAE in training is saved.
    static let dvaeBundle: String = {
        let path = "/tmp/libdalle-eval-test-dvae-\(getpid()).safetensors"
        do {
            var writer = SafetensorsWriter()
            writer.metadata = dvae.metadata.merging(["format": "libdalle", "format_version": "1", "components": "dvae"]) { a, _ in a }
            for (name, tensor) in DVAE.randomWeights(config: dvae, seed: 3).tensors { try writer.add(name, tensor) }
            try writer.write(to: path)
        } catch {
            XCTFail("cannot write the dVAE file: \(error)")
        }
        return path
    }()

    static let clipBundle = writeBundle(clip: true)
    static let plainBundle = writeBundle(clip: false)

    override class func tearDown() {
        unlink(clipBundle)
        unlink(plainBundle)
        unlink(dvaeBundle)
    }

    /// Two captions per template, one per held-out pair, 3 candidates, 2 reconstruction samples.
    static let small = World.EvaluationOptions(candidates: 3, seed: 9, perTemplate: 2, perHeldOutPair: 1, reconstructionSamples: 2)

    func session(_ path: String = EvaluationRunTests.clipBundle, threads: Int = 1) throws -> DalleSession {
        try DalleSession(model: try DalleModel(path: path), threads: threads)
    }

    // MARK: the report's arithmetic

    func testGroupScoresRatesAndTable() throws {
        let outcomes = [
            World.CaptionOutcome(group: .single, passed: [true, false, false, false], rankedByCLIP: true),
            World.CaptionOutcome(group: .single, passed: [false, false, true, false], rankedByCLIP: true),
            World.CaptionOutcome(group: .counting, passed: [false, false, false, false], rankedByCLIP: true),
        ]
        let report = World.EvaluationReport(options: World.EvaluationOptions(candidates: 4), outcomes: outcomes,
                                            reconstruction: [true, true, true, false])
        let single = report.score(for: .single)
        XCTAssertEqual([single.captions, single.candidates, single.passedCandidates, single.passedAny], [2, 8, 2, 2])
        XCTAssertEqual(single.passedBestByCLIP, 1)
        XCTAssertEqual(single.bestByCLIPRate, 0.5)
        XCTAssertEqual(single.averageRate, 0.25)
        XCTAssertEqual(single.anyOfNRate, 1)
        XCTAssertEqual(single.rerankLift, 0.25)
        XCTAssertEqual(report.score(for: .counting).anyOfNRate, 0)
        XCTAssertNil(report.score(for: .relation).averageRate, "no captions: no rate")
        XCTAssertEqual(report.total.captions, 3)
        XCTAssertEqual(report.total.passedBestByCLIP, 1)
        XCTAssertEqual(report.reconstructionRate, 0.75)
        XCTAssertTrue(report.hasCLIP)

        let table = report.table()
        let lines = table.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2 + 4 + 1 + 1 + 1, table)
        XCTAssertTrue(lines[0].contains("CLIP best of 4") && lines[0].contains("any of 4"), table)
        XCTAssertTrue(lines[2].hasPrefix("| one object "), table)
        for cell in ["50.0 %", "25.0 %", "100.0 %", "+25.0 pts", ">= 95 % not met"] { XCTAssertTrue(lines[2].contains(cell), "\(cell): \(table)") }
        XCTAssertTrue(lines[4].hasPrefix("| relation ") && lines[4].contains(" - "), table)
        XCTAssertTrue(lines[6].hasPrefix("| all captions ") && lines[6].contains("33.3 %"), table)
        XCTAssertTrue(lines[7].hasPrefix("| dVAE reconstruction ") && lines[7].contains("75.0 %"), table)
        XCTAssertEqual(Set(lines.prefix(8).map(\.count)).count, 1, "aligned columns:\n\(table)")

        let plain = World.EvaluationReport(options: World.EvaluationOptions(), outcomes: outcomes.map {
            World.CaptionOutcome(group: $0.group, passed: $0.passed, rankedByCLIP: false)
        }, reconstruction: [])
        XCTAssertFalse(plain.hasCLIP)
        XCTAssertNil(plain.total.passedBestByCLIP)
        XCTAssertNil(plain.total.rerankLift)
        XCTAssertEqual(plain.total.averageRate, 2.0 / 12)
        XCTAssertTrue(plain.table().contains(" n/a |"), plain.table())
        XCTAssertTrue(plain.table().contains("no CLIP component"), plain.table())
    }

    // MARK: ShapesWorld.evaluate with a controlled image source

    /// Caption i gets i % 4 renderings of itself (which pass) and blanks (which fail); "CLIP" puts a
    /// rendering first for even i only. Reconstruction: identity, or a blank for every third image.
    func testEvaluateJudgesEveryCandidateAndReconstruction() throws {
        let options = World.EvaluationOptions(candidates: 4, seed: 3, perTemplate: 3, perHeldOutPair: 2, reconstructionSamples: 5)
        let blank = try RGBImage(width: 64, height: 64, pixels: [UInt8](repeating: 128, count: 64 * 64 * 3))
        var seeds: [UInt64] = []
        var steps: [Int] = []
        var reconstructed = 0
        let report = try World.evaluate(options, candidates: { index, caption, seed in
            seeds.append(seed)
            let good = try (0..<(index % 4)).map { try World.render(caption: caption, seed: seed &+ UInt64($0)) }
            let bad = [RGBImage](repeating: blank, count: 4 - good.count)
            return (index % 2 == 0 ? good + bad : bad + good, true)
        }, reconstruct: { image in
            reconstructed += 1
            return reconstructed % 3 == 0 ? blank : image
        }, progress: { step, total in steps.append(step); XCTAssertEqual(total, 2 * 15 + 5); return true })

        let captions = World.evaluationCaptions(seed: 3, perTemplate: 3, perHeldOutPair: 2)
        XCTAssertEqual(captions.count, 15)
        XCTAssertEqual(seeds, (0..<15).map { options.captionSeed($0) })
        XCTAssertEqual(Set(seeds).count, 15)
        XCTAssertEqual(steps, Array(0...35))
        for group in World.EvaluationGroup.allCases {
            let indices = captions.indices.filter { captions[$0].group == group }
            let score = report.score(for: group)
            XCTAssertEqual(score.captions, indices.count, "\(group)")
            XCTAssertEqual(score.candidates, 4 * indices.count)
            XCTAssertEqual(score.passedCandidates, indices.reduce(0) { $0 + $1 % 4 }, "\(group)")
            XCTAssertEqual(score.passedAny, indices.filter { $0 % 4 > 0 }.count, "\(group)")
            XCTAssertEqual(score.passedBestByCLIP, indices.filter { $0 % 4 > 0 && $0 % 2 == 0 }.count, "\(group)")
        }
        XCTAssertEqual(report.total.passedCandidates, (0..<15).reduce(0) { $0 + $1 % 4 })
        XCTAssertEqual(reconstructed, 20)
        XCTAssertEqual(report.reconstructionImages, 20)
        XCTAssertEqual(report.reconstructionPassed, 20 - 20 / 3, "every rendering passes; the blanks fail")

        // Without candidates: no caption generated for, the same reconstructions judged.
        var alone = options
        alone.candidates = 0
        reconstructed = 0
        steps = []
        let reconstructionOnly = try World.evaluate(alone, candidates: { _, _, _ in
            XCTFail("no candidates are asked for")
            return ([], false)
        }, reconstruct: { image in
            reconstructed += 1
            return reconstructed % 3 == 0 ? blank : image
        }, progress: { step, total in steps.append(step); XCTAssertEqual(total, 15 + 5); return true })
        XCTAssertEqual(steps, Array(0...20))
        XCTAssertEqual(reconstructionOnly.total.captions, 0)
        XCTAssertEqual(reconstructionOnly.total.candidates, 0)
        XCTAssertEqual(reconstructionOnly.reconstructionImages, 20)
        XCTAssertEqual(reconstructionOnly.reconstructionPassed, report.reconstructionPassed)

        // Stopping: from the handler, and from the flag between candidates.
        XCTAssertThrowsError(try World.evaluate(options, candidates: { _, _, _ in ([blank], false) }, reconstruct: { $0 },
                                                progress: { step, _ in step < 3 })) { XCTAssertEqual($0 as? DalleError, .cancelled) }
        let flag = CancellationFlag()
        XCTAssertThrowsError(try World.evaluate(options, candidates: { _, _, _ in flag.request(); return ([blank], false) },
                                                reconstruct: { $0 }, cancellation: flag)) { XCTAssertEqual($0 as? DalleError, .cancelled) }
    }

    // MARK: the session on tiny random bundles

    func testSessionReportCountsAndInvariants() throws {
        let report = try session().evaluateShapesWorld(Self.small)
        XCTAssertEqual(World.EvaluationGroup.allCases.map { report.score(for: $0).captions }, [2, 2, 2, 3])
        XCTAssertEqual(report.total.captions, 9)
        XCTAssertEqual(report.total.candidates, 27)
        XCTAssertEqual(report.reconstructionImages, 2 + 9)
        XCTAssertTrue(report.hasCLIP)
        for score in report.groups + [report.total] {
            let best = try XCTUnwrap(score.passedBestByCLIP)
            XCTAssertLessThanOrEqual(best, score.passedAny)
            XCTAssertLessThanOrEqual(score.passedAny, score.captions)
            XCTAssertLessThanOrEqual(score.passedCandidates, score.candidates)
            XCTAssertLessThanOrEqual(score.averageRate ?? 2, score.anyOfNRate ?? -1, "average <= any of N")
        }
        let rate = try XCTUnwrap(report.reconstructionRate)
        XCTAssertTrue((0...1).contains(rate))
        XCTAssertTrue(report.table().contains("| all captions "))
    }

    func testSessionReportIsAFunctionOfTheOptionsAlone() throws {
        let one = try session(threads: 1).evaluateShapesWorld(Self.small)
        let two = try session(threads: 2).evaluateShapesWorld(Self.small)
        XCTAssertEqual(one, two)
    }

    /// Caption i's candidates are `generate`'s with `captionSeed(i)`, ranked by CLIP, and judged;
    /// the reconstructions are `encode` then `decode`, judged.
    func testSessionMatchesADirectComputation() throws {
        let options = World.EvaluationOptions(candidates: 2, seed: 4, perTemplate: 1, perHeldOutPair: 0, reconstructionSamples: 2)
        let session = try session()
        let report = try session.evaluateShapesWorld(options)
        let captions = World.evaluationCaptions(seed: 4, perTemplate: 1, perHeldOutPair: 0)
        var passedCandidates = 0, passedBest = 0
        for (i, item) in captions.enumerated() {
            let result = try session.generate(prompt: item.caption.text, options: GenerationOptions(count: 2, seed: options.captionSeed(i), keepBest: 2))
            XCTAssertEqual(result.scores.count, 2)
            let verdicts = try (0..<2).map { n in
                try World.judge(try RGBImage(width: 64, height: 64, pixels: Array(result.pixels[(n * 64 * 64 * 3)..<((n + 1) * 64 * 64 * 3)])),
                                caption: item.caption).passed
            }
            passedCandidates += verdicts.filter { $0 }.count
            passedBest += verdicts[0] ? 1 : 0
        }
        XCTAssertEqual(report.total.passedCandidates, passedCandidates)
        XCTAssertEqual(report.total.passedBestByCLIP, passedBest)

        var images = (0..<2).map { try? World.trainingSample(seed: options.reconstructionSeed, index: UInt64($0)) }.compactMap { $0 }
        images += try captions.enumerated().map { i, item in World.Sample(caption: item.caption, image: try World.render(caption: item.caption, seed: options.captionSeed(i))) }
        var passed = 0
        for sample in images {
            let tokens = try sample.image.withView { try session.encode([$0]) }
            let pixels = try tokens.withUnsafeBufferPointer { try session.decode(tokens: $0, count: 1) }
            if try World.judge(try RGBImage(width: 64, height: 64, pixels: pixels), caption: sample.caption).passed { passed += 1 }
        }
        XCTAssertEqual(report.reconstructionImages, images.count)
        XCTAssertEqual(report.reconstructionPassed, passed)
    }

    /// Without candidates a file with only the dVAE is evaluated: the full bundle's reconstructions,
    /// a table of the dVAE's row alone.
    func testWithoutCandidatesTheDVAEAloneIsMeasured() throws {
        var options = Self.small
        options.candidates = 0
        var totals: Set<Int> = []
        let alone = try session(Self.dvaeBundle).evaluateShapesWorld(options) { _, total in totals.insert(total); return true }
        XCTAssertEqual(totals, [2 + 9], "one step per reconstruction, none per caption")
        let full = try session().evaluateShapesWorld(Self.small)
        XCTAssertEqual(alone.reconstructionImages, 2 + 9)
        XCTAssertEqual(alone.reconstructionPassed, full.reconstructionPassed)
        XCTAssertEqual(alone.total.captions, 0)
        XCTAssertFalse(alone.hasCLIP)
        let table = alone.table()
        XCTAssertEqual(table.split(separator: "\n").count, 4, table)
        XCTAssertTrue(table.hasPrefix("| group               |  n | passed | target          |"), table)
        XCTAssertTrue(table.contains("| dVAE reconstruction | 11 |"), table)
        XCTAssertFalse(table.contains("all captions") || table.contains("CLIP component"), table)
        XCTAssertEqual(try session().evaluateShapesWorld(options).reconstructionPassed, full.reconstructionPassed)
        XCTAssertThrowsError(try session(Self.dvaeBundle).evaluateShapesWorld(Self.small)) {
            XCTAssertTrue("\($0)".contains("no transformer component"), "\($0)")
        }
    }

    func testWithoutCLIPRerankingIsNotApplicable() throws {
        let report = try session(Self.plainBundle).evaluateShapesWorld(Self.small)
        XCTAssertFalse(report.hasCLIP)
        XCTAssertNil(report.total.passedBestByCLIP)
        XCTAssertEqual(report.total.candidates, 27)
        XCTAssertTrue(report.table().contains("n/a"))
    }

    func testSessionErrorsAndCancel() throws {
        func assertError(_ session: DalleSession, _ expected: String, _ options: World.EvaluationOptions = EvaluationRunTests.small,
                         line: UInt = #line) {
            XCTAssertThrowsError(try session.evaluateShapesWorld(options), line: line) {
                XCTAssertTrue("\($0)".contains(expected), "\($0)", line: line)
            }
        }
        let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden").path
        assertError(try session(golden + "/dvae/model.safetensors"), "no transformer component")
        assertError(try session(golden + "/generate/model.safetensors"), "judges 64x64 images; this model's dvae makes 32x32")
        let session = try session()
        var options = Self.small
        options.candidates = -1
        assertError(session, "candidates is -1", options)
        options.candidates = GenerationOptions.maxCount + 1
        assertError(session, "candidates is 257", options)
        options = Self.small
        (options.perTemplate, options.perHeldOutPair) = (0, 0)
        assertError(session, "needs at least one caption", options)
        options = Self.small
        options.reconstructionSamples = -1
        assertError(session, "reconstruction samples is -1", options)
        options = Self.small
        options.sampling.temperature = 0
        assertError(session, "temperature is 0", options)

        XCTAssertThrowsError(try session.evaluateShapesWorld(Self.small) { step, _ in step < 2 }) {
            XCTAssertEqual($0 as? DalleError, .cancelled)
        }
        // cancel() between two captions is not lost when the next caption's generation starts.
        XCTAssertThrowsError(try session.evaluateShapesWorld(Self.small) { step, _ in
            if step == 1 { session.cancel() }
            XCTAssertLessThan(step, 2)
            return true
        }) { XCTAssertEqual($0 as? DalleError, .cancelled) }
        // The session works again afterwards.
        XCTAssertEqual(try session.evaluateShapesWorld(Self.small).total.captions, 9)
    }

    // MARK: C API

    func testCAPIReportMatchesTheSession() throws {
        var model: OpaquePointer?
        XCTAssertEqual(dalle_model_load_file(Self.clipBundle, nil, &model), dalle_status(DALLE_OK))
        defer { dalle_model_free(model) }
        var ctx: OpaquePointer?
        var contextParams = DalleCAPI.dalle_context_default_params()
        contextParams.n_threads = 2
        XCTAssertEqual(dalle_context_create(model, &contextParams, &ctx), dalle_status(DALLE_OK))
        defer { dalle_context_free(ctx) }

        let defaults = DalleCAPI.dalle_eval_default_params()
        XCTAssertEqual([defaults.candidates, defaults.per_template, defaults.per_held_out_pair, defaults.reconstruction_samples], [8, 50, 10, 200])
        XCTAssertEqual(defaults.seed, 0)
        XCTAssertEqual(defaults.likelihood_weight, DALLE_LIKELIHOOD_WEIGHT_MODEL)  // the model's weight, as the CLI and Python use
        var params = defaults
        (params.candidates, params.seed, params.per_template, params.per_held_out_pair, params.reconstruction_samples) = (3, 9, 2, 1, 2)
        var report = dalle_eval_report()
        report.struct_size = UInt32(MemoryLayout<dalle_eval_report>.size)
        XCTAssertEqual(dalle_shapes_eval(ctx, &params, &report), dalle_status(DALLE_OK), String(cString: dalle_context_last_error(ctx)))
        let expected = try session().evaluateShapesWorld(Self.small)
        func check(_ group: dalle_eval_group, _ score: World.GroupScore, line: UInt = #line) {
            XCTAssertEqual([Int(group.captions), Int(group.candidates), Int(group.passed_best_by_clip), Int(group.passed_candidates), Int(group.passed_any)],
                           [score.captions, score.candidates, score.passedBestByCLIP ?? -1, score.passedCandidates, score.passedAny], line: line)
        }
        check(report.one_object, expected.score(for: .single))
        check(report.counting, expected.score(for: .counting))
        check(report.relation, expected.score(for: .relation))
        check(report.held_out, expected.score(for: .heldOut))
        check(report.total, expected.total)
        XCTAssertEqual(report.has_clip, 1)
        XCTAssertEqual(Int(report.reconstruction_images), expected.reconstructionImages)
        XCTAssertEqual(Int(report.reconstruction_passed), expected.reconstructionPassed)
        var reconstructionsOnly = params
        reconstructionsOnly.candidates = 0
        XCTAssertEqual(dalle_shapes_eval(ctx, &reconstructionsOnly, &report), dalle_status(DALLE_OK))
        XCTAssertEqual([report.total.captions, report.total.candidates, report.has_clip], [0, 0, 0])
        XCTAssertEqual(Int(report.reconstruction_images), expected.reconstructionImages)
        XCTAssertEqual(Int(report.reconstruction_passed), expected.reconstructionPassed)

        // Errors: NULL report, bad struct_size, bad params, cancel from the callback (report zeroed).
        XCTAssertEqual(dalle_shapes_eval(ctx, &params, nil), dalle_status(DALLE_INVALID_ARGUMENT))
        var bad = dalle_eval_report()
        XCTAssertEqual(dalle_shapes_eval(ctx, &params, &bad), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("out_report->struct_size is 0"))
        var tooMany = params
        tooMany.candidates = 1000
        XCTAssertEqual(dalle_shapes_eval(ctx, &tooMany, &report), dalle_status(DALLE_INVALID_ARGUMENT))
        XCTAssertEqual(report.total.captions, 0, "zeroed on failure")
        var small = params
        small.struct_size = 8
        XCTAssertEqual(dalle_shapes_eval(ctx, &small, &report), dalle_status(DALLE_INVALID_ARGUMENT))
        var cancelling = params
        cancelling.progress = { _, step, _, _ -> Bool in step < 1 }
        XCTAssertEqual(dalle_shapes_eval(ctx, &cancelling, &report), dalle_status(DALLE_CANCELLED))
        XCTAssertEqual(dalle_shapes_eval(nil, &params, &report), dalle_status(DALLE_INVALID_ARGUMENT))
    }
}
