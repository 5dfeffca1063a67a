import CDalleKernels
#if canImport(Glibc)
import Glibc
#endif

/// `nn.Linear`, y = x · Wᵀ + b, for every model family. The weight is repacked once at load
/// into panels of 32 output columns ([panel][inputs][32], zero-padded) in its stored
/// precision, so a panel is contiguous: a matrix-vector product streams the weights
/// sequentially, and 16-bit or quantized weights are read as stored and widened in
/// registers. A quantized panel keeps GGUF's blocks of 32 inputs: per block, the 32
/// outputs' f16 scales, then 32 rows of 32 int8 (q8_0) or 32 nibbles (q4_0, output j in the
/// low and j + 16 in the high nibble of byte j, stored as q + 8).
///
/// Numerics. Without the dot-product kernels below, every format computes the f32 product of x
/// and the stored weights' exact values (16-bit widened, q · d): up to `streamingRows` rows
/// (decoding) in the streaming kernel, where each output starts at its bias and adds one fused
/// multiply-add per input in ascending order (the portable Swift kernel and, on CPUs with
/// AVX-512, `StreamingKernel.avx512`, give the same bits), and for more rows in the AVX2 packed
/// GEMM. On CPUs with AVX-512 (`DotProductKernels`) dot-product kernels round the activations
/// too: bf16 weights, for more than `streamingRows` rows, take x rounded to bf16 (to nearest
/// even) and sum exact bf16 products in f32, input pairs in ascending order (vdpbf16ps; about
/// 3e-4 of max|y| mean error); q8_0 and q4_0 weights, for every row count (VNNI: the streaming
/// kernel and the packed GEMM compute the same sums), take x quantized per block of 32 as
/// ggml's q8_0 (d = max|x| / 127, q rounded to nearest even) and add each block's exact int32
/// dot as fma(dot, d_w · d_x, sum), then the bias (vpdpbusd; about 7e-4). Each is a fixed order
/// per output, so results are the same for any thread count and any grouping of rows, but a
/// quantized model's differ between CPUs with and without VNNI (see docs/ARCHITECTURE.md,
/// "Numerics").
public struct Linear: @unchecked Sendable {
    let inputs: Int
    let outputs: Int
    let format: WeightFormat
    /// [panelCount][inputs][panelWidth] elements of `format`.
    let panels: OwnedBytes
    /// [panelCount · panelWidth] (zero-padded), or nil.
    let bias: [Float]?

    static let panelWidth = 32
    /// Rows at or below this count use a streaming kernel; larger products use a packed GEMM
    /// on each panel.
    static let streamingRows = 16

    var panelCount: Int { (outputs + Linear.panelWidth - 1) / Linear.panelWidth }
    /// Bytes of the repacked weights (what a product reads).
    var byteCount: Int { panels.byteCount }

    /// From PyTorch's [outputs, inputs] weight and [outputs] bias.
    public init(weight: Weight, bias: Weight?) {
        self.init(weight, outputs: weight.shape[0], inputs: weight.shape[1], bias: bias, inputMajor: false)
    }

    /// From a weight stored input-major, [inputs, outputs] (as CLIP's projections are: x · W).
    init(inputMajor weight: Weight, bias: Weight?) {
        self.init(weight, outputs: weight.shape[1], inputs: weight.shape[0], bias: bias, inputMajor: true)
    }

    /// Reads `prefix.weight` [outputs, inputs] and, when `bias`, `prefix.bias` [outputs].
    init(_ prefix: String, inputs: Int, outputs: Int, bias: Bool, loader: StrictWeightLoader) throws {
        self.init(weight: try loader.weight(prefix + ".weight", shape: [outputs, inputs]),
                  bias: bias ? try loader.weight(prefix + ".bias", shape: [outputs]) : nil)
    }

