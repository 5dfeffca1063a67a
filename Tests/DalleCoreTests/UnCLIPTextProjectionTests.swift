import XCTest
@testable import DalleCore

/// `UnCLIPTextProjModel` with the tiny pipeline's weights (Golden/unclip/tiny_unclip_f16) against its
/// recorded forward (Golden/unclip/modules).
final class UnCLIPTextProjectionTests: XCTestCase {
    func model() throws -> UnCLIPTextProjection {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        let config = try UnCLIPTextProjection.Configuration(json: try XCTUnwrap(bundle.metadata["unclip.text_proj.config"]))
        XCTAssertEqual(config.extraContextTokens, 4)
        return try UnCLIPTextProjection(configuration: config, weights: bundle)
    }

    func testMatchesDiffusers() throws {
        let io = try UnCLIPGolden.file("modules")
        let (context, time) = try model()(imageEmbeddings: io.tensor("text_proj.image_embeddings"),
                                          textEmbeddings: io.tensor("text.text_embeds"),
                                          hiddenStates: io.tensor("text.last_hidden_state"), guided: true)
        UnCLIPGolden.assertClose(context, try io.tensor("text_proj.encoder_hidden_states"), atol: 1e-5, rtol: 1e-4, "text_proj context")
        UnCLIPGolden.assertClose(time, try io.tensor("text_proj.additive_time_embeddings"), atol: 1e-5, rtol: 1e-4, "text_proj time")
    }

    func testStrictLoadingAndBadInput() throws {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        let config = try UnCLIPTextProjection.Configuration(json: try XCTUnwrap(bundle.metadata["unclip.text_proj.config"]))
        var weights = InMemoryWeights()
        for name in bundle.names where name.hasPrefix("unclip.text_proj.") { weights.tensors[name] = try bundle.tensor(name) }
        XCTAssertNoThrow(try UnCLIPTextProjection(configuration: config, weights: weights))
        var extra = weights
        extra.tensors["unclip.text_proj.spare"] = Tensor(zeros: [1])
        XCTAssertThrowsError(try UnCLIPTextProjection(configuration: config, weights: extra)) { XCTAssertTrue("\($0)".contains("spare")) }
        var missing = weights
        missing.tensors["unclip.text_proj.embedding_proj.bias"] = nil
        XCTAssertThrowsError(try UnCLIPTextProjection(configuration: config, weights: missing)) { XCTAssertTrue("\($0)".contains("embedding_proj.bias")) }
        var wrong = config
        wrong.extraContextTokens = 3
        XCTAssertThrowsError(try UnCLIPTextProjection(configuration: wrong, weights: weights)) { XCTAssertTrue("\($0)".contains("clip_extra_context_tokens_proj")) }
        XCTAssertThrowsError(try UnCLIPTextProjection.Configuration(json: #"{"clip_embeddings_dim": 32}"#))

        let m = try model()
        let image = Tensor(zeros: [2, 32]), text = Tensor(zeros: [4, 32]), hidden = Tensor(zeros: [4, 16, 32])
        XCTAssertNoThrow(try m(imageEmbeddings: image, textEmbeddings: text, hiddenStates: hidden, guided: true))
        XCTAssertThrowsError(try m(imageEmbeddings: image, textEmbeddings: text, hiddenStates: hidden, guided: false))
        XCTAssertThrowsError(try m(imageEmbeddings: Tensor(zeros: [2, 31]), textEmbeddings: text, hiddenStates: hidden, guided: true))
        XCTAssertThrowsError(try m(imageEmbeddings: image, textEmbeddings: text, hiddenStates: Tensor(zeros: [4, 0, 32]), guided: true))
        XCTAssertThrowsError(try m(imageEmbeddings: Tensor(zeros: [0, 32]), textEmbeddings: Tensor(zeros: [0, 32]),
                                   hiddenStates: Tensor(zeros: [0, 16, 32]), guided: false))
    }
}
