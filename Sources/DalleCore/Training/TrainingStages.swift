#if canImport(Glibc)
import Glibc
#endif

/// One model being trained: its parameters, its loss on a batch, and how it describes itself
/// in a bundle.
public protocol TrainingStage: AnyObject {
    /// The bundle component it trains ("dvae", "transformer", "clip").
    var component: String { get }
    var parameters: ParameterSet { get }
    /// Bundle metadata of the model (its configuration keys).
    var metadata: [String: String] { get }
    /// The loss to minimise on `examples` and named values to report. `step` of `totalSteps`
    /// drives schedules and seeds any noise, so a resumed run repeats exactly.
    func loss(_ tape: Tape, examples: [TrainingExample], step: Int, totalSteps: Int) throws -> (Variable, [(String, Float)])
    /// The loss on `examples` (and named values) with its gradient added to the parameters'
    /// gradients. The default records `loss` on one tape and back-propagates through it.
    func lossAndGradients(_ examples: [TrainingExample], step: Int, totalSteps: Int, pool: ThreadPool) throws -> (Float, [(String, Float)])
    /// A deterministic loss on held-out examples.
    func validationLoss(_ examples: [TrainingExample], pool: ThreadPool) throws -> Float
    /// Called after each optimizer update.
    func afterUpdate()
}

extension TrainingStage {
    public func afterUpdate() {}

    public func lossAndGradients(_ examples: [TrainingExample], step: Int, totalSteps: Int, pool: ThreadPool) throws -> (Float, [(String, Float)]) {
        let tape = Tape(pool: pool)
        let (loss, values) = try loss(tape, examples: examples, step: step, totalSteps: totalSteps)
        tape.backward(from: loss)
        return (loss.value[0], values)
    }

    /// Runs `loss` without keeping gradients for its parameters' sake (step = total: final schedules).
    func evaluate(_ examples: [TrainingExample], pool: ThreadPool) throws -> Float {
        try loss(Tape(pool: pool), examples: examples, step: 0, totalSteps: 1).0.value[0]
    }
}

/// [0, count) cut into consecutive ranges of `size` (the last one shorter): a batch's micro-batches.
func microBatches(_ count: Int, size: Int) -> [Range<Int>] {
    stride(from: 0, to: count, by: size).map { $0..<min($0 + size, count) }
}

/// [N, 3, S, S] floats in [0, 1] of same-size examples.
func pixelTensor(_ examples: [TrainingExample], size: Int) throws -> Tensor {
    let images = examples.map(\.image)
    return try images.withViews { try ImageConversion.tensor(from: $0, size: size) }
}

