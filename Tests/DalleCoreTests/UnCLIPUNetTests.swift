import XCTest
@testable import DalleCore

/// The tiny decoder and super-resolution UNets (Golden/unclip/tiny_unclip_f16) against their recorded
/// forwards (Golden/unclip/modules).
final class UnCLIPUNetTests: XCTestCase {
    static func unet(_ part: String) throws -> UnCLIPUNet {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        let config = try UnCLIPUNet.Configuration(json: try XCTUnwrap(bundle.metadata["unclip.\(part).config"]), part: part)
        return try UnCLIPUNet(configuration: config, weights: bundle, prefix: "unclip.\(part).")
    }

    func testDecoderMatchesDiffusers() throws {
        let io = try UnCLIPGolden.file("modules"), decoder = try Self.unet("decoder")
        let out = try decoder(io.tensor("decoder.sample"), timestep: Int(try io.tensor("decoder.timestep").scalars[0]),
                              classEmbedding: io.tensor("text_proj.additive_time_embeddings"),
                              context: io.tensor("text_proj.encoder_hidden_states"),
                              contextMask: io.tensor("decoder.attention_mask").scalars.map { $0 != 0 }, pool: ThreadPool(threads: 2))
        UnCLIPGolden.assertClose(out, try io.tensor("decoder.output"), atol: 1e-5, rtol: 1e-4, "decoder UNet forward")
    }

    func testSuperResolutionMatchesDiffusers() throws {
        let io = try UnCLIPGolden.file("modules")
        for part in ["super_res_first", "super_res_last"] {
            let out = try Self.unet(part)(io.tensor("\(part).sample"), timestep: Int(try io.tensor("\(part).timestep").scalars[0]),
                                          pool: ThreadPool(threads: 2))
            UnCLIPGolden.assertClose(out, try io.tensor("\(part).output"), atol: 1e-5, rtol: 1e-4, "\(part) UNet forward")
        }
    }
}
