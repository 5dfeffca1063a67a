import XCTest
@testable import DalleCore

/// The check every operation makes before it allocates (tests/hostile/memory_limits.py runs the
/// C API under address-space limits; these check the mechanism itself).
final class WorkingMemoryTests: XCTestCase {
    func testARefusalIsOutOfMemoryNamingTheWork() {
        XCTAssertThrowsError(try WorkingMemory.require(Int.max, for: "planting a forest")) { error in
            guard case let DalleError.outOfMemory(message)? = error as? DalleError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.hasPrefix("planting a forest needs "), message)
            XCTAssertTrue(message.hasSuffix("which the system refused"), message)
        }
        XCTAssertNoThrow(try WorkingMemory.require(1 << 20, threads: 2, for: "a little"))
    }

    func testSumsAndProductsSaturateInsteadOfOverflowing() throws {
        XCTAssertEqual(WorkingMemory.product(1 << 40, 1 << 40), Int.max)
        XCTAssertEqual(WorkingMemory.sum(Int.max, 1), Int.max)
        XCTAssertEqual(WorkingMemory.product(3, 5, 7), 105)
        XCTAssertEqual(WorkingMemory.sum(3, 5, 7), 15)
        // An estimate for an absurd batch saturates, so the check refuses it.
        let tiny = DVAETests.tiny, dvae = try DVAE(config: tiny, weights: DVAE.randomWeights(config: tiny, seed: 1))
        XCTAssertGreaterThan(dvae.workingBytes(images: 1), 16 * 16 * 8 * 4)
        XCTAssertEqual(dvae.workingBytes(images: Int.max / 2), Int.max)
    }
}
