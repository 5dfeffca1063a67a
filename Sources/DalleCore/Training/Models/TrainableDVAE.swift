#if canImport(Glibc)
import Glibc
#endif

/// OpenAI's dVAE (see `DVAE`) as a differentiable model with the same parameter names, trained
/// with the paper's relaxation: the encoder's logits go through a Gumbel-softmax over the
/// codebook, the decoder reads the relaxed one-hot grid, and the loss is the logit-Laplace
/// negative log-likelihood of the pixels plus β · KL(q ‖ uniform).
public final class TrainableDVAE {
    public let config: DVAEConfig
    public let parameters = ParameterSet()

    /// How a fresh model departs from the reference initialisation.
    public struct Initialisation: Sendable {
        /// Standard deviation of the encoder's output (logit) convolution weights. At 0 (uniform
        /// logits) no code wins before the decoder can tell codes apart; at 1 the logits are
        /// large and differ from patch to patch, so each position's argmax is a random hash of
        /// its patch from the first step, stronger than the Gumbel noise.
        public var logitStd: Float = 0
        public init(logitStd: Float = 0) { self.logitStd = logitStd }
    }

    /// A fresh model initialised as the reference does (seeded), except at the codebook: the
    /// decoder's input convolution, a table of code embeddings, starts with unit variance (so
    /// each code is distinct to the decoder from the first step; with the reference's
    /// 1/sqrt(vocab) scale a small model collapses its codebook onto a few codes), and as
    /// `initialisation` says.
    public convenience init(config: DVAEConfig, seed: UInt64, initialisation: Initialisation = .init()) throws {
        let reference = DVAEReferenceInit(seed: seed)
        let special: [String: Float] = ["dvae.decoder.blocks.input.w": 1, "dvae.encoder.blocks.output.conv.w": initialisation.logitStd]
        let specialStore = InitializingStore(seed: seed ^ 0xC0DE) { name, _ in (0, special[name] ?? 0) }
        try self.init(config: config, weights: RoutingStore { name -> WeightStore in special[name] == nil ? reference : specialStore })
    }

    /// A model whose values come from `weights` (a checkpoint or bundle).
    public init(config: DVAEConfig, weights: WeightStore) throws {
        try config.validate()
        self.config = config
        try forEachParameter { name, shape in
            try parameters.declare(name, shape, from: weights, decay: shape.count == 4)
        }
    }

    /// Visits every parameter name and shape in the inference model's order.
    private func forEachParameter(_ body: (String, [Int]) throws -> Void) throws {
        let c = config, hid = c.hiddenChannels
        func conv(_ prefix: String, _ inputs: Int, _ outputs: Int, _ k: Int) throws {
            try body(prefix + ".w", [outputs, inputs, k, k])
            try body(prefix + ".b", [outputs])
        }
        func group(_ prefix: String, _ g: Int, firstIn: Int, out: Int, kernels: [Int]) throws {
            for i in 0..<c.blocksPerGroup {
                let block = "\(prefix).group_\(g + 1).block_\(i + 1)", input = i == 0 ? firstIn : out
                if input != out { try conv(block + ".id_path", input, out, 1) }
                for (j, k) in kernels.enumerated() {
                    try conv(block + ".res_path.conv_\(j + 1)", j == 0 ? input : out / 4, j == kernels.count - 1 ? out : out / 4, k)
                }
            }
        }
        let enc = "dvae.encoder.blocks", dec = "dvae.decoder.blocks"
        try conv(enc + ".input", c.inputChannels, hid, 7)
        for g in 0..<c.groupCount { try group(enc, g, firstIn: hid << max(g - 1, 0), out: hid << g, kernels: [3, 3, 3, 1]) }
        try conv(enc + ".output.conv", hid << (c.groupCount - 1), c.vocabSize, 1)
        try conv(dec + ".input", c.vocabSize, c.initChannels, 1)
        for g in 0..<c.groupCount {
            let level = c.groupCount - 1 - g
            try group(dec, g, firstIn: g == 0 ? c.initChannels : hid << (level + 1), out: hid << level, kernels: [1, 3, 3, 3])
        }
        try conv(dec + ".output.conv", hid, 2 * c.outputChannels, 1)
    }

    private func p(_ weights: ParameterSet, _ name: String) throws -> Variable { try weights.named(name) }

    private var postGain: Float {
        let layers = config.groupCount * config.blocksPerGroup
        return Float(1 / Double(layers * layers))
    }

    private func conv(_ tape: Tape, _ x: Variable, _ prefix: String, relu: Bool, _ weights: ParameterSet) throws -> Variable {
        tape.conv2d(x, try p(weights, prefix + ".w"), try p(weights, prefix + ".b"), reluInput: relu)
    }

