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

    /// A fresh model initialised as the reference does (seeded), except at the codebook: the
    /// decoder's input convolution, a table of code embeddings, starts with unit variance (so
    /// each code is distinct to the decoder from the first step; with the reference's
    /// 1/sqrt(vocab) scale a small model collapses its codebook onto a few codes), and the
    /// encoder's output convolution starts with weights of standard deviation `logitInitStd`.
    /// At 0 (uniform logits) no code wins before the decoder can tell codes apart; at 1 the
    /// logits are large and differ from patch to patch, so each position's argmax is a random
    /// hash of its patch from the first step, stronger than the Gumbel noise.
    public convenience init(config: DVAEConfig, seed: UInt64, logitInitStd: Float = 0) throws {
        let reference = DVAEReferenceInit(seed: seed)
        let special = InitializingStore(seed: seed ^ 0xC0DE) { name, _ in
            name == "dvae.decoder.blocks.input.w" ? (0, 1) : name == "dvae.encoder.blocks.output.conv.w" ? (0, logitInitStd) : (0, 0)
        }
        try self.init(config: config, weights: RoutingStore { name -> WeightStore in
            name == "dvae.encoder.blocks.output.conv.w" || name == "dvae.decoder.blocks.input.w" ? special : reference
        })
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

    private func p(_ name: String) -> Variable { parameters[name] ?? Variable.constant([], shape: [0]) }

    private var postGain: Float {
        let layers = config.groupCount * config.blocksPerGroup
        return Float(1 / Double(layers * layers))
    }

    private func conv(_ tape: Tape, _ x: Variable, _ prefix: String, relu: Bool) -> Variable {
        tape.conv2d(x, p(prefix + ".w"), p(prefix + ".b"), reluInput: relu)
    }

    private func block(_ tape: Tape, _ x: Variable, _ prefix: String, convs: Int) -> Variable {
        let identity = parameters[prefix + ".id_path.w"] == nil ? x : conv(tape, x, prefix + ".id_path", relu: false)
        var h = x
        for j in 1...convs { h = conv(tape, h, prefix + ".res_path.conv_\(j)", relu: true) }
        return tape.add(identity, h, scale: postGain)
    }

    /// Codebook logits [N, vocab, G, G] of pixels already mapped into (ε, 1 − ε), [N, C, S, S].
    public func encoderLogits(_ tape: Tape, mappedPixels x: Variable) -> Variable {
        var h = conv(tape, x, "dvae.encoder.blocks.input", relu: false)
        for g in 0..<config.groupCount {
            for i in 0..<config.blocksPerGroup { h = block(tape, h, "dvae.encoder.blocks.group_\(g + 1).block_\(i + 1)", convs: 4) }
            if g < config.groupCount - 1 { h = tape.maxPool2x2(h) }
        }
        return conv(tape, h, "dvae.encoder.blocks.output.conv", relu: true)
    }

    /// Statistics [N, 2C, S, S] (μ then ln b per channel) of a relaxed one-hot grid [N, vocab, G, G].
    public func decoderStats(_ tape: Tape, codes z: Variable) -> Variable {
        var h = conv(tape, z, "dvae.decoder.blocks.input", relu: false)
        for g in 0..<config.groupCount {
            for i in 0..<config.blocksPerGroup { h = block(tape, h, "dvae.decoder.blocks.group_\(g + 1).block_\(i + 1)", convs: 4) }
            if g < config.groupCount - 1 { h = tape.upsample2x(h) }
        }
        return conv(tape, h, "dvae.decoder.blocks.output.conv", relu: true)
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
        /// Distinct codes the encoder's argmax picks over the batch (a collapsed codebook uses few).
        public var codesUsed: Int
    }

    private func distinctArgmax(_ logits: Variable) -> Int {
        let n = logits.shape[0], vocab = logits.shape[1], plane = logits.shape[2] * logits.shape[3]
        var used = Set<Int>()
        for cell in 0..<(n * plane) {
            let base = (cell / plane) * vocab * plane + cell % plane
            var best = 0
            for v in 1..<vocab where logits.value[base + v * plane] > logits.value[base + best * plane] { best = v }
            used.insert(best)
        }
        return used.count
    }

    /// `images` [N, C, S, S] in [0, 1]; `noise` standard Gumbel samples [N, vocab, G, G].
    /// `minLogScale` clamps the likelihood's ln b from below (see `DVAEStage`). `usageWeight`
    /// weighs the codebook-usage term KL(q̄ ‖ uniform) of the batch-average q̄ per token (see
    /// `Tape.codeUsageKL`) while the batch uses fewer than `usageFloor` codes' worth, exp H(q̄):
    /// it stops a collapse without spreading the background over the whole codebook.
    public func loss(_ tape: Tape, images: [Float], count n: Int, noise: [Float], temperature: Float, klWeight: Float,
                     usageWeight: Float = 0, usageFloor: Float = .infinity, minLogScale: Float = -.infinity, hard: Bool = false) -> Loss {
        let c = config, s = c.imageSize, g = c.tokenGridSize
        let eps = DVAE.pixelEpsilon
        let mapped = images.map { (1 - 2 * eps) * $0 + eps }
        let x = Variable.constant(mapped, shape: [n, c.inputChannels, s, s])
        let logits = encoderLogits(tape, mappedPixels: x)
        let z = tape.gumbelSoftmax(logits, noise: noise, temperature: temperature, hard: hard)
        let stats = decoderStats(tape, codes: z)
        let nll = tape.logitLaplaceNLL(stats, target: mapped, minLogScale: minLogScale)
        let kl = tape.klToUniform(logits)
        let usage = tape.codeUsageKL(logits)
        let collapsing = expf(logf(Float(c.vocabSize)) - usage.value[0]) < usageFloor
        let values = Float(c.outputChannels * s * s)
        let total = tape.weightedSum([(nll, 1 / values), (kl, klWeight / values),
                                      (usage, collapsing ? usageWeight * Float(g * g) / values : 0)])
        return Loss(total: total, reconstruction: nll.value[0] / values, kl: kl.value[0] / Float(g * g), usage: usage.value[0],
                    codesUsed: distinctArgmax(logits))
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
