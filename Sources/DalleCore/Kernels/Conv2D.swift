/// Weights of a square 2-D convolution with stride 1 and "same" zero padding
/// ((k - 1) / 2 on each side), as OpenAI's dVAE uses. Built once at load time, when the
/// weights are packed into the GEMM kernel's panel layout.
public struct Conv2DWeights: Sendable {
    public let outChannels: Int
    public let inChannels: Int
    public let kernelSize: Int
    /// The [out, in·k·k] weight matrix packed by `packGemmA`.
    let packedWeight: [Float]
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
        let depth = s[1] * s[2] * s[3]
        packedWeight = weight.scalars.withUnsafeBufferPointer {
            packGemmA($0.baseAddress!, m: s[0], k: depth)
        }
        self.bias = bias?.scalars ?? [Float](repeating: 0, count: s[0])
    }

    /// Packs a row-major [out, in, k, k] weight whose shape the caller has checked.
    init(packing weight: [Float], outChannels: Int, inChannels: Int, kernelSize: Int, bias: [Float]?) {
        self.outChannels = outChannels
        self.inChannels = inChannels
        self.kernelSize = kernelSize
        packedWeight = weight.withUnsafeBufferPointer {
            packGemmA($0.baseAddress.unsafelyUnwrapped, m: outChannels, k: inChannels * kernelSize * kernelSize)
        }
        self.bias = bias ?? [Float](repeating: 0, count: outChannels)
    }
}

/// y = residual + scale · (conv(reluInput ? max(x, 0) : x) + bias) for x of shape
/// [N, C_in, H, W]; returns [N, C_out, H, W]. `residual` (same shape as y) defaults to
/// zeros. These fusions cover the dVAE's res-blocks: relu → conv, and id + gain · res.
/// The caller guarantees `x.shape[1] == w.inChannels` and the residual's shape.
///
/// Runs as an implicit GEMM: [C_out × C_in·k·k] · im2col(x) [C_in·k·k × H·W], with the
/// im2col panels gathered during packing (never materialised) and 1×1 convolutions
/// reading x directly as the right-hand matrix.
public func conv2d(_ x: Tensor, _ w: Conv2DWeights, reluInput: Bool = false,
                   residual: Tensor? = nil, scale: Float = 1, pool: ThreadPool) -> Tensor {
    let n = x.shape[0], cin = x.shape[1], h = x.shape[2], wd = x.shape[3]
    let k = w.kernelSize, cout = w.outChannels, hw = h * wd
    let total = n * cout * hw
    if total == 0 { return Tensor(zeros: [n, cout, h, wd]) }
    let y = [Float](unsafeUninitializedCapacity: total) { yBuf, count in
        x.scalars.withUnsafeBufferPointer { xBuf in
            w.packedWeight.withUnsafeBufferPointer { aBuf in
                w.bias.withUnsafeBufferPointer { biasBuf in
                    withResidualPointer(residual) { res in
                        for b in 0..<n {
                            let xb = xBuf.baseAddress! + b * cin * hw
                            let rhs: GemmB = k == 1
                                ? .matrix(xb, ld: hw, relu: reluInput)
                                : .image(xb, height: h, width: wd, kernel: k, relu: reluInput)
                            let epilogue = GemmEpilogue(bias: biasBuf.baseAddress!, scale: scale,
                                                        residual: res.map { $0 + b * cout * hw })
                            gemmDriver(m: cout, n: hw, k: cin * k * k, a: .packed(aBuf.baseAddress!),
                                       b: rhs, c: yBuf.baseAddress! + b * cout * hw, ldc: hw,
                                       accumulate: false, epilogue: epilogue, pool: pool)
                        }
                    }
                }
            }
        }
        count = total
    }
    return Tensor(uncheckedShape: [n, cout, h, wd], scalars: y)
}

/// Calls `body` with the residual's storage, or nil.
private func withResidualPointer<R>(_ t: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let t else { return body(nil) }
    return t.scalars.withUnsafeBufferPointer { body($0.baseAddress!) }
}
