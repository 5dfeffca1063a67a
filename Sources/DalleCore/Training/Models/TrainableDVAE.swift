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

    /// The encoder's last features [N, F, G, G] (before the output convolution's ReLU) of pixels
    /// already mapped into (ε, 1 − ε), [N, C, S, S].
    public func encoderFeatures(_ tape: Tape, mappedPixels x: Variable) -> Variable {
        var h = conv(tape, x, "dvae.encoder.blocks.input", relu: false)
        for g in 0..<config.groupCount {
            for i in 0..<config.blocksPerGroup { h = block(tape, h, "dvae.encoder.blocks.group_\(g + 1).block_\(i + 1)", convs: 4) }
            if g < config.groupCount - 1 { h = tape.maxPool2x2(h) }
        }
        return h
    }

    /// Codebook logits [N, vocab, G, G] of encoder features.
    public func encoderLogits(_ tape: Tape, features: Variable) -> Variable {
        conv(tape, features, "dvae.encoder.blocks.output.conv", relu: true)
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
        /// The encoder's argmax code of every cell, [N·G·G] in (image, row, column) order.
        public var codes: [Int]
        /// Distinct codes the argmax picks over the batch (a collapsed codebook uses few).
        public var codesUsed: Int { Set(codes).count }
        /// What a code restart reads (see `restartCodes`): the encoder's features and logits, and
        /// each cell's reconstruction error (Σ |logit(x) − μ| over its pixels).
        public var features: Variable
        public var logits: Variable
        public var cellErrors: [Float]
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

    /// Σ |logit(x) − μ| over each cell's pixels and channels, [N·G·G].
    private func cellErrors(stats: Variable, target: [Float]) -> [Float] {
        let n = stats.shape[0], channels = stats.shape[1] / 2, s = stats.shape[2], g = config.tokenGridSize, side = s / g
        var errors = [Float](repeating: 0, count: n * g * g)
        for b in 0..<n {
            for ch in 0..<channels {
                for y in 0..<s {
                    for x in 0..<s {
                        let px = target[((b * channels + ch) * s + y) * s + x], mu = stats.value[((2 * b * channels + ch) * s + y) * s + x]
                        errors[(b * g + y / side) * g + x / side] += abs(logf(px / (1 - px)) - mu)
                    }
                }
            }
        }
        return errors
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
        let features = encoderFeatures(tape, mappedPixels: x)
        let logits = encoderLogits(tape, features: features)
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
                    codes: argmaxCodes(logits), features: features, logits: logits, cellErrors: cellErrors(stats: stats, target: mapped))
    }

    /// Restarts dead codes on the cells a batch reconstructs worst (the dVAE form of VQ-VAE's
    /// dead-code restarts): each code of `dead` takes a cell drawn with probability ∝ its error
    /// (without replacement). Its logit weights become the cell's features (ReLU'd) scaled to the
    /// median norm of the other codes' weights, its bias makes it the cell's argmax by `margin`,
    /// and the decoder's embedding of the cell's current code is copied to it, so the
    /// reconstruction does not change until training pulls the two codes apart. Returns the
    /// (code, cell) pairs restarted.
    @discardableResult
    public func restartCodes(_ dead: [Int], from batch: Loss, seed: UInt64, margin: Float = 1) -> [(code: Int, cell: Int)] {
        let c = config, vocab = c.vocabSize, plane = c.tokenGridSize * c.tokenGridSize
        let width = batch.features.shape[1]
        guard let weight = parameters["dvae.encoder.blocks.output.conv.w"], let bias = parameters["dvae.encoder.blocks.output.conv.b"],
              let embedding = parameters["dvae.decoder.blocks.input.w"], !dead.isEmpty else { return [] }
        var w = weight.value, b = bias.value, e = embedding.value
        let deadSet = Set(dead)
        func rowNorm(_ k: Int) -> Float { (0..<width).reduce(0) { $0 + w[k * width + $1] * w[k * width + $1] }.squareRoot() }
        let liveNorms = (0..<vocab).filter { !deadSet.contains($0) }.map(rowNorm).sorted()
        let scale = liveNorms.isEmpty ? 1 : liveNorms[liveNorms.count / 2]
        var weights = batch.cellErrors.map { Double(max($0, 0)) }
        var rng = SplitMix64(seed: seed)
        var restarted: [(code: Int, cell: Int)] = []
        for code in dead {
            let total = weights.reduce(0, +)
            guard total > 0 else { break }
            var r = rng.nextUnit() * total, cell = 0
            while cell < weights.count - 1 && r >= weights[cell] { r -= weights[cell]; cell += 1 }
            weights[cell] = 0
            let image = cell / plane, position = cell % plane
            let h = (0..<width).map { max(batch.features.value[(image * width + $0) * plane + position], 0) }
            let norm = h.reduce(0) { $0 + $1 * $1 }.squareRoot()
            guard norm > 0 else { continue }
            let current = batch.codes[cell]
            let best = batch.logits.value[(image * vocab + current) * plane + position]
            var dot: Float = 0
            for i in 0..<width {
                w[code * width + i] = h[i] * scale / norm
                dot += w[code * width + i] * h[i]
            }
            b[code] = best + margin - dot
            for ch in 0..<c.initChannels { e[ch * vocab + code] = e[ch * vocab + current] }
            restarted.append((code, cell))
        }
        weight.setValue(w)
        bias.setValue(b)
        embedding.setValue(e)
        return restarted
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
