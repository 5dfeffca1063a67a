#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// diffusers' `PriorTransformer` (DALL·E 2's prior, Karlo's configuration): predicts the CLIP image
/// embedding from the noisy one at timestep t, conditioned on the CLIP text embedding and the text
/// encoder's hidden states.
///
/// Tokens: [proj(text hidden states) (L), embedding_proj(text embedding), time embedding,
/// proj_in(noisy embedding), prd] + positional embeddings; pre-LN blocks (self-attention with bias,
/// then a GELU feed-forward of 4× width), each with a residual; the causal mask plus −10000 at padded
/// text positions; LayerNorm; the prd token's row projected to the CLIP width.
public struct PriorTransformer: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var heads: Int
        public var headWidth: Int
        public var layers: Int
        public var embeddingWidth: Int
        public var textTokens: Int
        public var additionalTokens: Int
        public var timeEmbeddingWidth: Int
        public var width: Int { heads * headWidth }

        /// Reads the part's diffusers `config.json`. Options other than Karlo's (`norm_in_type`,
        /// `embedding_proj_norm_type`, `embedding_proj_dim`, `clip_embed_dim`, another
        /// `encoder_hid_proj_type`, `added_emb_type` or `time_embed_act_fn`) are `unsupported`.
        public init(json text: String) throws {
            let config = try DiffusersConfig(json: text, part: "prior")
            let field = config.int, expect = config.expect
            heads = try field("num_attention_heads", 1...1024)
            headWidth = try field("attention_head_dim", 1...1024)
            layers = try field("num_layers", 1...1024)
            embeddingWidth = try field("embedding_dim", 1...65536)
            textTokens = try field("num_embeddings", 1...4096)
            additionalTokens = try field("additional_embeddings", 4...4)
            for key in ["norm_in_type", "embedding_proj_norm_type", "embedding_proj_dim", "clip_embed_dim"] { try expect(key, .null, nil) }
            try expect("encoder_hid_proj_type", .string("linear"), nil)
            try expect("added_emb_type", .string("prd"), nil)
            try expect("time_embed_act_fn", .string("silu"), nil)
            if let v = config["time_embed_dim"], v != .null {
                timeEmbeddingWidth = try field("time_embed_dim", 1...65536)
            } else {
                timeEmbeddingWidth = heads * headWidth
            }
        }
    }

    struct Block: Sendable {
        let norm1: LayerNorm, query: Linear, key: Linear, value: Linear, out: Linear
        let norm3: LayerNorm, up: Linear, down: Linear
    }

    public let configuration: Configuration
    let time1: Linear, time2: Linear, projIn: Linear, embeddingProj: Linear, hiddenProj: Linear, toCLIP: Linear
    let positional: [Float], prd: [Float], clipMean: [Float], clipStd: [Float]
    let blocks: [Block]
    let normOut: LayerNorm

    /// Loads `prefix` + diffusers' names from `weights`; strict (every tensor under `prefix` used,
    /// every shape checked).
    public init(configuration c: Configuration, weights: WeightStore, prefix: String = "unclip.prior.") throws {
        configuration = c
        let loader = StrictWeightLoader(weights), w = c.width, e = c.embeddingWidth
        func linear(_ name: String, _ inputs: Int, _ outputs: Int) throws -> Linear {
            try Linear(prefix + name, inputs: inputs, outputs: outputs, bias: true, loader: loader)
        }
        time1 = try linear("time_embedding.linear_1", w, c.timeEmbeddingWidth)
        time2 = try linear("time_embedding.linear_2", c.timeEmbeddingWidth, w)
        projIn = try linear("proj_in", e, w)
        embeddingProj = try linear("embedding_proj", e, w)
        hiddenProj = try linear("encoder_hidden_states_proj", e, w)
        toCLIP = try linear("proj_to_clip_embeddings", w, e)
        positional = try loader.weight(prefix + "positional_embedding", shape: [1, c.textTokens + c.additionalTokens, w]).floats()
        prd = try loader.weight(prefix + "prd_embedding", shape: [1, 1, w]).floats()
        clipMean = try loader.weight(prefix + "clip_mean", shape: [1, e]).floats()
        clipStd = try loader.weight(prefix + "clip_std", shape: [1, e]).floats()
        blocks = try (0..<c.layers).map { i in
            let p = "transformer_blocks.\(i)."
            return Block(norm1: try LayerNorm(prefix + p + "norm1", width: w, loader: loader),
                         query: try linear(p + "attn1.to_q", w, w), key: try linear(p + "attn1.to_k", w, w),
                         value: try linear(p + "attn1.to_v", w, w), out: try linear(p + "attn1.to_out.0", w, w),
                         norm3: try LayerNorm(prefix + p + "norm3", width: w, loader: loader),
                         up: try linear(p + "ff.net.0.proj", w, 4 * w), down: try linear(p + "ff.net.2", 4 * w, w))
        }
        normOut = try LayerNorm(prefix + "norm_out", width: w, loader: loader)
        try loader.rejectUnused(prefix: prefix, model: "unCLIP prior")
    }

    /// The predicted clean embedding [B, E] for `latents` [B, E] at `timestep`, with `textEmbeddings`
    /// [B, E], `hiddenStates` [B, L, E] and `textMask` [B, L] (true for real tokens).
    public func callAsFunction(latents: Tensor, timestep: Int, textEmbeddings: Tensor, hiddenStates: Tensor,
                               textMask: [Bool], pool: ThreadPool = ThreadPool(threads: 1)) throws -> Tensor {
        let c = configuration, e = c.embeddingWidth, w = c.width, l = c.textTokens
        guard latents.rank == 2, latents.shape[1] == e, latents.shape[0] >= 1 else {
            throw DalleError.invalidArgument("prior: latents of shape \(latents.shape), expected [batch, \(e)]")
        }
        let b = latents.shape[0], n = l + c.additionalTokens
        guard textEmbeddings.shape == [b, e], hiddenStates.shape == [b, l, e], textMask.count == b * l else {
            throw DalleError.invalidArgument("prior: text embeddings \(textEmbeddings.shape), hidden states \(hiddenStates.shape) and "
                + "\(textMask.count) mask values; expected [\(b), \(e)], [\(b), \(l), \(e)] and \(b * l)")
        }
        let inputs = [latents, textEmbeddings, hiddenStates]
        guard inputs.allSatisfy({ $0.scalars.allSatisfy(\.isFinite) }) else { throw DalleError.invalidArgument("prior: inputs that are not finite") }

        let sinusoid = try timestepEmbedding([Float](repeating: Float(timestep), count: b), dim: w).scalars
        var t = time1(sinusoid, rows: b, pool: pool)
        for i in 0..<t.count { t[i] = t[i] / (1 + expf(-t[i])) }
        let time = time2(t, rows: b, pool: pool)
        let text = hiddenProj(hiddenStates.scalars, rows: b * l, pool: pool)
        let proj = embeddingProj(textEmbeddings.scalars, rows: b, pool: pool)
        let noisy = projIn(latents.scalars, rows: b, pool: pool)
        var x = [Float](repeating: 0, count: b * n * w)
        for s in 0..<b {
            let row = s * n * w
            for i in 0..<(l * w) { x[row + i] = text[s * l * w + i] }
            for (k, source) in [proj, time, noisy].enumerated() {
                for i in 0..<w { x[row + (l + k) * w + i] = source[s * w + i] }
            }
            for i in 0..<w { x[row + (l + 3) * w + i] = prd[i] }
            for i in 0..<(n * w) { x[row + i] += positional[i] }
        }
        // Additive mask [b, n, n]: (1 − text mask)·−10000 on text keys, plus −10000 above the diagonal.
        var mask = [Float](repeating: 0, count: b * n * n)
        for s in 0..<b {
            for i in 0..<n {
                for j in 0..<n {
                    let padding: Float = j < l && !textMask[s * l + j] ? -10000 : 0
                    mask[(s * n + i) * n + j] = padding + (j > i ? -10000 : 0)
                }
            }
        }
        for block in blocks {
            let h = block.norm1(x, pool: pool)
            let attended = scaledDotProductAttention(
                query: block.query(h, rows: b * n, pool: pool), key: block.key(h, rows: b * n, pool: pool),
                value: block.value(h, rows: b * n, pool: pool), batch: b, queries: n, keys: n, heads: c.heads,
                headWidth: c.headWidth, pool: pool) { s, i, j in mask[(s * n + i) * n + j] }
            x = block.out(attended, rows: b * n, residual: x, pool: pool)
            var inner = block.up(block.norm3(x, pool: pool), rows: b * n, pool: pool)
            for i in 0..<inner.count { inner[i] = gelu(inner[i]) }
            x = block.down(inner, rows: b * n, residual: x, pool: pool)
        }
        let normed = normOut(x, pool: pool)
        var last = [Float](repeating: 0, count: b * w)  // each sequence's prd token
        for s in 0..<b {
            let row = (s * n + n - 1) * w
            for i in 0..<w { last[s * w + i] = normed[row + i] }
        }
        return Tensor(uncheckedShape: [b, e], scalars: toCLIP(last, rows: b, pool: pool))
    }

    /// `post_process_latents`: latents · clip_std + clip_mean, [B, E].
    public func postProcess(_ latents: Tensor) throws -> Tensor {
        let e = configuration.embeddingWidth
        guard latents.rank == 2, latents.shape[1] == e else {
            throw DalleError.invalidArgument("prior: latents of shape \(latents.shape), expected [batch, \(e)]")
        }
        var out = latents.scalars
        for i in 0..<out.count { out[i] = out[i] * clipStd[i % e] + clipMean[i % e] }
        return Tensor(uncheckedShape: latents.shape, scalars: out)
    }
}
