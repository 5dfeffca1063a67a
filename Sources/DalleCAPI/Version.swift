import CDalle
import DalleCore

let libraryVersion = "\(DALLE_VERSION_MAJOR).\(DALLE_VERSION_MINOR).\(DALLE_VERSION_PATCH)"

/// "MAJOR.MINOR.PATCH" of the library, a static NUL-terminated string.
@_cdecl("dalle_version")
public func dalle_version() -> UnsafePointer<CChar> {
    versionString
}

private let versionString = staticCString(libraryVersion)

/// One static line: version, the kernels' SIMD baseline, the SIMD level the CPU allows and
/// its features, cores.
@_cdecl("dalle_system_info")
public func dalle_system_info() -> UnsafePointer<CChar> {
    systemInfo
}

private let systemInfo: UnsafePointer<CChar> = {
    #if arch(x86_64)
    let baseline = "x86_64 (kernels built for AVX2+FMA+F16C)"
    let cpu = CPUFeatures.detected
    let features = "simd: \(cpu.simdLevel) | cpu: \(cpu.isEmpty ? "none of avx2 fma f16c" : cpu.description)"
    #elseif arch(arm64)
    let baseline = "arm64 (NEON)", features = ""
    #else
    let baseline = "generic", features = ""
    #endif
    var info = "libdalle \(libraryVersion) | \(baseline)"
    if !features.isEmpty { info += " | \(features)" }
    info += " | cores: \(ThreadPool.onlineCores)"
    return staticCString(info)
}()
