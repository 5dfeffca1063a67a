// A BLIS/GotoBLAS-style single-precision GEMM: A and B are packed into contiguous
// panels, a 6×16 register-blocked micro-kernel (12 AVX2 accumulators) runs over them,
// and MC/KC/NC blocking keeps the working set in L1/L2/L3. The same driver serves
// plain matrix products and convolutions (implicit im2col, relu fused into packing,
// bias/scale/residual fused into the store).
//
// Determinism: every element of C is summed over k in the same order (k blocks chosen
// from k alone, one FMA chain per block) whatever the thread count; threads split rows or columns of
// C, never k.

/// Rows of a micro-tile (panels of packed A).
let gemmMR = 6
/// Columns of a micro-tile (panels of packed B): two 8-float vectors.
let gemmNR = 16
/// Largest depth of one packed block (a B micro-panel of KC×NR floats, ≤ 16 KiB, stays
/// in L1). k is cut into equal blocks of at most this depth (see `gemmDepthBlock`).
let gemmKC = 256
/// Rows of A per packed block (MC×KC floats = 144 KiB stays in L2).
let gemmMC = 144
/// Columns of B per packed block when A comes prepacked (KC×NC floats = 768 KiB stays in
/// L2, where the micro-kernel streams it from).
let gemmNC = 768
/// The same when A is packed block by block: a wider B block packs A half as often, which
/// measured faster than keeping B in L2.
let gemmNCPackingA = 1536

/// C[m×n] = A[m×k] · B[k×n] (+ C when `accumulate`), all row-major with leading
/// dimensions lda, ldb, ldc; with `transposeA` `a` holds Aᵀ [k×m], with `transposeB` `b`
/// holds Bᵀ [n×k] (transposed as they are packed, so no copy is made, and the sums are the
/// same as for a transposed copy). Work is split over rows/columns of C, never over k,
/// so the result is identical for every thread count.
public func gemm(m: Int, n: Int, k: Int,
                 a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
                 b: UnsafePointer<Float>, ldb: Int, transposeB: Bool = false,
                 c: UnsafeMutablePointer<Float>, ldc: Int,
                 accumulate: Bool, pool: ThreadPool) {
    gemmDriver(m: m, n: n, k: k, a: transposeA ? .transposedMatrix(a, ld: lda) : .matrix(a, ld: lda),
               b: transposeB ? .transposedMatrix(b, ld: ldb) : .matrix(b, ld: ldb, relu: false),
               c: c, ldc: ldc, accumulate: accumulate, epilogue: nil, pool: pool)
}

/// The left operand of the driver.
enum GemmA {
    /// Row-major [m×k] with leading dimension `ld`; packed block by block.
    case matrix(UnsafePointer<Float>, ld: Int)
    /// Its transpose stored row-major, [k×m] with leading dimension `ld`; packed block by block.
    case transposedMatrix(UnsafePointer<Float>, ld: Int)
    /// Row-major [m×k] 16-bit floats (f16 or bf16), widened exactly as they are packed block by block.
    case matrix16(UnsafeRawPointer, ld: Int, format: WeightFormat)
    /// Already packed by `packGemmA`: panels of MR rows, each [k][MR].
    case packed(UnsafePointer<Float>)
}

/// The right operand of the driver.
enum GemmB {
    /// Row-major [k×n] with leading dimension `ld`, optionally through max(·, 0).
    case matrix(UnsafePointer<Float>, ld: Int, relu: Bool)
    /// The same of 16-bit floats (f16 or bf16, little-endian), widened exactly as they are packed.
    case matrix16(UnsafeRawPointer, ld: Int, format: WeightFormat)
    /// A quantized `Linear` panel [k×32] (see `Linear`), widened to q · d as it is packed.
    case quantizedPanel(UnsafeRawPointer, type: QuantizedType)
    /// Its transpose stored row-major, [n×k] with leading dimension `ld`.
    case transposedMatrix(UnsafePointer<Float>, ld: Int)
    /// The implicit im2col matrix of one CHW image for a k×k "same" convolution:
    /// row (c·k + ky)·k + kx, column y·width + x.
    case image(UnsafePointer<Float>, height: Int, width: Int, kernel: Int, relu: Bool)
    /// Its transpose: row y·width + x, column (c·k + ky)·k + kx (a convolution's weight
    /// gradient is dy · im2col(x)ᵀ).
    case transposedImage(UnsafePointer<Float>, height: Int, width: Int, kernel: Int, relu: Bool)
}

