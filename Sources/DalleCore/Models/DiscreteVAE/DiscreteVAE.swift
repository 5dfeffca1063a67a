/// DALLE-pytorch's `DiscreteVAE`: parameters under "dvae." with its state_dict names
/// ("dvae.codebook.weight", "dvae.encoder.0.0.weight", ...).
///
/// Encoder: numLayers × (4×4 stride-2 conv → ReLU) → numResnetBlocks residual blocks →
/// 1×1 conv to token logits; tokens are the argmax. Decoder: codebook vectors → (a 1×1 conv
/// to hiddenDim when there are residual blocks) → residual blocks → numLayers × (4×4
/// stride-2 transposed conv → ReLU) → 1×1 conv to image channels. A residual block is
/// x + conv1×1(relu(conv3×3(relu(conv3×3(x))))).
public struct DiscreteVAE: ImageTokenizer {
    public let config: DiscreteVAEConfig

    let codebook: Embedding
    /// 4×4, stride 2, padding 1, each followed by ReLU.
    let encoderDown: [Conv2d]
    let encoderBlocks: [ConvResBlock]
    let encoderOutput: Conv2d
    let decoderInput: Conv2d?
    let decoderBlocks: [ConvResBlock]
    /// 4×4, stride 2, padding 1 transposed convolutions, each followed by ReLU.
    let decoderUp: [ConvTranspose2d]
    let decoderOutput: Conv2d

    /// Loads every parameter strictly (missing, mis-shaped or unused "dvae.*" tensors are `badFile`).
    public init(config: DiscreteVAEConfig, weights: WeightStore) throws {
        try config.validate()
        self.config = config
        let load = StrictWeightLoader(weights)
        let hid = config.hiddenDim, blocks = config.numResnetBlocks
        func conv(_ name: String, _ out: Int, _ inp: Int, _ k: Int) throws -> Conv2d {
            try Conv2d(name, in: inp, out: out, kernel: k, loader: load)
        }
        func residual(_ name: String) throws -> ConvResBlock {
            ConvResBlock(convs: [try conv(name + ".net.0", hid, hid, 3), try conv(name + ".net.2", hid, hid, 3),
                                 try conv(name + ".net.4", hid, hid, 1)], reluFirst: false)
        }
        codebook = try Embedding("dvae.codebook.weight", count: config.numTokens, width: config.codebookDim, loader: load)
        encoderDown = try (0..<config.numLayers).map { i in
            try Conv2d("dvae.encoder.\(i).0", in: i == 0 ? config.channels : hid, out: hid, kernel: 4, stride: 2, padding: 1,
                       loader: load)
        }
        encoderBlocks = try (0..<blocks).map { try residual("dvae.encoder.\(config.numLayers + $0)") }
        encoderOutput = try conv("dvae.encoder.\(config.numLayers + blocks)", config.numTokens, hid, 1)
        let first = blocks > 0 ? 1 : 0
        decoderInput = blocks > 0 ? try conv("dvae.decoder.0", hid, config.codebookDim, 1) : nil
        decoderBlocks = try (0..<blocks).map { try residual("dvae.decoder.\(first + $0)") }
        decoderUp = try (0..<config.numLayers).map { i in
            try ConvTranspose2d("dvae.decoder.\(first + blocks + i).0", in: i == 0 && blocks == 0 ? config.codebookDim : hid,
                                out: hid, kernel: 4, stride: 2, padding: 1, loader: load)
        }
        decoderOutput = try conv("dvae.decoder.\(first + blocks + config.numLayers)", config.channels, hid, 1)
        try load.rejectUnused(prefix: "dvae.", model: "DiscreteVAE")
    }

    public var imageSize: Int { config.imageSize }
    public var gridSize: Int { config.gridSize }
    public var vocabSize: Int { config.numTokens }

    /// Eight activations of hidden_dim channels at full size (the last transposed
    /// convolution's output), the token logits (or codes) and the images.
    public func workingBytes(images: Int) -> Int {
        let c = config, pixels = c.imageSize * c.imageSize, grid = c.gridSize * c.gridSize
        let perImage = WorkingMemory.sum(8 * c.hiddenDim * pixels, 2 * WorkingMemory.sum(c.numTokens, c.codebookDim) * grid,
                                         8 * c.channels * pixels)
        return WorkingMemory.product(images, perImage, MemoryLayout<Float>.size)
    }

