#if canImport(Glibc)
import Glibc
#endif

/// The training objectives: cross-entropy, CLIP's contrastive loss, and the dVAE's
/// relaxation (Gumbel-softmax, KL to the uniform prior, logit-Laplace likelihood).
extension Tape {
    /// Mean over `rows` of −log softmax(logits[r, columns])[target r]: logits [rows, V],
    /// each row's softmax taken over `columns` only (DALLE-pytorch's logits mask), targets
    /// absolute column indices inside that range; `rows` distinct. Rows are split over the
    /// threads; the mean sums their losses in row order, so the result is the same for any count.
    public func crossEntropy(_ logits: Variable, rows: [Int], targets: [Int32], columns: Range<Int>) -> Variable {
        let v = logits.shape[logits.shape.count - 1], lo = columns.lowerBound, width = columns.count
        let pool = self.pool
        var probabilities = [Float](repeating: 0, count: rows.count * width)
        var rowLosses = [Float](repeating: 0, count: rows.count)
        withPointers(logits.value) { l in
            probabilities.withUnsafeMutableBufferPointer { pb in rowLosses.withUnsafeMutableBufferPointer { lb in
                let probabilities = pb.baseAddress.unsafelyUnwrapped, losses = lb.baseAddress.unsafelyUnwrapped
                pool.parallelFor(rows.count) { range in
                    for i in range {
                        let row = l + rows[i] * v + lo, p = probabilities + i * width
                        var m = -Float.infinity
                        for j in 0..<width { m = max(m, row[j]) }
                        var sum: Float = 0
                        for j in 0..<width { let e = expf(row[j] - m); p[j] = e; sum += e }
                        for j in 0..<width { p[j] /= sum }
                        losses[i] = logf(sum) + m - row[Int(targets[i]) - lo]
                    }
                }
            } }
        }
        let total = rowLosses.reduce(0.0) { $0 + Double($1) }
        let scale = 1 / Float(max(rows.count, 1))
        return record([Float(total) * scale], shape: [], inputs: [logits]) { node in
            let g = node.grad[0] * scale
            logits.accumulateGrad { d in withPointers(probabilities) { p in
                pool.parallelFor(rows.count) { range in
                    for i in range {
                        let r = rows[i]
                        for j in 0..<width { d[r * v + lo + j] += g * p[i * width + j] }
                        d[r * v + Int(targets[i])] -= g
                    }
                }
            } }
        }
    }

    /// CLIP's symmetric loss for matching pairs (row i of each): logits = exp(logitScale) ·
    /// cos(image_i, text_j); the mean of cross-entropy over rows and over columns, each
    /// against the diagonal. images [m, e] and texts [t, e], the first `pairs` of each matching
    /// (nil: all texts): further images match no text and enter only each paired text's softmax
    /// over the images, further texts match no image and enter only each paired image's softmax
    /// over the texts (hard negatives on either side). logitScale one element.
    public func contrastiveLoss(images: Variable, texts: Variable, pairs: Int? = nil, logitScale: Variable) -> Variable {
        let e = texts.shape[1], t = texts.count / e, m = images.count / e, n = pairs ?? t
        let (a, aNorm) = rowNormalized(images.value, rows: m, cols: e)
        let (b, bNorm) = rowNormalized(texts.value, rows: t, cols: e)
        let scale = expf(logitScale.value[0])
        // logits[i, j] = scale · cos(image i, text j), [m, t].
        var cosine = [Float](repeating: 0, count: m * t)
        for i in 0..<m { for j in 0..<t {
            var s: Float = 0
            for d in 0..<e { s += a[i * e + d] * b[j * e + d] }
            cosine[i * t + j] = s
        } }
        // Row softmax (paired image → every text) and column softmax (paired text → every image).
        var rowP = [Float](repeating: 0, count: m * t), colP = [Float](repeating: 0, count: m * t)
        // −log softmax over the `count` logits at `index(0 ..< count)`, at `index(target)`; the probabilities into `p`.
        func crossEntropy(_ count: Int, _ index: (Int) -> Int, target: Int, into p: inout [Float]) -> Float {
            var mx = -Float.infinity
            for k in 0..<count { mx = max(mx, scale * cosine[index(k)]) }
            var s: Float = 0
            for k in 0..<count { p[index(k)] = expf(scale * cosine[index(k)] - mx); s += p[index(k)] }
            for k in 0..<count { p[index(k)] /= s }
            return logf(s) + mx - scale * cosine[index(target)]
        }
        var loss: Float = 0
        for i in 0..<n { loss += crossEntropy(t, { i * t + $0 }, target: i, into: &rowP) }
        for j in 0..<n { loss += crossEntropy(m, { $0 * t + j }, target: j, into: &colP) }
        loss /= Float(2 * n)
        return record([loss], shape: [], inputs: [images, texts, logitScale]) { node in
            let g = node.grad[0] / Float(2 * n)
            // d loss / d logits[i, j] = g · (rowP + colP − 2·[i == j < pairs]).
            var dCos = [Float](repeating: 0, count: m * t)
            var dScale: Float = 0
            for i in 0..<m { for j in 0..<t {
                let dl = g * (rowP[i * t + j] + colP[i * t + j] - (i == j && i < n ? 2 : 0))
                dCos[i * t + j] = dl * scale
                dScale += dl * scale * cosine[i * t + j]
            } }
            logitScale.accumulateGrad { $0[0] += dScale }
            var da = [Float](repeating: 0, count: m * e), db = [Float](repeating: 0, count: t * e)
            for i in 0..<m { for j in 0..<t {
                let c = dCos[i * t + j]
                for d in 0..<e { da[i * e + d] += c * b[j * e + d]; db[j * e + d] += c * a[i * e + d] }
            } }
            images.accumulateGrad { normalizeBackward(da, unit: a, norms: aNorm, rows: m, cols: e, into: $0) }
            texts.accumulateGrad { normalizeBackward(db, unit: b, norms: bNorm, rows: t, cols: e, into: $0) }
        }
    }

