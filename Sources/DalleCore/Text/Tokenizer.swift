/// Token ids of one caption at a fixed length, padded with 0.
public struct TokenizedText: Sendable, Equatable {
    /// Exactly the requested length; positions after `count` hold 0.
    public var ids: [Int32]
    /// Tokens before the padding.
    public var count: Int
    /// Whether the caption had more tokens than fit (the extra ones were dropped).
    public var truncated: Bool
}

/// Byte-level BPE, token for token CLIP's `clip.simple_tokenizer.SimpleTokenizer`.
///
/// Text is cleaned by `CaptionCleaner`, split by `PreTokenizer`, each piece's UTF-8 bytes are
/// mapped to printable symbols (`bytes_to_unicode`), the last one marked with `</w>`, and merged
/// by rank. Ids follow CLIP's construction: the 256 byte symbols, the same with `</w>`, one per
/// merge in rank order, then `<|startoftext|>` and `<|endoftext|>`.
///
/// Immutable apart from an internal, locked cache: safe to share between threads.
public final class Tokenizer: @unchecked Sendable {
    /// The bundle's `tokenizer.kind`.
    public static let kind = "clip-bpe"
    /// CLIP's merges count (`bpe_simple_vocab_16e6.txt.gz`, lines 1 ..< 48895).
    public static let clipMergeCount = 49152 - 256 - 2

    /// Merges in rank order, as symbol strings (`bytes_to_unicode` characters, `</w>` suffixes).
    public let merges: [(String, String)]
    /// Total ids: 512 + merges + 2.
    public var vocabularySize: Int { vocabulary.count }
    public var startOfText: Int32 { Int32(vocabulary.count - 2) }
    public var endOfText: Int32 { Int32(vocabulary.count - 1) }

    /// The symbol string of each id.
    let vocabulary: [String]
    /// Id of each byte's symbol, and of the same with `</w>`.
    private let byteSymbol: [Int32]
    private let byteEndSymbol: [Int32]
    /// (left id << 32 | right id) → (rank << 32 | merged id).
    private let mergeTable: [UInt64: UInt64]
    private let cacheLock = Lock()
    private var cache: [[UInt8]: [Int32]] = [:]
    private static let cacheLimit = 1 << 16

