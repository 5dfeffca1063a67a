import XCTest
import DalleCore
@testable import DalleImageIO

/// The CLI's token file format: one grid row per line, ids separated by spaces.
final class TokenTextTests: XCTestCase {
    func testFormatThenParseRoundTrips() throws {
        let grid = try TokenGrid(rows: 3, columns: 4, tokens: [0, 1, 8191, 42, 7, 7, 7, 7, 100, 200, 300, 65535])
        let text = TokenText.format(grid)
        XCTAssertEqual(text, "0 1 8191 42\n7 7 7 7\n100 200 300 65535\n")
        XCTAssertEqual(try TokenText.parse(text), grid)
    }

    func testParseAcceptsTabsCRLFBlankLinesAndComments() throws {
        let text = "# a 2x3 grid\r\n1\t2  3\r\n\n  4 5 6 # last row\n\n"
        XCTAssertEqual(try TokenText.parse(text), try TokenGrid(rows: 2, columns: 3, tokens: [1, 2, 3, 4, 5, 6]))
    }

    func testParseRejectsMalformedText() {
        assertInvalid("", contains: "no token ids")
        assertInvalid("# only a comment\n", contains: "no token ids")
        assertInvalid("1 2 3\n4 5\n", contains: "line 2 has 2 ids")
        assertInvalid("1 2\n3 x\n", contains: "line 2: 'x'")
        assertInvalid("1 -2\n", contains: "'-2'")
        assertInvalid("1 99999999999\n", contains: "'99999999999'")
        assertInvalid("1.5\n", contains: "'1.5'")
    }

    func testFileRoundTrip() throws {
        let grid = try TokenGrid(rows: 2, columns: 2, tokens: [5, 6, 7, 8])
        let path = "/tmp/dalle-tokens-test-\(getpid()).txt"
        defer { unlink(path) }
        try TokenText.write(grid, path: path)
        XCTAssertEqual(try TokenText.read(path: path), grid)
        XCTAssertThrowsError(try TokenText.read(path: "/nonexistent/tokens.txt"))
    }

    func testGridRejectsWrongCounts() {
        XCTAssertThrowsError(try TokenGrid(rows: 2, columns: 2, tokens: [1, 2, 3]))
        XCTAssertThrowsError(try TokenGrid(rows: 0, columns: 2, tokens: []))
        XCTAssertThrowsError(try TokenGrid(rows: Int.max, columns: 2, tokens: []))
    }

    private func assertInvalid(_ text: String, contains fragment: String, line: UInt = #line) {
        XCTAssertThrowsError(try TokenText.parse(text), line: line) { error in
            guard case .invalidArgument(let message) = error as? DalleError else {
                return XCTFail("expected invalidArgument, got \(error)", line: line)
            }
            XCTAssertTrue(message.contains(fragment), "'\(message)' does not mention '\(fragment)'", line: line)
        }
    }
}
