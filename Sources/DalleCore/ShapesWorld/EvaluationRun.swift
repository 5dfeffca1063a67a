extension ShapesWorld {
    /// What `DalleSession.evaluateShapesWorld` generates and reconstructs.
    public struct EvaluationOptions: Sendable, Equatable {
        /// Images generated per caption, 0 ... `GenerationOptions.maxCount`; 0 measures the dVAE's
        /// reconstructions alone (no captions are generated for, and the model needs only a dVAE).
        public var candidates: Int
        /// Seed of the caption set, of every caption's draws and of the reconstruction images.
        public var seed: UInt64
        /// Captions per template and per held-out pair (see `evaluationCaptions`), 0 ... 100 000.
        public var perTemplate: Int
        public var perHeldOutPair: Int
        public var sampling: SamplingOptions
        public var condScale: Float
        /// CLIP's pick ranks by CLIP score + likelihoodWeight x log-likelihood (`GenerationOptions.likelihoodWeight`).
        public var likelihoodWeight: Float
        /// Training-stream images encoded and decoded by the dVAE, 0 ... 100 000 (besides one
        /// rendering of each evaluation caption).
        public var reconstructionSamples: Int

        public init(candidates: Int = 8, seed: UInt64 = 0, perTemplate: Int = 50, perHeldOutPair: Int = 10,
                    sampling: SamplingOptions = SamplingOptions(), condScale: Float = 1, likelihoodWeight: Float = 0,
                    reconstructionSamples: Int = 200) {
            self.candidates = candidates
            self.seed = seed
            self.perTemplate = perTemplate
            self.perHeldOutPair = perHeldOutPair
            self.sampling = sampling
            self.condScale = condScale
            self.likelihoodWeight = likelihoodWeight
            self.reconstructionSamples = reconstructionSamples
        }

        /// The most captions per template or per pair, and reconstruction samples.
        public static let maxPerSet = 100_000

        /// Throws unless every field is in range.
        public func validate() throws {
            guard candidates >= 0, candidates <= GenerationOptions.maxCount else {
                throw DalleError.invalidArgument("candidates is \(candidates); it must be in 0 ... \(GenerationOptions.maxCount)")
            }
            for (name, value) in [("per_template", perTemplate), ("per_held_out_pair", perHeldOutPair),
                                  ("reconstruction samples", reconstructionSamples)]
            where value < 0 || value > Self.maxPerSet {
                throw DalleError.invalidArgument("\(name) is \(value); it must be in 0 ... \(Self.maxPerSet)")
            }
            guard perTemplate + perHeldOutPair > 0 else {
                throw DalleError.invalidArgument("per_template and per_held_out_pair are both 0; the evaluation needs at least one caption")
            }
            try sampling.validate()
            guard condScale.isFinite else { throw DalleError.invalidArgument("cond_scale is \(condScale); it must be finite") }
            try validateLikelihoodWeight(likelihoodWeight)
        }

        /// The seed of caption `index`'s draws and of its reconstruction rendering: a function of
        /// (seed, index) alone.
        public func captionSeed(_ index: Int) -> UInt64 {
            var base = SplitMix64(seed: seed ^ 0x6576_616C_6361_7074)
            var mixed = SplitMix64(seed: base.next() ^ UInt64(truncatingIfNeeded: index))
            return mixed.next()
        }

        /// The training-stream seed of the reconstruction samples (apart from the seeds training uses).
        public var reconstructionSeed: UInt64 { seed ^ 0x7265_636F_6E73_7472 }
    }

    /// How one caption's candidates fared with the judge.
    public struct CaptionOutcome: Sendable, Equatable {
        public var group: EvaluationGroup
        /// Whether each candidate passed: best first when CLIP ranked them, else in draw order.
        public var passed: [Bool]
        /// True when CLIP ranked the candidates, so `passed[0]` is CLIP's pick.
        public var rankedByCLIP: Bool

        public init(group: EvaluationGroup, passed: [Bool], rankedByCLIP: Bool) {
            self.group = group
            self.passed = passed
            self.rankedByCLIP = rankedByCLIP
        }
    }

    /// Pass counts of a set of captions; the rates are nil where there is nothing to divide by.
    public struct GroupScore: Sendable, Equatable {
        public var name: String
        public var captions = 0
        public var candidates = 0
        /// Captions whose CLIP-best candidate passed (nil when CLIP ranked none of them).
        public var passedBestByCLIP: Int?
        /// Candidates that passed, over all captions.
        public var passedCandidates = 0
        /// Captions with at least one passing candidate.
        public var passedAny = 0

        /// Sums `outcomes` (all ranked by CLIP or none).
        public init(name: String, outcomes: [CaptionOutcome]) {
            self.name = name
            captions = outcomes.count
            candidates = outcomes.reduce(0) { $0 + $1.passed.count }
            passedCandidates = outcomes.reduce(0) { $0 + $1.passed.filter { $0 }.count }
            passedAny = outcomes.filter { $0.passed.contains(true) }.count
            if !outcomes.isEmpty, outcomes.allSatisfy(\.rankedByCLIP) {
                passedBestByCLIP = outcomes.filter { $0.passed.first == true }.count
            }
        }

        /// Fraction of captions whose CLIP-best candidate passed: the pass rate with reranking.
        public var bestByCLIPRate: Double? { passedBestByCLIP.flatMap { ratio($0, captions) } }
        /// Fraction of all candidates that passed: the pass rate of the average candidate.
        public var averageRate: Double? { ratio(passedCandidates, candidates) }
        /// Fraction of captions with some passing candidate: an oracle picking the best of N.
        public var anyOfNRate: Double? { ratio(passedAny, captions) }
        /// What reranking adds: best-by-CLIP minus average.
        public var rerankLift: Double? {
            guard let best = bestByCLIPRate, let average = averageRate else { return nil }
            return best - average
        }

        private func ratio(_ n: Int, _ d: Int) -> Double? { d > 0 ? Double(n) / Double(d) : nil }
    }

    /// The evaluation's numbers: pass rates per group and overall, and the dVAE's reconstruction rate.
    public struct EvaluationReport: Sendable, Equatable {
        public var options: EvaluationOptions
        /// One score per `EvaluationGroup`, in its order.
        public var groups: [GroupScore]
        /// Every caption.
        public var total: GroupScore
        /// World images encoded and decoded by the dVAE, and those whose reconstruction still passes
        /// the judge against the image's caption.
        public var reconstructionImages: Int
        public var reconstructionPassed: Int
        public var hasCLIP: Bool { total.passedBestByCLIP != nil }

        /// The score of `group`.
        public func score(for group: EvaluationGroup) -> GroupScore {
            groups.first { $0.name == group.rawValue } ?? GroupScore(name: group.rawValue, outcomes: [])
        }

        public var reconstructionRate: Double? {
            reconstructionImages > 0 ? Double(reconstructionPassed) / Double(reconstructionImages) : nil
        }

        public init(options: EvaluationOptions, outcomes: [CaptionOutcome], reconstruction: [Bool]) {
            self.options = options
            groups = EvaluationGroup.allCases.map { group in
                GroupScore(name: group.rawValue, outcomes: outcomes.filter { $0.group == group })
            }
            total = GroupScore(name: "all captions", outcomes: outcomes)
            reconstructionImages = reconstruction.count
            reconstructionPassed = reconstruction.filter { $0 }.count
        }

        /// The quality targets for the CLIP-picked pass rate per group, in percent.
        public static let targets: [EvaluationGroup: Int] = [.single: 95, .counting: 85, .relation: 85, .heldOut: 70]
        /// Target rerank lift over the average candidate (points) and dVAE reconstruction rate (percent).
        public static let targetLift = 10
        public static let targetReconstruction = 99

        /// The report as a Markdown table: one row per group, all captions, the dVAE reconstruction.
        /// Without candidates, the dVAE's row alone.
        public func table() -> String {
            let n = options.candidates
            let reconstructionTarget = ">= \(Self.targetReconstruction) %"
                + verdict(reconstructionRate.map { $0 * 100 >= Double(Self.targetReconstruction) })
            guard n > 0 else {
                return Self.markdown(header: ["group", "n", "passed", "target"],
                                     rows: [["dVAE reconstruction", "\(reconstructionImages)", percent(reconstructionRate), reconstructionTarget]],
                                     notes: ["n: world images encoded and decoded by the dVAE (seed \(options.seed); no candidates generated), "
                                         + "and the share whose reconstruction still passes the judge."])
            }
            var rows: [[String]] = []
            for (group, score) in zip(EvaluationGroup.allCases, groups) {
                let target = Self.targets[group].map { t in
                    ">= \(t) %" + verdict(score.bestByCLIPRate.map { $0 * 100 >= Double(t) })
                } ?? ""
                rows.append(row(score, target: target))
            }
            rows.append(row(total, target: ">= \(Self.targetLift) pts lift"
                + verdict(total.rerankLift.map { $0 * 100 >= Double(Self.targetLift) })))
            rows.append(["dVAE reconstruction", "\(reconstructionImages)", "", percent(reconstructionRate), "", "", reconstructionTarget])
            var notes = ["n: captions (\(n) candidates each, seed \(options.seed)); for the dVAE, world images encoded and "
                + "decoded, and the share whose reconstruction still passes the judge."]
            if !hasCLIP { notes.append("The model has no CLIP component: no reranking (n/a).") }
            return Self.markdown(header: ["group", "n", "CLIP best of \(n)", "average of \(n)", "any of \(n)", "rerank lift", "target"],
                                 rows: rows, notes: notes)
        }

        /// A Markdown table, the first and last columns left-aligned, the rest right-aligned, then `notes`.
        private static func markdown(header: [String], rows: [[String]], notes: [String]) -> String {
            let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
            func line(_ cells: [String]) -> String {
                "| " + cells.enumerated().map { c, cell in
                    c == 0 || c == cells.count - 1 ? cell.padding(widths[c]) : cell.leftPadding(widths[c])
                }.joined(separator: " | ") + " |"
            }
            let lines = [line(header), "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|"]
                + rows.map(line) + notes
            return lines.joined(separator: "\n") + "\n"
        }

        private func row(_ score: GroupScore, target: String) -> [String] {
            let lift = hasCLIP ? score.rerankLift.map { liftText($0) } ?? "-" : "n/a"
            return [score.name, "\(score.captions)", hasCLIP ? percent(score.bestByCLIPRate) : "n/a",
                    percent(score.averageRate), percent(score.anyOfNRate), lift, target]
        }

        private func verdict(_ met: Bool?) -> String { met.map { $0 ? " met" : " not met" } ?? "" }

        /// "96.5 %", or "-" when there is nothing to rate.
        private func percent(_ rate: Double?) -> String {
            guard let rate else { return "-" }
            return tenths(rate * 100) + " %"
        }

        private func liftText(_ lift: Double) -> String { (lift >= 0 ? "+" : "") + tenths(lift * 100) + " pts" }

        /// `value` with one decimal ("-3.5").
        private func tenths(_ value: Double) -> String {
            let t = Int((value * 10).rounded())
            return (t < 0 ? "-" : "") + "\(abs(t) / 10).\(abs(t) % 10)"
        }
    }
}

