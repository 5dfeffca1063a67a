/// `nn.LayerNorm` over the last dimension (eps 1e-5), for every model family. Mean and
/// variance are summed in Double, in a fixed order, so rows normalise identically for
/// every thread count.
struct LayerNorm: Sendable {
    let weight: [Float]
    let bias: [Float]
    static let epsilon = 1e-5

    init(weight: [Float], bias: [Float]) {
        self.weight = weight
        self.bias = bias
    }

    /// Reads `prefix.weight` and `prefix.bias`, both [width].
    init(_ prefix: String, width: Int, loader: StrictWeightLoader) throws {
        weight = try loader.weight(prefix + ".weight", shape: [width]).floats()
        bias = try loader.weight(prefix + ".bias", shape: [width]).floats()
    }

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

    /// Normalises the rows of `x` in place.
    func applyInPlace(_ x: inout [Float], rows: Int, pool: ThreadPool) {
        x.withUnsafeMutableBufferPointer { b in
            let p = b.baseAddress.unsafelyUnwrapped
            apply(p, rows: rows, into: p, pool: pool)
        }
    }

    /// The normalised rows of `x`, as a new array.
    func callAsFunction(_ x: [Float], pool: ThreadPool) -> [Float] {
        var y = x
        applyInPlace(&y, rows: x.count / max(weight.count, 1), pool: pool)
        return y
    }
}
