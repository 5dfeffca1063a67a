/// Hugging Face's `CLIPTextModelWithProjection` (Karlo's text encoder, ViT-L/14's text tower) built
/// from CLIP's own residual blocks: its names (`text_model.encoder.layers.N.self_attn.q_proj`, …) are
/// mapped onto OpenAI's (`ln_1`, packed `attn.in_proj`, `mlp.c_fc`, …), q/k/v stacked into one
/// projection. Returns what unCLIP uses: every position's last hidden state (after the final
/// LayerNorm) and the projected embedding read at the end-of-text token.
public struct UnCLIPTextEncoder: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var width: Int
        public var layers: Int
        public var heads: Int
        public var vocabularySize: Int
        public var positions: Int
        public var projectionWidth: Int
        /// The id whose first occurrence marks the pooled position; 2 (transformers' legacy
        /// configs) means the first largest id, as OpenAI's CLIP reads it.
        public var endOfTextID: Int

        /// Reads the part's transformers `config.json`. Another activation than quick_gelu, an MLP
        /// width other than 4× or a LayerNorm ε other than 1e-5 is `unsupported`.
        public init(json text: String) throws {
            let config = try DiffusersConfig(json: text, part: "text_encoder")
            let field = config.int
            width = try field("hidden_size", 1...65536)
            layers = try field("num_hidden_layers", 0...1024)
            heads = try field("num_attention_heads", 1...1024)
            vocabularySize = try field("vocab_size", 1...(1 << 24))
            positions = try field("max_position_embeddings", 1...65536)
            projectionWidth = try field("projection_dim", 1...65536)
            endOfTextID = config["eos_token_id"] == nil ? 2 : try field("eos_token_id", 0...(1 << 24))
            guard width % heads == 0 else { throw DalleError.badFile("text_encoder config: hidden_size \(width) is not a multiple of \(heads) heads") }
            try config.expect("intermediate_size", .number(Double(4 * width)), "4 x hidden_size")
            try config.expect("hidden_act", .string("quick_gelu"))
            try config.expect("layer_norm_eps", .number(1e-5))
        }
    }

    public let configuration: Configuration
    let tokenEmbedding: Embedding
    let positionEmbedding: [Float]
    let blocks: [CLIPResidualBlock]
    let finalNorm: LayerNorm
    let projection: Linear

    /// Loads `prefix` + transformers' names from `weights`; strict (every tensor under `prefix`
    /// used, every shape checked).
    public init(configuration c: Configuration, weights: WeightStore, prefix: String = "unclip.text_encoder.") throws {
        configuration = c
        let model = prefix + "text_model.", w = c.width
        // transformers' layer names → OpenAI's, by CLIP's own renaming rules ("…transformer.resblocks.N.ln_1", …).
        let layers = model + "encoder.layers."
        let remapped = RemappedWeights(weights, rules: CLIPCheckpoint.huggingFaceRenames) { $0.hasPrefix(layers) }
        let mapped = StrictWeightLoader(remapped)
        blocks = try (0..<c.layers).map {
            try CLIPResidualBlock(prefix + "transformer.resblocks.\($0)", width: w, heads: c.heads, loader: mapped)
        }
        let loader = StrictWeightLoader(weights)
        tokenEmbedding = try Embedding(model + "embeddings.token_embedding.weight", count: c.vocabularySize, width: w, loader: loader)
        positionEmbedding = try loader.weight(model + "embeddings.position_embedding.weight", shape: [c.positions, w]).floats()
        finalNorm = try LayerNorm(model + "final_layer_norm", width: w, loader: loader)
        projection = try Linear(prefix + "text_projection", inputs: w, outputs: c.projectionWidth, bias: false, loader: loader)
        let read = mapped.used.flatMap { remapped.sources[$0]?.parts ?? [] }.map { String($0.dropFirst(prefix.count)) }
        try loader.rejectUnused(prefix: prefix, model: "unCLIP text encoder", ignoring: Set(read))
    }

    /// For `tokens` (sequences of one length, 1 … `positions`, ids below the vocabulary size):
    /// the last hidden states [N, length, width] and the text embeddings [N, projection].
    public func callAsFunction(_ tokens: [[Int32]], pool: ThreadPool = ThreadPool(threads: 1)) throws
        -> (hiddenStates: Tensor, textEmbeddings: Tensor) {
        let c = configuration, w = c.width
        guard let length = tokens.first?.count, length >= 1, length <= c.positions, tokens.allSatisfy({ $0.count == length }) else {
            throw DalleError.invalidArgument("text encoder: \(tokens.count) sequences of lengths \(Set(tokens.map(\.count)).sorted()); "
                + "want one or more of one length in 1...\(c.positions)")
        }
        for (i, sequence) in tokens.enumerated() {
            if let bad = sequence.first(where: { $0 < 0 || Int($0) >= c.vocabularySize }) {
                throw DalleError.invalidArgument("text encoder: sequence \(i) holds token id \(bad); ids must be in 0..<\(c.vocabularySize)")
            }
        }
        let n = tokens.count
        var x = [Float](repeating: 0, count: n * length * w)
        x.withUnsafeMutableBufferPointer { xb in
            for (s, sequence) in tokens.enumerated() {
                for (t, id) in sequence.enumerated() {
                    let row = xb.baseAddress.unsafelyUnwrapped + (s * length + t) * w
                    tokenEmbedding.copyRow(Int(id), into: row)
                    for j in 0..<w { row[j] += positionEmbedding[t * w + j] }
                }
            }
        }
        let spans = (0..<n).map { SequenceSpan(start: $0 * length, length: length) }
        for block in blocks { x = block(x, spans: spans, causal: true, pool: pool) }
        finalNorm.applyInPlace(&x, rows: n * length, pool: pool)
        var pooled = [Float](repeating: 0, count: n * w)
        for (s, sequence) in tokens.enumerated() {
            let position: Int
            if c.endOfTextID == 2 {
                position = sequence.indices.reduce(0) { sequence[$1] > sequence[$0] ? $1 : $0 }
            } else {
                position = sequence.firstIndex(of: Int32(c.endOfTextID)) ?? 0
            }
            for j in 0..<w { pooled[s * w + j] = x[(s * length + position) * w + j] }
        }
        return (Tensor(uncheckedShape: [n, length, w], scalars: x),
                Tensor(uncheckedShape: [n, c.projectionWidth], scalars: projection(pooled, rows: n, pool: pool)))
    }
}
