/// Hyper-parameters of OpenAI's CLIP with a vision transformer (`clip.model.CLIP` built
/// by `build_model` from a ViT state dict). A libdalle bundle stores them as `clip.*`
/// metadata strings named after the reference's constructor arguments.
public struct CLIPConfig: Equatable, Sendable {
    /// Size of the joint embedding space (`embed_dim`).
    public var embedDim: Int
    /// Side of the square input images (`image_resolution`).
    public var imageResolution: Int
    /// Side of a square patch (`vision_patch_size`); divides the resolution.
    public var visionPatchSize: Int
    /// Width of the vision transformer (`vision_width`).
    public var visionWidth: Int
    /// Residual attention blocks of the vision transformer (`vision_layers`).
    public var visionLayers: Int
    /// Attention heads of the vision transformer (the reference uses width / 64).
    public var visionHeads: Int
    /// Text tokens per prompt (`context_length`, 77).
    public var contextLength: Int
    /// Text vocabulary size (`vocab_size`, 49408).
    public var vocabSize: Int
    /// Width of the text transformer (`transformer_width`).
    public var textWidth: Int
    /// Residual attention blocks of the text transformer (`transformer_layers`).
    public var textLayers: Int
    /// Attention heads of the text transformer (`transformer_heads`, width / 64).
    public var textHeads: Int

    /// ViT-B/32, the reference configuration.
    public static let vitB32 = CLIPConfig(
        embedDim: 512, imageResolution: 224, visionPatchSize: 32, visionWidth: 768, visionLayers: 12,
        visionHeads: 12, contextLength: 77, vocabSize: 49408, textWidth: 512, textLayers: 12, textHeads: 8)

    /// The only `clip.kind` this build implements (ModifiedResNet towers are not supported).
    public static let kind = "vit"

    public init(embedDim: Int, imageResolution: Int, visionPatchSize: Int, visionWidth: Int,
                visionLayers: Int, visionHeads: Int, contextLength: Int, vocabSize: Int,
                textWidth: Int, textLayers: Int, textHeads: Int) {
        self.embedDim = embedDim
        self.imageResolution = imageResolution
        self.visionPatchSize = visionPatchSize
        self.visionWidth = visionWidth
        self.visionLayers = visionLayers
        self.visionHeads = visionHeads
        self.contextLength = contextLength
        self.vocabSize = vocabSize
        self.textWidth = textWidth
        self.textLayers = textLayers
        self.textHeads = textHeads
    }

    /// Metadata keys (after "clip.") of the integer fields, in declaration order.
    static let keys = [
        "embed_dim", "image_resolution", "vision_patch_size", "vision_width", "vision_layers", "vision_heads",
        "context_length", "vocab_size", "transformer_width", "transformer_layers", "transformer_heads",
    ]

    var values: [Int] {
        [embedDim, imageResolution, visionPatchSize, visionWidth, visionLayers, visionHeads,
         contextLength, vocabSize, textWidth, textLayers, textHeads]
    }

    /// Reads the `clip.*` keys of a bundle's metadata. Throws `unsupported` for a
    /// `clip.kind` other than "vit" and `badFile` for a missing, non-integer or out-of-range value.
    public init(metadata: [String: String]) throws {
        guard let kind = metadata["clip.kind"] else { throw DalleError.badFile("CLIP metadata lacks 'clip.kind'") }
        guard kind == CLIPConfig.kind else {
            throw DalleError.unsupported("CLIP kind '\(kind)' (this build reads kind '\(CLIPConfig.kind)', a vision transformer; ResNet towers are not supported)")
        }
        let keys = ComponentMetadata(metadata, component: "clip", label: "CLIP")
        let v = try CLIPConfig.keys.map(keys.int)
        self.init(embedDim: v[0], imageResolution: v[1], visionPatchSize: v[2], visionWidth: v[3],
                  visionLayers: v[4], visionHeads: v[5], contextLength: v[6], vocabSize: v[7],
                  textWidth: v[8], textLayers: v[9], textHeads: v[10])
        try validate()
    }

    /// The configuration as bundle metadata (the inverse of `init(metadata:)`).
    public var metadata: [String: String] {
        var m = ["clip.kind": CLIPConfig.kind]
        for (key, value) in zip(CLIPConfig.keys, values) { m["clip." + key] = String(value) }
        return m
    }

    /// Scalars in all parameters.
    public var parameterCount: Int {
        CLIPSeededWeights.parameterShapes(self).reduce(0) { $0 + $1.shape.reduce(1, *) }
    }

    /// Patches along one side of the image.
    public var gridSize: Int { imageResolution / visionPatchSize }

    /// Checks every field against the limits this implementation supports, so that no
    /// size computed from a configuration can overflow. Throws `badFile`.
    public func validate() throws {
        let limits: [ClosedRange<Int>] = [1...8192, 1...4096, 1...1024, 1...8192, 1...256, 1...256,
                                          1...4096, 1...1_000_000, 1...8192, 1...256, 1...256]
        let keys = ComponentMetadata([:], component: "clip", label: "CLIP")
        for (key, (value, range)) in zip(CLIPConfig.keys, zip(values, limits)) { try keys.check(key, value, range) }
        guard imageResolution % visionPatchSize == 0 else {
            throw DalleError.badFile("CLIP 'image_resolution' \(imageResolution) is not a multiple of 'vision_patch_size' \(visionPatchSize)")
        }
        guard visionWidth % visionHeads == 0 else {
            throw DalleError.badFile("CLIP 'vision_width' \(visionWidth) is not divisible by 'vision_heads' \(visionHeads)")
        }
        guard textWidth % textHeads == 0 else {
            throw DalleError.badFile("CLIP 'transformer_width' \(textWidth) is not divisible by 'transformer_heads' \(textHeads)")
        }
    }
}
