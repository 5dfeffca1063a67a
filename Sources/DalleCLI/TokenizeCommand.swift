import DalleCore
#if canImport(Glibc)
import Glibc
#endif

let tokenizeUsage = """
    tokenize [--model M] [--mode MODE] TEXT
      prints a caption's token ids on one line
      --mode MODE          model (the model's own text stream, default), raw (no start/end
                           tokens, no padding), clip (clip.tokenize, 77 ids) or dalle (DALL-E's
                           text stream, padded to the text length)

    """

/// `dalle tokenize --model M [--mode model|raw|clip|dalle] "text"`: prints the caption's token
/// ids on one line, separated by spaces; a note on stderr when the text was truncated.
func tokenizeCommand(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["model", "mode"], maxPositional: 1)
    guard let text = arguments.positional.first else { throw UsageError("tokenize needs the TEXT to tokenize") }
    let model = try DalleModel(path: try arguments.modelPath())
    let tokenizer = try model.requireTokenizer()
    let convention: TextConvention
    switch arguments.options["mode"] ?? "model" {
    case "model": convention = model.defaultTextConvention
    case "raw": convention = .raw
    case "clip": convention = .clip(contextLength: TextConvention.clipContextLength)
    case "dalle": convention = .dalle(textLength: model.transformerTextLength ?? TextConvention.dalleTextLength)
    case let other: throw UsageError("unknown --mode '\(other)' (expected model, raw, clip or dalle)")
    }
    let result = try tokenizer.tokenize(text, convention)
    print(result.ids.map(String.init).joined(separator: " "))
    if result.truncated {
        fputs("dalle: the text was truncated to \(result.count) tokens\n", stderr)
    }
}