    /// Builds the vocabulary from `merges`, ranked in order. Throws when a merge is empty.
    public init(merges: [(String, String)]) throws {
        let byteChars = Tokenizer.byteToUnicode
        let ordered = Tokenizer.byteOrder.map { byteChars[Int($0)] }
        var vocabulary = ordered.map { String($0) }
        vocabulary += ordered.map { String($0) + "</w>" }
        for (index, merge) in merges.enumerated() {
            guard !merge.0.isEmpty, !merge.1.isEmpty else {
                throw DalleError.badFile("tokenizer merge \(index + 1) has an empty side")
            }
            vocabulary.append(merge.0 + merge.1)
        }
        vocabulary += ["<|startoftext|>", "<|endoftext|>"]
        guard vocabulary.count <= Int(Int32.max) else { throw DalleError.badFile("tokenizer vocabulary is too large") }

        // Python's dict(zip(vocab, range)): a repeated string keeps its last id.
        var encoder: [String: Int32] = [:]
        encoder.reserveCapacity(vocabulary.count)
        for (id, symbol) in vocabulary.enumerated() { encoder[symbol] = Int32(id) }
        var table: [UInt64: UInt64] = [:]
        table.reserveCapacity(merges.count)
        for (rank, merge) in merges.enumerated() {
            guard let left = encoder[merge.0], let right = encoder[merge.1],
                  let merged = encoder[merge.0 + merge.1] else { continue }  // can never apply
            let key = UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))
            if table[key] == nil { table[key] = UInt64(rank) << 32 | UInt64(UInt32(merged)) }
        }
        self.merges = merges
        self.vocabulary = vocabulary
        self.mergeTable = table
        self.byteSymbol = byteChars.map { encoder[String($0)] ?? 0 }
        self.byteEndSymbol = byteChars.map { encoder[String($0) + "</w>"] ?? 0 }
    }

    /// Parses merges text: one merge a line, `first second`, no header; a final newline is allowed.
    public convenience init(mergesText: String) throws {
        var merges: [(String, String)] = []
        var lines = mergesText.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        for (index, line) in lines.enumerated() {
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw DalleError.badFile("tokenizer merges line \(index + 1) is not 'first second': \"\(line.prefix(40))\"")
            }
            merges.append((String(parts[0]), String(parts[1])))
        }
        try self.init(merges: merges)
    }

    /// The order of `bytes_to_unicode()`'s entries, which is the order of the first 256 ids:
    /// the printable bytes, then the others.
    static let byteOrder: [UInt8] = {
        let printable = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        return (printable + (0..<256).filter { !printable.contains($0) }).map { UInt8($0) }
    }()

    /// `bytes_to_unicode()`: byte b → the character standing for it in symbol strings (printable
    /// bytes stand for themselves, the others for U+0100 onwards in byte order).
    public static let byteToUnicode: [Character] = {
        var table = [Character](repeating: " ", count: 256)
        for (index, b) in byteOrder.enumerated() {
            let value = index < 188 ? UInt32(b) : UInt32(256 + index - 188)
            table[Int(b)] = Character(Unicode.Scalar(value) ?? " ")
        }
        return table
    }()

    // MARK: encoding

    /// CLIP's `SimpleTokenizer.encode`: ids of the cleaned text, without start/end tokens.
    public func encode(_ text: String) -> [Int32] {
        encode(cleaned: CaptionCleaner.clean(text))
    }

    /// Ids of text already cleaned by `CaptionCleaner.clean`.
    public func encode(cleaned scalars: [Unicode.Scalar]) -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(scalars.count)
        var bytes: [UInt8] = []
        for piece in PreTokenizer.split(scalars) {
            switch piece {
            case .special(let which):
                ids.append(which == 0 ? startOfText : endOfText)
            case .text(let range):
                bytes.removeAll(keepingCapacity: true)
                for s in scalars[range] { appendUTF8(s, to: &bytes) }
                ids += word(bytes)
            }
        }
        return ids
    }

    /// `clip.tokenize(text, context_length, truncate=True)`: start token, ids, end token, zeros;
    /// when too long, the first `contextLength` tokens with the last replaced by the end token.
    public func tokenizeCLIP(_ text: String, contextLength: Int = 77) throws -> TokenizedText {
        guard contextLength >= 1 else { throw DalleError.invalidArgument("context length must be at least 1, got \(contextLength)") }
        var tokens = [startOfText] + encode(text) + [endOfText]
        let truncated = tokens.count > contextLength
        if truncated {
            tokens.removeLast(tokens.count - contextLength)
            tokens[contextLength - 1] = endOfText
        }
        return TokenizedText(ids: tokens + Array(repeating: 0, count: contextLength - tokens.count), count: tokens.count, truncated: truncated)
    }

    /// DALLE-pytorch's `SimpleTokenizer.tokenize(text, context_length, truncate_text=True)`, DALL·E's
    /// text stream: ids without start/end tokens, cut to `textLength`, padded with 0. (The
    /// transformer gives each padded position its own pad embedding.)
    public func tokenizeDALLE(_ text: String, textLength: Int = 256) throws -> TokenizedText {
        guard textLength >= 1 else { throw DalleError.invalidArgument("text length must be at least 1, got \(textLength)") }
        var tokens = encode(text)
        let truncated = tokens.count > textLength
        if truncated { tokens.removeLast(tokens.count - textLength) }
        return TokenizedText(ids: tokens + Array(repeating: 0, count: textLength - tokens.count), count: tokens.count, truncated: truncated)
    }

    /// CLIP's `SimpleTokenizer.decode`: the symbols' bytes as UTF-8 (invalid sequences become
    /// U+FFFD), each `</w>` a space. Throws for an id outside the vocabulary.
    public func decode(_ ids: [Int32]) throws -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard id >= 0 && Int(id) < vocabulary.count else {
                throw DalleError.invalidArgument("token id \(id) is outside the vocabulary (0..<\(vocabulary.count))")
            }
            for s in vocabulary[Int(id)].unicodeScalars {
                guard let b = Tokenizer.unicodeToByte[s.value] else { continue }
                bytes.append(b)
            }
        }
        // "</w>" is ASCII, so replacing it before decoding equals Python's replace after.
        var spaced: [UInt8] = []
        spaced.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x3C, i + 3 < bytes.count, bytes[i + 1] == 0x2F, bytes[i + 2] == 0x77, bytes[i + 3] == 0x3E {
                spaced.append(0x20)
                i += 4
            } else {
                spaced.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: spaced, as: UTF8.self)
    }

    /// The inverse of `byteToUnicode`, keyed by scalar value.
    private static let unicodeToByte: [UInt32: UInt8] = {
        var table: [UInt32: UInt8] = [:]
        for (b, c) in byteToUnicode.enumerated() { for s in c.unicodeScalars { table[s.value] = UInt8(b) } }
        return table
    }()

    /// The BPE ids of one pre-tokenized piece (its UTF-8 bytes), cached.
    private func word(_ bytes: [UInt8]) -> [Int32] {
        if let hit = cacheLock.withLock({ cache[bytes] }) { return hit }
        let ids = mergeWord(bytes)
        cacheLock.withLock {
            if cache.count >= Tokenizer.cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[bytes] = ids
        }
        return ids
    }

    /// `SimpleTokenizer.bpe` with a heap: merges apply lowest rank first and, like the reference's
    /// one pass per rank, every occurrence of a rank (left to right) before any pair that pass
    /// creates, so even merge lists whose ranks are not consistent give the reference's result.
    func mergeWord(_ bytes: [UInt8]) -> [Int32] {
        let n = bytes.count
        guard n > 1 else { return n == 1 ? [byteEndSymbol[Int(bytes[0])]] : [] }
        var symbols = bytes.map { byteSymbol[Int($0)] }
        symbols[n - 1] = byteEndSymbol[Int(bytes[n - 1])]
        var next = Array(1...n)            // n = none
        var prev = Array(-1..<(n - 1))     // -1 = none
        var alive = [Bool](repeating: true, count: n)

        func rank(at left: Int) -> UInt64? {
            let right = next[left]
            guard right < n else { return nil }
            return mergeTable[UInt64(UInt32(symbols[left])) << 32 | UInt64(UInt32(symbols[right]))]
        }
        var heap = MinHeap()
        for i in 0..<(n - 1) {
            if let entry = rank(at: i) { heap.push((entry & 0xFFFF_FFFF_0000_0000) | UInt64(i)) }
        }
        var created: [UInt64] = []
        while let top = heap.peek() {
            let passRank = top >> 32
            while let entry = heap.peek(), entry >> 32 == passRank {
                heap.pop()
                let left = Int(entry & 0xFFFF_FFFF)
                guard alive[left], let current = rank(at: left), current >> 32 == passRank else { continue }
                let right = next[left]
                symbols[left] = Int32(truncatingIfNeeded: current & 0xFFFF_FFFF)
                alive[right] = false
                next[left] = next[right]
                if next[right] < n { prev[next[right]] = left }
                if prev[left] >= 0, let r = rank(at: prev[left]) { created.append((r & 0xFFFF_FFFF_0000_0000) | UInt64(prev[left])) }
                if let r = rank(at: left) { created.append((r & 0xFFFF_FFFF_0000_0000) | UInt64(left)) }
            }
            for entry in created { heap.push(entry) }
            created.removeAll(keepingCapacity: true)
        }
        var ids: [Int32] = []
        var i = 0
        while i < n { ids.append(symbols[i]); i = next[i] }
        return ids
    }

    // MARK: bundle

    /// The bundle's `tokenizer.*` metadata.
    public var bundleMetadata: [String: String] {
        ["tokenizer.kind": Tokenizer.kind, "tokenizer.vocab_size": String(vocabularySize)]
    }

    /// The `tokenizer.merges` tensor's bytes: UTF-8 text, one `first second` line per merge.
    public var mergesBytes: [UInt8] {
        Array(merges.map { "\($0.0) \($0.1)\n" }.joined().utf8)
    }

    /// Adds the tokenizer's metadata and tensor to a bundle being written.
    public func write(to writer: inout SafetensorsWriter) throws {
        for (key, value) in bundleMetadata { writer.metadata[key] = value }
        let bytes = mergesBytes
        try writer.add("tokenizer.merges", bytes: bytes, dtype: .u8, shape: [bytes.count])
    }

    /// Loads the tokenizer a bundle holds (`tokenizer.kind`, `tokenizer.vocab_size`, `tokenizer.merges`).
    public convenience init(metadata: [String: String], weights: SafetensorsFile) throws {
        guard let kind = metadata["tokenizer.kind"] else { throw DalleError.badFile("tokenizer: the model has no \"tokenizer.kind\" metadata") }
        guard kind == Tokenizer.kind else {
            throw DalleError.unsupported("tokenizer kind \"\(kind)\" is not supported (this library reads \"\(Tokenizer.kind)\")")
        }
        guard let info = weights.info("tokenizer.merges") else { throw DalleError.badFile("tokenizer: missing tensor 'tokenizer.merges'") }
        guard info.dtype == .u8, info.shape.count == 1 else {
            throw DalleError.badFile("tokenizer.merges must be a 1-D U8 tensor, found \(info.dtype.rawValue) \(info.shape)")
        }
        // The bytes, the text, its lines, the merge pairs and the tables: a few dozen bytes per byte.
        try WorkingMemory.require(WorkingMemory.product(64, info.shape[0]), for: "reading the tokenizer's merges")
        let bytes = try weights.bytes("tokenizer.merges")
        guard let text = String(validating: bytes, as: UTF8.self) else { throw DalleError.badFile("tokenizer.merges is not valid UTF-8") }
        try self.init(mergesText: text)
        guard let sizeText = metadata["tokenizer.vocab_size"], let size = Int(sizeText) else {
            throw DalleError.badFile("tokenizer: missing or non-numeric \"tokenizer.vocab_size\"")
        }
        guard size == vocabularySize else {
            throw DalleError.badFile("tokenizer.vocab_size is \(size) but its \(merges.count) merges give \(vocabularySize) ids (512 + merges + 2)")
        }
    }
}

