/// `nn.GroupNorm` on [N, C, H, W], for every model family (diffusion UNets, VQGAN): each of
/// `groups` channel groups of each image normalised over its channels and pixels, then `weight`
/// and `bias` per channel. Optionally fused with what follows it in diffusers' res-blocks: the
/// scale-shift time conditioning h·(1 + scale) + shift and SiLU.
///
/// Threads split the (image, group) pairs; each sums its values in a fixed order (16 float lanes
/// per run of 1024 values, the runs' totals in Double), so results are the same for every thread count.
struct GroupNorm: Sendable {
    let groups: Int
    let weight: [Float]
    let bias: [Float]
    let epsilon: Double

    /// `groups` must divide the width of `weight` and `bias` (the channels).
    init(groups: Int, weight: [Float], bias: [Float], epsilon: Double = 1e-5) {
        (self.groups, self.weight, self.bias, self.epsilon) = (groups, weight, bias, epsilon)
    }

    /// Reads `prefix.weight` and `prefix.bias`, both [channels]; `groups` must divide `channels`.
    init(_ prefix: String, channels: Int, groups: Int, epsilon: Double = 1e-5, loader: StrictWeightLoader) throws {
        guard groups >= 1, channels % groups == 0 else {
            throw DalleError.badFile("\(prefix): \(groups) groups do not divide \(channels) channels")
        }
        self.groups = groups
        self.epsilon = epsilon
        weight = try loader.weight(prefix + ".weight", shape: [channels]).floats()
        bias = try loader.weight(prefix + ".bias", shape: [channels]).floats()
    }

    /// The normalised x [N, C, H, W] (C = the weight's width); with `modulation` [N, 2C] (each
    /// image's scales, then its shifts) h·(1 + scale) + shift per channel, then x·σ(x) when `silu`.
    func callAsFunction(_ x: Tensor, modulation: [Float]? = nil, silu: Bool = false, pool: ThreadPool) -> Tensor {
        let n = x.shape[0], c = weight.count, pixels = x.count / max(n * c, 1), perGroup = c / groups
        let y = [Float](unsafeUninitializedCapacity: x.count) { out, count in
            x.scalars.withUnsafeBufferPointer { xb in
                let xBase = xb.baseAddress.unsafelyUnwrapped, yBase = out.baseAddress.unsafelyUnwrapped
                pool.parallelForEach(n * groups) { item in
                    let image = item / groups, first = (item % groups) * perGroup
                    let start = (image * c + first) * pixels, length = perGroup * pixels
                    let mean = groupSum(xBase + start, length, minus: 0) / Double(length)
                    let variance = groupSum(xBase + start, length, minus: Float(mean), squared: true) / Double(length)
                    let inverse = Float(1 / (variance + epsilon).squareRoot()), m = Float(mean)
                    for channel in first..<(first + perGroup) {
                        var a = inverse * weight[channel], b = bias[channel] - m * a
                        if let modulation {
                            let scale = 1 + modulation[image * 2 * c + channel], shift = modulation[image * 2 * c + c + channel]
                            (a, b) = (a * scale, b * scale + shift)
                        }
                        let offset = (image * c + channel) * pixels
                        scaleShift(xBase + offset, yBase + offset, pixels, a, b, silu: silu)
                    }
                }
            }
            count = x.count
        }
        return Tensor(uncheckedShape: x.shape, scalars: y)
    }
}

/// Σ (x − minus) (or its squares) over `count` floats: 16 lanes per run of 1024 values, each run's
/// total added in Double, in a fixed order.
@inline(__always)
private func groupSum(_ x: UnsafePointer<Float>, _ count: Int, minus: Float, squared: Bool = false) -> Double {
    typealias V = SIMD16<Float>
    let centre = V(repeating: minus)
    var total = 0.0, i = 0
    while i < count {
        let end = min(i + 1024, count)
        var lanes = V()
        while i + 16 <= end {
            let d = UnsafeRawPointer(x + i).loadUnaligned(as: V.self) - centre
            lanes = squared ? lanes.addingProduct(d, d) : lanes + d
            i += 16
        }
        var run = Double(lanes.sum())
        while i < end {
            let d = x[i] - minus
            run += Double(squared ? d * d : d)
            i += 1
        }
        total += run
    }
    return total
}

/// y = a·x + b over `count` floats, then x·σ(x) when `silu`; y may be x.
@inline(__always)
func scaleShift(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ count: Int, _ a: Float, _ b: Float, silu: Bool) {
    if silu {
        for i in 0..<count { let v = x[i] * a + b; y[i] = v / (1 + expApproximation(-v)) }
    } else {
        for i in 0..<count { y[i] = x[i] * a + b }
    }
}
