/// `nn.Conv2d` with a square kernel, a stride and zero padding on each side (by default
/// stride 1 and "same" padding, (k - 1) / 2, for odd k: OpenAI's dVAE and diffusion UNets;
/// DALLE-pytorch's `DiscreteVAE` halves its images with 4×4, stride 2, padding 1). An f32 weight
/// is packed once into the GEMM kernel's panel layout; a 16-bit weight stays as stored (a view of the
/// file) and is widened block by block as the GEMM packs it.
public struct Conv2d: Sendable {
    public let outChannels: Int
    public let inChannels: Int
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int
    /// The [out, in·k·k] weight matrix: packed by `packGemmA`, or a 16-bit view.
    let matrix: Matrix
    /// [outChannels]
    let bias: [Float]

    enum Matrix: Sendable {
        case packed([Float])
        case stored(Weight)
    }

    /// `weight` is [out, in, k, k]; `bias` is [out] or nil for zeros; `padding` defaults to "same" for odd k.
    public init(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int? = nil) throws {
        try self.init(weight: Weight(weight), bias: bias.map(Weight.init), stride: stride, padding: padding)
    }

    /// The same from weights in their stored precision.
    init(weight: Weight, bias: Weight?, stride: Int = 1, padding: Int? = nil) throws {
        let s = weight.shape
        guard s.count == 4, s[2] == s[3], s[0] > 0, s[1] > 0, s[2] > 0 else {
            throw DalleError.badFile("convolution weight must be [out, in, k, k], got \(s)")
        }
        let pad = padding ?? (s[2] - 1) / 2
        guard stride > 0, pad >= 0, pad < s[2], padding != nil || s[2] % 2 == 1 else {
            throw DalleError.badFile("convolution of kernel \(s[2]) cannot have stride \(stride) and padding \(padding.map(String.init) ?? "same")")
        }
        if let bias, bias.shape != [s[0]] {
            throw DalleError.badFile("convolution bias must be [\(s[0])], got \(bias.shape)")
        }
        outChannels = s[0]; inChannels = s[1]; kernelSize = s[2]
        self.stride = stride; self.padding = pad
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
    init(_ prefix: String, in n: Int, out m: Int, kernel k: Int, stride: Int = 1, padding: Int? = nil,
         weightKey: String = "weight", biasKey: String = "bias", loader: StrictWeightLoader) throws {
        try self.init(weight: try loader.weight(prefix + "." + weightKey, shape: [m, n, k, k]),
                      bias: try loader.weight(prefix + "." + biasKey, shape: [m]), stride: stride, padding: padding)
    }

    /// Output side for an input side `size`.
    func outputSize(_ size: Int) -> Int { (size + 2 * padding - kernelSize) / stride + 1 }

    /// Whether this is a stride-1 "same" convolution, which the GEMM reads through an implicit im2col.
    var isSame: Bool { stride == 1 && 2 * padding == kernelSize - 1 }

    /// Packs a row-major [out, in, k, k] weight whose shape the caller has checked, for a stride-1 "same" convolution.
    init(packing weight: [Float], outChannels: Int, inChannels: Int, kernelSize: Int, bias: [Float]?) {
        self.outChannels = outChannels
        self.inChannels = inChannels
        self.kernelSize = kernelSize
        stride = 1
        padding = (kernelSize - 1) / 2
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
/// [N, C_in, H, W]; returns [N, C_out, H′, W′] (H′ = H for a "same" convolution). `residual`
/// (same shape as y) defaults to zeros. These fusions cover the dVAE's res-blocks: relu → conv,
/// and id + gain · res. The caller guarantees `x.shape[1] == w.inChannels` and the residual's shape.
///
/// Runs as a GEMM: [C_out × C_in·k·k] · im2col(x) [C_in·k·k × H′·W′]. For a "same" convolution
/// the im2col panels are gathered during packing (never materialised) and 1×1 convolutions read
/// x directly as the right-hand matrix; other strides and paddings gather im2col for a band
/// of output rows at a time.
public func conv2d(_ x: Tensor, _ w: Conv2d, reluInput: Bool = false,
                   residual: Tensor? = nil, scale: Float = 1, pool: ThreadPool) -> Tensor {
    let n = x.shape[0], cin = x.shape[1], h = x.shape[2], wd = x.shape[3]
    let k = w.kernelSize, cout = w.outChannels, hw = h * wd
    let oh = max(w.outputSize(h), 0), ow = max(w.outputSize(wd), 0), ohw = oh * ow
    let total = n * cout * ohw
    if total == 0 { return Tensor(zeros: [n, cout, oh, ow]) }
    let depth = cin * k * k
    let y = [Float](unsafeUninitializedCapacity: total) { yBuf, count in
        x.scalars.withUnsafeBufferPointer { xBuf in
            w.withOperand { operand in
                w.bias.withUnsafeBufferPointer { biasBuf in
                    withResidualPointer(residual) { res in
                        for b in 0..<n {
                            let xb = xBuf.baseAddress! + b * cin * hw, yb = yBuf.baseAddress! + b * cout * ohw
                            func run(_ rhs: GemmB, rows: Range<Int>) {
                                let epilogue = GemmEpilogue(bias: biasBuf.baseAddress!, scale: scale,
                                                            residual: res.map { $0 + b * cout * ohw + rows.lowerBound * ow })
                                gemmDriver(m: cout, n: rows.count * ow, k: depth, a: operand, b: rhs,
                                           c: yb + rows.lowerBound * ow, ldc: ohw,
                                           accumulate: false, epilogue: epilogue, pool: pool)
                            }
                            if w.isSame {
                                run(k == 1 ? .matrix(xb, ld: hw, relu: reluInput)
                                           : .image(xb, height: h, width: wd, kernel: k, relu: reluInput), rows: 0..<oh)
                                continue
                            }
                            forEachBand(rows: oh, floatsPerRow: depth * ow) { rows, columns in
                                im2col(xb, channels: cin, height: h, width: wd, w, reluInput: reluInput,
                                       outputRows: rows, outputWidth: ow, into: columns, pool: pool)
                                run(.matrix(columns, ld: rows.count * ow, relu: false), rows: rows)
                            }
                        }
                    }
                }
            }
        }
        count = total
    }
    return Tensor(uncheckedShape: [n, cout, oh, ow], scalars: y)
}

/// Floats of a materialised im2col or col2im band (4 MiB: inside L3, and bounded whatever the image size).
private let bandFloats = 1 << 20

/// Calls `body` for consecutive bands of `rows` rows, each with a scratch buffer of
/// `floatsPerRow` floats per row; band heights depend on the shapes alone.
private func forEachBand(rows: Int, floatsPerRow: Int,
                         _ body: (Range<Int>, UnsafeMutablePointer<Float>) -> Void) {
    let band = max(1, min(rows, bandFloats / max(floatsPerRow, 1)))
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: band * floatsPerRow)
    defer { scratch.deallocate() }
    var start = 0
    while start < rows {
        let end = min(rows, start + band)
        body(start..<end, scratch)
        start = end
    }
}

/// The im2col matrix of one CHW image for output rows `outputRows` of `w`: row (c·k + ky)·k + kx,
/// column (oy - first row)·outputWidth + ox holds x[c, oy·stride − padding + ky, ox·stride − padding + kx]
/// (zero outside the image).
private func im2col(_ x: UnsafePointer<Float>, channels: Int, height h: Int, width wd: Int, _ w: Conv2d,
                    reluInput: Bool, outputRows: Range<Int>, outputWidth ow: Int,
                    into columns: UnsafeMutablePointer<Float>, pool: ThreadPool) {
    let k = w.kernelSize, s = w.stride, p = w.padding, width = outputRows.count * ow
    pool.parallelFor(channels * k * k) { rows in
        for r in rows {
            let c = r / (k * k), ky = r / k % k, kx = r % k
            let plane = x + c * h * wd
            var dst = columns + r * width
            for oy in outputRows {
                let iy = oy * s - p + ky
                if iy < 0 || iy >= h {
                    dst.update(repeating: 0, count: ow)
                } else {
                    let line = plane + iy * wd
                    for ox in 0..<ow {
                        let ix = ox * s - p + kx
                        let v = ix >= 0 && ix < wd ? line[ix] : 0
                        dst[ox] = reluInput ? max(v, 0) : v
                    }
                }
                dst += ow
            }
        }
    }
}

/// `nn.ConvTranspose2d` with a square kernel, a stride and zero padding (DALLE-pytorch's
/// `DiscreteVAE` doubles its images with 4×4, stride 2, padding 1): each input pixel adds
/// its kernel-sized patch, weighted, to the output. The weight [in, out, k, k] is stored
/// transposed, [out·k·k, in], and packed once for the GEMM.
public struct ConvTranspose2d: Sendable {
    public let inChannels: Int
    public let outChannels: Int
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int
    /// [out·k·k, in], packed by `packGemmA`.
    let packedTransposed: [Float]
    /// [outChannels]
    let bias: [Float]

    /// `weight` is [in, out, k, k] (PyTorch's layout); `bias` is [out] or nil for zeros.
    init(weight: Weight, bias: Weight?, stride: Int, padding: Int) throws {
        let s = weight.shape
        guard s.count == 4, s[2] == s[3], s[0] > 0, s[1] > 0, s[2] > 0 else {
            throw DalleError.badFile("transposed convolution weight must be [in, out, k, k], got \(s)")
        }
        guard stride > 0, padding >= 0, padding < s[2] else {
            throw DalleError.badFile("transposed convolution of kernel \(s[2]) cannot have stride \(stride) and padding \(padding)")
        }
        if let bias, bias.shape != [s[1]] {
            throw DalleError.badFile("transposed convolution bias must be [\(s[1])], got \(bias.shape)")
        }
        inChannels = s[0]; outChannels = s[1]; kernelSize = s[2]
        self.stride = stride; self.padding = padding
        let values = weight.floats(), rows = s[1] * s[2] * s[3], cin = s[0]
        var transposed = [Float](repeating: 0, count: values.count)
        for i in 0..<cin { for r in 0..<rows { transposed[r * cin + i] = values[i * rows + r] } }
        packedTransposed = transposed.withUnsafeBufferPointer { packGemmA($0.baseAddress!, m: rows, k: cin) }
        weight.releaseStoredBytes()
        self.bias = bias?.floats() ?? [Float](repeating: 0, count: s[1])
    }

    /// Reads `prefix + ".weight"` [in, out, k, k] and `prefix + ".bias"` [out].
    init(_ prefix: String, in n: Int, out m: Int, kernel k: Int, stride: Int, padding: Int,
         loader: StrictWeightLoader) throws {
        try self.init(weight: try loader.weight(prefix + ".weight", shape: [n, m, k, k]),
                      bias: try loader.weight(prefix + ".bias", shape: [m]), stride: stride, padding: padding)
    }

    /// Output side for an input side `size`.
    func outputSize(_ size: Int) -> Int { (size - 1) * stride - 2 * padding + kernelSize }
}

/// The transposed convolution of relu(x) (when `reluInput`) or x [N, C_in, H, W], plus bias:
/// [N, C_out, H′, W′]. The caller guarantees `x.shape[1] == w.inChannels`.
///
/// Runs as a GEMM, Wᵀ [C_out·k·k × C_in] · x [C_in × H·W] for a band of input rows at a time,
/// whose columns are then added into the output (col2im), each output channel by one thread in
/// a fixed order, so the result does not depend on the thread count.
public func convTranspose2d(_ x: Tensor, _ w: ConvTranspose2d, reluInput: Bool = false, pool: ThreadPool) -> Tensor {
    let n = x.shape[0], cin = x.shape[1], h = x.shape[2], wd = x.shape[3]
    let k = w.kernelSize, s = w.stride, p = w.padding, cout = w.outChannels, hw = h * wd
    let oh = max(w.outputSize(h), 0), ow = max(w.outputSize(wd), 0), ohw = oh * ow
    var y = Tensor(zeros: [n, cout, oh, ow])
    if y.count == 0 || hw == 0 { return y }
    let patch = cout * k * k
    x.scalars.withUnsafeBufferPointer { xBuf in
        y.scalars.withUnsafeMutableBufferPointer { yBuf in
            w.packedTransposed.withUnsafeBufferPointer { wBuf in
                let yp = yBuf.baseAddress!
                for plane in 0..<(n * cout) {
                    let value = w.bias[plane % cout]
                    (yp + plane * ohw).update(repeating: value, count: ohw)
                }
                for b in 0..<n {
                    let xb = xBuf.baseAddress! + b * cin * hw
                    forEachBand(rows: h, floatsPerRow: patch * wd) { rows, columns in
                        let width = rows.count * wd
                        gemmDriver(m: patch, n: width, k: cin, a: .packed(wBuf.baseAddress!),
                                   b: .matrix(xb + rows.lowerBound * wd, ld: hw, relu: reluInput),
                                   c: columns, ldc: width, accumulate: false, epilogue: nil, pool: pool)
                        pool.parallelFor(cout) { channels in
                            for o in channels {
                                let out = yp + (b * cout + o) * ohw
                                for ky in 0..<k {
                                    for kx in 0..<k {
                                        let src = columns + ((o * k + ky) * k + kx) * width
                                        for iy in rows {
                                            let oy = iy * s - p + ky
                                            if oy < 0 || oy >= oh { continue }
                                            let line = src + (iy - rows.lowerBound) * wd, dst = out + oy * ow
                                            for ix in 0..<wd {
                                                let ox = ix * s - p + kx
                                                if ox >= 0 && ox < ow { dst[ox] += line[ix] }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return y
}

/// Calls `body` with the residual's storage, or nil.
private func withResidualPointer<R>(_ t: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let t else { return body(nil) }
    return t.scalars.withUnsafeBufferPointer { body($0.baseAddress!) }
}