/// The dVAE with the paper's schedules: the Gumbel-softmax temperature annealed from 1 to
/// 1/16 (cosine, over `annealFraction` of the run) and the KL weight raised linearly from 0 to
/// `maxKLWeight` (6.6 in the paper) over `klWarmupFraction` of the run. On a small budget the
/// codebook collapses onto a few codes without help; two recipes are available. Soft start: zero
/// logits at init, the likelihood's scale held at b ≥ 1 at first and the Gumbel noise ramped in
/// (the codes carry little more than colour). Hashed start: large random logits at init
/// (`TrainableDVAE.Initialisation.logitStd`), full noise from the start, the codebook-usage term
/// against the collapse, b ≥ 1 throughout so the gray background cannot dominate the likelihood,
/// and straight-through samples once τ has annealed (see models/shapes-world.md for what each measured).
public final class DVAEStage: TrainingStage {
    public let model: TrainableDVAE
    public var startTemperature: Float = 1
    public var endTemperature: Float = 1.0 / 16
    public var annealFraction: Float = 0.3
    public var maxKLWeight: Float = 6.6
    public var klWarmupFraction: Float = 0.1
    /// The likelihood's scale b is held at ≥ 1 (ln b ≥ 0) for this fraction of the run, then
    /// released: a learned scale lets the flat background's likelihood dominate early training,
    /// and the decoder never learns to read the codes (the codebook collapses onto one code).
    public var fixedScaleFraction: Float = 0.2
    /// The Gumbel noise is scaled from 0 to 1 over this fraction of the run: without a decoder
    /// that reads codes yet, full noise makes the relaxed codes random and the encoder learns nothing.
    public var noiseWarmupFraction: Float = 0.6
    /// The Gumbel noise's full scale (0: none, so straight-through samples are the encoder's
    /// argmax codes, exactly what the decoder reads at inference: a decoder fine-tune with the
    /// encoder frozen then keeps every image's tokens and improves only their decoding).
    public var noiseScale: Float = 1
    /// Straight-through samples (one-hot forward, soft gradient) from this fraction of the run on
    /// (1 = never): the decoder then sees the discrete codes it will see at inference.
    public var hardFraction: Float = 1
    /// Weight per token of the codebook-usage term (0 = off, the paper's loss), active while the
    /// batch uses fewer than `usageFloor` codes' worth (see `TrainableDVAE.loss`). Without it a
    /// fresh model with large logits collapses onto one code in a few steps; always on, it
    /// spreads the gray background over the codebook by flattening the logits.
    public var usageWeight: Float = 0
    public var usageFloor: Float = .infinity
    let seed: UInt64

    public init(model: TrainableDVAE, seed: UInt64) {
        self.model = model
        self.seed = seed
    }

    public var component: String { "dvae" }
    public var parameters: ParameterSet { model.parameters }
    public var metadata: [String: String] { model.config.metadata }

    public func temperature(step: Int, totalSteps: Int) -> Float {
        let t = min(1, Float(step) / max(1, annealFraction * Float(totalSteps)))
        return endTemperature + (startTemperature - endTemperature) * 0.5 * (1 + cosf(Float.pi * t))
    }

    public func klWeight(step: Int, totalSteps: Int) -> Float {
        maxKLWeight * min(1, Float(step) / max(1, klWarmupFraction * Float(totalSteps)))
    }

    /// What the schedules set at `step` for a batch of `count` images: the scaled Gumbel noise
    /// [count, vocab, G, G] (seeded by the step), τ, the KL weight, the floor on ln b, and whether
    /// samples are straight-through.
    private func settings(step: Int, totalSteps: Int, count: Int) -> (noise: [Float], tau: Float, klWeight: Float, minLogScale: Float, hard: Bool) {
        let c = model.config, g = c.tokenGridSize
        let noiseScale = self.noiseScale * min(1, Float(step) / max(1, noiseWarmupFraction * Float(totalSteps)))
        let noise = gumbelNoise(count: count * c.vocabSize * g * g, seed: seed &+ UInt64(step) &* 0x9E37_79B9).map { $0 * noiseScale }
        return (noise, temperature(step: step, totalSteps: totalSteps), klWeight(step: step, totalSteps: totalSteps),
                Float(step) < fixedScaleFraction * Float(totalSteps) ? 0 : -.infinity, Float(step) >= hardFraction * Float(totalSteps))
    }

    private func reported(_ nll: Float, _ kl: Float, _ usage: Float, _ tau: Float, _ codes: Int) -> [(String, Float)] {
        [("nll", nll), ("kl", kl), ("usage", usage), ("tau", tau), ("codes", Float(codes))]
    }

    public func loss(_ tape: Tape, examples: [TrainingExample], step: Int, totalSteps: Int) throws -> (Variable, [(String, Float)]) {
        let pixels = try pixelTensor(examples, size: model.config.imageSize)
        let s = settings(step: step, totalSteps: totalSteps, count: examples.count)
        let l = try model.loss(tape, images: pixels.scalars, count: examples.count, noise: s.noise, temperature: s.tau, klWeight: s.klWeight,
                           usageWeight: usageWeight, usageFloor: usageFloor, minLogScale: s.minLogScale, hard: s.hard)
        return (l.total, reported(l.reconstruction, l.kl, l.usage, s.tau, l.codesUsed))
    }

