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
        var renames: [String: String] = [:], stacks: [String: [String]] = [:]
        for i in 0..<c.layers {
            let hf = model + "encoder.layers.\(i).", ours = "block.\(i)"
            for (a, b) in [(".ln_1", "layer_norm1"), (".ln_2", "layer_norm2"), (".attn.out_proj", "self_attn.out_proj"),
                           (".mlp.c_fc", "mlp.fc1"), (".mlp.c_proj", "mlp.fc2")] {
                renames[ours + a + ".weight"] = hf + b + ".weight"
                renames[ours + a + ".bias"] = hf + b + ".bias"
            }
            for kind in ["weight", "bias"] {
                stacks[ours + ".attn.in_proj_\(kind)"] = ["q_proj", "k_proj", "v_proj"].map { hf + "self_attn.\($0).\(kind)" }
            }
        }
        let view = RenamedWeights(store: weights, renames: renames, stacks: stacks)
        let mapped = StrictWeightLoader(view)
        blocks = try (0..<c.layers).map { try CLIPResidualBlock("block.\($0)", width: w, heads: c.heads, loader: mapped) }
        let loader = StrictWeightLoader(weights)
        tokenEmbedding = try Embedding(model + "embeddings.token_embedding.weight", count: c.vocabularySize, width: w, loader: loader)
        positionEmbedding = try loader.weight(model + "embeddings.position_embedding.weight", shape: [c.positions, w]).floats()
        finalNorm = try LayerNorm(model + "final_layer_norm", width: w, loader: loader)
        projection = try Linear(prefix + "text_projection", inputs: w, outputs: c.projectionWidth, bias: false, loader: loader)
        let used = view.sources
        try loader.rejectUnused(prefix: prefix, model: "unCLIP text encoder", ignoring: Set(used.map { String($0.dropFirst(prefix.count)) }))
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

/// A store seen under other names: `renames` maps a new name to a stored one (16-bit weights stay
/// views), `stacks` to several stored tensors stacked along the first dimension, `transposed` to a
/// stored matrix read transposed (both f32 copies), `constants` to values no file stores.
struct RenamedWeights: WeightStore {
    let store: WeightStore
    let renames: [String: String]
    var stacks: [String: [String]] = [:]
    var transposed: [String: String] = [:]
    var constants: [String: Tensor] = [:]

    var names: [String] { (Array(renames.keys) + Array(stacks.keys) + Array(transposed.keys) + Array(constants.keys)).sorted() }

    /// The stored names this view reads.
    var sources: Set<String> { Set(renames.values).union(stacks.values.joined()).union(transposed.values) }

    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        if let source = renames[name] { return try store.tensor(source, shape: shape) }
        if let value = constants[name] {
            guard value.shape == shape else { throw DalleError.badFile("tensor '\(name)' has shape \(value.shape), expected \(shape)") }
            return value
        }
        if let source = transposed[name] {
            guard shape.count == 2 else { throw DalleError.badFile("tensor '\(name)' of shape \(shape) cannot be a transposed matrix") }
            let stored = try store.tensor(source, shape: [shape[1], shape[0]])
            return Tensor(uncheckedShape: shape, scalars: DalleCore.transposed(stored.scalars, rows: shape[1], cols: shape[0]))
        }
        guard let parts = stacks[name] else { throw DalleError.badFile("missing tensor '\(name)'") }
        guard let first = shape.first, first % parts.count == 0 else {
            throw DalleError.badFile("tensor '\(name)' of shape \(shape) cannot stack \(parts.count) parts")
        }
        var part = shape
        part[0] = first / parts.count
        var scalars: [Float] = []
        for source in parts { scalars += try store.tensor(source, shape: part).scalars }
        return try Tensor(shape: shape, scalars: scalars)
    }

    func weight(_ name: String, shape: [Int]) throws -> Weight {
        if let source = renames[name] { return try store.weight(source, shape: shape) }
        return Weight(try tensor(name, shape: shape))
    }
}
