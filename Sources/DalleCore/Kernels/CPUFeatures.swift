import CDalleCPU
#if canImport(Glibc)
import Glibc
#endif

/// The SIMD features of a CPU that libdalle's kernels use, detected once with CPUID
/// (`CDalleCPU`, compiled for the baseline CPU so the check itself cannot fault).
public struct CPUFeatures: OptionSet, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let avx2 = CPUFeatures(rawValue: UInt32(DALLE_CPU_AVX2))
    public static let fma = CPUFeatures(rawValue: UInt32(DALLE_CPU_FMA))
    public static let f16c = CPUFeatures(rawValue: UInt32(DALLE_CPU_F16C))
    public static let avx512f = CPUFeatures(rawValue: UInt32(DALLE_CPU_AVX512F))
    public static let avx512bw = CPUFeatures(rawValue: UInt32(DALLE_CPU_AVX512BW))
    public static let avx512vl = CPUFeatures(rawValue: UInt32(DALLE_CPU_AVX512VL))
    public static let avx512bf16 = CPUFeatures(rawValue: UInt32(DALLE_CPU_AVX512_BF16))
    public static let avx512vnni = CPUFeatures(rawValue: UInt32(DALLE_CPU_AVX512_VNNI))

    /// Every feature with its name as /proc/cpuinfo spells it, in order.
    static let named: [(CPUFeatures, String)] = [
        (.avx2, "avx2"), (.fma, "fma"), (.f16c, "f16c"), (.avx512f, "avx512f"), (.avx512bw, "avx512bw"),
        (.avx512vl, "avx512vl"), (.avx512bf16, "avx512_bf16"), (.avx512vnni, "avx512_vnni"),
    ]

    /// The features of the CPU this process runs on.
    public static let detected = CPUFeatures(rawValue: libdalle_cpu_features())

    /// The features the kernels choose from: `detected`, capped by `DALLE_SIMD` in the environment
    /// (to compare paths): `avx2` leaves out every AVX-512 feature, `avx512` the dot-product ones
    /// (BF16, VNNI).
    static let usable: CPUFeatures = {
        switch getenv("DALLE_SIMD").map({ String(cString: $0) }) {
        case "avx2": return detected.subtracting([.avx512f, .avx512bw, .avx512vl, .avx512bf16, .avx512vnni])
        case "avx512": return detected.subtracting([.avx512bf16, .avx512vnni])
        default: return detected
        }
    }()

    /// What the kernels are compiled for (Package.swift's `-target-cpu haswell` on x86-64);
    /// running them on a CPU without these dies of an illegal instruction.
    public static let required: CPUFeatures = {
        #if arch(x86_64)
        return [.avx2, .fma, .f16c]
        #else
        return []
        #endif
    }()

    /// The names of the features in this set, space-separated ("avx2 fma f16c").
    public var description: String {
        CPUFeatures.named.filter { contains($0.0) }.map(\.1).joined(separator: " ")
    }

    /// The widest SIMD level these features allow the kernels: "avx512" (with "+bf16" /
    /// "+vnni" when present), "avx2", or "below avx2" on x86-64; "native" elsewhere.
    public var simdLevel: String {
        #if arch(x86_64)
        guard isSuperset(of: CPUFeatures.required) else { return "below avx2 (unsupported)" }
        guard isSuperset(of: [.avx512f, .avx512bw, .avx512vl]) else { return "avx2" }
        return "avx512" + (contains(.avx512bf16) ? "+bf16" : "") + (contains(.avx512vnni) ? "+vnni" : "")
        #else
        return "native"
        #endif
    }

    /// Throws `DalleError.unsupported`, naming what is missing, unless `available` has every
    /// feature the kernels were compiled for. Called before any kernel runs.
    public static func checkSupported(_ available: CPUFeatures = detected) throws {
        let missing = required.subtracting(available)
        guard missing.isEmpty else {
            throw DalleError.unsupported(
                "this CPU lacks \(missing), which libdalle's kernels are built for (x86-64 with AVX2, FMA and F16C)")
        }
    }
}
