/// DALLE-pytorch's transformer (see `DalleTransformer`) as a differentiable model with the
/// same parameter names, for the configurations training supports: learned text and axial
/// image positions or rotary ones, with or without token shift, no sandwich norm, not
/// `stable`, no shared layers; any attention types.
///
/// Loss (DALLE-pytorch's `forward(..., return_loss=True)`): cross-entropy of every next
/// token over the stream <bos>, text (padding replaced by per-position pad ids), image; the
/// text positions' mean weighted 1/8 and the image positions' 7/8.
public final class TrainableTransformer {
    public let config: TransformerConfig
    public let parameters = ParameterSet()
    private let patterns: [AttentionType: AttentionPattern]
    /// cos and sin of the rotary table's first seqLen positions, [seqLen, rotaryDims]; empty
    /// without rotary.
    private let rotaryCos: [Float], rotarySin: [Float]

    /// Weight of the image loss against the text loss (DALLE-pytorch's `loss_img_weight`).
    public static let imageLossWeight: Float = 7

    /// Throws `unsupported` for options training does not implement.
    public static func checkTrainable(_ c: TransformerConfig) throws {
        try c.validate()
        let unsupported = [(c.sandwichNorm, "sandwich_norm"), (c.stable, "stable"),
                           (c.sharedAttnIds != Array(0..<c.depth) || c.sharedFFIds != Array(0..<c.depth), "shared layers")]
        if let (_, name) = unsupported.first(where: { $0.0 }) {
            throw DalleError.unsupported("training a transformer with \(name) (training supports learned or rotary positions, token shift or none, no sandwich norm, unshared layers)")
        }
    }

    /// A fresh model: embeddings and linear weights N(0, 0.02), zero biases, unit norms,
    /// layer scales 0.1 (DALLE-pytorch's LayerScale for depth ≤ 18).
    public convenience init(config: TransformerConfig, seed: UInt64) throws {
        let store = InitializingStore(seed: seed) { name, _ in
            if name.hasSuffix(".scale") { return (0.1, 0) }
            if name.hasSuffix("norm.weight") || name.hasSuffix("to_logits.0.weight") { return (1, 0) }
            if name.hasSuffix(".bias") { return (0, 0) }
            return (0, 0.02)
        }
        try self.init(config: config, weights: store)
    }

    public init(config: TransformerConfig, weights: WeightStore) throws {
        try TrainableTransformer.checkTrainable(config)
        self.config = config
        let c = config, p = "transformer."
        var patterns: [AttentionType: AttentionPattern] = [:]
        for type in c.attnTypes where patterns[type] == nil { patterns[type] = .dalle(c, type: type) }
        self.patterns = patterns
        let parameters = self.parameters
        func add(_ name: String, _ shape: [Int], decay: Bool = false) throws {
            try parameters.declare(p + name, shape, from: weights, decay: decay)
        }
        try add("text_emb.weight", [c.textVocab, c.dim])
        try add("image_emb.weight", [c.numImageTokens, c.dim])
        if c.rotaryEmb {
            // DALLE-pytorch's `pos_emb` buffer, computed from the configuration as it does.
            let table = DalleTransformer.rotaryTable(c)
            parameters.declareBuffer(DalleTransformer.rotaryTableName, Tensor(uncheckedShape: [1, c.seqLen + 1, c.rotaryDims], scalars: table))
            (rotaryCos, rotarySin) = DalleTransformer.rotaryCosSin(table, c)
        } else {
            try add("text_pos_emb.weight", [c.textLen, c.dim])
            try add("image_pos_emb.weights.0", [1, c.imageFmapSize, 1, c.dim])
            try add("image_pos_emb.weights.1", [1, 1, c.imageFmapSize, c.dim])
            (rotaryCos, rotarySin) = ([], [])
        }
        for i in 0..<c.depth {
            let block = "transformer.layers.layers.\(i).", names = c.blockModulePaths
            try add(block + "0.fn.norm.weight", [c.dim]); try add(block + "0.fn.norm.bias", [c.dim])
            try add(block + names.attention + "to_qkv.weight", [3 * c.innerDim, c.dim], decay: true)
            try add(block + names.attention + "to_out.0.weight", [c.dim, c.innerDim], decay: true)
            try add(block + names.attention + "to_out.0.bias", [c.dim])
            try add(block + "0.scale", [1, 1, c.dim])
            try add(block + "1.fn.norm.weight", [c.dim]); try add(block + "1.fn.norm.bias", [c.dim])
            try add(block + names.feedForward + "0.weight", [2 * c.ffHidden, c.dim], decay: true)
            try add(block + names.feedForward + "0.bias", [2 * c.ffHidden])
            try add(block + names.feedForward + "3.weight", [c.dim, c.ffHidden], decay: true)
            try add(block + names.feedForward + "3.bias", [c.dim])
            try add(block + "1.scale", [1, 1, c.dim])
        }
        try add("to_logits.0.weight", [c.dim]); try add("to_logits.0.bias", [c.dim])
        try add("to_logits.1.weight", [c.totalTokens, c.dim], decay: true)
        try add("to_logits.1.bias", [c.totalTokens])
    }

