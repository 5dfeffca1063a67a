import CDalle
@testable import DalleCAPI
import DalleCore
import XCTest

/// dalle_tokenize called as a C program calls it: every mode against the golden ids, the
/// size-first buffer convention, and every bad input as a status plus a message.
final class TokenizeAPITests: XCTestCase {
    static let tokenizerPath = CAPITests.repoRoot + "/Tests/DalleCoreTests/Golden/tokenizer/clip_bpe.safetensors"

    override class func setUp() {
        DalleCAPI.dalle_log_set_level(dalle_log_level(DALLE_LOG_NONE))
    }

    func lastError() -> String { String(cString: dalle_last_error()) }

    func context(path: String) throws -> (OpaquePointer, OpaquePointer) {
        var model: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file(path, nil, &model), dalle_status(DALLE_OK), lastError())
        let m = try XCTUnwrap(model)
        var ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(m, nil, &ctx), dalle_status(DALLE_OK), lastError())
        return (m, try XCTUnwrap(ctx))
    }

    /// A tokenizer-only bundle in memory, with a transformer text length in its metadata.
    func contextWithTextLength(_ length: Int) throws -> (OpaquePointer, OpaquePointer) {
        let tokenizer = try XCTUnwrap(TokenizerTests.clip)
        var writer = SafetensorsWriter()
        writer.metadata = ["format": "libdalle", "format_version": "1", "components": "tokenizer",
                           "transformer.text_seq_len": String(length)]
        try tokenizer.write(to: &writer)
        let bytes = writer.serialized()
        var model: OpaquePointer? = nil
        let status = bytes.withUnsafeBytes { dalle_model_load_buffer($0.baseAddress, $0.count, nil, &model) }
        XCTAssertEqual(status, dalle_status(DALLE_OK), lastError())
        var ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_context_create(model, nil, &ctx), dalle_status(DALLE_OK), lastError())
        return (try XCTUnwrap(model), try XCTUnwrap(ctx))
    }

    func tokenize(_ ctx: OpaquePointer, _ text: String, _ mode: Int32) -> (dalle_status, [Int32], Bool) {
        var count = 0
        var truncated = false
        let query = dalle_tokenize(ctx, text, mode, nil, 0, &count, &truncated)
        guard query == dalle_status(DALLE_OK) else { return (query, [], false) }
        var ids = [Int32](repeating: -1, count: count)
        var again = 0
        let status = dalle_tokenize(ctx, text, mode, &ids, ids.count, &again, &truncated)
        XCTAssertEqual(again, count)
        return (status, ids, truncated)
    }

    func testModesMatchGolden() throws {
        let (model, ctx) = try context(path: Self.tokenizerPath)
        defer { dalle_context_free(ctx); dalle_model_free(model) }
        var info = dalle_model_info()
        info.struct_size = UInt32(MemoryLayout<dalle_model_info>.size)
        XCTAssertEqual(dalle_model_get_info(model, &info), dalle_status(DALLE_OK))
        XCTAssertEqual(info.components, UInt32(DALLE_COMPONENT_TOKENIZER))

        let golden = try TokenizerTests.golden()
        for i in stride(from: 0, to: golden.strings.count, by: 7) {
            let text = golden.strings[i]
            guard !text.unicodeScalars.contains("\0") else { continue }  // a C string ends at NUL
            let clip = tokenize(ctx, text, Int32(DALLE_TOKENIZE_CLIP))
            XCTAssertEqual(clip.0, dalle_status(DALLE_OK), lastError())
            XCTAssertEqual(clip.1, golden.clip[i] + Array(repeating: 0, count: 77 - golden.clip[i].count))
            XCTAssertEqual(clip.2, golden.clipTruncated[i])
            XCTAssertEqual(tokenize(ctx, text, Int32(DALLE_TOKENIZE_MODEL)).1, clip.1, "no transformer: CLIP's convention")
            let dalle = tokenize(ctx, text, Int32(DALLE_TOKENIZE_DALLE))
            XCTAssertEqual(dalle.1, golden.dalle[i] + Array(repeating: 0, count: 256 - golden.dalle[i].count))
            XCTAssertEqual(dalle.2, golden.dalleTruncated[i])
            let raw = tokenize(ctx, text, Int32(DALLE_TOKENIZE_RAW))
            XCTAssertEqual(Array(raw.1.prefix(golden.dalle[i].count)), golden.dalle[i])
            XCTAssertFalse(raw.2)
        }
    }

    func testModelModeUsesTransformerTextLength() throws {
        let (model, ctx) = try contextWithTextLength(6)
        defer { dalle_context_free(ctx); dalle_model_free(model) }
        XCTAssertEqual(tokenize(ctx, "a red circle", Int32(DALLE_TOKENIZE_MODEL)).1, [320, 736, 7117, 0, 0, 0])
        let long = tokenize(ctx, "a b c d e f g h", Int32(DALLE_TOKENIZE_MODEL))
        XCTAssertEqual(long.1.count, 6)
        XCTAssertTrue(long.2)
        XCTAssertEqual(tokenize(ctx, "", Int32(DALLE_TOKENIZE_DALLE)).1, [0, 0, 0, 0, 0, 0])
        XCTAssertEqual(tokenize(ctx, "", Int32(DALLE_TOKENIZE_RAW)).1, [])
    }

    func testBadInputs() throws {
        let (model, ctx) = try context(path: Self.tokenizerPath)
        defer { dalle_context_free(ctx); dalle_model_free(model) }
        var count = 99
        var truncated = true
        var ids = [Int32](repeating: -1, count: 4)
        let invalid = dalle_status(DALLE_INVALID_ARGUMENT)

        // Buffer too small: nothing written, the size reported.
        XCTAssertEqual(dalle_tokenize(ctx, "a red circle", Int32(DALLE_TOKENIZE_CLIP), &ids, 4, &count, &truncated), invalid)
        XCTAssertEqual(count, 77)
        XCTAssertEqual(ids, [-1, -1, -1, -1])
        XCTAssertTrue(String(cString: dalle_context_last_error(ctx)).contains("room for 4"))
        XCTAssertEqual(dalle_tokenize(ctx, "a", Int32(DALLE_TOKENIZE_RAW), &ids, 4, &count, nil), dalle_status(DALLE_OK))
        XCTAssertEqual(count, 1)
        XCTAssertEqual(ids[0], 320)

        XCTAssertEqual(dalle_tokenize(ctx, nil, 0, &ids, 4, &count, &truncated), invalid)
        XCTAssertTrue(lastError().contains("utf8_text is NULL"), lastError())
        XCTAssertEqual(dalle_tokenize(ctx, "a", 0, &ids, 4, nil, &truncated), invalid)
        XCTAssertEqual(dalle_tokenize(ctx, "a", 0, nil, 4, &count, &truncated), invalid)
        XCTAssertEqual(dalle_tokenize(ctx, "a", 7, &ids, 4, &count, &truncated), invalid)
        XCTAssertTrue(lastError().contains("mode"), lastError())
        XCTAssertEqual(dalle_tokenize(nil, "a", 0, &ids, 4, &count, &truncated), invalid)

        for bad: [UInt8] in [[0x61, 0xFF, 0], [0xC3, 0], [0xED, 0xA0, 0x80, 0], [0xC0, 0x80, 0]] {
            let status = bad.withUnsafeBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) {
                    dalle_tokenize(ctx, $0, 0, &ids, 4, &count, &truncated)
                }
            }
            XCTAssertEqual(status, invalid)
            XCTAssertTrue(lastError().contains("UTF-8"), lastError())
        }

        // A model without a tokenizer.
        let (dvae, dvaeContext) = try context(path: CAPITests.modelPath)
        defer { dalle_context_free(dvaeContext); dalle_model_free(dvae) }
        XCTAssertEqual(dalle_tokenize(dvaeContext, "a", 0, &ids, 4, &count, &truncated), dalle_status(DALLE_UNSUPPORTED))
        XCTAssertTrue(lastError().contains("no tokenizer"), lastError())
    }
}