/// Applied to C once its last k-block is summed: C = residual + scale · (C + bias[row]).
struct GemmEpilogue {
    var bias: UnsafePointer<Float>
    var scale: Float
    /// Same layout as C (leading dimension ldc), or nil.
    var residual: UnsafePointer<Float>?
}

/// Packs a row-major [m×k] matrix into MR-row panels, each [k][MR], rows past m zero.
func packGemmA(_ a: UnsafePointer<Float>, m: Int, k: Int) -> [Float] {
    let panels = (m + gemmMR - 1) / gemmMR
    return [Float](unsafeUninitializedCapacity: panels * k * gemmMR) { buf, count in
        let dst = buf.baseAddress!
        for p in 0..<panels {
            packAPanel(a + p * gemmMR * k, ld: k, rows: min(gemmMR, m - p * gemmMR), depth: k,
                       into: dst + p * k * gemmMR)
        }
        count = panels * k * gemmMR
    }
}

/// One MR-row panel: dst[p·MR + i] = a[i·ld + p], zero for rows ≥ `rows`.
@inline(__always)
private func packAPanel(_ a: UnsafePointer<Float>, ld: Int, rows: Int, depth: Int,
                        into dst: UnsafeMutablePointer<Float>) {
    if rows == gemmMR {
        let r0 = a, r1 = a + ld, r2 = a + 2 * ld, r3 = a + 3 * ld, r4 = a + 4 * ld, r5 = a + 5 * ld
        for p in 0..<depth {
            let d = dst + p * gemmMR
            d[0] = r0[p]; d[1] = r1[p]; d[2] = r2[p]; d[3] = r3[p]; d[4] = r4[p]; d[5] = r5[p]
        }
        return
    }
    for p in 0..<depth {
        for i in 0..<gemmMR { dst[p * gemmMR + i] = i < rows ? a[i * ld + p] : 0 }
    }
}

/// `packAPanel` for 16-bit floats: dst[p·MR + i] = widen(a[i·ld + p]), zero for rows ≥ `rows`.
private func packAPanel16(_ a: UnsafeRawPointer, ld: Int, format: WeightFormat, rows: Int, depth: Int,
                          into dst: UnsafeMutablePointer<Float>) {
    for i in 0..<gemmMR {
        let row = a + i * ld * 2
        if i < rows {
            if format == .bf16 {
                for p in 0..<depth { dst[p * gemmMR + i] = bfloat16ToFloat(row.loadUnaligned(fromByteOffset: 2 * p, as: UInt16.self)) }
            } else {
                for p in 0..<depth { dst[p * gemmMR + i] = Float(Float16(bitPattern: row.loadUnaligned(fromByteOffset: 2 * p, as: UInt16.self))) }
            }
        } else {
            for p in 0..<depth { dst[p * gemmMR + i] = 0 }
        }
    }
}

/// One MR-row panel of A from Aᵀ: dst[p·MR + i] = a[p·ld + i], zero for rows ≥ `rows`.
@inline(__always)
private func packATransposedPanel(_ a: UnsafePointer<Float>, ld: Int, rows: Int, depth: Int,
                                  into dst: UnsafeMutablePointer<Float>) {
    for p in 0..<depth {
        let src = a + p * ld, d = dst + p * gemmMR
        if rows == gemmMR {
            d[0] = src[0]; d[1] = src[1]; d[2] = src[2]; d[3] = src[3]; d[4] = src[4]; d[5] = src[5]
        } else {
            for i in 0..<gemmMR { d[i] = i < rows ? src[i] : 0 }
        }
    }
}

