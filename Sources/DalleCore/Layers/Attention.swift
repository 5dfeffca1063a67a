#if canImport(Glibc)
import Glibc
#endif

/// softmax(q·kᵀ/√d + bias)·v for each of `batch` sequences and each head, for every model family:
/// `query` is [batch·queries, heads·d], `key` and `value` [batch·keys, heads·d], `bias(b, i, j)` the
/// additive mask of query i and key j in sequence b. Returns [batch·queries, heads·d].
///
/// Threads split the (sequence, head) pairs; each takes its queries in blocks, scores them with one
/// GEMM (q·kᵀ), normalises the rows and multiplies by v with another, all on its own thread, so the
/// result is the same for every thread count.
func scaledDotProductAttention(query: [Float], key: [Float], value: [Float], batch: Int, queries: Int, keys: Int,
                               heads: Int, headWidth d: Int, pool: ThreadPool, bias: (Int, Int, Int) -> Float) -> [Float] {
    let w = heads * d, scale = 1 / Float(d).squareRoot(), block = 128, single = ThreadPool(threads: 1)
    guard batch * queries * w > 0 else { return [Float](repeating: 0, count: batch * queries * w) }
    return [Float](unsafeUninitializedCapacity: batch * queries * w) { out, count in
        query.withUnsafeBufferPointer { qb in
            key.withUnsafeBufferPointer { kb in
                value.withUnsafeBufferPointer { vb in
                    let o = out.baseAddress.unsafelyUnwrapped
                    pool.parallelForEach(batch * heads) { item in
                        let s = item / heads, column = (item % heads) * d
                        let k = kb.baseAddress.unsafelyUnwrapped + s * keys * w + column
                        let v = vb.baseAddress.unsafelyUnwrapped + s * keys * w + column
                        var scores = [Float](repeating: 0, count: min(block, queries) * keys)
                        scores.withUnsafeMutableBufferPointer { sb in
                            let p = sb.baseAddress.unsafelyUnwrapped
                            for first in stride(from: 0, to: queries, by: block) {
                                let rows = min(block, queries - first), row = (s * queries + first) * w + column
                                gemm(m: rows, n: keys, k: d, a: qb.baseAddress.unsafelyUnwrapped + row, lda: w,
                                     b: k, ldb: w, transposeB: true, c: p, ldc: keys, accumulate: false, pool: single)
                                for r in 0..<rows {
                                    let line = p + r * keys
                                    var largest = -Float.infinity
                                    for j in 0..<keys {
                                        line[j] = line[j] * scale + bias(s, first + r, j)
                                        largest = max(largest, line[j])
                                    }
                                    var total: Float = 0
                                    for j in 0..<keys { line[j] = expApproximation(line[j] - largest); total += line[j] }
                                    let inverse = 1 / total
                                    for j in 0..<keys { line[j] *= inverse }
                                }
                                gemm(m: rows, n: d, k: keys, a: p, lda: keys, b: v, ldb: w, c: o + row, ldc: w,
                                     accumulate: false, pool: single)
                            }
                        }
                    }
                }
            }
        }
        count = batch * queries * w
    }
}

/// Softmax attention of one query over `count` keys, for sequences read a query at a time (the
/// transformer's KV cache, CLIP's causal and ragged spans): out = Σ_j softmax_j(scale · q·k_j) · v_j,
/// key j and value j at `keys + offset(j)` and `values + offset(j)`, each `width` floats. Sums in a
/// fixed order (a SIMD dot product per key, then the keys in order); `scores` holds at least `count`
/// floats. Blocks of many queries over the same keys go faster through `scaledDotProductAttention`'s
/// GEMMs, which sum in another order.
@inline(__always)
func attendOne(query q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
               count: Int, width: Int, scale: Float, scores: UnsafeMutablePointer<Float>,
               into out: UnsafeMutablePointer<Float>, offset: (Int) -> Int) {
    var largest = -Float.infinity
    for j in 0..<count {
        let score = dotProduct(q, keys + offset(j), width) * scale
        scores[j] = score
        if score > largest { largest = score }
    }
    var total: Float = 0
    for j in 0..<count {
        let e = expf(scores[j] - largest)
        scores[j] = e
        total += e
    }
    let inverse = 1 / total
    for d in 0..<width { out[d] = 0 }
    for j in 0..<count {
        let p = scores[j] * inverse, v = values + offset(j)
        for d in 0..<width { out[d] += p * v[d] }
    }
}

