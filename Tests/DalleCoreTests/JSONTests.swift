import XCTest
@testable import DalleCore

final class JSONTests: XCTestCase {
    private func assertRejects(_ text: String, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        assertRejects(Array(text.utf8), fragment, file: file, line: line)
    }

    private func assertRejects(_ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try JSONValue.parse(bytes), file: file, line: line) { error in
            guard case DalleError.badFile(let message) = error else {
                return XCTFail("expected badFile, got \(error)", file: file, line: line)
            }
            XCTAssertTrue(message.contains(fragment), "'\(message)' lacks '\(fragment)'", file: file, line: line)
            XCTAssertTrue(message.contains("at byte"), "'\(message)' gives no position", file: file, line: line)
        }
    }

    func testParsesEveryKindAndKeepsKeyOrder() throws {
        let value = try JSONValue.parse(#" { "z": [1, -2.5, true, false, null], "a": {"s": "x"}, "m": {} , "e": [] } "#)
        let expected: JSONValue = .object([
            ("z", .array([.number(1), .number(-2.5), .bool(true), .bool(false), .null])),
            ("a", .object([("s", .string("x"))])),
            ("m", .object([])),
            ("e", .array([])),
        ])
        XCTAssertEqual(value, expected)
        XCTAssertEqual(value.objectValue?.map(\.key), ["z", "a", "m", "e"])
        XCTAssertEqual(value["a"]?["s"]?.stringValue, "x")
        XCTAssertNil(value["missing"])
        XCTAssertNotEqual(value, .object([("a", .null)]))
    }

    func testNumbers() throws {
        let cases: [(String, Double)] = [
            ("0", 0), ("-0", 0), ("12", 12), ("-12", -12), ("1.5", 1.5), ("1.5e3", 1500), ("1E-2", 0.01),
            ("2e+2", 200), ("0.1", 0.1), ("9007199254740993", 9007199254740992), ("1e300", 1e300),
            ("4.9e-324", .leastNonzeroMagnitude),
        ]
        for (text, value) in cases {
            XCTAssertEqual(try JSONValue.parse(text), .number(value), text)
        }
        for bad in ["01", "1.", ".5", "+1", "-", "1e", "1e+", "0x1", "1.e3", "--1", "Infinity", "NaN"] {
            XCTAssertThrowsError(try JSONValue.parse(bad), bad)
        }
        assertRejects("1e400", "out of range")
        assertRejects("[-1e400]", "out of range")
    }

    func testExactInteger() throws {
        XCTAssertEqual(JSONValue.number(3).exactInteger, 3)
        XCTAssertEqual(JSONValue.number(-3).exactInteger, -3)
        XCTAssertEqual(try JSONValue.parse("1e3").exactInteger, 1000)
        XCTAssertEqual(JSONValue.number(0x1p53).exactInteger, 1 << 53)
        XCTAssertNil(JSONValue.number(1.5).exactInteger)
        XCTAssertNil(JSONValue.number(1e300).exactInteger)
        XCTAssertNil(JSONValue.number(0x1p54).exactInteger)
        XCTAssertNil(JSONValue.string("3").exactInteger)
    }

    func testStringEscapesAndUnicode() throws {
        let text = #""q\" b\\ s\/ \b\f\n\r\t \u00e9\u2713 \ud83d\ude00 raw é✓😀""#
        XCTAssertEqual(try JSONValue.parse(text), .string("q\" b\\ s/ \u{08}\u{0C}\n\r\t é✓ 😀 raw é✓😀"))
        XCTAssertEqual(try JSONValue.parse(#""\u0000""#), .string("\u{0}"))
        XCTAssertEqual(try JSONValue.parse(#""\uABCD""#), .string("\u{ABCD}"))
    }

    func testRejectsBadStrings() {
        assertRejects(#""\ud83d""#, "unpaired high surrogate")
        assertRejects(#""\ud83dx""#, "unpaired high surrogate")
        assertRejects(#""\ud83d\u0041""#, "not a low surrogate")
        assertRejects(#""\ude00""#, "unpaired low surrogate")
        assertRejects(#""\x""#, "invalid escape")
        assertRejects(#""\u12g4""#, "invalid hex digit")
        assertRejects(#""\u12"#, "unterminated")
        assertRejects("\"tab\there\"", "control character")
        assertRejects("\"abc", "unterminated string")
        assertRejects([0x22, 0xC3, 0x28, 0x22], "not valid UTF-8")  // bad continuation byte
        assertRejects([0x22, 0xED, 0xA0, 0x80, 0x22], "not valid UTF-8")  // encoded surrogate
        assertRejects([0x22, 0xC0, 0xAF, 0x22], "not valid UTF-8")  // overlong '/'
        assertRejects([0xEF, 0xBB, 0xBF, 0x7B, 0x7D], "unexpected")  // byte-order mark
    }

    func testRejectsMalformedStructure() {
        assertRejects("", "unexpected end of input")
        assertRejects("   ", "unexpected end of input")
        assertRejects("{", "expected a string key")
        assertRejects("{\"a\" 1}", "expected ':'")
        assertRejects("{\"a\":1,}", "expected a string key")
        assertRejects("{\"a\":1 \"b\":2}", "expected ',' or '}'")
        assertRejects("{a:1}", "expected a string key")
        assertRejects("[1,]", "expected a value")
        assertRejects("[1 2]", "expected ',' or ']'")
        assertRejects("[", "unexpected end of input")
        assertRejects("tru", "expected 'true'")
        assertRejects("nul", "expected 'null'")
        assertRejects("{} {}", "after the JSON value")
        assertRejects("{}x", "after the JSON value")
        assertRejects("{\"k\":1,\"k\":2}", "duplicate key \"k\"")
    }

    func testErrorPositionIsTheOffendingByte() {
        XCTAssertThrowsError(try JSONValue.parse("[1, 2, x]")) { error in
            XCTAssertEqual(error as? DalleError, .badFile("JSON: unexpected 'x', expected a value at byte 7"))
        }
    }

    func testDepthLimit() throws {
        let limit = JSONValue.maxDepth
        let deepest = String(repeating: "[", count: limit) + String(repeating: "]", count: limit)
        XCTAssertNoThrow(try JSONValue.parse(deepest))
        let tooDeep = String(repeating: "[", count: limit + 1) + String(repeating: "]", count: limit + 1)
        assertRejects(tooDeep, "nesting deeper than \(limit)")
        // Far deeper input must fail cleanly, not exhaust the stack.
        assertRejects(String(repeating: "{\"a\":", count: 100_000), "nesting deeper")
    }

    func testSerializeRoundTrips() throws {
        let value: JSONValue = .object([
            ("name", .string("q\" \\ \n\t\u{1} é😀")),
            ("shape", .array([.number(2), .number(0), .number(9007199254740992)])),
            ("x", .number(0.1)), ("y", .number(-1.5e300)), ("flags", .array([.bool(true), .null])),
        ])
        let text = value.serialized()
        XCTAssertEqual(
            text,
            #"{"name":"q\" \\ \n\t\u0001 é😀","shape":[2,0,9007199254740992],"x":0.1,"y":-1.5e+300,"flags":[true,null]}"#)
        XCTAssertEqual(try JSONValue.parse(text), value)
        XCTAssertEqual(JSONValue.array([.number(.infinity), .number(.nan)]).serialized(), "[null,null]")
    }
}
