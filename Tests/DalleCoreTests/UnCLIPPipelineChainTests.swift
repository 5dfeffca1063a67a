import XCTest
@testable import DalleCore

/// DALL·E 2 end to end in Swift on the tiny pipeline (Golden/unclip/tiny_unclip_f16): prompts →
/// tokenizer → text encoder → prior (25 steps, guidance 4) → text_proj → decoder (25 steps, guidance 8
/// on the noise channels) → clamp → antialiased bicubic ×4 → super-resolution (7 steps, the last UNet
/// on the last step) → image, with diffusers' recorded noise (Golden/unclip/chain).
final class UnCLIPPipelineChainTests: XCTestCase {
    func testPromptsToImageReproducesDiffusers() throws {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16"), chain = try UnCLIPGolden.file("chain")
        let config = try UnCLIPBundleConfiguration(metadata: bundle.metadata)
        let pool = ThreadPool(threads: 2)
        let tokenizer = try Tokenizer(metadata: bundle.metadata, weights: bundle)
        let encoder = try UnCLIPTextEncoderTests.model(), prior = try UnCLIPPriorTests.model()
        let textProj = try UnCLIPTextProjection(
            configuration: try UnCLIPTextProjection.Configuration(json: try XCTUnwrap(bundle.metadata["unclip.text_proj.config"])), weights: bundle)
        let decoder = try UnCLIPUNetTests.unet("decoder")
        let superFirst = try UnCLIPUNetTests.unet("super_res_first"), superLast = try UnCLIPUNetTests.unet("super_res_last")
        let noise = try UnCLIPNoise(layout: config.noiseLayout(images: 2, priorSteps: 25, decoderSteps: 25, superResolutionSteps: 7),
                                    tensors: try UnCLIPNoiseTests.recorded())

        let texts = try ["", "", "a red cat on the mat", "two blue squares"].map { try tokenizer.tokenizeCLIP($0, contextLength: 16) }
        let (hidden, embeddings) = try encoder(texts.map(\.ids), pool: pool)
        let mask = texts.flatMap { text in (0..<16).map { $0 < text.count } }
        let imageEmbeddings = try prior.postProcess(
            UnCLIPPriorTests.priorStage(prior, textEmbeddings: embeddings, hiddenStates: hidden, textMask: mask))
        UnCLIPGolden.assertClose(imageEmbeddings, try chain.tensor("image_embeddings"), atol: 1e-4, rtol: 1e-3, "end to end: image embeddings")

        let (context, classEmbedding) = try textProj(imageEmbeddings: imageEmbeddings, textEmbeddings: embeddings,
                                                     hiddenStates: hidden, guided: true, pool: pool)
        let contextMask = (0..<4).flatMap { row in [Bool](repeating: true, count: 4) + mask[(row * 16)..<((row + 1) * 16)] }
        var small = try config.decoderScheduler.makeScheduler().denoise(
            try XCTUnwrap(noise.latents(.decoder)), steps: 25, noise: { noise.stepNoise(.decoder, step: $0) },
            model: { sample, t, _ in
                let doubled = Tensor(uncheckedShape: [4] + sample.shape.dropFirst(), scalars: sample.scalars + sample.scalars)
                return try classifierFreeGuidance(
                    decoder(doubled, timestep: t, classEmbedding: classEmbedding, context: context, contextMask: contextMask, pool: pool),
                    scale: 8, guidedChannels: 3)
            })
        small.scalars = small.scalars.map { min(max($0, -1), 1) }
        UnCLIPGolden.assertClose(small, try chain.tensor("image_small"), atol: 1e-3, rtol: 1e-3, "end to end: decoder image")

        let (h, w) = config.superResolutionSize
        let upscaled = try small.resizedBicubic(height: h, width: w, antialias: true)
        var image = try config.superResolutionScheduler.makeScheduler().denoise(
            try XCTUnwrap(noise.latents(.superResolution)), steps: 7, noise: { noise.stepNoise(.superResolution, step: $0) },
            model: { sample, t, i in
                try (i == 6 ? superLast : superFirst)(concatenateChannels(sample, upscaled), timestep: t, pool: pool)
            })
        image.scalars = image.scalars.map { min(max($0 * 0.5 + 0.5, 0), 1) }
        UnCLIPGolden.assertClose(image, try chain.tensor("image"), atol: 1e-3, rtol: 1e-3, "end to end: final image")
    }
}

extension UnCLIPScheduler.Configuration {
    func makeScheduler() throws -> UnCLIPScheduler { try UnCLIPScheduler(self) }
}