/// diffusers' `Attention` with `AttnAddedKVProcessor`, as unCLIP's decoder uses it (SimpleCrossAttn
/// blocks): GroupNorm on the image's pixels as tokens, queries from them, keys and values the projected
/// text context (`add_k_proj`, `add_v_proj`) followed by the pixels' own (`to_k`, `to_v`); the text
/// mask (−10000 at padding, nothing on the pixels); `to_out` and the residual.
struct AddedKVAttention: Sendable {
    let channels: Int, heads: Int, headWidth: Int
    let norm: GroupNorm
    let toQ: Linear, toK: Linear, toV: Linear, addK: Linear, addV: Linear, toOut: Linear

    init(_ prefix: String, channels: Int, headWidth: Int, context: Int, groups: Int, loader: StrictWeightLoader) throws {
        guard headWidth >= 1, channels % headWidth == 0, channels % groups == 0 else {
            throw DalleError.badFile("\(prefix): \(channels) channels in heads of \(headWidth) and \(groups) groups")
        }
        (self.channels, self.heads, self.headWidth) = (channels, channels / headWidth, headWidth)
        norm = try GroupNorm(prefix + "group_norm", channels: channels, groups: groups, loader: loader)
        func linear(_ name: String, _ inputs: Int) throws -> Linear {
            try Linear(prefix + name, inputs: inputs, outputs: channels, bias: true, loader: loader)
        }
        toQ = try linear("to_q", channels)
        toK = try linear("to_k", channels)
        toV = try linear("to_v", channels)
        addK = try linear("add_k_proj", context)
        addV = try linear("add_v_proj", context)
        toOut = try linear("to_out.0", channels)
    }

    /// x [N, C, H, W]; `context` [N, L, context width]; `contextMask` N·L (true: a real token).
    func callAsFunction(_ x: Tensor, context: Tensor, contextMask: [Bool], pool: ThreadPool) -> Tensor {
        let n = x.shape[0], c = channels, pixels = x.count / (n * c), l = context.shape[1]
        let tokens = transposedPlanes(norm(x, pool: pool).scalars, images: n, rows: c, columns: pixels, pool: pool)  // [N, pixels, C]
        let q = toQ(tokens, rows: n * pixels, pool: pool)
        let textK = addK(context.scalars, rows: n * l, pool: pool), textV = addV(context.scalars, rows: n * l, pool: pool)
        let ownK = toK(tokens, rows: n * pixels, pool: pool), ownV = toV(tokens, rows: n * pixels, pool: pool)
        var k: [Float] = [], v: [Float] = []
        k.reserveCapacity(n * (l + pixels) * c)
        v.reserveCapacity(n * (l + pixels) * c)
        for b in 0..<n {
            let text = (b * l * c)..<((b + 1) * l * c), own = (b * pixels * c)..<((b + 1) * pixels * c)
            k.append(contentsOf: textK[text])
            k.append(contentsOf: ownK[own])
            v.append(contentsOf: textV[text])
            v.append(contentsOf: ownV[own])
        }
        let attended = scaledDotProductAttention(query: q, key: k, value: v, batch: n, queries: pixels, keys: l + pixels,
                                                 heads: heads, headWidth: headWidth, pool: pool) { b, _, j in
            j < l && !contextMask[b * l + j] ? -10000 : 0
        }
        var y = transposedPlanes(toOut(attended, rows: n * pixels, pool: pool), images: n, rows: pixels, columns: c, pool: pool)
        y.withUnsafeMutableBufferPointer { yb in
            x.scalars.withUnsafeBufferPointer { xb in
                let yBase = yb.baseAddress.unsafelyUnwrapped, xBase = xb.baseAddress.unsafelyUnwrapped
                pool.parallelFor(n * c) { planes in
                    for i in (planes.lowerBound * pixels)..<(planes.upperBound * pixels) { yBase[i] += xBase[i] }
                }
            }
        }
        return Tensor(uncheckedShape: x.shape, scalars: y)
    }
}

/// Each of `images` row-major [rows, columns] matrices transposed to [columns, rows], the
/// output rows split over `pool`'s threads.
func transposedPlanes(_ x: [Float], images: Int, rows: Int, columns: Int, pool: ThreadPool) -> [Float] {
    [Float](unsafeUninitializedCapacity: x.count) { out, count in
        x.withUnsafeBufferPointer { xb in
            let xBase = xb.baseAddress.unsafelyUnwrapped, yBase = out.baseAddress.unsafelyUnwrapped
            pool.parallelFor(images * columns) { lines in
                for line in lines {
                    let image = line / columns, column = line % columns
                    let source = xBase + image * rows * columns + column, target = yBase + line * rows
                    for r in 0..<rows { target[r] = source[r * columns] }
                }
            }
        }
        count = x.count
    }
}
