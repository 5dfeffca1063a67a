import XCTest
@testable import DalleCore

final class TensorTests: XCTestCase {
    func testShapeMismatchThrows() {
        XCTAssertThrowsError(try Tensor(shape: [2, 3], scalars: [1, 2]))
        XCTAssertNil(Tensor.elementCount([Int.max, 2]))
    }
}
