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
    public func attention(_ qkv: Variable, batch: Int, heads: Int, dimHead: Int, pattern: AttentionPattern) -> Variable {
        let t = pattern.length, inner = heads * dimHead, width = 3 * inner
        let scale = Float(1 / Double(dimHead).squareRoot())
        let keys = pattern.keys
        let pool = self.pool
        var out = [Float](repeating: 0, count: batch * t * inner)
        // Attention weights per (batch, head, query) over that query's keys, [batch][heads][t][t].
        var probabilities = [Float](repeating: 0, count: batch * heads * t * t)
        withPointers(qkv.value) { x in
            out.withUnsafeMutableBufferPointer { ob in probabilities.withUnsafeMutableBufferPointer { pb in
                let o = ob.baseAddress.unsafelyUnwrapped, probs = pb.baseAddress.unsafelyUnwrapped
                pool.parallelForEach(batch * heads) { item in
                    let b = item / heads, h = item % heads
                    let base = x + b * t * width + h * dimHead
                    for i in 0..<t {
                        let q = base + i * width, p = probs + (item * t + i) * t
                        var m = -Float.infinity
                        for j in keys[i] {
                            let s = scale * dotProduct(q, base + Int(j) * width + inner, dimHead)
                            p[Int(j)] = s
                            m = max(m, s)
                        }
                        var total: Float = 0
                        for j in keys[i] { let e = expf(p[Int(j)] - m); p[Int(j)] = e; total += e }
                        let inv = 1 / total
                        let dst = o + (b * t + i) * inner + h * dimHead
                        for j in keys[i] {
                            p[Int(j)] *= inv
                            let w = p[Int(j)], v = base + Int(j) * width + 2 * inner
                            for d in 0..<dimHead { dst[d] += w * v[d] }
                        }
                    }
                }
            } }
        }
        return record(out, shape: [batch * t, inner], inputs: [qkv]) { node in
            qkv.accumulateGrad { dx in withPointers(node.grad) { g in withPointers(qkv.value) { x in withPointers(probabilities) { probs in
                pool.parallelForEach(batch * heads) { item in
                    let b = item / heads, h = item % heads
                    let base = x + b * t * width + h * dimHead, dbase = dx + b * t * width + h * dimHead
                    var dScores = [Float](repeating: 0, count: t)
                    for i in 0..<t {
                        let p = probs + (item * t + i) * t, go = g + (b * t + i) * inner + h * dimHead
                        var weighted: Float = 0
                        for j in keys[i] {
                            let v = base + Int(j) * width + 2 * inner, dv = dbase + Int(j) * width + 2 * inner
                            let w = p[Int(j)]
                            for d in 0..<dimHead { dv[d] += w * go[d] }
                            let dp = dotProduct(go, v, dimHead)
                            dScores[Int(j)] = dp
                            weighted += w * dp
                        }
                        let q = base + i * width, dq = dbase + i * width
                        for j in keys[i] {
                            let ds = p[Int(j)] * (dScores[Int(j)] - weighted) * scale
                            let k = base + Int(j) * width + inner, dk = dbase + Int(j) * width + inner
                            for d in 0..<dimHead { dq[d] += ds * k[d]; dk[d] += ds * q[d] }
                        }
                    }
                }
            } } } }
        }
    }
}
