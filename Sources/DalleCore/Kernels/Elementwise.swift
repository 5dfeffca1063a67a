/// max(x, 0), elementwise.
public func relu(_ x: Tensor) -> Tensor {
    var y = x
    for i in 0..<y.scalars.count where y.scalars[i] < 0 { y.scalars[i] = 0 }
    return y
}

/// a + scale * b, elementwise; the caller guarantees equal shapes.
public func addScaled(_ a: Tensor, _ b: Tensor, scale: Float) -> Tensor {
    var y = a
    for i in 0..<y.scalars.count { y.scalars[i] += scale * b.scalars[i] }
    return y
}

/// 2×2 max pooling with stride 2 on [N, C, H, W] (H and W even).
public func maxPool2x2(_ x: Tensor) -> Tensor {
    let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    var y = Tensor(zeros: [n, c, h / 2, w / 2])
    for p in 0..<(n * c) {
        for yy in 0..<(h / 2) {
            for xx in 0..<(w / 2) {
                let base = p * h * w + 2 * yy * w + 2 * xx
                let m = max(max(x.scalars[base], x.scalars[base + 1]),
                            max(x.scalars[base + w], x.scalars[base + w + 1]))
                y.scalars[(p * (h / 2) + yy) * (w / 2) + xx] = m
            }
        }
    }
    return y
}

/// Nearest-neighbour 2× upsampling of [N, C, H, W].
public func upsampleNearest2x(_ x: Tensor) -> Tensor {
    let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    var y = Tensor(zeros: [n, c, 2 * h, 2 * w])
    for p in 0..<(n * c) {
        for yy in 0..<(2 * h) {
            for xx in 0..<(2 * w) {
                y.scalars[(p * 2 * h + yy) * 2 * w + xx] = x.scalars[(p * h + yy / 2) * w + xx / 2]
            }
        }
    }
    return y
}
