#if canImport(Glibc)
import Glibc
#endif

/// The transformer pieces of CLIP (`clip.model.ResidualAttentionBlock` and `Transformer`),
/// shared by its vision and text towers. Activations are row-major [rows, width]; several
/// sequences of different lengths lie one after another in the same buffer.

/// A run of rows holding one sequence.
struct SequenceSpan {
    var start: Int
    var length: Int
}

/// `nn.Linear`: y = x · Wᵀ + b, with W stored pre-transposed ([in, out], row-major) for `gemm`.
struct CLIPLinear: Sendable {
    let inFeatures: Int
    let outFeatures: Int
    /// [inFeatures, outFeatures]
    let weightT: [Float]
    /// [outFeatures]
    let bias: [Float]

    /// Loads `prefix.weight` [out, in] and `prefix.bias` [out].
    init(_ prefix: String, in n: Int, out m: Int, loader: StrictWeightLoader) throws {
        let w = try loader.tensor(prefix + ".weight", shape: [m, n])
        weightT = transposed(w.scalars, rows: m, cols: n)
        bias = try loader.tensor(prefix + ".bias", shape: [m]).scalars
        inFeatures = n
        outFeatures = m
    }

    /// y = x · Wᵀ + b (+ `residual` when given) for `rows` rows of x.
    func callAsFunction(_ x: [Float], rows: Int, residual: [Float]? = nil, pool: ThreadPool) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outFeatures)
        y.withUnsafeMutableBufferPointer { yp in
            for r in 0..<rows {
                for j in 0..<outFeatures { yp[r * outFeatures + j] = bias[j] }
            }
            if let residual {
                for i in 0..<yp.count { yp[i] += residual[i] }
            }
            x.withUnsafeBufferPointer { xp in
                weightT.withUnsafeBufferPointer { wp in
                    gemm(m: rows, n: outFeatures, k: inFeatures, a: xp.baseAddress!, lda: inFeatures,
                         b: wp.baseAddress!, ldb: outFeatures, c: yp.baseAddress!, ldc: outFeatures,
                         accumulate: true, pool: pool)
                }
            }
        }
        return y
    }
}

/// `nn.LayerNorm` over the last dimension, eps 1e-5.
struct CLIPLayerNorm: Sendable {
    let weight: [Float]
    let bias: [Float]
    static let epsilon: Float = 1e-5

    init(_ prefix: String, width: Int, loader: StrictWeightLoader) throws {
        weight = try loader.tensor(prefix + ".weight", shape: [width]).scalars
        bias = try loader.tensor(prefix + ".bias", shape: [width]).scalars
    }

    func callAsFunction(_ x: [Float]) -> [Float] {
        let width = weight.count
        var y = [Float](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                for r in 0..<(x.count / width) {
                    let row = xp.baseAddress! + r * width
                    var mean: Float = 0
                    for i in 0..<width { mean += row[i] }
                    mean /= Float(width)
                    var variance: Float = 0
                    for i in 0..<width { let d = row[i] - mean; variance += d * d }
                    variance /= Float(width)
                    let inv = 1 / (variance + CLIPLayerNorm.epsilon).squareRoot()
                    for i in 0..<width { yp[r * width + i] = (row[i] - mean) * inv * weight[i] + bias[i] }
                }
            }
        }
        return y
    }
}

/// `ResidualAttentionBlock`: x += attn(ln_1(x)); x += mlp(ln_2(x)), with
/// `nn.MultiheadAttention` (packed in_proj, out_proj) and a QuickGELU MLP (c_fc, c_proj).
struct CLIPResidualBlock: Sendable {
    let width: Int
    let heads: Int
    let ln1: CLIPLayerNorm
    let inProj: CLIPLinear
    let outProj: CLIPLinear
    let ln2: CLIPLayerNorm
    let fc: CLIPLinear
    let proj: CLIPLinear

    init(_ prefix: String, width: Int, heads: Int, loader: StrictWeightLoader) throws {
        self.width = width
        self.heads = heads
        ln1 = try CLIPLayerNorm(prefix + ".ln_1", width: width, loader: loader)
        let w = try loader.tensor(prefix + ".attn.in_proj_weight", shape: [3 * width, width])
        let b = try loader.tensor(prefix + ".attn.in_proj_bias", shape: [3 * width])
        inProj = CLIPLinear(weightT: transposed(w.scalars, rows: 3 * width, cols: width), bias: b.scalars,
                            in: width, out: 3 * width)
        outProj = try CLIPLinear(prefix + ".attn.out_proj", in: width, out: width, loader: loader)
        ln2 = try CLIPLayerNorm(prefix + ".ln_2", width: width, loader: loader)
        fc = try CLIPLinear(prefix + ".mlp.c_fc", in: width, out: 4 * width, loader: loader)
        proj = try CLIPLinear(prefix + ".mlp.c_proj", in: 4 * width, out: width, loader: loader)
    }