    private init(_ stored: Weight, outputs: Int, inputs: Int, bias: Weight?, inputMajor: Bool) {
        let pw = Linear.panelWidth, count = (outputs + pw - 1) / pw
        var weight = stored
        if case .quantized = stored.format, inputMajor || inputs % QuantizedType.blockSize != 0 {
            // Quantized blocks run along the inputs of the PyTorch layout; any other layout is widened to f32.
            weight = Weight(Tensor(uncheckedShape: stored.shape, scalars: stored.floats()))
        }
        let index: (Int, Int) -> Int = inputMajor ? { o, i in i * outputs + o } : { o, i in o * inputs + i }
        let panels = OwnedBytes(byteCount: count * Linear.panelBytes(weight.format, inputs: inputs))
        panels.bytes.initializeMemory(as: UInt8.self, repeating: 0, count: panels.byteCount)
        // Element by element as raw bits: the panels keep the stored encoding.
        func repack<T: FixedWidthInteger>(_: T.Type) {
            let size = MemoryLayout<T>.size
            let source = weight.base, target = panels.bytes.bindMemory(to: T.self, capacity: count * inputs * pw)
            for o in 0..<outputs {
                let base = (o / pw) * inputs * pw + o % pw
                for i in 0..<inputs {
                    target[base + i * pw] = source.loadUnaligned(fromByteOffset: index(o, i) * size, as: T.self)
                }
            }
        }
        switch weight.format {
        case .f32: repack(UInt32.self)
        case .f16, .bf16: repack(UInt16.self)
        case let .quantized(type): Linear.repackQuantized(weight, type, outputs: outputs, inputs: inputs, into: panels.bytes)
        }
        stored.releaseStoredBytes()
        self.inputs = inputs
        self.outputs = outputs
        self.format = weight.format
        self.panels = panels
        self.bias = bias.map { $0.floats() + [Float](repeating: 0, count: count * pw - outputs) }
    }

    /// Bytes of one panel of 32 outputs.
    static func panelBytes(_ format: WeightFormat, inputs: Int) -> Int {
        if case let .quantized(type) = format { return inputs / QuantizedType.blockSize * quantizedBlockBytes(type) }
        return inputs * panelWidth * format.byteSize
    }

    /// Bytes of one block of 32 inputs in a quantized panel: 32 f16 scales, then 32 rows.
    static func quantizedBlockBytes(_ type: QuantizedType) -> Int { 64 + 32 * (type == .q8_0 ? 32 : 16) }

    /// Rearranges row-major quantized blocks [outputs, inputs] into panels (see the type's comment).
    private static func repackQuantized(_ weight: Weight, _ type: QuantizedType, outputs: Int, inputs: Int,
                                        into panels: UnsafeMutableRawPointer) {
        let pw = panelWidth, blocks = inputs / QuantizedType.blockSize, blockBytes = quantizedBlockBytes(type)
        let rowBytes = type.rowBytes(inputs)
        for o in 0..<outputs {
            let lane = o % pw, panel = panels + (o / pw) * blocks * blockBytes
            for b in 0..<blocks {
                let source = weight.base + o * rowBytes + b * type.blockBytes, target = panel + b * blockBytes
                (target + 2 * lane).copyMemory(from: source, byteCount: 2)
                let q = source + 2, rows = target + 64
                for j in 0..<QuantizedType.blockSize {
                    switch type {
                    case .q8_0:
                        rows.storeBytes(of: q.load(fromByteOffset: j, as: UInt8.self), toByteOffset: j * 32 + lane, as: UInt8.self)
                    case .q4_0:
                        let byte = q.load(fromByteOffset: j % 16, as: UInt8.self)
                        let nibble = j < 16 ? byte & 15 : byte >> 4
                        let at = j * 16 + lane % 16
                        let old = rows.load(fromByteOffset: at, as: UInt8.self)
                        rows.storeBytes(of: lane < 16 ? old | nibble : old | nibble << 4, toByteOffset: at, as: UInt8.self)
                    }
                }
            }
        }
    }

