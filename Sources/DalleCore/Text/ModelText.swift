/// The text conventions a model's callers choose between.
public enum TextConvention: Sendable, Equatable {
    /// BPE ids only: no start/end tokens, no padding, never truncated.
    case raw
    /// `clip.tokenize`: start token, ids, end token, zeros to `contextLength` (CLIP: 77).
    case clip(contextLength: Int)
    /// DALL·E's text stream (DALLE-pytorch): ids, zeros to `textLength`; no start/end tokens.
    case dalle(textLength: Int)

    public static let clipContextLength = 77
    /// The paper's text length, used when a model does not set one.
    public static let dalleTextLength = 256
}

extension DalleModel {
    /// The tokenizer, or an error saying this file has none.
    public func requireTokenizer() throws -> Tokenizer {
        guard let tokenizer else {
            throw DalleError.unsupported("this model has no tokenizer component (it holds: \(components)); tokenizing needs one")
        }
        return tokenizer
    }

    /// The transformer's text length (`transformer.text_seq_len`), when the file has a transformer.
    public var transformerTextLength: Int? {
        metadata["transformer.text_seq_len"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
    }

    /// The convention for this model's own text stream: DALL·E's at the transformer's text
    /// length when the file has one, otherwise CLIP's.
    public var defaultTextConvention: TextConvention {
        transformerTextLength.map { .dalle(textLength: $0) } ?? .clip(contextLength: TextConvention.clipContextLength)
    }
}

extension Tokenizer {
    /// `text` under `convention`: `ids` is exactly the convention's length (`raw`: the ids).
    public func tokenize(_ text: String, _ convention: TextConvention) throws -> TokenizedText {
        switch convention {
        case .raw:
            let ids = encode(text)
            return TokenizedText(ids: ids, count: ids.count, truncated: false)
        case .clip(let contextLength):
            return try tokenizeCLIP(text, contextLength: contextLength)
        case .dalle(let textLength):
            return try tokenizeDALLE(text, textLength: textLength)
        }
    }
}
