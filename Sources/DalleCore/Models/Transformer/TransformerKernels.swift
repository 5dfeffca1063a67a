#if canImport(Glibc)
import Glibc
#endif

// Row-wise kernels of the transformer. Every kernel splits its *outputs* (rows, or
// column tiles) over threads and sums in a fixed order, so results do not depend on
// the thread count.

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

