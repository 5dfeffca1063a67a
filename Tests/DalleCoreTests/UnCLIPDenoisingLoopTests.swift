import XCTest
@testable import DalleCore

/// The pipeline's three loops replayed from the chain fixture's recorded model outputs and noise
/// (guidance, timesteps, previous timesteps, noise order, the super-res UNet switch, the end of each stage).
final class UnCLIPDenoisingLoopTests: XCTestCase {
    func testLoopsReplayTheDiffusersChain() throws {
        let chain = try UnCLIPGolden.file("chain")
        let noise = try UnCLIPNoise(layout: UnCLIPNoiseTests.layout, tensors: try UnCLIPNoiseTests.recorded())
        let (p, d, s) = (25, 25, 7)

        let priorOutputs = try chain.tensor("prior_model_outputs")
        var calls = 0
        let prior = try UnCLIPScheduler(.karloPrior).denoise(
            try XCTUnwrap(noise.latents(.prior)), steps: p, noise: { noise.stepNoise(.prior, step: $0) },
            model: { sample, t, i in
                XCTAssertEqual(sample.shape, [2, 32])
                calls += 1
                return try classifierFreeGuidance(UnCLIPGolden.item(priorOutputs, i), scale: 4)
            })
        XCTAssertEqual(calls, p)
        UnCLIPGolden.assertClose(prior, try chain.tensor("prior_final_latents"), atol: 1e-5, rtol: 1e-4, "chain prior loop")

        let decoderOutputs = try chain.tensor("decoder_model_outputs")
        var decoded = try UnCLIPScheduler(.karloDecoder).denoise(
            try XCTUnwrap(noise.latents(.decoder)), steps: d, noise: { noise.stepNoise(.decoder, step: $0) },
            model: { _, _, i in try classifierFreeGuidance(UnCLIPGolden.item(decoderOutputs, i), scale: 8, guidedChannels: 3) })
        decoded.scalars = decoded.scalars.map { min(max($0, -1), 1) }
        UnCLIPGolden.assertClose(decoded, try chain.tensor("image_small"), atol: 1e-5, rtol: 1e-4, "chain decoder loop")

        let superResOutputs = try chain.tensor("super_res_model_outputs")
        var steps: [Int] = []
        var image = try UnCLIPScheduler(.karloSuperResolution).denoise(
            try XCTUnwrap(noise.latents(.superResolution)), steps: s, noise: { noise.stepNoise(.superResolution, step: $0) },
            model: { _, _, i in UnCLIPGolden.item(superResOutputs, i) },
            progress: { step, count in steps.append(step); XCTAssertEqual(count, s); return true })
        XCTAssertEqual(steps, Array(1...s))
        image.scalars = image.scalars.map { min(max($0 * 0.5 + 0.5, 0), 1) }
        UnCLIPGolden.assertClose(image, try chain.tensor("image"), atol: 1e-5, rtol: 1e-4, "chain super-res loop and image")
    }

    func testLoopCancelsAndReportsMissingNoise() throws {
        let scheduler = try UnCLIPScheduler(.karloSuperResolution)
        let x = Tensor(zeros: [1, 3, 2, 2])
        var modelCalls = 0
        XCTAssertThrowsError(try scheduler.denoise(x, steps: 7, noise: { _ in x }, model: { s, _, _ in modelCalls += 1; return s },
                                                   progress: { step, _ in step < 2 })) { error in
            XCTAssertEqual(error as? DalleError, .cancelled)
        }
        XCTAssertEqual(modelCalls, 2)
        XCTAssertThrowsError(try scheduler.denoise(x, steps: 7, noise: { _ in nil }, model: { s, _, _ in s })) { error in
            XCTAssertTrue("\(error)".contains("none was given"), "\(error)")
        }
        XCTAssertThrowsError(try scheduler.denoise(x, steps: 0, noise: { _ in x }, model: { s, _, _ in s }))
        // One step goes straight to x0 and draws no noise.
        var noiseCalls = 0
        let one = try scheduler.denoise(Tensor(uncheckedShape: [1, 3, 1, 1], scalars: [0.5, -0.5, 0.25]), steps: 1,
                                        noise: { _ in noiseCalls += 1; return nil },
                                        model: { s, t, _ in XCTAssertEqual(t, 999); return Tensor(zeros: s.shape) })
        XCTAssertEqual(noiseCalls, 0)
        let alphaBar = scheduler.alphasCumprod[999]
        for (v, x) in zip(one.scalars, [Float(0.5), -0.5, 0.25]) { XCTAssertEqual(v, min(max(x / alphaBar.squareRoot(), -1), 1), accuracy: 1e-6) }
    }

    func testGuidance() throws {
        let out = Tensor(uncheckedShape: [2, 2, 1], scalars: [1, 10, 3, 20])  // uncond [1, 10], cond [3, 20]
        XCTAssertEqual(try classifierFreeGuidance(out, scale: 4).scalars, [1 + 4 * 2, 10 + 4 * 10])
        XCTAssertEqual(try classifierFreeGuidance(out, scale: 4, guidedChannels: 1).scalars, [9, 20])
        for bad in [Float(0), -1, .nan, .infinity] { XCTAssertThrowsError(try classifierFreeGuidance(out, scale: bad)) }
        XCTAssertThrowsError(try classifierFreeGuidance(out, scale: 2, guidedChannels: 3))
        XCTAssertThrowsError(try classifierFreeGuidance(out, scale: 2, guidedChannels: 0))
        XCTAssertThrowsError(try classifierFreeGuidance(Tensor(zeros: [3, 2]), scale: 2))
        XCTAssertThrowsError(try classifierFreeGuidance(Tensor(zeros: [4]), scale: 2))
        XCTAssertThrowsError(try classifierFreeGuidance(Tensor(zeros: [2, 0]), scale: 2))
    }
}
