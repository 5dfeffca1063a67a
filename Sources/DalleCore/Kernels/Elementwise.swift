/// x = max(x, 0), elementwise, in place.
public func relu(_ x: inout Tensor) {
    update(&x) { v in v.replacing(with: 0, where: v .< 0) }
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

/// Applies `f` in place to 16 scalars at a time (the tail is padded with zeros).
@inline(__always)
private func update(_ y: inout Tensor, _ f: (SIMD16<Float>) -> SIMD16<Float>) {
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
}

/// 2×2 max pooling with stride 2 on [N, C, H, W] (odd trailing rows/columns dropped),
/// output rows split over `pool`'s threads.
public func maxPool2x2(_ x: Tensor, pool: ThreadPool = ThreadPool(threads: 1)) -> Tensor {
    pool2x2(x, pool: pool) { a, b, c, d in max(max(a, b), max(c, d)) }
}

/// 2×2 average pooling with stride 2 on [N, C, H, W] (`nn.AvgPool2d(2, 2)`; odd trailing
/// rows/columns dropped), output rows split over `pool`'s threads.
public func averagePool2x2(_ x: Tensor, pool: ThreadPool = ThreadPool(threads: 1)) -> Tensor {
    pool2x2(x, pool: pool) { a, b, c, d in (a + b + c + d) / 4 }
}

/// Each 2×2 window of [N, C, H, W] (stride 2) reduced by `window(top-left, top-right,
/// bottom-left, bottom-right)`.
@inline(__always)
private func pool2x2(_ x: Tensor, pool: ThreadPool, _ window: (Float, Float, Float, Float) -> Float) -> Tensor {
    let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], oh = h / 2, ow = w / 2
    let total = n * c * oh * ow
    if total == 0 { return Tensor(zeros: [n, c, oh, ow]) }
    let y = [Float](unsafeUninitializedCapacity: total) { yb, count in
        let yBase = yb.baseAddress!
        x.scalars.withUnsafeBufferPointer { xb in
            let xBase = xb.baseAddress!
            pool.parallelFor(n * c * oh) { rows in
                for row in rows {  // output row `row` of plane row / oh
                    let top = xBase + (row / oh * h + 2 * (row % oh)) * w, bottom = top + w, out = yBase + row * ow
                    for xx in 0..<ow { out[xx] = window(top[2 * xx], top[2 * xx + 1], bottom[2 * xx], bottom[2 * xx + 1]) }
                }
            }
        }
        count = total
    }
    return Tensor(uncheckedShape: [n, c, oh, ow], scalars: y)
}

/// Nearest-neighbour 2× upsampling of [N, C, H, W], rows split over `pool`'s threads.
public func upsampleNearest2x(_ x: Tensor, pool: ThreadPool = ThreadPool(threads: 1)) -> Tensor {
    let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
    let total = n * c * 4 * h * w
    if total == 0 { return Tensor(zeros: [n, c, 2 * h, 2 * w]) }
    let y = [Float](unsafeUninitializedCapacity: total) { yb, count in
        let yBase = yb.baseAddress!
        x.scalars.withUnsafeBufferPointer { xb in
            let xBase = xb.baseAddress!
            pool.parallelFor(n * c * h) { rows in
                for row in rows {
                    let src = xBase + row * w, out = yBase + row * 4 * w
                    var xx = 0
                    while xx + 8 <= w {  // 8 inputs → 16 outputs
                        let v = UnsafeRawPointer(src + xx).loadUnaligned(as: SIMD8<Float>.self)
                        let d = SIMD16<Float>(v[0], v[0], v[1], v[1], v[2], v[2], v[3], v[3],
                                              v[4], v[4], v[5], v[5], v[6], v[6], v[7], v[7])
                        UnsafeMutableRawPointer(out + 2 * xx).storeBytes(of: d, as: SIMD16<Float>.self)
                        xx += 8
                    }
                    while xx < w { out[2 * xx] = src[xx]; out[2 * xx + 1] = src[xx]; xx += 1 }
                    (out + 2 * w).update(from: out, count: 2 * w)
                }
            }
        }
        count = total
    }
    return Tensor(uncheckedShape: [n, c, 2 * h, 2 * w], scalars: y)
}

/// Σ a[i]·b[i] over n floats, in eight interleaved partial sums (a fixed order).
@inline(__always)
func dotProduct(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    typealias V = SIMD8<Float>
    var acc = V()
    var i = 0
    while i + 8 <= n {
        acc = acc.addingProduct(UnsafeRawPointer(a + i).loadUnaligned(as: V.self),
                                UnsafeRawPointer(b + i).loadUnaligned(as: V.self))
        i += 8
    }
    var total = acc.sum()
    while i < n { total += a[i] * b[i]; i += 1 }
    return total
}
