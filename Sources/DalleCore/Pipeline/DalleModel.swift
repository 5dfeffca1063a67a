/// The parts a libdalle model file can hold (the `components` metadata entry).
public struct ModelComponents: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let dvae = ModelComponents(rawValue: 1 << 0)
    public static let tokenizer = ModelComponents(rawValue: 1 << 1)
    public static let transformer = ModelComponents(rawValue: 1 << 2)
    public static let clip = ModelComponents(rawValue: 1 << 3)
    public static let unclip = ModelComponents(rawValue: 1 << 4)

    public var description: String {
        let names = ComponentKind.all.filter { contains($0.component) }.map(\.name)
        return names.isEmpty ? "none" : names.joined(separator: ",")
    }
}

/// A loaded model bundle: one safetensors file whose `__metadata__` says
/// `"format": "libdalle"`, `"format_version": "1"`, `"components": "dvae,..."`, with each
/// component's config under `"<component>.*"` keys and its tensors under `"<component>.*"` names.
///
/// Immutable once built; any number of `DalleSession`s on any threads may share it.
public final class DalleModel: @unchecked Sendable {
    public static let formatName = "libdalle"
    public static let formatVersion = 1
    /// The metadata key of `condScale`.
    public static let condScaleKey = "transformer.cond_scale"
    /// The metadata key of `likelihoodWeight`.
    public static let likelihoodWeightKey = "transformer.likelihood_weight"

    public let metadata: [String: String]
    /// Components loaded from the file.
    public let components: ModelComponents
    /// Each loaded component, in `ComponentKind.all`'s order.
    public let loaded: [LoadedComponent]
    /// Names the file lists that this build does not load (a newer file, or a typo).
    public let skippedComponents: [String]
    public let dvae: DVAE?
    public let dvaeConfig: DVAEConfig?
    public let tokenizer: Tokenizer?
    /// The image tokenizer the "dvae" component holds, whatever its kind ("openai": the same
    /// model as `dvae`; "dalle-pytorch": a `DiscreteVAE`, with `dvae` nil).
    public let imageTokenizer: ImageTokenizer?
    public let transformer: DalleTransformer?
    /// CLIP: the "clip" component, else an unCLIP bundle's (its image encoder and text encoder).
    public let clip: CLIP?
    /// DALL·E 2 (unCLIP): text encoder, prior, decoder and super-resolution in one component.
    public let unclip: UnCLIPPipeline?
    /// Parameters of all loaded components.
    public let parameterCount: Int
    /// The classifier-free guidance scale the model was tuned for (`GenerationOptions.condScale`),
    /// from the metadata key `transformer.cond_scale` that `dalle bundle --cond-scale` writes;
    /// 1 (no guidance) when the file has none.
    public let condScale: Float
    /// The weight of the transformer's log-likelihood in CLIP's ranking the model was tuned for
    /// (`GenerationOptions.likelihoodWeight`), from the metadata key `transformer.likelihood_weight`
    /// that `dalle bundle --likelihood-weight` writes; 0 (CLIP alone) when the file has none.
    public let likelihoodWeight: Float
    /// The words the model was trained on (`tokenizer.words`, `tokenizer.caption_grammar`), to warn
    /// about prompts outside them; nil when the file records none.
    public let promptVocabulary: PromptVocabulary?

    /// Opens and loads the model file at `path` (a libdalle bundle, or a CLIP checkpoint
    /// in OpenAI's or Hugging Face's safetensors layout).
    public convenience init(path: String, progress: ProgressHandler? = nil) throws {
        let file = try SafetensorsFile(path: path)
        let bundle = try CLIPCheckpoint.asBundle(file)
        try self.init(metadata: bundle.metadata, weights: bundle.weights, progress: progress)
    }

    /// Loads a model file held in memory; `bytes` is only read during the call.
    public convenience init(bytes: UnsafeRawBufferPointer, progress: ProgressHandler? = nil) throws {
        let file = try SafetensorsFile(bytes: bytes)
        let bundle = try CLIPCheckpoint.asBundle(file)
        try self.init(metadata: bundle.metadata, weights: bundle.weights, progress: progress)
    }