extension ShapesWorld {
    /// The images generated for caption `index` of the evaluation set, drawn from `seed`: best CLIP
    /// score first when `rankedByCLIP`, else in draw order.
    public typealias CandidateSource = (_ index: Int, _ caption: Caption, _ seed: UInt64) throws -> (images: [RGBImage], rankedByCLIP: Bool)

    /// The evaluation with any image source: judges `candidates(i, caption, options.captionSeed(i))`
    /// against each caption of `evaluationCaptions(seed:perTemplate:perHeldOutPair:)`, then judges
    /// `reconstruct(image)` for `reconstructionSamples` training images (stream `reconstructionSeed`)
    /// and one rendering of each caption (seed `captionSeed(i)`) against their captions. With no
    /// candidates per caption, only the reconstructions are judged.
    /// Progress: one step per caption (none without candidates), then one per reconstruction; the
    /// handler or `cancellation` stops it.
    public static func evaluate(_ options: EvaluationOptions, candidates: CandidateSource,
                                reconstruct: (RGBImage) throws -> RGBImage,
                                progress: ProgressHandler? = nil, cancellation: CancellationFlag? = nil) throws -> EvaluationReport {
        try options.validate()
        let captions = evaluationCaptions(seed: options.seed, perTemplate: options.perTemplate, perHeldOutPair: options.perHeldOutPair)
        let generating = options.candidates > 0 ? captions : []
        let reporter = StepReporter(total: generating.count + captions.count + options.reconstructionSamples,
                                    handler: progress, cancellation: cancellation)
        var step = 0
        try reporter.report(step)

        var outcomes: [CaptionOutcome] = []
        for (index, item) in generating.enumerated() {
            let generated = try candidates(index, item.caption, options.captionSeed(index))
            let passed = try generated.images.map { try judge($0, caption: item.caption).passed }
            outcomes.append(CaptionOutcome(group: item.group, passed: passed, rankedByCLIP: generated.rankedByCLIP))
            step += 1
            try reporter.report(step)
        }

        var reconstruction: [Bool] = []
        func check(_ image: RGBImage, _ caption: Caption) throws {
            reconstruction.append(try judge(try reconstruct(image), caption: caption).passed)
            step += 1
            try reporter.report(step)
        }
        for k in 0..<options.reconstructionSamples {
            let sample = makeTrainingSample(seed: options.reconstructionSeed, index: UInt64(k), mix: .standard)
            try check(sample.image, sample.caption)
        }
        for (index, item) in captions.enumerated() {
            try check(try render(caption: item.caption, seed: options.captionSeed(index)), item.caption)
        }
        return EvaluationReport(options: options, outcomes: outcomes, reconstruction: reconstruction)
    }
}

