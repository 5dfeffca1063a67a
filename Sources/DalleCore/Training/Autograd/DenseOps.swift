#if canImport(Glibc)
import Glibc
#endif

/// Row-wise operations on [rows, features] variables: linear layers, embeddings, layer
/// norms, activations and sums.
extension Tape {
    /// y = x · Wᵀ + b (PyTorch's `nn.Linear`): x [rows, in], w [out, in], b [out].
    public func linear(_ x: Variable, _ w: Variable, _ b: Variable?) -> Variable {
        let out = w.shape[0], inputs = w.shape[1], rows = x.count / inputs
        var y = uninitializedFloats(rows * out)
        matmul(x.value, w.value, into: &y, m: rows, n: out, k: inputs, transposeB: true)
        if let b { addRowVector(&y, b.value, rows: rows) }
        let pool = self.pool
        return record(y, shape: Array(x.shape.dropLast()) + [out], inputs: [x, w] + (b.map { [$0] } ?? [])) { node in
            let dy = node.grad
            if x.requiresGrad {  // dx += dy · W
                x.accumulateGrad { dx in
                    withPointers(dy) { g in withPointers(w.value) { wp in
                        gemm(m: rows, n: inputs, k: out, a: g, lda: out, b: wp, ldb: inputs, c: dx, ldc: inputs, accumulate: true, pool: pool)
                    } }
                }
            }
            if w.requiresGrad {  // dW += dyᵀ · x
                w.accumulateGrad { dw in
                    withPointers(dy) { g in withPointers(x.value) { xp in
                        gemm(m: out, n: inputs, k: rows, a: g, lda: out, transposeA: true, b: xp, ldb: inputs,
                             c: dw, ldc: inputs, accumulate: true, pool: pool)
                    } }
                }
            }
            if let b { b.accumulateGrad { db in sumRows(dy, rows: rows, cols: out, into: db) } }
        }
    }

    /// y = x · W with W [in, out] stored as is (CLIP's projections).
    public func matmul(_ x: Variable, _ w: Variable) -> Variable {
        let inputs = w.shape[0], out = w.shape[1], rows = x.count / inputs
        var y = uninitializedFloats(rows * out)
        matmul(x.value, w.value, into: &y, m: rows, n: out, k: inputs)
        let pool = self.pool
        return record(y, shape: Array(x.shape.dropLast()) + [out], inputs: [x, w]) { node in
            let dy = node.grad
            if x.requiresGrad {  // dx += dy · Wᵀ
                x.accumulateGrad { dx in
                    withPointers(dy) { g in withPointers(w.value) { wp in
                        gemm(m: rows, n: inputs, k: out, a: g, lda: out, b: wp, ldb: out, transposeB: true,
                             c: dx, ldc: inputs, accumulate: true, pool: pool)
                    } }
                }
            }
            if w.requiresGrad {  // dW += xᵀ · dy
                w.accumulateGrad { dw in
                    withPointers(x.value) { xp in withPointers(dy) { g in
                        gemm(m: inputs, n: out, k: rows, a: xp, lda: inputs, transposeA: true, b: g, ldb: out,
                             c: dw, ldc: out, accumulate: true, pool: pool)
                    } }
                }
            }
        }
    }

    /// Rows of `table` [vocab, dim] picked by `ids` (already validated): [ids.count, dim].
    /// The gradient scatters back into the table.
    public func gather(_ table: Variable, rows ids: [Int32]) -> Variable {
        let dim = table.shape[table.shape.count - 1]
        var y = [Float](repeating: 0, count: ids.count * dim)
        withPointers(table.value) { t in
            for (r, id) in ids.enumerated() { for d in 0..<dim { y[r * dim + d] = t[Int(id) * dim + d] } }
        }
        return record(y, shape: [ids.count, dim], inputs: [table]) { node in
            table.accumulateGrad { dt in
                withPointers(node.grad) { g in
                    for (r, id) in ids.enumerated() { for d in 0..<dim { dt[Int(id) * dim + d] += g[r * dim + d] } }
                }
            }
        }
    }

