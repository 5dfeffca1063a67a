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
