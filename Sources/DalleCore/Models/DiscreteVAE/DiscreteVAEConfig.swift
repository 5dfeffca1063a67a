/// Hyper-parameters of DALLE-pytorch's `DiscreteVAE` (its keyword arguments in
/// parentheses). A bundle stores them as `dvae.*` metadata with "dvae.kind" = "dalle-pytorch".
public struct DiscreteVAEConfig: Equatable, Sendable {
    /// Side of the square images (`image_size`), a power of two.
    public var imageSize: Int
    /// Stride-2 convolutions (`num_layers`); the grid side is imageSize / 2^numLayers.
    public var numLayers: Int
    /// Codebook size (`num_tokens`).
    public var numTokens: Int
    /// Width of a codebook vector (`codebook_dim`).
    public var codebookDim: Int
    /// Channels of every hidden layer (`hidden_dim`).
    public var hiddenDim: Int
    /// Residual blocks after the encoder's convolutions and before the decoder's (`num_resnet_blocks`).
    public var numResnetBlocks: Int
    /// Image channels (`channels`).
    public var channels: Int
    /// Per-channel (mean, std) the encoder normalises images with (`normalization`);
    /// the decoder's output lives in that normalised space.
    public var normalizationMean: [Float]
    public var normalizationStd: [Float]

    public static let kind = "dalle-pytorch"

    public init(imageSize: Int, numLayers: Int, numTokens: Int, codebookDim: Int, hiddenDim: Int,
                numResnetBlocks: Int = 0, channels: Int = 3,
                normalizationMean: [Float] = [0.5, 0.5, 0.5], normalizationStd: [Float] = [0.5, 0.5, 0.5]) {
        self.imageSize = imageSize
        self.numLayers = numLayers
        self.numTokens = numTokens
        self.codebookDim = codebookDim
        self.hiddenDim = hiddenDim
        self.numResnetBlocks = numResnetBlocks
        self.channels = channels
        // A count below 1 (from a model file) is validate()'s to reject; prefix must not see it.
        self.normalizationMean = Array(normalizationMean.prefix(max(channels, 0)))
        self.normalizationStd = Array(normalizationStd.prefix(max(channels, 0)))
    }

    /// Reads the `dvae.*` keys; `unsupported` for another "dvae.kind", `badFile` for a
    /// missing or malformed value.
    public init(metadata: [String: String]) throws {
        guard let kind = metadata["dvae.kind"] else { throw DalleError.badFile("dVAE metadata lacks 'dvae.kind'") }
        guard kind == DiscreteVAEConfig.kind else {
            throw DalleError.unsupported("dVAE kind '\(kind)' is not '\(DiscreteVAEConfig.kind)'")
        }
        let keys = ComponentMetadata(metadata, component: "dvae", label: "dVAE")
        func int(_ key: String) throws -> Int { try keys.int(key) }
        func floats(_ key: String) throws -> [Float] { try keys.floats(key) }
        self.init(imageSize: try int("image_size"), numLayers: try int("num_layers"), numTokens: try int("num_tokens"),
                  codebookDim: try int("codebook_dim"), hiddenDim: try int("hidden_dim"),
                  numResnetBlocks: try int("num_resnet_blocks"), channels: try int("channels"),
                  normalizationMean: try floats("normalization_mean"), normalizationStd: try floats("normalization_std"))
        try validate()
    }

    /// The configuration as bundle metadata (the inverse of `init(metadata:)`).
    public var metadata: [String: String] {
        [
            "dvae.kind": DiscreteVAEConfig.kind,
            "dvae.image_size": String(imageSize),
            "dvae.num_layers": String(numLayers),
            "dvae.num_tokens": String(numTokens),
            "dvae.codebook_dim": String(codebookDim),
            "dvae.hidden_dim": String(hiddenDim),
            "dvae.num_resnet_blocks": String(numResnetBlocks),
            "dvae.channels": String(channels),
            "dvae.normalization_mean": normalizationMean.map { "\($0)" }.joined(separator: ","),
            "dvae.normalization_std": normalizationStd.map { "\($0)" }.joined(separator: ","),
        ]
    }

    /// Side of the token grid: imageSize / 2^numLayers.
    public var gridSize: Int { imageSize >> numLayers }

    /// Checks every field against the limits this implementation supports. Throws `badFile`.
    public func validate() throws {
        let check = ComponentMetadata([:], component: "dvae", label: "dVAE").check
        try check("image_size", imageSize, 2...4096)
        try check("num_layers", numLayers, 1...10)
        try check("num_tokens", numTokens, 1...1_000_000)
        try check("codebook_dim", codebookDim, 1...8192)
        try check("hidden_dim", hiddenDim, 1...8192)
        try check("num_resnet_blocks", numResnetBlocks, 0...64)
        try check("channels", channels, 1...16)
        guard imageSize & (imageSize - 1) == 0, gridSize >= 1 else {
            throw DalleError.badFile("dVAE 'image_size' \(imageSize) must be a power of two of at least 2^num_layers")
        }
        guard normalizationMean.count == channels, normalizationStd.count == channels,
              normalizationStd.allSatisfy({ $0 != 0 }) else {
            throw DalleError.badFile("dVAE normalization needs \(channels) means and \(channels) non-zero stds")
        }
    }
}
