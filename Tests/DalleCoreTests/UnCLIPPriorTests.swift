import XCTest
@testable import DalleCore

/// diffusers' `PriorTransformer` with the tiny pipeline's weights (Golden/unclip/tiny_unclip_f16)
/// against its recorded forward (Golden/unclip/modules).
final class UnCLIPPriorTests: XCTestCase {
    static func model() throws -> PriorTransformer {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        let config = try PriorTransformer.Configuration(json: try XCTUnwrap(bundle.metadata["unclip.prior.config"]))
        return try PriorTransformer(configuration: config, weights: bundle)
    }

    /// The pipeline's prior loop on the chain fixture's noise: 25 steps, the batch doubled for
    /// guidance 4 (conditioning [unconditional ×2, prompts]).
    static func priorStage(_ prior: PriorTransformer, textEmbeddings: Tensor, hiddenStates: Tensor, textMask: [Bool]) throws -> Tensor {
        let noise = try UnCLIPNoise(layout: UnCLIPNoiseTests.layout, tensors: try UnCLIPNoiseTests.recorded())
        return try UnCLIPScheduler(.karloPrior).denoise(
            try XCTUnwrap(noise.latents(.prior)), steps: 25, noise: { noise.stepNoise(.prior, step: $0) },
            model: { sample, t, _ in
                let doubled = Tensor(uncheckedShape: [4, 32], scalars: sample.scalars + sample.scalars)
                return try classifierFreeGuidance(prior(latents: doubled, timestep: t, textEmbeddings: textEmbeddings,
                                                        hiddenStates: hiddenStates, textMask: textMask), scale: 4)
            })
    }

    func testMatchesDiffusers() throws {
        let io = try UnCLIPGolden.file("modules"), prior = try Self.model()
        XCTAssertEqual(prior.configuration.width, 32)
        let mask = try io.tensor("prior.attention_mask").scalars.map { $0 != 0 }
        XCTAssertTrue(mask.contains(false))
        for threads in [1, 2] {
            let out = try prior(latents: io.tensor("prior.latents"), timestep: Int(try io.tensor("prior.timestep").scalars[0]),
                                textEmbeddings: io.tensor("prior.proj_embedding"), hiddenStates: io.tensor("prior.encoder_hidden_states"),
                                textMask: mask, pool: ThreadPool(threads: threads))
            UnCLIPGolden.assertClose(out, try io.tensor("prior.output"), atol: 1e-5, rtol: 1e-4, "prior forward (\(threads) threads)")
        }
        UnCLIPGolden.assertClose(try prior.postProcess(io.tensor("prior.post_process_input")), try io.tensor("prior.post_processed"),
                                 atol: 1e-6, rtol: 1e-6, "prior post_process_latents")
    }

    /// The whole prior stage of the chain fixture (25 steps, guidance 4, the recorded noise) in Swift:
    /// the text conditioning is the modules fixture's ("", "", the two prompts: the pipeline's guidance
    /// batch, there encoded as one batch of 4 instead of two of 2).
    func testPriorStageReproducesTheChain() throws {
        let io = try UnCLIPGolden.file("modules"), chain = try UnCLIPGolden.file("chain"), prior = try Self.model()
        XCTAssertEqual(try io.tensor("text.input_ids").scalars.suffix(32), try chain.tensor("input_ids").scalars[...])
        let latents = try Self.priorStage(prior, textEmbeddings: io.tensor("text.text_embeds"),
                                          hiddenStates: io.tensor("text.last_hidden_state"),
                                          textMask: io.tensor("text.attention_mask").scalars.map { $0 != 0 })
        UnCLIPGolden.assertClose(latents, try chain.tensor("prior_final_latents"), atol: 1e-4, rtol: 1e-3, "chain prior stage (25 steps)")
        UnCLIPGolden.assertClose(try prior.postProcess(latents), try chain.tensor("image_embeddings"), atol: 1e-4, rtol: 1e-3,
                                 "chain image embeddings")
    }

    /// From the prompts' text to the image embeddings, all in Swift (the bundle's tokenizer, the text
    /// encoder, the prior, guidance, the scheduler with the recorded noise): the chain's prior half.
    /// Our tokenizer pads with 0 where diffusers' pads with the end token: padded positions are masked
    /// out of the prior's attention and after the pooled token, so they change nothing.
    func testTextToImageEmbeddingsReproducesTheChain() throws {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16"), chain = try UnCLIPGolden.file("chain")
        let tokenizer = try Tokenizer(metadata: bundle.metadata, weights: bundle)
        let encoder = try UnCLIPTextEncoderTests.model(), prior = try Self.model()
        let texts = try ["", "", "a red cat on the mat", "two blue squares"].map { try tokenizer.tokenizeCLIP($0, contextLength: 16) }
        let (hidden, embeddings) = try encoder(texts.map(\.ids))
        let mask = texts.flatMap { text in (0..<16).map { $0 < text.count } }
        let latents = try Self.priorStage(prior, textEmbeddings: embeddings, hiddenStates: hidden, textMask: mask)
        UnCLIPGolden.assertClose(try prior.postProcess(latents), try chain.tensor("image_embeddings"), atol: 1e-4, rtol: 1e-3,
                                 "chain image embeddings from text, all in Swift")
    }

    func testBadConfigAndInput() throws {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        let json = try XCTUnwrap(bundle.metadata["unclip.prior.config"])
        XCTAssertThrowsError(try PriorTransformer.Configuration(json: json.replacingOccurrences(of: "\"norm_in_type\": null", with: "\"norm_in_type\": \"layer\""))) {
            XCTAssertTrue("\($0)".contains("unsupported: prior config: norm_in_type"), "\($0)")
        }
        XCTAssertThrowsError(try PriorTransformer.Configuration(json: json.replacingOccurrences(of: "\"num_layers\": 2", with: "\"num_layers\": 0")))
        var config = try PriorTransformer.Configuration(json: json)
        config.layers = 3
        XCTAssertThrowsError(try PriorTransformer(configuration: config, weights: bundle)) { XCTAssertTrue("\($0)".contains("transformer_blocks.2")) }
        config.layers = 1
        XCTAssertThrowsError(try PriorTransformer(configuration: config, weights: bundle)) { XCTAssertTrue("\($0)".contains("transformer_blocks.1")) }
        let prior = try Self.model()
        let x = Tensor(zeros: [2, 32]), hidden = Tensor(zeros: [2, 16, 32]), mask = [Bool](repeating: true, count: 32)
        XCTAssertNoThrow(try prior(latents: x, timestep: 3, textEmbeddings: x, hiddenStates: hidden, textMask: mask))
        XCTAssertThrowsError(try prior(latents: x, timestep: 3, textEmbeddings: x, hiddenStates: Tensor(zeros: [2, 15, 32]), textMask: mask))
        XCTAssertThrowsError(try prior(latents: x, timestep: 3, textEmbeddings: x, hiddenStates: hidden, textMask: Array(mask.dropLast())))
        XCTAssertThrowsError(try prior(latents: Tensor(zeros: [2, 31]), timestep: 3, textEmbeddings: x, hiddenStates: hidden, textMask: mask))
        var nan = x
        nan.scalars[5] = .nan
        XCTAssertThrowsError(try prior(latents: nan, timestep: 3, textEmbeddings: x, hiddenStates: hidden, textMask: mask))
    }
}