/// The shared driver: splits C over threads, then runs the blocked loops on each part.
func gemmDriver(m: Int, n: Int, k: Int, a: GemmA, b: GemmB,
                c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                epilogue: GemmEpilogue?, pool: ThreadPool) {
    guard m > 0, n > 0, k >= 0 else { return }
    if k == 0 {
        for i in 0..<m {
            for j in 0..<n {
                var v: Float = accumulate ? c[i * ldc + j] : 0
                if let e = epilogue { v = (e.residual?[i * ldc + j] ?? 0) + e.scale * (v + e.bias[i]) }
                c[i * ldc + j] = v
            }
        }
        return
    }
    // C is cut along its larger dimension into tile-aligned parts that threads take one at
    // a time (a few per thread, so a thread slowed by other load takes fewer). Each part
    // does at least ~4 MFLOP; small products stay on one thread. Every part packs the
    // operand it shares with the others (B when split by rows, A unless prepacked when
    // split by columns) again, so then each thread gets a single part.
    let rowTiles = (m + gemmMR - 1) / gemmMR, colTiles = (n + gemmNR - 1) / gemmNR
    let splitColumns = colTiles >= rowTiles
    let flops = 2.0 * Double(m) * Double(n) * Double(k)
    let byWork = max(1, Int(flops / 4e6))
    var perThread = 1
    if case .packed = a, splitColumns { perThread = 4 }
    let parts = min(pool.threads * perThread, byWork, splitColumns ? colTiles : rowTiles)
    let tiles = splitColumns ? colTiles : rowTiles
    let body: (Int) -> Void = { part in
        let t0 = tiles * part / parts, t1 = tiles * (part + 1) / parts
        if t0 >= t1 { return }
        if splitColumns {
            gemmBlock(rows: 0..<m, cols: (t0 * gemmNR)..<min(n, t1 * gemmNR), k: k, a: a, b: b,
                      c: c, ldc: ldc, accumulate: accumulate, epilogue: epilogue)
        } else {
            gemmBlock(rows: (t0 * gemmMR)..<min(m, t1 * gemmMR), cols: 0..<n, k: k, a: a, b: b,
                      c: c, ldc: ldc, accumulate: accumulate, epilogue: epilogue)
        }
    }
    if parts == 1 { body(0) } else { pool.parallelForEach(parts, body) }
}

/// The depth of k's blocks: as equal as possible, so no short last block pays for a
/// full extra pass over C. Depends only on k, so every thread sums in the same order.
func gemmDepthBlock(_ k: Int) -> Int {
    let blocks = (k + gemmKC - 1) / gemmKC
    return (k + blocks - 1) / blocks
}