    /// Runs the block on the rows of `x` (sequences `spans`). When `keep` is given, only
    /// those rows (global indices) are computed past the attention's keys and values, and
    /// the result holds just them, in row order; otherwise every row.
    func callAsFunction(_ x: [Float], spans: [SequenceSpan], causal: Bool, keep: [Int]? = nil,
                        pool: ThreadPool) -> [Float] {
        let rows = x.count / width
        let qkv = inProj(ln1(x), rows: rows, pool: pool)
        let kept = keep.map(Set.init)
        var queries: [(row: Int, span: SequenceSpan)] = []
        for span in spans {
            for r in span.start..<(span.start + span.length) where kept?.contains(r) ?? true {
                queries.append((r, span))
            }
        }
        let attended = attention(qkv, queries: queries, causal: causal, pool: pool)
        var residual = x
        if keep != nil {
            residual = [Float](repeating: 0, count: queries.count * width)
            for (i, q) in queries.enumerated() {
                for j in 0..<width { residual[i * width + j] = x[q.row * width + j] }
            }
        }
        let n = queries.count
        let h = outProj(attended, rows: n, residual: residual, pool: pool)
        var hidden = fc(ln2(h), rows: n, pool: pool)
        quickGELU(&hidden)
        return proj(hidden, rows: n, residual: h, pool: pool)
    }

    /// Scaled dot-product attention of each query row against the keys of its sequence
    /// (up to itself when `causal`); `qkv` is [rows, 3·width] = q | k | v. Returns [queries, width].
    private func attention(_ qkv: [Float], queries: [(row: Int, span: SequenceSpan)], causal: Bool,
                           pool: ThreadPool) -> [Float] {
        let headDim = width / heads, stride = 3 * width
        let scale = 1 / Float(headDim).squareRoot()
        let longest = queries.map(\.span.length).max() ?? 0
        var out = [Float](repeating: 0, count: queries.count * width)
        qkv.withUnsafeBufferPointer { qp in
            out.withUnsafeMutableBufferPointer { op in
                let base = qp.baseAddress!, outBase = op.baseAddress!
                pool.parallelFor(queries.count) { range in
                    var scores = [Float](repeating: 0, count: longest)
                    for qi in range {
                        let (row, span) = queries[qi]
                        let end = causal ? row + 1 : span.start + span.length
                        let keys = end - span.start
                        for h in 0..<heads {
                            let q = base + row * stride + h * headDim
                            var maxScore = -Float.infinity
                            for j in 0..<keys {
                                let k = base + (span.start + j) * stride + width + h * headDim
                                let s = dot(q, k, headDim) * scale
                                scores[j] = s
                                maxScore = max(maxScore, s)
                            }
                            var sum: Float = 0
                            for j in 0..<keys { scores[j] = expf(scores[j] - maxScore); sum += scores[j] }
                            let o = outBase + qi * width + h * headDim
                            let inv = 1 / sum
                            for j in 0..<keys {
                                let v = base + (span.start + j) * stride + 2 * width + h * headDim
                                let p = scores[j] * inv
                                for d in 0..<headDim { o[d] += p * v[d] }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}

extension CLIPLinear {
    init(weightT: [Float], bias: [Float], in n: Int, out m: Int) {
        self.weightT = weightT
        self.bias = bias
        inFeatures = n
        outFeatures = m
    }
}

/// x · sigmoid(1.702 · x), in place.
func quickGELU(_ x: inout [Float]) {
    x.withUnsafeMutableBufferPointer { p in
        for i in 0..<p.count { p[i] = p[i] / (1 + expf(-1.702 * p[i])) }
    }
}

/// Σ a[i]·b[i] over n floats, in a fixed order (8 lanes, then the tail).
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>()
    var i = 0
    while i + 8 <= n {
        acc += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
            * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
        i += 8
    }
    var s = acc.sum()
    while i < n { s += a[i] * b[i]; i += 1 }
    return s
}

/// The [cols, rows] transpose of a row-major [rows, cols] matrix.
func transposed(_ m: [Float], rows: Int, cols: Int) -> [Float] {
    var t = [Float](repeating: 0, count: m.count)
    for r in 0..<rows {
        for c in 0..<cols { t[c * rows + r] = m[r * cols + c] }
    }
    return t
}

/// Entries of OpenAI's TorchScript CLIP state dicts that are not parameters.
let clipNonParameters: Set<String> = ["input_resolution", "context_length", "vocab_size"]
