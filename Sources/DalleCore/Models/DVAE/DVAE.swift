#if canImport(Glibc)
import Glibc
#endif

/// OpenAI's discrete VAE (`dall_e.Encoder` and `dall_e.Decoder`): images to grids of
/// tokens and back. Parameters are named as in the reference's state_dicts, under
/// "dvae.encoder." and "dvae.decoder." (e.g. "dvae.encoder.blocks.group_1.block_1.res_path.conv_1.w").
///
/// Encoder: 7×7 conv → groups of res-blocks (widths n_hid·1, 2, 4, 8), 2×2 max-pool
/// between groups → ReLU → 1×1 conv to vocabulary logits.
/// Decoder: one-hot tokens → 1×1 conv (a column gather) → groups of res-blocks (widths
/// n_hid·8, 4, 2, 1), nearest 2× upsampling between groups → ReLU → 1×1 conv to
/// 2·output_channels statistics, whose first half through a sigmoid is the image.
public struct DVAE: Sendable {
    public let config: DVAEConfig

    let encoderInput: Conv2d
    let encoderGroups: [[ConvResBlock]]
    let encoderOutput: Conv2d
    /// The decoder's input 1×1 convolution: weight [n_init, vocab] and bias [n_init].
    let tokenEmbedding: [Float]
    let tokenEmbeddingBias: [Float]
    let decoderGroups: [[ConvResBlock]]
    let decoderOutput: Conv2d

    /// `logit_laplace_eps` of `dall_e.utils`: pixels are squeezed into [eps, 1 - eps].
    static let pixelEpsilon: Float = 0.1

    /// Pixels in [0, 1] squeezed into [eps, 1 - eps] (`map_pixels`), as the training losses read them.
    static func mapPixels(_ x: [Float]) -> [Float] { x.map { (1 - 2 * pixelEpsilon) * $0 + pixelEpsilon } }

    /// Loads every parameter of `config` from `weights`, strictly: a missing tensor, a
    /// wrong shape, an invalid configuration or a "dvae.*" tensor the configuration does
    /// not use is a `badFile` error.
    public init(config: DVAEConfig, weights: WeightStore) throws {
        try config.validate()
        self.config = config
        let loader = StrictWeightLoader(weights)
        let hid = config.hiddenChannels, groups = config.groupCount
        let layers = groups * config.blocksPerGroup
        let postGain = Float(1 / Double(layers * layers))

        // Width of encoder group g (0-based); the decoder runs the same widths in reverse.
        func width(_ g: Int) -> Int { hid << g }
        func group(_ prefix: String, _ g: Int, firstIn: Int, out: Int, kernels: [Int]) throws -> [ConvResBlock] {
            try (0..<config.blocksPerGroup).map { i in
                try ConvResBlock(dVAE: "\(prefix).group_\(g + 1).block_\(i + 1)",
                                 inChannels: i == 0 ? firstIn : out, outChannels: out,
                                 kernelSizes: kernels, postGain: postGain, loader: loader)
            }
        }

        let enc = "dvae.encoder.blocks"
        encoderInput = try loader.conv(enc + ".input", in: config.inputChannels, out: hid, kernel: 7)
        encoderGroups = try (0..<groups).map { g in
            try group(enc, g, firstIn: width(max(g - 1, 0)), out: width(g), kernels: [3, 3, 3, 1])
        }
        encoderOutput = try loader.conv(enc + ".output.conv", in: width(groups - 1), out: config.vocabSize, kernel: 1)

        let dec = "dvae.decoder.blocks"
        tokenEmbedding = try loader.tensor(dec + ".input.w", shape: [config.initChannels, config.vocabSize, 1, 1]).scalars
        tokenEmbeddingBias = try loader.tensor(dec + ".input.b", shape: [config.initChannels]).scalars
        decoderGroups = try (0..<groups).map { g in
            let level = groups - 1 - g
            return try group(dec, g, firstIn: g == 0 ? config.initChannels : width(level + 1),
                             out: width(level), kernels: [1, 3, 3, 3])
        }
        decoderOutput = try loader.conv(dec + ".output.conv", in: hid, out: 2 * config.outputChannels, kernel: 1)

        try loader.rejectUnused(prefix: "dvae.", model: "dVAE")
    }

    /// Weights for `config` initialised as the reference does (normal with std
    /// 1/sqrt(n_in·k²), zero biases) from a generator seeded with `seed`; for tests and
    /// benchmarks. Empty when `config` is invalid.
    public static func randomWeights(config: DVAEConfig, seed: UInt64) -> InMemoryWeights {
        let store = DVAEReferenceInit(seed: seed)
        guard (try? DVAE(config: config, weights: store)) != nil else { return InMemoryWeights() }
        return InMemoryWeights(store.made)
    }

    // MARK: Encoder