/// The blocked loops over one rectangle of C (rows.lowerBound is a multiple of MR). Never
/// inlined: inlined into `Linear`'s bf16 and q8_0 specialisations the micro-kernel spilled its
/// accumulators and called an unspecialised SIMD load, at a quarter of its speed.
@inline(never)
private func gemmBlock(rows: Range<Int>, cols: Range<Int>, k: Int, a: GemmA, b: GemmB,
                       c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool,
                       epilogue: GemmEpilogue?) {
    let kcMax = gemmDepthBlock(k)
    let packsA: Bool
    if case .packed = a { packsA = false } else { packsA = true }
    let ncBlock = packsA ? gemmNCPackingA : gemmNC
    let ncMax = min(ncBlock, (cols.count + gemmNR - 1) / gemmNR * gemmNR)
    let mcMax = min(gemmMC, (rows.count + gemmMR - 1) / gemmMR * gemmMR)
    let bBytes = kcMax * ncMax * 4
    let aBytes = packsA ? kcMax * mcMax * 4 : 0
    let scratchBytes = gemmMR * gemmNR * 4
    withThreadWorkspace(bytes: bBytes + aBytes + scratchBytes) { raw in
        let packedB = raw.bindMemory(to: Float.self, capacity: kcMax * ncMax)
        let packedA = (raw + bBytes).bindMemory(to: Float.self, capacity: kcMax * mcMax)
        let tile = (raw + bBytes + aBytes).bindMemory(to: Float.self, capacity: gemmMR * gemmNR)

        var jc = cols.lowerBound
        while jc < cols.upperBound {
            let nc = min(ncBlock, cols.upperBound - jc)
            var pc = 0
            while pc < k {
                let kc = min(kcMax, k - pc)
                switch b {
                case let .matrix(bp, ld, relu):
                    packBMatrix(bp + pc * ld, ld: ld, depth: kc, col0: jc, cols: nc, relu: relu, into: packedB)
                case let .matrix16(bp, ld, format):
                    packBMatrix16(bp + pc * ld * 2, ld: ld, format: format, depth: kc, col0: jc, cols: nc, into: packedB)
                case let .quantizedPanel(bp, type):
                    if type == .q8_0 {
                        packBQuantized(Q8Panel.self, bp, row0: pc, depth: kc, col0: jc, cols: nc, into: packedB)
                    } else {
                        packBQuantized(Q4Panel.self, bp, row0: pc, depth: kc, col0: jc, cols: nc, into: packedB)
                    }
                case let .transposedMatrix(bp, ld):
                    packBTransposed(bp + pc, ld: ld, depth: kc, col0: jc, cols: nc, into: packedB)
                case let .image(x, h, w, ks, relu):
                    packBImage(x, height: h, width: w, kernel: ks, relu: relu,
                               row0: pc, depth: kc, col0: jc, cols: nc, into: packedB)
                case let .transposedImage(x, h, w, ks, relu):
                    packBTransposedImage(x, height: h, width: w, kernel: ks, relu: relu,
                                         pixel0: pc, depth: kc, col0: jc, cols: nc, into: packedB)
                }
                let store = TileStore(first: pc == 0, last: pc + kc == k, accumulate: accumulate,
                                      epilogue: epilogue)
                var ic = rows.lowerBound
                while ic < rows.upperBound {
                    let mc = min(gemmMC, rows.upperBound - ic)
                    let aPanels = (mc + gemmMR - 1) / gemmMR
                    let aBase: UnsafePointer<Float>, aPanelStride: Int
                    switch a {
                    case let .matrix(ap, ld):
                        for p in 0..<aPanels {
                            packAPanel(ap + (ic + p * gemmMR) * ld + pc, ld: ld,
                                       rows: min(gemmMR, mc - p * gemmMR), depth: kc,
                                       into: packedA + p * kc * gemmMR)
                        }
                        aBase = UnsafePointer(packedA); aPanelStride = kc * gemmMR
                    case let .transposedMatrix(ap, ld):
                        for p in 0..<aPanels {
                            packATransposedPanel(ap + pc * ld + ic + p * gemmMR, ld: ld,
                                                 rows: min(gemmMR, mc - p * gemmMR), depth: kc,
                                                 into: packedA + p * kc * gemmMR)
                        }
                        aBase = UnsafePointer(packedA); aPanelStride = kc * gemmMR
                    case let .matrix16(ap, ld, format):
                        for p in 0..<aPanels {
                            packAPanel16(ap + ((ic + p * gemmMR) * ld + pc) * 2, ld: ld, format: format,
                                         rows: min(gemmMR, mc - p * gemmMR), depth: kc,
                                         into: packedA + p * kc * gemmMR)
                        }
                        aBase = UnsafePointer(packedA); aPanelStride = kc * gemmMR
                    case let .packed(ap):
                        aBase = ap + ((ic / gemmMR) * k + pc) * gemmMR; aPanelStride = k * gemmMR
                    }
                    // Along rows of C: the A micro-panel stays in L1, B streams from L2,
                    // and C (and the residual) are read and written sequentially, row by row.
                    let bPanels = (nc + gemmNR - 1) / gemmNR
                    for ir in 0..<aPanels {
                        let row = ic + ir * gemmMR
                        let aPanel = aBase + ir * aPanelStride
                        for jr in 0..<bPanels {
                            let col = jc + jr * gemmNR
                            microKernel6x16(kc, aPanel, UnsafePointer(packedB + jr * kc * gemmNR), tile)
                            store.apply(tile, to: c, ldc: ldc, row: row, col: col,
                                        rows: min(gemmMR, rows.upperBound - row),
                                        cols: min(gemmNR, jc + nc - col))
                        }
                    }
                    ic += mc
                }
                pc += kc
            }
            jc += nc
        }
    }
}

