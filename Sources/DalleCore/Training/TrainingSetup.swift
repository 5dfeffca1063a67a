/// Builds what a training run needs from bundle-style metadata, so the CLI and the C API
/// share one path: a model configuration given as "dvae.*" / "transformer.*" / "clip.*" keys
/// (defaults below, for the Shapes World), fresh or read back from a checkpoint.
public enum TrainingSetup {
    /// The stages of a full training, in order.
    public static let stages = ["tokenizer", "dvae", "transformer", "clip"]

    /// Configuration keys of the default Shapes World models (the transformer's and CLIP's
    /// vocabulary and grid sizes are filled in from the tokenizer and dVAE).
    public static func defaults(_ component: String) -> [String: String] {
        switch component {
        case "dvae": return DVAEConfig(imageSize: 64, groupCount: 3, hiddenChannels: 32, blocksPerGroup: 1, inputChannels: 3,
                                       outputChannels: 3, vocabSize: 512, initChannels: 64).metadata
        case "transformer":
            return ["transformer.dim": "192", "transformer.depth": "4", "transformer.heads": "6", "transformer.dim_head": "32",
                    "transformer.text_seq_len": "16", "transformer.attn_types": "full", "transformer.rotary_emb": "false",
                    "transformer.shift_tokens": "true"]
        case "clip":
            return CLIPConfig(embedDim: 128, imageResolution: 64, visionPatchSize: 8, visionWidth: 128, visionLayers: 3, visionHeads: 4,
                              contextLength: 20, vocabSize: 0, textWidth: 128, textLayers: 3, textHeads: 4).metadata
        default: return [:]
        }
    }

    /// The stage for `component` with configuration `config` (from `defaults` with overrides);
    /// parameters from `checkpoint` when resuming, else freshly initialised from `seed` (a fresh
    /// dVAE as `dvaeInit` says).
    public static func stage(_ component: String, config: [String: String], checkpoint: WeightStore?, seed: UInt64,
                             tokenizer: Tokenizer?, imageTokenizer: ImageTokenizer?, pool: ThreadPool,
                             dvaeInit: TrainableDVAE.Initialisation = .init()) throws -> TrainingStage {
        var config = config
        switch component {
        case "dvae":
            let c = try DVAEConfig(metadata: config)
            let model = try checkpoint.map { try TrainableDVAE(config: c, weights: $0) } ?? TrainableDVAE(config: c, seed: seed, initialisation: dvaeInit)
            return DVAEStage(model: model, seed: seed)
        case "transformer":
            guard let tokenizer, let imageTokenizer else {
                throw DalleError.invalidArgument("training the transformer needs a tokenizer and a trained dVAE")
            }
            config["transformer.num_text_tokens"] = String(tokenizer.vocabularySize)
            config["transformer.num_image_tokens"] = String(imageTokenizer.vocabSize)
            config["transformer.image_fmap_size"] = String(imageTokenizer.gridSize)
            let c = try TransformerConfig(metadata: config)
            let model = try checkpoint.map { try TrainableTransformer(config: c, weights: $0) } ?? TrainableTransformer(config: c, seed: seed)
            return try TransformerStage(model: model, tokenizer: tokenizer, imageTokenizer: imageTokenizer, pool: pool)
        case "clip":
            guard let tokenizer else { throw DalleError.invalidArgument("training CLIP needs a tokenizer") }
            config["clip.vocab_size"] = String(tokenizer.vocabularySize)
            config["clip.kind"] = CLIPConfig.kind
            let c = try CLIPConfig(metadata: config)
            let model = try checkpoint.map { try TrainableCLIP(config: c, weights: $0) } ?? TrainableCLIP(config: c, seed: seed)
            return try CLIPStage(model: model, tokenizer: tokenizer, reconstructor: imageTokenizer, pool: pool)
        default:
            throw DalleError.invalidArgument("unknown training stage '\(component)' (stages: \(stages.joined(separator: ", ")))")
        }
    }

    /// A BPE tokenizer learned from the captions of `data` (at most `captionLimit` of them).
    public static func trainTokenizer(_ data: TrainingDataSource, vocabularySize: Int, captionLimit: Int = 20_000) throws -> Tokenizer {
        try BPETrainer(vocabularySize: vocabularySize).train(try captions(data, limit: captionLimit))
    }

    /// The words of the captions a tokenizer learns from (`trainTokenizer`), with `grammar` when
    /// every caption follows one: what a bundle records so generate can warn about other words.
    public static func vocabulary(_ data: TrainingDataSource, grammar: String?, captionLimit: Int = 20_000) throws -> PromptVocabulary {
        PromptVocabulary(captions: try captions(data, limit: captionLimit), grammar: grammar)
    }

