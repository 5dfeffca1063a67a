import XCTest
@testable import DalleCore

/// The training loop: learning, exact resume from checkpoints, bundle assembly, and errors.
final class TrainerTests: XCTestCase {
    let pool = ThreadPool(threads: 2)
    static let dvaeConfig = DVAEConfig(imageSize: 16, groupCount: 2, hiddenChannels: 8, blocksPerGroup: 1,
                                       inputChannels: 3, outputChannels: 3, vocabSize: 16, initChannels: 8)

    func temporaryPath(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "/dalle-trainer-\(getpid())-\(name).safetensors"
        try? FileManager.default.removeItem(atPath: path)
        return path
    }

    func shapes(size: Int = 16) throws -> TrainingSplit {
        try ShapesWorldSource(seed: 3, imageSize: size).trainingAndValidation(validationCount: 8)
    }

    func options(steps: Int) -> TrainingOptions {
        var o = TrainingOptions()
        o.steps = steps
        o.batchSize = 4
        o.warmupSteps = 2
        o.validationCount = 4
        o.validateEvery = 0
        o.checkpointEvery = 0
        o.seed = 11
        return o
    }

    func testInterruptedRunResumesExactly() throws {
        let data = try shapes()
        let straight = try Trainer(stage: DVAEStage(model: TrainableDVAE(config: Self.dvaeConfig, seed: 1), seed: 5),
                                   training: data.training, validation: data.validation, options: options(steps: 6), pool: pool)
        try straight.run(checkpointPath: nil) { _ in true }

        let path = temporaryPath("resume")
        let first = try Trainer(stage: DVAEStage(model: TrainableDVAE(config: Self.dvaeConfig, seed: 1), seed: 5),
                                training: data.training, validation: data.validation, options: options(steps: 6), pool: pool)
        let finished = try first.run(checkpointPath: path) { $0.step < 3 }  // "interrupted" after step 3
        XCTAssertFalse(finished)
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.metadata["training.step"], "3")
        let stage = try TrainingSetup.stage("dvae", config: file.metadata, checkpoint: file, seed: 5, tokenizer: nil, imageTokenizer: nil, pool: pool)
        let resumed = try Trainer(stage: stage, training: data.training, validation: data.validation, options: options(steps: 6), pool: pool)
        try resumed.resume(from: file)
        XCTAssertEqual(resumed.step, 3)
        try resumed.run(checkpointPath: path) { _ in true }
        XCTAssertEqual(resumed.stage.parameters.tensors, straight.stage.parameters.tensors, "resumed run differs from the straight run")

