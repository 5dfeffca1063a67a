#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `nn.GroupNorm` on [N, C, H, W]: each of `groups` channel groups normalised over its channels and
/// pixels (mean and variance summed in Double), then `weight`/`bias` per channel. The caller checks
/// that `groups` divides C and that `weight`/`bias` hold C values.
func groupNorm(_ x: Tensor, groups: Int, weight: [Float], bias: [Float], epsilon: Double = 1e-5) -> Tensor {
    let n = x.shape[0], c = x.shape[1], pixels = x.count / max(n * c, 1), perGroup = c / groups * pixels
    var y = x.scalars
    for b in 0..<n {
        for g in 0..<groups {
            let start = (b * c + g * (c / groups)) * pixels
            var sum = 0.0
            for i in start..<(start + perGroup) { sum += Double(x.scalars[i]) }
            let mean = sum / Double(perGroup)
            var squares = 0.0
            for i in start..<(start + perGroup) { let d = Double(x.scalars[i]) - mean; squares += d * d }
            let scale = Float(1 / (squares / Double(perGroup) + epsilon).squareRoot()), m = Float(mean)
            for i in start..<(start + perGroup) {
                let channel = (i / pixels) % c
                y[i] = (x.scalars[i] - m) * scale * weight[channel] + bias[channel]
            }
        }
    }
    return Tensor(uncheckedShape: x.shape, scalars: y)
}

/// x·σ(x) in place.
func silu(_ x: inout [Float]) {
    for i in 0..<x.count { x[i] = x[i] / (1 + expf(-x[i])) }
}

/// diffusers' `ResnetBlock2D` as unCLIP's UNets use it: GroupNorm → SiLU → (nearest ×2 or 2×2
/// average-pool *inside* the block, on the shortcut too) → conv 3×3; the time embedding SiLU →
/// `time_emb_proj` added after conv1, or with `scaleShift` (Karlo's decoder) split into scale and
/// shift applied after GroupNorm 2 as h·(1 + scale) + shift; SiLU → conv 3×3; a 1×1
/// `conv_shortcut` when the channels change; output (shortcut + h) / `outputScale`.
struct ResnetBlock2D: Sendable {
    enum Resample: Sendable { case none, up, down }

    let inChannels: Int, outChannels: Int, groups: Int
    let norm1: (weight: [Float], bias: [Float]), norm2: (weight: [Float], bias: [Float])
    let conv1: Conv2d, conv2: Conv2d, shortcut: Conv2d?
    let timeProjection: Linear?
    let scaleShift: Bool, resample: Resample, outputScale: Float, epsilon: Double

    init(_ prefix: String, in inChannels: Int, out outChannels: Int, timeEmbedding: Int?, groups: Int, epsilon: Double = 1e-5,
         scaleShift: Bool, resample: Resample = .none, outputScale: Float = 1, loader: StrictWeightLoader) throws {
        guard groups >= 1, inChannels % groups == 0, outChannels % groups == 0 else {
            throw DalleError.badFile("\(prefix): \(groups) groups do not divide \(inChannels) and \(outChannels) channels")
        }
        func norm(_ name: String, _ width: Int) throws -> (weight: [Float], bias: [Float]) {
            (try loader.weight(prefix + name + ".weight", shape: [width]).floats(), try loader.weight(prefix + name + ".bias", shape: [width]).floats())
        }
        (self.inChannels, self.outChannels, self.groups) = (inChannels, outChannels, groups)
        norm1 = try norm("norm1", inChannels)
        norm2 = try norm("norm2", outChannels)
        conv1 = try Conv2d(prefix + "conv1", in: inChannels, out: outChannels, kernel: 3, loader: loader)
        conv2 = try Conv2d(prefix + "conv2", in: outChannels, out: outChannels, kernel: 3, loader: loader)
        shortcut = inChannels == outChannels ? nil : try Conv2d(prefix + "conv_shortcut", in: inChannels, out: outChannels, kernel: 1, loader: loader)
        timeProjection = try timeEmbedding.map {
            try Linear(prefix + "time_emb_proj", inputs: $0, outputs: scaleShift ? 2 * outChannels : outChannels, bias: true, loader: loader)
        }
        (self.scaleShift, self.resample, self.outputScale, self.epsilon) = (scaleShift, resample, outputScale, epsilon)
    }

    /// x [N, in, H, W] and the time embedding [N, T] (when the block has a projection) to
    /// [N, out, H′, W′] (H′ = 2H up, H/2 down).
    func callAsFunction(_ x: Tensor, embedding: [Float]?, pool: ThreadPool) -> Tensor {
        var h = groupNorm(x, groups: groups, weight: norm1.weight, bias: norm1.bias, epsilon: epsilon)
        silu(&h.scalars)
        var input = x
        switch resample {
        case .none: break
        case .up: (input, h) = (upsampleNearest2x(input, pool: pool), upsampleNearest2x(h, pool: pool))
        case .down: (input, h) = (averagePool2(input), averagePool2(h))
        }
        h = conv2d(h, conv1, pool: pool)
        let n = h.shape[0], c = outChannels, pixels = h.count / (n * c)
        var shiftScale: [Float]?
        if let timeProjection, var e = embedding {
            silu(&e)
            shiftScale = timeProjection(e, rows: n, pool: pool)
        }
        if let t = shiftScale, !scaleShift {
            for b in 0..<n { for ch in 0..<c { for p in 0..<pixels { h.scalars[(b * c + ch) * pixels + p] += t[b * c + ch] } } }
        }
        h = groupNorm(h, groups: groups, weight: norm2.weight, bias: norm2.bias, epsilon: epsilon)
        if let t = shiftScale, scaleShift {
            for b in 0..<n {
                for ch in 0..<c {
                    let scale = t[b * 2 * c + ch], shift = t[b * 2 * c + c + ch]
                    for p in 0..<pixels { let i = (b * c + ch) * pixels + p; h.scalars[i] = h.scalars[i] * (1 + scale) + shift }
                }
            }
        }
        silu(&h.scalars)
        h = conv2d(h, conv2, pool: pool)
        if let shortcut { input = conv2d(input, shortcut, pool: pool) }
        for i in 0..<h.count { h.scalars[i] = (input.scalars[i] + h.scalars[i]) / outputScale }
        return h
    }
}

/// 2×2 average pooling, stride 2 (`nn.AvgPool2d(2, 2)`; odd edges dropped).
func averagePool2(_ x: Tensor) -> Tensor {
    let planes = x.shape[0] * x.shape[1], h = x.shape[2], w = x.shape[3], oh = h / 2, ow = w / 2
    var y = [Float](repeating: 0, count: planes * oh * ow)
    for p in 0..<planes {
        for r in 0..<oh {
            for c in 0..<ow {
                let a = x.scalars[(p * h + 2 * r) * w + 2 * c], b = x.scalars[(p * h + 2 * r) * w + 2 * c + 1]
                let d = x.scalars[(p * h + 2 * r + 1) * w + 2 * c], e = x.scalars[(p * h + 2 * r + 1) * w + 2 * c + 1]
                y[(p * oh + r) * ow + c] = (a + b + d + e) / 4
            }
        }
    }
    return Tensor(uncheckedShape: [x.shape[0], x.shape[1], oh, ow], scalars: y)
}
