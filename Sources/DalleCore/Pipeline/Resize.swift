extension RGBImage {
    /// The largest image `resized` makes, in pixels (64 Mi).
    public static let maxResizePixels = 1 << 26

    /// The centred square of side min(width, height); for odd leftovers the extra row or
    /// column is dropped from the bottom or right. A square image is returned unchanged.
    public func centreCropped() -> RGBImage {
        let side = min(width, height)
        guard width != height else { return self }
        let x0 = (width - side) / 2, y0 = (height - side) / 2
        var out = [UInt8](repeating: 0, count: side * side * 3)
        for y in 0..<side {
            let src = ((y0 + y) * width + x0) * 3, dst = y * side * 3
            for i in 0..<(side * 3) { out[dst + i] = pixels[src + i] }
        }
        return RGBImage(unchecked: side, side, out)
    }

    /// The image resampled to `width`×`height`, each axis on its own: area averaging along an
    /// axis that shrinks (every output pixel is the mean of the input area it covers), bilinear
    /// interpolation between pixel centres along an axis that grows, a copy along an axis that
    /// keeps its size. Values are rounded to the nearest integer. Does not keep the aspect ratio:
    /// crop first (`centreCropped()`) for that.
    public func resized(width newWidth: Int, height newHeight: Int) throws -> RGBImage {
        guard newWidth > 0, newHeight > 0, newWidth <= Self.maxResizePixels / newHeight else {
            throw DalleError.invalidArgument("cannot resize an image to \(newWidth)x\(newHeight) (1 to \(Self.maxResizePixels) pixels)")
        }
        let count = newWidth * newHeight * 3
        if newWidth == width && newHeight == height { return self }
        let columns = Resampling.taps(from: width, to: newWidth)
        let rows = Resampling.taps(from: height, to: newHeight)
        // Horizontal pass into floats (height × newWidth × 3), then the vertical pass to bytes.
        var across = [Float](repeating: 0, count: height * newWidth * 3)
        for y in 0..<height {
            for (x, tap) in columns.enumerated() {
                var sum: (Float, Float, Float) = (0, 0, 0)
                for (k, w) in tap.weights.enumerated() {
                    let p = (y * width + tap.start + k) * 3
                    sum.0 += w * Float(pixels[p]); sum.1 += w * Float(pixels[p + 1]); sum.2 += w * Float(pixels[p + 2])
                }
                let o = (y * newWidth + x) * 3
                across[o] = sum.0; across[o + 1] = sum.1; across[o + 2] = sum.2
            }
        }
        var out = [UInt8](repeating: 0, count: count)
        for (y, tap) in rows.enumerated() {
            for i in 0..<(newWidth * 3) {
                var sum: Float = 0
                for (k, w) in tap.weights.enumerated() { sum += w * across[(tap.start + k) * newWidth * 3 + i] }
                out[y * newWidth * 3 + i] = UInt8(min(max(sum, 0), 255).rounded())
            }
        }
        return RGBImage(unchecked: newWidth, newHeight, out)
    }

    /// For pixels already checked to hold width·height·3 bytes.
    private init(unchecked width: Int, _ height: Int, _ pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// One-dimensional resampling weights.
enum Resampling {
    /// Output pixel i = Σₖ weights[k] · input[start + k].
    struct Tap: Equatable {
        var start: Int
        var weights: [Float]
    }

    /// The taps that take `input` samples to `output` samples (both ≥ 1).
    /// Shrinking: output i covers the input interval [i·s, (i+1)·s), s = input/output, and
    /// averages it weighted by overlap (computed exactly in units of 1/output). Growing: output i
    /// sits at x = (i + ½)·s − ½ in input coordinates (clamped to the ends) and interpolates
    /// its two neighbours linearly.
    static func taps(from input: Int, to output: Int) -> [Tap] {
        (0..<output).map { i in
            if input == output || input == 1 { return Tap(start: input == 1 ? 0 : i, weights: [1]) }
            if input > output {
                let lo = i * input, hi = (i + 1) * input
                let first = lo / output, last = (hi - 1) / output
                let weights = (first...last).map { j in
                    Float(min(hi, (j + 1) * output) - max(lo, j * output)) / Float(input)
                }
                return Tap(start: first, weights: weights)
            }
            let scale = Double(input) / Double(output)
            let x = min(max((Double(i) + 0.5) * scale - 0.5, 0), Double(input - 1))
            let left = min(Int(x), input - 2)
            let t = Float(x - Double(left))
            return Tap(start: left, weights: [1 - t, t])
        }
    }
}

extension Tensor {
    /// The largest tensor `resizedBicubic` makes, in values (256 Mi).
    public static let maxResizeCount = 1 << 28

    /// This [N, C, H, W] tensor resampled to `height`×`width` as PyTorch's
    /// `F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=…)`:
    /// with `antialias` its `_upsample_bicubic2d_aa` (Keys' cubic with a = −0.5, the support widened by
    /// the factor along an axis that shrinks, weights normalised to sum 1 — what diffusers' unCLIP uses
    /// to upscale the decoder's image), without it the plain bicubic (a = −0.75, four taps, indices
    /// clamped at the edges). Separable: along W into a Float buffer, then along H; no clamping of
    /// values (bicubic overshoots). Throws `invalidArgument` for another rank, an empty axis, or an
    /// output over `maxResizeCount` values.
    public func resizedBicubic(height newHeight: Int, width newWidth: Int, antialias: Bool) throws -> Tensor {
        guard rank == 4, shape.allSatisfy({ $0 > 0 }) else {
            throw DalleError.invalidArgument("bicubic resize wants a non-empty [N, C, H, W] tensor, not \(shape)")
        }
        let planes = shape[0] * shape[1], height = shape[2], width = shape[3]
        guard newHeight > 0, newWidth > 0, let count = Tensor.elementCount([planes, newHeight, newWidth]),
              count <= Self.maxResizeCount,
              let acrossCount = Tensor.elementCount([planes, height, newWidth]), acrossCount <= Self.maxResizeCount else {
            throw DalleError.invalidArgument("cannot resize \(shape) to \(newHeight)x\(newWidth) (at most \(Self.maxResizeCount) values)")
        }
        let columns = Resampling.bicubicTaps(from: width, to: newWidth, antialias: antialias)
        let rows = Resampling.bicubicTaps(from: height, to: newHeight, antialias: antialias)
        var across = [Float](repeating: 0, count: acrossCount)
        scalars.withUnsafeBufferPointer { src in
            across.withUnsafeMutableBufferPointer { dst in
                for r in 0..<(planes * height) {
                    for (x, tap) in columns.enumerated() {
                        var sum: Float = 0
                        for (k, w) in tap.weights.enumerated() { sum += src[r * width + tap.start + k] * w }
                        dst[r * newWidth + x] = sum
                    }
                }
            }
        }
        var out = [Float](repeating: 0, count: count)
        across.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for p in 0..<planes {
                    for (y, tap) in rows.enumerated() {
                        for x in 0..<newWidth {
                            var sum: Float = 0
                            for (k, w) in tap.weights.enumerated() {
                                sum += src[(p * height + tap.start + k) * newWidth + x] * w
                            }
                            dst[(p * newHeight + y) * newWidth + x] = sum
                        }
                    }
                }
            }
        }
        return Tensor(uncheckedShape: [shape[0], shape[1], newHeight, newWidth], scalars: out)
    }
}

