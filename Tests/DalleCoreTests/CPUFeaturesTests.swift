import CDalle
@testable import DalleCAPI
import DalleCore
import XCTest

/// The run-time CPU check: a CPU without the kernels' AVX2/FMA/F16C gets an error naming
/// what is missing (feature sets injected), never an illegal instruction.
final class CPUFeaturesTests: XCTestCase {
    func testMissingFeaturesAreNamed() throws {
        #if arch(x86_64)
        XCTAssertThrowsError(try CPUFeatures.checkSupported([])) { error in
            XCTAssertEqual(error as? DalleError, .unsupported(
                "this CPU lacks avx2 fma f16c, which libdalle's kernels are built for (x86-64 with AVX2, FMA and F16C)"))
        }
        XCTAssertThrowsError(try CPUFeatures.checkSupported([.avx2, .fma, .avx512f])) { error in
            XCTAssertTrue("\(error)".contains("this CPU lacks f16c,"), "\(error)")
        }
        XCTAssertNoThrow(try CPUFeatures.checkSupported([.avx2, .fma, .f16c]))
        #endif
        // This machine runs the tests, so it has what the kernels need.
        XCTAssertNoThrow(try CPUFeatures.checkSupported())
    }

    func testSIMDLevel() {
        #if arch(x86_64)
        XCTAssertEqual(CPUFeatures([.avx2, .fma]).simdLevel, "below avx2 (unsupported)")
        XCTAssertEqual(CPUFeatures([.avx2, .fma, .f16c, .avx512f]).simdLevel, "avx2")
        XCTAssertEqual(CPUFeatures([.avx2, .fma, .f16c, .avx512f, .avx512bw, .avx512vl]).simdLevel, "avx512")
        XCTAssertEqual(CPUFeatures([.avx2, .fma, .f16c, .avx512f, .avx512bw, .avx512vl, .avx512bf16, .avx512vnni]).simdLevel,
                       "avx512+bf16+vnni")
        XCTAssertTrue(String(cString: dalle_system_info()).contains("simd: \(CPUFeatures.detected.simdLevel) | cpu: "))
        #endif
    }

    /// Every status-returning C function runs its body through `boundary`: on a CPU without
    /// the features the body never runs and the call returns DALLE_UNSUPPORTED with the message.
    func testBoundaryRefusesAnUnsupportedCPU() {
        #if arch(x86_64)
        var ran = false
        let status = boundary("dalle_model_load_file", cpu: [.avx2, .fma]) { ran = true }
        XCTAssertFalse(ran)
        XCTAssertEqual(status, dalle_status(DALLE_UNSUPPORTED))
        XCTAssertTrue(String(cString: dalle_last_error()).hasPrefix("dalle_model_load_file: unsupported: this CPU lacks f16c"),
                      String(cString: dalle_last_error()))
        XCTAssertEqual(boundary("dalle_model_load_file", cpu: [.avx2, .fma, .f16c]) { ran = true }, dalle_status(DALLE_OK))
        XCTAssertTrue(ran)
        #endif
    }
}
