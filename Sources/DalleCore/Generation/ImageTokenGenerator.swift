#if canImport(Glibc)
import Glibc
#endif

/// What the generation loop needs from an autoregressive transformer over
/// [text tokens | image tokens]: a KV cache, a prefill of the prompt, one step per image token.
public protocol ImageTokenPredictor {
    associatedtype Cache
    /// Text positions (the prompt is padded with 0 to this length).
    var textLength: Int { get }
    /// Rows and columns of the image-token grid.
    var imageGridSize: Int { get }
    /// Image-token ids are 0 ..< imageVocabSize.
    var imageVocabSize: Int { get }
    /// Where the image-token logits start in a row of logits.
    var imageLogitOffset: Int { get }
    /// Bytes of weights one step reads (its matrices; embedding rows are read one at a time).
    var stepWeightBytes: Int { get }
    /// An upper bound of the bytes generating `batch` sequences allocates: the cache and the
    /// activations of a whole-sequence prefill (`Int.max` when that overflows).
    func workingBytes(batch: Int) -> Int
    func makeCache(batch: Int) throws -> Cache
    /// Runs `text` (batch x textLength) and the image prefix `image` (batch x n) through the
    /// model, filling `cache`; returns the next position's logits, [batch, logits per position].
    func prefill(text: [Int32], image: [Int32], batch: Int, cache: inout Cache, pool: ThreadPool) throws -> Tensor
    /// Appends one image token per sequence; returns the next position's logits.
    func step(imageTokens: [Int32], cache: inout Cache, pool: ThreadPool) throws -> Tensor
}

/// What to generate from one prompt.
public struct GenerationOptions: Sendable, Equatable {
    /// Candidates generated together; 1 ... `GenerationOptions.maxCount`.
    public var count: Int
    /// The seed of the draws; candidate i uses stream i, so it does not depend on `count`.
    public var seed: UInt64
    public var sampling: SamplingOptions
    /// Classifier-free guidance: logits = null + (cond - null) * condScale, where the null
    /// branch sees the empty caption. 1 turns it off (and skips the null branch).
    public var condScale: Float
    /// The first `primeRows` rows of image tokens (primeRows x grid size ids, row-major),
    /// given rather than generated: image completion / variation.
    public var primeTokens: [Int32]
    public var primeRows: Int
    /// Keep only the best `keepBest` candidates by CLIP score against the prompt, best
    /// first (needs a CLIP component and decoded images); 0 keeps all, in draw order.
    public var keepBest: Int
    /// Ranks the candidates by CLIP score + likelihoodWeight x the transformer's mean
    /// log-probability per generated token (`SampledGrids.logLikelihoods`); 0 = CLIP alone.
    public var likelihoodWeight: Float

    /// unCLIP models only: step counts and guidance scales; nil keeps the pipeline's default.
    public var unclip = UnCLIPSettings()

    /// The most candidates one call generates.
    public static let maxCount = 256

    public init(count: Int = 1, seed: UInt64 = 0, sampling: SamplingOptions = SamplingOptions(),
                condScale: Float = 1, primeTokens: [Int32] = [], primeRows: Int = 0, keepBest: Int = 0,
                likelihoodWeight: Float = 0) {
        self.count = count
        self.seed = seed
        self.sampling = sampling
        self.condScale = condScale
        self.primeTokens = primeTokens
        self.primeRows = primeRows
        self.keepBest = keepBest
        self.likelihoodWeight = likelihoodWeight
    }
}

