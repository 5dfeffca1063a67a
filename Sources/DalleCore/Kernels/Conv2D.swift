/// Weights of a square 2-D convolution with stride 1 and "same" zero padding
/// ((k - 1) / 2 on each side), as OpenAI's dVAE uses. Built once at load time.
public struct Conv2DWeights: Sendable {
    public let outChannels: Int
    public let inChannels: Int
    public let kernelSize: Int
    /// [outChannels, inChannels, k, k], PyTorch's layout.
    let weight: [Float]
    /// [outChannels]
    let bias: [Float]

    /// `weight` is [out, in, k, k] with k odd; `bias` is [out] or nil for zeros.
    public init(weight: Tensor, bias: Tensor?) throws {
        let s = weight.shape
        guard s.count == 4, s[2] == s[3], s[2] % 2 == 1, s[0] > 0, s[1] > 0 else {
            throw DalleError.badFile("convolution weight must be [out, in, k, k] with odd k, got \(s)")
        }
        if let bias, bias.shape != [s[0]] {
            throw DalleError.badFile("convolution bias must be [\(s[0])], got \(bias.shape)")
        }
        outChannels = s[0]; inChannels = s[1]; kernelSize = s[2]
        self.weight = weight.scalars
        self.bias = bias?.scalars ?? [Float](repeating: 0, count: s[0])
    }
}

/// y = residual + scale · (conv(reluInput ? max(x, 0) : x) + bias) for x of shape
/// [N, C_in, H, W]; returns [N, C_out, H, W]. `residual` (same shape as y) defaults to
/// zeros. These fusions cover the dVAE's res-blocks: relu → conv, and id + gain · res.
/// The caller guarantees `x.shape[1] == w.inChannels` and the residual's shape.
public func conv2d(_ x: Tensor, _ w: Conv2DWeights, reluInput: Bool = false,
                   residual: Tensor? = nil, scale: Float = 1, pool: ThreadPool) -> Tensor {
    let n = x.shape[0], cin = x.shape[1], h = x.shape[2], wd = x.shape[3]
    let k = w.kernelSize, pad = (k - 1) / 2, cout = w.outChannels
    var y = Tensor(zeros: [n, cout, h, wd])
    x.scalars.withUnsafeBufferPointer { xp in
        y.scalars.withUnsafeMutableBufferPointer { yp in
            let yBase = yp.baseAddress!
            pool.parallelFor(n * cout) { range in
                for job in range {
                    let b = job / cout, o = job % cout
                    let out = yBase + (b * cout + o) * h * wd
                    for i in 0..<(h * wd) { out[i] = w.bias[o] }
                    for c in 0..<cin {
                        let plane = xp.baseAddress! + (b * cin + c) * h * wd
                        for ky in 0..<k {
                            for kx in 0..<k {
                                let wv = w.weight[((o * cin + c) * k + ky) * k + kx]
                                for yy in 0..<h {
                                    let sy = yy + ky - pad
                                    if sy < 0 || sy >= h { continue }
                                    for xx in 0..<wd {
                                        let sx = xx + kx - pad
                                        if sx < 0 || sx >= wd { continue }
                                        let v = plane[sy * wd + sx]
                                        out[yy * wd + xx] += wv * (reluInput ? max(v, 0) : v)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    if scale != 1 { for i in 0..<y.scalars.count { y.scalars[i] *= scale } }
    if let residual { for i in 0..<y.scalars.count { y.scalars[i] += residual.scalars[i] } }
    return y
}
