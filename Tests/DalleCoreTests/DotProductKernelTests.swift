import XCTest
@testable import DalleCore

/// `Linear`'s AVX-512 dot-product paths (bf16 weights with AVX-512 BF16, q8_0 and q4_0 weights
/// with VNNI, packed and streaming; `DotProductKernels`) against references written out here
/// with the same rounding, for any thread count, any grouping of rows and either kernel; and
/// their error against the f32 product. Skipped on CPUs without the instructions.
final class DotProductKernelTests: XCTestCase {
    /// A Linear [outputs, inputs] stored as `format` (bf16, q8_0 or q4_0), and the stored weight.
    private func linear(_ w: Tensor, bias: Tensor?, _ format: WeightFormat) throws -> (Linear, Weight) {
        var writer = SafetensorsWriter()
        if case let .quantized(type) = format { try writer.add("w", w, quantizedAs: type) } else { try writer.add("w", w, as: .bf16) }
        let file = try writer.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
        let weight = try file.weight("w", shape: w.shape)
        XCTAssertEqual(weight.format, format)
        return (Linear(weight: try file.weight("w", shape: w.shape), bias: bias.map { Weight($0) }), weight)
    }

    /// f32 rounded to the nearest bf16, ties to even (finite values).
    private func bf16(_ x: Float) -> Float {
        let bits = x.bitPattern
        return Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000)
    }

    /// The bf16 contract: activations rounded to bf16; per output, over input pairs in order, the
    /// odd input's product then the even one's added in f32 (each product exact); bias last.
    private func bf16Reference(_ x: [Float], rows: Int, _ w: Weight, bias: [Float]?) -> [Float] {
        let n = w.shape[0], k = w.shape[1]
        var y = [Float](repeating: 0, count: rows * n)
        for r in 0..<rows {
            for o in 0..<n {
                var acc: Float = 0
                for q in stride(from: 0, to: k, by: 2) {
                    if q + 1 < k { acc += bf16(x[r * k + q + 1]) * w.element(o * k + q + 1) }
                    acc += bf16(x[r * k + q]) * w.element(o * k + q)
                }
                y[r * n + o] = acc + (bias?[o] ?? 0)
            }
        }
        return y
    }

    /// The int8 contract: activations quantized per block of 32 (d = max|x| / 127, q = x · (127 /
    /// max|x|) to nearest even; a non-finite value makes d NaN); per output, each block's integer
    /// dot added as fma(dot, dw · dx, sum) in order; bias last. The stored weight is ggml's q8_0
    /// (per row and block an f16 d, 32 int8) or q4_0 (an f16 d, 16 bytes: value j in the low
    /// nibble of byte j, j + 16 in its high nibble, stored as q + 8).
    private func int8Reference(_ x: [Float], rows: Int, _ w: Weight, bias: [Float]?) -> [Float] {
        let n = w.shape[0], k = w.shape[1], blocks = k / 32
        let q4 = w.format == .quantized(.q4_0), blockBytes = q4 ? 18 : 34
        var y = [Float](repeating: 0, count: rows * n)
        for r in 0..<rows {
            var qx = [Int32](repeating: 0, count: k), dx = [Float](repeating: 0, count: blocks)
            for b in 0..<blocks {
                let block = x[(r * k + b * 32)..<(r * k + b * 32 + 32)]
                let amax = block.map(abs).max() ?? 0
                let inverse: Float = amax >= 0x1p-100 ? 127 / amax : 0
                for (i, v) in block.enumerated() { qx[b * 32 + i] = v.isFinite ? Int32((v * inverse).rounded(.toNearestOrEven)) : 0 }
                dx[b] = block.allSatisfy(\.isFinite) ? amax / 127 : .nan
            }
            for o in 0..<n {
                var acc: Float = 0
                for b in 0..<blocks {
                    let stored = w.base + o * (blocks * blockBytes) + b * blockBytes
                    let dw = Float(Float16(bitPattern: stored.loadUnaligned(as: UInt16.self)))
                    var dot: Int32 = 0
                    for i in 0..<32 {
                        let q: Int32
                        if q4 {
                            let byte = stored.load(fromByteOffset: 2 + i % 16, as: UInt8.self)
                            q = Int32(i < 16 ? byte & 15 : byte >> 4) - 8
                        } else {
                            q = Int32(stored.load(fromByteOffset: 2 + i, as: Int8.self))
                        }
                        dot += qx[b * 32 + i] * q
                    }
                    acc = acc.addingProduct(Float(dot), dw * dx[b])
                }
                y[r * n + o] = acc + (bias?[o] ?? 0)
            }
        }
        return y
    }

    /// The kernel against its reference, bit for bit, on odd shapes (partial panels, rows not a
    /// multiple of the 12-row groups, odd k), for 1, 2 and 3 threads; and rows 5..<rows computed
    /// alone (grouped differently) give the same rows. `rowCounts` past `Linear.streamingRows`
    /// take the packed kernel, the others the streaming one.
    private func checkKernel(_ format: WeightFormat, _ kernel: DotProductKernels, shapes: [(Int, Int)],
                             rowCounts: [Int] = [22, 29, 41],
                             reference: ([Float], Int, Weight, [Float]?) -> [Float]) throws {
        try XCTSkipUnless(DotProductKernels.supported.contains(kernel), "the CPU lacks the \(kernel) dot-product instructions")
        var rng = TestRandom(state: 31)
        for (inputs, outputs) in shapes {
            for withBias in [false, true] {
                let bias = withBias ? rng.tensor([outputs]) : nil
                let (layer, weight) = try linear(rng.tensor([outputs, inputs]), bias: bias, format)
                for rows in rowCounts {
                    let x = rng.array(rows * inputs)
                    let expected = reference(x, rows, weight, bias?.scalars)
                    for threads in [1, 2, 3] {
                        XCTAssertEqual(layer(x, rows: rows, pool: ThreadPool(threads: threads)).map(\.bitPattern), expected.map(\.bitPattern),
                                       "\(format) \(inputs)->\(outputs), \(rows) rows, \(threads) threads")
                    }
                    guard rows > 5 else { continue }
                    let tail = Array(x[(5 * inputs)...])
                    XCTAssertEqual(layer(tail, rows: rows - 5, pool: ThreadPool(threads: 2)), Array(expected[(5 * outputs)...]))
                }
            }
        }
    }

    func testBF16KernelMatchesItsReference() throws {
        try checkKernel(.bf16, .bf16, shapes: [(64, 96), (7, 45), (1, 3), (33, 32), (130, 70)], reference: bf16Reference)
    }

    func testInt8KernelMatchesItsReference() throws {
        for type in [QuantizedType.q8_0, .q4_0] {
            try checkKernel(.quantized(type), .int8, shapes: [(32, 7), (64, 45), (96, 96), (320, 33)], reference: int8Reference)
        }
    }

    /// The streaming kernel (1…16 rows, up to eight per pass) against the same reference.
    func testInt8StreamingKernelMatchesItsReference() throws {
        for type in [QuantizedType.q8_0, .q4_0] {
            try checkKernel(.quantized(type), .int8, shapes: [(32, 7), (64, 45), (96, 96), (160, 70)],
                            rowCounts: Array(1...Linear.streamingRows), reference: int8Reference)
        }
    }

    /// A quantized Linear gives the same bits for a row whatever the number of rows beside it:
    /// the streaming kernel (≤ 16 rows) and the packed one (more) compute the same sums.
    func testInt8StreamingAndPackedKernelsAgree() throws {
        try XCTSkipUnless(DotProductKernels.supported.contains(.int8))
        var rng = TestRandom(state: 34)
        for type in [QuantizedType.q8_0, .q4_0] {
            let (layer, _) = try linear(rng.tensor([70, 256]), bias: rng.tensor([70]), .quantized(type))
            let x = rng.array(40 * 256)
            let all = layer(x, rows: 40, pool: ThreadPool(threads: 2))
            for (first, count) in [(0, 1), (3, 7), (17, 8), (24, 16), (39, 1)] {
                let part = layer(Array(x[(first * 256)..<((first + count) * 256)]), rows: count, pool: ThreadPool(threads: 3))
                XCTAssertEqual(part.map(\.bitPattern), all[(first * 70)..<((first + count) * 70)].map(\.bitPattern), "\(type) rows \(first)..<\(first + count)")
            }
        }
    }

    /// A NaN or an infinity among a row's activations makes that row's outputs NaN (its block's
    /// scale is NaN), as the f32 product would make them non-finite; other rows are unaffected.
    /// Through the packed kernel (20 rows) and the streaming one (5 rows).
    func testInt8KernelPropagatesNonFiniteActivations() throws {
        try XCTSkipUnless(DotProductKernels.supported.contains(.int8))
        var rng = TestRandom(state: 32)
        for type in [QuantizedType.q8_0, .q4_0] {
            let (layer, _) = try linear(rng.tensor([40, 64]), bias: nil, .quantized(type))
            for bad in [Float.nan, .infinity, -.infinity] {
                for rows in [20, 5] {
                    var x = rng.array(rows * 64)
                    x[3 * 64 + 40] = bad
                    let y = layer(x, rows: rows, pool: ThreadPool(threads: 2))
                    XCTAssertTrue(y[(3 * 40)..<(4 * 40)].allSatisfy(\.isNaN), "\(type) \(bad) \(rows) rows")
                    XCTAssertTrue(y[..<(3 * 40)].allSatisfy(\.isFinite))
                    XCTAssertTrue(y[(4 * 40)...].allSatisfy(\.isFinite))
                }
            }
        }
    }

    /// The error the dot-product paths add to the AVX2 path's (the f32 product of the stored
    /// weights), on a random Linear 1024 → 512 over 64 rows: largest and mean absolute error over
    /// the largest |y| (printed, and bounded well above what was measured).
    func testErrorAgainstTheF32Product() throws {
        var rng = TestRandom(state: 33)
        let inputs = 1024, outputs = 512, rows = 64
        let x = rng.array(rows * inputs), w = rng.tensor([outputs, inputs])
        for (name, format, kernel, maxBound, meanBound) in [("bf16", WeightFormat.bf16, DotProductKernels.bf16, Float(4e-3), Float(1e-3)),
                                                            ("q8_0", .quantized(.q8_0), .int8, 2e-2, 5e-3),
                                                            ("q4_0", .quantized(.q4_0), .int8, 2e-2, 5e-3)] {
            guard DotProductKernels.supported.contains(kernel) else { continue }
            let (layer, _) = try linear(w, bias: nil, format)
            let fast = layer(x, rows: rows, pool: ThreadPool(threads: 2))
            DotProductKernels.enabled = []
            defer { DotProductKernels.enabled = DotProductKernels.supported }
            let exact = layer(x, rows: rows, pool: ThreadPool(threads: 2))
            let scale = exact.map(abs).max() ?? 1
            let errors = zip(fast, exact).map { abs($0 - $1) / scale }
            let maxError = errors.max() ?? 0, meanError = errors.reduce(0, +) / Float(errors.count)
            print("\(name) weights, \(kernel) dot-product path vs f32, Linear \(inputs)->\(outputs), \(rows) rows: error / max|y|: max \(maxError), mean \(meanError)")
            XCTAssertLessThan(maxError, maxBound)
            XCTAssertLessThan(meanError, meanBound)
        }
    }
}
