/// CLIP's pre-tokenizer, the pattern
/// `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
/// with `re.IGNORECASE` (the `regex` module), written out by hand over Unicode scalars.
///
/// Case-insensitivity matters only for text that is already lower-case: `ſ` (U+017F) matches
/// `s`, and U+0345 (which folds to a Greek letter) matches no branch, so it is skipped like
/// whitespace.
enum PreTokenizer {
    enum Piece: Equatable {
        /// A run of text to encode with BPE.
        case text(Range<Int>)
        /// `<|startoftext|>` (0) or `<|endoftext|>` (1), written out in the caption.
        case special(Int)
    }

    static let specials: [[Unicode.Scalar]] = [Array("<|startoftext|>".unicodeScalars), Array("<|endoftext|>".unicodeScalars)]

    /// The pattern's matches in `text`, in order.
    static func split(_ text: [Unicode.Scalar]) -> [Piece] {
        var pieces: [Piece] = []
        var i = 0
        let n = text.count
        while i < n {
            let s = text[i]
            if s == "<", let special = specials.firstIndex(where: { matches($0, text, at: i) }) {
                // Written with `ſ`, the pattern matches but the piece is no special token: the
                // reference's cache only knows the exact strings, so it goes through BPE.
                let end = i + specials[special].count
                pieces.append(text[i..<end].elementsEqual(specials[special]) ? .special(special) : .text(i..<end))
                i = end
            } else if s == "'", let length = contractionLength(text, at: i) {
                pieces.append(.text(i..<(i + length)))
                i += length
            } else {
                switch kind(s) {
                case .letter:
                    var j = i + 1
                    while j < n && kind(text[j]) == .letter { j += 1 }
                    pieces.append(.text(i..<j))
                    i = j
                case .number:
                    pieces.append(.text(i..<(i + 1)))
                    i += 1
                case .other:
                    var j = i + 1
                    while j < n && kind(text[j]) == .other { j += 1 }
                    pieces.append(.text(i..<j))
                    i = j
                case .skipped:
                    i += 1
                }
            }
        }
        return pieces
    }

    enum Kind { case letter, number, other, skipped }

    /// Which branch a scalar belongs to: `\p{L}`, `\p{N}`, `[^\s\p{L}\p{N}]`, or none.
    @inline(__always) static func kind(_ s: Unicode.Scalar) -> Kind {
        let v = s.value
        if v < 0x80 {
            switch v {
            case 0x61...0x7A, 0x41...0x5A: return .letter
            case 0x30...0x39: return .number
            case 0x09...0x0D, 0x20: return .skipped
            default: return .other
            }
        }
        if v == 0x345 { return .skipped }
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return s.properties.isWhitespace ? .skipped : .other
        }
    }

    /// `'s|'t|'re|'ve|'m|'ll|'d` at `i` (which holds the apostrophe).
    private static func contractionLength(_ text: [Unicode.Scalar], at i: Int) -> Int? {
        guard i + 1 < text.count else { return nil }
        switch text[i + 1] {
        case "s", "\u{17F}", "t", "m", "d": return 2
        case "r", "v", "l":
            guard i + 2 < text.count else { return nil }
            let want: Unicode.Scalar = text[i + 1] == "l" ? "l" : "e"
            return text[i + 2] == want ? 3 : nil
        default: return nil
        }
    }

    /// Whether `pattern` occurs in `text` at `i`, with `ſ` matching `s`.
    private static func matches(_ pattern: [Unicode.Scalar], _ text: [Unicode.Scalar], at i: Int) -> Bool {
        guard i + pattern.count <= text.count else { return false }
        for (k, p) in pattern.enumerated() {
            let t = text[i + k]
            if t != p && !(p == "s" && t == "\u{17F}") { return false }
        }
        return true
    }
}
