/// What a loaded component lets the pipeline do.
public struct ComponentCapabilities: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Prompts to text token ids.
    public static let tokenize = ComponentCapabilities(rawValue: 1 << 0)
    /// Image tokens (or images) from a prompt.
    public static let generate = ComponentCapabilities(rawValue: 1 << 1)
    /// Images to tokens.
    public static let encode = ComponentCapabilities(rawValue: 1 << 2)
    /// Tokens to images.
    public static let decode = ComponentCapabilities(rawValue: 1 << 3)
    /// Text and image embeddings, and reranking by them.
    public static let embed = ComponentCapabilities(rawValue: 1 << 4)
    /// Trainable by `dalle train`.
    public static let train = ComponentCapabilities(rawValue: 1 << 5)

    static let named: [(String, ComponentCapabilities)] = [
        ("tokenize", .tokenize), ("generate", .generate), ("encode", .encode), ("decode", .decode),
        ("embed", .embed), ("train", .train),
    ]

    public var description: String { ComponentCapabilities.named.filter { contains($0.1) }.map(\.0).joined(separator: ",") }
}

/// One kind of component a model file can hold ("dvae", "tokenizer", "transformer", "clip", "unclip"),
/// declared once beside its model: its name in the file's "components" list, its bit in
/// `ModelComponents`, what it can do and how it loads. `DalleModel` loads every kind a file
/// lists through `ComponentKind.all`; the C API, CLI and bindings describe a model's
/// components from the same list. A new model family adds its kind to `all`.
public struct ComponentKind: Sendable {
    public let name: String
    public let component: ModelComponents
    public let capabilities: ComponentCapabilities
    /// Builds the component from a file's metadata and weights, given the components the
    /// file's earlier kinds (in `all`'s order) already loaded.
    let load: @Sendable (_ metadata: [String: String], _ weights: WeightStore, _ loaded: [LoadedComponent]) throws -> LoadedComponent.Parts

    /// Loads this kind from a file (see `load`).
    func loadComponent(_ metadata: [String: String], _ weights: WeightStore, after loaded: [LoadedComponent]) throws -> LoadedComponent {
        let parts = try load(metadata, weights, loaded)
        return LoadedComponent(kind: self, model: parts.model, variant: parts.variant, parameterCount: parts.parameterCount)
    }

    /// Every kind this build loads, in loading order.
    public static let all: [ComponentKind] = [.dvae, .tokenizer, .transformer, .clip, .unclip]
}

/// A component built from a model file.
public struct LoadedComponent: @unchecked Sendable {
    public let kind: ComponentKind
    /// The model: a `DVAE` or `DiscreteVAE`, `Tokenizer`, `DalleTransformer`, `CLIP` or `UnCLIPPipeline`.
    public let model: Any
    /// The configuration's own kind ("openai", "dalle-pytorch", "vit", "clip-bpe", ...).
    public let variant: String
    /// Parameters (tensor elements) it loaded.
    public let parameterCount: Int

    /// What a kind's loader returns.
    struct Parts {
        let model: Any
        let variant: String
        let parameterCount: Int
    }
}

extension Array where Element == LoadedComponent {
    /// The loaded model of kind `name` as `T`, if any.
    func model<T>(_ name: String, as _: T.Type = T.self) -> T? {
        first { $0.kind.name == name }?.model as? T
    }
}