    /// Token logits [N, numTokens, G, G] for images [N, channels, S, S] in [0, 1].
    public func encoderLogits(_ pixels: Tensor, pool: ThreadPool) throws -> Tensor {
        let c = config
        guard pixels.rank == 4, pixels.shape[0] > 0, Array(pixels.shape.dropFirst()) == [c.channels, c.imageSize, c.imageSize] else {
            throw DalleError.invalidArgument("DiscreteVAE expects images [N, \(c.channels), \(c.imageSize), \(c.imageSize)], got \(pixels.shape)")
        }
        try WorkingMemory.require(workingBytes(images: pixels.shape[0]), threads: pool.threads, for: "the DiscreteVAE encoder on \(pixels.shape[0]) images")
        var x = pixels
        let plane = c.imageSize * c.imageSize
        for i in 0..<x.count {
            let channel = (i / plane) % c.channels
            x.scalars[i] = (x.scalars[i] - c.normalizationMean[channel]) / c.normalizationStd[channel]
        }
        for layer in encoderDown {
            x = conv2d(x, layer, pool: pool)
            relu(&x)
        }
        for block in encoderBlocks { x = block(x, pool: pool) }
        return conv2d(x, encoderOutput, pool: pool)
    }

    /// Token grids (row-major, image after image): the argmax of `encoderLogits`, the lowest
    /// index winning ties as in `torch.argmax`.
    public func encode(_ pixels: Tensor, pool: ThreadPool) throws -> [Int32] {
        let logits = try encoderLogits(pixels, pool: pool)
        let n = logits.shape[0], vocab = logits.shape[1], plane = logits.shape[2] * logits.shape[3]
        var tokens = [Int32](repeating: 0, count: n * plane)
        for cell in 0..<(n * plane) {
            let base = (cell / plane) * vocab * plane + cell % plane
            var best = 0, bestValue = logits.scalars[base]
            for v in 1..<max(vocab, 1) where logits.scalars[base + v * plane] > bestValue {
                best = v; bestValue = logits.scalars[base + v * plane]
            }
            tokens[cell] = Int32(best)
        }
        return tokens
    }

    /// The decoder's raw output [count, channels, S, S] (in the normalised space), as
    /// DALLE-pytorch's `DiscreteVAE.decode` returns it.
    public func decoderOutput(tokens: [Int32], count: Int, pool: ThreadPool) throws -> Tensor {
        let g = config.gridSize, plane = g * g, dim = config.codebookDim
        let (expected, overflow) = count.multipliedReportingOverflow(by: plane)
        guard count > 0, !overflow, tokens.count == expected else {
            throw DalleError.invalidArgument("DiscreteVAE decoder expects \(count) grid(s) of \(g)×\(g) tokens, got \(tokens.count)")
        }
        if let bad = tokens.firstIndex(where: { $0 < 0 || Int($0) >= config.numTokens }) {
            throw DalleError.invalidArgument("token \(tokens[bad]) at index \(bad) is outside 0..<\(config.numTokens)")
        }
        try WorkingMemory.require(workingBytes(images: count), threads: pool.threads, for: "the DiscreteVAE decoder on \(count) grids")
        var x = Tensor(zeros: [count, dim, g, g])
        var vector = [Float](repeating: 0, count: dim)
        for b in 0..<count {
            for p in 0..<plane {
                vector.withUnsafeMutableBufferPointer { codebook.copyRow(Int(tokens[b * plane + p]), into: $0.baseAddress!) }
                for d in 0..<dim { x.scalars[(b * dim + d) * plane + p] = vector[d] }
            }
        }
        if let decoderInput { x = conv2d(x, decoderInput, pool: pool) }
        for block in decoderBlocks { x = block(x, pool: pool) }
        for layer in decoderUp {
            x = convTranspose2d(x, layer, pool: pool)
            relu(&x)
        }
        return conv2d(x, decoderOutput, pool: pool)
    }

    /// Images in [0, 1]: the decoder output mapped back through the normalisation and clamped.
    public func decode(tokens: [Int32], count: Int, pool: ThreadPool) throws -> Tensor {
        var y = try decoderOutput(tokens: tokens, count: count, pool: pool)
        let plane = config.imageSize * config.imageSize
        for i in 0..<y.count {
            let channel = (i / plane) % config.channels
            let v = y.scalars[i] * config.normalizationStd[channel] + config.normalizationMean[channel]
            y.scalars[i] = min(max(v, 0), 1)
        }
        return y
    }
}
