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
            let config = try DiffusersConfig(json: text, part: "text_proj")
            func field(_ key: String) throws -> Int { try config.int(key, 1...65536) }
            extraContextTokens = try field("clip_extra_context_tokens")
            embeddingWidth = try field("clip_embeddings_dim")
            timeEmbeddingWidth = try field("time_embed_dim")
            crossAttentionWidth = try field("cross_attention_dim")
        }
    }

    public let configuration: Configuration
    let unconditional: [Float]
    let toTime: Linear, imageToTime: Linear, extraTokens: Linear, hiddenProjection: Linear
    let norm: LayerNorm

    /// Loads `prefix` + diffusers' names from `weights` (16-bit weights stay views of the file);
    /// every tensor under `prefix` must be used and every shape match (`badFile` otherwise).
    public init(configuration c: Configuration, weights: WeightStore, prefix: String = "unclip.text_proj.") throws {
        configuration = c
        let loader = StrictWeightLoader(weights), e = c.embeddingWidth
        unconditional = try loader.weight(prefix + "learned_classifier_free_guidance_embeddings", shape: [e]).floats()
        toTime = try Linear(prefix + "embedding_proj", inputs: e, outputs: c.timeEmbeddingWidth, bias: true, loader: loader)
        imageToTime = try Linear(prefix + "clip_image_embeddings_project_to_time_embeddings", inputs: e,
                                 outputs: c.timeEmbeddingWidth, bias: true, loader: loader)
        extraTokens = try Linear(prefix + "clip_extra_context_tokens_proj", inputs: e,
                                 outputs: c.extraContextTokens * c.crossAttentionWidth, bias: true, loader: loader)
        hiddenProjection = try Linear(prefix + "encoder_hidden_states_proj", inputs: e, outputs: c.crossAttentionWidth,
                                      bias: true, loader: loader)
        norm = try LayerNorm(prefix + "text_encoder_hidden_states_norm", width: c.crossAttentionWidth, loader: loader)
        try loader.rejectUnused(prefix: prefix, model: "unCLIP text projection")
    }

    /// `imageEmbeddings` [B, E]; `textEmbeddings` [B′, E] and `hiddenStates` [B′, L, E] with B′ = 2B
    /// (unconditional first) when `guided`, else B. Returns the decoder's context [B′, 4 + L, C] and
    /// the additive time embedding [B′, T].
    public func callAsFunction(imageEmbeddings: Tensor, textEmbeddings: Tensor, hiddenStates: Tensor,
                               guided: Bool, pool: ThreadPool = ThreadPool(threads: 1)) throws -> (context: Tensor, timeEmbedding: Tensor) {
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
        let fromText = toTime(textEmbeddings.scalars, rows: batch, pool: pool)
        let time = imageToTime(images, rows: batch, residual: fromText, pool: pool)
        let tokens = extraTokens(images, rows: batch, pool: pool)  // per image [C, k] in diffusers' reshape
        var hidden = hiddenProjection(hiddenStates.scalars, rows: batch * length, pool: pool)
        norm.applyInPlace(&hidden, rows: batch * length, pool: pool)
        var context = [Float](repeating: 0, count: batch * (k + length) * width)
        for b in 0..<batch {
            for token in 0..<k {
                for channel in 0..<width {
                    context[(b * (k + length) + token) * width + channel] = tokens[b * k * width + channel * k + token]
                }
            }
            let row = (b * (k + length) + k) * width, source = b * length * width
            for i in 0..<(length * width) { context[row + i] = hidden[source + i] }
        }
        return (Tensor(uncheckedShape: [batch, k + length, width], scalars: context),
                Tensor(uncheckedShape: [batch, t], scalars: time))
    }
}