/// Step counts and guidance scales of an unCLIP generation; nil fields keep
/// `UnCLIPPipeline.Options`' defaults (Karlo's 25 / 25 / 7 steps, guidance 4 and 8).
public struct UnCLIPSettings: Sendable, Equatable {
    public var priorSteps: Int?, decoderSteps: Int?, superResolutionSteps: Int?
    public var priorGuidance: Float?, decoderGuidance: Float?
    /// Caller-given noise by name (`UnCLIPNoise`'s names; shapes checked against the run); the
    /// rest is drawn from the seed.
    public var noise: [String: Tensor] = [:]
    /// Variations: the image whose CLIP embedding replaces the prior's (the prompt must be "").
    public var image: RGBImage?
    /// Interpolation: the other end (a prompt, from the prompt; an image, from `image`); the
    /// `count` images are the frames from the start to it.
    public var interpolationEnd: InterpolationEnd?
    public init() {}

    public enum InterpolationEnd: Sendable, Equatable {
        case prompt(String)
        case image(RGBImage)
    }
}

/// Image-token grids sampled from one prompt.
public struct SampledGrids: Sendable, Equatable {
    /// `count` grids, grid after grid, row-major (primed rows included).
    public var tokens: [Int32]
    /// Per grid, the mean log-probability (nats) of its generated tokens under the logits they
    /// were drawn from (guided when guidance is on; before temperature, top-k and top-p): how
    /// likely the transformer finds the image, a confidence to rank candidates by. 0 when no token
    /// was generated.
    public var logLikelihoods: [Float]
}

/// The sampling loop: prefill once, then one cached step per image token for a group of
/// candidates (and their unconditional twins under guidance) at once, a group per thread.
public enum ImageTokenGenerator {
    /// `options.count` grids of image tokens continuing the 0-padded prompt `text`, with their
    /// log-likelihoods. Progress: one step per generated token.
    public static func generate<P: ImageTokenPredictor>(
        _ predictor: P, text: [Int32], options: GenerationOptions, pool: ThreadPool,
        progress: ProgressHandler? = nil, cancellation: CancellationFlag? = nil
    ) throws -> SampledGrids {
        try validate(options, predictor: predictor, text: text)
        let n = options.count, grid = predictor.imageGridSize
        try checkMemory(predictor, batch: options.condScale != 1 ? 2 * n : n, threads: pool.threads)
        let steps = grid * grid - options.primeRows * grid
        let reporter = StepReporter(total: steps, handler: progress, cancellation: cancellation)
        let silent = StepReporter(total: steps, handler: nil, cancellation: cancellation)
        try reporter.report(0)
        // Candidates never meet (each has its own random stream and its own rows in every
        // operation). A model whose step reads more weights than the caches hold decodes them
        // all as one group, each operation split across the pool, so the weights are read once
        // per step. A smaller model gives each thread whole groups of `candidatesPerGroup`,
        // sampled from start to end on their own: a handful of synchronisations per call instead
        // of dozens per token. Groups are cut the same way for any thread count, so every
        // operation sees the same rows and the grids do not depend on the threads. Groups run
        // in rounds of one per thread (a group alone in its round gets the whole pool); the calling
        // thread takes each round's first group and reports the progress of the rounds.
        let groupSize = predictor.stepWeightBytes > sharedStepWeightBytes ? n : candidatesPerGroup
        let groupCount = (n + groupSize - 1) / groupSize, single = ThreadPool(threads: 1)
        let groups = (0..<groupCount).map { ($0 * groupSize)..<min(n, ($0 + 1) * groupSize) }
        let perRound = min(pool.threads, groupCount), rounds = (groupCount + perRound - 1) / perRound
        let stop = CancellationFlag()
        var results = [Result<SampledGrids, Error>?](repeating: nil, count: groupCount)
        results.withUnsafeMutableBufferPointer { out in
            for round in 0..<rounds where !stop.isRequested {
                let first = round * perRound, together = min(perRound, groupCount - first)
                pool.parallelForEachCallerFirst(together) { i in
                    let g = first + i
                    let result = Result {
                        try sample(predictor, text: text, options: options, candidates: groups[g],
                                   pool: together == 1 ? pool : single) { step in
                            if stop.isRequested { throw GroupStopped() }
                            // The first group of a round reports each 1/rounds of its steps; every step checks for a stop.
                            let done = round * steps + step
                            try (i == 0 && done % rounds == 0 ? reporter : silent).report(done / rounds)
                        }
                    }
                    if case .failure = result { stop.request() }
                    out[g] = result
                }
            }
        }
        var sampled = SampledGrids(tokens: [], logLikelihoods: [])
        for case .failure(let error)? in results where !(error is GroupStopped) { throw error }
        for case .success(let group)? in results {
            sampled.tokens += group.tokens
            sampled.logLikelihoods += group.logLikelihoods
        }
        return sampled
    }

