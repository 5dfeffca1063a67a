import XCTest
@testable import DalleCore

/// diffusers' `ResnetBlock2D` (scale-shift time embedding, 2×2 average pooling inside the block) as
/// the tiny decoder's first down block runs it (`ResnetDownsampleBlock2D`: a res-block, then a
/// downsampling one), against the block's recorded output (Golden/unclip/modules).
final class UnCLIPResnetBlockTests: XCTestCase {
    func testDecoderFirstDownBlockMatchesDiffusers() throws {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16"), io = try UnCLIPGolden.file("modules")
        let loader = StrictWeightLoader(bundle), prefix = "unclip.decoder.down_blocks.0."
        let resnet = try ResnetBlock2D(prefix + "resnets.0.", in: 16, out: 16, timeEmbedding: 64, groups: 4, scaleShift: true, loader: loader)
        let down = try ResnetBlock2D(prefix + "downsamplers.0.", in: 16, out: 16, timeEmbedding: 64, groups: 4, scaleShift: true,
                                     resample: .down, loader: loader)
        // The UNet's embedding: its time embedding plus the class embedding (identity of text_proj's additive one).
        let time = try io.tensor("decoder.inner.time_embedding").scalars, added = try io.tensor("text_proj.additive_time_embeddings").scalars
        let embedding = zip(time, added).map { $0 + $1 }
        let pool = ThreadPool(threads: 2)
        let x = try io.tensor("decoder.inner.conv_in")
        let out = down(resnet(x, embedding: embedding, pool: pool), embedding: embedding, pool: pool)
        UnCLIPGolden.assertClose(out, try io.tensor("decoder.inner.down_blocks.0"), atol: 1e-5, rtol: 1e-4, "decoder down block 0 (two res-blocks)")
    }

    /// The second down block (`SimpleCrossAttnDownBlock2D`: a res-block 16 → 32 with a 1×1 shortcut,
    /// then attention with added keys and values over text_proj's context and the decoder's mask).
    func testDecoderCrossAttentionDownBlockMatchesDiffusers() throws {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16"), io = try UnCLIPGolden.file("modules")
        let loader = StrictWeightLoader(bundle), prefix = "unclip.decoder.down_blocks.1."
        let resnet = try ResnetBlock2D(prefix + "resnets.0.", in: 16, out: 32, timeEmbedding: 64, groups: 4, scaleShift: true, loader: loader)
        let attention = try AddedKVAttention(prefix + "attentions.0.", channels: 32, headWidth: 8, context: 48, groups: 4, loader: loader)
        let time = try io.tensor("decoder.inner.time_embedding").scalars, added = try io.tensor("text_proj.additive_time_embeddings").scalars
        let embedding = zip(time, added).map { $0 + $1 }
        let mask = try io.tensor("decoder.attention_mask").scalars.map { $0 != 0 }
        XCTAssertTrue(mask.contains(false))
        let pool = ThreadPool(threads: 2)
        let h = resnet(try io.tensor("decoder.inner.down_blocks.0"), embedding: embedding, pool: pool)
        let out = attention(h, context: try io.tensor("text_proj.encoder_hidden_states"), contextMask: mask, pool: pool)
        UnCLIPGolden.assertClose(out, try io.tensor("decoder.inner.down_blocks.1"), atol: 1e-5, rtol: 1e-4,
                                 "decoder down block 1 (res-block and added-KV attention)")
    }

    func testResamplingAndGroupNorm() {
        let x = Tensor(uncheckedShape: [1, 2, 2, 2], scalars: [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(averagePool2x2(x).scalars, [2.5, 6.5])
        XCTAssertEqual(upsampleNearest2x(Tensor(uncheckedShape: [1, 1, 1, 2], scalars: [1, 2])).scalars, [1, 1, 2, 2, 1, 1, 2, 2])
        let normed = GroupNorm(groups: 2, weight: [1, 2], bias: [0, 1])(x, pool: ThreadPool(threads: 2))
        XCTAssertEqual(normed.scalars[0], -1.3416, accuracy: 1e-3)
        XCTAssertEqual(normed.scalars[7], 1 + 2 * 1.3416, accuracy: 1e-3)
    }
}
