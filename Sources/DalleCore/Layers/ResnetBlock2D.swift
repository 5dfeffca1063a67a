/// diffusers' `ResnetBlock2D`, for every model family (unCLIP's UNets; without a time embedding, VQGAN's
/// res-block): GroupNorm → SiLU → (nearest ×2 or 2×2
/// average-pool *inside* the block, on the shortcut too) → conv 3×3; the time embedding SiLU →
/// `time_emb_proj` added after conv1, or with `scaleShift` (Karlo's decoder) split into scale and
/// shift applied after GroupNorm 2 as h·(1 + scale) + shift; SiLU → conv 3×3; a 1×1
/// `conv_shortcut` when the channels change; output (shortcut + h) / `outputScale`.
struct ResnetBlock2D: Sendable {
    enum Resample: Sendable { case none, up, down }

    let inChannels: Int, outChannels: Int
    let norm1: GroupNorm, norm2: GroupNorm
    let conv1: Conv2d, conv2: Conv2d, shortcut: Conv2d?
    let timeProjection: Linear?
    let scaleShift: Bool, resample: Resample, outputScale: Float

    init(_ prefix: String, in inChannels: Int, out outChannels: Int, timeEmbedding: Int?, groups: Int, epsilon: Double = 1e-5,
         scaleShift: Bool, resample: Resample = .none, outputScale: Float = 1, loader: StrictWeightLoader) throws {
        (self.inChannels, self.outChannels) = (inChannels, outChannels)
        norm1 = try GroupNorm(prefix + "norm1", channels: inChannels, groups: groups, epsilon: epsilon, loader: loader)
        norm2 = try GroupNorm(prefix + "norm2", channels: outChannels, groups: groups, epsilon: epsilon, loader: loader)
        conv1 = try Conv2d(prefix + "conv1", in: inChannels, out: outChannels, kernel: 3, loader: loader)
        conv2 = try Conv2d(prefix + "conv2", in: outChannels, out: outChannels, kernel: 3, loader: loader)
        shortcut = inChannels == outChannels ? nil : try Conv2d(prefix + "conv_shortcut", in: inChannels, out: outChannels, kernel: 1, loader: loader)
        timeProjection = try timeEmbedding.map {
            try Linear(prefix + "time_emb_proj", inputs: $0, outputs: scaleShift ? 2 * outChannels : outChannels, bias: true, loader: loader)
        }
        (self.scaleShift, self.resample, self.outputScale) = (scaleShift, resample, outputScale)
    }

    /// x [N, in, H, W] and the time embedding [N, T] (when the block has a projection) to
    /// [N, out, H′, W′] (H′ = 2H up, H/2 down).
    func callAsFunction(_ x: Tensor, embedding: [Float]?, pool: ThreadPool) -> Tensor {
        var h = norm1(x, silu: true, pool: pool)
        var input = x
        switch resample {
        case .none: break
        case .up: (input, h) = (upsampleNearest2x(input, pool: pool), upsampleNearest2x(h, pool: pool))
        case .down: (input, h) = (averagePool2x2(input, pool: pool), averagePool2x2(h, pool: pool))
        }
        h = conv2d(h, conv1, pool: pool)
        let n = h.shape[0], c = outChannels, pixels = h.count / (n * c)
        var projected: [Float]?
        if let timeProjection, var e = embedding {
            silu(&e)
            projected = timeProjection(e, rows: n, pool: pool)
        }
        if let t = projected, !scaleShift {
            h.scalars.withUnsafeMutableBufferPointer { hb in
                let base = hb.baseAddress.unsafelyUnwrapped
                pool.parallelFor(n * c) { planes in
                    for plane in planes {
                        let value = t[plane], p = base + plane * pixels
                        for i in 0..<pixels { p[i] += value }
                    }
                }
            }
        }
        h = norm2(h, modulation: scaleShift ? projected : nil, silu: true, pool: pool)
        if let shortcut { input = conv2d(input, shortcut, pool: pool) }
        // (shortcut + conv2(h)) / outputScale, the sum fused into the convolution's store.
        if outputScale != 1 { input.scalars = input.scalars.map { $0 / outputScale } }
        return conv2d(h, conv2, residual: input, scale: 1 / outputScale, pool: pool)
    }
}
