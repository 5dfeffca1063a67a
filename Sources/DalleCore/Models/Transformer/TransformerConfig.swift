/// The image-token attention pattern of one layer (DALLE-pytorch's `attn_types`).
/// Text tokens always attend causally to text; every image token attends to all text
/// tokens and, among image tokens, to:
public enum AttentionType: String, Sendable, Equatable, CaseIterable {
    /// every earlier image token and itself (plain causal attention);
    case full
    /// the earlier tokens of its own row and itself;
    case axialRow = "axial_row"
    /// the tokens above it in its own column and itself;
    case axialCol = "axial_col"
    /// a causal 5×5 window: rows r-4...r, columns c-4...c (SparseConvCausalAttention).
    case convLike = "conv_like"
}

/// Hyper-parameters of DALLE-pytorch's `DALLE` transformer (version 1.6.6). A bundle
/// stores them as `transformer.*` metadata strings named after DALLE-pytorch's arguments.
///
/// Sequence layout: position 0 is <bos>, positions 1...textSeqLen the text, then image
/// tokens in raster order. The model is fed at most `seqLen` = textSeqLen + imageSeqLen
/// positions (the last image token is never an input).
public struct TransformerConfig: Equatable, Sendable {
    public var dim: Int
    public var depth: Int
    public var heads: Int
    public var dimHead: Int
    /// Text tokens per caption (`text_seq_len`), without <bos>.
    public var textSeqLen: Int
    /// Text vocabulary (`num_text_tokens` as passed to DALLE, before it adds textSeqLen
    /// per-position padding ids).
    public var numTextTokens: Int
    /// Image vocabulary (the VAE's `num_tokens`).
    public var numImageTokens: Int
    /// Side of the image token grid (`image_size / 2^num_layers`).
    public var imageFmapSize: Int
    /// Per-layer attention pattern, cycled over the depth.
    public var attnTypes: [AttentionType]
    /// Rotary position embeddings (true, the default) or learned text + axial image embeddings.
    public var rotaryEmb: Bool
    /// PreShiftToken around every attention and feed-forward block.
    public var shiftTokens: Bool
    /// An extra LayerNorm after each block (`sandwich_norm`).
    public var sandwichNorm: Bool
    /// `stable`: a softmax computed in a scaled form and the output divided by its max.
    public var stable: Bool
    /// Layers with the same id share attention (feed-forward) weights; cycled over the depth.
    public var sharedAttnIds: [Int]
    public var sharedFFIds: [Int]

    public init(dim: Int, depth: Int, heads: Int, dimHead: Int, textSeqLen: Int, numTextTokens: Int,
                numImageTokens: Int, imageFmapSize: Int, attnTypes: [AttentionType] = [.full],
                rotaryEmb: Bool = true, shiftTokens: Bool = true, sandwichNorm: Bool = false,
                stable: Bool = false, sharedAttnIds: [Int]? = nil, sharedFFIds: [Int]? = nil) {
        self.dim = dim
        self.depth = depth
        self.heads = heads
        self.dimHead = dimHead
        self.textSeqLen = textSeqLen
        self.numTextTokens = numTextTokens
        self.numImageTokens = numImageTokens
        self.imageFmapSize = imageFmapSize
        self.attnTypes = attnTypes
        self.rotaryEmb = rotaryEmb
        self.shiftTokens = shiftTokens
        self.sandwichNorm = sandwichNorm
        self.stable = stable
        self.sharedAttnIds = sharedAttnIds ?? Array(0..<max(depth, 0))
        self.sharedFFIds = sharedFFIds ?? Array(0..<max(depth, 0))
    }

    /// Image tokens per image: imageFmapSize².
    public var imageSeqLen: Int { imageFmapSize * imageFmapSize }
    /// Text positions including <bos>: textSeqLen + 1.
    public var textLen: Int { textSeqLen + 1 }
    /// Longest input: textSeqLen + imageSeqLen positions.
    public var seqLen: Int { textSeqLen + imageSeqLen }
    /// Text ids the embedding holds: numTextTokens plus one padding id per text position.
    public var textVocab: Int { numTextTokens + textSeqLen }
    /// Logits per position: text ids then image ids (numTextTokens + textSeqLen + numImageTokens).
    public var totalTokens: Int { textVocab + numImageTokens }
    /// Width of the attention's inner projection: heads · dimHead.
    public var innerDim: Int { heads * dimHead }
    /// Hidden width of the GEGLU feed-forward (`ff_mult` = 4).
    public var ffHidden: Int { dim * 4 }
    /// Module paths of a block's attention and feed-forward weights below its layer's name
    /// (`transformer.layers.layers.<i>.`): LayerScale.fn = PreNorm; PreNorm.fn = CachedAs /
    /// NonCached, or with shift_tokens CachedAs(PreShiftToken(CachedAs / NonCached(...))).
    public var blockModulePaths: (attention: String, feedForward: String) {
        shiftTokens ? ("0.fn.fn.fn.fn.fn.", "1.fn.fn.fn.fn.net.") : ("0.fn.fn.fn.", "1.fn.fn.net.")
    }
    /// Feature count each rotary table row covers: 3 · 2 · ((dimHead / 3) / 2).
    public var rotaryDims: Int { rotaryEmb ? 3 * 2 * ((dimHead / 3) / 2) : 0 }

    /// Attention pattern of layer `i`.
    public func attentionType(layer i: Int) -> AttentionType { attnTypes[i % attnTypes.count] }
    public func attentionId(layer i: Int) -> Int { sharedAttnIds[i % sharedAttnIds.count] }
    public func feedForwardId(layer i: Int) -> Int { sharedFFIds[i % sharedFFIds.count] }

