#if canImport(Glibc)
import Glibc
#endif

/// OpenAI's CLIP with a vision transformer (`clip.model.CLIP`): images and texts to
/// embeddings in one space, compared by cosine similarity scaled by `exp(logit_scale)`.
/// Parameters keep the reference's state-dict names under "clip." (e.g.
/// "clip.visual.transformer.resblocks.0.attn.in_proj_weight", "clip.text_projection").
///
/// Vision: patches (a stride-`patch` convolution without bias) → class token + positional
/// embedding → ln_pre → residual attention blocks → ln_post of the class token → proj.
/// Text: token + positional embedding → causally masked blocks → ln_final at the
/// end-of-text token (the highest id in the sequence) → text_projection.
public struct CLIP: Sendable {
    public let config: CLIPConfig
    /// exp(logit_scale): the factor on cosine similarities.
    public let logitScale: Float

    /// conv1 (stride = kernel = patch, no bias) as a linear map of flattened patches.
    let patchEmbedding: Linear
    let classEmbedding: [Float]
    let visionPositions: [Float]
    let lnPre: LayerNorm
    let visionBlocks: [CLIPResidualBlock]
    let lnPost: LayerNorm
    /// `visual.proj`, [vision_width, embed_dim].
    let visionProjection: Linear

    let tokenEmbedding: Embedding
    let textPositions: [Float]
    let textBlocks: [CLIPResidualBlock]
    let lnFinal: LayerNorm
    /// `text_projection`, [transformer_width, embed_dim].
    let textProjection: Linear
    /// How preprocessing centre-crops images for this model (torchvision's rounding for OpenAI's CLIP,
    /// transformers' for an unCLIP bundle's image encoder).
    public internal(set) var cropRounding: CLIPPreprocess.CropRounding = .halfToEven

    /// Loads every parameter of `config` from `weights` strictly: a missing tensor, a wrong
    /// shape, an invalid configuration or an unused "clip.*" tensor is a `badFile` error.
    public init(config: CLIPConfig, weights: WeightStore) throws {
        try config.validate()
        self.config = config
        let loader = StrictWeightLoader(weights)
        let vw = config.visionWidth, tw = config.textWidth, p = config.visionPatchSize, e = config.embedDim
        let grid = config.gridSize

        let conv = try loader.weight("clip.visual.conv1.weight", shape: [vw, 3, p, p])
        patchEmbedding = Linear(weight: conv.viewed(as: [vw, 3 * p * p]), bias: nil)
        classEmbedding = try loader.weight("clip.visual.class_embedding", shape: [vw]).floats()
        visionPositions = try loader.weight("clip.visual.positional_embedding", shape: [grid * grid + 1, vw]).floats()
        lnPre = try LayerNorm("clip.visual.ln_pre", width: vw, loader: loader)
        visionBlocks = try (0..<config.visionLayers).map {
            try CLIPResidualBlock("clip.visual.transformer.resblocks.\($0)", width: vw, heads: config.visionHeads, loader: loader)
        }
        lnPost = try LayerNorm("clip.visual.ln_post", width: vw, loader: loader)
        visionProjection = Linear(inputMajor: try loader.weight("clip.visual.proj", shape: [vw, e]), bias: nil)

        tokenEmbedding = try Embedding("clip.token_embedding.weight", count: config.vocabSize, width: tw, loader: loader)
        textPositions = try loader.weight("clip.positional_embedding", shape: [config.contextLength, tw]).floats()
        textBlocks = try (0..<config.textLayers).map {
            try CLIPResidualBlock("clip.transformer.resblocks.\($0)", width: tw, heads: config.textHeads, loader: loader)
        }
        lnFinal = try LayerNorm("clip.ln_final", width: tw, loader: loader)
        textProjection = Linear(inputMajor: try loader.weight("clip.text_projection", shape: [tw, e]), bias: nil)
        logitScale = expf(try loader.tensor("clip.logit_scale", shape: []).scalars[0])
        try loader.rejectUnused(prefix: "clip.", model: "CLIP", ignoring: clipNonParameters)
    }

