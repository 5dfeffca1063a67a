/// max(x, 0), elementwise.
public func relu(_ x: Tensor) -> Tensor {
    map(x) { v in v.replacing(with: 0, where: v .< 0) }
}

/// a + scale * b, elementwise; the caller guarantees equal shapes.
public func addScaled(_ a: Tensor, _ b: Tensor, scale: Float) -> Tensor {
    var y = a
    y.scalars.withUnsafeMutableBufferPointer { yb in
        b.scalars.withUnsafeBufferPointer { bb in
            let count = yb.count, vectors = count / 16
            let yr = UnsafeMutableRawPointer(yb.baseAddress), br = UnsafeRawPointer(bb.baseAddress)
            for i in 0..<vectors {
                let o = i * 64
                let v = yr!.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
                    + scale * br!.loadUnaligned(fromByteOffset: o, as: SIMD16<Float>.self)
                yr!.storeBytes(of: v, toByteOffset: o, as: SIMD16<Float>.self)
            }
            for i in (vectors * 16)..<count { yb[i] += scale * bb[i] }
        }
    }
    return y
}

/// Applies `f` to 16 scalars at a time (the tail is padded with zeros).
@inline(__always)
private func map(_ x: Tensor, _ f: (SIMD16<Float>) -> SIMD16<Float>) -> Tensor {
    var y = x
    y.scalars.withUnsafeMutableBufferPointer { yb in
        let count = yb.count, vectors = count / 16
        guard let base = UnsafeMutableRawPointer(yb.baseAddress) else { return }
        for i in 0..<vectors {
            let v = base.loadUnaligned(fromByteOffset: i * 64, as: SIMD16<Float>.self)
            base.storeBytes(of: f(v), toByteOffset: i * 64, as: SIMD16<Float>.self)
        }
        let tail = count - vectors * 16
        if tail > 0 {
            var v = SIMD16<Float>()
            for t in 0..<tail { v[t] = yb[vectors * 16 + t] }
            v = f(v)
            for t in 0..<tail { yb[vectors * 16 + t] = v[t] }
        }
    }
    return y
}

/// 2×2 max pooling with stride 2 on [N, C, H, W] (odd trailing rows/columns dropped).
public func maxPool2x2(_ x: Tensor) -> Tensor {
    let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    let oh = h / 2, ow = w / 2, total = n * c * oh * ow
    if total == 0 { return Tensor(zeros: [n, c, oh, ow]) }
    let y = [Float](unsafeUninitializedCapacity: total) { yb, count in
        x.scalars.withUnsafeBufferPointer { xb in
            for p in 0..<(n * c) {
                for yy in 0..<oh {
                    let top = xb.baseAddress! + (p * h + 2 * yy) * w, bottom = top + w
                    let out = yb.baseAddress! + (p * oh + yy) * ow
                    for xx in 0..<ow {
                        out[xx] = max(max(top[2 * xx], top[2 * xx + 1]), max(bottom[2 * xx], bottom[2 * xx + 1]))
                    }
                }
            }
        }
        count = total
    }
    return Tensor(uncheckedShape: [n, c, oh, ow], scalars: y)
}

/// Nearest-neighbour 2× upsampling of [N, C, H, W].
public func upsampleNearest2x(_ x: Tensor) -> Tensor {
    let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    let total = n * c * 4 * h * w
    if total == 0 { return Tensor(zeros: [n, c, 2 * h, 2 * w]) }
    let y = [Float](unsafeUninitializedCapacity: total) { yb, count in
        x.scalars.withUnsafeBufferPointer { xb in
            for row in 0..<(n * c * h) {
                let src = xb.baseAddress! + row * w
                let out = yb.baseAddress! + row * 4 * w
                for xx in 0..<w {
                    let v = src[xx]
                    out[2 * xx] = v; out[2 * xx + 1] = v
                }
                (out + 2 * w).update(from: out, count: 2 * w)
            }
        }
        count = total
    }
    return Tensor(uncheckedShape: [n, c, 2 * h, 2 * w], scalars: y)
}
