import Foundation
import XCTest
@testable import DalleCore

/// The tiny unCLIP bundle (Golden/unclip/tiny_unclip_f16) damaged every way a file can be: truncated,
/// tensors of another shape or dtype, missing or extra, configs cut or edited, random bytes in the
/// header. Every load either succeeds or throws a `DalleError`; none traps.
final class UnCLIPLoaderFuzzTests: XCTestCase {
    static func bundleBytes() throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: UnCLIPGolden.directory + "/tiny_unclip_f16.safetensors")))
    }

    /// Loads `bytes` as a model: nil when it loads, else the error's text (a non-DalleError fails).
    func load(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> String? {
        do {
            _ = try bytes.withUnsafeBytes { try DalleModel(bytes: $0) }
            return nil
        } catch let error as DalleError {
            return "\(error)"
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
            return "\(error)"
        }
    }

    /// The bundle rewritten with `edit` applied to a writer holding its tensors (stored bytes as they are).
    func rewritten(_ edit: (SafetensorsFile, inout SafetensorsWriter) throws -> Void, skipping skip: (String) -> Bool = { _ in false }) throws -> [UInt8] {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        var writer = SafetensorsWriter()
        writer.metadata = bundle.metadata
        for name in bundle.names where !skip(name) {
            let info = try XCTUnwrap(bundle.info(name))
            try writer.add(name, bytes: try bundle.bytes(name), dtype: info.dtype, shape: info.shape)
        }
        try edit(bundle, &writer)
        return writer.serialized()
    }

    func assertRejected(_ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let message = load(bytes, file: file, line: line) else { return XCTFail("loaded; expected '\(fragment)'", file: file, line: line) }
        XCTAssertTrue(message.contains(fragment), "'\(message)' lacks '\(fragment)'", file: file, line: line)
    }

    func testIntactBundleLoadsWithEveryPart() throws {
        let valid = try Self.bundleBytes()
        XCTAssertNil(load(valid))
        let model = try valid.withUnsafeBytes { try DalleModel(bytes: $0) }
        XCTAssertNotNil(model.unclip?.clip, "the image encoder as CLIP")
        XCTAssertNotNil(model.clip, "keep_best finds the unCLIP bundle's CLIP")
    }

    func testTruncatedBundles() throws {
        let valid = try Self.bundleBytes()
        let headerEnd = 8 + valid.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        for cut in [0, 7, 8, 100, headerEnd - 1, headerEnd, headerEnd + 1, headerEnd + 5000, valid.count / 2, valid.count - 1] {
            XCTAssertNotNil(load(Array(valid.prefix(cut))), "cut at \(cut)")
        }
    }

    func testTensorsOfAnotherShapeDtypeMissingOrExtra() throws {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        // One tensor of every part, and every 29th of the rest.
        let parts = ["text_encoder", "prior", "text_proj", "decoder", "super_res_first", "super_res_last", "image_encoder"]
        let names = bundle.names.filter { $0.hasPrefix("unclip.") }
        let picked = Set(parts.compactMap { part in names.first { $0.hasPrefix("unclip.\(part).") } })
            .union(names.enumerated().filter { $0.offset % 29 == 0 }.map(\.element)).sorted()
        XCTAssertGreaterThan(picked.count, 20)
        for name in picked {
            let info = try XCTUnwrap(bundle.info(name))
            let count = info.shape.reduce(1, *)
            // Another shape: flattened (or, for a vector, one value longer).
            let shape = info.shape.count > 1 ? [count] : [count + 1]
            let bytes = try rewritten({ file, writer in
                let values = try file.tensor(name).scalars + (info.shape.count > 1 ? [] : [0])
                try writer.add(name, Tensor(shape: shape, scalars: values), as: .f16)
            }, skipping: { $0 == name })
            assertRejected(bytes, name)
            // Another dtype: the f16 bits as U8 (twice the values) is another shape; F32 of the same values loads;
            // I8 of the same shape is converted (a load, or an error such as a bad variance, never a trap).
            assertRejected(try rewritten({ file, writer in
                try writer.add(name, bytes: try file.bytes(name), dtype: .u8, shape: [count * 2])
            }, skipping: { $0 == name }), name)
            XCTAssertNil(load(try rewritten({ file, writer in try writer.add(name, try file.tensor(name), as: .f32) }, skipping: { $0 == name })))
            _ = load(try rewritten({ _, writer in
                try writer.add(name, bytes: [UInt8](repeating: 0xF3, count: count), dtype: .i8, shape: info.shape)
            }, skipping: { $0 == name }))
            // Missing.
            assertRejected(try rewritten({ _, _ in }, skipping: { $0 == name }), name)
        }
        // Extra tensors under a part's prefix.
        for part in parts {
            assertRejected(try rewritten { _, writer in try writer.add("unclip.\(part).extra.weight", Tensor(zeros: [2])) }, "extra")
        }
    }

    func testEditedConfigsAndMetadata() throws {
        let bundle = try UnCLIPGolden.file("tiny_unclip_f16")
        let keys = bundle.metadata.keys.filter { $0.hasPrefix("unclip.") }.sorted()
        for key in keys {
            let text = bundle.metadata[key]!
            for edited in [String(text.prefix(text.count / 2)), "{}", "[]", "", "null", text.replacingOccurrences(of: "1", with: "-1"),
                           text.replacingOccurrences(of: "2", with: "999999999999"), text.replacingOccurrences(of: "true", with: "false")] {
                _ = load(try rewritten { _, writer in writer.metadata[key] = edited })
            }
            _ = load(try rewritten { _, writer in writer.metadata[key] = nil })
        }
        assertRejected(try rewritten { _, writer in writer.metadata["unclip.parts"] = "text_encoder,text_proj" }, "lacks its")
        assertRejected(try rewritten { _, writer in writer.metadata["unclip.image_encoder.config"] = nil }, "unclip.image_encoder.config")
        assertRejected(try rewritten { _, writer in
            writer.metadata["unclip.feature_extractor.config"] = #"{"image_mean": [0.5, 0.5, 0.5]}"#
        }, "image_mean")
    }

    func testRandomHeaderBytesNeverTrap() throws {
        let valid = try Self.bundleBytes()
        let headerEnd = 8 + valid.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        var random = SplitMix64(seed: 0x5EED)
        func next(_ n: Int) -> Int { Int(random.next() % UInt64(n)) }
        let printable = Array("{}[]\":,0123456789-.eE \\u".utf8)
        var loaded = 0
        for _ in 0..<300 {
            var bytes = valid
            for _ in 0..<(1 + next(3)) {
                bytes[8 + next(headerEnd - 8)] = next(2) == 0 ? printable[next(printable.count)] : UInt8(next(256))
            }
            if load(bytes) == nil { loaded += 1 }
        }
        XCTAssertLessThan(loaded, 300)
    }

    /// Requests outside what the pipeline takes: each a clear error.
    func testBadRequestsAreClearErrors() throws {
        let pipeline = try UnCLIPVariationTests.pipeline()
        let pixels = [UInt8](repeating: 0, count: 12)
        try pixels.withUnsafeBufferPointer { buffer in
            let empty = ImageView(width: 0, height: 2, channels: 3, pixels: buffer)
            XCTAssertThrowsError(try pipeline.vary(images: [empty])) { XCTAssertTrue("\($0)".contains("sides must be"), "\($0)") }
            let short = ImageView(width: 4, height: 4, channels: 3, pixels: buffer)
            XCTAssertThrowsError(try pipeline.vary(images: [short])) { XCTAssertTrue("\($0)".contains("needs 48"), "\($0)") }
        }
        for (steps, message) in [(0, "0 decoder steps"), (1001, "1001 decoder steps")] {
            var options = UnCLIPPipeline.Options()
            options.decoderSteps = steps
            XCTAssertThrowsError(try pipeline.generate(prompts: ["x"], options: options)) { XCTAssertTrue("\($0)".contains(message), "\($0)") }
        }
        for scale: Float in [0, -1, .infinity, .nan] {
            var options = UnCLIPPipeline.Options()
            options.decoderGuidance = scale
            XCTAssertThrowsError(try pipeline.interpolate(from: .prompt("a"), to: .prompt("b"), frames: 2, options: options)) {
                XCTAssertTrue("\($0)".contains("guidance scale"), "\($0)")
            }
        }
        var nan = Tensor(zeros: [1, 3, 8, 8])
        nan.scalars[3] = .nan
        XCTAssertThrowsError(try pipeline.generate(prompts: ["x"], noise: ["decoder_latents": nan])) {
            XCTAssertTrue("\($0)".contains("'decoder_latents' holds nan at index 3"), "\($0)")
        }
    }
}
