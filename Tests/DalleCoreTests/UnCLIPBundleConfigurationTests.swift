import XCTest
@testable import DalleCore

/// The metadata tools/convert_unclip.py wrote for the tiny pipeline (Golden/unclip/bundle_metadata).
final class UnCLIPBundleConfigurationTests: XCTestCase {
    func metadata() throws -> [String: String] { try UnCLIPGolden.file("bundle_metadata").metadata }

    func testReadsTheConvertersMetadata() throws {
        let m = try metadata()
        XCTAssertEqual(m["format"], "libdalle")
        XCTAssertEqual(m["components"], "unclip,tokenizer")
        let config = try UnCLIPBundleConfiguration(metadata: m)
        XCTAssertEqual(config.pipelineClass, "UnCLIPPipeline")
        XCTAssertEqual(config.parts, ["text_encoder", "prior", "text_proj", "decoder", "super_res_first", "super_res_last", "image_encoder"])
        XCTAssertEqual(config.priorScheduler, .karloPrior)
        XCTAssertEqual(config.decoderScheduler, .karloDecoder)
        XCTAssertEqual(config.superResolutionScheduler, .karloSuperResolution)
        XCTAssertEqual(config.embeddingWidth, 32)
        XCTAssertTrue(config.decoderSize == (8, 8) && config.superResolutionSize == (32, 32) && config.channels == 3)
        // The chain fixture's noise fits the layout the bundle implies.
        let layout = config.noiseLayout(images: 2, priorSteps: 25, decoderSteps: 25, superResolutionSteps: 7)
        XCTAssertEqual(layout, UnCLIPNoiseTests.layout)
        XCTAssertNoThrow(try UnCLIPNoise(layout: layout, tensors: try UnCLIPNoiseTests.recorded()))
    }

    /// The committed tiny pipeline (tools/convert_unclip.py --dtype f16): its metadata is the one
    /// above, its tensors are F16 (the tokenizer's merges U8), and its tokenizer gives the prompts'
    /// ids diffusers' CLIPTokenizer gave (which pads with the end token where ours pads with 0).
    func testTinyBundleAndItsTokenizer() throws {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        XCTAssertEqual(bundle.metadata, try metadata())
        let config = try UnCLIPBundleConfiguration(metadata: bundle.metadata)
        XCTAssertEqual(bundle.info("unclip.prior.clip_std"), TensorInfo(dtype: .f16, shape: [1, config.embeddingWidth]))
        XCTAssertEqual(bundle.info("unclip.decoder.conv_in.weight")?.shape, [16, config.channels, 3, 3])
        for name in bundle.names where name != "tokenizer.merges" {
            XCTAssertEqual(bundle.info(name)?.dtype, .f16, name)
            XCTAssertTrue(config.parts.contains { name.hasPrefix("unclip.\($0).") }, name)
        }
        XCTAssertGreaterThan(bundle.names.count, 500)
        let tokenizer = try Tokenizer(metadata: bundle.metadata, weights: bundle)
        let chain = try UnCLIPGolden.file("chain")
        let ids = try chain.tensor("input_ids"), mask = try chain.tensor("attention_mask")
        let prompts = try XCTUnwrap(chain.metadata["prompts"]).split(separator: "\"").enumerated()
            .filter { $0.offset % 2 == 1 }.map { String($0.element) }
        XCTAssertEqual(prompts, ["a red cat on the mat", "two blue squares"])
        for (i, prompt) in prompts.enumerated() {
            let ours = try tokenizer.tokenizeCLIP(prompt, contextLength: 16)
            let row = UnCLIPGolden.item(ids, i).scalars.map { Int32($0) }
            XCTAssertEqual(ours.count, Int(UnCLIPGolden.item(mask, i).scalars.reduce(0, +)), prompt)
            XCTAssertEqual(Array(ours.ids.prefix(ours.count)), Array(row.prefix(ours.count)), prompt)
        }
        let uncond = try chain.tensor("uncond_input_ids").scalars.map { Int32($0) }
        XCTAssertEqual(Array(try tokenizer.tokenizeCLIP("", contextLength: 16).ids.prefix(2)), Array(uncond.prefix(2)))
    }