    private func block(_ tape: Tape, _ x: Variable, _ prefix: String, convs: Int, _ weights: ParameterSet) throws -> Variable {
        let identity = weights[prefix + ".id_path.w"] == nil ? x : try conv(tape, x, prefix + ".id_path", relu: false, weights)
        var h = x
        for j in 1...convs { h = try conv(tape, h, prefix + ".res_path.conv_\(j)", relu: true, weights) }
        return tape.add(identity, h, scale: postGain)
    }

    /// The encoder's last features [N, F, G, G] (before the output convolution's ReLU) of pixels
    /// already mapped into (ε, 1 − ε), [N, C, S, S]. `weights`: the parameters or a shadow of them.
    public func encoderFeatures(_ tape: Tape, mappedPixels x: Variable, weights: ParameterSet? = nil) throws -> Variable {
        let weights = weights ?? parameters
        var h = try conv(tape, x, "dvae.encoder.blocks.input", relu: false, weights)
        for g in 0..<config.groupCount {
            for i in 0..<config.blocksPerGroup { h = try block(tape, h, "dvae.encoder.blocks.group_\(g + 1).block_\(i + 1)", convs: 4, weights) }
            if g < config.groupCount - 1 { h = tape.maxPool2x2(h) }
        }
        return h
    }

    /// Codebook logits [N, vocab, G, G] of encoder features.
    public func encoderLogits(_ tape: Tape, features: Variable, weights: ParameterSet? = nil) throws -> Variable {
        try conv(tape, features, "dvae.encoder.blocks.output.conv", relu: true, weights ?? parameters)
    }

    /// Codebook logits [N, vocab, G, G] of `images` [N, C, S, S] in [0, 1].
    public func logits(_ tape: Tape, images: [Float], count n: Int, weights: ParameterSet? = nil) throws -> Variable {
        let c = config
        let x = Variable.constant(DVAE.mapPixels(images), shape: [n, c.inputChannels, c.imageSize, c.imageSize])
        return try encoderLogits(tape, features: encoderFeatures(tape, mappedPixels: x, weights: weights), weights: weights)
    }

    /// Statistics [N, 2C, S, S] (μ then ln b per channel) of a relaxed one-hot grid [N, vocab, G, G].
    public func decoderStats(_ tape: Tape, codes z: Variable, weights: ParameterSet? = nil) throws -> Variable {
        let weights = weights ?? parameters
        var h = try conv(tape, z, "dvae.decoder.blocks.input", relu: false, weights)
        for g in 0..<config.groupCount {
            for i in 0..<config.blocksPerGroup { h = try block(tape, h, "dvae.decoder.blocks.group_\(g + 1).block_\(i + 1)", convs: 4, weights) }
            if g < config.groupCount - 1 { h = tape.upsample2x(h) }
        }
        return try conv(tape, h, "dvae.decoder.blocks.output.conv", relu: true, weights)
    }

    /// The terms of the relaxed ELBO for a batch of images.
    public struct Loss {
        /// (NLL + β·KL) per pixel value: what the optimizer minimises.
        public var total: Variable
        /// Logit-Laplace NLL per pixel value.
        public var reconstruction: Float
        /// KL to the uniform prior per token.
        public var kl: Float
        /// KL of the batch's average code distribution to uniform (see `Tape.codeUsageKL`).
        public var usage: Float
        /// The encoder's argmax code of every cell, [N·G·G] in (image, row, column) order.
        public var codes: [Int]
        /// Distinct codes the argmax picks over the batch (a collapsed codebook uses few).
        public var codesUsed: Int { Set(codes).count }
    }

    private func argmaxCodes(_ logits: Variable) -> [Int] {
        let n = logits.shape[0], vocab = logits.shape[1], plane = logits.shape[2] * logits.shape[3]
        return (0..<(n * plane)).map { cell in
            let base = (cell / plane) * vocab * plane + cell % plane
            var best = 0
            for v in 1..<vocab where logits.value[base + v * plane] > logits.value[base + best * plane] { best = v }
            return best
        }
    }

    /// `images` [N, C, S, S] in [0, 1]; `noise` standard Gumbel samples [N, vocab, G, G].
    /// `minLogScale` clamps the likelihood's ln b from below (see `DVAEStage`). `usageWeight`
    /// weighs the codebook-usage term KL(q̄ ‖ uniform) of the batch-average q̄ per token (see
    /// `Tape.codeUsageKL`) while the batch uses fewer than `usageFloor` codes' worth, exp H(q̄):
    /// it stops a collapse without spreading the background over the whole codebook.
    public func loss(_ tape: Tape, images: [Float], count n: Int, noise: [Float], temperature: Float, klWeight: Float,
                     usageWeight: Float = 0, usageFloor: Float = .infinity, minLogScale: Float = -.infinity, hard: Bool = false) throws -> Loss {
        try loss(tape, images: images, logits: logits(tape, images: images, count: n), noise: noise, temperature: temperature,
             klWeight: klWeight, usageWeight: usageWeight, usageFloor: usageFloor, minLogScale: minLogScale, hard: hard)
    }