    /// Images per micro-batch: fixed, so how the gradient is summed, and so every result, does
    /// not depend on the thread count (as `TransformerStage.microBatch`).
    static let microBatch = 2

    /// A batch trains as micro-batches side by side, one per thread at a time, each on its own
    /// tape (on a one-thread pool) over a shadow of the parameters: first every micro-batch's
    /// encoder logits, whose joint code distribution the usage term needs (`Tape.codeDistribution`),
    /// then each one's loss and gradient; the gradients are summed in a fixed order with their
    /// shares of the batch as weights. The dVAE's convolutions (8–128 channels) are too small to
    /// keep two threads busy one at a time (BENCHMARKS.md).
    public func lossAndGradients(_ examples: [TrainingExample], step: Int, totalSteps: Int, pool: ThreadPool) throws -> (Float, [(String, Float)]) {
        let c = model.config, n = examples.count, model = self.model
        let pixels = try pixelTensor(examples, size: c.imageSize).scalars
        let s = settings(step: step, totalSteps: totalSteps, count: n)
        let micro = microBatches(n, size: Self.microBatch)
        let perImage = c.inputChannels * c.imageSize * c.imageSize, perNoise = c.vocabSize * c.tokenGridSize * c.tokenGridSize
        func images(_ r: Range<Int>) -> [Float] { Array(pixels[(r.lowerBound * perImage)..<(r.upperBound * perImage)]) }
        let shadows = micro.map { _ in model.parameters.shadow() }
        let serial = ThreadPool(threads: 1)
        let tapes = micro.map { _ in Tape(pool: serial) }
        var logits = micro.map { _ in Variable.constant([], shape: [0]) }
        try logits.withUnsafeMutableBufferPointer { out in
            try pool.parallelForEach(micro.count) { i in
                out[i] = try model.logits(tapes[i], images: images(micro[i]), count: micro[i].count, weights: shadows[i])
            }
        }
        let average = Tape.codeDistribution(logits)
        var losses = [TrainableDVAE.Loss?](repeating: nil, count: micro.count)
        try losses.withUnsafeMutableBufferPointer { out in
            try pool.parallelForEach(micro.count) { i in
                let r = micro[i]
                let l = try model.loss(tapes[i], images: images(r), logits: logits[i], noise: Array(s.noise[(r.lowerBound * perNoise)..<(r.upperBound * perNoise)]),
                                   temperature: s.tau, klWeight: s.klWeight, usageWeight: usageWeight, usageFloor: usageFloor,
                                   minLogScale: s.minLogScale, hard: s.hard, batchAverage: average, weights: shadows[i])
                tapes[i].backward(from: l.total)
                out[i] = l
            }
        }
        let shares = micro.map { Float($0.count) / Float(n) }
        model.parameters.accumulateGradients(from: shadows[...], scales: shares, pool: pool)
        var total: Float = 0, nll: Float = 0, kl: Float = 0, usage: Float = 0, codes = Set<Int>()
        for (l, share) in zip(losses.compactMap { $0 }, shares) {
            total += share * l.total.value[0]; nll += share * l.reconstruction; kl += share * l.kl
            usage = l.usage; codes.formUnion(l.codes)
        }
        return (total, reported(nll, kl, usage, s.tau, codes.count))
    }

    /// Seeds a fresh model's codebook by k-means over the cells of `examples` (see
    /// `TrainableDVAE.seedCodebook`); returns the distinct codes they then use.
    @discardableResult
    public func seedCodebook(from examples: [TrainingExample], pool: ThreadPool) throws -> Int {
        let pixels = try pixelTensor(examples, size: model.config.imageSize)
        return try model.seedCodebook(images: pixels.scalars, count: examples.count, seed: seed ^ 0x5EED_C0DE, pool: pool)
    }

