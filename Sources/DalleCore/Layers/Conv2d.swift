/// `nn.Conv2d` with a square odd kernel, stride 1 and "same" zero padding ((k - 1) / 2 on
/// each side), as OpenAI's dVAE and diffusion UNets use it. An f32 weight is packed once
/// into the GEMM kernel's panel layout; a 16-bit weight stays as stored (a view of the
/// file) and is widened block by block as the GEMM packs it.
public struct Conv2d: Sendable {
    public let outChannels: Int
    public let inChannels: Int
    public let kernelSize: Int
    /// The [out, in·k·k] weight matrix: packed by `packGemmA`, or a 16-bit view.
    let matrix: Matrix
    /// [outChannels]
    let bias: [Float]

    enum Matrix: Sendable {
        case packed([Float])
        case stored(Weight)
    }

    /// `weight` is [out, in, k, k] with k odd; `bias` is [out] or nil for zeros.
    public init(weight: Tensor, bias: Tensor?) throws {
        try self.init(weight: Weight(weight), bias: bias.map(Weight.init))
    }

    /// The same from weights in their stored precision.
    init(weight: Weight, bias: Weight?) throws {
        let s = weight.shape
        guard s.count == 4, s[2] == s[3], s[2] % 2 == 1, s[0] > 0, s[1] > 0 else {
            throw DalleError.badFile("convolution weight must be [out, in, k, k] with odd k, got \(s)")
        }
        if let bias, bias.shape != [s[0]] {
            throw DalleError.badFile("convolution bias must be [\(s[0])], got \(bias.shape)")
        }
        outChannels = s[0]; inChannels = s[1]; kernelSize = s[2]
        switch weight.format {
        case .f16, .bf16:
            matrix = .stored(weight)
        case .f32, .quantized:
            let values = weight.floats()
            matrix = .packed(values.withUnsafeBufferPointer { packGemmA($0.baseAddress!, m: s[0], k: s[1] * s[2] * s[3]) })
            weight.releaseStoredBytes()
        }
        self.bias = bias?.floats() ?? [Float](repeating: 0, count: s[0])
    }

    /// Reads `prefix + "." + weightKey` [out, in, k, k] and `prefix + "." + biasKey` [out].
    init(_ prefix: String, in n: Int, out m: Int, kernel k: Int, weightKey: String = "weight", biasKey: String = "bias",
         loader: StrictWeightLoader) throws {
        try self.init(weight: try loader.weight(prefix + "." + weightKey, shape: [m, n, k, k]),
                      bias: try loader.weight(prefix + "." + biasKey, shape: [m]))
    }

    /// Packs a row-major [out, in, k, k] weight whose shape the caller has checked.
    init(packing weight: [Float], outChannels: Int, inChannels: Int, kernelSize: Int, bias: [Float]?) {
        self.outChannels = outChannels
        self.inChannels = inChannels
        self.kernelSize = kernelSize
        matrix = .packed(weight.withUnsafeBufferPointer {
            packGemmA($0.baseAddress.unsafelyUnwrapped, m: outChannels, k: inChannels * kernelSize * kernelSize)
        })
        self.bias = bias ?? [Float](repeating: 0, count: outChannels)
    }

    /// Calls `body` with the left GEMM operand.
    func withOperand<R>(_ body: (GemmA) -> R) -> R {
        switch matrix {
        case let .packed(values): return values.withUnsafeBufferPointer { body(.packed($0.baseAddress.unsafelyUnwrapped)) }
        case let .stored(weight): return body(.matrix16(weight.base, ld: inChannels * kernelSize * kernelSize, format: weight.format))
        }
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
public func conv2d(_ x: Tensor, _ w: Conv2d, reluInput: Bool = false,
                   residual: Tensor? = nil, scale: Float = 1, pool: ThreadPool) -> Tensor {
    let n = x.shape[0], cin = x.shape[1], h = x.shape[2], wd = x.shape[3]
    let k = w.kernelSize, cout = w.outChannels, hw = h * wd
    let total = n * cout * hw
    if total == 0 { return Tensor(zeros: [n, cout, h, wd]) }
    let y = [Float](unsafeUninitializedCapacity: total) { yBuf, count in
        x.scalars.withUnsafeBufferPointer { xBuf in
            w.withOperand { operand in
                w.bias.withUnsafeBufferPointer { biasBuf in
                    withResidualPointer(residual) { res in
                        for b in 0..<n {
                            let xb = xBuf.baseAddress! + b * cin * hw
                            let rhs: GemmB = k == 1
                                ? .matrix(xb, ld: hw, relu: reluInput)
                                : .image(xb, height: h, width: wd, kernel: k, relu: reluInput)
                            let epilogue = GemmEpilogue(bias: biasBuf.baseAddress!, scale: scale,
                                                        residual: res.map { $0 + b * cout * hw })
                            gemmDriver(m: cout, n: hw, k: cin * k * k, a: operand,
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
