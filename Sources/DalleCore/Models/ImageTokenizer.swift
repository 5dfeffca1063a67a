/// An image tokenizer: images to grids of discrete tokens and back. OpenAI's dVAE (`DVAE`)
/// and DALLE-pytorch's `DiscreteVAE` both are one; a bundle's "dvae.kind" says which.
public protocol ImageTokenizer: Sendable {
    /// Side of the square images, in pixels.
    var imageSize: Int { get }
    /// Side of the square token grid.
    var gridSize: Int { get }
    /// Number of distinct tokens.
    var vocabSize: Int { get }
    /// Token grids (gridSize² ids per image, row-major, image after image) for images
    /// [N, 3, imageSize, imageSize] with values in [0, 1].
    func encode(_ pixels: Tensor, pool: ThreadPool) throws -> [Int32]
    /// Images [count, 3, imageSize, imageSize] in [0, 1] for `count` token grids.
    func decode(tokens: [Int32], count: Int, pool: ThreadPool) throws -> Tensor
    /// An upper bound of the bytes encoding or decoding `images` images at once allocates.
    func workingBytes(images: Int) -> Int
}

extension DVAE: ImageTokenizer {
    public var imageSize: Int { config.imageSize }
    public var gridSize: Int { config.tokenGridSize }
    public var vocabSize: Int { config.vocabSize }

    /// Eight activations of the widest resolution group (twice n_hid channels at full size
    /// where a group upsamples into it), the token logits (or one-hot codes) and the images.
    public func workingBytes(images: Int) -> Int {
        let c = config, pixels = c.imageSize * c.imageSize, grid = c.tokenGridSize * c.tokenGridSize
        let perImage = WorkingMemory.sum(16 * c.hiddenChannels * pixels, 2 * c.vocabSize * grid,
                                         4 * (c.inputChannels + c.outputChannels) * pixels)
        return WorkingMemory.product(images, perImage, MemoryLayout<Float>.size)
    }
}

/// Builds the image tokenizer a bundle's "dvae.kind" names: "openai" (`DVAE`) or
/// "dalle-pytorch" (`DiscreteVAE`). Throws `unsupported` for another kind.
public func makeImageTokenizer(metadata: [String: String], weights: WeightStore) throws -> ImageTokenizer {
    switch metadata["dvae.kind"] {
    case DiscreteVAEConfig.kind:
        return try DiscreteVAE(config: try DiscreteVAEConfig(metadata: metadata), weights: weights)
    default:
        return try DVAE(config: try DVAEConfig(metadata: metadata), weights: weights)
    }
}

extension ComponentKind {
    /// The image tokenizer: OpenAI's dVAE or DALLE-pytorch's DiscreteVAE ("dvae.kind").
    public static let dvae = ComponentKind(name: "dvae", component: .dvae, capabilities: [.encode, .decode, .train]) {
        metadata, weights, _ in
        LoadedComponent.Parts(model: try makeImageTokenizer(metadata: metadata, weights: weights),
                        variant: metadata["dvae.kind"] ?? DVAEConfig.kind, parameterCount: countParameters(weights, prefix: "dvae."))
    }
}
