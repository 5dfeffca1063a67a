import CDalleKernels

/// The dot-product paths of `Linear`, chosen at run time from the CPU's features: bf16 weights
/// with AVX-512 BF16 (vdpbf16ps) for products of more than `Linear.streamingRows` rows; q8_0 and
/// q4_0 weights with AVX-512 VNNI (vpdpbusd) for every row count (the packed GEMM and the
/// streaming kernel, which give the same bits). Without them, and for other formats, `Linear`
/// computes with the weights widened to f32. The numeric contract is `Linear`'s.
public struct DotProductKernels: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// bf16 weights × activations rounded to bf16, f32 sums.
    public static let bf16 = DotProductKernels(rawValue: 1)
    /// q8_0 / q4_0 weights × activations quantized to q8_0, int32 block dots, f32 sums.
    public static let int8 = DotProductKernels(rawValue: 2)

    /// The paths this CPU can run (`CPUFeatures.usable`: none when `DALLE_SIMD` is `avx2` or `avx512`).
    public static let supported: DotProductKernels = {
        let avx512: CPUFeatures = [.avx512f, .avx512bw, .avx512vl]
        var kernels: DotProductKernels = []
        if CPUFeatures.usable.isSuperset(of: avx512.union(.avx512bf16)) { kernels.insert(.bf16) }
        if CPUFeatures.usable.isSuperset(of: avx512.union(.avx512vnni)) { kernels.insert(.int8) }
        return kernels
    }()

    /// The paths `Linear` uses: `supported`, unless a test or benchmark narrows it to compare
    /// with (or check) the AVX2 path. Set it only while no product runs.
    nonisolated(unsafe) public static var enabled = supported

    public var description: String {
        [(DotProductKernels.bf16, "bf16"), (.int8, "int8")].filter { contains($0.0) }.map(\.1).joined(separator: " ")
    }
}

extension Linear {
    /// Bytes of packed weights one call of a dot-product kernel keeps (in L2) while its rows run
    /// over them.
    static let dotProductChunkBytes = 512 << 10

    /// y = x · Wᵀ + b through a dot-product kernel when one is enabled for this weight format
    /// (and k > 0); false, with y untouched, otherwise. Threads take chunks of consecutive
    /// 32-output panels one at a time; every output is summed in an order fixed by k alone.
    func applyDotProduct(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
                         bias: UnsafePointer<Float>?, pool: ThreadPool) -> Bool {
        let k = inputs, n = outputs, pw = Linear.panelWidth, panelBytes = Linear.panelBytes(format, inputs: k)
        let w = UnsafeRawPointer(panels.bytes), enabled = DotProductKernels.enabled
        let groups = (rows + Int(LIBDALLE_DOT_GROUP_ROWS) - 1) / Int(LIBDALLE_DOT_GROUP_ROWS)
        guard k > 0, rows > 0 else { return false }
        /// Calls `body(first panel, panel count, scratch)` for chunks of panels that fit
        /// `dotProductChunkBytes` once packed, at least 4 chunks per thread where there are enough panels.
        func forEachChunk(scratchPerPanel: Int, extraScratch: Int = 0, _ body: (Int, Int, UnsafeMutableRawPointer) -> Void) {
            let chunk = max(1, min(Linear.dotProductChunkBytes / scratchPerPanel, panelCount / (4 * pool.threads)))
            pool.parallelForEach((panelCount + chunk - 1) / chunk) { item in
                let first = item * chunk, count = min(chunk, panelCount - first)
                withThreadWorkspace(bytes: count * scratchPerPanel + extraScratch) { body(first, count, $0) }
            }
        }
        switch format {
        case .bf16 where enabled.contains(.bf16):
            let words = UnsafeMutablePointer<UInt32>.allocate(capacity: libdalle_bf16_packed_words(rows, k))
            defer { words.deallocate() }
            pool.parallelFor(groups) { range in libdalle_bf16_pack_rows(x, rows, k, range.lowerBound, range.count, words) }
            forEachChunk(scratchPerPanel: libdalle_bf16_panel_scratch_bytes(k)) { first, count, scratch in
                let j0 = first * pw
                libdalle_bf16_gemm(words, rows, k, (w + first * panelBytes).assumingMemoryBound(to: UInt16.self), count,
                                bias.map { $0 + j0 }, scratch, y + j0, n, min(count * pw, n - j0))
            }
            return true
        case let .quantized(type) where enabled.contains(.int8):
            let quants = UnsafeMutablePointer<UInt32>.allocate(capacity: libdalle_q8_packed_words(rows, k))
            let scales = UnsafeMutablePointer<Float>.allocate(capacity: libdalle_q8_scale_count(rows, k))
            defer { quants.deallocate(); scales.deallocate() }
            pool.parallelFor(groups) { range in libdalle_q8_pack_rows(x, rows, k, range.lowerBound, range.count, quants, scales) }
            forEachChunk(scratchPerPanel: libdalle_q8_panel_scratch_bytes(k), extraScratch: libdalle_q8_gemm_scratch_bytes()) { first, count, scratch in
                let j0 = first * pw
                libdalle_q8_gemm(type.panelFormat, quants, scales, rows, k, (w + first * panelBytes).assumingMemoryBound(to: UInt8.self), count,
                              bias.map { $0 + j0 }, scratch, y + j0, n, min(count * pw, n - j0))
            }
            return true
        default:
            return false
        }
    }
}

extension QuantizedType {
    /// The DALLE_PANEL_* code of a Linear panel of this type for CDalleKernels.
    var panelFormat: Int32 { self == .q8_0 ? Int32(DALLE_PANEL_Q8_0) : Int32(DALLE_PANEL_Q4_0) }
}
