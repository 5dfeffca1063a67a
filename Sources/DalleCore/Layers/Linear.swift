/// `nn.Linear`, y = x · Wᵀ + b, for every model family. The weight is repacked once at load
/// into panels of 32 output columns ([panel][inputs][32], zero-padded) in its stored
/// precision (f32, f16 or bf16), so a panel is contiguous: a matrix-vector product streams
/// the weights sequentially, and 16-bit weights are read as 16-bit and widened in registers.
/// Results are the same for every thread count (threads split output panels; each output
/// is summed over the inputs in ascending order).
struct Linear: @unchecked Sendable {
    let inputs: Int
    let outputs: Int
    let format: WeightFormat
    /// [panelCount][inputs][panelWidth] elements of `format`.
    private let panels: OwnedBytes
    /// [panelCount · panelWidth] (zero-padded), or nil.
    let bias: [Float]?

    static let panelWidth = 32
    /// Rows at or below this count use the streaming kernel; larger products use `gemm`'s
    /// packed micro-kernel on each panel.
    static let streamingRows = 16

    var panelCount: Int { (outputs + Linear.panelWidth - 1) / Linear.panelWidth }

    /// From PyTorch's [outputs, inputs] weight and [outputs] bias.
    init(weight: Weight, bias: Weight?) {
        self.init(weight, outputs: weight.shape[0], inputs: weight.shape[1], bias: bias) { o, i in o * weight.shape[1] + i }
    }

    /// From a weight stored input-major, [inputs, outputs] (as CLIP's projections are: x · W).
    init(inputMajor weight: Weight, bias: Weight?) {
        self.init(weight, outputs: weight.shape[1], inputs: weight.shape[0], bias: bias) { o, i in i * weight.shape[1] + o }
    }

    /// Reads `prefix.weight` [outputs, inputs] and, when `bias`, `prefix.bias` [outputs].
    init(_ prefix: String, inputs: Int, outputs: Int, bias: Bool, loader: StrictWeightLoader) throws {
        self.init(weight: try loader.weight(prefix + ".weight", shape: [outputs, inputs]),
                  bias: bias ? try loader.weight(prefix + ".bias", shape: [outputs]) : nil)
    }

    private init(_ weight: Weight, outputs: Int, inputs: Int, bias: Weight?, index: (Int, Int) -> Int) {
        let pw = Linear.panelWidth, count = (outputs + pw - 1) / pw, size = weight.format.byteSize
        let panels = OwnedBytes(byteCount: count * inputs * pw * size)
        panels.bytes.initializeMemory(as: UInt8.self, repeating: 0, count: panels.byteCount)
        // Element by element as raw bits: the panels keep the stored encoding.
        func repack<T: FixedWidthInteger>(_: T.Type) {
            let source = weight.base, target = panels.bytes.bindMemory(to: T.self, capacity: count * inputs * pw)
            for o in 0..<outputs {
                let base = (o / pw) * inputs * pw + o % pw
                for i in 0..<inputs {
                    target[base + i * pw] = source.loadUnaligned(fromByteOffset: index(o, i) * size, as: T.self)
                }
            }
        }
        if size == 4 { repack(UInt32.self) } else { repack(UInt16.self) }
        weight.releaseStoredBytes()
        self.inputs = inputs
        self.outputs = outputs
        self.format = weight.format
        self.panels = panels
        self.bias = bias.map { $0.floats() + [Float](repeating: 0, count: count * pw - outputs) }
    }

