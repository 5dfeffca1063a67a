#if canImport(Glibc)
import Glibc
#endif

// Row-wise kernels of the transformer. Every kernel splits its *outputs* (rows, or
// column tiles) over threads and sums in a fixed order, so results do not depend on
// the thread count.

/// A PyTorch `nn.Linear`, y = x · Wᵀ + b, with W stored once at load time in panels of 32
/// output columns ([panel][inputs][32], zero-padded): a panel is contiguous, so a
/// matrix-vector product streams the weights sequentially.
struct Linear {
    let inputs: Int
    let outputs: Int
    /// [panelCount][inputs][panelWidth].
    let panels: [Float]
    /// [panelCount · panelWidth] (zero-padded), or nil.
    let bias: [Float]?

    static let panelWidth = 32
    /// Rows at or below this count use the streaming kernel; larger products use `gemm`'s
    /// packed micro-kernel on each panel.
    static let streamingRows = 16

    var panelCount: Int { (outputs + Linear.panelWidth - 1) / Linear.panelWidth }

    /// From PyTorch's [outputs, inputs] weight and [outputs] bias.
    init(torchWeight w: Tensor, bias: Tensor?) {
        let outputs = w.shape[0], inputs = w.shape[1], pw = Linear.panelWidth
        let count = (outputs + pw - 1) / pw
        var panels = [Float](repeating: 0, count: count * inputs * pw)
        for o in 0..<outputs {
            let base = (o / pw) * inputs * pw + o % pw
            for i in 0..<inputs { panels[base + i * pw] = w.scalars[o * inputs + i] }
        }
        self.inputs = inputs
        self.outputs = outputs
        self.panels = panels
        self.bias = bias.map { $0.scalars + [Float](repeating: 0, count: count * pw - outputs) }
    }