    /// Logits [batch·seqLen, totalTokens] (unmasked) for `text` [batch, textSeqLen] (0 =
    /// padding) and the image tokens [batch, imageSeqLen]; position t predicts token t + 1.
    /// `weights` is the model's `parameters` or a shadow of them (`ParameterSet.shadow`).
    public func logits(_ tape: Tape, text: [Int32], image: [Int32], batch: Int, weights: ParameterSet? = nil) throws -> Variable {
        let weights = weights ?? parameters
        func p(_ name: String) throws -> Variable { try weights.named("transformer." + name) }
        let c = config, textLen = c.textLen, imageInputs = c.imageSeqLen - 1
        var textIds = [Int32](), textPositions = [Int32](), imageIds = [Int32](), rows = [Int32](), cols = [Int32]()
        for b in 0..<batch {
            for t in 0..<textLen {
                let id = t == 0 ? 0 : text[b * c.textSeqLen + t - 1]
                textIds.append(t > 0 && id == 0 ? Int32(c.numTextTokens + t - 1) : id)
                textPositions.append(Int32(t))
            }
            for i in 0..<imageInputs {
                imageIds.append(image[b * c.imageSeqLen + i])
                rows.append(Int32(i / c.imageFmapSize)); cols.append(Int32(i % c.imageFmapSize))
            }
        }
        var textPart = try tape.gather(p("text_emb.weight"), rows: textIds), imagePart = try tape.gather(p("image_emb.weight"), rows: imageIds)
        if !c.rotaryEmb {
            textPart = try tape.add(textPart, tape.gather(p("text_pos_emb.weight"), rows: textPositions))
            imagePart = try tape.add(tape.add(imagePart, tape.gather(p("image_pos_emb.weights.0"), rows: rows)),
                                 tape.gather(p("image_pos_emb.weights.1"), rows: cols))
        }
        var x = tape.interleave(textPart, imagePart, sequences: batch)
        let names = c.blockModulePaths
        func blockInput(_ x: Variable, norm: String) throws -> Variable {
            let normed = try tape.layerNorm(x, p(norm + ".weight"), p(norm + ".bias"))
            return c.shiftTokens ? tape.shiftTokens(normed, sequences: batch, config: c) : normed
        }
        for i in 0..<c.depth {
            let block = "transformer.layers.layers.\(i).", attention = block + names.attention, feedForward = block + names.feedForward
            var qkv = try tape.linear(blockInput(x, norm: block + "0.fn.norm"), p(attention + "to_qkv.weight"), nil)
            if c.rotaryEmb { qkv = tape.rotary(qkv, sequences: batch, heads: c.heads, dimHead: c.dimHead, cos: rotaryCos, sin: rotarySin) }
            let pattern = patterns[c.attentionType(layer: i)] ?? .causal(length: c.seqLen)
            let attended = tape.attention(qkv, batch: batch, heads: c.heads, dimHead: c.dimHead, pattern: pattern)
            let out = try tape.linear(attended, p(attention + "to_out.0.weight"), p(attention + "to_out.0.bias"))
            x = try tape.add(x, tape.scaleFeatures(out, p(block + "0.scale")))
            let up = try tape.linear(blockInput(x, norm: block + "1.fn.norm"), p(feedForward + "0.weight"), p(feedForward + "0.bias"))
            let down = try tape.linear(tape.geglu(up), p(feedForward + "3.weight"), p(feedForward + "3.bias"))
            x = try tape.add(x, tape.scaleFeatures(down, p(block + "1.scale")))
        }
        let normed = try tape.layerNorm(x, p("to_logits.0.weight"), p("to_logits.0.bias"))
        return try tape.linear(normed, p("to_logits.1.weight"), p("to_logits.1.bias"))
    }

    /// The weighted loss and its two parts (text, image) for a batch.
    public func loss(_ tape: Tape, text: [Int32], image: [Int32], batch: Int,
                     weights: ParameterSet? = nil) throws -> (total: Variable, text: Float, image: Float) {
        let c = config
        let logits = try logits(tape, text: text, image: image, batch: batch, weights: weights)
        var textRows: [Int] = [], textTargets: [Int32] = [], imageRows: [Int] = [], imageTargets: [Int32] = []
        for b in 0..<batch {
            for t in 0..<c.textSeqLen {
                let id = text[b * c.textSeqLen + t]
                textRows.append(b * c.seqLen + t)
                textTargets.append(id == 0 ? Int32(c.numTextTokens + t) : id)
            }
            for i in 0..<c.imageSeqLen {
                imageRows.append(b * c.seqLen + c.textSeqLen + i)
                imageTargets.append(Int32(c.textVocab) + image[b * c.imageSeqLen + i])
            }
        }
        let textLoss = tape.crossEntropy(logits, rows: textRows, targets: textTargets, columns: 0..<c.textVocab)
        let imageLoss = tape.crossEntropy(logits, rows: imageRows, targets: imageTargets, columns: c.textVocab..<c.totalTokens)
        let w = TrainableTransformer.imageLossWeight
        let total = tape.weightedSum([(textLoss, 1 / (w + 1)), (imageLoss, w / (w + 1))])
        return (total, textLoss.value[0], imageLoss.value[0])
    }
}

