import XCTest
@testable import DalleCore

/// DALL·E 2's variations and interpolations on the tiny pipeline with its image encoder
/// (tools/make_golden_unclip.py; Golden/unclip/variation and the *_noise files): transformers'
/// CLIPImageProcessor + CLIPVisionModelWithProjection, diffusers' UnCLIPImageVariationPipeline, and
/// diffusers' community unclip_image_interpolation / unclip_text_interpolation pipelines, each with
/// its recorded noise.
final class UnCLIPVariationTests: XCTestCase {
    static func pipeline() throws -> UnCLIPPipeline { try UnCLIPPipeline(bundle: try UnCLIPGolden.file("tiny_unclip_f16")) }

    /// The fixture's uint8 image `name` [H, W, 3].
    static func image(_ name: String) throws -> RGBImage {
        let file = try UnCLIPGolden.file("variation")
        let shape = try XCTUnwrap(file.info(name)).shape
        return try RGBImage(width: shape[1], height: shape[0], pixels: try file.bytes(name))
    }

    static func noise(_ name: String) throws -> [String: Tensor] {
        let file = try UnCLIPGolden.file(name)
        return try UnCLIPNoise.tensors(in: file)
    }

    static func options(_ steps: [Int]) -> UnCLIPPipeline.Options {
        var o = UnCLIPPipeline.Options()
        if steps.count == 3 { o.priorSteps = steps[0] }
        (o.decoderSteps, o.superResolutionSteps) = (steps[steps.count - 2], steps[steps.count - 1])
        return o
    }

    func testImageEncoderReproducesTransformers() throws {
        let pipeline = try Self.pipeline()
        let clip = try XCTUnwrap(pipeline.clip)
        XCTAssertEqual(clip.cropRounding, .down)
        let golden = try UnCLIPGolden.file("variation")
        let (first, second) = (try Self.image("input_image"), try Self.image("second_image"))
        XCTAssertEqual(first.width, 41)  // resized to 35 x 32, cropped from x = 1 (transformers) not 2 (torchvision)
        let pixels = try first.withView { a in
            try second.withView { b in try CLIPPreprocess.tensor(from: [a, b], size: 32, cropRounding: .down) }
        }
        UnCLIPGolden.assertClose(pixels, try golden.tensor("encoder.pixel_values"), atol: 1e-5, rtol: 1e-5, "CLIPImageProcessor")
        let embeddings = try first.withView { a in try second.withView { b in try pipeline.imageEmbeddings([a, b], pool: ThreadPool(threads: 2)) } }
        UnCLIPGolden.assertClose(embeddings, try golden.tensor("encoder.image_embeds"), atol: 1e-5, rtol: 1e-4, "image encoder")
    }

    func testVariationReproducesDiffusers() throws {
        let image = try Self.image("input_image")
        let out = try image.withView {
            try Self.pipeline().vary(images: [$0], options: Self.options([5, 3]), noise: try Self.noise("variation_noise"), pool: ThreadPool(threads: 2))
        }
        UnCLIPGolden.assertClose(out, try UnCLIPGolden.file("variation").tensor("variation.image"), atol: 1e-3, rtol: 1e-3, "variation")
    }

    func testImageInterpolationReproducesTheCommunityPipeline() throws {
        let (a, b) = (try Self.image("input_image"), try Self.image("second_image"))
        var stages: Set<Int> = []
        let out = try a.withView { first in
            try b.withView { second in
                try Self.pipeline().interpolate(from: .image(first), to: .image(second), frames: 3, options: Self.options([3, 3, 2]),
                                                noise: try Self.noise("image_interpolation_noise"),
                                                progress: { stage, _, _ in stages.insert(stage); return true })
            }
        }
        UnCLIPGolden.assertClose(out, try UnCLIPGolden.file("variation").tensor("image_interpolation.image"), atol: 1e-3, rtol: 1e-3,
                                 "image interpolation")
        XCTAssertEqual(stages, [1, 2], "no prior for images")
        // Without caller noise every frame starts from the same decoder latents: the end frames are variations of the ends.
        var options = Self.options([3, 3, 2])
        options.seed = 9
        let drawn = try a.withView { first in
            try b.withView { second in try Self.pipeline().interpolate(from: .image(first), to: .image(second), frames: 2, options: options) }
        }
        let alone = try a.withView { try Self.pipeline().vary(images: [$0], options: options) }
        UnCLIPGolden.assertClose(try UnCLIPGolden.item(drawn, 0).reshaped([1, 3, 32, 32]), alone, atol: 1e-4, rtol: 1e-4, "frame 0 = a variation")
    }