extension DalleSession {
    /// The Shapes World evaluation (`dalle eval`) of this session's model: `ShapesWorld.evaluate` with
    /// `candidates` images per caption from `generate` (ranked by CLIP when the model has CLIP) and
    /// reconstructions by the dVAE (encode, then decode). The report is a function of the options
    /// alone, for any thread count. Needs a tokenizer, a transformer and a dVAE of 64×64 images, or
    /// the dVAE alone without candidates. Progress as `ShapesWorld.evaluate`; `cancel()` stops the
    /// run within one generation step.
    public func evaluateShapesWorld(_ options: ShapesWorld.EvaluationOptions = ShapesWorld.EvaluationOptions(),
                                    progress: ProgressHandler? = nil) throws -> ShapesWorld.EvaluationReport {
        cancellation.reset()
        try options.validate()
        _ = try options.candidates > 0 ? shapesWorldImageTokenizer() : shapesWorldDVAE()
        let rerank = model.clip != nil
        return try ShapesWorld.evaluate(options, candidates: { _, caption, seed in
            (try self.shapesCandidates(caption, options: options, seed: seed, rerank: rerank), rerank)
        }, reconstruct: { image in
            try self.shapesReconstruction(image)
        }, progress: progress, cancellation: cancellation)
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
    fileprivate func leftPadding(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