    /// The NLL per pixel value when the decoder reads the encoder's argmax tokens (as at inference).
    public func validationLoss(_ examples: [TrainingExample], pool: ThreadPool) throws -> Float {
        let c = model.config, s = c.imageSize
        let inference = try DVAE(config: c, weights: InMemoryWeights(model.parameters.tensors))
        let pixels = try pixelTensor(examples, size: s)
        let tokens = try inference.encode(pixels, pool: pool)
        let stats = try inference.decoderStats(tokens: tokens, count: examples.count, pool: pool)
        let tape = Tape(pool: pool)
        let nll = tape.logitLaplaceNLL(.constant(stats.scalars, shape: stats.shape), target: DVAE.mapPixels(pixels.scalars))
        return nll.value[0] / Float(c.outputChannels * s * s)
    }
}

/// The transformer on (caption, image) pairs: captions through the bundle tokenizer, images
/// through the frozen dVAE's argmax tokens.
public final class TransformerStage: TrainingStage {
    public let model: TrainableTransformer
    public let tokenizer: Tokenizer
    public let imageTokenizer: ImageTokenizer
    let pool: ThreadPool

    public init(model: TrainableTransformer, tokenizer: Tokenizer, imageTokenizer: ImageTokenizer, pool: ThreadPool) throws {
        let c = model.config
        guard imageTokenizer.vocabSize == c.numImageTokens, imageTokenizer.gridSize == c.imageFmapSize else {
            throw DalleError.invalidArgument("the transformer expects \(c.numImageTokens) image tokens on a \(c.imageFmapSize)×\(c.imageFmapSize) grid; the dVAE has \(imageTokenizer.vocabSize) on \(imageTokenizer.gridSize)×\(imageTokenizer.gridSize)")
        }
        guard tokenizer.vocabularySize == c.numTextTokens else {
            throw DalleError.invalidArgument("the transformer expects \(c.numTextTokens) text ids; the tokenizer has \(tokenizer.vocabularySize)")
        }
        self.model = model
        self.tokenizer = tokenizer
        self.imageTokenizer = imageTokenizer
        self.pool = pool
    }

    public var component: String { "transformer" }
    public var parameters: ParameterSet { model.parameters }
    public var metadata: [String: String] { model.config.metadata }

    func batch(_ examples: [TrainingExample]) throws -> (text: [Int32], image: [Int32]) {
        let c = model.config
        let text = try examples.flatMap { try tokenizer.tokenizeDALLE($0.caption, textLength: c.textSeqLen).ids }
        let pixels = try pixelTensor(examples, size: imageTokenizer.imageSize)
        return (text, try imageTokenizer.encode(pixels, pool: pool))
    }

    public func loss(_ tape: Tape, examples: [TrainingExample], step: Int, totalSteps: Int) throws -> (Variable, [(String, Float)]) {
        let (text, image) = try batch(examples)
        let l = try model.loss(tape, text: text, image: image, batch: examples.count)
        return (l.total, [("text", l.text), ("image", l.image)])
    }

    /// Examples per micro-batch, and micro-batches run side by side on shadows of the parameters
    /// (`ParameterSet.shadow`). Both are fixed, so how the gradient is summed, and so every
    /// result, does not depend on the thread count.
    static let microBatch = 2, microBatchesAtOnce = 8