    /// y[rows, outputs] = x[rows, inputs] · Wᵀ + b. Threads split the output panels.
    public func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        apply(x, rows: rows, into: y, pool: pool, streaming: .best)
    }

    /// `apply` with the f32 kernel for up to `streamingRows` rows chosen (every one gives the same
    /// bits; quantized weights take the VNNI kernel instead while `DotProductKernels.enabled` has int8).
    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool,
               streaming: StreamingKernel) {
        switch format {
        case .f32: apply(F32Panel.self, x, rows: rows, into: y, pool: pool, streaming: streaming)
        case .f16: apply(F16Panel.self, x, rows: rows, into: y, pool: pool, streaming: streaming)
        case .bf16: apply(BF16Panel.self, x, rows: rows, into: y, pool: pool, streaming: streaming)
        case .quantized(.q8_0): apply(Q8Panel.self, x, rows: rows, into: y, pool: pool, streaming: streaming)
        case .quantized(.q4_0): apply(Q4Panel.self, x, rows: rows, into: y, pool: pool, streaming: streaming)
        }
    }

    /// y = x · Wᵀ + b (+ `residual`) for `rows` rows of x, as a new array.
    func callAsFunction(_ x: [Float], rows: Int, residual: [Float]? = nil, pool: ThreadPool) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outputs)
        apply(x, rows: rows, into: &y, pool: pool)
        if let residual {
            y.withUnsafeMutableBufferPointer { yp in for i in 0..<yp.count { yp[i] += residual[i] } }
        }
        return y
    }

    private func apply<E: PanelElement>(_: E.Type, _ x: UnsafePointer<Float>, rows: Int,
                                        into y: UnsafeMutablePointer<Float>, pool: ThreadPool, streaming: StreamingKernel) {
        let n = outputs, k = inputs, pw = Linear.panelWidth, panelBytes = Linear.panelBytes(format, inputs: k)
        let w = UnsafeRawPointer(panels.bytes)
        (bias ?? []).withUnsafeBufferPointer { bb in
            let b = bias == nil ? nil : bb.baseAddress
            if rows > Linear.streamingRows {
                if applyDotProduct(x, rows: rows, into: y, bias: b, pool: pool) { return }
                let packedX = packGemmA(x, m: rows, k: k)
                packedX.withUnsafeBufferPointer { pa in
                    let a = pa.baseAddress.unsafelyUnwrapped, single = ThreadPool(threads: 1)
                    pool.parallelFor(panelCount) { range in
                        for panel in range {
                            let j0 = panel * pw, width = min(pw, n - j0)
                            gemmDriver(m: rows, n: width, k: k, a: .packed(a),
                                       b: E.gemmOperand(w + panel * panelBytes, ld: pw),
                                       c: y + j0, ldc: n, accumulate: false, epilogue: nil, pool: single)
                            if let b {
                                for r in 0..<rows { for j in 0..<width { y[r * n + j0 + j] += b[j0 + j] } }
                            }
                        }
                    }
                }
                return
            }
            // Work below ~64K multiply-adds per thread is not worth a thread.
            let split = ThreadPool(threads: min(pool.threads, max(1, rows * k * n / 65536)))
            if case let .quantized(type) = format, DotProductKernels.enabled.contains(.int8), rows > 0 {
                let quants = UnsafeMutablePointer<UInt32>.allocate(capacity: libdalle_q8_stream_words(rows, k))
                let scales = UnsafeMutablePointer<Float>.allocate(capacity: libdalle_q8_stream_scale_count(rows, k))
                defer { quants.deallocate(); scales.deallocate() }
                libdalle_q8_quantize_rows(x, rows, k, quants, scales)
                split.parallelFor(panelCount) { range in
                    for panel in range {
                        let j0 = panel * pw
                        libdalle_q8_stream(type.panelFormat, quants, scales, rows, k,
                                        (w + panel * panelBytes).assumingMemoryBound(to: UInt8.self), b.map { $0 + j0 },
                                        min(pw, n - j0), y + j0, n)
                    }
                }
                return
            }
            split.parallelFor(panelCount) { range in
                for panel in range {
                    let j0 = panel * pw, width = min(pw, n - j0)
                    #if arch(x86_64)
                    if streaming == .avx512 {
                        libdalle_linear_rows_avx512(E.panelFormat, x, rows, k, w + panel * panelBytes, b.map { $0 + j0 },
                                                 width, y + j0, n)
                        continue
                    }
                    #endif
                    // Rows go in pairs; a lone last row pairs with itself (its twin's result
                    // is dropped): the loop is bound by reading the weights, and the paired
                    // form keeps more multiply-adds in flight.
                    var r = 0
                    while r < rows {
                        let twin = min(r + 1, rows - 1)
                        if E.quantized {
                            streamQuantizedPanel(E.self, x + r * k, x + twin * k, k: k, w: w + panel * panelBytes,
                                                 bias: b.map { $0 + j0 }, width: width,
                                                 y0: y + r * n + j0, y1: twin == r ? nil : y + twin * n + j0)
                        } else {
                            streamPanel(E.self, x + r * k, x + twin * k, k: k, w: w + panel * panelBytes,
                                        bias: b.map { $0 + j0 }, width: width,
                                        y0: y + r * n + j0, y1: twin == r ? nil : y + twin * n + j0)
                        }
                        r += 2
                    }
                }
            }
        }
    }
}