    func testTextInterpolationReproducesTheCommunityPipeline() throws {
        let out = try Self.pipeline().interpolate(from: .prompt("a red cat on the mat"), to: .prompt("two blue squares"), frames: 3,
                                                  options: Self.options([3, 3, 2]), noise: try Self.noise("text_interpolation_noise"),
                                                  pool: ThreadPool(threads: 2))
        UnCLIPGolden.assertClose(out, try UnCLIPGolden.file("variation").tensor("text_interpolation.image"), atol: 1e-3, rtol: 1e-3,
                                 "text interpolation")
    }

    /// Karlo's image-variations pipeline converted alone (no prior): variations as with the joint
    /// bundle; prompts are an error that says why.
    func testVariationsOnlyBundle() throws {
        let joint = try UnCLIPGolden.file("tiny_unclip_f16")
        var writer = SafetensorsWriter()
        writer.metadata = try UnCLIPGolden.file("bundle_metadata_variation").metadata
        for name in joint.names where !name.hasPrefix("unclip.prior.") {
            let info = try XCTUnwrap(joint.info(name))
            try writer.add(name, bytes: try joint.bytes(name), dtype: info.dtype, shape: info.shape)
        }
        let file = try writer.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
        let variations = try UnCLIPPipeline(bundle: file)
        XCTAssertEqual(variations.configuration.pipelineClass, "UnCLIPImageVariationPipeline")
        XCTAssertThrowsError(try variations.generate(prompts: ["a red cat"])) { XCTAssertTrue("\($0)".contains("has no prior"), "\($0)") }
        let image = try Self.image("input_image")
        var options = Self.options([2, 2])
        options.seed = 4
        let ours = try image.withView { try variations.vary(images: [$0], options: options) }
        XCTAssertEqual(ours, try image.withView { try Self.pipeline().vary(images: [$0], options: options) })
    }

    func testBadRequestsAreErrors() throws {
        let pipeline = try Self.pipeline()
        let image = try Self.image("input_image")
        try image.withView { view in
            XCTAssertThrowsError(try pipeline.vary(images: [view], noise: ["prior_latents": Tensor(zeros: [1, 32])])) {
                XCTAssertTrue("\($0)".contains("run no prior"), "\($0)")
            }
            XCTAssertThrowsError(try pipeline.interpolate(from: .prompt("a"), to: .image(view), frames: 2)) {
                XCTAssertTrue("\($0)".contains("not a prompt and an image"), "\($0)")
            }
            XCTAssertThrowsError(try pipeline.interpolate(from: .image(view), to: .image(view), frames: 0)) { XCTAssertTrue("\($0)".contains("0 frames")) }
            let twoChannels = ImageView(width: 2, height: 2, channels: 2, pixels: view.pixels)
            XCTAssertThrowsError(try pipeline.vary(images: [twoChannels])) { XCTAssertTrue("\($0)".contains("2 channels"), "\($0)") }
        }
        let textOnly = try UnCLIPPipeline(bundle: try UnCLIPBundleWithout.imageEncoder().withUnsafeBytes { try SafetensorsFile(bytes: $0) })
        XCTAssertNil(textOnly.clip)
        try image.withView { view in
            XCTAssertThrowsError(try textOnly.vary(images: [view])) { XCTAssertTrue("\($0)".contains("no image encoder"), "\($0)") }
        }
    }
}

/// The tiny bundle without its image encoder (as converted without --image-encoder).
enum UnCLIPBundleWithout {
    static func imageEncoder() throws -> [UInt8] {
        let joint = try UnCLIPGolden.file("tiny_unclip_f16")
        var writer = SafetensorsWriter()
        writer.metadata = joint.metadata
        writer.metadata["unclip.parts"] = "text_encoder,prior,text_proj,decoder,super_res_first,super_res_last"
        for key in ["unclip.image_encoder.config", "unclip.image_encoder.class", "unclip.feature_extractor.config"] { writer.metadata[key] = nil }
        for name in joint.names where !name.hasPrefix("unclip.image_encoder.") {
            let info = try XCTUnwrap(joint.info(name))
            try writer.add(name, bytes: try joint.bytes(name), dtype: info.dtype, shape: info.shape)
        }
        return writer.serialized()
    }
}
