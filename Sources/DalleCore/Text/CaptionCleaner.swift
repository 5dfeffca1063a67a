/// CLIP's caption normalisation, `whitespace_clean(basic_clean(text)).lower()` from
/// `clip/simple_tokenizer.py`, where `basic_clean` is `ftfy.fix_text`, `html.unescape` twice
/// and `strip`.
///
/// What is reproduced exactly (tables generated from Python by tools/gen_text_tables.py):
/// - ftfy's per-line segmentation and its "auto" HTML rule (no entity decoding from the first
///   line holding a `<` on), its fixed-point loop, and the fixers `unescape_html` (semicolon
///   entities, ftfy's all-caps ones, whole numeric references), `fix_c1_controls`
///   (U+0080…U+009F as windows-1252), `fix_latin_ligatures`, `fix_character_width`,
///   `uncurl_quotes`, `remove_terminal_escapes`, `remove_control_chars` and NFC;
/// - Python's `html.unescape` (all HTML5 names, the longest-prefix rule for names without `;`,
///   numeric references with the browsers' remapping);
/// - `str.strip`, the `regex` module's `\s`, and `str.lower` with its final-sigma rule.
///
/// Differences from ftfy, none of which changes a caption that is valid text:
/// - ftfy's mojibake repair (`fix_encoding`: text that was UTF-8 decoded as Latin-1 or
///   windows-1252, like "cafÃ©") is not attempted; such text is tokenized as written, which is
///   exactly CLIP's result with `fix_encoding=False` (tests: golden.json's "mojibake" section;
///   on 15,000 random Unicode/entity/control-character strings this was the only difference,
///   on 25 of them).
/// - `fix_line_breaks` and `fix_surrogates` are skipped: every line break becomes one space
///   anyway, and Swift strings cannot hold lone surrogates.
/// - Lower-casing and NFC use the Unicode version of the Swift runtime (Python 3.11 uses
///   Unicode 14): letters added or given case mappings since then may differ.
public enum CaptionCleaner {
    /// `whitespace_clean(basic_clean(text)).lower()` as Unicode scalars.
    public static func clean(_ text: String) -> [Unicode.Scalar] {
        var scalars = fixText(Array(text.unicodeScalars))
        scalars = htmlUnescape(htmlUnescape(scalars))
        return lowercased(collapseWhitespace(scalars))
    }

    // MARK: ftfy.fix_text

    /// ftfy's `fix_text` with its default configuration, minus the parts listed above.
    static func fixText(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        var unescape = true
        var start = 0
        while start < text.count {
            var end = start
            while end < text.count && text[end] != "\n" { end += 1 }
            if end < text.count { end += 1 }  // the segment keeps its "\n"
            var segment = Array(text[start..<end])
            if segment.contains("<") { unescape = false }
            while true {
                let original = segment
                if unescape { segment = ftfyUnescapeHTML(segment) }
                var fixed: [Unicode.Scalar] = []
                fixed.reserveCapacity(segment.count)
                for scalar in segment { appendFixed(scalar, to: &fixed) }
                segment = fixed
                segment = removeTerminalEscapes(segment)
                segment.removeAll(where: isRemovedControl)
                segment = nfc(segment)
                if segment == original { break }
            }
            out += segment
            start = end
        }
        return out
    }

    /// ftfy's per-character fixers, in its order: C1 controls, ligatures, width, quotes.
    private static func appendFixed(_ scalar: Unicode.Scalar, to out: inout [Unicode.Scalar]) {
        var value = scalar.value
        if value >= 0x20 && value < 0x7F { out.append(scalar); return }
        if (0x80...0x9F).contains(value) { value = TextTables.c1[Int(value - 0x80)] }
        let unligated = TextTables.ligatures[value] ?? [value]
        for v in unligated.flatMap({ TextTables.width[$0] ?? [$0] }) {
            switch v {
            case 0x02BC, 0x2018...0x201B: out.append("'")
            case 0x201C...0x201F: out.append("\"")
            default: if let s = Unicode.Scalar(v) { out.append(s) }
            }
        }
    }