    /// y[rows, outputs] = x[rows, inputs] · Wᵀ + b. Threads split the output panels.
    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        let n = outputs, k = inputs, pw = Linear.panelWidth
        panels.withUnsafeBufferPointer { wb in
            (bias ?? []).withUnsafeBufferPointer { bb in
                let w = wb.baseAddress.unsafelyUnwrapped, b = bias == nil ? nil : bb.baseAddress
                if rows > Linear.streamingRows {
                    let packedX = packGemmA(x, m: rows, k: k)
                    packedX.withUnsafeBufferPointer { pa in
                        let a = pa.baseAddress.unsafelyUnwrapped, single = ThreadPool(threads: 1)
                        pool.parallelFor(panelCount) { range in
                            for panel in range {
                                let j0 = panel * pw, width = min(pw, n - j0)
                                gemmDriver(m: rows, n: width, k: k, a: .packed(a),
                                           b: .matrix(w + panel * k * pw, ld: pw, relu: false),
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
                            streamPanel(x + r * k, x + twin * k, k: k, w: w + panel * k * pw,
                                        bias: b.map { $0 + j0 }, width: width,
                                        y0: y + r * n + j0, y1: twin == r ? nil : y + twin * n + j0)
                            r += 2
                        }
                    }
                }
            }
        }
    }
}

/// Two rows of one 32-column panel: y = x · panel + bias, the accumulators in registers and
/// each output summed over k in ascending order. Stores `width` columns (the second row's
/// only when `y1` is given).
@inline(__always)
private func streamPanel(_ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>, k: Int,
                         w: UnsafePointer<Float>, bias: UnsafePointer<Float>?, width: Int,
                         y0: UnsafeMutablePointer<Float>, y1: UnsafeMutablePointer<Float>?) {
    typealias V = SIMD16<Float>
    func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    let b0 = bias.map { load($0) } ?? V(), b1 = bias.map { load($0 + 16) } ?? V()
    var a0 = b0, a1 = b1, c0 = b0, c1 = b1
    for p in 0..<k {
        let w0 = load(w + p * 32), w1 = load(w + p * 32 + 16)
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

/// LayerNorm weights (`nn.LayerNorm`, eps 1e-5).
struct LayerNorm {
    let weight: [Float]
    let bias: [Float]
    static let epsilon = 1e-5

    /// y = (x - mean) / sqrt(var + eps) · weight + bias for each of `rows` rows of width
    /// `weight.count`; `y` may alias `x`.
    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        let d = weight.count
        weight.withUnsafeBufferPointer { wb in
            bias.withUnsafeBufferPointer { bb in
                let w = wb.baseAddress.unsafelyUnwrapped, b = bb.baseAddress.unsafelyUnwrapped
                pool.parallelFor(rows) { range in
                    for r in range {
                        let xr = x + r * d, yr = y + r * d
                        var sum = 0.0
                        for i in 0..<d { sum += Double(xr[i]) }
                        let mean = sum / Double(d)
                        var squares = 0.0
                        for i in 0..<d { let c = Double(xr[i]) - mean; squares += c * c }
                        let inv = 1 / (squares / Double(d) + LayerNorm.epsilon).squareRoot()
                        let m = Float(mean), s = Float(inv)
                        for i in 0..<d { yr[i] = (xr[i] - m) * s * w[i] + b[i] }
                    }
                }
            }
        }
    }
}

extension LayerNorm {
    /// Normalises the rows of `x` in place.
    func applyInPlace(_ x: inout [Float], rows: Int, pool: ThreadPool) {
        x.withUnsafeMutableBufferPointer { b in
            let p = b.baseAddress.unsafelyUnwrapped
            apply(p, rows: rows, into: p, pool: pool)
        }
    }
}

/// GEGLU: out[r, j] = u[r, j] · gelu(u[r, hidden + j]) for u of width 2·hidden (exact erf GELU).
func geglu(_ u: UnsafePointer<Float>, rows: Int, hidden: Int, into out: UnsafeMutablePointer<Float>, pool: ThreadPool) {
    pool.parallelFor(rows) { range in
        for r in range {
            let ur = u + r * 2 * hidden, o = out + r * hidden
            for j in 0..<hidden { o[j] = ur[j] * gelu(ur[hidden + j]) }
        }
    }
}

/// Rotates features [0, dims) of `v` by the rotary table row (cos, sin), pairing
/// features (2i, 2i+1) as rotary-embedding-torch's `rotate_half` does.
@inline(__always)
func applyRotary(_ v: UnsafeMutablePointer<Float>, cos c: UnsafePointer<Float>, sin s: UnsafePointer<Float>, dims: Int) {
    var i = 0
    while i < dims {
        let a = v[i], b = v[i + 1]
        v[i] = a * c[i] - b * s[i]
        v[i + 1] = b * c[i + 1] + a * s[i + 1]
        i += 2
    }
}

/// Softmax-weighted sum of cached values for one query: out = Σ softmax(q·k_j)_j v_j over
/// the key positions `keys` (q already scaled). `scores` holds at least keys.count floats.
@inline(__always)
func attendOne(query q: UnsafePointer<Float>, keys kBase: UnsafePointer<Float>, values vBase: UnsafePointer<Float>,
               positions: UnsafePointer<Int32>, count: Int, dimHead dh: Int,
               scores: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>) {
    var maxScore = -Float.greatestFiniteMagnitude
    for j in 0..<count {
        let k = kBase + Int(positions[j]) * dh
        let dot = dotProduct(q, k, dh)
        scores[j] = dot
        if dot > maxScore { maxScore = dot }
    }
    var total: Float = 0
    for j in 0..<count {
        let e = expf(scores[j] - maxScore)
        scores[j] = e
        total += e
    }
    let inv = 1 / total
    for d in 0..<dh { out[d] = 0 }
    for j in 0..<count {
        let a = scores[j] * inv
        let v = vBase + Int(positions[j]) * dh
        for d in 0..<dh { out[d] += a * v[d] }
    }
}

/// Σ a[i]·b[i] over n floats, in eight interleaved partial sums (a fixed order).
@inline(__always)
func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    typealias V = SIMD8<Float>
    var acc = V()
    var i = 0
    while i + 8 <= n {
        acc = acc.addingProduct(UnsafeRawPointer(a + i).loadUnaligned(as: V.self),
                                UnsafeRawPointer(b + i).loadUnaligned(as: V.self))
        i += 8
    }
    var total = acc.sum()
    while i < n { total += a[i] * b[i]; i += 1 }
    return total
}
