import DalleCore
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
}