/// acc[6×16] = Σ_p a[p][0..<6] ⊗ b[p][0..<16] over packed panels, one FMA chain per element.
@inline(__always)
private func microKernel6x16(_ kc: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                             _ acc: UnsafeMutablePointer<Float>) {
    typealias V = SIMD8<Float>
    var c00 = V(), c01 = V(), c10 = V(), c11 = V(), c20 = V(), c21 = V()
    var c30 = V(), c31 = V(), c40 = V(), c41 = V(), c50 = V(), c51 = V()
    var ap = a, bp = UnsafeRawPointer(b)
    for _ in 0..<kc {
        let b0 = bp.load(as: V.self), b1 = bp.load(fromByteOffset: 32, as: V.self)
        var s = V(repeating: ap[0]); c00 = c00.addingProduct(s, b0); c01 = c01.addingProduct(s, b1)
        s = V(repeating: ap[1]); c10 = c10.addingProduct(s, b0); c11 = c11.addingProduct(s, b1)
        s = V(repeating: ap[2]); c20 = c20.addingProduct(s, b0); c21 = c21.addingProduct(s, b1)
        s = V(repeating: ap[3]); c30 = c30.addingProduct(s, b0); c31 = c31.addingProduct(s, b1)
        s = V(repeating: ap[4]); c40 = c40.addingProduct(s, b0); c41 = c41.addingProduct(s, b1)
        s = V(repeating: ap[5]); c50 = c50.addingProduct(s, b0); c51 = c51.addingProduct(s, b1)
        ap += gemmMR; bp += gemmNR * 4
    }
    let out = UnsafeMutableRawPointer(acc)
    out.storeBytes(of: c00, toByteOffset: 0, as: V.self); out.storeBytes(of: c01, toByteOffset: 32, as: V.self)
    out.storeBytes(of: c10, toByteOffset: 64, as: V.self); out.storeBytes(of: c11, toByteOffset: 96, as: V.self)
    out.storeBytes(of: c20, toByteOffset: 128, as: V.self); out.storeBytes(of: c21, toByteOffset: 160, as: V.self)
    out.storeBytes(of: c30, toByteOffset: 192, as: V.self); out.storeBytes(of: c31, toByteOffset: 224, as: V.self)
    out.storeBytes(of: c40, toByteOffset: 256, as: V.self); out.storeBytes(of: c41, toByteOffset: 288, as: V.self)
    out.storeBytes(of: c50, toByteOffset: 320, as: V.self); out.storeBytes(of: c51, toByteOffset: 352, as: V.self)
}

/// How a summed micro-tile is merged into C for one k-block.
private struct TileStore {
    let first: Bool, last: Bool, accumulate: Bool
    let epilogue: GemmEpilogue?

    /// C = (first && !accumulate ? 0 : C) + acc, then the epilogue after the last block.
    /// Full tiles and edge tiles do the same float operations per element.
    @inline(__always)
    func apply(_ acc: UnsafePointer<Float>, to c: UnsafeMutablePointer<Float>, ldc: Int,
               row: Int, col: Int, rows: Int, cols: Int) {
        let loadC = !first || accumulate
        let epi = last ? epilogue : nil
        for i in 0..<rows {
            let dst = c + (row + i) * ldc + col
            let src = acc + i * gemmNR
            let res = epi?.residual.map { $0 + (row + i) * ldc + col }
            let bias = epi?.bias[row + i] ?? 0, scale = epi?.scale ?? 1
            if cols == gemmNR {
                var v = UnsafeRawPointer(src).load(as: SIMD16<Float>.self)
                if loadC { v = UnsafeRawPointer(dst).loadUnaligned(as: SIMD16<Float>.self) + v }
                if epi != nil {
                    v = (v + bias) * scale
                    if let res { v = UnsafeRawPointer(res).loadUnaligned(as: SIMD16<Float>.self) + v }
                }
                UnsafeMutableRawPointer(dst).storeBytes(of: v, as: SIMD16<Float>.self)
            } else {
                for j in 0..<cols {
                    var v = src[j]
                    if loadC { v = dst[j] + v }
                    if epi != nil {
                        v = (v + bias) * scale
                        if let res { v = res[j] + v }
                    }
                    dst[j] = v
                }
            }
        }
    }
}

/// Packs B[depth × cols] (starting at column col0 of `b`) into NR-column panels, each
/// [depth][NR], columns past the edge zero. Row by row, so the reads stream through B.
private func packBMatrix(_ b: UnsafePointer<Float>, ld: Int, depth: Int, col0: Int, cols: Int,
                         relu: Bool, into dst: UnsafeMutablePointer<Float>) {
    let fullPanels = cols / gemmNR, rest = cols - fullPanels * gemmNR
    for p in 0..<depth {
        let src = b + p * ld + col0
        for jp in 0..<fullPanels {
            var v = UnsafeRawPointer(src + jp * gemmNR).loadUnaligned(as: SIMD16<Float>.self)
            if relu { v.replace(with: 0, where: v .< 0) }
            UnsafeMutableRawPointer(dst + (jp * depth + p) * gemmNR).storeBytes(of: v, as: SIMD16<Float>.self)
        }
        if rest > 0 {
            let out = dst + (fullPanels * depth + p) * gemmNR, edge = src + fullPanels * gemmNR
            for t in 0..<gemmNR {
                let v = t < rest ? edge[t] : 0
                out[t] = relu ? max(v, 0) : v
            }
        }
    }
}