    /// Karlo's image-variations pipeline converted alone: no prior, the embedding width from the image encoder.
    func testReadsAVariationsPipelinesMetadata() throws {
        let m = try UnCLIPGolden.file("bundle_metadata_variation").metadata
        let config = try UnCLIPBundleConfiguration(metadata: m)
        XCTAssertEqual(config.pipelineClass, "UnCLIPImageVariationPipeline")
        XCTAssertEqual(config.parts, ["text_encoder", "text_proj", "decoder", "super_res_first", "super_res_last", "image_encoder"])
        XCTAssertNil(config.priorScheduler)
        XCTAssertEqual(config.embeddingWidth, 32)
        var bad = m
        bad["unclip.parts"] = "text_encoder,text_proj,decoder,super_res_first,super_res_last"
        XCTAssertThrowsError(try UnCLIPBundleConfiguration(metadata: bad)) { XCTAssertTrue("\($0)".contains("lacks its 'image_encoder' part")) }
    }

    func testBadMetadataIsAnError() throws {
        let good = try metadata()
        func assertBad(_ key: String, _ value: String?, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
            var m = good
            m[key] = value
            XCTAssertThrowsError(try UnCLIPBundleConfiguration(metadata: m), file: file, line: line) { error in
                XCTAssertTrue("\(error)".contains(fragment), "'\(error)' lacks '\(fragment)'", file: file, line: line)
            }
        }
        func edited(_ key: String, _ edit: (inout String) -> Void) -> String {
            var text = good[key]!
            edit(&text)
            return text
        }
        assertBad("unclip.pipeline_class", "StableDiffusionPipeline", "unsupported: unCLIP pipeline class")
        assertBad("unclip.pipeline_class", nil, "lacks 'unclip.pipeline_class'")
        assertBad("unclip.parts", "text_encoder,prior,text_proj,decoder,super_res_first", "lacks its 'super_res_last' part")
        assertBad("unclip.decoder.config", nil, "lacks 'unclip.decoder.config'")
        assertBad("unclip.decoder.config", "{", "not JSON")
        assertBad("unclip.decoder.config", "[]", "not a JSON object")
        assertBad("unclip.decoder.config", edited("unclip.decoder.config") { $0 = $0.replacingOccurrences(of: "\"sample_size\": 8", with: "\"sample_size\": 0") },
                  "'sample_size' is 0")
        assertBad("unclip.prior.config", edited("unclip.prior.config") { $0 = $0.replacingOccurrences(of: "\"embedding_dim\": 32", with: "\"embedding_dim\": \"32\"") },
                  "'embedding_dim'")
        assertBad("unclip.super_res_first.config", edited("unclip.super_res_first.config") { $0 = $0.replacingOccurrences(of: "\"in_channels\": 6", with: "\"in_channels\": 4") },
                  "takes 4 channels")
        assertBad("unclip.super_res_last.config", edited("unclip.super_res_last.config") { $0 = $0.replacingOccurrences(of: "\"sample_size\": 32", with: "\"sample_size\": 64") },
                  "super_res_last")
        assertBad("unclip.decoder_scheduler.config", #"{"beta_schedule": "linear"}"#, "beta_schedule")
        assertBad("unclip.decoder_scheduler.config", #"{"num_train_timesteps": 1}"#, "num_train_timesteps 1")
        assertBad("unclip.prior_scheduler.config", nil, "lacks 'unclip.prior_scheduler.config'")
        // A sample_size given as [height, width].
        var m = good
        m["unclip.decoder.config"] = edited("unclip.decoder.config") { $0 = $0.replacingOccurrences(of: "\"sample_size\": 8", with: "\"sample_size\": [8, 12]") }
        XCTAssertTrue(try UnCLIPBundleConfiguration(metadata: m).decoderSize == (8, 12))
    }
}
