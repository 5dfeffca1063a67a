/// Hyper-parameters of OpenAI's discrete VAE (the `dall_e` package's `Encoder` and
/// `Decoder`). Reference names in parentheses; a libdalle bundle stores them as
/// `dvae.*` metadata strings.
public struct DVAEConfig: Equatable, Sendable {
    /// Side of the square RGB images, in pixels.
    public var imageSize: Int
    /// Number of resolution groups (`group_count`); each group but the last halves
    /// (encoder) or doubles (decoder) the resolution, and the channel width doubles
    /// per group away from the image.
    public var groupCount: Int
    /// Channels of the full-resolution group (`n_hid`); a multiple of 4.
    public var hiddenChannels: Int
    /// Residual blocks per group (`n_blk_per_group`).
    public var blocksPerGroup: Int
    /// Channels of the encoder's input image (`input_channels`).
    public var inputChannels: Int
    /// Channels of the decoded image (`output_channels`); the decoder emits twice as many statistics.
    public var outputChannels: Int
    /// Number of image tokens (`vocab_size`).
    public var vocabSize: Int
    /// Channels the decoder's token embedding produces (`n_init`).
    public var initChannels: Int

    /// The released OpenAI dVAE: 256×256 images, 32×32 grid of 8192 tokens.
    public static let openAI = DVAEConfig(
        imageSize: 256, groupCount: 4, hiddenChannels: 256, blocksPerGroup: 2,
        inputChannels: 3, outputChannels: 3, vocabSize: 8192, initChannels: 128)

    /// The only `dvae.kind` this build implements.
    public static let kind = "openai"

    /// A configuration from its fields; `DVAE.init` validates it (see `validate()`).
    public init(imageSize: Int, groupCount: Int, hiddenChannels: Int, blocksPerGroup: Int,
                inputChannels: Int, outputChannels: Int, vocabSize: Int, initChannels: Int) {
        self.imageSize = imageSize
        self.groupCount = groupCount
        self.hiddenChannels = hiddenChannels
        self.blocksPerGroup = blocksPerGroup
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.vocabSize = vocabSize
        self.initChannels = initChannels
    }

    /// Reads the `dvae.*` keys of a bundle's metadata. Throws `unsupported` for a
    /// `dvae.kind` other than "openai" and `badFile` for a missing, non-integer or
    /// out-of-range value.
    public init(metadata: [String: String]) throws {
        guard let kind = metadata["dvae.kind"] else { throw DalleError.badFile("dVAE metadata lacks 'dvae.kind'") }
        guard kind == DVAEConfig.kind else {
            throw DalleError.unsupported("dVAE kind '\(kind)' (this build reads kind '\(DVAEConfig.kind)')")
        }
        let keys = ComponentMetadata(metadata, component: "dvae", label: "dVAE")
        func int(_ key: String) throws -> Int { try keys.int(key) }
        self.init(imageSize: try int("image_size"), groupCount: try int("group_count"),
                  hiddenChannels: try int("n_hid"), blocksPerGroup: try int("n_blk_per_group"),
                  inputChannels: try int("input_channels"), outputChannels: try int("output_channels"),
                  vocabSize: try int("vocab_size"), initChannels: try int("n_init"))
        try validate()
    }

    /// The configuration as bundle metadata (the inverse of `init(metadata:)`).
    public var metadata: [String: String] {
        [
            "dvae.kind": DVAEConfig.kind,
            "dvae.image_size": String(imageSize),
            "dvae.group_count": String(groupCount),
            "dvae.n_hid": String(hiddenChannels),
            "dvae.n_blk_per_group": String(blocksPerGroup),
            "dvae.input_channels": String(inputChannels),
            "dvae.output_channels": String(outputChannels),
            "dvae.vocab_size": String(vocabSize),
            "dvae.n_init": String(initChannels),
        ]
    }

    /// Side of the token grid: `imageSize / 2^(groupCount - 1)`.
    public var tokenGridSize: Int { imageSize >> (groupCount - 1) }

    /// Checks every field against the limits this implementation supports, so that
    /// no size computed from a configuration can overflow. Throws `badFile`.
    public func validate() throws {
        let check = ComponentMetadata([:], component: "dvae", label: "dVAE").check
        try check("group_count", groupCount, 1...6)
        try check("image_size", imageSize, 1...2048)
        try check("n_hid", hiddenChannels, 4...1024)
        try check("n_blk_per_group", blocksPerGroup, 1...16)
        try check("input_channels", inputChannels, 1...16)
        try check("output_channels", outputChannels, 1...16)
        try check("vocab_size", vocabSize, 1...65536)
        try check("n_init", initChannels, 1...4096)
        guard hiddenChannels % 4 == 0 else {
            throw DalleError.badFile("dVAE 'n_hid' must be a multiple of 4, got \(hiddenChannels)")
        }
        let scale = 1 << (groupCount - 1)
        guard imageSize % scale == 0 else {
            throw DalleError.badFile("dVAE 'image_size' \(imageSize) is not divisible by 2^(group_count - 1) = \(scale)")
        }
    }
}