/// `packBMatrix` for 16-bit floats: B[depth × cols] of f16 or bf16 into f32 NR-column panels.
private func packBMatrix16(_ b: UnsafeRawPointer, ld: Int, format: WeightFormat, depth: Int, col0: Int, cols: Int,
                           into dst: UnsafeMutablePointer<Float>) {
    for p in 0..<depth {
        let src = b + (p * ld + col0) * 2
        for jp in 0..<(cols + gemmNR - 1) / gemmNR {
            let out = dst + (jp * depth + p) * gemmNR, width = min(gemmNR, cols - jp * gemmNR)
            if width == gemmNR {
                let v = format == .bf16 ? BF16Panel.load16(src + jp * gemmNR * 2) : F16Panel.load16(src + jp * gemmNR * 2)
                UnsafeMutableRawPointer(out).storeBytes(of: v, as: SIMD16<Float>.self)
            } else {
                let edge = src + jp * gemmNR * 2
                for t in 0..<gemmNR {
                    let bits = t < width ? edge.loadUnaligned(fromByteOffset: 2 * t, as: UInt16.self) : 0
                    out[t] = format == .bf16 ? bfloat16ToFloat(bits) : halfToFloat(bits)
                }
            }
        }
    }
}

/// Packs rows [row0, row0 + depth) and columns [col0, col0 + cols) of a quantized panel
/// (32 columns) into f32 NR-column panels, each value q · d.
private func packBQuantized<E: PanelElement>(_: E.Type, _ panel: UnsafeRawPointer, row0: Int, depth: Int, col0: Int, cols: Int,
                                             into dst: UnsafeMutablePointer<Float>) {
    let blockBytes = 64 + 32 * E.rowBytes
    var row = [Float](repeating: 0, count: 32)
    row.withUnsafeMutableBufferPointer { rb in
        let values = rb.baseAddress.unsafelyUnwrapped
        for p in 0..<depth {
            let k = row0 + p, base = panel + (k / QuantizedType.blockSize) * blockBytes
            let (q0, q1) = E.widenRow(base + 64 + (k % QuantizedType.blockSize) * E.rowBytes)
            let s0 = F16Panel.load16(base), s1 = F16Panel.load16(base + 32)
            // (q + offset) · d, fused and exact as in Linear's streaming kernel.
            UnsafeMutableRawPointer(values).storeBytes(of: (E.offset * s0).addingProduct(q0, s0), as: SIMD16<Float>.self)
            UnsafeMutableRawPointer(values + 16).storeBytes(of: (E.offset * s1).addingProduct(q1, s1), as: SIMD16<Float>.self)
            for jp in 0..<(cols + gemmNR - 1) / gemmNR {
                let out = dst + (jp * depth + p) * gemmNR
                for t in 0..<gemmNR {
                    let j = jp * gemmNR + t
                    out[t] = j < cols && col0 + j < 32 ? values[col0 + j] : 0
                }
            }
        }
    }
}

/// Packs B[depth × cols] from Bᵀ (B[p][j] = b[(col0 + j)·ld + p]) into NR-column panels,
/// each [depth][NR], columns past the edge zero. Column by column, so the reads stream
/// through Bᵀ's rows and the writes stay in one panel (≤ 16 KiB).
private func packBTransposed(_ b: UnsafePointer<Float>, ld: Int, depth: Int, col0: Int, cols: Int,
                             into dst: UnsafeMutablePointer<Float>) {
    let panels = (cols + gemmNR - 1) / gemmNR
    for jp in 0..<panels {
        let panel = dst + jp * depth * gemmNR
        for t in 0..<gemmNR {
            let j = jp * gemmNR + t
            if j < cols {
                let src = b + (col0 + j) * ld
                for p in 0..<depth { panel[p * gemmNR + t] = src[p] }
            } else {
                for p in 0..<depth { panel[p * gemmNR + t] = 0 }
            }
        }
    }
}