    private static func captions(_ data: TrainingDataSource, limit: Int) throws -> [String] {
        try (0..<min(data.count, limit)).map { try data.example(at: $0).caption }
    }

    /// A one-component bundle holding `tokenizer`, and the vocabulary of its captions when given.
    public static func writeTokenizer(_ tokenizer: Tokenizer, vocabulary: PromptVocabulary? = nil, to path: String) throws {
        var writer = SafetensorsWriter()
        writer.metadata = ["format": DalleModel.formatName, "format_version": String(DalleModel.formatVersion), "components": "tokenizer"]
        try tokenizer.write(to: &writer)
        for (key, value) in vocabulary?.metadata ?? [:] { writer.metadata[key] = value }
        try writer.write(to: path)
    }

    /// Joins the components of `parts` (bundles or checkpoints, each component taken from the
    /// first file that has it) into one bundle at `path`, weights stored as `dtype` (f32, f16
    /// or bf16; the tokenizer stays bytes, the rotary table float32). With `quantization`, the
    /// matrices `isQuantizable` accepts are stored block-quantized instead, the rest as `dtype`.
    /// Optimizer state and training metadata are left out.
    /// `condScale` and `likelihoodWeight`, when given, are recorded as the settings the model was
    /// tuned for (`DalleModel.condScale`, `.likelihoodWeight`); otherwise the transformer part's own, if any, are kept.
    /// Whether a bundle quantizes tensor `name`: a PyTorch linear weight (a name ending in
    /// "weight", [outputs, inputs] with inputs a multiple of 32 and at least 4,096 values) that
    /// is not an embedding table, a codebook or a positional table, which stay 16-bit as
    /// llama.cpp keeps them.
    public static func isQuantizable(_ name: String, shape: [Int]) -> Bool {
        guard shape.count == 2, shape[1] % QuantizedType.blockSize == 0, shape[0] * shape[1] >= 4096,
              name.hasSuffix("weight") else { return false }
        let last = name.split(separator: ".").suffix(2).joined(separator: ".")
        return !["emb", "codebook", "positional"].contains { last.contains($0) }
    }

    public static func assembleBundle(_ parts: [SafetensorsFile], dtype: DType, quantization: QuantizedType? = nil,
                                      to path: String, condScale: Float? = nil, likelihoodWeight: Float? = nil,
                                      vocabulary: PromptVocabulary? = nil) throws {
        var writer = SafetensorsWriter()
        writer.metadata = ["format": DalleModel.formatName, "format_version": String(DalleModel.formatVersion)]
        var components: [String] = []
        // Every registered kind; files list the tokenizer first.
        for component in ["tokenizer"] + ComponentKind.all.map(\.name).filter({ $0 != "tokenizer" }) {
            guard let file = parts.first(where: { ($0.metadata["components"] ?? "").split(separator: ",").contains { $0 == component } }) else { continue }
            components.append(component)
            for (key, value) in file.metadata where key.hasPrefix(component + ".") && !key.hasSuffix(".quantization") {
                writer.metadata[key] = value
            }
            for name in file.names.sorted() where name.hasPrefix(component + ".") {
                guard let info = file.info(name) else { continue }
                if info.dtype == .u8, file.quantization(name) == nil {
                    try writer.add(name, bytes: try file.bytes(name), dtype: .u8, shape: info.shape)
                    continue
                }
                let tensor = try file.tensor(name)
                if let quantization, isQuantizable(name, shape: tensor.shape) {
                    try writer.add(name, tensor, quantizedAs: quantization)
                } else {
                    let keepsFullPrecision = name == DalleTransformer.rotaryTableName
                    try writer.add(name, tensor, as: keepsFullPrecision ? .f32 : dtype)
                }
            }
        }
        guard !components.isEmpty else { throw DalleError.invalidArgument("none of the input files holds a libdalle component") }
        if let likelihoodWeight { try validateLikelihoodWeight(likelihoodWeight) }
        for (key, name, value) in [(DalleModel.condScaleKey, "a guidance scale", condScale),
                                   (DalleModel.likelihoodWeightKey, "a likelihood weight", likelihoodWeight)] {
            guard let value else { continue }
            guard components.contains("transformer"), value.isFinite else {
                throw DalleError.invalidArgument("\(name) needs a transformer among the parts and a finite value, got \(value)")
            }
            writer.metadata[key] = String(value)
        }
        if let vocabulary {
            guard components.contains("tokenizer") else {
                throw DalleError.invalidArgument("a vocabulary needs a tokenizer among the parts")
            }
            writer.metadata[PromptVocabulary.wordsKey] = nil
            writer.metadata[PromptVocabulary.grammarKey] = nil
            for (key, value) in vocabulary.metadata { writer.metadata[key] = value }
        }
        writer.metadata["components"] = components.joined(separator: ",")
        try writer.write(to: path)
    }
}