    /// Candidates per group when each thread samples whole groups (models that fit in cache).
    static let candidatesPerGroup = 4
    /// From this many weight bytes per step on, all candidates decode as one group.
    static let sharedStepWeightBytes = 16 << 20

    /// Thrown inside a group that stops because another group failed.
    struct GroupStopped: Error {}

    /// Samples the candidates `candidates` (their indices pick their random streams) with
    /// `pool`, which splits the transformer's operations (the draws run on the calling thread);
    /// `afterStep(k)` is called once k tokens are drawn and may throw to stop.
    static func sample<P: ImageTokenPredictor>(
        _ predictor: P, text: [Int32], options: GenerationOptions, candidates: Range<Int>, pool: ThreadPool,
        afterStep: (Int) throws -> Void
    ) throws -> SampledGrids {
        let n = candidates.count, grid = predictor.imageGridSize, vocab = predictor.imageVocabSize
        let imageLength = grid * grid
        let primeLength = options.primeRows * grid
        let guided = options.condScale != 1
        let batch = guided ? 2 * n : n

        // Rows 0..<n are the candidates; under guidance rows n..<2n are their empty-caption twins.
        var batchText = [Int32]()
        batchText.reserveCapacity(batch * predictor.textLength)
        for _ in 0..<n { batchText += text }
        if guided { batchText += [Int32](repeating: 0, count: n * predictor.textLength) }
        var batchPrime = [Int32]()
        for _ in 0..<batch { batchPrime += options.primeTokens }

        var tokens = [Int32](repeating: 0, count: n * imageLength)
        for c in 0..<n {
            for i in 0..<primeLength { tokens[c * imageLength + i] = options.primeTokens[i] }
        }
        let steps = imageLength - primeLength
        guard steps > 0 else { return SampledGrids(tokens: tokens, logLikelihoods: [Float](repeating: 0, count: n)) }

        let random = CounterRandom(seed: options.seed)
        var cache = try predictor.makeCache(batch: batch)
        var logits = try predictor.prefill(text: batchText, image: batchPrime, batch: batch, cache: &cache, pool: pool)
        var drawn = [Int32](repeating: 0, count: n), mixed = [Float](repeating: 0, count: vocab)
        var logLikelihoodSums = [Double](repeating: 0, count: n)
        for position in primeLength..<imageLength {
            try checkLogits(logits, batch: batch, predictor: predictor)
            let row = logits.shape[1]
            logits.scalars.withUnsafeBufferPointer { all in
                for c in 0..<n {
                    let cond = all.baseAddress.unsafelyUnwrapped + c * row + predictor.imageLogitOffset
                    if guided {
                        let null = all.baseAddress.unsafelyUnwrapped + (n + c) * row + predictor.imageLogitOffset
                        for v in 0..<vocab { mixed[v] = null[v] + (cond[v] - null[v]) * options.condScale }
                    } else {
                        for v in 0..<vocab { mixed[v] = cond[v] }
                    }
                    let u = random.uniform(stream: candidates.lowerBound + c, counter: position)
                    mixed.withUnsafeBufferPointer { logits in
                        let token = Sampler.sample(logits, options: options.sampling, uniform: u)
                        drawn[c] = Int32(token)
                        logLikelihoodSums[c] += Sampler.logProbability(of: token, logits)
                    }
                    tokens[c * imageLength + position] = drawn[c]
                }
            }
            try afterStep(position - primeLength + 1)
            if position + 1 < imageLength {
                logits = try predictor.step(imageTokens: guided ? drawn + drawn : drawn, cache: &cache, pool: pool)
            }
        }
        return SampledGrids(tokens: tokens, logLikelihoods: logLikelihoodSums.map { Float($0 / Double(steps)) })
    }

