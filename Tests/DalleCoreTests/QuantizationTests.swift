import Foundation
import XCTest
@testable import DalleCore

/// q8_0 / q4_0 blocks against ggml's reference quantizers (tools/make_golden_quant.py),
/// quantized Linear layers against their dequantized f32 expansion, and the file format's
/// checks.
final class QuantizationTests: XCTestCase {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Golden/quant/quant.safetensors").path

    func testBlocksMatchGGMLsReferenceQuantizers() throws {
        let file = try SafetensorsFile(path: Self.golden)
        let x = try file.tensor("x")
        let rows = x.shape[0], cols = x.shape[1]
        for type in QuantizedType.allCases {
            var writer = SafetensorsWriter()
            try writer.add("w", x, quantizedAs: type)
            let ours = try writer.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
            XCTAssertEqual(try ours.bytes("w"), try file.bytes(type.rawValue), "\(type) blocks")
            XCTAssertEqual(try ours.shape(of: "w"), [rows, cols])
            XCTAssertEqual(try ours.tensor("w").scalars, try file.tensor(type.rawValue + "_dequantized").scalars, "\(type) values")
        }
    }

    /// A quantized Linear computes exactly what an f32 Linear of the dequantized weights
    /// computes, streaming (≤ 16 rows) and through the AVX2 packed GEMM, for partial panels too.
    /// (The AVX-512 VNNI path quantizes activations too: DotProductKernelTests.)
    func testQuantizedLinearMatchesItsDequantizedExpansion() throws {
        DotProductKernels.enabled = []
        defer { DotProductKernels.enabled = DotProductKernels.supported }
        var rng = TestRandom(state: 21)
        for type in QuantizedType.allCases {
            for (inputs, outputs) in [(64, 45), (96, 96), (32, 7)] {
                var writer = SafetensorsWriter()
                try writer.add("w", rng.tensor([outputs, inputs]), quantizedAs: type)
                let file = try writer.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
                let bias = Weight(rng.tensor([outputs]))
                let quantized = Linear(weight: try file.weight("w", shape: [outputs, inputs]), bias: bias)
                XCTAssertEqual(quantized.format, .quantized(type))
                let expanded = Linear(weight: Weight(try file.tensor("w")), bias: bias)
                for rows in [1, 2, 5, 16, 17, 40] {
                    let x = rng.tensor([rows, inputs]).scalars
                    XCTAssertEqual(quantized(x, rows: rows, pool: ThreadPool(threads: 2)),
                                   expanded(x, rows: rows, pool: ThreadPool(threads: 1)), "\(type) \(inputs)->\(outputs), \(rows) rows")
                }
            }
        }
    }

    func testBundleQuantizesLinearWeightsOnly() {
        XCTAssertTrue(TrainingSetup.isQuantizable("transformer.transformer.layers.layers.0.0.fn.fn.to_qkv.weight", shape: [768, 256]))
        XCTAssertTrue(TrainingSetup.isQuantizable("clip.transformer.resblocks.0.attn.in_proj_weight", shape: [384, 128]))
        XCTAssertFalse(TrainingSetup.isQuantizable("transformer.text_emb.weight", shape: [1000, 256]))
        XCTAssertFalse(TrainingSetup.isQuantizable("dvae.codebook.weight", shape: [1024, 256]))
        XCTAssertFalse(TrainingSetup.isQuantizable("clip.visual.proj", shape: [128, 64]))
        XCTAssertFalse(TrainingSetup.isQuantizable("transformer.to_logits.1.weight", shape: [1000, 250]))
        XCTAssertFalse(TrainingSetup.isQuantizable("dvae.encoder.blocks.input.w", shape: [64, 3, 7, 7]))
    }