    /// The transformer's loss is a mean over independent examples, so a batch trains as
    /// micro-batches, one per thread at a time (each on a one-thread pool: no
    /// synchronisation inside an operation), whose gradients are then summed with their shares
    /// of the batch as weights. On two threads a step of the recipe's transformer takes 0.81× the
    /// time of one batch-sized pass with every operation split between them (README, Performance).
    public func lossAndGradients(_ examples: [TrainingExample], step: Int, totalSteps: Int, pool: ThreadPool) throws -> (Float, [(String, Float)]) {
        let (text, image) = try batch(examples)
        let c = model.config, n = examples.count, model = self.model
        let micro = microBatches(n, size: Self.microBatch)
        let shadows = (0..<min(Self.microBatchesAtOnce, micro.count)).map { _ in model.parameters.shadow() }
        let serial = ThreadPool(threads: 1)
        var total: Float = 0, textLoss: Float = 0, imageLoss: Float = 0
        for together in microBatches(micro.count, size: Self.microBatchesAtOnce) {
            let group = Array(micro[together])
            var parts = [(total: Float, text: Float, image: Float)](repeating: (0, 0, 0), count: group.count)
            try parts.withUnsafeMutableBufferPointer { out in
                try pool.parallelForEach(group.count) { i in
                    let r = group[i], tape = Tape(pool: serial)
                    let l = try model.loss(tape, text: Array(text[(r.lowerBound * c.textSeqLen)..<(r.upperBound * c.textSeqLen)]),
                                       image: Array(image[(r.lowerBound * c.imageSeqLen)..<(r.upperBound * c.imageSeqLen)]),
                                       batch: r.count, weights: shadows[i])
                    tape.backward(from: l.total)
                    out[i] = (l.total.value[0], l.text, l.image)
                }
            }
            let shares = group.map { Float($0.count) / Float(n) }
            model.parameters.accumulateGradients(from: shadows[..<group.count], scales: shares, pool: pool)
            for shadow in shadows { shadow.zeroGrad() }
            for (part, share) in zip(parts, shares) {
                total += share * part.total; textLoss += share * part.text; imageLoss += share * part.image
            }
        }
        return (total, [("text", textLoss), ("image", imageLoss)])
    }

    public func validationLoss(_ examples: [TrainingExample], pool: ThreadPool) throws -> Float {
        try evaluate(examples, pool: pool)
    }
}

/// CLIP on (caption, image) pairs with in-batch negatives and the examples' hard negatives
/// (images and captions).
public final class CLIPStage: TrainingStage {
    public let model: TrainableCLIP
    public let tokenizer: Tokenizer
    /// When set, every image is first encoded and decoded by this dVAE, so CLIP learns to score
    /// pictures with the decoder's artefacts: the kind it reranks.
    public let reconstructor: ImageTokenizer?
    let pool: ThreadPool

    public init(model: TrainableCLIP, tokenizer: Tokenizer, reconstructor: ImageTokenizer? = nil, pool: ThreadPool) throws {
        guard tokenizer.vocabularySize == model.config.vocabSize else {
            throw DalleError.invalidArgument("CLIP expects \(model.config.vocabSize) text ids; the tokenizer has \(tokenizer.vocabularySize)")
        }
        self.model = model
        self.tokenizer = tokenizer
        self.reconstructor = reconstructor
        self.pool = pool
    }

    /// The examples' images, then their hard negatives, through the reconstructor if there is one.
    func images(_ examples: [TrainingExample]) throws -> [RGBImage] {
        let images = examples.map(\.image) + examples.flatMap(\.negatives)
        guard let dvae = reconstructor else { return images }
        let tokens = try dvae.encode(try images.withViews { try ImageConversion.tensor(from: $0, size: dvae.imageSize) }, pool: pool)
        return try ImageConversion.rgbImages(try dvae.decode(tokens: tokens, count: images.count, pool: pool))
    }

    public var component: String { "clip" }
    public var parameters: ParameterSet { model.parameters }
    public var metadata: [String: String] { model.config.metadata }

    /// The towers' inputs: preprocessed pixels of every image, then every caption's tokens.
    private func inputs(_ examples: [TrainingExample]) throws -> (pixels: [Float], images: Int, tokens: [Int32], texts: Int) {
        let c = model.config
        let captions = examples.map(\.caption) + examples.flatMap(\.negativeCaptions)
        let tokens = try captions.flatMap { try tokenizer.tokenizeCLIP($0, contextLength: c.contextLength).ids }
        let images = try images(examples)
        let pixels = try images.withViews { try CLIPPreprocess.tensor(from: $0, size: c.imageResolution) }
        return (pixels.scalars, images.count, tokens, captions.count)
    }