    /// The `transformer.kind` this implementation reads.
    public static let kind = "dalle-pytorch"

    /// DALLE-pytorch options this implementation rejects when set (metadata key, value meaning "off").
    static let rejectedOptions: [(key: String, off: String)] = [
        ("reversible", "false"), ("sparse_attn", "false"), ("share_input_output_emb", "false"),
    ]

    /// Reads the `transformer.*` keys of a bundle's metadata. Missing optional keys take
    /// DALLE-pytorch's defaults; a reversible, sparse_attn or share_input_output_emb model is
    /// `unsupported`; a malformed value is `badFile`.
    public init(metadata: [String: String]) throws {
        let keys = ComponentMetadata(metadata, component: "transformer", label: "transformer")
        func int(_ key: String) throws -> Int { try keys.int(key) }
        func bool(_ key: String, default d: Bool) throws -> Bool { try keys.bool(key, default: d) }
        func list(_ key: String) -> [String]? { keys.list(key) }
        func ids(_ key: String) throws -> [Int]? { try keys.ints(key) }
        if let kind = metadata["transformer.kind"], kind != TransformerConfig.kind {
            throw DalleError.unsupported("transformer kind '\(kind)' (this build reads '\(TransformerConfig.kind)')")
        }
        for option in TransformerConfig.rejectedOptions {
            guard try !bool(option.key, default: false) else { throw DalleError.unsupported("DALLE-pytorch option '\(option.key)' (this build runs only \(option.key)=\(option.off))") }
        }
        let types = try (list("attn_types") ?? ["full"]).map { name -> AttentionType in
            guard let type = AttentionType(rawValue: name) else {
                throw DalleError.unsupported("attention type '\(name)' in 'transformer.attn_types' (supported: full, axial_row, axial_col, conv_like)")
            }
            return type
        }
        self.init(dim: try int("dim"), depth: try int("depth"), heads: try int("heads"),
                  dimHead: try int("dim_head"), textSeqLen: try int("text_seq_len"),
                  numTextTokens: try int("num_text_tokens"), numImageTokens: try int("num_image_tokens"),
                  imageFmapSize: try int("image_fmap_size"), attnTypes: types,
                  rotaryEmb: try bool("rotary_emb", default: true),
                  shiftTokens: try bool("shift_tokens", default: true),
                  sandwichNorm: try bool("sandwich_norm", default: false),
                  stable: try bool("stable", default: false),
                  sharedAttnIds: try ids("shared_attn_ids"), sharedFFIds: try ids("shared_ff_ids"))
        try validate()
    }

    /// The configuration as bundle metadata (the inverse of `init(metadata:)`).
    public var metadata: [String: String] {
        func flag(_ b: Bool) -> String { b ? "true" : "false" }
        return [
            "transformer.kind": TransformerConfig.kind,
            "transformer.dim": String(dim),
            "transformer.depth": String(depth),
            "transformer.heads": String(heads),
            "transformer.dim_head": String(dimHead),
            "transformer.text_seq_len": String(textSeqLen),
            "transformer.num_text_tokens": String(numTextTokens),
            "transformer.num_image_tokens": String(numImageTokens),
            "transformer.image_fmap_size": String(imageFmapSize),
            "transformer.attn_types": attnTypes.map(\.rawValue).joined(separator: ","),
            "transformer.rotary_emb": flag(rotaryEmb),
            "transformer.shift_tokens": flag(shiftTokens),
            "transformer.sandwich_norm": flag(sandwichNorm),
            "transformer.stable": flag(stable),
            "transformer.shared_attn_ids": sharedAttnIds.map(String.init).joined(separator: ","),
            "transformer.shared_ff_ids": sharedFFIds.map(String.init).joined(separator: ","),
        ]
    }

    /// Checks every field against the limits this implementation supports, so no size
    /// computed from a configuration overflows. Throws `badFile` (or `unsupported`).
    public func validate() throws {
        let check = ComponentMetadata([:], component: "transformer", label: "transformer").check
        try check("dim", dim, 1...16384)
        try check("depth", depth, 1...256)
        try check("heads", heads, 1...256)
        try check("dim_head", dimHead, 1...1024)
        try check("text_seq_len", textSeqLen, 1...4096)
        try check("num_text_tokens", numTextTokens, 1...1_000_000)
        try check("num_image_tokens", numImageTokens, 1...1_000_000)
        try check("image_fmap_size", imageFmapSize, 1...256)
        guard !attnTypes.isEmpty else { throw DalleError.badFile("transformer 'attn_types' is empty") }
        guard !sharedAttnIds.isEmpty, !sharedFFIds.isEmpty else {
            throw DalleError.badFile("transformer 'shared_attn_ids' / 'shared_ff_ids' is empty")
        }
        if shiftTokens, dim % 4 != 0 {
            throw DalleError.unsupported("shift_tokens with dim \(dim) (a multiple of 4 is required)")
        }
        // DALLE-pytorch rejects layers that share attention weights but not the attention type.
        var typeOfId: [Int: AttentionType] = [:]
        for layer in 0..<depth {
            let id = attentionId(layer: layer), type = attentionType(layer: layer)
            if let seen = typeOfId[id], seen != type {
                throw DalleError.badFile("transformer layer \(layer) shares attention id \(id) with a '\(seen.rawValue)' layer but is '\(type.rawValue)'")
            }
            typeOfId[id] = type
        }
    }
}