    /// An upper bound of the bytes embedding `images` preprocessed images and `texts` texts
    /// at once allocates: per token, a residual block's activations (its 4× MLP included)
    /// and one row of attention scores per head; per image, its pixels and patches.
    public func workingBytes(images: Int, texts: Int) -> Int {
        let c = config, visionTokens = c.gridSize * c.gridSize + 1
        let vision = WorkingMemory.product(images, WorkingMemory.sum(
            WorkingMemory.product(visionTokens, WorkingMemory.sum(16 * c.visionWidth, c.visionHeads * visionTokens)),
            WorkingMemory.product(6, c.imageResolution, c.imageResolution)))
        let text = WorkingMemory.product(texts, c.contextLength,
                                         WorkingMemory.sum(16 * c.textWidth, c.textHeads * c.contextLength))
        return WorkingMemory.product(2, WorkingMemory.sum(vision, text), MemoryLayout<Float>.size)
    }

    /// Image embeddings [N, embed_dim] (not normalised) of preprocessed images
    /// [N, 3, resolution, resolution] (see `CLIPPreprocess`).
    public func encodeImages(_ pixels: Tensor, pool: ThreadPool) throws -> Tensor {
        let s = config.imageResolution, p = config.visionPatchSize, grid = config.gridSize, vw = config.visionWidth
        guard pixels.rank == 4, pixels.shape[1] == 3, pixels.shape[2] == s, pixels.shape[3] == s else {
            throw DalleError.invalidArgument("CLIP takes images as [N, 3, \(s), \(s)], got \(pixels.shape)")
        }
        let n = pixels.shape[0], tokens = grid * grid + 1, patchSize = 3 * p * p
        guard n > 0 else { return Tensor(zeros: [0, config.embedDim]) }
        try WorkingMemory.require(workingBytes(images: n, texts: 0), threads: pool.threads, for: "CLIP on \(n) images")

        // Patches as rows [n·grid², 3·p·p] in conv1's (channel, y, x) order.
        var patches = [Float](repeating: 0, count: n * grid * grid * patchSize)
        pixels.scalars.withUnsafeBufferPointer { px in
            for b in 0..<n {
                for gy in 0..<grid {
                    for gx in 0..<grid {
                        let row = ((b * grid + gy) * grid + gx) * patchSize
                        for c in 0..<3 {
                            for y in 0..<p {
                                let src = ((b * 3 + c) * s + gy * p + y) * s + gx * p
                                let dst = row + (c * p + y) * p
                                for x in 0..<p { patches[dst + x] = px[src + x] }
                            }
                        }
                    }
                }
            }
        }
        let embedded = patchEmbedding(patches, rows: n * grid * grid, pool: pool)
        var x = [Float](repeating: 0, count: n * tokens * vw)
        for b in 0..<n {
            for t in 0..<tokens {
                for j in 0..<vw {
                    let v = t == 0 ? classEmbedding[j] : embedded[((b * grid * grid) + t - 1) * vw + j]
                    x[(b * tokens + t) * vw + j] = v + visionPositions[t * vw + j]
                }
            }
        }
        x = lnPre(x, pool: pool)
        let spans = (0..<n).map { SequenceSpan(start: $0 * tokens, length: tokens) }
        let classRows = spans.map(\.start)
        for (i, block) in visionBlocks.enumerated() {
            let last = i == visionBlocks.count - 1
            x = block(x, spans: spans, causal: false, keep: last ? classRows : nil, pool: pool)
        }
        if visionBlocks.isEmpty { x = classRows.flatMap { x[($0 * vw)..<(($0 + 1) * vw)] } }
        return Tensor(uncheckedShape: [n, config.embedDim], scalars: visionProjection(lnPost(x, pool: pool), rows: n, pool: pool))
    }