    static func validate<P: ImageTokenPredictor>(_ options: GenerationOptions, predictor: P, text: [Int32]) throws {
        guard options.count >= 1, options.count <= GenerationOptions.maxCount else {
            throw DalleError.invalidArgument("count is \(options.count); generate makes 1 ... \(GenerationOptions.maxCount) images per call")
        }
        try options.sampling.validate()
        guard options.condScale.isFinite else { throw DalleError.invalidArgument("cond_scale is \(options.condScale); it must be finite (1 turns guidance off)") }
        try validateLikelihoodWeight(options.likelihoodWeight)
        guard text.count == predictor.textLength else {
            throw DalleError.invalidArgument("the prompt has \(text.count) token positions; this transformer takes \(predictor.textLength)")
        }
        let grid = predictor.imageGridSize
        guard options.primeRows >= 0, options.primeRows < grid else {
            throw DalleError.invalidArgument("prime_rows is \(options.primeRows); it must be in 0 ..< \(grid) (the token grid has \(grid) rows)")
        }
        guard options.primeTokens.count == options.primeRows * grid else {
            throw DalleError.invalidArgument("\(options.primeRows) prime rows of \(grid) tokens need \(options.primeRows * grid) ids, got \(options.primeTokens.count)")
        }
        for (i, id) in options.primeTokens.enumerated() where id < 0 || Int(id) >= predictor.imageVocabSize {
            throw DalleError.invalidArgument("prime token \(i) is \(id); image-token ids are in 0 ..< \(predictor.imageVocabSize)")
        }
    }

    /// Refuses a batch whose cache and activations would take more than half the machine's
    /// memory, or more than the system grants now (an allocation failure would otherwise end
    /// the process).
    static func checkMemory<P: ImageTokenPredictor>(_ predictor: P, batch: Int, threads: Int) throws {
        let available = physicalMemory(), bytes = predictor.workingBytes(batch: batch)
        guard bytes <= available / 2 else {
            let size = bytes == Int.max ? "more than addressable" : "\(bytes >> 20) MiB"
            throw DalleError.outOfMemory("\(batch) sequences need \(size) for their KV cache and activations, more than half of this machine's \(available >> 20) MiB; generate fewer images per call")
        }
        try WorkingMemory.require(bytes, threads: threads, for: "generating \(batch) sequences")
    }

    static func checkLogits<P: ImageTokenPredictor>(_ logits: Tensor, batch: Int, predictor: P) throws {
        guard logits.rank == 2, logits.shape[0] == batch,
              logits.shape[1] >= predictor.imageLogitOffset + predictor.imageVocabSize else {
            throw DalleError.invalidArgument("the transformer returned logits of shape \(logits.shape) for \(batch) sequences; expected [\(batch), >= \(predictor.imageLogitOffset + predictor.imageVocabSize)]")
        }
    }

    static func physicalMemory() -> Int {
        #if canImport(Glibc)
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        if pages > 0, pageSize > 0 { return pages.multipliedReportingOverflow(by: pageSize).overflow ? Int.max : pages * pageSize }
        #endif
        return Int.max
    }
}

/// Throws unless `weight` (`GenerationOptions.likelihoodWeight`) is finite and not negative.
func validateLikelihoodWeight(_ weight: Float) throws {
    guard weight.isFinite, weight >= 0 else {
        throw DalleError.invalidArgument("likelihood_weight is \(weight); it must be a finite number >= 0 (0 ranks by CLIP alone)")
    }
}
