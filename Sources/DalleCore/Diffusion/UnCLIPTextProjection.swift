/// diffusers' `UnCLIPTextProjModel` (Karlo's decoder conditioning, outside the UNet): from the CLIP
/// image embedding, the CLIP text embedding and the text encoder's hidden states it makes
/// - the additive time embedding: embedding_proj(text embedding) + clip_image_embeddings_project_to_time_embeddings(image embedding)
/// - the decoder's cross-attention context: 4 (`clip_extra_context_tokens`) tokens projected from the
///   image embedding — token k, channel c is the projection's value c·4 + k (diffusers reshapes to
///   [B, C, 4] and permutes) — ahead of LayerNorm(encoder_hidden_states_proj(hidden states)).
///
/// With guidance the batch is doubled: the unconditional half takes the learned embedding
/// `learned_classifier_free_guidance_embeddings` in place of the image embedding.
public struct UnCLIPTextProjection: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var extraContextTokens: Int
        public var embeddingWidth: Int
        public var timeEmbeddingWidth: Int
        public var crossAttentionWidth: Int

        /// Reads the part's diffusers `config.json` (all four fields required).
        public init(json text: String) throws {
            let value: JSONValue
            do { value = try JSONValue.parse(text) } catch { throw DalleError.badFile("text_proj config is not JSON: \(error)") }
            func field(_ key: String) throws -> Int {
                guard let n = value[key]?.exactInteger, (1...1 << 16).contains(n) else {
                    throw DalleError.badFile("text_proj config: '\(key)' is \(value[key]?.serialized() ?? "absent"), expected an integer in 1...65536")
                }
                return n
            }
            extraContextTokens = try field("clip_extra_context_tokens")
            embeddingWidth = try field("clip_embeddings_dim")
            timeEmbeddingWidth = try field("time_embed_dim")
            crossAttentionWidth = try field("cross_attention_dim")
        }
    }

    public let configuration: Configuration
    let unconditional: [Float]
    let toTime: Linear, imageToTime: Linear, extraTokens: Linear, hiddenProjection: Linear
    let normWeight: [Float], normBias: [Float]

    /// The LayerNorm's ε (PyTorch's default, which diffusers keeps).
    public static let layerNormEpsilon: Float = 1e-5

    /// Loads `prefix` + diffusers' names from `weights`; every tensor under `prefix` must be used and
    /// every shape match (`badFile` otherwise).
    public init(configuration c: Configuration, weights: WeightStore, prefix: String = "unclip.text_proj.") throws {
        configuration = c
        var used: Set<String> = []
        func tensor(_ name: String, _ shape: [Int]) throws -> [Float] {
            used.insert(prefix + name)
            return try weights.tensor(prefix + name, shape: shape).scalars
        }
        func linear(_ name: String, _ input: Int, _ output: Int) throws -> Linear {
            Linear(input: input, output: output, weight: try tensor(name + ".weight", [output, input]),
                   bias: try tensor(name + ".bias", [output]))
        }
        let e = c.embeddingWidth
        unconditional = try tensor("learned_classifier_free_guidance_embeddings", [e])
        toTime = try linear("embedding_proj", e, c.timeEmbeddingWidth)
        imageToTime = try linear("clip_image_embeddings_project_to_time_embeddings", e, c.timeEmbeddingWidth)
        extraTokens = try linear("clip_extra_context_tokens_proj", e, c.extraContextTokens * c.crossAttentionWidth)
        hiddenProjection = try linear("encoder_hidden_states_proj", e, c.crossAttentionWidth)
        normWeight = try tensor("text_encoder_hidden_states_norm.weight", [c.crossAttentionWidth])
        normBias = try tensor("text_encoder_hidden_states_norm.bias", [c.crossAttentionWidth])
        if let extra = weights.names.first(where: { $0.hasPrefix(prefix) && !used.contains($0) }) {
            throw DalleError.badFile("unexpected tensor '\(extra)' for the unCLIP text projection")
        }
    }

    /// `imageEmbeddings` [B, E]; `textEmbeddings` [B′, E] and `hiddenStates` [B′, L, E] with B′ = 2B
    /// (unconditional first) when `guided`, else B. Returns the decoder's context [B′, 4 + L, C] and
    /// the additive time embedding [B′, T].
    public func callAsFunction(imageEmbeddings: Tensor, textEmbeddings: Tensor, hiddenStates: Tensor,
                               guided: Bool) throws -> (context: Tensor, timeEmbedding: Tensor) {
        let c = configuration, e = c.embeddingWidth
        guard imageEmbeddings.rank == 2, imageEmbeddings.shape[1] == e, imageEmbeddings.shape[0] >= 1 else {
            throw DalleError.invalidArgument("text projection: image embeddings of shape \(imageEmbeddings.shape), expected [batch, \(e)]")
        }
        let batch = imageEmbeddings.shape[0] * (guided ? 2 : 1)
        guard textEmbeddings.shape == [batch, e] else {
            throw DalleError.invalidArgument("text projection: text embeddings of shape \(textEmbeddings.shape), expected [\(batch), \(e)]")
        }
        guard hiddenStates.rank == 3, hiddenStates.shape[0] == batch, hiddenStates.shape[2] == e, hiddenStates.shape[1] >= 1 else {
            throw DalleError.invalidArgument("text projection: hidden states of shape \(hiddenStates.shape), expected [\(batch), tokens, \(e)]")
        }
        let images = (guided ? (0..<imageEmbeddings.shape[0]).flatMap { _ in unconditional } : []) + imageEmbeddings.scalars
        let t = c.timeEmbeddingWidth, width = c.crossAttentionWidth, k = c.extraContextTokens, length = hiddenStates.shape[1]
        var time = [Float](repeating: 0, count: batch * t)
        var context = [Float](repeating: 0, count: batch * (k + length) * width)
        for b in 0..<batch {
            let image = Array(images[(b * e)..<((b + 1) * e)])
            let fromText = toTime(Array(textEmbeddings.scalars[(b * e)..<((b + 1) * e)])), fromImage = imageToTime(image)
            for j in 0..<t { time[b * t + j] = fromImage[j] + fromText[j] }
            let tokens = extraTokens(image)  // [C, k] in diffusers' reshape
            for token in 0..<k {
                for channel in 0..<width { context[(b * (k + length) + token) * width + channel] = tokens[channel * k + token] }
            }
            for position in 0..<length {
                let start = (b * length + position) * e
                var h = hiddenProjection(Array(hiddenStates.scalars[start..<(start + e)]))
                layerNorm(&h)
                let row = (b * (k + length) + k + position) * width
                for channel in 0..<width { context[row + channel] = h[channel] }
            }
        }
        return (Tensor(uncheckedShape: [batch, k + length, width], scalars: context),
                Tensor(uncheckedShape: [batch, t], scalars: time))
    }

    private func layerNorm(_ x: inout [Float]) {
        let n = Float(x.count)
        var mean: Float = 0
        for v in x { mean += v }
        mean /= n
        var variance: Float = 0
        for v in x { variance += (v - mean) * (v - mean) }
        variance /= n
        let scale = 1 / (variance + Self.layerNormEpsilon).squareRoot()
        for i in 0..<x.count { x[i] = (x[i] - mean) * scale * normWeight[i] + normBias[i] }
    }

    /// y = W·x + b for one row (W [output, input], PyTorch's layout).
    struct Linear: Sendable {
        let input: Int, output: Int
        let weight: [Float], bias: [Float]

        func callAsFunction(_ x: [Float]) -> [Float] {
            (0..<output).map { o in
                var sum: Float = 0
                for i in 0..<input { sum += weight[o * input + i] * x[i] }
                return sum + bias[o]
            }
        }
    }
}