/// The kernel that streams up to `Linear.streamingRows` rows through a weight panel. Each gives
/// every output the same chain of fused multiply-adds (bias, then the inputs in ascending
/// order), so all give the same bits.
enum StreamingKernel: Sendable {
    /// Swift SIMD code for the baseline CPU (AVX2): rows in pairs, each pair widening the panel again.
    case portable
    /// CDalleKernels' `libdalle_linear_rows_avx512`: up to eight rows (16 zmm accumulators) per
    /// pass over a panel, which is widened once per pass.
    case avx512

    /// The fastest kernel this CPU runs (`CPUFeatures.usable`: `DALLE_SIMD=avx2` keeps the portable one).
    static let best: StreamingKernel = {
        #if arch(x86_64)
        if CPUFeatures.usable.isSuperset(of: [.avx512f, .avx512bw, .avx512vl, .f16c, .fma]) { return .avx512 }
        #endif
        return .portable
    }()
}

/// An element type of weight panels: how they widen to Float, and how `gemm` packs them.
/// Floating-point panels widen 16 values at a time (`load16`); quantized ones a row of 32
/// stored integers (`widenRow`), which the kernel offsets and multiplies by the block's scales.
protocol PanelElement {
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float>
    static func gemmOperand(_ p: UnsafeRawPointer, ld: Int) -> GemmB
    static var byteSize: Int { get }
    static var quantized: Bool { get }
    static func widenRow(_ p: UnsafeRawPointer) -> (SIMD16<Float>, SIMD16<Float>)
    /// Bytes of one quantized row of 32 values.
    static var rowBytes: Int { get }
    /// What a quantized value adds to its stored integer before the scale (q4_0 stores q + 8).
    static var offset: Float { get }
    /// The panel's DALLE_PANEL_* code for CDalleKernels.
    static var panelFormat: Int32 { get }
}

extension PanelElement {
    static var quantized: Bool { false }
    static func widenRow(_ p: UnsafeRawPointer) -> (SIMD16<Float>, SIMD16<Float>) { (load16(p), load16(p + 16 * byteSize)) }
    static var rowBytes: Int { 32 * byteSize }
    static var offset: Float { 0 }
}

