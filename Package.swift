// swift-tools-version: 6.0
import PackageDescription

// Kernels are compiled for a modern x86-64 baseline (AVX2 + FMA); other
// architectures build with the compiler's default target.
#if arch(x86_64)
let cpuFlags = ["-target-cpu", "haswell"]
#else
let cpuFlags: [String] = []
#endif

let optimized: [SwiftSetting] = [.unsafeFlags(cpuFlags + ["-Ounchecked", "-wmo"])]
// The C targets' debug information as DWARF 4: valgrind 3.19 (make check-valgrind) cannot read
// clang's DWARF 5 in a library with several C files ("Possibly corrupted debuginfo file").
let cDebugInfo: [CSetting] = [.unsafeFlags(["-gdwarf-4"])]

let package = Package(
    name: "libdalle",
    products: [
        // libdalle.so: the C ABI, with the Swift runtime linked in statically.
        .library(name: "dalle", type: .dynamic, targets: ["DalleSharedLibrary"]),
        // The command-line tool; `make` installs it as build/bin/dalle.
        .executable(name: "dalle-cli", targets: ["DalleCLI"]),
        .executable(name: "dalle-bench", targets: ["DalleBench"]),
    ],
    targets: [
        // CPU feature detection, compiled for the baseline CPU so it runs before any AVX2 kernel can.
        .target(name: "CDalleCPU", cSettings: cDebugInfo),
        // Kernels in C for instruction sets beyond the baseline, each function compiled for its own
        // target and called only after CPUFeatures has found that instruction set.
        .target(name: "CDalleKernels", cSettings: cDebugInfo),
        .target(name: "DalleCore", dependencies: ["CDalleCPU", "CDalleKernels"], swiftSettings: optimized),
        .target(name: "DalleImageIO", dependencies: ["DalleCore"], swiftSettings: optimized),
        // include/dalle.h as a Swift module, so DalleCAPI implements the header's own types.
        .systemLibrary(name: "CDalle", path: "Sources/CDalle"),
        .systemLibrary(name: "CDlfcn", path: "Sources/CDlfcn"),
        .target(name: "DalleCAPI", dependencies: ["DalleCore", "DalleImageIO", "CDalle", "CDlfcn"], swiftSettings: [.unsafeFlags(cpuFlags)]),
        .target(
            name: "DalleSharedLibrary",
            dependencies: ["DalleCAPI"],
            exclude: ["exports.map"],
            linkerSettings: [.unsafeFlags([
                "-static-stdlib", "-Xlinker", "-z", "-Xlinker", "defs",
                // The ABI major version: bumped only when the ABI breaks (see include/dalle.h).
                "-Xlinker", "-soname", "-Xlinker", "libdalle.so.0",
                "-Xlinker", "--version-script=\(Context.packageDirectory)/Sources/DalleSharedLibrary/exports.map",
            ])]),
        .systemLibrary(name: "CMalloc", path: "Sources/CMalloc"),
        // Self-contained like the library (-static-stdlib), so an installed bin/dalle runs anywhere.
        .executableTarget(
            name: "DalleCLI", dependencies: ["DalleCore", "DalleImageIO", "CMalloc", "CDalle"],
            linkerSettings: [.unsafeFlags(["-static-stdlib"])]),
        .executableTarget(name: "DalleBench", dependencies: ["DalleCore"], swiftSettings: optimized),
        .testTarget(
            name: "DalleCoreTests", dependencies: ["DalleCore", "DalleCAPI", "DalleImageIO"], exclude: ["Golden"]),
    ],
    // Kernels hand raw buffers to worker threads; Swift 5 mode keeps those checks as warnings.
    swiftLanguageModes: [.v5]
)