extension Resampling {
    /// Keys' cubic convolution kernel with parameter `a`: PyTorch's cubic_convolution1 for |x| < 1,
    /// cubic_convolution2 for 1 ≤ |x| < 2, else 0.
    static func cubic(_ x: Float, a: Float) -> Float {
        let x = abs(x)
        if x < 1 { return cubicNear(x, a: a) }
        if x < 2 { return cubicFar(x, a: a) }
        return 0
    }
    static func cubicNear(_ x: Float, a: Float) -> Float { ((a + 2) * x - (a + 3)) * x * x + 1 }
    static func cubicFar(_ x: Float, a: Float) -> Float { ((a * x - 5 * a) * x + 8 * a) * x - 4 * a }

    /// PyTorch's bicubic taps from `input` to `output` samples (both ≥ 1), computed in its mix of
    /// float and double. Antialiased (`_compute_weights_aa`): s = input/output, output i centred at
    /// c = s·(i + ½), taps j from ⌊c − r + ½⌋ to ⌊c + r + ½⌋ (r = 2·max(s, 1), clipped to the input),
    /// weights cubic((j − c + ½)/max(s, 1), a = −0.5) over their sum. Plain: x = s·(i + ½) − ½, the
    /// four taps ⌊x⌋ − 1 … ⌊x⌋ + 2 with a = −0.75, indices clamped to the input (weights of a
    /// clamped index added together).
    static func bicubicTaps(from input: Int, to output: Int, antialias: Bool) -> [Tap] {
        let scale = Float(input) / Float(output)
        if antialias {
            let support: Float = scale >= 1 ? Float(2 * Double(scale)) : 2
            let invscale: Float = scale >= 1 ? Float(1 / Double(scale)) : 1
            return (0..<output).map { i in
                let center = Float(Double(scale) * (Double(i) + 0.5))
                let first = max(Int(Double(center - support) + 0.5), 0)
                let end = min(Int(Double(center + support) + 0.5), input)
                guard end > first else { return Tap(start: min(first, input - 1), weights: [1]) }
                var weights = (first..<end).map { j in
                    cubic(Float((Double(Float(j) - center) + 0.5) * Double(invscale)), a: -0.5)
                }
                var total: Float = 0
                for w in weights { total += w }
                if total != 0 { weights = weights.map { $0 / total } }
                return Tap(start: first, weights: weights)
            }
        }
        return (0..<output).map { i in
            let x = scale * (Float(i) + 0.5) - 0.5
            let index = min(Int(x.rounded(.down)), input - 1)
            let t = min(max(x - Float(index), 0), 1)
            let a: Float = -0.75, u = 1 - t
            let coefficients = [cubicFar(t + 1, a: a), cubicNear(t, a: a), cubicNear(u, a: a), cubicFar(u + 1, a: a)]
            let taps = (0..<4).map { min(max(index - 1 + $0, 0), input - 1) }
            var weights = [Float](repeating: 0, count: taps[3] - taps[0] + 1)
            for (j, c) in coefficients.enumerated() { weights[taps[j] - taps[0]] += c }
            return Tap(start: taps[0], weights: weights)
        }
    }
}