enum Q8Panel: PanelElement {
    static var panelFormat: Int32 { Int32(DALLE_PANEL_Q8_0) }
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> { widenRow(p).0 }
    static func gemmOperand(_ p: UnsafeRawPointer, ld: Int) -> GemmB { .quantizedPanel(p, type: .q8_0) }
    static var byteSize: Int { 1 }
    static var quantized: Bool { true }
    @inline(__always)
    static func widenRow(_ p: UnsafeRawPointer) -> (SIMD16<Float>, SIMD16<Float>) {
        let lo = p.loadUnaligned(as: SIMD16<Int8>.self), hi = p.loadUnaligned(fromByteOffset: 16, as: SIMD16<Int8>.self)
        var a = SIMD16<Float>(), b = SIMD16<Float>()
        for i in 0..<16 { a[i] = Float(lo[i]); b[i] = Float(hi[i]) }
        return (a, b)
    }
    static var rowBytes: Int { 32 }
}

enum Q4Panel: PanelElement {
    static var panelFormat: Int32 { Int32(DALLE_PANEL_Q4_0) }
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> { widenRow(p).0 + offset }
    static func gemmOperand(_ p: UnsafeRawPointer, ld: Int) -> GemmB { .quantizedPanel(p, type: .q4_0) }
    static var byteSize: Int { 1 }
    static var quantized: Bool { true }
    @inline(__always)
    static func widenRow(_ p: UnsafeRawPointer) -> (SIMD16<Float>, SIMD16<Float>) {
        // Nibbles split as vectors, then widened lane by lane (vectorised as in Q8Panel).
        let bytes = p.loadUnaligned(as: SIMD16<UInt8>.self)
        let low = unsafeBitCast(bytes & 15, to: SIMD16<Int8>.self), high = unsafeBitCast(bytes &>> 4, to: SIMD16<Int8>.self)
        var a = SIMD16<Float>(), b = SIMD16<Float>()
        for i in 0..<16 { a[i] = Float(low[i]); b[i] = Float(high[i]) }
        return (a, b)
    }
    static var rowBytes: Int { 16 }
    static var offset: Float { -8 }
}

enum F32Panel: PanelElement {
    static var panelFormat: Int32 { Int32(DALLE_PANEL_F32) }
    @inline(__always)
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> { p.loadUnaligned(as: SIMD16<Float>.self) }
    static func gemmOperand(_ p: UnsafeRawPointer, ld: Int) -> GemmB {
        .matrix(p.assumingMemoryBound(to: Float.self), ld: ld, relu: false)
    }
    static var byteSize: Int { 4 }
}

/// 16 little-endian 16-bit values at `p`, each widened by `widen`. Lane by lane, which the
/// compiler vectorises (vcvtph2ps for f16); the generic SIMD conversions stay out-of-line calls.
@inline(__always)
private func widen16(_ p: UnsafeRawPointer, _ widen: (UInt16) -> Float) -> SIMD16<Float> {
    let lo = p.loadUnaligned(as: SIMD8<UInt16>.self), hi = p.loadUnaligned(fromByteOffset: 16, as: SIMD8<UInt16>.self)
    var v = SIMD16<Float>()
    for i in 0..<8 {
        v[i] = widen(UInt16(littleEndian: lo[i]))
        v[i + 8] = widen(UInt16(littleEndian: hi[i]))
    }
    return v
}

enum F16Panel: PanelElement {
    static var panelFormat: Int32 { Int32(DALLE_PANEL_F16) }
    @inline(__always)
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> { widen16(p) { Float(Float16(bitPattern: $0)) } }
    static func gemmOperand(_ p: UnsafeRawPointer, ld: Int) -> GemmB { .matrix16(p, ld: ld, format: .f16) }
    static var byteSize: Int { 2 }
}

enum BF16Panel: PanelElement {
    static var panelFormat: Int32 { Int32(DALLE_PANEL_BF16) }
    @inline(__always)
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> { widen16(p) { Float(bitPattern: UInt32($0) << 16) } }
    static func gemmOperand(_ p: UnsafeRawPointer, ld: Int) -> GemmB { .matrix16(p, ld: ld, format: .bf16) }
    static var byteSize: Int { 2 }
}

