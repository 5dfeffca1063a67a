import CDalle
import DalleCore
#if canImport(Glibc)
import Glibc
#endif

let libraryVersion = "\(DALLE_VERSION_MAJOR).\(DALLE_VERSION_MINOR).\(DALLE_VERSION_PATCH)"

/// "MAJOR.MINOR.PATCH" of the library, a static NUL-terminated string.
@_cdecl("dalle_version")
public func dalle_version() -> UnsafePointer<CChar> {
    versionString
}

private let versionString = staticCString(libraryVersion)

/// One static line: version, the kernels' SIMD baseline, the CPU's SIMD features, cores.
@_cdecl("dalle_system_info")
public func dalle_system_info() -> UnsafePointer<CChar> {
    systemInfo
}

private let systemInfo: UnsafePointer<CChar> = {
    #if arch(x86_64)
    let baseline = "x86_64 (kernels built for AVX2+FMA)"
    let features = ["avx2", "fma", "avx512f"].map { "\($0)=\(cpuFlags.contains($0) ? "yes" : "no")" }.joined(separator: " ")
    #elseif arch(arm64)
    let baseline = "arm64 (NEON)", features = ""
    #else
    let baseline = "generic", features = ""
    #endif
    var info = "libdalle \(libraryVersion) | \(baseline)"
    if !features.isEmpty { info += " | cpu: \(features)" }
    info += " | cores: \(ThreadPool.onlineCores)"
    return staticCString(info)
}()

/// The flags of the first CPU in /proc/cpuinfo (empty where it cannot be read).
private let cpuFlags: Set<String> = {
    guard let file = fopen("/proc/cpuinfo", "r") else { return [] }
    defer { fclose(file) }
    var line: UnsafeMutablePointer<CChar>? = nil
    var capacity = 0
    defer { free(line) }
    while getline(&line, &capacity, file) > 0, let line {
        let text = String(cString: line)
        if text.hasPrefix("flags") {
            return Set(text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == ":" }).map(String.init))
        }
    }
    return []
}()