    /// a + b (same element count; the result takes a's shape).
    public func add(_ a: Variable, _ b: Variable) -> Variable {
        var y = a.value
        withPointers(b.value) { bp in for i in 0..<y.count { y[i] += bp[i] } }
        return record(y, shape: a.shape, inputs: [a, b]) { node in
            for v in [a, b] { v.accumulateGrad { d in withPointers(node.grad) { g in for i in 0..<node.count { d[i] += g[i] } } } }
        }
    }

    /// a + scale · b (the dVAE's id_path + post_gain · res_path).
    public func add(_ a: Variable, _ b: Variable, scale: Float) -> Variable {
        var y = a.value
        withPointers(b.value) { bp in for i in 0..<y.count { y[i] += scale * bp[i] } }
        return record(y, shape: a.shape, inputs: [a, b]) { node in
            a.accumulateGrad { d in withPointers(node.grad) { g in for i in 0..<node.count { d[i] += g[i] } } }
            b.accumulateGrad { d in withPointers(node.grad) { g in for i in 0..<node.count { d[i] += scale * g[i] } } }
        }
    }

    /// x ⊙ s per feature: x [rows, dim], s with dim elements (DALLE-pytorch's LayerScale).
    public func scaleFeatures(_ x: Variable, _ s: Variable) -> Variable {
        let dim = s.count, rows = x.count / dim
        var y = x.value
        withPointers(s.value) { sp in for r in 0..<rows { for d in 0..<dim { y[r * dim + d] *= sp[d] } } }
        return record(y, shape: x.shape, inputs: [x, s]) { node in
            withPointers(node.grad) { g in
                x.accumulateGrad { dx in withPointers(s.value) { sp in
                    for r in 0..<rows { for d in 0..<dim { dx[r * dim + d] += g[r * dim + d] * sp[d] } }
                } }
                s.accumulateGrad { ds in withPointers(x.value) { xp in
                    for r in 0..<rows { for d in 0..<dim { ds[d] += g[r * dim + d] * xp[r * dim + d] } }
                } }
            }
        }
    }

    /// LayerNorm over the last dimension (eps 1e-5), weight and bias [dim].
    public func layerNorm(_ x: Variable, _ w: Variable, _ b: Variable, eps: Float = 1e-5) -> Variable {
        let dim = w.count, rows = x.count / dim
        var y = [Float](repeating: 0, count: x.count)
        var normed = [Float](repeating: 0, count: x.count)
        var inverseStd = [Float](repeating: 0, count: rows)
        let pool = self.pool
        withPointers(x.value) { xp in withPointers(w.value) { wp in withPointers(b.value) { bp in
            normed.withUnsafeMutableBufferPointer { nb in y.withUnsafeMutableBufferPointer { yb in
                inverseStd.withUnsafeMutableBufferPointer { sb in
                    let n = nb.baseAddress.unsafelyUnwrapped, yo = yb.baseAddress.unsafelyUnwrapped, s = sb.baseAddress.unsafelyUnwrapped
                    pool.parallelFor(rows) { range in
                        for r in range {
                            let row = xp + r * dim
                            var mean: Float = 0
                            for d in 0..<dim { mean += row[d] }
                            mean /= Float(dim)
                            var variance: Float = 0
                            for d in 0..<dim { let c = row[d] - mean; variance += c * c }
                            let inv = 1 / (variance / Float(dim) + eps).squareRoot()
                            s[r] = inv
                            for d in 0..<dim {
                                let v = (row[d] - mean) * inv
                                n[r * dim + d] = v
                                yo[r * dim + d] = v * wp[d] + bp[d]
                            }
                        }
                    }
                }
            } }
        } } }
        return record(y, shape: x.shape, inputs: [x, w, b]) { node in
            withPointers(node.grad) { g in withPointers(normed) { n in
                w.accumulateGrad { dw in for r in 0..<rows { for d in 0..<dim { dw[d] += g[r * dim + d] * n[r * dim + d] } } }
                b.accumulateGrad { db in sumRows(node.grad, rows: rows, cols: dim, into: db) }
                x.accumulateGrad { dx in withPointers(w.value) { wp in withPointers(inverseStd) { s in
                    pool.parallelFor(rows) { range in
                        for r in range {
                            var meanG: Float = 0, meanGN: Float = 0
                            for d in 0..<dim {
                                let gn = g[r * dim + d] * wp[d]
                                meanG += gn
                                meanGN += gn * n[r * dim + d]
                            }
                            meanG /= Float(dim); meanGN /= Float(dim)
                            for d in 0..<dim {
                                let gn = g[r * dim + d] * wp[d]
                                dx[r * dim + d] += s[r] * (gn - meanG - n[r * dim + d] * meanGN)
                            }
                        }
                    }
                } } }
            } }
        }
    }