    /// Gumbel-softmax over the channels of logits [N, V, H, W]: softmax((logits + noise) / τ)
    /// per position, `noise` standard Gumbel samples of the same shape. With `hard`, the value is
    /// the one-hot of each position's largest entry while the gradient is the soft sample's
    /// (the straight-through estimator of Jang et al.).
    public func gumbelSoftmax(_ logits: Variable, noise: [Float], temperature: Float, hard: Bool = false) -> Variable {
        let n = logits.shape[0], vocab = logits.shape[1], plane = logits.shape[2] * logits.shape[3]
        var y = [Float](repeating: 0, count: logits.count)
        let pool = self.pool
        withPointers(logits.value) { l in withPointers(noise) { g in
            y.withUnsafeMutableBufferPointer { yb in
                let out = yb.baseAddress.unsafelyUnwrapped
                pool.parallelFor(n * plane) { cells in
                    for cell in cells {
                        let base = (cell / plane) * vocab * plane + cell % plane
                        channelSoftmax(l + base, noise: g + base, temperature: temperature, count: vocab, stride: plane, into: out + base)
                    }
                }
            }
        } }
        var value = y
        if hard {
            value = [Float](repeating: 0, count: y.count)
            for cell in 0..<(n * plane) {
                let base = (cell / plane) * vocab * plane + cell % plane
                var best = 0
                for v in 1..<vocab where y[base + v * plane] > y[base + best * plane] { best = v }
                value[base + best * plane] = 1
            }
        }
        return record(value, shape: logits.shape, inputs: [logits]) { node in
            logits.accumulateGrad { d in withPointers(node.grad) { g in withPointers(y) { p in
                pool.parallelFor(n * plane) { cells in
                    for cell in cells {
                        let base = (cell / plane) * vocab * plane + cell % plane
                        var dot: Float = 0
                        for v in 0..<vocab { dot += g[base + v * plane] * p[base + v * plane] }
                        for v in 0..<vocab {
                            let i = base + v * plane
                            d[i] += p[i] * (g[i] - dot) / temperature
                        }
                    }
                }
            } } }
        }
    }