    /// y[rows, outputs] = x[rows, inputs] · Wᵀ + b. Threads split the output panels.
    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        switch format {
        case .f32: apply(F32Panel.self, x, rows: rows, into: y, pool: pool)
        case .f16: apply(F16Panel.self, x, rows: rows, into: y, pool: pool)
        case .bf16: apply(BF16Panel.self, x, rows: rows, into: y, pool: pool)
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
                                        into y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        let n = outputs, k = inputs, pw = Linear.panelWidth, panelBytes = k * pw * format.byteSize
        let w = UnsafeRawPointer(panels.bytes)
        (bias ?? []).withUnsafeBufferPointer { bb in
            let b = bias == nil ? nil : bb.baseAddress
            if rows > Linear.streamingRows {
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
            split.parallelFor(panelCount) { range in
                for panel in range {
                    let j0 = panel * pw, width = min(pw, n - j0)
                    // Rows go in pairs; a lone last row pairs with itself (its twin's result
                    // is dropped): the loop is bound by reading the weights, and the paired
                    // form keeps more multiply-adds in flight.
                    var r = 0
                    while r < rows {
                        let twin = min(r + 1, rows - 1)
                        streamPanel(E.self, x + r * k, x + twin * k, k: k, w: w + panel * panelBytes,
                                    bias: b.map { $0 + j0 }, width: width,
                                    y0: y + r * n + j0, y1: twin == r ? nil : y + twin * n + j0)
                        r += 2
                    }
                }
            }
        }
    }
}

/// An element type of weight panels: how 16 of them widen to Float, and how `gemm` packs them.
protocol PanelElement {
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float>
    static func gemmOperand(_ p: UnsafeRawPointer, ld: Int) -> GemmB
    static var byteSize: Int { get }
}

enum F32Panel: PanelElement {
    @inline(__always)
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> { p.loadUnaligned(as: SIMD16<Float>.self) }
    static func gemmOperand(_ p: UnsafeRawPointer, ld: Int) -> GemmB {
        .matrix(p.assumingMemoryBound(to: Float.self), ld: ld, relu: false)
    }
    static var byteSize: Int { 4 }
}

enum F16Panel: PanelElement {
    @inline(__always)
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> {
        // Lane by lane, which the compiler turns into inline vcvtph2ps; the generic
        // SIMD16<Float>(SIMD16<Float16>) initialiser stays an out-of-line call.
        let lo = p.loadUnaligned(as: SIMD8<UInt16>.self), hi = p.loadUnaligned(fromByteOffset: 16, as: SIMD8<UInt16>.self)
        var v = SIMD16<Float>()
        for i in 0..<8 {
            v[i] = Float(Float16(bitPattern: UInt16(littleEndian: lo[i])))
            v[i + 8] = Float(Float16(bitPattern: UInt16(littleEndian: hi[i])))
        }
        return v
    }
    static func gemmOperand(_ p: UnsafeRawPointer, ld: Int) -> GemmB { .matrix16(p, ld: ld, format: .f16) }
    static var byteSize: Int { 2 }
}

enum BF16Panel: PanelElement {
    @inline(__always)
    static func load16(_ p: UnsafeRawPointer) -> SIMD16<Float> {
        // Lane by lane (see F16Panel): a bfloat16 is the top half of a Float.
        let lo = p.loadUnaligned(as: SIMD8<UInt16>.self), hi = p.loadUnaligned(fromByteOffset: 16, as: SIMD8<UInt16>.self)
        var v = SIMD16<Float>()
        for i in 0..<8 {
            v[i] = Float(bitPattern: UInt32(UInt16(littleEndian: lo[i])) << 16)
            v[i + 8] = Float(bitPattern: UInt32(UInt16(littleEndian: hi[i])) << 16)
        }
        return v
    }
    static func gemmOperand(_ p: UnsafeRawPointer, ld: Int) -> GemmB { .matrix16(p, ld: ld, format: .bf16) }
    static var byteSize: Int { 2 }
}

/// Two rows of one 32-column panel: y = x · panel + bias, the accumulators in registers and
/// each output summed over k in ascending order. Stores `width` columns (the second row's
/// only when `y1` is given).
@inline(__always)
private func streamPanel<E: PanelElement>(_: E.Type, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>, k: Int,
                                          w: UnsafeRawPointer, bias: UnsafePointer<Float>?, width: Int,
                                          y0: UnsafeMutablePointer<Float>, y1: UnsafeMutablePointer<Float>?) {
    typealias V = SIMD16<Float>
    func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    let b0 = bias.map { load($0) } ?? V(), b1 = bias.map { load($0 + 16) } ?? V()
    var a0 = b0, a1 = b1, c0 = b0, c1 = b1
    let size = E.byteSize
    for p in 0..<k {
        let row = w + p * 32 * size
        let w0 = E.load16(row), w1 = E.load16(row + 16 * size)
        let s = x0[p], t = x1[p]
        a0 = a0.addingProduct(s, w0); a1 = a1.addingProduct(s, w1)
        c0 = c0.addingProduct(t, w0); c1 = c1.addingProduct(t, w1)
    }
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
