import CDalle
@testable import DalleCAPI
import DalleCore
import XCTest

/// The CLIP section of the C API: results, and errors (never traps) for bad input.
final class CLIPCAPITests: XCTestCase {
    static let modelPath = CLIPTests.golden + "/clip_tiny.safetensors"

    func withContext(_ body: (OpaquePointer?, OpaquePointer?) throws -> Void) throws {
        var model: OpaquePointer? = nil, ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file(Self.modelPath, nil, &model), dalle_status(DALLE_OK))
        XCTAssertEqual(dalle_context_create(model, nil, &ctx), dalle_status(DALLE_OK))
        defer { dalle_context_free(ctx); dalle_model_free(model) }
        try body(model, ctx)
    }

    func lastError(_ ctx: OpaquePointer?) -> String { String(cString: dalle_context_last_error(ctx)) }

    func testRerankAndEmbeddings() throws {
        try withContext { model, ctx in
            var size: UInt32 = 0
            XCTAssertEqual(dalle_clip_embedding_size(model, &size), dalle_status(DALLE_OK))
            XCTAssertEqual(size, 32)
            // Two images of different sizes and channel counts.
            var a = [UInt8](repeating: 0, count: 40 * 30 * 3), b = [UInt8](repeating: 0, count: 20 * 50 * 4)
            for i in a.indices { a[i] = UInt8(i % 251) }
            for i in b.indices { b[i] = UInt8((i * 7) % 253) }
            try a.withUnsafeMutableBufferPointer { pa in
                try b.withUnsafeMutableBufferPointer { pb in
                    let images = [dalle_image(width: 40, height: 30, channels: 3, data: pa.baseAddress),
                                  dalle_image(width: 20, height: 50, channels: 4, data: pb.baseAddress)]
                    var scores = [Float](repeating: .nan, count: 2), order = [UInt32](repeating: 9, count: 2)
                    XCTAssertEqual(dalle_rerank(ctx, "a photo of a cat", images, 2, &scores, &order), dalle_status(DALLE_OK))
                    XCTAssertEqual(order, scores[0] >= scores[1] ? [0, 1] : [1, 0])

                    var text = [Float](repeating: 0, count: 32), emb = [Float](repeating: 0, count: 64)
                    XCTAssertEqual(dalle_clip_encode_text(ctx, "a photo of a cat", &text, 32), dalle_status(DALLE_OK))
                    XCTAssertEqual(dalle_clip_encode_images(ctx, images, 2, &emb, 32), dalle_status(DALLE_OK))
                    let expected = try CLIP.normalized(Tensor(shape: [2, 32], scalars: emb)).scalars
                    let t = try CLIP.normalized(Tensor(shape: [1, 32], scalars: text)).scalars
                    let cos = (0..<2).map { i in (0..<32).reduce(Float(0)) { $0 + expected[i * 32 + $1] * t[$1] } }
                    XCTAssertEqual(cos[0] / cos[1], scores[0] / scores[1], accuracy: 1e-4)

                    // Errors: each returns a status and a message.
                    func expectInvalid(_ status: dalle_status, _ fragment: String, line: UInt = #line) {
                        XCTAssertEqual(status, dalle_status(DALLE_INVALID_ARGUMENT), line: line)
                        XCTAssertTrue(lastError(ctx).contains(fragment), "'\(lastError(ctx))' lacks '\(fragment)'", line: line)
                    }
                    expectInvalid(dalle_rerank(ctx, nil, images, 2, &scores, &order), "prompt is NULL")
                    expectInvalid(dalle_rerank(ctx, "", images, 2, &scores, &order), "prompt is empty")
                    expectInvalid(dalle_rerank(ctx, "x", images, 0, &scores, &order), "n_images is 0")
                    expectInvalid(dalle_rerank(ctx, "x", nil, 2, &scores, &order), "images is NULL")
                    expectInvalid(dalle_rerank(ctx, "x", images, 2, nil, nil), "both NULL")
                    expectInvalid(dalle_rerank(ctx, "x", images, UInt32(DALLE_MAX_BATCH) + 1, &scores, &order), "DALLE_MAX_BATCH")
                    expectInvalid(dalle_clip_encode_text(ctx, "x", &text, 31), "embedding_size is 31")
                    expectInvalid(dalle_clip_encode_text(ctx, "x", nil, 32), "out_embedding is NULL")
                    expectInvalid(dalle_clip_encode_images(ctx, images, 2, nil, 32), "out_embeddings is NULL")
                    var bad = images
                    bad[1].channels = 2
                    expectInvalid(dalle_rerank(ctx, "x", bad, 2, &scores, &order), "images[1].channels")
                    bad = images
                    bad[0].width = 0
                    expectInvalid(dalle_rerank(ctx, "x", bad, 2, &scores, &order), "images[0] is 0x30")
                    bad = images
                    bad[1].data = nil
                    expectInvalid(dalle_rerank(ctx, "x", bad, 2, &scores, &order), "images[1].data is NULL")
                    let invalidUTF8: [CChar] = [-1, -2, 0]
                    expectInvalid(dalle_rerank(ctx, invalidUTF8, images, 2, &scores, &order), "UTF-8")
                }
            }
        }
    }

    func testModelWithoutCLIP() throws {
        var model: OpaquePointer? = nil, ctx: OpaquePointer? = nil
        XCTAssertEqual(dalle_model_load_file(CLIPTests.golden + "/../dvae/model.safetensors", nil, &model), dalle_status(DALLE_OK))
        XCTAssertEqual(dalle_context_create(model, nil, &ctx), dalle_status(DALLE_OK))
        defer { dalle_context_free(ctx); dalle_model_free(model) }
        var size: UInt32 = 7
        XCTAssertEqual(dalle_clip_embedding_size(model, &size), dalle_status(DALLE_UNSUPPORTED))
        XCTAssertEqual(size, 0)
        var pixels = [UInt8](repeating: 1, count: 12)
        var score: Float = 0
        pixels.withUnsafeMutableBufferPointer { p in
            let image = dalle_image(width: 2, height: 2, channels: 3, data: p.baseAddress)
            XCTAssertEqual(withUnsafePointer(to: image) { dalle_rerank(ctx, "a cat", $0, 1, &score, nil) }, dalle_status(DALLE_UNSUPPORTED))
        }
        XCTAssertTrue(lastError(ctx).contains("no clip component"))
        XCTAssertEqual(dalle_rerank(nil, "a cat", nil, 1, &score, nil), dalle_status(DALLE_INVALID_ARGUMENT))
    }
}
