import CDalleKernels

/// The dot-product paths of `Linear`'s packed products (more than `Linear.streamingRows` rows),
/// chosen at run time from the CPU's features: bf16 weights with AVX-512 BF16 (vdpbf16ps),
/// q8_0 weights with AVX-512 VNNI (vpdpbusd). Without them, and for other formats, `Linear`
/// widens the weights to f32 as the AVX2 GEMM packs them. The numeric contract is `Linear`'s.
public struct DotProductKernels: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// bf16 weights × activations rounded to bf16, f32 sums.
    public static let bf16 = DotProductKernels(rawValue: 1)
    /// q8_0 weights × activations quantized to q8_0, int32 block dots, f32 sums.
    public static let int8 = DotProductKernels(rawValue: 2)

    /// The paths this CPU can run.
    public static let supported: DotProductKernels = {
        let avx512: CPUFeatures = [.avx512f, .avx512bw, .avx512vl]
        var kernels: DotProductKernels = []
        if CPUFeatures.detected.isSuperset(of: avx512.union(.avx512bf16)) { kernels.insert(.bf16) }
        if CPUFeatures.detected.isSuperset(of: avx512.union(.avx512vnni)) { kernels.insert(.int8) }
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
    /// y = x · Wᵀ + b through a dot-product kernel when one is enabled for this weight format
    /// (and k > 0); false, with y untouched, otherwise. Threads take 32-output panels one at a
    /// time; every output is summed in an order fixed by k alone.
    func applyDotProduct(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>,
                         bias: UnsafePointer<Float>?, pool: ThreadPool) -> Bool {
        let k = inputs, n = outputs, pw = Linear.panelWidth, panelBytes = Linear.panelBytes(format, inputs: k)
        let w = UnsafeRawPointer(panels.bytes), enabled = DotProductKernels.enabled
        let groups = (rows + Int(DALLE_DOT_GROUP_ROWS) - 1) / Int(DALLE_DOT_GROUP_ROWS)
        guard k > 0, rows > 0 else { return false }
        switch format {
        case .bf16 where enabled.contains(.bf16):
            let words = UnsafeMutablePointer<UInt32>.allocate(capacity: dalle_bf16_packed_words(rows, k))
            defer { words.deallocate() }
            pool.parallelFor(groups) { range in dalle_bf16_pack_rows(x, rows, k, range.lowerBound, range.count, words) }
            pool.parallelForEach(panelCount) { panel in
                withThreadWorkspace(bytes: dalle_bf16_panel_scratch_bytes(k)) { scratch in
                    let j0 = panel * pw
                    dalle_bf16_panel_gemm(words, rows, k, (w + panel * panelBytes).assumingMemoryBound(to: UInt16.self),
                                          bias.map { $0 + j0 }, scratch, y + j0, n, min(pw, n - j0))
                }
            }
            return true
        case .quantized(.q8_0) where enabled.contains(.int8):
            let quants = UnsafeMutablePointer<UInt32>.allocate(capacity: dalle_q8_packed_words(rows, k))
            let scales = UnsafeMutablePointer<Float>.allocate(capacity: dalle_q8_scale_count(rows, k))
            defer { quants.deallocate(); scales.deallocate() }
            pool.parallelFor(groups) { range in dalle_q8_pack_rows(x, rows, k, range.lowerBound, range.count, quants, scales) }
            pool.parallelForEach(panelCount) { panel in
                withThreadWorkspace(bytes: dalle_q8_panel_scratch_bytes(k)) { scratch in
                    let j0 = panel * pw
                    dalle_q8_panel_gemm(quants, scales, rows, k, (w + panel * panelBytes).assumingMemoryBound(to: UInt8.self),
                                        bias.map { $0 + j0 }, scratch, y + j0, n, min(pw, n - j0))
                }
            }
            return true
        default:
            return false
        }
    }
}
