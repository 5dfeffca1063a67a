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
