/// The transformer pieces of CLIP (`clip.model.ResidualAttentionBlock` and `Transformer`),
/// shared by its vision and text towers. Activations are row-major [rows, width]; several
/// sequences of different lengths lie one after another in the same buffer.

/// A run of rows holding one sequence.
struct SequenceSpan {
    var start: Int
    var length: Int
}

/// `ResidualAttentionBlock`: x += attn(ln_1(x)); x += mlp(ln_2(x)), with
/// `nn.MultiheadAttention` (packed in_proj, out_proj) and a QuickGELU MLP (c_fc, c_proj).
struct CLIPResidualBlock: Sendable {
    let width: Int
    let heads: Int
    let ln1: LayerNorm
    let inProj: Linear
    let outProj: Linear
    let ln2: LayerNorm
    let fc: Linear
    let proj: Linear

    init(_ prefix: String, width: Int, heads: Int, loader: StrictWeightLoader) throws {
        self.width = width
        self.heads = heads
        ln1 = try LayerNorm(prefix + ".ln_1", width: width, loader: loader)
        inProj = Linear(weight: try loader.weight(prefix + ".attn.in_proj_weight", shape: [3 * width, width]),
                        bias: try loader.weight(prefix + ".attn.in_proj_bias", shape: [3 * width]))
        outProj = try Linear(prefix + ".attn.out_proj", inputs: width, outputs: width, bias: true, loader: loader)
        ln2 = try LayerNorm(prefix + ".ln_2", width: width, loader: loader)
        fc = try Linear(prefix + ".mlp.c_fc", inputs: width, outputs: 4 * width, bias: true, loader: loader)
        proj = try Linear(prefix + ".mlp.c_proj", inputs: 4 * width, outputs: width, bias: true, loader: loader)
    }

    /// Runs the block on the rows of `x` (sequences `spans`). When `keep` is given, only
    /// those rows (global indices) are computed past the attention's keys and values, and
    /// the result holds just them, in row order; otherwise every row.
    func callAsFunction(_ x: [Float], spans: [SequenceSpan], causal: Bool, keep: [Int]? = nil,
                        pool: ThreadPool) -> [Float] {
        let rows = x.count / width
        let qkv = inProj(ln1(x, pool: pool), rows: rows, pool: pool)
        let kept = keep.map(Set.init)
        var queries: [(row: Int, span: SequenceSpan)] = []
        for span in spans {
            for r in span.start..<(span.start + span.length) where kept?.contains(r) ?? true {
                queries.append((r, span))
            }
        }
        let attended = attention(qkv, queries: queries, causal: causal, pool: pool)
        var residual = x
        if keep != nil {
            residual = [Float](repeating: 0, count: queries.count * width)
            for (i, q) in queries.enumerated() {
                for j in 0..<width { residual[i * width + j] = x[q.row * width + j] }
            }
        }
        let n = queries.count
        let h = outProj(attended, rows: n, residual: residual, pool: pool)
        var hidden = fc(ln2(h, pool: pool), rows: n, pool: pool)
        quickGELU(&hidden)
        return proj(hidden, rows: n, residual: h, pool: pool)
    }

    /// Scaled dot-product attention of each query row against the keys of its sequence
    /// (up to itself when `causal`); `qkv` is [rows, 3·width] = q | k | v. Returns [queries, width].
    private func attention(_ qkv: [Float], queries: [(row: Int, span: SequenceSpan)], causal: Bool,
                           pool: ThreadPool) -> [Float] {
        let headDim = width / heads, stride = 3 * width
        let scale = 1 / Float(headDim).squareRoot()
        let longest = queries.map(\.span.length).max() ?? 0
        var out = [Float](repeating: 0, count: queries.count * width)
        qkv.withUnsafeBufferPointer { qp in
            out.withUnsafeMutableBufferPointer { op in
                let base = qp.baseAddress!, outBase = op.baseAddress!
                pool.parallelFor(queries.count) { range in
                    let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(longest, 1))
                    defer { scores.deallocate() }
                    for qi in range {
                        let (row, span) = queries[qi]
                        let end = causal ? row + 1 : span.start + span.length
                        for h in 0..<heads {
                            let column = span.start * stride + h * headDim
                            attendOne(query: base + row * stride + h * headDim, keys: base + column + width,
                                      values: base + column + 2 * width, count: end - span.start, width: headDim,
                                      scale: scale, scores: scores, into: outBase + qi * width + h * headDim) { $0 * stride }
                        }
                    }
                }
            }
        }
        return out
    }
}

/// Entries of OpenAI's TorchScript CLIP state dicts that are not parameters.
let clipNonParameters: Set<String> = ["input_resolution", "context_length", "vocab_size"]