    /// ftfy's `remove_control_chars` set.
    private static func isRemovedControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x08, 0x0B, 0x0E...0x1F, 0x7F, 0x206A...0x206F, 0xFEFF, 0xFFF9...0xFFFC: return true
        default: return false
        }
    }

    /// ftfy's `ANSI_RE` (`\033\[((?:\d|;)*)([a-zA-Z])`) removed.
    private static func removeTerminalEscapes(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard text.contains("\u{1B}") else { return text }
        var out: [Unicode.Scalar] = []
        var i = 0
        while i < text.count {
            if text[i] == "\u{1B}", i + 1 < text.count, text[i + 1] == "[" {
                var j = i + 2
                while j < text.count && (text[j] == ";" || text[j].properties.generalCategory == .decimalNumber) { j += 1 }
                if j < text.count && text[j].isASCII && text[j].properties.isAlphabetic {
                    i = j + 1
                    continue
                }
            }
            out.append(text[i])
            i += 1
        }
        return out
    }

    /// ftfy's `unescape_html`: `&#?[0-9A-Za-z]{1,24};` replaced when it names an HTML5 entity
    /// (or one of ftfy's all-caps ones), or is a numeric reference `html.unescape` consumes whole.
    static func ftfyUnescapeHTML(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard text.contains("&") else { return text }
        var out: [Unicode.Scalar] = []
        var i = 0
        while i < text.count {
            guard text[i] == "&" else { out.append(text[i]); i += 1; continue }
            var j = i + 1
            let numeric = j < text.count && text[j] == "#"
            if numeric { j += 1 }
            let nameStart = j
            while j < text.count && j - nameStart < 25 && isASCIIAlphanumeric(text[j]) { j += 1 }
            let length = j - nameStart
            guard (1...24).contains(length), j < text.count, text[j] == ";" else { out.append("&"); i += 1; continue }
            let name = String(String.UnicodeScalarView(text[nameStart...j]))
            var replacement: [Unicode.Scalar]? = nil
            if numeric {
                if let decoded = numericReference(text[nameStart..<j]), !decoded.contains(";") { replacement = decoded }
            } else {
                replacement = EntityTables.shared.ftfy[name]
            }
            if let replacement {
                out += replacement
            } else {
                out += text[i...j]
            }
            i = j + 1
        }
        return out
    }

    /// `html.unescape`'s reading of a whole numeric reference body ("65", "x41"), or nil when
    /// `html.unescape` would not consume all of it.
    private static func numericReference(_ body: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar]? {
        var digits = body
        var radix: UInt32 = 10
        if let first = digits.first, first == "x" || first == "X" { radix = 16; digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.allSatisfy({ digitValue($0, radix: radix) != nil }) else { return nil }
        return decodeCharref(digits, radix: radix)
    }

    // MARK: html.unescape

    /// Python's `html.unescape`.
    static func htmlUnescape(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard text.contains("&") else { return text }
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        var i = 0
        while i < text.count {
            guard text[i] == "&", i + 1 < text.count else { out.append(text[i]); i += 1; continue }
            if text[i + 1] == "#" {
                // #[0-9]+;?  or  #[xX][0-9a-fA-F]+;?
                var j = i + 2
                var radix: UInt32 = 10
                if j < text.count, text[j] == "x" || text[j] == "X" { radix = 16; j += 1 }
                let digitsStart = j
                while j < text.count && digitValue(text[j], radix: radix) != nil { j += 1 }
                guard j > digitsStart else { out.append("&"); i += 1; continue }
                out += decodeCharref(text[digitsStart..<j], radix: radix)
                if j < text.count && text[j] == ";" { j += 1 }
                i = j
                continue
            }
            // [^\t\n\f <&#;]{1,32};?
            var j = i + 1
            while j < text.count && j - (i + 1) < 32 && !"\t\n\u{0C} <&#;".unicodeScalars.contains(text[j]) { j += 1 }
            guard j > i + 1 else { out.append("&"); i += 1; continue }
            if j < text.count && text[j] == ";" { j += 1 }
            let name = Array(text[(i + 1)..<j])
            let table = EntityTables.shared.html5
            if let value = table[String(String.UnicodeScalarView(name))] {
                out += value
            } else if let x = stride(from: name.count - 1, through: 2, by: -1).first(where: { table[String(String.UnicodeScalarView(name[..<$0]))] != nil }),
                      let value = table[String(String.UnicodeScalarView(name[..<x]))] {
                out += value
                out += name[x...]
            } else {
                out.append("&")
                out += name
            }
            i = j
        }
        return out
    }

    /// `html._replace_charref` for a numeric reference.
    private static func decodeCharref(_ digits: ArraySlice<Unicode.Scalar>, radix: UInt32) -> [Unicode.Scalar] {
        var number: UInt32 = 0
        for d in digits {
            guard let v = digitValue(d, radix: radix) else { break }
            let (product, overflow1) = number.multipliedReportingOverflow(by: radix)
            let (sum, overflow2) = product.addingReportingOverflow(v)
            number = overflow1 || overflow2 ? 0x110000 : min(sum, 0x110000)
        }
        if let remapped = TextTables.invalidCharrefs[number], let s = Unicode.Scalar(remapped) { return [s] }
        if (0xD800...0xDFFF).contains(number) || number > 0x10FFFF { return ["\u{FFFD}"] }
        if TextTables.invalidCodepoints.contains(number) { return [] }
        return Unicode.Scalar(number).map { [$0] } ?? ["\u{FFFD}"]
    }

    private static func digitValue(_ s: Unicode.Scalar, radix: UInt32) -> UInt32? {
        switch s.value {
        case 0x30...0x39: return s.value - 0x30
        case 0x41...0x46 where radix == 16: return s.value - 0x41 + 10
        case 0x61...0x66 where radix == 16: return s.value - 0x61 + 10
        default: return nil
        }
    }

    private static func isASCIIAlphanumeric(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        default: return false
        }
    }

    // MARK: whitespace, case, normalisation

    /// The `regex` module's `\s` (Unicode White_Space).
    @inline(__always) static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s.value == 0x20 || (s.value > 0x7F || s.value < 0x20) && s.properties.isWhitespace
    }

    /// Python's `str.isspace` (used by `strip`): White_Space plus U+001C…U+001F.
    @inline(__always) static func isPythonSpace(_ s: Unicode.Scalar) -> Bool {
        (0x1C...0x1F).contains(s.value) || isWhitespace(s)
    }

    /// `whitespace_clean(text.strip())`: runs of `\s` become one space, ends stripped.
    static func collapseWhitespace(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var start = 0, end = text.count
        while start < end && isPythonSpace(text[start]) { start += 1 }
        while end > start && isPythonSpace(text[end - 1]) { end -= 1 }
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(end - start)
        var pendingSpace = false
        for s in text[start..<end] {
            if isWhitespace(s) { pendingSpace = true; continue }
            if pendingSpace { out.append(" "); pendingSpace = false }
            out.append(s)
        }
        // `strip` after the substitution: only U+001C…U+001F can remain at the ends.
        while let last = out.last, isPythonSpace(last) { out.removeLast() }
        while let first = out.first, isPythonSpace(first) { out.removeFirst() }
        return out
    }

    /// Python's `str.lower`: full lowercase mappings, and Σ as ς in the final-sigma context.
    static func lowercased(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.count)
        for (i, s) in text.enumerated() {
            if s.isASCII {
                out.append((0x41...0x5A).contains(s.value) ? Unicode.Scalar(UInt8(s.value + 0x20)) : s)
            } else if s == "\u{3A3}" {
                out.append(isFinalSigma(text, at: i) ? "\u{3C2}" : "\u{3C3}")
            } else {
                out += s.properties.lowercaseMapping.unicodeScalars
            }
        }
        return out
    }

    private static func isFinalSigma(_ text: [Unicode.Scalar], at i: Int) -> Bool {
        var j = i - 1
        while j >= 0 && text[j].properties.isCaseIgnorable { j -= 1 }
        guard j >= 0 && text[j].properties.isCased else { return false }
        j = i + 1
        while j < text.count && text[j].properties.isCaseIgnorable { j += 1 }
        return j == text.count || !text[j].properties.isCased
    }

    /// NFC through the standard library's own normaliser (`String._nfcCodeUnits`, public but
    /// underscored: Swift 6.3 has no documented normalisation API, and Foundation is not used).
    static func nfc(_ text: [Unicode.Scalar]) -> [Unicode.Scalar] {
        if text.allSatisfy({ $0.value < 0x300 }) { return text }  // nothing below U+0300 composes or reorders
        let string = String(String.UnicodeScalarView(text))
        return Array(String(decoding: string._nfcCodeUnits, as: UTF8.self).unicodeScalars)
    }
}

/// The entity tables, parsed once from `TextTables`.
final class EntityTables: @unchecked Sendable {
    static let shared = EntityTables()
    /// `html.entities.html5` keyed by name (with `;` where it has one).
    let html5: [String: [Unicode.Scalar]]
    /// ftfy's `HTML_ENTITIES` keyed by the name with its `;` (without `&`).
    let ftfy: [String: [Unicode.Scalar]]

    private init() {
        html5 = EntityTables.parse(TextTables.html5)
        var ftfy = html5.filter { $0.key.hasSuffix(";") }
        for (name, value) in EntityTables.parse(TextTables.ftfyUppercaseEntities) { ftfy[name] = value }
        self.ftfy = ftfy
    }

    private static func parse(_ table: String) -> [String: [Unicode.Scalar]] {
        var result: [String: [Unicode.Scalar]] = [:]
        for line in table.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { continue }
            let scalars = parts[1].split(separator: "+").compactMap { UInt32($0, radix: 16).flatMap(Unicode.Scalar.init) }
            result[String(parts[0])] = scalars
        }
        return result
    }
}