    private var reported: [(String, Float)] { [("scale", expf(model.parameters["clip.logit_scale"]?.value[0] ?? 0))] }

    public func loss(_ tape: Tape, examples: [TrainingExample], step: Int, totalSteps: Int) throws -> (Variable, [(String, Float)]) {
        let x = try inputs(examples)
        let l = try model.loss(tape, pixels: x.pixels, images: x.images, tokens: x.tokens, texts: x.texts, pairs: examples.count)
        return (l, reported)
    }

    /// Images or captions per micro-batch of a tower: fixed, so how the gradient is summed, and
    /// so every result, does not depend on the thread count.
    static let microBatch = 8

    /// The towers embed a batch as micro-batches side by side, one per thread at a time, each on
    /// its own tape (on a one-thread pool) over a shadow of the parameters; the contrastive loss,
    /// which couples the whole batch, then runs once on all their embeddings, and each
    /// micro-batch back-propagates its embeddings' part of that gradient through its tower. The
    /// shadows' gradients are summed in a fixed order.
    public func lossAndGradients(_ examples: [TrainingExample], step: Int, totalSteps: Int, pool: ThreadPool) throws -> (Float, [(String, Float)]) {
        let c = model.config, model = self.model, x = try inputs(examples)
        let perImage = 3 * c.imageResolution * c.imageResolution, ctx = c.contextLength, e = c.embedDim
        let imageParts = microBatches(x.images, size: Self.microBatch), textParts = microBatches(x.texts, size: Self.microBatch)
        let jobs = imageParts.count + textParts.count
        let shadows = (0..<jobs).map { _ in model.parameters.shadow() }
        let serial = ThreadPool(threads: 1)
        let tapes = (0..<jobs).map { _ in Tape(pool: serial) }
        var embeddings = (0..<jobs).map { _ in Variable.constant([], shape: [0]) }
        try embeddings.withUnsafeMutableBufferPointer { out in
            try pool.parallelForEach(jobs) { j in
                if j < imageParts.count {
                    let r = imageParts[j]
                    out[j] = try model.encodeImages(tapes[j], pixels: Array(x.pixels[(r.lowerBound * perImage)..<(r.upperBound * perImage)]),
                                                count: r.count, weights: shadows[j])
                } else {
                    let r = textParts[j - imageParts.count]
                    out[j] = try model.encodeText(tapes[j], tokens: Array(x.tokens[(r.lowerBound * ctx)..<(r.upperBound * ctx)]),
                                              count: r.count, weights: shadows[j])
                }
            }
        }
        let images = Variable(embeddings[..<imageParts.count].flatMap(\.value), shape: [x.images, e], requiresGrad: true)
        let texts = Variable(embeddings[imageParts.count...].flatMap(\.value), shape: [x.texts, e], requiresGrad: true)
        let tape = Tape(pool: pool)
        let loss = try model.contrastiveLoss(tape, images: images, texts: texts, pairs: examples.count)
        tape.backward(from: loss)
        pool.parallelForEach(jobs) { j in
            let (all, r) = j < imageParts.count ? (images, imageParts[j]) : (texts, textParts[j - imageParts.count])
            tapes[j].backward(from: embeddings[j], gradient: Array(all.grad[(r.lowerBound * e)..<(r.upperBound * e)]))
        }
        model.parameters.accumulateGradients(from: shadows[...], scales: [Float](repeating: 1, count: jobs), pool: pool)
        return (loss.value[0], reported)
    }

    public func validationLoss(_ examples: [TrainingExample], pool: ThreadPool) throws -> Float {
        try evaluate(examples, pool: pool)
    }

    public func afterUpdate() { model.clampLogitScale() }
}
