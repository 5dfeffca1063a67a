import Dispatch
@testable import DalleCore
import XCTest

/// The BPE tokenizer against CLIP's and DALLE-pytorch's tokenizers (golden ids from
/// tools/make_golden_tokenizer.py), the bundle format, the trainer, and bad input.
final class TokenizerTests: XCTestCase {
    static let goldenDirectory: String = {
        let file = "\(#filePath)"
        return file[..<(file.lastIndex(of: "/") ?? file.startIndex)] + "/Golden/tokenizer"
    }()

    static func readFile(_ path: String) throws -> [UInt8] {
        guard let file = fopen(path, "rb") else { throw DalleError.io("cannot open \(path)") }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n == 0 { break }
            bytes += buffer[0..<n]
        }
        return bytes
    }

    /// CLIP's BPE, loaded once from the golden bundle.
    static let clip: Tokenizer? = {
        guard let file = try? SafetensorsFile(path: goldenDirectory + "/clip_bpe.safetensors") else { return nil }
        return try? Tokenizer(metadata: file.metadata, weights: file)
    }()

    struct Golden {
        var strings: [String]
        var clip: [[Int32]], clipTruncated: [Bool]
        var dalle: [[Int32]], dalleTruncated: [Bool]
        var clipContextLength: Int, dalleTextLength: Int
    }

    static func golden() throws -> Golden {
        let json = try JSONValue.parse(readFile(goldenDirectory + "/golden.json"))
        func ids(_ key: String) throws -> [[Int32]] {
            guard let rows = json[key]?.arrayValue else { throw DalleError.badFile("golden.json: no \(key)") }
            return rows.map { ($0.arrayValue ?? []).map { Int32($0.exactInteger ?? -1) } }
        }
        func flags(_ key: String) throws -> [Bool] {
            guard let rows = json[key]?.arrayValue else { throw DalleError.badFile("golden.json: no \(key)") }
            return rows.map { $0 == .bool(true) }
        }
        guard let strings = json["strings"]?.arrayValue?.compactMap(\.stringValue),
              let clipLength = json["clip_context_length"]?.exactInteger,
              let dalleLength = json["dalle_text_length"]?.exactInteger else { throw DalleError.badFile("golden.json: bad header") }
        return Golden(strings: strings, clip: try ids("clip"), clipTruncated: try flags("clip_truncated"),
                      dalle: try ids("dalle"), dalleTruncated: try flags("dalle_truncated"),
                      clipContextLength: clipLength, dalleTextLength: dalleLength)
    }

    func testClipBundleLoads() throws {
        let tokenizer = try XCTUnwrap(Self.clip)
        XCTAssertEqual(tokenizer.vocabularySize, 49408)
        XCTAssertEqual(tokenizer.merges.count, Tokenizer.clipMergeCount)
        XCTAssertEqual(tokenizer.startOfText, 49406)
        XCTAssertEqual(tokenizer.endOfText, 49407)
    }

    func testGoldenIdsMatchCLIPAndDALLEPytorch() throws {
        let tokenizer = try XCTUnwrap(Self.clip)
        let golden = try Self.golden()
        XCTAssertGreaterThanOrEqual(golden.strings.count, 1000)
        XCTAssertEqual(golden.clip.count, golden.strings.count)
        var clipMismatches: [Int] = [], dalleMismatches: [Int] = []
        for (i, text) in golden.strings.enumerated() {
            let clip = try tokenizer.tokenizeCLIP(text, contextLength: golden.clipContextLength)
            let expectedCLIP = golden.clip[i] + Array(repeating: 0, count: golden.clipContextLength - golden.clip[i].count)
            if clip.ids != expectedCLIP || clip.truncated != golden.clipTruncated[i] || clip.count != golden.clip[i].count {
                clipMismatches.append(i)
            }
            let dalle = try tokenizer.tokenizeDALLE(text, textLength: golden.dalleTextLength)
            let expectedDALLE = golden.dalle[i] + Array(repeating: 0, count: golden.dalleTextLength - golden.dalle[i].count)
            if dalle.ids != expectedDALLE || dalle.truncated != golden.dalleTruncated[i] { dalleMismatches.append(i) }
        }
        for i in (clipMismatches + dalleMismatches).prefix(10) {
            let scalars = golden.strings[i].unicodeScalars.map { String($0.value, radix: 16) }.joined(separator: " ")
            let got = tokenizer.encode(golden.strings[i])
            print("mismatch \(i): \(scalars)\n  expected clip \(golden.clip[i])\n  got      \(got)")
        }
        XCTAssertEqual(clipMismatches, [], "CLIP ids differ")
        XCTAssertEqual(dalleMismatches, [], "DALLE-pytorch ids differ")
        XCTAssertTrue(golden.clipTruncated.contains(true) && golden.dalleTruncated.contains(true))
    }

    /// SimpleTokenizer.bpe as written in Python (one pass per rank over the whole word), to check
    /// the heap version on words the golden strings do not reach.
    static func ranks(_ tokenizer: Tokenizer) -> [String: Int] {
        var ranks: [String: Int] = [:]
        for (rank, merge) in tokenizer.merges.enumerated() where ranks[merge.0 + " " + merge.1] == nil {
            ranks[merge.0 + " " + merge.1] = rank
        }
        return ranks
    }

    func referenceBPE(_ ranks: [String: Int], _ word: String) -> [String] {
        var symbols = Array(word.utf8).map { String(Tokenizer.byteToUnicode[Int($0)]) }
        symbols[symbols.count - 1] += "</w>"
        while symbols.count > 1 {
            let pairs = zip(symbols, symbols.dropFirst()).map { $0 + " " + $1 }
            let ranked = pairs.compactMap { pair in ranks[pair].map { (rank: $0, pair: pair) } }
            guard let best = ranked.min(by: { $0.rank < $1.rank }) else { break }
            let parts = best.pair.split(separator: " ").map(String.init)
            var merged: [String] = []
            var i = 0
            while i < symbols.count {
                if i + 1 < symbols.count && symbols[i] == parts[0] && symbols[i + 1] == parts[1] {
                    merged.append(parts[0] + parts[1]); i += 2
                } else {
                    merged.append(symbols[i]); i += 1
                }
            }
            symbols = merged
        }
        return symbols
    }

    /// The one known difference: ftfy repairs mojibake ("cafÃ©" → "café"), libdalle tokenizes
    /// the text as written, exactly as CLIP does with ftfy's fix_encoding turned off.
    func testMojibakeIsTokenizedAsWritten() throws {
        let tokenizer = try XCTUnwrap(Self.clip)
        let json = try JSONValue.parse(Self.readFile(Self.goldenDirectory + "/golden.json"))
        let section = try XCTUnwrap(json["mojibake"])
        let strings = try XCTUnwrap(section["strings"]?.arrayValue?.compactMap(\.stringValue))
        func rows(_ key: String) throws -> [[Int32]] {
            try XCTUnwrap(section[key]?.arrayValue).map { ($0.arrayValue ?? []).map { Int32($0.exactInteger ?? -1) } }
        }
        let (repaired, asWritten) = (try rows("clip"), try rows("clip_as_written"))
        XCTAssertEqual(strings.count, 10)
        for (i, text) in strings.enumerated() {
            let ids = try tokenizer.tokenizeCLIP(text)
            XCTAssertEqual(Array(ids.ids.prefix(ids.count)), asWritten[i], text)
            XCTAssertNotEqual(Array(ids.ids.prefix(ids.count)), repaired[i], text)
        }
    }

    func testHeapMergingMatchesReferenceLoop() throws {
        let tokenizer = try XCTUnwrap(Self.clip)
        var rng = SplitMix64(seed: 7)
        let alphabet = Array("abcdeilmnorstuy'éß日本😀-.")
        let ranks = Self.ranks(tokenizer)
        for _ in 0..<500 {
            let word = String((0..<Int(rng.next() % 24 + 1)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
            let ids = tokenizer.encode(cleaned: Array(word.unicodeScalars))
            let pieces = PreTokenizerProbe.pieces(word)
            let expected = pieces.flatMap { referenceBPE(ranks, $0) }
            XCTAssertEqual(try tokenizer.decodeSymbols(ids), expected, word)
        }
        // Ranks that are not consistent (a merge needing a symbol made later) follow the reference.
        // ("ab", "a") outranks ("a", "b"): in "ababx" the reference merges both "a b" first.
        let odd = try Tokenizer(merges: [("ab", "a"), ("a", "b")])
        XCTAssertEqual(try odd.decodeSymbols(odd.encode(cleaned: Array("ababx".unicodeScalars))), ["ab", "ab", "x</w>"])
        for word in ["aba", "abab", "ababa", "bababa", "abababx"] {
            XCTAssertEqual(try odd.decodeSymbols(odd.encode(cleaned: Array(word.unicodeScalars))), referenceBPE(Self.ranks(odd), word), word)
        }
    }

    func testRoundTripAndSpecialTokens() throws {
        let tokenizer = try XCTUnwrap(Self.clip)
        let golden = try Self.golden()
        for text in golden.strings where !text.contains("<|") {
            let cleaned = CaptionCleaner.clean(text)
            let pieces = PreTokenizerProbe.pieces(String(String.UnicodeScalarView(cleaned)))
            let expected = pieces.map { $0 + " " }.joined()
            XCTAssertEqual(try tokenizer.decode(tokenizer.encode(text)), expected)
        }
        XCTAssertEqual(tokenizer.encode("<|startoftext|>a<|endoftext|>"), [49406, 320, 49407])
        XCTAssertEqual(try tokenizer.tokenizeCLIP("").ids.prefix(3), [49406, 49407, 0])
        XCTAssertEqual(try tokenizer.tokenizeDALLE("", textLength: 4), TokenizedText(ids: [0, 0, 0, 0], count: 0, truncated: false))
        let long = try tokenizer.tokenizeCLIP(String(repeating: "a ", count: 100), contextLength: 5)
        XCTAssertEqual(long, TokenizedText(ids: [49406, 320, 320, 320, 49407], count: 5, truncated: true))
        XCTAssertEqual(try tokenizer.tokenizeCLIP("a", contextLength: 1).ids, [49407])
        XCTAssertEqual(try tokenizer.tokenizeDALLE("a a a", textLength: 2), TokenizedText(ids: [320, 320], count: 2, truncated: true))
    }

    func testBadInputs() throws {
        let tokenizer = try XCTUnwrap(Self.clip)
        XCTAssertThrowsError(try tokenizer.tokenizeCLIP("a", contextLength: 0))
        XCTAssertThrowsError(try tokenizer.tokenizeDALLE("a", textLength: -1))
        XCTAssertThrowsError(try tokenizer.decode([49408]))
        XCTAssertThrowsError(try tokenizer.decode([-1]))
        XCTAssertThrowsError(try Tokenizer(mergesText: "a b\nabc\n"))
        XCTAssertThrowsError(try Tokenizer(mergesText: "a  b"))
        XCTAssertThrowsError(try Tokenizer(merges: [("", "b")]))
        XCTAssertThrowsError(try BPETrainer(vocabularySize: 513))
        XCTAssertThrowsError(try BPETrainer(vocabularySize: 600, minimumFrequency: 0))

        func bundle(_ metadata: [String: String], _ bytes: [UInt8], dtype: DType = .u8) throws -> Tokenizer {
            var writer = SafetensorsWriter()
            writer.metadata = metadata
            try writer.add("tokenizer.merges", bytes: bytes, dtype: dtype, shape: dtype == .u8 ? [bytes.count] : [bytes.count / 2])
            let data = writer.serialized()
            return try data.withUnsafeBytes { raw in
                let file = try SafetensorsFile(bytes: raw)
                return try Tokenizer(metadata: file.metadata, weights: file)
            }
        }
        let good = ["tokenizer.kind": "clip-bpe", "tokenizer.vocab_size": "515"]
        XCTAssertEqual(try bundle(good, Array("a b\n".utf8)).vocabularySize, 515)
        XCTAssertThrowsError(try bundle(good.merging(["tokenizer.vocab_size": "516"]) { $1 }, Array("a b\n".utf8)))
        XCTAssertThrowsError(try bundle(good.merging(["tokenizer.kind": "sentencepiece"]) { $1 }, Array("a b\n".utf8)))
        XCTAssertThrowsError(try bundle(["tokenizer.kind": "clip-bpe"], Array("a b\n".utf8)))
        XCTAssertThrowsError(try bundle(good, [0x61, 0x20, 0xFF, 0x0A]))  // not UTF-8
        XCTAssertThrowsError(try bundle(good, Array("a b\n".utf8), dtype: .u16))
    }

    func testBundleRoundTrip() throws {
        let tokenizer = try XCTUnwrap(Self.clip)
        var writer = SafetensorsWriter()
        try tokenizer.write(to: &writer)
        let data = writer.serialized()
        let again = try data.withUnsafeBytes { raw in
            let file = try SafetensorsFile(bytes: raw)
            return try Tokenizer(metadata: file.metadata, weights: file)
        }
        XCTAssertEqual(again.vocabularySize, tokenizer.vocabularySize)
        XCTAssertEqual(again.mergesBytes, tokenizer.mergesBytes)
        let original = try Self.readFile(Self.goldenDirectory + "/clip_bpe.safetensors")
        let file = try original.withUnsafeBytes { try SafetensorsFile(bytes: $0) }
        XCTAssertEqual(try file.bytes("tokenizer.merges"), tokenizer.mergesBytes)
    }

    static let shapesCorpus: [String] = {
        var rng = SplitMix64(seed: 1)
        let colors = ["red", "green", "blue", "yellow"], shapes = ["circle", "square", "triangle"]
        let sizes = ["small", "large"], relations = ["to the left of", "above", "below", "to the right of"]
        func pick(_ a: [String]) -> String { a[Int(rng.next() % UInt64(a.count))] }
        return (0..<400).map { _ in
            "a \(pick(sizes)) \(pick(colors)) \(pick(shapes)) \(pick(relations)) a \(pick(sizes)) \(pick(colors)) \(pick(shapes))"
        }
    }()

    func testTrainerIsDeterministicAndRoundTrips() throws {
        let trainer = try BPETrainer(vocabularySize: 600)
        let first = try trainer.train(Self.shapesCorpus)
        let second = try trainer.train(Self.shapesCorpus.reversed())
        XCTAssertEqual(first.mergesBytes, second.mergesBytes, "order of the corpus must not matter")
        XCTAssertLessThanOrEqual(first.vocabularySize, 600)
        XCTAssertGreaterThan(first.merges.count, 20)
        // Every corpus word becomes a single token once training has seen it often enough.
        let ids = first.encode("a small red circle to the left of a large blue square")
        XCTAssertEqual(ids.count, 12)
        XCTAssertEqual(try first.decode(ids), "a small red circle to the left of a large blue square ")
        for text in ["unseen words: zebra 42!", "日本 😀", ""] {
            let pieces = PreTokenizerProbe.pieces(String(String.UnicodeScalarView(CaptionCleaner.clean(text))))
            XCTAssertEqual(try first.decode(first.encode(text)), pieces.map { $0 + " " }.joined())
        }
        // The first merge is the most frequent pair, ties to the smaller strings.
        var counts: [[String]: Int] = [:]
        for caption in Self.shapesCorpus {
            for piece in PreTokenizerProbe.pieces(caption) {
                var symbols = piece.map { String($0) }
                symbols[symbols.count - 1] += "</w>"
                for (x, y) in zip(symbols, symbols.dropFirst()) { counts[[x, y], default: 0] += 1 }
            }
        }
        let top = counts.values.max() ?? 0
        let expected = counts.filter { $0.value == top }.keys.min { a, b in
            a[0] != b[0] ? a[0].unicodeScalars.lexicographicallyPrecedes(b[0].unicodeScalars, by: { $0.value < $1.value })
                : a[1].unicodeScalars.lexicographicallyPrecedes(b[1].unicodeScalars, by: { $0.value < $1.value })
        }
        XCTAssertEqual([first.merges[0].0, first.merges[0].1], expected)
        // A trained vocabulary stops early when nothing repeats.
        let tiny = try BPETrainer(vocabularySize: 10_000).learnMerges(["abc"])
        XCTAssertEqual(tiny.count, 0)
        XCTAssertEqual(try BPETrainer(vocabularySize: 10_000, minimumFrequency: 1).learnMerges(["abc"]).count, 2)
    }

    func testConcurrentEncodingSharesTheCache() throws {
        let tokenizer = try Tokenizer(merges: try XCTUnwrap(Self.clip).merges)
        let golden = try Self.golden()
        let strings = Array(golden.strings.prefix(400))
        let reference = try Tokenizer(merges: tokenizer.merges)  // its own cache
        let expected = strings.map { reference.encode($0) }
        var results = [[[Int32]]](repeating: [], count: 4)
        results.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: 4) { worker in
                // Each worker starts at a different string, so they race on the cache.
                var ids = [[Int32]](repeating: [], count: strings.count)
                for k in 0..<strings.count {
                    let i = (k + worker * 97) % strings.count
                    ids[i] = tokenizer.encode(strings[i])
                }
                base[worker] = ids
            }
        }
        for r in results { XCTAssertEqual(r, expected) }
    }

    func testSpeed() throws {
        let tokenizer = try XCTUnwrap(Self.clip)
        let golden = try Self.golden()
        let fresh = try Tokenizer(merges: tokenizer.merges)
        var tokens = 0
        let start = DispatchTime.now().uptimeNanoseconds
        for text in golden.strings { tokens += fresh.encode(text).count }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        print(String(format: "tokenizer speed: %d tokens in %.4f s = %.0f tokens/s (cold cache, %d strings)",
                     tokens, seconds, Double(tokens) / seconds, golden.strings.count))
        let warmStart = DispatchTime.now().uptimeNanoseconds
        for text in golden.strings { _ = fresh.encode(text) }
        let warm = Double(DispatchTime.now().uptimeNanoseconds - warmStart) / 1e9
        print(String(format: "tokenizer speed: %.0f tokens/s (warm cache)", Double(tokens) / warm))
        let trainStart = DispatchTime.now().uptimeNanoseconds
        let trained = try BPETrainer(vocabularySize: 2000).train(golden.strings)
        let trainSeconds = Double(DispatchTime.now().uptimeNanoseconds - trainStart) / 1e9
        print(String(format: "BPETrainer: %d merges from %d strings in %.3f s", trained.merges.count, golden.strings.count, trainSeconds))
    }
}

/// The pre-tokenizer's pieces of already-cleaned text, as strings.
enum PreTokenizerProbe {
    static func pieces(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        return PreTokenizer.split(scalars).map { piece in
            switch piece {
            case .text(let range): return String(String.UnicodeScalarView(scalars[range]))
            case .special(let which): return which == 0 ? "<|startoftext|>" : "<|endoftext|>"
            }
        }
    }
}

extension Tokenizer {
    /// Symbol strings of `ids` (test helper).
    func decodeSymbols(_ ids: [Int32]) throws -> [String] {
        try ids.map { id in
            guard id >= 0 && Int(id) < vocabularySize else { throw DalleError.invalidArgument("bad id") }
            return vocabulary[Int(id)]
        }
    }
}
