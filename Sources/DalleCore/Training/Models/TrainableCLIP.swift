#if canImport(Glibc)
import Glibc
#endif

/// OpenAI's ViT CLIP (see `CLIP`) as a differentiable model with the same parameter names,
/// trained with the symmetric contrastive loss and a learned temperature (`logit_scale`,
/// clamped at ln 100 as in the paper).
public final class TrainableCLIP {
    public let config: CLIPConfig
    public let parameters = ParameterSet()

    /// The largest logit scale, ln(100).
    public static let maxLogitScale = Float(log(100.0))

    /// A fresh model initialised as `clip.model.CLIP.initialize_parameters` does (seeded).
    public convenience init(config c: CLIPConfig, seed: UInt64) throws {
        let store = InitializingStore(seed: seed) { name, shape in
            let isVision = name.hasPrefix("clip.visual.")
            let width = Float(isVision ? c.visionWidth : c.textWidth)
            let layers = Float(isVision ? c.visionLayers : c.textLayers)
            let attentionStd = 1 / width.squareRoot(), projectionStd = attentionStd / (2 * layers).squareRoot()
            switch true {
            case name == "clip.logit_scale": return (Float(log(1 / 0.07)), 0)
            case name.hasSuffix("ln_1.weight") || name.hasSuffix("ln_2.weight") || name.hasSuffix("ln_pre.weight")
                || name.hasSuffix("ln_post.weight") || name.hasSuffix("ln_final.weight"): return (1, 0)
            case name.hasSuffix(".bias") || name.hasSuffix("_bias"): return (0, 0)
            case name == "clip.token_embedding.weight": return (0, 0.02)
            case name == "clip.positional_embedding": return (0, 0.01)
            case name.hasSuffix("in_proj_weight"): return (0, attentionStd)
            case name.hasSuffix("out_proj.weight") || name.hasSuffix("c_proj.weight"): return (0, projectionStd)
            case name.hasSuffix("c_fc.weight"): return (0, 1 / (2 * width).squareRoot())
            case name == "clip.visual.conv1.weight": return (0, 1 / Float(3 * shape[2] * shape[3]).squareRoot())
            default: return (0, 1 / width.squareRoot())  // class and position embeddings, projections
            }
        }
        try self.init(config: c, weights: store)
    }

    public init(config c: CLIPConfig, weights: WeightStore) throws {
        try c.validate()
        config = c
        let parameters = self.parameters
        func add(_ name: String, _ shape: [Int], decay: Bool = false) throws {
            try parameters.declare("clip." + name, shape, from: weights, decay: decay)
        }
        func blocks(_ prefix: String, width w: Int, layers: Int) throws {
            for i in 0..<layers {
                let b = prefix + "resblocks.\(i)."
                try add(b + "ln_1.weight", [w]); try add(b + "ln_1.bias", [w])
                try add(b + "attn.in_proj_weight", [3 * w, w], decay: true); try add(b + "attn.in_proj_bias", [3 * w])
                try add(b + "attn.out_proj.weight", [w, w], decay: true); try add(b + "attn.out_proj.bias", [w])
                try add(b + "ln_2.weight", [w]); try add(b + "ln_2.bias", [w])
                try add(b + "mlp.c_fc.weight", [4 * w, w], decay: true); try add(b + "mlp.c_fc.bias", [4 * w])
                try add(b + "mlp.c_proj.weight", [w, 4 * w], decay: true); try add(b + "mlp.c_proj.bias", [w])
            }
        }
        let vw = c.visionWidth, tw = c.textWidth, p = c.visionPatchSize
        try add("visual.conv1.weight", [vw, 3, p, p], decay: true)
        try add("visual.class_embedding", [vw])
        try add("visual.positional_embedding", [c.gridSize * c.gridSize + 1, vw])
        try add("visual.ln_pre.weight", [vw]); try add("visual.ln_pre.bias", [vw])
        try blocks("visual.transformer.", width: vw, layers: c.visionLayers)
        try add("visual.ln_post.weight", [vw]); try add("visual.ln_post.bias", [vw])
        try add("visual.proj", [vw, c.embedDim], decay: true)
        try add("token_embedding.weight", [c.vocabSize, tw])
        try add("positional_embedding", [c.contextLength, tw])
        try blocks("transformer.", width: tw, layers: c.textLayers)
        try add("ln_final.weight", [tw]); try add("ln_final.bias", [tw])
        try add("text_projection", [tw, c.embedDim], decay: true)
        try add("logit_scale", [])
    }

    private func p(_ weights: ParameterSet, _ name: String) throws -> Variable { try weights.named("clip." + name) }

    private func residualBlocks(_ tape: Tape, _ x: Variable, prefix: String, layers: Int, heads: Int, width: Int,
                                batch: Int, pattern: AttentionPattern, _ weights: ParameterSet) throws -> Variable {
        var x = x
        for i in 0..<layers {
            let b = prefix + "resblocks.\(i)."
            let qkv = try tape.linear(tape.layerNorm(x, p(weights, b + "ln_1.weight"), p(weights, b + "ln_1.bias")),
                                  p(weights, b + "attn.in_proj_weight"), p(weights, b + "attn.in_proj_bias"))
            let attended = tape.attention(qkv, batch: batch, heads: heads, dimHead: width / heads, pattern: pattern)
            x = try tape.add(x, tape.linear(attended, p(weights, b + "attn.out_proj.weight"), p(weights, b + "attn.out_proj.bias")))
            let hidden = try tape.quickGELU(tape.linear(tape.layerNorm(x, p(weights, b + "ln_2.weight"), p(weights, b + "ln_2.bias")),
                                                    p(weights, b + "mlp.c_fc.weight"), p(weights, b + "mlp.c_fc.bias")))
            x = try tape.add(x, tape.linear(hidden, p(weights, b + "mlp.c_proj.weight"), p(weights, b + "mlp.c_proj.bias")))
        }
        return x
    }

