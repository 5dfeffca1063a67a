/// Image operations on [N, C, H, W] variables: the dVAE's convolutions, pooling and upsampling.
extension Tape {
    /// Stride-1 "same" convolution of relu(x) (when `reluInput`) or x: w [out, in, k, k] with k
    /// odd, b [out]. The input gradient is itself a convolution (of the output gradient with
    /// the flipped, transposed kernel); the weight gradient is dy · im2col(x)ᵀ per image (im2col never materialised).
    public func conv2d(_ x: Variable, _ w: Variable, _ b: Variable, reluInput: Bool = false) -> Variable {
        let n = x.shape[0], cin = x.shape[1], h = x.shape[2], wd = x.shape[3]
        let cout = w.shape[0], k = w.shape[2], hw = h * wd, depth = cin * k * k
        let weights = Conv2d(packing: w.value, outChannels: cout, inChannels: cin, kernelSize: k, bias: b.value)
        let y = DalleCore.conv2d(Tensor(uncheckedShape: x.shape, scalars: x.value), weights, reluInput: reluInput, pool: pool)
        let pool = self.pool
        return record(y.scalars, shape: y.shape, inputs: [x, w, b]) { node in
            let dy = node.grad
            if x.requiresGrad {
                // Flipped kernel with in/out swapped: [in, out, k, k].
                var flipped = [Float](repeating: 0, count: w.count)
                withPointers(w.value) { wp in
                    for o in 0..<cout { for i in 0..<cin { for ky in 0..<k { for kx in 0..<k {
                        flipped[((i * cout + o) * k + (k - 1 - ky)) * k + (k - 1 - kx)] = wp[((o * cin + i) * k + ky) * k + kx]
                    } } } }
                }
                let back = Conv2d(packing: flipped, outChannels: cin, inChannels: cout, kernelSize: k, bias: nil)
                let dx = DalleCore.conv2d(Tensor(uncheckedShape: node.shape, scalars: dy), back, pool: pool).scalars
                x.accumulateGrad { gx in withPointers(dx) { d in withPointers(x.value) { xp in
                    for i in 0..<x.count where !reluInput || xp[i] > 0 { gx[i] += d[i] }
                } } }
            }
            if w.requiresGrad {
                w.accumulateGrad { gw in
                    withPointers(dy) { g in withPointers(x.value) { xp in
                        for image in 0..<n {
                            gemmDriver(m: cout, n: depth, k: hw, a: .matrix(g + image * cout * hw, ld: hw),
                                       b: .transposedImage(xp + image * cin * hw, height: h, width: wd, kernel: k, relu: reluInput),
                                       c: gw, ldc: depth, accumulate: true, epilogue: nil, pool: pool)
                        }
                    } }
                }
            }
            b.accumulateGrad { gb in withPointers(dy) { g in
                for image in 0..<n { for o in 0..<cout {
                    var s: Float = 0
                    let plane = g + (image * cout + o) * hw
                    for p in 0..<hw { s += plane[p] }
                    gb[o] += s
                } }
            } }
        }
    }

    /// 2×2 max pooling, stride 2; the gradient goes to the first maximum of each window.
    public func maxPool2x2(_ x: Variable) -> Variable {
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3], oh = h / 2, ow = w / 2
        let y = DalleCore.maxPool2x2(Tensor(uncheckedShape: x.shape, scalars: x.value), pool: pool)
        let pool = self.pool
        return record(y.scalars, shape: y.shape, inputs: [x]) { node in
            x.accumulateGrad { dx in withPointers(node.grad) { g in withPointers(x.value) { xp in
                pool.parallelFor(n * c) { planes in
                    for plane in planes {
                        for oy in 0..<oh { for ox in 0..<ow {
                            let top = (plane * h + 2 * oy) * w + 2 * ox
                            var best = top
                            if xp[top + 1] > xp[best] { best = top + 1 }
                            if xp[top + w] > xp[best] { best = top + w }
                            if xp[top + w + 1] > xp[best] { best = top + w + 1 }
                            dx[best] += g[(plane * oh + oy) * ow + ox]
                        } }
                    }
                }
            } } }
        }
    }

    /// Nearest-neighbour 2× upsampling; each input gathers the gradient of its 2×2 block.
    public func upsample2x(_ x: Variable) -> Variable {
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
        let y = DalleCore.upsampleNearest2x(Tensor(uncheckedShape: x.shape, scalars: x.value), pool: pool)
        return record(y.scalars, shape: y.shape, inputs: [x]) { node in
            x.accumulateGrad { dx in withPointers(node.grad) { g in
                for plane in 0..<(n * c) {
                    for yy in 0..<h { for xx in 0..<w {
                        let top = (plane * 2 * h + 2 * yy) * 2 * w + 2 * xx
                        dx[(plane * h + yy) * w + xx] += g[top] + g[top + 1] + g[top + 2 * w] + g[top + 2 * w + 1]
                    } }
                }
            } }
        }
    }
}