/// Packs rows [row0, row0 + depth) and columns [col0, col0 + cols) of the implicit
/// im2col matrix of a CHW image (k×k kernel, stride 1, zero padding (k-1)/2).
private func packBImage(_ x: UnsafePointer<Float>, height h: Int, width w: Int,
                        kernel ks: Int, relu: Bool, row0: Int, depth: Int, col0: Int, cols: Int,
                        into dst: UnsafeMutablePointer<Float>) {
    let pad = (ks - 1) / 2
    let panels = (cols + gemmNR - 1) / gemmNR
    withUnsafeTemporaryAllocation(of: (y: Int, x: Int, oneRow: Bool).self, capacity: panels) { origin in
        // Each panel's first output pixel, and whether its 16 pixels share one row.
        for jp in 0..<panels {
            let j0 = col0 + jp * gemmNR, y0 = j0 / w, x0 = j0 - y0 * w
            origin[jp] = (y0, x0, cols - jp * gemmNR >= gemmNR && x0 + gemmNR <= w)
        }
        var ch = row0 / (ks * ks), ky = row0 % (ks * ks) / ks, kx = row0 % ks
        for p in 0..<depth {
            let plane = x + ch * h * w
            for jp in 0..<panels {
                let out = dst + (jp * depth + p) * gemmNR
                let (y0, x0, oneRow) = origin[jp]
                let sy = y0 + ky - pad, sx = x0 + kx - pad
                if oneRow && (sy < 0 || sy >= h) {
                    UnsafeMutableRawPointer(out).storeBytes(of: SIMD16<Float>(), as: SIMD16<Float>.self)
                } else if oneRow && sx >= 0 && sx + gemmNR <= w {
                    var v = UnsafeRawPointer(plane + sy * w + sx).loadUnaligned(as: SIMD16<Float>.self)
                    if relu { v.replace(with: 0, where: v .< 0) }
                    UnsafeMutableRawPointer(out).storeBytes(of: v, as: SIMD16<Float>.self)
                } else {
                    // Row edges, rows that wrap, and the last partial panel: pixel by pixel.
                    let width = min(gemmNR, cols - jp * gemmNR)
                    var yy = y0, xx = x0
                    for t in 0..<gemmNR {
                        var v: Float = 0
                        if t < width {
                            let syt = yy + ky - pad, sxt = xx + kx - pad
                            if syt >= 0 && syt < h && sxt >= 0 && sxt < w { v = plane[syt * w + sxt] }
                            xx += 1
                            if xx == w { xx = 0; yy += 1 }
                        }
                        out[t] = relu ? max(v, 0) : v
                    }
                }
            }
            kx += 1
            if kx == ks { kx = 0; ky += 1; if ky == ks { ky = 0; ch += 1 } }
        }
    }
}

/// Packs rows [pixel0, pixel0 + depth) (output pixels y·w + x) and columns [col0, col0 + cols)
/// (kernel taps (c·k + ky)·k + kx) of the transposed implicit im2col matrix of a CHW image (k×k
/// kernel, stride 1, zero padding (k-1)/2) into NR-column panels, each [depth][NR], columns
/// past the edge zero. Tap by tap, so the reads run along the image's rows and the writes stay
/// in one panel.
private func packBTransposedImage(_ x: UnsafePointer<Float>, height h: Int, width w: Int,
                                  kernel ks: Int, relu: Bool, pixel0: Int, depth: Int, col0: Int, cols: Int,
                                  into dst: UnsafeMutablePointer<Float>) {
    let pad = (ks - 1) / 2
    let panels = (cols + gemmNR - 1) / gemmNR
    for jp in 0..<panels {
        let panel = dst + jp * depth * gemmNR
        for t in 0..<gemmNR {
            let j = jp * gemmNR + t
            guard j < cols else {
                for p in 0..<depth { panel[p * gemmNR + t] = 0 }
                continue
            }
            let tap = col0 + j, ch = tap / (ks * ks), ky = tap % (ks * ks) / ks, kx = tap % ks
            let plane = x + ch * h * w
            var y = pixel0 / w, xx = pixel0 - y * w
            for p in 0..<depth {
                let sy = y + ky - pad, sx = xx + kx - pad
                var v: Float = 0
                if sy >= 0 && sy < h && sx >= 0 && sx < w { v = plane[sy * w + sx] }
                panel[p * gemmNR + t] = relu ? max(v, 0) : v
                xx += 1
                if xx == w { xx = 0; y += 1 }
            }
        }
    }
}