    /// Builds the components `metadata` lists from `weights`. Progress steps: the header,
    /// then one per component.
    public init(metadata: [String: String], weights: WeightStore, progress: ProgressHandler? = nil) throws {
        guard let format = metadata["format"], format == DalleModel.formatName else {
            let found = metadata["format"].map { "\"format\": \"\($0)\"" } ?? "no \"format\" entry"
            throw DalleError.badFile("not a libdalle model: its safetensors metadata has \(found), expected \"format\": \"libdalle\" (convert checkpoints with the scripts in tools/)")
        }
        guard let versionText = metadata["format_version"], let version = Int(versionText) else {
            throw DalleError.badFile("libdalle model without a numeric \"format_version\" in its metadata")
        }
        guard version <= DalleModel.formatVersion else {
            throw DalleError.unsupported("model format_version \(version) is newer than this library reads (\(DalleModel.formatVersion)); upgrade libdalle")
        }
        let listed = (metadata["components"] ?? "").split(separator: ",")
            .map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
        guard !listed.isEmpty else { throw DalleError.badFile("libdalle model lists no \"components\" in its metadata") }

        // Loaded in ComponentKind.all's order; names this build does not know are skipped.
        let kinds = ComponentKind.all.filter { listed.contains($0.name) }
        let skipped = listed.filter { name in !ComponentKind.all.contains { $0.name == name } }
        let reporter = StepReporter(total: 1 + kinds.count, handler: progress, cancellation: nil)
        try reporter.report(0)

        var loaded: [LoadedComponent] = []
        for kind in kinds {
            loaded.append(try kind.loadComponent(metadata, weights, after: loaded))
            try reporter.report(loaded.count)
        }
        let transformer = loaded.model("transformer", as: DalleTransformer.self)
        /// A tuned setting recorded in the metadata (`TrainingSetup.assembleBundle`), or `absent`.
        func recorded(_ key: String, absent: Float, nonNegative: Bool = false) throws -> Float {
            guard let text = metadata[key] else { return absent }
            guard transformer != nil, let value = Float(text), value.isFinite, !nonNegative || value >= 0 else {
                throw DalleError.badFile("'\(key)' is '\(text)'; it must be a finite number\(nonNegative ? " >= 0" : ""), in a file with a transformer")
            }
            return value
        }
        self.condScale = try recorded(DalleModel.condScaleKey, absent: 1)
        self.likelihoodWeight = try recorded(DalleModel.likelihoodWeightKey, absent: 0, nonNegative: true)
        self.promptVocabulary = try PromptVocabulary(metadata: metadata)
        self.metadata = metadata
        self.loaded = loaded
        self.components = ModelComponents(kinds.map(\.component))
        self.skippedComponents = skipped
        self.dvae = loaded.model("dvae")
        self.dvaeConfig = dvae?.config
        self.imageTokenizer = loaded.model("dvae")
        self.tokenizer = loaded.model("tokenizer")
        self.transformer = transformer
        let unclip: UnCLIPPipeline? = loaded.model("unclip")
        self.unclip = unclip
        self.clip = loaded.model("clip") ?? unclip?.clip
        self.parameterCount = loaded.reduce(0) { $0 + $1.parameterCount }
        try reporter.report(loaded.count + 1)
    }

    /// The image tokenizer (OpenAI's dVAE or DALLE-pytorch's DiscreteVAE), or an error
    /// saying this file has none.
    public func requireImageTokenizer() throws -> ImageTokenizer {
        guard let imageTokenizer else {
            throw DalleError.unsupported("this model has no dvae component (it holds: \(components)); encode and decode need one")
        }
        return imageTokenizer
    }
}

extension DalleModel {
    /// The CLIP model, or an error saying this file has none.
    public func requireCLIP() throws -> CLIP {
        guard let clip else {
            throw DalleError.unsupported("this model has no clip component (it holds: \(components)); rerank and CLIP embeddings need one")
        }
        return clip
    }
}

/// Scalars in the tensors of `weights` whose names start with `prefix`.
func countParameters(_ weights: WeightStore, prefix: String) -> Int {
    let names = weights.names.filter { $0.hasPrefix(prefix) }
    switch weights {
    case let file as SafetensorsFile:
        return names.reduce(0) { $0 + ((try? file.shape(of: $1)).flatMap { Tensor.elementCount($0) } ?? 0) }
    case let memory as InMemoryWeights:
        return names.reduce(0) { $0 + (memory.tensors[$1]?.count ?? 0) }
    default:
        return 0
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}
