#if canImport(Glibc)
import Glibc
#endif

/// Which keys each query position may attend to: ascending key positions per query.
public struct AttentionPattern: Sendable {
    public let length: Int
    let keys: [[Int32]]

    /// Every position sees every position (CLIP's vision tower).
    public static func bidirectional(length: Int) -> AttentionPattern {
        let all = (0..<length).map { Int32($0) }
        return AttentionPattern(length: length, keys: Array(repeating: all, count: length))
    }

    /// Each position sees itself and the positions before it.
    public static func causal(length: Int) -> AttentionPattern {
        AttentionPattern(length: length, keys: (0..<length).map { p in (0...p).map { Int32($0) } })
    }

    /// DALLE-pytorch's pattern of one layer type over the whole training sequence.
    public static func dalle(_ c: TransformerConfig, type: AttentionType) -> AttentionPattern {
        let lists = KeyLists(c, type: type, start: 0, count: c.seqLen)
        return AttentionPattern(length: c.seqLen, keys: (0..<c.seqLen).map { t in
            Array(lists.positions[lists.offsets[t]..<lists.offsets[t + 1]])
        })
    }
}

extension Tape {
    /// Multi-head scaled dot-product attention. `qkv` [batch·length, 3·heads·dimHead] holds
    /// q, k and v side by side, each split into heads as (head, feature); returns
    /// [batch·length, heads·dimHead]. Scores are q·k / sqrt(dimHead) over `pattern`'s keys.
    ///
    /// Each (example, head) runs as dense products on the GEMM kernel — scores Q·Kᵀ, then the
    /// softmax over each query's keys (every other weight exactly 0), then P·V — and its
    /// backward likewise; one thread per (example, head), so results do not depend on the
    /// thread count.
    public func attention(_ qkv: Variable, batch: Int, heads: Int, dimHead: Int, pattern: AttentionPattern) -> Variable {
        let t = pattern.length, inner = heads * dimHead, width = 3 * inner
        let scale = Float(1 / Double(dimHead).squareRoot())
        let keys = pattern.keys
        let pool = self.pool, serial = ThreadPool(threads: 1)
        var out = uninitializedFloats(batch * t * inner)
        // Attention weights per (batch, head, query) over all keys, [batch][heads][t][t].
        var probabilities = uninitializedFloats(batch * heads * t * t)
        withPointers(qkv.value) { x in
            out.withUnsafeMutableBufferPointer { ob in probabilities.withUnsafeMutableBufferPointer { pb in
                let o = ob.baseAddress.unsafelyUnwrapped, probs = pb.baseAddress.unsafelyUnwrapped
                pool.parallelForEach(batch * heads) { item in
                    let b = item / heads, h = item % heads
                    let q = x + b * t * width + h * dimHead, k = q + inner, v = q + 2 * inner
                    let p = probs + item * t * t
                    gemm(m: t, n: t, k: dimHead, a: q, lda: width, b: k, ldb: width, transposeB: true, c: p, ldc: t,
                         accumulate: false, pool: serial)
                    var row = [Float](repeating: 0, count: t)
                    for i in 0..<t { softmaxRow(p + i * t, keys: keys[i], scale: scale, scratch: &row) }
                    gemm(m: t, n: dimHead, k: t, a: p, lda: t, b: v, ldb: width,
                         c: o + b * t * inner + h * dimHead, ldc: inner, accumulate: false, pool: serial)
                }
            } }
        }
        return record(out, shape: [batch * t, inner], inputs: [qkv]) { node in
            qkv.accumulateGrad { dx in withPointers(node.grad) { g in withPointers(qkv.value) { x in withPointers(probabilities) { probs in
                pool.parallelForEach(batch * heads) { item in
                    let b = item / heads, h = item % heads
                    let q = x + b * t * width + h * dimHead, k = q + inner, v = q + 2 * inner
                    let dq = dx + b * t * width + h * dimHead, dk = dq + inner, dv = dq + 2 * inner
                    let p = probs + item * t * t, go = g + b * t * inner + h * dimHead
                    // A t×t scratch matrix, fully written before it is read.
                    var scratch = uninitializedFloats(t * t)
                    scratch.withUnsafeMutableBufferPointer { sb in
                        let ds = sb.baseAddress.unsafelyUnwrapped
                        // dV += Pᵀ·dO
                        gemm(m: t, n: dimHead, k: t, a: p, lda: t, transposeA: true, b: go, ldb: inner, c: dv, ldc: width,
                             accumulate: true, pool: serial)
                        // dP = dO·Vᵀ, then dS = P ⊙ (dP − Σ_j P·dP) · scale (0 off the pattern, where P is)
                        gemm(m: t, n: t, k: dimHead, a: go, lda: inner, b: v, ldb: width, transposeB: true, c: ds, ldc: t,
                             accumulate: false, pool: serial)
                        for i in 0..<t {
                            let pr = p + i * t, dr = ds + i * t
                            var weighted: Float = 0
                            for j in 0..<t { weighted += pr[j] * dr[j] }
                            for j in 0..<t { dr[j] = pr[j] * (dr[j] - weighted) * scale }
                        }
                        // dQ += dS·K, dK += dSᵀ·Q
                        gemm(m: t, n: dimHead, k: t, a: ds, lda: t, b: k, ldb: width, c: dq, ldc: width,
                             accumulate: true, pool: serial)
                        gemm(m: t, n: dimHead, k: t, a: ds, lda: t, transposeA: true, b: q, ldb: width, c: dk, ldc: width,
                             accumulate: true, pool: serial)
                    }
                }
            } } } }
        }
    }
}

/// Turns one row of raw scores q·k into attention weights: softmax of scale·score over
/// `keys`, exactly 0 everywhere else. `scratch` holds at least a row.
@inline(__always)
private func softmaxRow(_ row: UnsafeMutablePointer<Float>, keys: [Int32], scale: Float, scratch: inout [Float]) {
    var m = -Float.infinity
    for j in keys { m = max(m, scale * row[Int(j)]) }
    var total: Float = 0
    for j in keys { let e = expf(scale * row[Int(j)] - m); scratch[Int(j)] = e; total += e }
    let inv = 1 / total, count = scratch.count
    for j in 0..<count { row[j] = 0 }
    for j in keys { row[Int(j)] = scratch[Int(j)] * inv }
}
