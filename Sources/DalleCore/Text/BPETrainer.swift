/// Learns byte-level BPE merges from a caption corpus, for models with their own small
/// vocabulary. Captions go through the same cleaning and pre-tokenizer as CLIP's tokenizer, and
/// words start from the same 512 byte symbols (`</w>` marking a word's last byte), so the
/// result is a `Tokenizer` of the same kind, stored in bundles the same way.
///
/// Each step merges the most frequent adjacent pair over all words (weighted by how often each
/// word occurs). Ties go to the pair whose first symbol, then second symbol, comes first
/// comparing Unicode scalar values of the symbol strings, so the result depends only on the
/// multiset of captions, never on their order or on hashing.
public struct BPETrainer {
    /// Total ids wanted: 512 byte symbols + merges + 2 special tokens.
    public let vocabularySize: Int
    /// Pairs seen fewer times than this are never merged (training may stop early).
    public let minimumFrequency: Int

    public static let baseVocabularySize = 512 + 2

    public init(vocabularySize: Int, minimumFrequency: Int = 2) throws {
        guard vocabularySize >= BPETrainer.baseVocabularySize else {
            throw DalleError.invalidArgument("vocabulary size must be at least \(BPETrainer.baseVocabularySize) (512 byte symbols + 2 special tokens), got \(vocabularySize)")
        }
        guard vocabularySize <= 1 << 24 else { throw DalleError.invalidArgument("vocabulary size \(vocabularySize) is too large") }
        guard minimumFrequency >= 1 else { throw DalleError.invalidArgument("minimum frequency must be at least 1, got \(minimumFrequency)") }
        self.vocabularySize = vocabularySize
        self.minimumFrequency = minimumFrequency
    }

    /// A tokenizer whose merges are learned from `captions`.
    public func train(_ captions: [String]) throws -> Tokenizer {
        try Tokenizer(merges: learnMerges(captions))
    }

    /// Merges in rank order: at most `vocabularySize - 514`, fewer when no pair is frequent enough.
    public func learnMerges(_ captions: [String]) -> [(String, String)] {
        // Word frequencies over the pre-tokenized corpus.
        var wordCounts: [[UInt8]: Int] = [:]
        for caption in captions {
            let scalars = CaptionCleaner.clean(caption)
            for case .text(let range) in PreTokenizer.split(scalars) {
                var bytes: [UInt8] = []
                for s in scalars[range] { appendUTF8(s, to: &bytes) }
                wordCounts[bytes, default: 0] += 1
            }
        }
        // Symbols: 0..<256 bytes, 256..<512 bytes ending a word, then one per merge.
        let byteChars = Tokenizer.byteToUnicode
        var names: [String] = byteChars.map { String($0) } + byteChars.map { String($0) + "</w>" }
        var nameScalars: [[UInt32]] = names.map { $0.unicodeScalars.map(\.value) }
        // Symbols are strings: two merges that spell the same string make one symbol.
        var symbolOfName: [String: Int32] = [:]
        for (id, name) in names.enumerated() { symbolOfName[name] = Int32(id) }
        var words: [(symbols: [Int32], count: Int)] = wordCounts.map { bytes, count in
            var symbols = bytes.map { Int32($0) }
            symbols[symbols.count - 1] += 256
            return (symbols, count)
        }
        words.sort { $0.symbols.lexicographicallyPrecedes($1.symbols) }

        var pairCounts: [UInt64: Int] = [:]
        var pairWords: [UInt64: Set<Int>] = [:]
        func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }
        func addPairs(of index: Int, sign: Int) {
            let word = words[index]
            for i in 0..<max(0, word.symbols.count - 1) {
                let k = key(word.symbols[i], word.symbols[i + 1])
                let updated = pairCounts[k, default: 0] + sign * word.count
                pairCounts[k] = updated == 0 ? nil : updated
                if sign > 0 { pairWords[k, default: []].insert(index) }
            }
        }
        for index in words.indices { addPairs(of: index, sign: 1) }

        var merges: [(String, String)] = []
        let wanted = vocabularySize - BPETrainer.baseVocabularySize
        while merges.count < wanted {
            var best: (key: UInt64, count: Int)? = nil
            for (k, count) in pairCounts where count >= minimumFrequency {
                guard let current = best else { best = (k, count); continue }
                if count > current.count || count == current.count && precedes(k, current.key, nameScalars) { best = (k, count) }
            }
            guard let chosen = best else { break }
            let a = Int32(truncatingIfNeeded: chosen.key >> 32), b = Int32(truncatingIfNeeded: chosen.key & 0xFFFF_FFFF)
            let mergedName = names[Int(a)] + names[Int(b)]
            merges.append((names[Int(a)], names[Int(b)]))
            let merged: Int32
            if let existing = symbolOfName[mergedName] {
                merged = existing
            } else {
                merged = Int32(names.count)
                symbolOfName[mergedName] = merged
                names.append(mergedName)
                nameScalars.append(nameScalars[Int(a)] + nameScalars[Int(b)])
            }
            for index in (pairWords[chosen.key] ?? []).sorted() {
                let old = words[index].symbols
                var new: [Int32] = []
                new.reserveCapacity(old.count)
                var i = 0
                while i < old.count {
                    if i + 1 < old.count && old[i] == a && old[i + 1] == b {
                        new.append(merged)
                        i += 2
                    } else {
                        new.append(old[i])
                        i += 1
                    }
                }
                guard new.count != old.count else { continue }  // stale entry
                addPairs(of: index, sign: -1)
                words[index].symbols = new
                addPairs(of: index, sign: 1)
            }
            pairWords[chosen.key] = nil
        }
        return merges
    }

    /// Whether pair `x` sorts before pair `y` by their symbols' scalar values.
    private func precedes(_ x: UInt64, _ y: UInt64, _ names: [[UInt32]]) -> Bool {
        let (x0, x1) = (Int(x >> 32), Int(x & 0xFFFF_FFFF))
        let (y0, y1) = (Int(y >> 32), Int(y & 0xFFFF_FFFF))
        if names[x0] != names[y0] { return names[x0].lexicographicallyPrecedes(names[y0]) }
        return names[x1].lexicographicallyPrecedes(names[y1])
    }
}