    /// Image embeddings [N, embed_dim] of preprocessed images [N, 3, R, R] (see `CLIPPreprocess`).
    /// `weights`: the parameters or a shadow of them.
    public func encodeImages(_ tape: Tape, pixels: [Float], count n: Int, weights: ParameterSet? = nil) throws -> Variable {
        let weights = weights ?? parameters
        let c = config, r = c.imageResolution, ps = c.visionPatchSize, grid = c.gridSize, vw = c.visionWidth
        let patchSize = 3 * ps * ps, tokens = grid * grid + 1
        var patches = [Float](repeating: 0, count: n * grid * grid * patchSize)
        for b in 0..<n { for gy in 0..<grid { for gx in 0..<grid {
            let row = ((b * grid + gy) * grid + gx) * patchSize
            for ch in 0..<3 { for y in 0..<ps { for x in 0..<ps {
                patches[row + (ch * ps + y) * ps + x] = pixels[((b * 3 + ch) * r + gy * ps + y) * r + gx * ps + x]
            } } }
        } } }
        let conv = try p(weights, "visual.conv1.weight")
        let embedded = tape.linear(Variable.constant(patches, shape: [n * grid * grid, patchSize]),
                                   tape.reshape(conv, [vw, patchSize]), nil)
        let classRows = try tape.gather(p(weights, "visual.class_embedding"), rows: [Int32](repeating: 0, count: n))
        var x = tape.interleave(classRows, embedded, sequences: n)
        let positions = (0..<(n * tokens)).map { Int32($0 % tokens) }
        x = try tape.add(x, tape.gather(p(weights, "visual.positional_embedding"), rows: positions))
        x = try tape.layerNorm(x, p(weights, "visual.ln_pre.weight"), p(weights, "visual.ln_pre.bias"))
        x = try residualBlocks(tape, x, prefix: "visual.transformer.", layers: c.visionLayers, heads: c.visionHeads,
                           width: vw, batch: n, pattern: .bidirectional(length: tokens), weights)
        let cls = tape.gather(x, rows: (0..<n).map { Int32($0 * tokens) })
        return try tape.matmul(tape.layerNorm(cls, p(weights, "visual.ln_post.weight"), p(weights, "visual.ln_post.bias")), p(weights, "visual.proj"))
    }

    /// Text embeddings [N, embed_dim] of token sequences [N, contextLength] (read at each
    /// sequence's highest id, the end-of-text token).
    public func encodeText(_ tape: Tape, tokens: [Int32], count n: Int, weights: ParameterSet? = nil) throws -> Variable {
        let weights = weights ?? parameters
        let c = config, ctx = c.contextLength
        let positions = (0..<(n * ctx)).map { Int32($0 % ctx) }
        var x = try tape.add(tape.gather(p(weights, "token_embedding.weight"), rows: tokens), tape.gather(p(weights, "positional_embedding"), rows: positions))
        x = try residualBlocks(tape, x, prefix: "transformer.", layers: c.textLayers, heads: c.textHeads,
                           width: c.textWidth, batch: n, pattern: .causal(length: ctx), weights)
        let ends = (0..<n).map { b -> Int32 in
            var end = 0
            for j in 0..<ctx where tokens[b * ctx + j] > tokens[b * ctx + end] { end = j }
            return Int32(b * ctx + end)
        }
        let last = tape.gather(x, rows: ends)
        return try tape.matmul(tape.layerNorm(last, p(weights, "ln_final.weight"), p(weights, "ln_final.bias")), p(weights, "text_projection"))
    }

    /// The contrastive loss of `images` images and `texts` captions whose first `pairs` (nil: all
    /// captions) match in order; any further images or captions match nothing (hard negatives).
    public func loss(_ tape: Tape, pixels: [Float], images m: Int, tokens: [Int32], texts n: Int, pairs: Int? = nil) throws -> Variable {
        try contrastiveLoss(tape, images: encodeImages(tape, pixels: pixels, count: m), texts: encodeText(tape, tokens: tokens, count: n),
                        pairs: pairs)
    }

    /// The same of embeddings already made (`encodeImages`, `encodeText`), at the model's temperature.
    public func contrastiveLoss(_ tape: Tape, images: Variable, texts: Variable, pairs: Int? = nil) throws -> Variable {
        tape.contrastiveLoss(images: images, texts: texts, pairs: pairs, logitScale: try p(parameters, "logit_scale"))
    }

    /// Keeps the temperature in range after an optimizer step.
    public func clampLogitScale() {
        if let s = parameters["clip.logit_scale"], s.value[0] > TrainableCLIP.maxLogitScale {
            s.setValue([TrainableCLIP.maxLogitScale])
        }
    }
}

extension Tape {
    /// The same values under another shape (same element count).
    public func reshape(_ x: Variable, _ shape: [Int]) -> Variable {
        record(x.value, shape: shape, inputs: [x]) { node in
            x.accumulateGrad { dx in withPointers(node.grad) { g in for i in 0..<node.count { dx[i] += g[i] } } }
        }
    }
}
