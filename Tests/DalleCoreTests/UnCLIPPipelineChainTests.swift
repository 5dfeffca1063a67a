import XCTest
@testable import DalleCore

/// DALL·E 2 end to end in Swift on the tiny pipeline (Golden/unclip/tiny_unclip_f16): prompts →
/// tokenizer → text encoder → prior (25 steps, guidance 4) → text_proj → decoder (25 steps, guidance 8
/// on the noise channels) → clamp → antialiased bicubic ×4 → super-resolution (7 steps, the last UNet
/// on the last step) → image, against diffusers' chain with its recorded noise (Golden/unclip/chain).
final class UnCLIPPipelineChainTests: XCTestCase {
    static func pipeline() throws -> UnCLIPPipeline { try UnCLIPPipeline(bundle: try UnCLIPGolden.file("tiny_unclip_f16")) }

    func testPromptsToImageReproducesDiffusers() throws {
        let chain = try UnCLIPGolden.file("chain")
        var calls: [Int: [Int]] = [:]
        let image = try Self.pipeline().generate(prompts: ["a red cat on the mat", "two blue squares"], noise: try UnCLIPNoiseTests.recorded(),
                                                 progress: { stage, step, steps in calls[stage, default: []].append(step); _ = steps; return true },
                                                 pool: ThreadPool(threads: 2))
        UnCLIPGolden.assertClose(image, try chain.tensor("image"), atol: 1e-3, rtol: 1e-3, "end to end: final image")
        XCTAssertEqual(calls, [0: Array(1...25), 1: Array(1...25), 2: Array(1...7)])
    }

    func testDrawnNoiseIsDeterministicAndPerImage() throws {
        let pipeline = try Self.pipeline()
        var options = UnCLIPPipeline.Options()
        (options.priorSteps, options.decoderSteps, options.superResolutionSteps, options.seed) = (3, 3, 2, 42)
        let two = try pipeline.generate(prompts: ["a red cat", "blue"], options: options, pool: ThreadPool(threads: 1))
        XCTAssertEqual(two, try pipeline.generate(prompts: ["a red cat", "blue"], options: options, pool: ThreadPool(threads: 2)))
        let one = try pipeline.generate(prompts: ["a red cat"], options: options)
        UnCLIPGolden.assertClose(one, try UnCLIPGolden.item(two, 0).reshaped([1, 3, 32, 32]), atol: 1e-5, rtol: 1e-4, "image alone vs in a batch")
        options.seed = 43
        XCTAssertNotEqual(try pipeline.generate(prompts: ["a red cat"], options: options), one)
        options.superResolutionSteps = 1  // one step: straight to x0
        XCTAssertTrue(try pipeline.generate(prompts: ["a red cat"], options: options).scalars.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    func testBadRequestsAreErrors() throws {
        let pipeline = try Self.pipeline()
        var options = UnCLIPPipeline.Options()
        XCTAssertThrowsError(try pipeline.generate(prompts: [], options: options))
        options.decoderSteps = 0
        XCTAssertThrowsError(try pipeline.generate(prompts: ["x"], options: options)) { XCTAssertTrue("\($0)".contains("0 decoder steps")) }
        options = UnCLIPPipeline.Options()
        options.priorGuidance = 0
        XCTAssertThrowsError(try pipeline.generate(prompts: ["x"], options: options)) { XCTAssertTrue("\($0)".contains("guidance")) }
        options = UnCLIPPipeline.Options()
        XCTAssertThrowsError(try pipeline.generate(prompts: ["x"], options: options, noise: ["decoder_latents": Tensor(zeros: [1, 3, 4, 4])])) {
            XCTAssertTrue("\($0)".contains("decoder_latents"))
        }
        (options.priorSteps, options.decoderSteps, options.superResolutionSteps) = (2, 2, 2)
        XCTAssertThrowsError(try pipeline.generate(prompts: ["x"], options: options, progress: { stage, step, _ in stage == 0 && step < 2 })) {
            XCTAssertEqual($0 as? DalleError, .cancelled)
        }
    }
}