    /// Text embeddings [N, embed_dim] (not normalised) of token sequences, each exactly
    /// `contextLength` ids below `vocabSize` (as `clip.tokenize` makes them). The
    /// embedding is read at the first highest id (the end-of-text token); later tokens
    /// cannot affect it through the causal mask, so they are not computed.
    public func encodeText(_ tokens: [[Int32]], pool: ThreadPool) throws -> Tensor {
        let tw = config.textWidth
        var spans: [SequenceSpan] = []
        var rows = 0
        for (i, sequence) in tokens.enumerated() {
            guard sequence.count == config.contextLength else {
                throw DalleError.invalidArgument("text \(i) has \(sequence.count) tokens; CLIP takes exactly \(config.contextLength)")
            }
            if let bad = sequence.first(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
                throw DalleError.invalidArgument("text \(i) holds token id \(bad); ids must be in 0..<\(config.vocabSize)")
            }
            var end = 0
            for (j, id) in sequence.enumerated() where id > sequence[end] { end = j }
            spans.append(SequenceSpan(start: rows, length: end + 1))
            rows += end + 1
        }
        guard !tokens.isEmpty else { return Tensor(zeros: [0, config.embedDim]) }
        try WorkingMemory.require(workingBytes(images: 0, texts: tokens.count), threads: pool.threads, for: "CLIP on \(tokens.count) texts")
        var x = [Float](repeating: 0, count: rows * tw)
        x.withUnsafeMutableBufferPointer { xb in
            for (sequence, span) in zip(tokens, spans) {
                for t in 0..<span.length {
                    let row = xb.baseAddress.unsafelyUnwrapped + (span.start + t) * tw
                    tokenEmbedding.copyRow(Int(sequence[t]), into: row)
                    for j in 0..<tw { row[j] += textPositions[t * tw + j] }
                }
            }
        }
        let lastRows = spans.map { $0.start + $0.length - 1 }
        for (i, block) in textBlocks.enumerated() {
            let last = i == textBlocks.count - 1
            x = block(x, spans: spans, causal: true, keep: last ? lastRows : nil, pool: pool)
        }
        if textBlocks.isEmpty { x = lastRows.flatMap { x[($0 * tw)..<(($0 + 1) * tw)] } }
        return Tensor(uncheckedShape: [tokens.count, config.embedDim],
                      scalars: textProjection(lnFinal(x, pool: pool), rows: tokens.count, pool: pool))
    }

    /// logit_scale · cos(image_i, text_j): [images, texts] (the reference's `logits_per_image`).
    public func logits(images: Tensor, texts: Tensor) -> Tensor {
        let e = config.embedDim
        let a = CLIP.normalized(images), b = CLIP.normalized(texts)
        let ni = images.count / e, nt = texts.count / e
        var out = Tensor(zeros: [ni, nt])
        for i in 0..<ni {
            for j in 0..<nt {
                var s: Float = 0
                for d in 0..<e { s += a.scalars[i * e + d] * b.scalars[j * e + d] }
                out.scalars[i * nt + j] = logitScale * s
            }
        }
        return out
    }

    /// Each row of a [N, D] tensor divided by its Euclidean norm.
    public static func normalized(_ x: Tensor) -> Tensor {
        guard x.rank == 2 else { return x }
        var y = x
        let d = x.shape[1]
        for r in 0..<x.shape[0] {
            var s: Float = 0
            for i in 0..<d { s += x.scalars[r * d + i] * x.scalars[r * d + i] }
            let inv = s > 0 ? 1 / s.squareRoot() : 0
            for i in 0..<d { y.scalars[r * d + i] *= inv }
        }
        return y
    }
}

extension ComponentKind {
    /// OpenAI's CLIP (a vision transformer), for embeddings and reranking.
    public static let clip = ComponentKind(name: "clip", component: .clip, capabilities: [.embed, .train]) { metadata, weights, _ in
        let config = try CLIPConfig(metadata: metadata)
        return LoadedComponent.Parts(model: try CLIP(config: config, weights: weights),
                               variant: metadata["clip.kind"] ?? "vit", parameterCount: config.parameterCount)
    }
}