    /// Vocabulary logits [N, vocab, G, G] for images [N, input_channels, S, S] with
    /// values in [0, 1] (`map_pixels` is applied here). Throws `invalidArgument` for
    /// any other shape.
    public func encoderLogits(_ pixels: Tensor, pool: ThreadPool) throws -> Tensor {
        let s = config.imageSize
        guard pixels.rank == 4, pixels.shape[0] > 0, Array(pixels.shape.dropFirst()) == [config.inputChannels, s, s] else {
            throw DalleError.invalidArgument(
                "dVAE encoder expects images [N, \(config.inputChannels), \(s), \(s)], got \(pixels.shape)")
        }
        try WorkingMemory.require(workingBytes(images: pixels.shape[0]), threads: pool.threads, for: "the dVAE encoder on \(pixels.shape[0]) images")
        var x = pixels
        let eps = DVAE.pixelEpsilon, gain: Float = 1 - 2 * eps
        for i in 0..<x.count { x.scalars[i] = gain * x.scalars[i] + eps }
        x = conv2d(x, encoderInput, pool: pool)
        for (g, blocks) in encoderGroups.enumerated() {
            for block in blocks { x = block(x, pool: pool) }
            if g < encoderGroups.count - 1 { x = maxPool2x2(x, pool: pool) }
        }
        return conv2d(x, encoderOutput, reluInput: true, pool: pool)
    }

    /// Token grids [N, G, G] (row-major) for images [N, input_channels, S, S] in [0, 1]:
    /// the argmax of `encoderLogits`, the lowest index winning ties as in `torch.argmax`.
    public func encode(_ pixels: Tensor, pool: ThreadPool) throws -> [Int32] {
        let logits = try encoderLogits(pixels, pool: pool)
        let n = logits.shape[0], vocab = logits.shape[1], plane = logits.shape[2] * logits.shape[3]
        var tokens = [Int32](repeating: 0, count: n * plane)
        logits.scalars.withUnsafeBufferPointer { lp in
            tokens.withUnsafeMutableBufferPointer { tp in
                let l = lp.baseAddress!, t = tp.baseAddress!
                pool.parallelFor(n * plane) { range in
                    for cell in range {
                        let base = (cell / plane) * vocab * plane + cell % plane
                        var best = 0, bestValue = l[base]
                        for v in 1..<vocab where l[base + v * plane] > bestValue {
                            best = v; bestValue = l[base + v * plane]
                        }
                        t[cell] = Int32(best)
                    }
                }
            }
        }
        return tokens
    }

    // MARK: Decoder

    /// Decoder statistics [N, 2·output_channels, S, S] for `count` token grids of
    /// G×G tokens each (row-major). Throws `invalidArgument` when `tokens` does not hold
    /// count·G² values or a token is outside 0..<vocab.
    public func decoderStats(tokens: [Int32], count: Int, pool: ThreadPool) throws -> Tensor {
        let grid = config.tokenGridSize, plane = grid * grid
        let (expected, overflow) = count.multipliedReportingOverflow(by: plane)
        guard count > 0, !overflow, tokens.count == expected else {
            throw DalleError.invalidArgument(
                "dVAE decoder expects \(count) grid(s) of \(grid)×\(grid) tokens, got \(tokens.count) tokens")
        }
        let vocab = config.vocabSize
        if let bad = tokens.firstIndex(where: { $0 < 0 || Int($0) >= vocab }) {
            throw DalleError.invalidArgument("token \(tokens[bad]) at index \(bad) is outside 0..<\(vocab)")
        }
        try WorkingMemory.require(workingBytes(images: count), threads: pool.threads, for: "the dVAE decoder on \(count) grids")

        // The input 1×1 convolution of a one-hot grid picks one weight column per cell.
        let channels = config.initChannels
        var x = Tensor(zeros: [count, channels, grid, grid])
        tokenEmbedding.withUnsafeBufferPointer { wp in
            tokens.withUnsafeBufferPointer { tp in
                x.scalars.withUnsafeMutableBufferPointer { xp in
                    let w = wp.baseAddress!, t = tp.baseAddress!, out = xp.baseAddress!
                    let bias = tokenEmbeddingBias
                    pool.parallelFor(count * channels) { range in
                        for job in range {
                            let b = job / channels, c = job % channels
                            let row = w + c * vocab, cells = t + b * plane, dst = out + job * plane
                            for p in 0..<plane { dst[p] = row[Int(cells[p])] + bias[c] }
                        }
                    }
                }
            }
        }
        for (g, blocks) in decoderGroups.enumerated() {
            for block in blocks { x = block(x, pool: pool) }
            if g < decoderGroups.count - 1 { x = upsampleNearest2x(x, pool: pool) }
        }
        return conv2d(x, decoderOutput, reluInput: true, pool: pool)
    }

    /// Images [N, output_channels, S, S] in [0, 1] for `count` token grids:
    /// `unmap_pixels(sigmoid(stats[:, :output_channels]))`.
    public func decode(tokens: [Int32], count: Int, pool: ThreadPool) throws -> Tensor {
        let stats = try decoderStats(tokens: tokens, count: count, pool: pool)
        let channels = config.outputChannels, plane = config.imageSize * config.imageSize
        let eps = DVAE.pixelEpsilon, range: Float = 1 - 2 * eps
        var image = Tensor(zeros: [count, channels, config.imageSize, config.imageSize])
        for b in 0..<count {
            for i in 0..<(channels * plane) {
                let v = stats.scalars[(2 * b * channels) * plane + i]
                let mean = 1 / (1 + expf(-v))
                image.scalars[b * channels * plane + i] = min(max((mean - eps) / range, 0), 1)
            }
        }
        return image
    }
}