/// Appends the UTF-8 encoding of `s`.
@inline(__always) func appendUTF8(_ s: Unicode.Scalar, to bytes: inout [UInt8]) {
    let v = s.value
    switch v {
    case 0..<0x80:
        bytes.append(UInt8(v))
    case 0x80..<0x800:
        bytes.append(UInt8(0xC0 | v >> 6)); bytes.append(UInt8(0x80 | v & 0x3F))
    case 0x800..<0x10000:
        bytes.append(UInt8(0xE0 | v >> 12)); bytes.append(UInt8(0x80 | v >> 6 & 0x3F)); bytes.append(UInt8(0x80 | v & 0x3F))
    default:
        bytes.append(UInt8(0xF0 | v >> 18)); bytes.append(UInt8(0x80 | v >> 12 & 0x3F))
        bytes.append(UInt8(0x80 | v >> 6 & 0x3F)); bytes.append(UInt8(0x80 | v & 0x3F))
    }
}

/// A binary min-heap of UInt64 keys.
struct MinHeap {
    private var items: [UInt64] = []

    func peek() -> UInt64? { items.first }

    mutating func push(_ value: UInt64) {
        items.append(value)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i] < items[parent] else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    @discardableResult
    mutating func pop() -> UInt64? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var smallest = i
                if l < items.count && items[l] < items[smallest] { smallest = l }
                if r < items.count && items[r] < items[smallest] { smallest = r }
                if smallest == i { break }
                items.swapAt(i, smallest)
                i = smallest
            }
        }
        return first
    }
}

extension ComponentKind {
    /// The text tokenizer (CLIP's byte-level BPE), whose merges the file holds as bytes.
    public static let tokenizer = ComponentKind(name: "tokenizer", component: .tokenizer, capabilities: [.tokenize, .train]) {
        metadata, weights, _ in
        guard let file = weights as? SafetensorsFile else { throw DalleError.badFile("a tokenizer loads only from a model file") }
        return LoadedComponent.Parts(model: try Tokenizer(metadata: metadata, weights: file),
                               variant: Tokenizer.kind, parameterCount: 0)
    }
}