    /// The same given the encoder's `logits` of `images` (`logits(_:images:count:weights:)` on this
    /// tape, with the same `weights`). When the images are one part of a batch, `batchAverage` is
    /// the batch's average code distribution (`Tape.codeDistribution`), so the usage term (and
    /// whether it is on) is the batch's.
    public func loss(_ tape: Tape, images: [Float], logits: Variable, noise: [Float], temperature: Float, klWeight: Float,
                     usageWeight: Float = 0, usageFloor: Float = .infinity, minLogScale: Float = -.infinity, hard: Bool = false,
                     batchAverage: [Double]? = nil, weights: ParameterSet? = nil) throws -> Loss {
        let c = config, s = c.imageSize, g = c.tokenGridSize
        let z = tape.gumbelSoftmax(logits, noise: noise, temperature: temperature, hard: hard)
        let stats = try decoderStats(tape, codes: z, weights: weights)
        let nll = tape.logitLaplaceNLL(stats, target: DVAE.mapPixels(images), minLogScale: minLogScale)
        let kl = tape.klToUniform(logits)
        let usage = tape.codeUsageKL(logits, batchAverage: batchAverage)
        let collapsing = expf(logf(Float(c.vocabSize)) - usage.value[0]) < usageFloor
        let values = Float(c.outputChannels * s * s)
        let total = tape.weightedSum([(nll, 1 / values), (kl, klWeight / values),
                                      (usage, collapsing ? usageWeight * Float(g * g) / values : 0)])
        return Loss(total: total, reconstruction: nll.value[0] / values, kl: kl.value[0] / Float(g * g), usage: usage.value[0],
                    codes: argmaxCodes(logits))
    }

    /// Seeds the codebook from data: k-means over the encoder's (ReLU'd) features of every cell
    /// of `images` [N, C, S, S] in [0, 1] gives one centroid c per code, and the logit layer
    /// becomes s · (2 c·h − |c|²), so each cell's argmax is its nearest centroid from the first
    /// step: the codes cover what the images hold (black and white objects too, whose features
    /// differ from the background's only in length) instead of a random hash. s makes the
    /// median cluster's median margin over the second-nearest code `margin` nats, above the
    /// Gumbel noise. Returns the number of distinct codes the cells of `images` then use.
    @discardableResult
    public func seedCodebook(images: [Float], count n: Int, seed: UInt64, pool: ThreadPool, iterations: Int = 10, margin: Float = 3) throws -> Int {
        let c = config, vocab = c.vocabSize, plane = c.tokenGridSize * c.tokenGridSize
        let features = try encoderFeatures(Tape(pool: pool), mappedPixels: .constant(DVAE.mapPixels(images),
                                                                                 shape: [n, c.inputChannels, c.imageSize, c.imageSize]))
        let width = features.shape[1]
        var points = [Float](repeating: 0, count: n * plane * width)
        for b in 0..<n {
            for f in 0..<width {
                for q in 0..<plane { points[(b * plane + q) * width + f] = max(features.value[(b * width + f) * plane + q], 0) }
            }
        }
        let kmeans = KMeans(points: points, dim: width, k: vocab, iterations: iterations, seed: seed, pool: pool)
        let (cluster, gaps) = kmeans.assign(points, pool: pool)
        var byCluster = [Int: [Float]]()
        for (p, k) in cluster.enumerated() where gaps[p].isFinite { byCluster[k, default: []].append(gaps[p]) }
        func median(_ x: [Float]) -> Float { let s = x.sorted(); return s.isEmpty ? 0 : s[s.count / 2] }
        let typical = median(byCluster.values.map(median))
        let scale = typical > 0 ? margin / typical : 1
        guard let weight = parameters["dvae.encoder.blocks.output.conv.w"], let bias = parameters["dvae.encoder.blocks.output.conv.b"] else { return 0 }
        weight.setValue(kmeans.centroids.map { 2 * scale * $0 })
        bias.setValue((0..<vocab).map { k in -scale * (0..<width).reduce(0) { $0 + kmeans.centroids[k * width + $1] * kmeans.centroids[k * width + $1] } })
        return Set(cluster).count
    }
}

/// Asks a store chosen per tensor name.
final class RoutingStore: WeightStore {
    private let route: (String) -> WeightStore
    init(_ route: @escaping (String) -> WeightStore) { self.route = route }
    var names: [String] { [] }
    func tensor(_ name: String, shape: [Int]) throws -> Tensor { try route(name).tensor(name, shape: shape) }
}

/// Standard Gumbel samples −log(−log u) from a seeded generator.
func gumbelNoise(count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float(-log(-log(rng.nextUnit() * (1 - 1e-12)))) }
}