    /// GEGLU: x [rows, 2h] split into (a, gate); a · gelu(gate) with the exact (erf) GELU.
    /// Rows are split over the threads (each element on its own: the same for any count).
    public func geglu(_ x: Variable) -> Variable {
        let h = x.shape[x.shape.count - 1] / 2, rows = x.count / (2 * h)
        let pool = self.pool
        var y = uninitializedFloats(rows * h)
        withPointers(x.value) { xp in y.withUnsafeMutableBufferPointer { yb in
            let yo = yb.baseAddress.unsafelyUnwrapped
            pool.parallelFor(rows) { range in
                for r in range {
                    for j in 0..<h { yo[r * h + j] = xp[r * 2 * h + j] * gelu(xp[r * 2 * h + h + j]) }
                }
            }
        } }
        return record(y, shape: Array(x.shape.dropLast()) + [h], inputs: [x]) { node in
            x.accumulateGrad { dx in withPointers(node.grad) { g in withPointers(x.value) { xp in
                pool.parallelFor(rows) { range in
                    for r in range {
                        let xr = xp + r * 2 * h, gr = g + r * h, dxr = dx + r * 2 * h
                        for j in 0..<h {
                            let gate = xr[h + j]
                            dxr[j] += gr[j] * gelu(gate)
                            dxr[h + j] += gr[j] * xr[j] * geluDerivative(gate)
                        }
                    }
                }
            } } }
        }
    }

    /// CLIP's QuickGELU, x · sigmoid(1.702 x).
    public func quickGELU(_ x: Variable) -> Variable {
        var y = x.value
        for i in 0..<y.count { let v = y[i]; y[i] = v / (1 + expf(-1.702 * v)) }
        return record(y, shape: x.shape, inputs: [x]) { node in
            x.accumulateGrad { dx in withPointers(node.grad) { g in withPointers(x.value) { xp in
                for i in 0..<node.count {
                    let v = xp[i], s = 1 / (1 + expf(-1.702 * v))
                    dx[i] += g[i] * (s + v * 1.702 * s * (1 - s))
                }
            } } }
        }
    }

    /// Sum of weighted scalar losses. A term of weight 0 gets no gradient, so the backward pass
    /// skips whatever computed it.
    public func weightedSum(_ terms: [(Variable, Float)]) -> Variable {
        var total: Float = 0
        for (v, weight) in terms { total += weight * v.value[0] }
        return record([total], shape: [], inputs: terms.map(\.0)) { node in
            let g = node.grad[0]
            for (v, weight) in terms where weight != 0 { v.accumulateGrad { d in d[0] += weight * g } }
        }
    }

    // MARK: Kernel plumbing

    /// c[m, n] = a[m, k] · b[k, n].
    func matmul(_ a: [Float], _ b: [Float], into c: inout [Float], m: Int, n: Int, k: Int, transposeB: Bool = false) {
        withPointers(a) { ap in withPointers(b) { bp in
            c.withUnsafeMutableBufferPointer { cb in
                gemm(m: m, n: n, k: k, a: ap, lda: k, b: bp, ldb: transposeB ? k : n, transposeB: transposeB,
                     c: cb.baseAddress.unsafelyUnwrapped, ldc: n, accumulate: false, pool: pool)
            }
        } }
    }
}

/// y[r, :] += v for every row.
func addRowVector(_ y: inout [Float], _ v: [Float], rows: Int) {
    let cols = v.count
    withPointers(v) { vp in
        y.withUnsafeMutableBufferPointer { yb in
            for r in 0..<rows { for c in 0..<cols { yb[r * cols + c] += vp[c] } }
        }
    }
}

/// into[c] += Σ_r m[r, c], rows in order.
func sumRows(_ m: [Float], rows: Int, cols: Int, into: UnsafeMutablePointer<Float>) {
    withPointers(m) { mp in for r in 0..<rows { for c in 0..<cols { into[c] += mp[r * cols + c] } } }
}
