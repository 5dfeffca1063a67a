#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// softmax(q·kᵀ/√d + bias)·v for each of `batch` sequences and each head: `query` is
/// [batch·queries, heads·d], `key` and `value` [batch·keys, heads·d], `bias(b, i, j)` the additive
/// mask of query i and key j in sequence b. Returns [batch·queries, heads·d].
func scaledDotProductAttention(query: [Float], key: [Float], value: [Float], batch: Int, queries: Int, keys: Int,
                               heads: Int, headWidth d: Int, bias: (Int, Int, Int) -> Float) -> [Float] {
    let w = heads * d, scale = 1 / Float(d).squareRoot()
    var out = [Float](repeating: 0, count: batch * queries * w)
    var scores = [Float](repeating: 0, count: keys)
    for s in 0..<batch {
        for head in 0..<heads {
            for i in 0..<queries {
                let q = (s * queries + i) * w + head * d
                var largest = -Float.infinity
                for j in 0..<keys {
                    let k = (s * keys + j) * w + head * d
                    var dot: Float = 0
                    for c in 0..<d { dot += query[q + c] * key[k + c] }
                    scores[j] = dot * scale + bias(s, i, j)
                    largest = max(largest, scores[j])
                }
                var total: Float = 0
                for j in 0..<keys { scores[j] = expf(scores[j] - largest); total += scores[j] }
                for j in 0..<keys {
                    let p = scores[j] / total, v = (s * keys + j) * w + head * d
                    for c in 0..<d { out[q + c] += p * value[v + c] }
                }
            }
        }
    }
    return out
}

/// diffusers' `Attention` with `AttnAddedKVProcessor`, as unCLIP's decoder uses it (SimpleCrossAttn
/// blocks): GroupNorm on the image's pixels as tokens, queries from them, keys and values the projected
/// text context (`add_k_proj`, `add_v_proj`) followed by the pixels' own (`to_k`, `to_v`); the text
/// mask (−10000 at padding, nothing on the pixels); `to_out` and the residual.
struct AddedKVAttention: Sendable {
    let channels: Int, heads: Int, headWidth: Int, groups: Int
    let norm: (weight: [Float], bias: [Float])
    let toQ: Linear, toK: Linear, toV: Linear, addK: Linear, addV: Linear, toOut: Linear

    init(_ prefix: String, channels: Int, headWidth: Int, context: Int, groups: Int, loader: StrictWeightLoader) throws {
        guard headWidth >= 1, channels % headWidth == 0, channels % groups == 0 else {
            throw DalleError.badFile("\(prefix): \(channels) channels in heads of \(headWidth) and \(groups) groups")
        }
        (self.channels, self.heads, self.headWidth, self.groups) = (channels, channels / headWidth, headWidth, groups)
        norm = (try loader.weight(prefix + "group_norm.weight", shape: [channels]).floats(),
                try loader.weight(prefix + "group_norm.bias", shape: [channels]).floats())
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
        let normed = groupNorm(x, groups: groups, weight: norm.weight, bias: norm.bias)
        var tokens = [Float](repeating: 0, count: n * pixels * c)  // [N, pixels, C]
        for b in 0..<n { for ch in 0..<c { for p in 0..<pixels { tokens[(b * pixels + p) * c + ch] = normed.scalars[(b * c + ch) * pixels + p] } } }
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
                                                 heads: heads, headWidth: headWidth) { b, _, j in
            j < l && !contextMask[b * l + j] ? -10000 : 0
        }
        let out = toOut(attended, rows: n * pixels, pool: pool)
        var y = x.scalars
        for b in 0..<n { for ch in 0..<c { for p in 0..<pixels { y[(b * c + ch) * pixels + p] += out[(b * pixels + p) * c + ch] } } }
        return Tensor(uncheckedShape: x.shape, scalars: y)
    }
}
