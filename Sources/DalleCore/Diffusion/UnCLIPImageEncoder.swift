#if canImport(Glibc)
import Glibc
#endif

extension CLIP {
    /// The logit scale an unCLIP bundle's CLIP uses: 100, the value OpenAI's CLIP trained to (its
    /// clamp); transformers' `CLIPVisionModelWithProjection` and `CLIPTextModelWithProjection` do not
    /// store one.
    public static let unclipLogitScale: Float = 100

    /// An unCLIP bundle's CLIP: the image-variations pipeline's `image_encoder` (transformers'
    /// `CLIPVisionModelWithProjection`, Karlo's ViT-L/14 vision tower) with the bundle's `text_encoder`
    /// as its text tower, both loaded as libdalle's own `CLIP` through a table of names (transformers'
    /// onto OpenAI's; q/k/v stacked, the projections transposed). Images are preprocessed as the
    /// bundle's `feature_extractor` (`CLIPImageProcessor`) says: it must be CLIP's (bicubic resize of the
    /// short side, centre crop to the encoder's size, CLIP's mean and std), cropping as transformers does.
    /// Every `unclip.image_encoder.*` tensor must be used. Throws `badFile` for a malformed or
    /// inconsistent part, `unsupported` for options this port lacks.
    public init(unclip metadata: [String: String], weights: WeightStore) throws {
        func config(_ part: String) throws -> DiffusersConfig {
            guard let text = metadata["unclip.\(part).config"] else { throw DalleError.badFile("unCLIP metadata lacks 'unclip.\(part).config'") }
            return try DiffusersConfig(json: text, part: part)
        }
        let vision = try config("image_encoder"), text = try UnCLIPTextEncoder.Configuration(json: try config("text_encoder").value.serialized())
        try vision.expect("hidden_act", .string("quick_gelu"))
        try vision.expect("layer_norm_eps", .number(1e-5))
        let width = try vision.int("hidden_size", 1...8192)
        try vision.expect("intermediate_size", .number(Double(4 * width)), "4 x hidden_size")
        let projection = try vision.int("projection_dim", 1...8192)
        guard projection == text.projectionWidth else {
            throw DalleError.badFile("unCLIP image_encoder projects to \(projection) values, the text encoder to \(text.projectionWidth)")
        }
        let configuration = CLIPConfig(
            embedDim: projection, imageResolution: try vision.int("image_size", 1...4096), visionPatchSize: try vision.int("patch_size", 1...1024),
            visionWidth: width, visionLayers: try vision.int("num_hidden_layers", 1...256), visionHeads: try vision.int("num_attention_heads", 1...256),
            contextLength: text.positions, vocabSize: text.vocabularySize, textWidth: text.width, textLayers: text.layers, textHeads: text.heads)
        try configuration.validate()
        if let processor = metadata["unclip.feature_extractor.config"] {
            try Self.checkPreprocessing(try DiffusersConfig(json: processor, part: "feature_extractor"), size: configuration.imageResolution)
        }

        // transformers' names onto OpenAI's by CLIP's own renaming rules, both towers' prefixes dropped;
        // CLIP's strict loading then rejects any image or text encoder tensor it does not use.
        let towers = ["unclip.image_encoder.", "unclip.text_encoder."]
        let view = RemappedWeights(
            weights, rules: towers.map { ($0, "") } + CLIPCheckpoint.huggingFaceRenames, transposed: CLIPCheckpoint.transposed,
            prefix: "clip.", constants: ["clip.logit_scale": Tensor(uncheckedShape: [], scalars: [logf(Self.unclipLogitScale)])]
        ) { name in towers.contains(where: name.hasPrefix) && !CLIPCheckpoint.ignoredSuffixes.contains(where: name.hasSuffix) }
        try self.init(config: configuration, weights: view)
        cropRounding = .down
    }

    /// `unsupported` unless `processor` (a `CLIPImageProcessor` config) preprocesses as CLIP does at `size`.
    private static func checkPreprocessing(_ processor: DiffusersConfig, size: Int) throws {
        for flag in ["do_resize", "do_center_crop", "do_normalize", "do_rescale"] { try processor.expect(flag, .bool(true)) }
        try processor.expect("resample", .number(3), "3 (bicubic)")
        func number(_ v: JSONValue?) -> Double? { if case .number(let d)? = v { return d }; return nil }
        let scale = number(processor["rescale_factor"]) ?? 1.0 / 255
        let mean = processor["image_mean"]?.arrayValue?.compactMap(number) ?? CLIPPreprocess.mean.map(Double.init)
        let std = processor["image_std"]?.arrayValue?.compactMap(number) ?? CLIPPreprocess.std.map(Double.init)
        func near(_ a: [Double], _ b: [Float]) -> Bool { a.count == b.count && zip(a, b).allSatisfy { abs($0 - Double($1)) < 1e-6 } }
        guard abs(scale - 1.0 / 255) < 1e-9, near(mean, CLIPPreprocess.mean), near(std, CLIPPreprocess.std) else {
            throw DalleError.unsupported("feature_extractor config: rescale_factor, image_mean or image_std differ from CLIP's (this port supports CLIP's)")
        }
        let shortest = processor["size"]?["shortest_edge"]?.exactInteger ?? size
        let crop = processor["crop_size"]
        let (cropHeight, cropWidth) = (crop?["height"]?.exactInteger ?? crop?.exactInteger ?? size, crop?["width"]?.exactInteger ?? crop?.exactInteger ?? size)
        guard shortest == size, cropHeight == size, cropWidth == size else {
            throw DalleError.unsupported("feature_extractor config: resizes to \(shortest) and crops \(cropWidth)x\(cropHeight); the image encoder takes \(size)x\(size)")
        }
    }
}