        // A checkpoint is a loadable model, and resuming with other options is refused.
        XCTAssertNoThrow(try DalleModel(path: path))
        var other = options(steps: 6)
        other.batchSize = 5
        let mismatched = try Trainer(stage: stage, training: data.training, validation: data.validation, options: other, pool: pool)
        XCTAssertThrowsError(try mismatched.resume(from: SafetensorsFile(path: path)))
    }

    func testEveryStageLearnsAndTheBundleGenerates() throws {
        let data = try shapes()
        // A fixed small dataset of four examples, seen over and over.
        let four = try TrainingSubset(base: data.training, indices: [0, 1, 2, 3]).trainingAndValidation(validationCount: 1)
        let tokenizer = try TrainingSetup.trainTokenizer(data.training, vocabularySize: 560, captionLimit: 500)
        let tokenizerPath = temporaryPath("tokenizer")
        try TrainingSetup.writeTokenizer(tokenizer, to: tokenizerPath)

        var paths = [tokenizerPath]
        var stages: [(String, [String: String])] = [
            ("dvae", Self.dvaeConfig.metadata),
            ("transformer", ["transformer.dim": "16", "transformer.depth": "1", "transformer.heads": "2", "transformer.dim_head": "8",
                             "transformer.text_seq_len": "12", "transformer.rotary_emb": "false", "transformer.shift_tokens": "false"]),
            ("clip", CLIPConfig(embedDim: 8, imageResolution: 16, visionPatchSize: 8, visionWidth: 16, visionLayers: 1, visionHeads: 2,
                                contextLength: 16, vocabSize: 0, textWidth: 16, textLayers: 1, textHeads: 2).metadata),
        ]
        var imageTokenizer: ImageTokenizer? = nil
        for (name, config) in stages {
            let stage = try TrainingSetup.stage(name, config: config, checkpoint: nil, seed: 2, tokenizer: tokenizer,
                                                imageTokenizer: imageTokenizer, pool: pool)
            var o = options(steps: 40)
            o.learningRate = 3e-3
            let trainer = try Trainer(stage: stage, training: four.training, validation: four.validation, options: o, pool: pool)
            let examples = try (0..<3).map { try four.training.example(at: $0) }
            let before = try stage.evaluate(examples, pool: pool)
            let path = temporaryPath(name)
            try trainer.run(checkpointPath: path) { _ in true }
            let after = try stage.evaluate(examples, pool: pool)
            XCTAssertLessThan(after, before - 0.05, "\(name): loss \(before) → \(after)")
            paths.append(path)
            if name == "dvae" { imageTokenizer = try DalleModel(path: path).requireImageTokenizer() }
        }
        stages.removeAll()

        let bundlePath = temporaryPath("bundle")
        try TrainingSetup.assembleBundle(try paths.map { try SafetensorsFile(path: $0) }, dtype: .f16, to: bundlePath)
        let bundle = try SafetensorsFile(path: bundlePath)
        XCTAssertFalse(bundle.names.contains { $0.hasPrefix("optimizer.") })
        XCTAssertEqual(bundle.metadata["components"], "tokenizer,dvae,transformer,clip")
        let session = try DalleSession(model: DalleModel(path: bundlePath), threads: 2)
        let images = try session.generate(prompt: "a red circle", options: GenerationOptions(count: 4, seed: 1, keepBest: 2))
        XCTAssertEqual(images.count, 2)
        XCTAssertEqual(images.pixels.count, 2 * 16 * 16 * 3)
        XCTAssertEqual(session.model.condScale, 1)

        // Each component comes from the first part that holds it: a CLIP listed before a bundle replaces its CLIP.
        let bundled = try SafetensorsFile(path: bundlePath)
        let clipNames = bundled.names.filter { $0.hasPrefix("clip.") }
        var otherClip = SafetensorsWriter()
        otherClip.metadata = bundled.metadata.filter { $0.key.hasPrefix("clip.") }
        otherClip.metadata["components"] = "clip"
        for name in clipNames {
            let t = try bundled.tensor(name)
            try otherClip.add(name, Tensor(uncheckedShape: t.shape, scalars: t.scalars.map { $0 * 0.5 }), as: .f16)
        }
        let otherClipPath = temporaryPath("other-clip"), swapped = temporaryPath("swapped")
        try otherClip.write(to: otherClipPath)
        for (parts, clipSource) in [([otherClipPath, bundlePath], otherClipPath), ([bundlePath, otherClipPath], bundlePath)] {
            try TrainingSetup.assembleBundle(try parts.map { try SafetensorsFile(path: $0) }, dtype: .f16, to: swapped)
            let result = try SafetensorsFile(path: swapped), expected = try SafetensorsFile(path: clipSource)
            XCTAssertEqual(result.metadata["components"], "tokenizer,dvae,transformer,clip")
            for name in bundled.names {
                let source = name.hasPrefix("clip.") ? expected : bundled
                XCTAssertEqual(try result.bytes(name), try source.bytes(name), name)
            }
        }

        // The recommended guidance scale: written by the bundle, kept by a re-bundle, refused without a transformer.
        let guided = temporaryPath("guided"), rebundled = temporaryPath("rebundled")
        try TrainingSetup.assembleBundle([try SafetensorsFile(path: bundlePath)], dtype: .f16, to: guided, condScale: 2.5)
        XCTAssertEqual(try DalleModel(path: guided).condScale, 2.5)
        try TrainingSetup.assembleBundle([try SafetensorsFile(path: guided)], dtype: .f16, to: rebundled)
        XCTAssertEqual(try DalleModel(path: rebundled).condScale, 2.5)
        XCTAssertThrowsError(try TrainingSetup.assembleBundle([try SafetensorsFile(path: paths[1])], dtype: .f16, to: rebundled, condScale: 2))
        var metadata = try SafetensorsFile(path: guided).metadata
        metadata[DalleModel.condScaleKey] = "strong"
        XCTAssertThrowsError(try DalleModel(metadata: metadata, weights: SafetensorsFile(path: guided))) {
            XCTAssertTrue("\($0)".contains("transformer.cond_scale"), "\($0)")
        }
        // The reranking likelihood weight likewise; it must not be negative.
        XCTAssertEqual(try DalleModel(path: guided).likelihoodWeight, 0)
        try TrainingSetup.assembleBundle([try SafetensorsFile(path: guided)], dtype: .f16, to: rebundled, likelihoodWeight: 5)
        XCTAssertEqual(try DalleModel(path: rebundled).likelihoodWeight, 5)
        XCTAssertEqual(try DalleModel(path: rebundled).condScale, 2.5)
        XCTAssertThrowsError(try TrainingSetup.assembleBundle([try SafetensorsFile(path: guided)], dtype: .f16, to: rebundled, likelihoodWeight: -1)) {
            XCTAssertTrue("\($0)".contains("likelihood_weight is -1.0"), "\($0)")
        }
        XCTAssertThrowsError(try TrainingSetup.assembleBundle([try SafetensorsFile(path: paths[1])], dtype: .f16, to: rebundled, likelihoodWeight: 5))
        for bad in ["-1", "heavy"] {
            metadata = try SafetensorsFile(path: guided).metadata
            metadata[DalleModel.likelihoodWeightKey] = bad
            XCTAssertThrowsError(try DalleModel(metadata: metadata, weights: SafetensorsFile(path: guided))) {
                XCTAssertTrue("\($0)".contains("transformer.likelihood_weight"), "\($0)")
            }
        }
    }

    /// The transformer trains a batch as micro-batches side by side: the same loss and gradient as
    /// one pass over the whole batch (up to summation order), bit for bit the same for any thread count.
    func testTransformerMicroBatchesMatchOnePassForAnyThreadCount() throws {
        let data = try shapes()
        let examples = try (0..<19).map { try data.training.example(at: $0) }  // 10 micro-batches, the last of one
        let tokenizer = try TrainingSetup.trainTokenizer(data.training, vocabularySize: 560, captionLimit: 300)
        let dvae = try DVAE(config: Self.dvaeConfig, weights: InMemoryWeights(TrainableDVAE(config: Self.dvaeConfig, seed: 1).parameters.tensors))
        let config = ["transformer.dim": "16", "transformer.depth": "2", "transformer.heads": "2", "transformer.dim_head": "8",
                      "transformer.text_seq_len": "12", "transformer.shift_tokens": "true"]
        try checkMicroBatchesMatchOnePass(examples, step: 0, totalSteps: 1) { pool in
            try TrainingSetup.stage("transformer", config: config, checkpoint: nil, seed: 2, tokenizer: tokenizer, imageTokenizer: dvae, pool: pool)
        }
    }

    /// So does the dVAE, its batch-wide codebook-usage term included (on throughout here), with
    /// Gumbel noise and the KL term at work.
    func testDVAEMicroBatchesMatchOnePassForAnyThreadCount() throws {
        let data = try shapes()
        let examples = try (0..<7).map { try data.training.example(at: $0) }  // 4 micro-batches, the last of one
        try checkMicroBatchesMatchOnePass(examples, step: 5, totalSteps: 10) { _ in
            // Random logit weights (the hashed start), so that every encoder parameter has a gradient.
            let stage = try DVAEStage(model: TrainableDVAE(config: Self.dvaeConfig, seed: 1, initialisation: .init(logitStd: 1)), seed: 5)
            (stage.usageWeight, stage.usageFloor) = (1, .infinity)
            return stage
        }
    }

    /// So does CLIP, whose towers run as micro-batches and whose contrastive loss couples the
    /// whole batch, hard negatives (a judged candidate set's failing images) included.
    func testCLIPMicroBatchesMatchOnePassForAnyThreadCount() throws {
        let data = try shapes()
        let tokenizer = try TrainingSetup.trainTokenizer(data.training, vocabularySize: 560, captionLimit: 200)
        let plain = try (0..<11).map { try data.training.example(at: $0) }
        // 11 captions + 4 near-miss captions, 11 images + 6 failing ones: tower micro-batches of 8, the last ones partial.
        let examples = plain.enumerated().map { k, example in
            TrainingExample(caption: example.caption, image: example.image, negatives: k < 3 ? [plain[k + 3].image, plain[k + 6].image] : [],
                            negativeCaptions: k % 3 == 0 ? [plain[k + 1].caption] : [])
        }
        let config = CLIPConfig(embedDim: 8, imageResolution: 16, visionPatchSize: 8, visionWidth: 16, visionLayers: 1, visionHeads: 2,
                                contextLength: 16, vocabSize: 0, textWidth: 16, textLayers: 1, textHeads: 2).metadata
        try checkMicroBatchesMatchOnePass(examples, step: 0, totalSteps: 1) { pool in
            try TrainingSetup.stage("clip", config: config, checkpoint: nil, seed: 2, tokenizer: tokenizer, imageTokenizer: nil, pool: pool)
        }
    }

    /// `makeStage`'s `lossAndGradients` on 1 and 3 threads (bit for bit the same) against one tape
    /// over the whole batch (the same up to summation order).
    private func checkMicroBatchesMatchOnePass(_ examples: [TrainingExample], step: Int, totalSteps: Int,
                                               makeStage: (ThreadPool) throws -> TrainingStage) throws {
        func gradients(threads: Int?) throws -> (loss: Float, values: [Float], gradients: [[Float]]) {
            let pool = ThreadPool(threads: threads ?? 1)
            let stage = try makeStage(pool)
            let loss: Float, values: [(String, Float)]
            if threads != nil {
                (loss, values) = try stage.lossAndGradients(examples, step: step, totalSteps: totalSteps, pool: pool)
            } else {  // one tape over the whole batch
                let tape = Tape(pool: pool)
                let (variable, named) = try stage.loss(tape, examples: examples, step: step, totalSteps: totalSteps)
                tape.backward(from: variable)
                (loss, values) = (variable.value[0], named)
            }
            return (loss, values.map(\.1), stage.parameters.all.map(\.variable.grad))
        }
        let one = try gradients(threads: 1), three = try gradients(threads: 3), whole = try gradients(threads: nil)
        XCTAssertEqual(one.loss, three.loss)
        XCTAssertEqual(one.values, three.values)
        XCTAssertEqual(one.gradients, three.gradients, "the gradient depends on the thread count")
        XCTAssertEqual(one.loss, whole.loss, accuracy: 1e-5 * abs(whole.loss))
        for (a, b) in zip(one.values, whole.values) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(abs(b), 1e-3)) }
        XCTAssertEqual(one.gradients.count, whole.gradients.count)
        for (a, b) in zip(one.gradients, whole.gradients) {
            XCTAssertEqual(a.count, b.count)
            let scale = b.map(abs).max() ?? 0
            XCTAssertGreaterThan(scale, 0)
            for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-4 * scale) }
        }
    }

    func testNoiselessStraightThroughDecodesTheArgmaxCodes() throws {
        let data = try shapes(), examples = try (0..<4).map { try data.training.example(at: $0) }
        let stage = try DVAEStage(model: TrainableDVAE(config: Self.dvaeConfig, seed: 1), seed: 5)
        (stage.noiseScale, stage.hardFraction, stage.fixedScaleFraction) = (0, 0, 0)
        let inference = try stage.validationLoss(examples, pool: pool)
        for step in [0, 7] {
            let (_, terms) = try stage.loss(Tape(pool: pool), examples: examples, step: step, totalSteps: 10)
            let nll = try XCTUnwrap(terms.first { $0.0 == "nll" }?.1)
            XCTAssertEqual(nll, inference, accuracy: 1e-4 * max(1, abs(inference)), "the decoder reads the codes inference gives")
        }
        stage.noiseScale = 1
        let (_, noisy) = try stage.loss(Tape(pool: pool), examples: examples, step: 7, totalSteps: 10)
        XCTAssertNotEqual(try XCTUnwrap(noisy.first { $0.0 == "nll" }?.1), inference, accuracy: 1e-4, "Gumbel noise changes the codes")
    }

    func testFrozenParametersStayAndTheRestLearns() throws {
        let data = try shapes()
        let prefixes = ["dvae.encoder.blocks.input.", "dvae.decoder."]
        var o = options(steps: 3)
        o.frozenPrefixes = prefixes
        let stage = try DVAEStage(model: TrainableDVAE(config: Self.dvaeConfig, seed: 1), seed: 5)
        let before = stage.parameters.tensors
        let path = temporaryPath("frozen")
        try Trainer(stage: stage, training: data.training, validation: data.validation, options: o, pool: pool)
            .run(checkpointPath: path) { _ in true }
        let after = stage.parameters.tensors
        for name in stage.parameters.names {
            if prefixes.contains(where: { name.hasPrefix($0) }) {
                XCTAssertEqual(after[name], before[name], "\(name) is frozen but changed")
            }
        }
        XCTAssertTrue(stage.parameters.names.contains { name in !prefixes.contains { name.hasPrefix($0) } && after[name] != before[name] })
        XCTAssertTrue(stage.parameters.names.contains { $0.hasPrefix(prefixes[1]) })
        for (name, v) in stage.parameters.all {  // frozen ones are constants to the tape: no backward through them
            XCTAssertEqual(v.requiresGrad, !prefixes.contains { name.hasPrefix($0) }, name)
        }

        // Resuming needs the same frozen set; a prefix that names nothing is refused.
        let file = try SafetensorsFile(path: path)
        XCTAssertEqual(file.metadata["training.frozen"], prefixes.joined(separator: ","))
        XCTAssertThrowsError(try Trainer(stage: stage, training: data.training, validation: data.validation, options: options(steps: 3), pool: pool)
            .resume(from: file)) { XCTAssertTrue("\($0)".contains("frozen"), "\($0)") }
        XCTAssertTrue(stage.parameters.all.allSatisfy { $0.1.requiresGrad }, "a run without --freeze trains every parameter")
        o.frozenPrefixes = ["clip.transformer."]
        XCTAssertThrowsError(try Trainer(stage: stage, training: data.training, validation: data.validation, options: o, pool: pool)) {
            XCTAssertTrue("\($0)".contains("no parameter of the dvae starts with 'clip.transformer.'"), "\($0)")
        }
    }

    func testCaptionDropoutEmptiesASeededShareOfCaptions() throws {
        let data = try shapes()
        let tokenizer = try TrainingSetup.trainTokenizer(data.training, vocabularySize: 560, captionLimit: 200)
        let dvae = try DVAE(config: Self.dvaeConfig, weights: InMemoryWeights(TrainableDVAE(config: Self.dvaeConfig, seed: 1).parameters.tensors))
        func stage() throws -> TrainingStage {
            try TrainingSetup.stage("transformer", config: ["transformer.dim": "16", "transformer.depth": "1", "transformer.heads": "2",
                                                            "transformer.dim_head": "8", "transformer.text_seq_len": "12", "transformer.rotary_emb": "false",
                                                            "transformer.shift_tokens": "false"],
                                    checkpoint: nil, seed: 2, tokenizer: tokenizer, imageTokenizer: dvae, pool: pool)
        }
        var o = options(steps: 50)
        o.captionDropout = 0.25
        let trainer = try Trainer(stage: stage(), training: data.training, validation: data.validation, options: o, pool: pool)
        let batches = try (0..<50).map { try trainer.batch(at: $0) }
        let dropped = batches.joined().filter { $0.caption.isEmpty }.count
        XCTAssertEqual(Double(dropped) / 200, 0.25, accuracy: 0.08, "\(dropped) of 200 captions dropped")
        XCTAssertEqual(try trainer.batch(at: 7), batches[7], "a step's batch is a function of the step alone")
        let plain = try Trainer(stage: stage(), training: data.training, validation: data.validation, options: options(steps: 50), pool: pool)
        XCTAssertFalse(try (0..<50).contains { try plain.batch(at: $0).contains { $0.caption.isEmpty } })
        for (k, example) in batches[7].enumerated() where !example.caption.isEmpty {
            XCTAssertEqual(example, try plain.batch(at: 7)[k])
        }
        try trainer.run(checkpointPath: nil) { $0.step < 2 }

        let clip = try TrainingSetup.stage("clip", config: CLIPConfig(embedDim: 8, imageResolution: 16, visionPatchSize: 8, visionWidth: 16,
                                                                    visionLayers: 1, visionHeads: 2, contextLength: 16, vocabSize: 0,
                                                                    textWidth: 16, textLayers: 1, textHeads: 2).metadata,
                                           checkpoint: nil, seed: 2, tokenizer: tokenizer, imageTokenizer: nil, pool: pool)
        XCTAssertThrowsError(try Trainer(stage: clip, training: data.training, validation: data.validation, options: o, pool: pool)) {
            XCTAssertTrue("\($0)".contains("caption dropout is for the transformer"), "\($0)")
        }
        o.captionDropout = 1
        XCTAssertThrowsError(try o.validate())
    }

    func testCaptionNegativesGiveCLIPNearMissCaptions() throws {
        let data = try shapes()
        let tokenizer = try TrainingSetup.trainTokenizer(data.training, vocabularySize: 560, captionLimit: 200)
        func clip() throws -> TrainingStage {
            try TrainingSetup.stage("clip", config: CLIPConfig(embedDim: 8, imageResolution: 16, visionPatchSize: 8, visionWidth: 16,
                                                               visionLayers: 1, visionHeads: 2, contextLength: 16, vocabSize: 0,
                                                               textWidth: 16, textLayers: 1, textHeads: 2).metadata,
                                    checkpoint: nil, seed: 2, tokenizer: tokenizer, imageTokenizer: nil, pool: pool)
        }
        var o = options(steps: 20)
        o.captionNegatives = 2
        let trainer = try Trainer(stage: clip(), training: data.training, validation: data.validation, options: o, pool: pool)
        let plain = try Trainer(stage: clip(), training: data.training, validation: data.validation, options: options(steps: 20), pool: pool)
        for step in [0, 7] {
            let batch = try trainer.batch(at: step), plainBatch = try plain.batch(at: step)
            XCTAssertEqual(try trainer.batch(at: step), batch, "a step's batch is a function of the step alone")
            for (k, example) in batch.enumerated() {
                let position = UInt64(step * o.batchSize + k)
                XCTAssertEqual(example.negativeCaptions,
                               ShapesWorld.nearMissCaptions(of: example.caption, count: 2, seed: o.seed, index: position))
                XCTAssertFalse(example.negativeCaptions.isEmpty)
                XCTAssertEqual(plainBatch[k].negativeCaptions, [])
                XCTAssertEqual(TrainingExample(caption: example.caption, image: example.image, negatives: example.negatives), plainBatch[k])
            }
        }
        let examples = try trainer.batch(at: 0)
        let withNegatives = try trainer.stage.lossAndGradients(examples, step: 0, totalSteps: 20, pool: pool).0
        let without = try plain.stage.lossAndGradients(examples.map { TrainingExample(caption: $0.caption, image: $0.image) },
                                                        step: 0, totalSteps: 20, pool: pool).0
        XCTAssertGreaterThan(withNegatives, without, "more captions in each image's softmax")
        try trainer.run(checkpointPath: nil) { $0.step < 2 }

        let tokenizerStage = try TrainingSetup.stage("dvae", config: Self.dvaeConfig.metadata, checkpoint: nil, seed: 2, tokenizer: nil,
                                                     imageTokenizer: nil, pool: pool)
        XCTAssertThrowsError(try Trainer(stage: tokenizerStage, training: data.training, validation: data.validation, options: o, pool: pool)) {
            XCTAssertTrue("\($0)".contains("caption negatives are for the clip stage"), "\($0)")
        }
        o.captionNegatives = 9
        XCTAssertThrowsError(try o.validate())
    }

    func testCLIPWithADVAETrainsOnItsReconstructions() throws {
        let data = try shapes()
        let tokenizer = try TrainingSetup.trainTokenizer(data.training, vocabularySize: 560, captionLimit: 200)
        let dvae = try DVAE(config: Self.dvaeConfig, weights: InMemoryWeights(TrainableDVAE(config: Self.dvaeConfig, seed: 1).parameters.tensors))
        let config = CLIPConfig(embedDim: 8, imageResolution: 16, visionPatchSize: 8, visionWidth: 16, visionLayers: 1, visionHeads: 2,
                                contextLength: 16, vocabSize: 0, textWidth: 16, textLayers: 1, textHeads: 2).metadata
        let stage = try XCTUnwrap(try TrainingSetup.stage("clip", config: config, checkpoint: nil, seed: 2, tokenizer: tokenizer,
                                                          imageTokenizer: dvae, pool: pool) as? CLIPStage)
        let examples = try (0..<3).map { try data.training.example(at: $0) }
        let expected = try ImageConversion.rgbImages(try dvae.decode(tokens: try dvae.encode(try pixelTensor(examples, size: 16), pool: pool),
                                                                     count: 3, pool: pool))
        XCTAssertEqual(try stage.images(examples), expected)
        XCTAssertNotEqual(expected, examples.map(\.image))
        let plain = try XCTUnwrap(try TrainingSetup.stage("clip", config: config, checkpoint: nil, seed: 2, tokenizer: tokenizer,
                                                          imageTokenizer: nil, pool: pool) as? CLIPStage)
        XCTAssertEqual(try plain.images(examples), examples.map(\.image))
        XCTAssertNotEqual(try stage.evaluate(examples, pool: pool), try plain.evaluate(examples, pool: pool))
    }

    func testBadOptionsAndStages() throws {
        var o = TrainingOptions()
        o.steps = 0
        XCTAssertThrowsError(try o.validate())
        o = TrainingOptions()
        o.learningRate = .nan
        XCTAssertThrowsError(try o.validate())
        XCTAssertThrowsError(try TrainingSetup.stage("vqgan", config: [:], checkpoint: nil, seed: 0, tokenizer: nil, imageTokenizer: nil, pool: pool))
        XCTAssertThrowsError(try TrainingSetup.stage("transformer", config: TrainingSetup.defaults("transformer"), checkpoint: nil, seed: 0,
                                                     tokenizer: nil, imageTokenizer: nil, pool: pool))
        var sandwich = TrainingSetup.defaults("transformer")
        sandwich["transformer.sandwich_norm"] = "true"
        sandwich["transformer.num_text_tokens"] = "10"; sandwich["transformer.num_image_tokens"] = "8"; sandwich["transformer.image_fmap_size"] = "2"
        XCTAssertThrowsError(try TrainableTransformer(config: TransformerConfig(metadata: sandwich), seed: 0)) { error in
            XCTAssertTrue("\(error)".contains("sandwich_norm"), "\(error)")
        }
    }

    func testSchedules() {
        let s = LearningRateSchedule(peak: 1, warmupSteps: 10, totalSteps: 110, finalRatio: 0.1)
        XCTAssertEqual(s.rate(at: 0), 0.1, accuracy: 1e-6)
        XCTAssertEqual(s.rate(at: 9), 1, accuracy: 1e-6)
        XCTAssertEqual(s.rate(at: 60), 0.55, accuracy: 1e-6)
        XCTAssertEqual(s.rate(at: 110), 0.1, accuracy: 1e-6)
        let stage = DVAEStage(model: try! TrainableDVAE(config: Self.dvaeConfig, seed: 0), seed: 0)
        XCTAssertEqual(stage.temperature(step: 0, totalSteps: 100), 1, accuracy: 1e-6)
        XCTAssertEqual(stage.temperature(step: 60, totalSteps: 100), 1.0 / 16, accuracy: 1e-6)
        XCTAssertEqual(stage.klWeight(step: 5, totalSteps: 100), 3.3, accuracy: 1e-5)
        XCTAssertEqual(stage.klWeight(step: 90, totalSteps: 100), 6.6, accuracy: 1e-5)
    }
}
