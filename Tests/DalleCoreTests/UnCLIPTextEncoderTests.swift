import XCTest
@testable import DalleCore

/// transformers' `CLIPTextModelWithProjection` with the tiny pipeline's weights
/// (Golden/unclip/tiny_unclip_f16) against its recorded forward (Golden/unclip/modules).
final class UnCLIPTextEncoderTests: XCTestCase {
    static func model() throws -> UnCLIPTextEncoder {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        let config = try UnCLIPTextEncoder.Configuration(json: try XCTUnwrap(bundle.metadata["unclip.text_encoder.config"]))
        return try UnCLIPTextEncoder(configuration: config, weights: bundle)
    }

    func testMatchesTransformers() throws {
        let io = try UnCLIPGolden.file("modules"), encoder = try Self.model()
        let ids = try io.tensor("text.input_ids")
        let tokens = (0..<ids.shape[0]).map { UnCLIPGolden.item(ids, $0).scalars.map { Int32($0) } }
        for threads in [1, 2] {
            let (hidden, embeds) = try encoder(tokens, pool: ThreadPool(threads: threads))
            UnCLIPGolden.assertClose(hidden, try io.tensor("text.last_hidden_state"), atol: 1e-5, rtol: 1e-4, "text encoder hidden states (\(threads) threads)")
            UnCLIPGolden.assertClose(embeds, try io.tensor("text.text_embeds"), atol: 1e-5, rtol: 1e-4, "text encoder embeddings (\(threads) threads)")
        }
    }

    func testBadConfigWeightsAndInput() throws {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        let json = try XCTUnwrap(bundle.metadata["unclip.text_encoder.config"])
        for (from, to, fragment) in [("\"quick_gelu\"", "\"gelu\"", "hidden_act"), ("\"intermediate_size\": 128", "\"intermediate_size\": 64", "intermediate_size"),
                                     ("\"num_attention_heads\": 4", "\"num_attention_heads\": 5", "multiple")] {
            XCTAssertThrowsError(try UnCLIPTextEncoder.Configuration(json: json.replacingOccurrences(of: from, with: to))) {
                XCTAssertTrue("\($0)".contains(fragment), "\($0)")
            }
        }
        var config = try UnCLIPTextEncoder.Configuration(json: json)
        config.layers = 1
        XCTAssertThrowsError(try UnCLIPTextEncoder(configuration: config, weights: bundle)) { XCTAssertTrue("\($0)".contains("layers.1"), "\($0)") }
        config.layers = 3
        XCTAssertThrowsError(try UnCLIPTextEncoder(configuration: config, weights: bundle)) { XCTAssertTrue("\($0)".contains("layers.2"), "\($0)") }
        let encoder = try Self.model()
        XCTAssertThrowsError(try encoder([]))
        XCTAssertThrowsError(try encoder([[1, 2], [1]]))
        XCTAssertThrowsError(try encoder([[Int32](repeating: 1, count: 17)]))
        XCTAssertThrowsError(try encoder([[1, 533]])) { XCTAssertTrue("\($0)".contains("533"), "\($0)") }
        XCTAssertEqual(try encoder([[531, 40, 532]]).hiddenStates.shape, [1, 3, 32])
    }
}
