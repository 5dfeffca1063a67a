extension ShapesWorld {
    /// A model's own candidates for Shapes World training captions, each judged: training data
    /// for a reranker that has to tell a right candidate from a near one (`dalle candidates`,
    /// then `dalle train --stage clip --data FILE`; see `CandidateSetSource`). Stored as
    /// safetensors: "candidates" U8 [N, K, S, S, 3], "passed" U8 [N, K] (1 = the judge passed it),
    /// "references" U8 [N, S, S, 3] and the captions, one per line, in the metadata.
    public struct CandidateSet: Sendable, Equatable {
        public var captions: [String]
        /// captions.count lists of K images each.
        public var candidates: [[RGBImage]]
        /// The judge's verdict on each candidate.
        public var passed: [[Bool]]
        /// Per caption, the dVAE's reconstruction of one rendering of it: a right picture with the
        /// decoder's artefacts, for captions without a passing candidate.
        public var references: [RGBImage]

        /// The file's format marker (metadata key "format").
        public static let format = "libdalle.shapes-candidates"

        /// Throws unless the lists agree in length and every image is the same square size.
        public init(captions: [String], candidates: [[RGBImage]], passed: [[Bool]], references: [RGBImage]) throws {
            guard !captions.isEmpty, candidates.count == captions.count, passed.count == captions.count,
                  references.count == captions.count else {
                throw DalleError.invalidArgument("a candidate set needs one list of candidates, verdicts and a reference per caption, "
                    + "and at least one caption")
            }
            let k = candidates[0].count, size = references[0].width
            guard k >= 1, candidates.allSatisfy({ $0.count == k }), zip(candidates, passed).allSatisfy({ $0.count == $1.count }),
                  (candidates.joined() + references).allSatisfy({ $0.width == size && $0.height == size }),
                  !captions.contains(where: { $0.contains("\n") }) else {
                throw DalleError.invalidArgument("a candidate set needs the same number of candidates for every caption, "
                    + "one verdict per candidate, square images of one size and one-line captions")
            }
            self.captions = captions
            self.candidates = candidates
            self.passed = passed
            self.references = references
        }

        /// The sets one after another (sets made in shards: `dalle candidates` with different
        /// seeds); throws unless they have the same candidates per caption and image size.
        public init(joining sets: [CandidateSet]) throws {
            guard let first = sets.first else { throw DalleError.invalidArgument("no candidate sets to join") }
            for (i, set) in sets.enumerated() where set.candidatesPerCaption != first.candidatesPerCaption || set.imageSize != first.imageSize {
                throw DalleError.invalidArgument("candidate set \(i + 1) has \(set.candidatesPerCaption) candidates of \(set.imageSize)x\(set.imageSize) "
                    + "per caption; the first has \(first.candidatesPerCaption) of \(first.imageSize)x\(first.imageSize)")
            }
            try self.init(captions: sets.flatMap(\.captions), candidates: sets.flatMap(\.candidates),
                          passed: sets.flatMap(\.passed), references: sets.flatMap(\.references))
        }

        public var imageSize: Int { references[0].width }
        public var candidatesPerCaption: Int { candidates[0].count }

        /// The set as a safetensors file.
        public func write(to path: String) throws {
            var writer = SafetensorsWriter()
            let n = captions.count, k = candidatesPerCaption, s = imageSize
            try writer.add("candidates", bytes: candidates.joined().flatMap(\.pixels), dtype: .u8, shape: [n, k, s, s, 3])
            try writer.add("passed", bytes: passed.joined().map { $0 ? 1 : 0 }, dtype: .u8, shape: [n, k])
            try writer.add("references", bytes: references.flatMap(\.pixels), dtype: .u8, shape: [n, s, s, 3])
            writer.metadata = ["format": Self.format, "captions": captions.joined(separator: "\n")]
            try writer.write(to: path)
        }

        /// Reads a set `write` made; throws `badFile` for anything else.
        public init(path: String) throws {
            let file = try SafetensorsFile(path: path)
            func bad(_ what: String) -> DalleError { .badFile("\(path) is not a libdalle candidate set: \(what)") }
            guard file.metadata["format"] == Self.format, let text = file.metadata["captions"] else {
                throw bad("no \"format\": \"\(Self.format)\" and captions in its metadata")
            }
            let captions = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let n = captions.count
            guard let shape = file.info("candidates")?.shape, shape.count == 5, shape[0] == n, shape[1] >= 1,
                  shape[2] >= 1, shape[2] <= 4096, shape[3] == shape[2], shape[4] == 3,
                  file.info("candidates")?.dtype == .u8,
                  file.info("passed") == TensorInfo(dtype: .u8, shape: [n, shape[1]]),
                  file.info("references") == TensorInfo(dtype: .u8, shape: [n, shape[2], shape[2], 3]) else {
                throw bad("it needs U8 tensors candidates [N, K, S, S, 3], passed [N, K] and references [N, S, S, 3] "
                    + "for its \(n) captions")
            }
            let k = shape[1], s = shape[2], bytes = s * s * 3
            let pixels = try file.bytes("candidates"), verdicts = try file.bytes("passed"), references = try file.bytes("references")
            func image(_ data: [UInt8], _ i: Int) throws -> RGBImage {
                try RGBImage(width: s, height: s, pixels: Array(data[(i * bytes)..<((i + 1) * bytes)]))
            }
            try self.init(captions: captions,
                          candidates: try (0..<n).map { c in try (0..<k).map { try image(pixels, c * k + $0) } },
                          passed: (0..<n).map { c in (0..<k).map { verdicts[c * k + $0] != 0 } },
                          references: try (0..<n).map { try image(references, $0) })
        }
    }
}

