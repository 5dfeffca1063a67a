import XCTest
@testable import DalleCore

/// |x - ref| ≤ 1e-5 + 1e-4 · scale, where `scale` bounds the magnitude of the terms summed.
private func assertClose(_ x: [Float], _ ref: [Double], scale: [Double], _ what: String,
                         file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(x.count, ref.count, what, file: file, line: line)
    for i in 0..<min(x.count, ref.count) where abs(Double(x[i]) - ref[i]) > 1e-5 + 1e-4 * scale[i] {
        XCTFail("\(what): element \(i) is \(x[i]), expected \(ref[i])", file: file, line: line)
        return
    }
}

final class KernelTests: XCTestCase {
    /// Runs gemm on padded row-major buffers; returns C (ld = ldc) for every thread count asked.
    private func runGEMM(m: Int, n: Int, k: Int, a: [Float], lda: Int, b: [Float], ldb: Int,
                         c0: [Float], ldc: Int, accumulate: Bool, threads: Int) -> [Float] {
        var c = c0
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeMutableBufferPointer { cp in
                    gemm(m: m, n: n, k: k, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb,
                         c: cp.baseAddress!, ldc: ldc, accumulate: accumulate,
                         pool: ThreadPool(threads: threads))
                }
            }
        }
        return c
    }

    private func checkGEMM(m: Int, n: Int, k: Int, accumulate: Bool, rng: inout TestRandom) {
        let lda = k + 3, ldb = n + 5, ldc = n + 2
        let a = rng.array(max(1, m * lda)), b = rng.array(max(1, k * ldb)), c0 = rng.array(m * ldc)
        let c = runGEMM(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c0: c0, ldc: ldc,
                        accumulate: accumulate, threads: 2)
        var ref = c0.map(Double.init), scale = [Double](repeating: 0, count: c0.count)
        for i in 0..<m {
            for j in 0..<n {
                var s = accumulate ? Double(c0[i * ldc + j]) : 0, mag = abs(s)
                for p in 0..<k {
                    let t = Double(a[i * lda + p]) * Double(b[p * ldb + j])
                    s += t; mag += abs(t)
                }
                ref[i * ldc + j] = s; scale[i * ldc + j] = mag
            }
        }
        assertClose(c, ref, scale: scale, "gemm m=\(m) n=\(n) k=\(k) accumulate=\(accumulate)")
    }

    func testGEMMMatchesReferenceOnAwkwardSizes() {
        var rng = TestRandom(state: 7)
        for m in [1, 7, 17, 65, 130] {
            for n in [1, 7, 17, 33, 130] {
                for k in [1, 17, 300] {
                    checkGEMM(m: m, n: n, k: k, accumulate: m % 2 == 1, rng: &rng)
                }
            }
        }
        // Crossing the MC and NC blocks, and k = 0 (C becomes 0, or stays when accumulating).
        checkGEMM(m: 151, n: 40, k: 20, accumulate: false, rng: &rng)
        checkGEMM(m: 7, n: 3100, k: 9, accumulate: true, rng: &rng)
        checkGEMM(m: 5, n: 6, k: 0, accumulate: false, rng: &rng)
        checkGEMM(m: 5, n: 6, k: 0, accumulate: true, rng: &rng)
    }

    func testGEMMIsBitIdenticalForAnyThreadCount() {
        var rng = TestRandom(state: 11)
        // Wide (split over columns) and tall (split over rows), both big enough to use 4 threads.
        for (m, n, k) in [(100, 520, 300), (400, 40, 600)] {
            let a = rng.array(m * k), b = rng.array(k * n), c0 = [Float](repeating: 0, count: m * n)
            let one = runGEMM(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c0: c0, ldc: n,
                              accumulate: false, threads: 1)
            for threads in [2, 3, 4] {
                let c = runGEMM(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c0: c0, ldc: n,
                                accumulate: false, threads: threads)
                XCTAssertEqual(c, one, "gemm \(m)x\(n)x\(k) with \(threads) threads")
            }
        }
    }

    func testParallelForEachCallerFirstRunsEveryItemOnceAndTheFirstOnTheCaller() {
        let caller = pthread_self()
        for threads in 1...4 {
            for count in 0...6 {
                var runs = [Int](repeating: 0, count: count), firstOnCaller = false
                runs.withUnsafeMutableBufferPointer { out in
                    ThreadPool(threads: threads).parallelForEachCallerFirst(count) { i in
                        out[i] += 1
                        if i == 0 { firstOnCaller = pthread_equal(pthread_self(), caller) != 0 }
                    }
                }
                XCTAssertEqual(runs, [Int](repeating: 1, count: count), "\(count) items on \(threads) threads")
                XCTAssertEqual(firstOnCaller, count > 0, "\(count) items on \(threads) threads")
            }
        }
    }

    func testGEMMTransposedOperandsMatchTransposedCopies() {
        var rng = TestRandom(state: 13)
        // Edge tiles, several k blocks, and a size split over both threads; padded leading dimensions.
        for (m, n, k) in [(7, 17, 5), (65, 33, 300), (151, 40, 520), (20, 700, 64)] {
            let a = rng.array(m * k), b = rng.array(k * n), c0 = rng.array(m * n)
            let lda = m + 3, ldb = k + 2
            var aT = [Float](repeating: 0, count: k * lda), bT = [Float](repeating: 0, count: n * ldb)
            for i in 0..<m { for p in 0..<k { aT[p * lda + i] = a[i * k + p] } }
            for p in 0..<k { for j in 0..<n { bT[j * ldb + p] = b[p * n + j] } }
            for accumulate in [false, true] {
                let plain = runGEMM(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c0: c0, ldc: n,
                                    accumulate: accumulate, threads: 2)
                for (ta, tb) in [(true, false), (false, true), (true, true)] {
                    var c = c0
                    (ta ? aT : a).withUnsafeBufferPointer { ap in (tb ? bT : b).withUnsafeBufferPointer { bp in
                        c.withUnsafeMutableBufferPointer { cp in
                            gemm(m: m, n: n, k: k, a: ap.baseAddress!, lda: ta ? lda : k, transposeA: ta,
                                 b: bp.baseAddress!, ldb: tb ? ldb : n, transposeB: tb, c: cp.baseAddress!, ldc: n,
                                 accumulate: accumulate, pool: ThreadPool(threads: 2))
                        }
                    } }
                    XCTAssertEqual(c, plain, "gemm \(m)x\(n)x\(k) transposeA \(ta) transposeB \(tb)")
                }
            }
        }
    }

    /// Naive convolution in Double: y = residual + scale · (conv(relu?(x)) + bias); also the
    /// magnitude of the summed terms.
    private func referenceConv(_ x: Tensor, weight: Tensor, bias: Tensor, relu: Bool,
                               residual: Tensor?, scale: Float, stride: Int = 1, padding: Int? = nil) -> ([Double], [Double]) {
        let n = x.shape[0], cin = x.shape[1], h = x.shape[2], w = x.shape[3]
        let cout = weight.shape[0], k = weight.shape[2], pad = padding ?? (k - 1) / 2
        let oh = (h + 2 * pad - k) / stride + 1, ow = (w + 2 * pad - k) / stride + 1
        var y = [Double](repeating: 0, count: n * cout * oh * ow), mag = y
        for b in 0..<n {
            for o in 0..<cout {
                for yy in 0..<oh {
                    for xx in 0..<ow {
                        var s = Double(bias.scalars[o]), m = abs(s)
                        for c in 0..<cin {
                            for ky in 0..<k {
                                for kx in 0..<k {
                                    let sy = yy * stride + ky - pad, sx = xx * stride + kx - pad
                                    if sy < 0 || sy >= h || sx < 0 || sx >= w { continue }
                                    var v = x.scalars[((b * cin + c) * h + sy) * w + sx]
                                    if relu { v = max(v, 0) }
                                    let t = Double(v) * Double(weight.scalars[((o * cin + c) * k + ky) * k + kx])
                                    s += t; m += abs(t)
                                }
                            }
                        }
                        let i = ((b * cout + o) * oh + yy) * ow + xx
                        let r = residual.map { Double($0.scalars[i]) } ?? 0
                        y[i] = r + Double(scale) * s
                        mag[i] = abs(r) + abs(Double(scale)) * m
                    }
                }
            }
        }
        return (y, mag)
    }

    func testConv2DMatchesReference() throws {
        var rng = TestRandom(state: 3)
        // (batch, cin, cout, k, h, w, relu, residual, scale): odd sizes, rows wider and
        // narrower than a 16-pixel panel, and cin·k·k past one 256-deep block.
        let cases: [(Int, Int, Int, Int, Int, Int, Bool, Bool, Float)] = [
            (1, 3, 5, 1, 5, 7, false, false, 1),
            (2, 4, 7, 3, 9, 13, true, false, 1),
            (1, 3, 13, 7, 11, 9, false, true, 0.25),
            (1, 5, 6, 3, 3, 32, true, true, 1.0 / 64),
            (1, 40, 9, 3, 6, 20, true, false, 1),
            (2, 300, 8, 1, 4, 17, true, true, 0.5),
            (1, 2, 3, 7, 2, 3, false, false, 1),
        ]
        for (n, cin, cout, k, h, w, relu, withResidual, scale) in cases {
            let x = rng.tensor([n, cin, h, w])
            let weight = rng.tensor([cout, cin, k, k]), bias = rng.tensor([cout])
            let residual = withResidual ? rng.tensor([n, cout, h, w]) : nil
            let conv = try Conv2d(weight: weight, bias: bias)
            let y = conv2d(x, conv, reluInput: relu, residual: residual, scale: scale, pool: ThreadPool(threads: 2))
            XCTAssertEqual(y.shape, [n, cout, h, w])
            let (ref, mag) = referenceConv(x, weight: weight, bias: bias, relu: relu, residual: residual, scale: scale)
            assertClose(y.scalars, ref, scale: mag, "conv k=\(k) \(cin)->\(cout) at \(h)x\(w)")
        }
    }

    /// Strided and unpadded convolutions (im2col materialised a band of output rows at a time; the
    /// 256-row case spans several bands) against the direct sum.
    func testStridedConv2DMatchesReference() throws {
        var rng = TestRandom(state: 11)
        // (batch, cin, cout, k, stride, padding, h, w, relu, residual)
        let cases: [(Int, Int, Int, Int, Int, Int, Int, Int, Bool, Bool)] = [
            (1, 3, 5, 4, 2, 1, 9, 12, true, false),
            (2, 4, 3, 3, 2, 0, 8, 7, false, true),
            (1, 2, 7, 2, 1, 0, 5, 6, false, false),
            (2, 16, 6, 4, 2, 1, 256, 260, true, true),
        ]
        for (n, cin, cout, k, stride, padding, h, w, relu, withResidual) in cases {
            let x = rng.tensor([n, cin, h, w])
            let weight = rng.tensor([cout, cin, k, k]), bias = rng.tensor([cout])
            let conv = try Conv2d(weight: weight, bias: bias, stride: stride, padding: padding)
            let (oh, ow) = (conv.outputSize(h), conv.outputSize(w))
            let residual = withResidual ? rng.tensor([n, cout, oh, ow]) : nil
            let y = conv2d(x, conv, reluInput: relu, residual: residual, scale: 0.5, pool: ThreadPool(threads: 2))
            XCTAssertEqual(y.shape, [n, cout, oh, ow])
            let (ref, mag) = referenceConv(x, weight: weight, bias: bias, relu: relu, residual: residual, scale: 0.5,
                                           stride: stride, padding: padding)
            assertClose(y.scalars, ref, scale: mag, "conv k=\(k) stride \(stride) padding \(padding) at \(h)x\(w)")
            XCTAssertEqual(conv2d(x, conv, reluInput: relu, residual: residual, scale: 0.5, pool: ThreadPool(threads: 3)), y)
        }
    }

    /// `nn.ConvTranspose2d` against the direct scatter (y[i·s − p + k] += w[k] · x[i]), bit-identical for
    /// any thread count; the 128-row case spans several col2im bands.
    func testConvTranspose2DMatchesReference() throws {
        var rng = TestRandom(state: 13)
        // (batch, cin, cout, k, stride, padding, h, w, relu)
        let cases: [(Int, Int, Int, Int, Int, Int, Int, Int, Bool)] = [
            (1, 3, 5, 4, 2, 1, 5, 7, true),
            (2, 6, 4, 3, 2, 0, 4, 5, false),
            (1, 5, 3, 3, 1, 1, 6, 3, false),
            (1, 8, 16, 4, 2, 1, 128, 70, true),
        ]
        for (n, cin, cout, k, stride, padding, h, w, relu) in cases {
            let x = rng.tensor([n, cin, h, w])
            let weight = rng.tensor([cin, cout, k, k]), bias = rng.tensor([cout])
            let conv = try ConvTranspose2d(weight: Weight(weight), bias: Weight(bias), stride: stride, padding: padding)
            let (oh, ow) = (conv.outputSize(h), conv.outputSize(w))
            let y = convTranspose2d(x, conv, reluInput: relu, pool: ThreadPool(threads: 2))
            XCTAssertEqual(y.shape, [n, cout, oh, ow])
            var ref = [Double](repeating: 0, count: n * cout * oh * ow), mag = ref
            for b in 0..<n {
                for o in 0..<cout {
                    for i in 0..<(oh * ow) { ref[(b * cout + o) * oh * ow + i] = Double(bias.scalars[o]) }
                    for i in 0..<(oh * ow) { mag[(b * cout + o) * oh * ow + i] = abs(Double(bias.scalars[o])) }
                    for c in 0..<cin { for iy in 0..<h { for ix in 0..<w { for ky in 0..<k { for kx in 0..<k {
                        let oy = iy * stride - padding + ky, ox = ix * stride - padding + kx
                        if oy < 0 || oy >= oh || ox < 0 || ox >= ow { continue }
                        var v = x.scalars[((b * cin + c) * h + iy) * w + ix]
                        if relu { v = max(v, 0) }
                        let t = Double(v) * Double(weight.scalars[((c * cout + o) * k + ky) * k + kx])
                        ref[((b * cout + o) * oh + oy) * ow + ox] += t
                        mag[((b * cout + o) * oh + oy) * ow + ox] += abs(t)
                    } } } } }
                }
            }
            assertClose(y.scalars, ref, scale: mag, "transposed conv k=\(k) stride \(stride) padding \(padding) at \(h)x\(w)")
            XCTAssertEqual(convTranspose2d(x, conv, reluInput: relu, pool: ThreadPool(threads: 3)), y)
        }
        XCTAssertThrowsError(try ConvTranspose2d(weight: Weight(Tensor(zeros: [4, 3, 4, 4])), bias: Weight(Tensor(zeros: [4])),
                                                 stride: 2, padding: 1))
        XCTAssertThrowsError(try ConvTranspose2d(weight: Weight(Tensor(zeros: [4, 3, 4, 4])), bias: nil, stride: 0, padding: 1))
    }

    /// The weight gradient's operand im2col(x)ᵀ, gathered while packing, gives bit for bit the
    /// product with the materialised matrix (packing only copies values).
    func testTransposedImageOperandMatchesMaterialisedIm2col() {
        var rng = TestRandom(state: 9)
        // (cin, cout, k, h, w, relu): pixels past one 256-deep block, taps not a multiple of 16.
        for (cin, cout, k, h, w, relu) in [(3, 5, 3, 17, 20, true), (2, 7, 7, 5, 9, false), (20, 4, 1, 6, 13, true), (5, 13, 3, 3, 40, false)] {
            let x = rng.tensor([cin, h, w]), dy = rng.tensor([cout, h * w]), start = rng.tensor([cout, cin * k * k])
            let pad = (k - 1) / 2, depth = cin * k * k
            var columns = [Float](repeating: 0, count: h * w * depth)  // row y·w + x, column (c·k + ky)·k + kx
            for y in 0..<h { for xx in 0..<w { for c in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                let sy = y + ky - pad, sx = xx + kx - pad
                let v = sy >= 0 && sy < h && sx >= 0 && sx < w ? x.scalars[(c * h + sy) * w + sx] : 0
                columns[(y * w + xx) * depth + (c * k + ky) * k + kx] = relu ? max(v, 0) : v
            } } } } }
            var expected = start.scalars, got = start.scalars
            gemm(m: cout, n: depth, k: h * w, a: dy.scalars, lda: h * w, b: columns, ldb: depth, c: &expected, ldc: depth,
                 accumulate: true, pool: ThreadPool(threads: 2))
            x.scalars.withUnsafeBufferPointer { xp in dy.scalars.withUnsafeBufferPointer { g in got.withUnsafeMutableBufferPointer { c in
                gemmDriver(m: cout, n: depth, k: h * w, a: .matrix(g.baseAddress!, ld: h * w),
                           b: .transposedImage(xp.baseAddress!, height: h, width: w, kernel: k, relu: relu),
                           c: c.baseAddress!, ldc: depth, accumulate: true, epilogue: nil, pool: ThreadPool(threads: 2))
            } } }
            XCTAssertEqual(got, expected, "k=\(k) \(cin)->\(cout) at \(h)x\(w)")
        }
    }

    /// The transformer's Linear streams up to 16 rows, in pairs, through its weight panels (more
    /// through the packed GEMM): every streamed row's result is bit for bit its result alone, and
    /// each row close to a double-precision reference, for widths that leave partial panels.
    func testLinearRowsMatchOneRowAtATime() {
        var rng = TestRandom(state: 11)
        for (inputs, outputs) in [(24, 45), (64, 96), (7, 10)] {
            let w = rng.tensor([outputs, inputs]), b = rng.tensor([outputs])
            let linear = Linear(weight: Weight(w), bias: Weight(b))
            for rows in [1, 2, 3, 4, 5, 7, 8, 9, 16, 20] {
                let x = rng.array(rows * inputs)
                var together = [Float](repeating: 0, count: rows * outputs)
                x.withUnsafeBufferPointer { xp in together.withUnsafeMutableBufferPointer { y in
                    linear.apply(xp.baseAddress!, rows: rows, into: y.baseAddress!, pool: ThreadPool(threads: 2))
                } }
                for r in 0..<rows {
                    var alone = [Float](repeating: 0, count: outputs)
                    x.withUnsafeBufferPointer { xp in alone.withUnsafeMutableBufferPointer { y in
                        linear.apply(xp.baseAddress! + r * inputs, rows: 1, into: y.baseAddress!, pool: ThreadPool(threads: 1))
                    } }
                    if rows <= Linear.streamingRows {
                        XCTAssertEqual(Array(together[(r * outputs)..<((r + 1) * outputs)]), alone, "row \(r) of \(rows), \(inputs)->\(outputs)")
                    }
                    let reference = (0..<outputs).map { o in
                        (0..<inputs).reduce(Double(b.scalars[o])) { $0 + Double(x[r * inputs + $1]) * Double(w.scalars[o * inputs + $1]) }
                    }
                    assertClose(Array(together[(r * outputs)..<((r + 1) * outputs)]), reference, scale: [Double](repeating: Double(inputs), count: outputs),
                                "row \(r) of \(rows)")
                }
            }
        }
    }

    /// The AVX-512 streaming kernel (up to eight rows per pass over a panel) gives bit for bit
    /// what the portable row-pair kernel gives: every stored format, widths that leave partial
    /// panels, 1…16 rows, with and without a bias, on 1 and 2 threads.
    func testAVX512StreamingKernelIsBitIdenticalToThePortableOne() throws {
        guard StreamingKernel.best == .avx512 else { throw XCTSkip("this CPU has no AVX-512 (or DALLE_SIMD=avx2)") }
        // Quantized weights would take the VNNI kernel, which rounds the activations.
        DotProductKernels.enabled = []
        defer { DotProductKernels.enabled = DotProductKernels.supported }
        var rng = TestRandom(state: 14)
        let formats: [(String, (inout SafetensorsWriter, Tensor) throws -> Void)] = [
            ("f32", { try $0.add("w", $1, as: .f32) }), ("f16", { try $0.add("w", $1, as: .f16) }),
            ("bf16", { try $0.add("w", $1, as: .bf16) }),
            ("q8_0", { try $0.add("w", $1, quantizedAs: .q8_0) }), ("q4_0", { try $0.add("w", $1, quantizedAs: .q4_0) }),
        ]
        for (name, add) in formats {
            let quantized = name.hasPrefix("q")
            for (inputs, outputs) in quantized ? [(64, 45), (32, 7), (96, 96), (128, 70)] : [(24, 45), (7, 10), (64, 96), (33, 70)] {
                var writer = SafetensorsWriter()
                try add(&writer, rng.tensor([outputs, inputs]))
                let file = try writer.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
                for bias in [nil, Weight(rng.tensor([outputs]))] {
                    let linear = Linear(weight: try file.weight("w", shape: [outputs, inputs]), bias: bias)
                    for rows in 1...Linear.streamingRows {
                        let x = rng.array(rows * inputs)
                        func run(_ kernel: StreamingKernel, threads: Int) -> [UInt32] {
                            var y = [Float](repeating: .nan, count: rows * outputs)
                            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                                linear.apply(xp.baseAddress!, rows: rows, into: yp.baseAddress!, pool: ThreadPool(threads: threads),
                                             streaming: kernel)
                            } }
                            return y.map(\.bitPattern)
                        }
                        let portable = run(.portable, threads: 1)
                        for threads in [1, 2] {
                            XCTAssertEqual(run(.avx512, threads: threads), portable,
                                           "\(name) \(inputs)->\(outputs), \(rows) rows, bias \(bias != nil), \(threads) threads")
                        }
                    }
                }
            }
        }
    }

    /// Weights kept as f16 or bf16 compute exactly what their f32 expansion computes, through
    /// both the streaming kernel (≤ 16 rows) and the AVX2 packed GEMM, and in any layout. (The
    /// AVX-512 bf16 path rounds activations to bf16: DotProductKernelTests.)
    func testSixteenBitLinearMatchesItsF32Expansion() throws {
        DotProductKernels.enabled = []
        defer { DotProductKernels.enabled = DotProductKernels.supported }
        var rng = TestRandom(state: 12)
        for dtype in [DType.f16, .bf16] {
            for (inputs, outputs) in [(24, 45), (64, 96), (7, 10)] {
                let w = rng.tensor([outputs, inputs]), b = rng.tensor([outputs])
                var writer = SafetensorsWriter()
                try writer.add("w", w, as: dtype)
                let file = try writer.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
                let stored = try file.weight("w", shape: [outputs, inputs])
                XCTAssertEqual(stored.format, WeightFormat(dtype))
                let sixteen = Linear(weight: stored, bias: Weight(b))
                let expanded = Linear(weight: Weight(try file.tensor("w")), bias: Weight(b))
                let inputMajor = Linear(inputMajor: try file.weight("w", shape: [outputs, inputs]), bias: nil)
                let inputMajorExpanded = Linear(inputMajor: Weight(try file.tensor("w")), bias: nil)
                for rows in [1, 3, 16, 17, 40] {
                    let x = rng.array(rows * inputs)
                    XCTAssertEqual(sixteen(x, rows: rows, pool: ThreadPool(threads: 2)),
                                   expanded(x, rows: rows, pool: ThreadPool(threads: 1)), "\(dtype) \(inputs)->\(outputs), \(rows) rows")
                    let xt = rng.array(rows * outputs)
                    XCTAssertEqual(inputMajor(xt, rows: rows, pool: ThreadPool(threads: 2)),
                                   inputMajorExpanded(xt, rows: rows, pool: ThreadPool(threads: 2)), "input-major \(dtype), \(rows) rows")
                }
            }
        }
    }

    /// A Linear built from a memory-mapped file drops the pages it repacked; the file still
    /// reads back the same values afterwards (the pages come from the file again).
    func testLinearFromAMappedFileReleasesItsPagesSafely() throws {
        var rng = TestRandom(state: 13)
        let w = rng.tensor([300, 256])
        var writer = SafetensorsWriter()
        try writer.add("w", w, as: .f16)
        let path = NSTemporaryDirectory() + "/libdalle-linear-\(getpid()).safetensors"
        try writer.write(to: path)
        defer { unlink(path) }
        let file = try SafetensorsFile(path: path)
        let expected = try file.tensor("w")
        let linear = Linear(weight: try file.weight("w", shape: [300, 256]), bias: nil)
        XCTAssertEqual(try file.tensor("w"), expected)
        let x = rng.array(256)
        let reference = Linear(weight: Weight(expected), bias: nil)
        XCTAssertEqual(linear(x, rows: 1, pool: ThreadPool(threads: 1)), reference(x, rows: 1, pool: ThreadPool(threads: 1)))
    }

    /// A convolution whose weight stays f16 or bf16 (widened as the GEMM packs it) computes
    /// exactly what its f32 expansion computes.
    func testSixteenBitConv2dMatchesItsF32Expansion() throws {
        var rng = TestRandom(state: 14)
        for dtype in [DType.f16, .bf16] {
            for (cin, cout, k) in [(16, 40, 3), (5, 7, 1), (3, 9, 7)] {
                var writer = SafetensorsWriter()
                try writer.add("w", rng.tensor([cout, cin, k, k]), as: dtype)
                let file = try writer.serialized().withUnsafeBytes { try SafetensorsFile(bytes: $0) }
                let bias = Weight(rng.tensor([cout]))
                let stored = try Conv2d(weight: try file.weight("w", shape: [cout, cin, k, k]), bias: bias)
                let expanded = try Conv2d(weight: Weight(try file.tensor("w")), bias: bias)
                let x = rng.tensor([2, cin, 13, 17]), residual = rng.tensor([2, cout, 13, 17])
                XCTAssertEqual(conv2d(x, stored, reluInput: true, residual: residual, scale: 0.5, pool: ThreadPool(threads: 2)),
                               conv2d(x, expanded, reluInput: true, residual: residual, scale: 0.5, pool: ThreadPool(threads: 1)),
                               "\(dtype) \(cin)->\(cout) k\(k)")
            }
        }
    }

    func testConv2DIsBitIdenticalForAnyThreadCount() throws {
        var rng = TestRandom(state: 5)
        let x = rng.tensor([1, 16, 48, 50]), residual = rng.tensor([1, 40, 48, 50])
        let conv = try Conv2d(weight: rng.tensor([40, 16, 3, 3]), bias: rng.tensor([40]))
        let one = conv2d(x, conv, reluInput: true, residual: residual, scale: 0.5, pool: ThreadPool(threads: 1))
        for threads in [2, 3, 4] {
            let y = conv2d(x, conv, reluInput: true, residual: residual, scale: 0.5, pool: ThreadPool(threads: threads))
            XCTAssertEqual(y, one, "conv with \(threads) threads")
        }
    }

    func testConv2dRejectBadShapes() {
        XCTAssertThrowsError(try Conv2d(weight: Tensor(zeros: [4, 3, 2, 2]), bias: nil))
        XCTAssertThrowsError(try Conv2d(weight: Tensor(zeros: [4, 3, 3]), bias: nil))
        XCTAssertThrowsError(try Conv2d(weight: Tensor(zeros: [4, 3, 3, 3]), bias: Tensor(zeros: [3])))
        XCTAssertThrowsError(try Conv2d(weight: Tensor(zeros: [4, 3, 4, 4]), bias: nil, stride: 0, padding: 1))
        XCTAssertThrowsError(try Conv2d(weight: Tensor(zeros: [4, 3, 4, 4]), bias: nil, stride: 2, padding: 4))
    }

    func testPoolingAndUpsampling() throws {
        let x = try Tensor(shape: [1, 2, 2, 4], scalars: [1, 5, -2, 0,
                                                         3, 2, -1, -3,
                                                         7, 0, 0, 0,
                                                         0, 0, 0, 9])
        XCTAssertEqual(maxPool2x2(x), try Tensor(shape: [1, 2, 1, 2], scalars: [5, 0, 7, 9]))
        XCTAssertEqual(maxPool2x2(x, pool: ThreadPool(threads: 3)), maxPool2x2(x))
        let small = try Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4])
        XCTAssertEqual(upsampleNearest2x(small), try Tensor(shape: [1, 1, 4, 4], scalars: [1, 1, 2, 2,
                                                                                          1, 1, 2, 2,
                                                                                          3, 3, 4, 4,
                                                                                          3, 3, 4, 4]))
        // Rows wider than one 8-wide vector, split over threads: y[c, i, j] = x[c, i / 2, j / 2].
        var rng = TestRandom(state: 4)
        let wide = rng.tensor([2, 3, 5, 19])
        let up = upsampleNearest2x(wide, pool: ThreadPool(threads: 3))
        XCTAssertEqual(up.shape, [2, 3, 10, 38])
        for p in 0..<6 {
            for i in 0..<10 {
                for j in 0..<38 {
                    XCTAssertEqual(up.scalars[(p * 10 + i) * 38 + j], wide.scalars[(p * 5 + i / 2) * 19 + j / 2])
                }
            }
        }
    }

    func testReluAndAddScaled() {
        var rng = TestRandom(state: 9)
        let a = rng.tensor([3, 37]), b = rng.tensor([3, 37])  // 111 values: vector body and tail
        var r = a
        relu(&r)
        XCTAssertEqual(r.scalars, a.scalars.map { max($0, 0) })
        XCTAssertEqual(addScaled(a, b, scale: 0.5).scalars, zip(a.scalars, b.scalars).map { $0 + 0.5 * $1 })
    }

    func testErfApproximationAndGELU() {
        var worst: Float = 0
        for i in -100_000...100_000 {
            let x = Float(i) * 1e-4
            worst = max(worst, abs(erfApproximation(x) - erff(x)))
        }
        XCTAssertLessThan(worst, 5e-7)
        XCTAssertEqual(erfApproximation(30), 1)
        XCTAssertEqual(erfApproximation(-.infinity), -1)
        var worstExp = 0.0
        for i in -87_000...88_300 {
            let x = Double(i) * 1e-3
            worstExp = max(worstExp, abs(Double(expApproximation(Float(x))) - exp(Double(Float(x)))) / exp(Double(Float(x))))
        }
        XCTAssertLessThan(worstExp, 1.2e-7)
        XCTAssertEqual(expApproximation(-1000), expApproximation(-87.33654))
        XCTAssertEqual(expApproximation(0), 1)
        XCTAssertTrue(expApproximation(1000).isFinite)
        // gelu against float64 erf; its derivative against a central difference in float64.
        for x in stride(from: -6.0, through: 6.0, by: 0.37) {
            XCTAssertEqual(Double(gelu(Float(x))), 0.5 * x * (1 + erf(x / 2.0.squareRoot())), accuracy: 2e-6)
            let g = { (v: Double) in 0.5 * v * (1 + erf(v / 2.0.squareRoot())) }
            XCTAssertEqual(Double(geluDerivative(Float(x))), (g(x + 1e-6) - g(x - 1e-6)) / 2e-6, accuracy: 2e-6)
        }
    }
}
