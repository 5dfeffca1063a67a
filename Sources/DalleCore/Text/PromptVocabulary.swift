/// The words a model was trained on, as its bundle records them, to warn about prompts it
/// cannot draw: a model trained on the Shapes World knows "a small red circle" and nothing of
/// "a photo of a cat", and would otherwise draw something for it silently.
///
/// Recorded under the tokenizer's keys, so `dalle bundle` carries it with the tokenizer:
/// `tokenizer.words` (the words, separated by single spaces, as `words(in:)` splits text) and,
/// optionally, `tokenizer.caption_grammar` (the grammar every training caption followed; only
/// "shapes-world" is known). The tokenizer stage of `dalle train` records both; models converted
/// from elsewhere record none, and then nothing is checked.
public struct PromptVocabulary: Sendable, Equatable {
    public static let wordsKey = "tokenizer.words"
    public static let grammarKey = "tokenizer.caption_grammar"
    /// The one grammar this build knows: `ShapesWorld.Caption.parse`.
    public static let shapesWorldGrammar = "shapes-world"

    /// The words, in the order recorded (sorted when built from captions).
    public let words: [String]
    /// The grammar of the training captions, or nil.
    public let grammar: String?
    private let known: Set<String>

    public init(words: [String], grammar: String? = nil) {
        var seen = Set<String>(), ordered: [String] = []
        for word in words where seen.insert(word).inserted { ordered.append(word) }
        self.words = ordered
        self.grammar = grammar
        self.known = seen
    }

    /// The vocabulary of `captions`: every word any of them uses, sorted.
    public init(captions: [String], grammar: String? = nil) {
        var all = Set<String>()
        for caption in captions { all.formUnion(PromptVocabulary.words(in: caption)) }
        self.init(words: all.sorted(), grammar: grammar)
    }

    /// The Shapes World's words (`ShapesWorld.Caption`'s grammar), with that grammar.
    public static let shapesWorld: PromptVocabulary = {
        var words = ["a", "two", "three"] + ShapesWorld.Size.allCases.map(\.rawValue) + ShapesWorld.Colour.allCases.map(\.rawValue)
        words += ShapesWorld.Shape.allCases.flatMap { [$0.rawValue, $0.plural] }
        words += ShapesWorld.Relation.allCases.flatMap { $0.words.split(separator: " ").map(String.init) }
        return PromptVocabulary(words: words, grammar: shapesWorldGrammar)
    }()

    /// The vocabulary a bundle's metadata records, or nil when it records none. A grammar without
    /// words is the grammar's own words.
    public init?(metadata: [String: String]) throws {
        let grammar = metadata[PromptVocabulary.grammarKey]
        if let grammar, grammar != PromptVocabulary.shapesWorldGrammar {
            throw DalleError.badFile("'\(PromptVocabulary.grammarKey)' is '\(grammar)'; this build knows '\(PromptVocabulary.shapesWorldGrammar)'")
        }
        guard let text = metadata[PromptVocabulary.wordsKey] else {
            guard grammar != nil else { return nil }
            self = PromptVocabulary.shapesWorld
            return
        }
        let words = text.split(separator: " ").map(String.init)
        guard !words.isEmpty else { throw DalleError.badFile("'\(PromptVocabulary.wordsKey)' holds no words") }
        self.init(words: words, grammar: grammar)
    }

    /// The metadata entries that record this vocabulary.
    public var metadata: [String: String] {
        var entries = [PromptVocabulary.wordsKey: words.joined(separator: " ")]
        if let grammar { entries[PromptVocabulary.grammarKey] = grammar }
        return entries
    }

    /// The words of `text` as the check sees them: cleaned and lower-cased as CLIP's tokenizer does,
    /// then split at every character that is not a letter or a digit ("It's red!" -> it, s, red).
    public static func words(in text: String) -> [String] {
        var words: [String] = [], current = String.UnicodeScalarView()
        for scalar in CaptionCleaner.clean(text) {
            if scalar.properties.isAlphabetic || scalar.properties.numericType != nil {
                current.append(scalar)
            } else if !current.isEmpty {
                words.append(String(current))
                current = String.UnicodeScalarView()
            }
        }
        if !current.isEmpty { words.append(String(current)) }
        return words
    }

    /// The distinct words of `prompt` outside the vocabulary, in the order they first appear.
    public func unknownWords(in prompt: String) -> [String] {
        var seen = Set<String>()
        return PromptVocabulary.words(in: prompt).filter { !known.contains($0) && seen.insert($0).inserted }
    }

    /// Why `prompt`, whose words are all known, is still not a caption of the recorded grammar
    /// (nil when it is one, or when no grammar is recorded). Punctuation and case are ignored.
    public func grammarProblem(in prompt: String) -> String? {
        guard grammar == PromptVocabulary.shapesWorldGrammar else { return nil }
        let words = PromptVocabulary.words(in: prompt)
        guard !words.isEmpty else { return nil }
        do {
            _ = try ShapesWorld.Caption.parse(words.joined(separator: " "))
            return nil
        } catch DalleError.invalidArgument(let message) {
            return message
        } catch {
            return "\(error)"
        }
    }

    /// The warning for `prompt` (nil when there is nothing to say): its unknown words, else its
    /// grammar problem. `unknown` is `unknownWords(in: prompt)`.
    public func warning(for prompt: String, unknown: [String]) -> String? {
        let shapes = grammar == PromptVocabulary.shapesWorldGrammar
        let grammarNote = " (it knows Shapes World captions only, e.g. 'a small red circle', 'two blue squares', "
            + "'a red circle to the left of a green square')"
        if !unknown.isEmpty {
            let list = unknown.prefix(8).map { "'\($0)'" }.joined(separator: ", ") + (unknown.count > 8 ? ", ..." : "")
            let one = unknown.count == 1
            return "the prompt has \(unknown.count) word\(one ? "" : "s") the model was never trained on (\(list)); "
                + "its images will not show \(one ? "it" : "them")" + (shapes ? grammarNote : "")
        }
        if let problem = grammarProblem(in: prompt) {
            return "the prompt is not a caption of the model's grammar (\(problem))" + grammarNote
        }
        return nil
    }
}