extension DalleSession {
    /// `count` candidates for each of the first `captions` captions of the Shapes World training
    /// stream `seed` (held-out pairs never among them), judged, with the dVAE's reconstruction of
    /// each caption's training rendering as its reference. Caption i's draws use seed
    /// `EvaluationOptions(seed: seed).captionSeed(i)`; the set is the same for any thread count.
    /// Progress: one step per caption; the handler or `cancel()` stops it.
    public func makeShapesCandidateSet(captions: Int, count: Int, seed: UInt64, sampling: SamplingOptions = SamplingOptions(),
                                       condScale: Float = 1, progress: ProgressHandler? = nil) throws -> ShapesWorld.CandidateSet {
        cancellation.reset()
        guard count >= 1 else { throw DalleError.invalidArgument("candidates is \(count); it must be in 1 ... \(GenerationOptions.maxCount)") }
        guard captions >= 1, captions <= ShapesWorld.EvaluationOptions.maxPerSet else {
            throw DalleError.invalidArgument("captions is \(captions); it must be in 1 ... \(ShapesWorld.EvaluationOptions.maxPerSet)")
        }
        let seeds = ShapesWorld.EvaluationOptions(candidates: count, seed: seed, sampling: sampling, condScale: condScale)
        try seeds.validate()
        let reporter = StepReporter(total: captions, handler: progress, cancellation: cancellation)
        try reporter.report(0)
        var texts: [String] = [], candidates: [[RGBImage]] = [], passed: [[Bool]] = [], references: [RGBImage] = []
        for i in 0..<captions {
            let sample = try ShapesWorld.trainingSample(seed: seed, index: UInt64(i))
            let images = try shapesCandidates(sample.caption, options: seeds, seed: seeds.captionSeed(i), rerank: false)
            texts.append(sample.caption.text)
            candidates.append(images)
            passed.append(try images.map { try ShapesWorld.judge($0, caption: sample.caption).passed })
            references.append(try shapesReconstruction(sample.image))
            try reporter.report(i + 1)
        }
        return try ShapesWorld.CandidateSet(captions: texts, candidates: candidates, passed: passed, references: references)
    }

    /// `options.candidates` images for `caption` drawn from `seed` (best CLIP score first with
    /// `rerank`), 64×64; needs a tokenizer, a transformer and a dVAE of 64×64 images.
    func shapesCandidates(_ caption: ShapesWorld.Caption, options: ShapesWorld.EvaluationOptions, seed: UInt64,
                          rerank: Bool) throws -> [RGBImage] {
        let size = try shapesWorldImageTokenizer().imageSize
        let generation = GenerationOptions(count: options.candidates, seed: seed, sampling: options.sampling,
                                           condScale: options.condScale, keepBest: rerank ? options.candidates : 0,
                                           likelihoodWeight: options.likelihoodWeight)
        let result = try generateCandidates(prompt: caption.text, options: generation)
        let imageBytes = size * size * 3
        return try (0..<result.count).map {
            try RGBImage(width: size, height: size, pixels: Array(result.pixels[($0 * imageBytes)..<(($0 + 1) * imageBytes)]))
        }
    }

    /// `image` encoded and decoded by the model's dVAE.
    func shapesReconstruction(_ image: RGBImage) throws -> RGBImage {
        let dvae = try shapesWorldDVAE(), size = dvae.imageSize
        let tokens = try image.withView { try dvae.encode(try ImageConversion.tensor(from: [$0], size: size), pool: pool) }
        return try RGBImage(width: size, height: size, pixels: try decodeRGB8(tokens, count: 1, with: dvae, progress: nil))
    }

    /// The model's dVAE, which must make Shapes World images (64×64), after checking that the model
    /// can generate.
    func shapesWorldImageTokenizer() throws -> ImageTokenizer {
        _ = try model.requireGenerator()
        return try shapesWorldDVAE()
    }

    /// The model's dVAE, which must make Shapes World images (64×64).
    func shapesWorldDVAE() throws -> ImageTokenizer {
        let dvae = try model.requireImageTokenizer()
        let size = ShapesWorld.imageSize
        guard dvae.imageSize == size else {
            throw DalleError.unsupported("the Shapes World judges \(size)x\(size) images; "
                + "this model's dvae makes \(dvae.imageSize)x\(dvae.imageSize)")
        }
        return dvae
    }
}