extension Tape {
    /// Per sequence, a's rows then b's rows: a [n·la, d], b [n·lb, d] → [n·(la + lb), d].
    public func interleave(_ a: Variable, _ b: Variable, sequences n: Int) -> Variable {
        let d = a.shape[a.shape.count - 1], la = a.count / (n * d), lb = b.count / (n * d), l = la + lb
        var y = [Float](repeating: 0, count: n * l * d)
        for s in 0..<n {
            for i in 0..<(la * d) { y[s * l * d + i] = a.value[s * la * d + i] }
            for i in 0..<(lb * d) { y[(s * l + la) * d + i] = b.value[s * lb * d + i] }
        }
        return record(y, shape: [n * l, d], inputs: [a, b]) { node in
            withPointers(node.grad) { g in
                a.accumulateGrad { da in for s in 0..<n { for i in 0..<(la * d) { da[s * la * d + i] += g[s * l * d + i] } } }
                b.accumulateGrad { db in for s in 0..<n { for i in 0..<(lb * d) { db[s * lb * d + i] += g[(s * l + la) * d + i] } } }
            }
        }
    }

    /// DALLE-pytorch's PreShiftToken on [n·seqLen, dim] rows of n sequences: text positions
    /// take the first half of the previous position's features; image positions the first
    /// quarter of the token above and the second quarter of the token to the left (zeros at
    /// the edges); the second half of every row passes through.
    public func shiftTokens(_ x: Variable, sequences n: Int, config c: TransformerConfig) -> Variable {
        let dim = c.dim, half = dim / 2, quarter = dim / 4, f = c.imageFmapSize, length = x.count / (n * dim)
        // Per position and feature, the position whose value it takes (-1: zero) within a sequence.
        func source(_ p: Int, _ d: Int) -> Int {
            if d >= half { return p }
            if p < c.textLen { return p - 1 }
            let i = p - c.textLen
            if d < quarter { return i / f == 0 ? -1 : p - f }
            return i % f == 0 ? -1 : p - 1
        }
        var y = [Float](repeating: 0, count: x.count)
        for s in 0..<n {
            for p in 0..<length {
                for d in 0..<dim {
                    let from = source(p, d)
                    if from >= 0 { y[(s * length + p) * dim + d] = x.value[(s * length + from) * dim + d] }
                }
            }
        }
        return record(y, shape: x.shape, inputs: [x]) { node in
            withPointers(node.grad) { g in
                x.accumulateGrad { dx in
                    for s in 0..<n {
                        for p in 0..<length {
                            for d in 0..<dim {
                                let from = source(p, d)
                                if from >= 0 { dx[(s * length + from) * dim + d] += g[(s * length + p) * dim + d] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// DALLE-pytorch's rotary embedding of q, k and v, rows [n·seqLen, 3·heads·dimHead]: in
    /// each head, the first `rotaryDims` features rotated pairwise by their position's angles
    /// (cos, sin [seqLen, rotaryDims]); the rest pass through. With no rotary features
    /// (dimHead < 6, empty tables) it is the identity.
    public func rotary(_ qkv: Variable, sequences n: Int, heads: Int, dimHead: Int, cos: [Float], sin: [Float]) -> Variable {
        let inner = heads * dimHead, width = 3 * inner, length = qkv.count / (n * width), rot = cos.count / max(length, 1)
        guard rot > 0 else { return qkv }
        let pool = self.pool
        var y = qkv.value
        y.withUnsafeMutableBufferPointer { yb in cos.withUnsafeBufferPointer { cb in sin.withUnsafeBufferPointer { sb in
            let yo = yb.baseAddress.unsafelyUnwrapped, c = cb.baseAddress.unsafelyUnwrapped, s = sb.baseAddress.unsafelyUnwrapped
            pool.parallelFor(n * length) { range in
                for r in range {
                    for head in 0..<(3 * heads) {
                        applyRotary(yo + r * width + head * dimHead, cos: c + (r % length) * rot, sin: s + (r % length) * rot, dims: rot)
                    }
                }
            }
        } } }
        return record(y, shape: qkv.shape, inputs: [qkv]) { node in
            withPointers(node.grad) { g in withPointers(cos) { c in withPointers(sin) { s in
                qkv.accumulateGrad { dx in
                    pool.parallelFor(n * length) { range in
                        for r in range {
                            let cp = c + (r % length) * rot, sp = s + (r % length) * rot
                            for head in 0..<(3 * heads) {
                                let base = r * width + head * dimHead
                                // The transposed rotation for the rotated pairs, the identity for the rest.
                                var i = 0
                                while i < rot {
                                    let ga = g[base + i], gb = g[base + i + 1]
                                    dx[base + i] += ga * cp[i] + gb * sp[i + 1]
                                    dx[base + i + 1] += gb * cp[i + 1] - ga * sp[i]
                                    i += 2
                                }
                                for d in rot..<dimHead { dx[base + d] += g[base + d] }
                            }
                        }
                    }
                }
            } } }
        }
    }
}
