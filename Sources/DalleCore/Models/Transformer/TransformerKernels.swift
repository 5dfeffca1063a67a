#if canImport(Glibc)
import Glibc
#endif

// Row-wise kernels of the transformer. Every kernel splits its *outputs* (rows, or
// column tiles) over threads and sums in a fixed order, so results do not depend on
// the thread count.

/// A PyTorch `nn.Linear` stored transposed for row-major products: y = x · weight + bias,
/// weight [inputs, outputs].
struct Linear {
    let inputs: Int
    let outputs: Int
    let weight: [Float]
    let bias: [Float]?

    /// From PyTorch's [outputs, inputs] weight (transposed here, once).
    init(torchWeight w: Tensor, bias: Tensor?) {
        let outputs = w.shape[0], inputs = w.shape[1]
        var t = [Float](repeating: 0, count: outputs * inputs)
        w.scalars.withUnsafeBufferPointer { src in
            for o in 0..<outputs { for i in 0..<inputs { t[i * outputs + o] = src[o * inputs + i] } }
        }
        self.inputs = inputs
        self.outputs = outputs
        self.weight = t
        self.bias = bias?.scalars
    }

    /// Rows at or below this count use the streaming kernel (weights read once, columns
    /// split over threads); larger products use the blocked `gemm`.
    static let streamingRows = 16
    /// Columns per streaming tile: a tile of every row's accumulators stays in L1.
    static let tileColumns = 128

    /// y[rows, outputs] = x[rows, inputs] · weight + bias.
    func apply(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, pool: ThreadPool) {
        let n = outputs, k = inputs
        weight.withUnsafeBufferPointer { wb in
            let w = wb.baseAddress.unsafelyUnwrapped
            if rows > Linear.streamingRows {
                gemm(m: rows, n: n, k: k, a: x, lda: k, b: w, ldb: n, c: y, ldc: n, accumulate: false, pool: pool)
                if let bias {
                    bias.withUnsafeBufferPointer { b in
                        pool.parallelFor(rows) { range in
                            for r in range { for j in 0..<n { y[r * n + j] += b[j] } }
                        }
                    }
                }
                return
            }
            let tiles = (n + Linear.tileColumns - 1) / Linear.tileColumns
            // Work below ~64K multiply-adds per thread is not worth a thread.
            let split = ThreadPool(threads: min(pool.threads, max(1, rows * k * n / 65536)))
            (bias ?? []).withUnsafeBufferPointer { bb in
                let biasPointer = bias == nil ? nil : bb.baseAddress
                split.parallelFor(tiles) { tileRange in
                    for tile in tileRange {
                        let j0 = tile * Linear.tileColumns, width = min(Linear.tileColumns, n - j0)
                        for r in 0..<rows {
                            let yr = y + r * n + j0
                            if let b = biasPointer { for j in 0..<width { yr[j] = b[j0 + j] } } else {
                                for j in 0..<width { yr[j] = 0 }
                            }
                        }
                        for p in 0..<k {
                            let wp = w + p * n + j0
                            for r in 0..<rows {
                                let a = x[r * k + p]
                                let yr = y + r * n + j0
                                for j in 0..<width { yr[j] += a * wp[j] }
                            }
                        }
                    }
                }
            }
        }
    }
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
            for j in 0..<hidden {
                let g = ur[hidden + j]
                o[j] = ur[j] * (0.5 * g * (1 + erff(g * 0.70710678118654752)))
            }
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
        var dot: Float = 0
        for d in 0..<dh { dot += q[d] * k[d] }
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