    /// Quantized tensors whose metadata, size or scales are wrong are errors naming the tensor.
    func testMalformedQuantizedTensorsAreRejected() throws {
        var rng = TestRandom(state: 22)
        var writer = SafetensorsWriter()
        try writer.add("w", rng.tensor([4, 64]), quantizedAs: .q8_0)
        var bytes = writer.serialized()
        let good = try bytes.withUnsafeBytes { try SafetensorsFile(bytes: $0) }
        XCTAssertThrowsError(try good.weight("w", shape: [4, 32])) { XCTAssertTrue("\($0)".contains("expected [4, 32]"), "\($0)") }
        XCTAssertThrowsError(try good.weight("w", shape: [4, 64, 1, 1]))

        // A NaN scale (f16 0x7e00) in the second block of the first row.
        let dataStart = 8 + Int(bytes[0]) + Int(bytes[1]) << 8
        bytes[dataStart + 34] = 0x00
        bytes[dataStart + 35] = 0x7e
        let nan = try bytes.withUnsafeBytes { try SafetensorsFile(bytes: $0) }
        XCTAssertThrowsError(try nan.weight("w", shape: [4, 64])) { XCTAssertTrue("\($0)".contains("block 1"), "\($0)") }

        // A U8 tensor whose width is not a whole number of blocks, and an unknown type.
        for (quantization, width) in [("q8_0", 35), ("q7_1", 34)] {
            var odd = SafetensorsWriter()
            try odd.add("w", bytes: [UInt8](repeating: 0, count: 2 * width), dtype: .u8, shape: [2, width])
            odd.metadata[QuantizedType.metadataKey("w")] = quantization
            let file = try odd.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
            XCTAssertThrowsError(try file.weight("w", shape: [2, 32])) { XCTAssertTrue("\($0)".contains("'w'"), "\($0)") }
        }
    }

    func testQuantizingANonFiniteValueIsAnError() {
        var writer = SafetensorsWriter()
        var t = Tensor(zeros: [1, 32])
        t.scalars[3] = .infinity
        XCTAssertThrowsError(try writer.add("w", t, quantizedAs: .q4_0))
    }

    /// The cost of quantizing the golden DALLE-pytorch transformers (tools/make_golden_transformer.py):
    /// logits of the q8_0 / q4_0 bundles against the reference's, as the mean and largest absolute
    /// error over the logits' standard deviation (printed; the bounds are loose regressions checks).
    func testQuantizedGoldenTransformerLogits() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/transformer").path
        for name in ["defaults", "learned_pos", "options"] {
            let source = try SafetensorsFile(path: directory + "/\(name).safetensors")
            let reference = try SafetensorsFile(path: directory + "/\(name).ref.safetensors")
            let text = try reference.tensor("text").scalars.map { Int32($0) }
            let image = try reference.tensor("image").scalars.map { Int32($0) }
            let expected = try reference.tensor("logits").scalars.filter { $0 > -1e30 }
            let mean = expected.reduce(0, +) / Float(expected.count)
            let std = (expected.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(expected.count)).squareRoot()
            for (type, meanBound, maxBound) in [(QuantizedType.q8_0, Float(0.01), Float(0.08)), (.q4_0, 0.12, 0.8)] {
                var writer = SafetensorsWriter()
                writer.metadata = source.metadata
                var quantized = 0
                for tensorName in source.names {
                    let t = try source.tensor(tensorName)
                    if TrainingSetup.isQuantizable(tensorName, shape: t.shape) {
                        try writer.add(tensorName, t, quantizedAs: type)
                        quantized += 1
                    } else {
                        try writer.add(tensorName, t, as: .f32)
                    }
                }
                XCTAssertGreaterThan(quantized, 0)
                let file = try writer.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
                let model = try DalleTransformer(config: try TransformerConfig(metadata: file.metadata), weights: file)
                let logits = try model.logits(text: text, image: image, batch: 2, pool: ThreadPool(threads: 2)).scalars.filter { $0 > -1e30 }
                XCTAssertEqual(logits.count, expected.count)
                let errors = zip(logits, expected).map { abs($0 - $1) / std }
                let meanError = errors.reduce(0, +) / Float(errors.count), maxError = errors.max() ?? 0
                print("quantized golden transformer \(name) \(type.rawValue): \(quantized) tensors; logits error / std: mean \(meanError), max \(maxError)")
                XCTAssertLessThan(meanError, meanBound, "\(name) \(type)")
                XCTAssertLessThan(maxError, maxBound, "\(name) \(type)")
            }
        }
    }
}