/// The accumulators of one or two rows of one 32-column panel, in registers: a for the
/// first row, c for the second.
private struct PanelAccumulators {
    typealias V = SIMD16<Float>
    var a0, a1, c0, c1: V

    /// Starts every output at its bias (or 0).
    @inline(__always)
    init(bias: UnsafePointer<Float>?) {
        let b0 = bias.map { UnsafeRawPointer($0).loadUnaligned(as: V.self) } ?? V()
        let b1 = bias.map { UnsafeRawPointer($0 + 16).loadUnaligned(as: V.self) } ?? V()
        (a0, a1, c0, c1) = (b0, b1, b0, b1)
    }

    /// Adds input p's weights (w0, w1) times x0[p] (and x1[p] when `paired`).
    @inline(__always)
    mutating func add(_ w0: V, _ w1: V, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>, _ p: Int, paired: Bool) {
        let s = x0[p]
        a0 = a0.addingProduct(s, w0); a1 = a1.addingProduct(s, w1)
        if paired { let t = x1[p]; c0 = c0.addingProduct(t, w0); c1 = c1.addingProduct(t, w1) }
    }

    /// Stores `width` columns of the first row at y0, and of the second at y1 when given.
    @inline(__always)
    func store(width: Int, _ y0: UnsafeMutablePointer<Float>, _ y1: UnsafeMutablePointer<Float>?) {
        func store(_ lo: V, _ hi: V, _ y: UnsafeMutablePointer<Float>) {
            if width == 32 {
                UnsafeMutableRawPointer(y).storeBytes(of: lo, as: V.self)
                UnsafeMutableRawPointer(y + 16).storeBytes(of: hi, as: V.self)
            } else {
                for j in 0..<width { y[j] = j < 16 ? lo[j] : hi[j - 16] }
            }
        }
        store(a0, a1, y0)
        if let y1 { store(c0, c1, y1) }
    }
}

/// One or two rows of one 32-column panel: y = x · panel + bias, each output summed over k in
/// ascending order. Stores `width` columns (the second row's only when `y1` is given).
@inline(__always)
private func streamPanel<E: PanelElement>(_: E.Type, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>, k: Int,
                                          w: UnsafeRawPointer, bias: UnsafePointer<Float>?, width: Int,
                                          y0: UnsafeMutablePointer<Float>, y1: UnsafeMutablePointer<Float>?) {
    var acc = PanelAccumulators(bias: bias)
    let size = E.byteSize, paired = y1 != nil
    for p in 0..<k {
        let row = w + p * 32 * size
        acc.add(E.load16(row), E.load16(row + 16 * size), x0, x1, p, paired: paired)
    }
    acc.store(width: width, y0, y1)
}

/// `streamPanel` for a quantized panel (k a multiple of 32): each block's 32 rows are widened
/// and multiplied by the block's 32 output scales (q · d, exact) before their multiply-adds.
@inline(__always)
private func streamQuantizedPanel<E: PanelElement>(_: E.Type, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>, k: Int,
                                                   w: UnsafeRawPointer, bias: UnsafePointer<Float>?, width: Int,
                                                   y0: UnsafeMutablePointer<Float>, y1: UnsafeMutablePointer<Float>?) {
    var acc = PanelAccumulators(bias: bias)
    let blockBytes = 64 + 32 * E.rowBytes, paired = y1 != nil
    for block in 0..<(k / QuantizedType.blockSize) {
        let base = w + block * blockBytes
        let s0 = F16Panel.load16(base), s1 = F16Panel.load16(base + 32)
        let m0 = E.offset * s0, m1 = E.offset * s1
        for j in 0..<QuantizedType.blockSize {
            let (q0, q1) = E.widenRow(base + 64 + j * E.rowBytes)
            // (q + offset) · d as one fused multiply-add: exact, as every term is.
            acc.add(m0.addingProduct(q0, s0), m1.addingProduct(q1, s1), x0, x1, block * QuantizedType.blockSize + j, paired: paired)
        }
    }
    acc.store(width: width, y0, y1)
}