    /// KL(softmax(logits) ‖ uniform) summed over positions, averaged over the batch:
    /// logits [N, V, H, W].
    public func klToUniform(_ logits: Variable) -> Variable {
        let n = logits.shape[0], vocab = logits.shape[1], plane = logits.shape[2] * logits.shape[3]
        let q = codeProbabilities(logits).q
        var total: Double = 0
        let logVocab = logf(Float(vocab))
        for cell in 0..<(n * plane) {
            let base = (cell / plane) * vocab * plane + cell % plane
            var kl: Float = logVocab
            for v in 0..<vocab { let p = q[base + v * plane]; if p > 0 { kl += p * logf(p) } }
            total += Double(kl)
        }
        return record([Float(total) / Float(n)], shape: [], inputs: [logits]) { node in
            let g = node.grad[0] / Float(n)
            logits.accumulateGrad { d in withPointers(q) { p in
                for cell in 0..<(n * plane) {
                    let base = (cell / plane) * vocab * plane + cell % plane
                    // d/dl_v Σ q log q = q_v (log q_v − Σ q log q).
                    var entropyTerm: Float = 0
                    for v in 0..<vocab { let x = p[base + v * plane]; if x > 0 { entropyTerm += x * logf(x) } }
                    for v in 0..<vocab {
                        let x = p[base + v * plane]
                        if x > 0 { d[base + v * plane] += g * x * (logf(x) - entropyTerm) }
                    }
                }
            } }
        }
    }

    /// KL(q̄ ‖ uniform) of the batch's average code distribution q̄ = mean over every position of
    /// softmax(logits), logits [N, V, H, W]: zero when the batch uses every code equally, ln V when
    /// it uses one. Minimising it spreads the encoder over the codebook (the diversity loss of
    /// wav2vec 2.0), which the per-position KL cannot do: that one is minimised by any flat q.
    /// When these logits are one part of a larger batch, `batchAverage` is that batch's q̄
    /// (`codeDistribution`): the value is then the batch's term, and the gradient the batch's
    /// per position, averaged over this part's positions, so parts weighted by their share of
    /// the positions sum to the batch's gradient.
    public func codeUsageKL(_ logits: Variable, batchAverage: [Double]? = nil) -> Variable {
        let n = logits.shape[0], vocab = logits.shape[1], plane = logits.shape[2] * logits.shape[3]
        let cells = n * plane
        let (q, sum) = codeProbabilities(logits)
        let average = batchAverage ?? sum.map { $0 / Double(cells) }
        let logMean = average.map { Float(log(max($0, 1e-30))) }
        var kl = Float(log(Double(vocab)))
        for v in 0..<vocab { kl += Float(average[v]) * logMean[v] }
        return record([kl], shape: [], inputs: [logits]) { node in
            // d/dl_{c,u} = (1/M) q_{c,u} (ln q̄_u − Σ_v q_{c,v} ln q̄_v) for M positions.
            let g = node.grad[0] / Float(cells)
            logits.accumulateGrad { d in withPointers(q) { p in
                for cell in 0..<cells {
                    let base = (cell / plane) * vocab * plane + cell % plane
                    var expected: Float = 0
                    for v in 0..<vocab { expected += p[base + v * plane] * logMean[v] }
                    for v in 0..<vocab { d[base + v * plane] += g * p[base + v * plane] * (logMean[v] - expected) }
                }
            } }
        }
    }

    /// The average code distribution q̄ over every position of the parts' logits [N, V, H, W]
    /// (the parts in order): what `codeUsageKL` needs when a batch runs as parts.
    public static func codeDistribution(_ parts: [Variable]) -> [Double] {
        guard let vocab = parts.first?.shape[1] else { return [] }
        var sum = [Double](repeating: 0, count: vocab), cells = 0
        for logits in parts {
            for (v, s) in codeProbabilities(logits).sum.enumerated() { sum[v] += s }
            cells += logits.shape[0] * logits.shape[2] * logits.shape[3]
        }
        return sum.map { $0 / Double(max(cells, 1)) }
    }

    /// Negative log-likelihood of pixels under the logit-Laplace distribution, summed over
    /// pixels and averaged over the batch. stats [N, 2C, H, W] hold μ then ln b per channel;
    /// `target` [N, C, H, W] holds pixels already mapped into (ε, 1 − ε):
    /// −log p(x) = |logit(x) − μ| / b + log(2b) + log(x(1 − x)). ln b is clamped at
    /// `minLogScale` (no gradient below it).
    public func logitLaplaceNLL(_ stats: Variable, target: [Float], minLogScale: Float = -.infinity) -> Variable {
        let n = stats.shape[0], channels = stats.shape[1] / 2, plane = stats.shape[2] * stats.shape[3]
        let perImage = channels * plane
        var total: Double = 0
        withPointers(stats.value) { s in withPointers(target) { x in
            for b in 0..<n {
                var sum: Float = 0
                for i in 0..<perImage {
                    let px = x[b * perImage + i], mu = s[2 * b * perImage + i], logB = max(s[(2 * b + 1) * perImage + i], minLogScale)
                    let y = logf(px / (1 - px))
                    sum += abs(y - mu) * expf(-logB) + logB + logf(2 * px * (1 - px))
                }
                total += Double(sum)
            }
        } }
        return record([Float(total) / Float(n)], shape: [], inputs: [stats]) { node in
            let g = node.grad[0] / Float(n)
            stats.accumulateGrad { d in withPointers(stats.value) { s in withPointers(target) { x in
                for b in 0..<n {
                    for i in 0..<perImage {
                        let rawLogB = s[(2 * b + 1) * perImage + i], logB = max(rawLogB, minLogScale)
                        let px = x[b * perImage + i], mu = s[2 * b * perImage + i]
                        let r = logf(px / (1 - px)) - mu, inv = expf(-logB)
                        d[2 * b * perImage + i] += g * (r > 0 ? -inv : (r < 0 ? inv : 0))
                        if rawLogB >= minLogScale { d[(2 * b + 1) * perImage + i] += g * (1 - abs(r) * inv) }
                    }
                }
            } } }
        }
    }
}

/// softmax over the channels of logits [N, V, H, W] at every position, and its sum over the
/// positions per channel (in position order).
private func codeProbabilities(_ logits: Variable) -> (q: [Float], sum: [Double]) {
    let n = logits.shape[0], vocab = logits.shape[1], plane = logits.shape[2] * logits.shape[3]
    var q = [Float](repeating: 0, count: logits.count)
    var sum = [Double](repeating: 0, count: vocab)
    withPointers(logits.value) { l in
        q.withUnsafeMutableBufferPointer { qb in
            let out = qb.baseAddress.unsafelyUnwrapped
            for cell in 0..<(n * plane) {
                let base = (cell / plane) * vocab * plane + cell % plane
                channelSoftmax(l + base, noise: nil, temperature: 1, count: vocab, stride: plane, into: out + base)
                for v in 0..<vocab { sum[v] += Double(out[base + v * plane]) }
            }
        }
    }
    return (q, sum)
}

/// softmax((x + noise) / τ) over `count` values `stride` apart. Terms below e^−30 of the
/// largest (under float precision in any sum) are exactly 0 rather than subnormal floats.
@inline(__always)
func channelSoftmax(_ x: UnsafePointer<Float>, noise: UnsafePointer<Float>?, temperature: Float, count: Int,
                    stride: Int, into out: UnsafeMutablePointer<Float>) {
    var m = -Float.infinity
    for v in 0..<count {
        let z = (x[v * stride] + (noise?[v * stride] ?? 0)) / temperature
        out[v * stride] = z
        m = max(m, z)
    }
    var sum: Float = 0
    for v in 0..<count {
        let d = out[v * stride] - m, e = d < -30 ? 0 : expf(d)
        out[v * stride] = e
        sum += e
    }
    let inv = 1 / sum
    for v in 0..<count { out[v * stride] *= inv }
}

/// Rows scaled to unit length, and the original lengths.
func rowNormalized(_ x: [Float], rows: Int, cols: Int) -> ([Float], [Float]) {
    var y = x, norms = [Float](repeating: 0, count: rows)
    for r in 0..<rows {
        var s: Float = 0
        for c in 0..<cols { s += x[r * cols + c] * x[r * cols + c] }
        norms[r] = max(s.squareRoot(), 1e-12)
        for c in 0..<cols { y[r * cols + c] /= norms[r] }
    }
    return (y, norms)
}

/// Gradient through y = x / ‖x‖: dx = (dy − y (y·dy)) / ‖x‖.
func normalizeBackward(_ dy: [Float], unit y: [Float], norms: [Float], rows: Int, cols: Int, into dx: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        var dot: Float = 0
        for c in 0..<cols { dot += y[r * cols + c] * dy[r * cols + c] }
        for c in 0..<cols { dx[r * cols + c] += (dy[r * cols + c] - y[r * cols + c] * dot) / norms[r] }
    }
}
