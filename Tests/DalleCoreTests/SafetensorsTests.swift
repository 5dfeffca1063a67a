import XCTest
@testable import DalleCore

/// Fixtures come from tools/make_golden_safetensors.py (Python's reference writer);
/// the expected values below repeat that script's formulas and literals.
final class SafetensorsTests: XCTestCase {
    private static let goldenDirectory: String = {
        let testFile = "\(#filePath)"
        let directory = testFile[..<(testFile.lastIndex(of: "/") ?? testFile.startIndex)]
        return "\(directory)/Golden/safetensors"
    }()

    private func golden(_ name: String) -> String { "\(Self.goldenDirectory)/\(name).safetensors" }

    private func readFile(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw DalleError.io("cannot read \(path)") }
        return [UInt8](data)
    }

    private func temporaryPath(_ name: String) -> String {
        "\(NSTemporaryDirectory())/dalle-\(name)-\(getpid()).safetensors"
    }

    /// An 8-byte little-endian length, the header text, then `data`.
    private func file(_ header: String, data: [UInt8] = [], headerLength: UInt64? = nil) -> [UInt8] {
        let json = Array(header.utf8)
        let length = headerLength ?? UInt64(json.count)
        return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) } + json + data
    }

    private func open(_ bytes: [UInt8]) throws -> SafetensorsFile {
        try bytes.withUnsafeBytes { try SafetensorsFile(bytes: $0) }
    }

    private func assertBadFile(
        _ bytes: [UInt8], _ fragment: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try open(bytes), file: file, line: line) { error in
            guard case DalleError.badFile(let message) = error else {
                return XCTFail("expected badFile, got \(error)", file: file, line: line)
            }
            XCTAssertTrue(message.contains(fragment), "'\(message)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    private func bitsEqual(_ a: [Float], _ b: [Float]) -> Bool {
        a.map(\.bitPattern) == b.map(\.bitPattern)
    }

    // MARK: Python fixtures

    private func checkMixedFixture(_ st: SafetensorsFile) throws {
        XCTAssertEqual(
            st.names,
            ["dvae.bf16", "dvae.empty", "dvae.f16", "dvae.f32", "dvae.f64", "dvae.i32", "dvae.i64", "dvae.scalar", "dvae.u8"])
        XCTAssertEqual(st.metadata, [
            "format": "libdalle", "format_version": "1", "components": "dvae", "dvae.n_hid": "256",
            "note": "quote \" backslash \\ tab \t unicode é✓😀",
        ])

        XCTAssertEqual(st.info("dvae.f32"), TensorInfo(dtype: .f32, shape: [2, 3, 4]))
        XCTAssertEqual(try st.tensor("dvae.f32", shape: [2, 3, 4]).scalars, (0..<24).map { (Float($0) - 12) * 0.25 })

        XCTAssertEqual(st.info("dvae.f16"), TensorInfo(dtype: .f16, shape: [12]))
        let f16: [Float] = [0, -0.0, 1, -2, 0x1.554p-2, 65504, 0x1p-14, 0x1p-24, 0x3FFp-24, .infinity, -.infinity]
        let decoded = try st.tensor("dvae.f16").scalars
        XCTAssertTrue(bitsEqual(Array(decoded.prefix(11)), f16), "\(decoded)")
        XCTAssertTrue(decoded[11].isNaN)

        XCTAssertEqual(st.info("dvae.bf16"), TensorInfo(dtype: .bf16, shape: [7, 1]))
        XCTAssertEqual(
            try st.tensor("dvae.bf16").scalars, [1, -2.5, 3.140625, 0x1p-130, 0x1.FEp127, .infinity, -.infinity])

        XCTAssertEqual(st.info("dvae.f64"), TensorInfo(dtype: .f64, shape: [3, 2]))
        XCTAssertEqual(try st.tensor("dvae.f64").scalars, (0..<6).map { Float($0) / 8 })
        XCTAssertEqual(st.info("dvae.i32"), TensorInfo(dtype: .i32, shape: [6]))
        XCTAssertEqual(try st.tensor("dvae.i32").scalars, [-3, -2, -1, 0, 1, 2])
        XCTAssertEqual(try st.tensor("dvae.i64").scalars, [-0x1p40, 0, 0x1p40])
        XCTAssertEqual(st.info("dvae.u8"), TensorInfo(dtype: .u8, shape: [16, 16]))
        XCTAssertEqual(try st.bytes("dvae.u8"), (0..<256).map { UInt8($0) })
        XCTAssertEqual(try st.tensor("dvae.u8").scalars, (0..<256).map { Float($0) })
        XCTAssertEqual(try st.tensor("dvae.scalar"), try Tensor(shape: [], scalars: [7.5]))
        XCTAssertEqual(try st.tensor("dvae.empty"), try Tensor(shape: [0, 3], scalars: []))
        XCTAssertEqual(try st.bytes("dvae.empty"), [])
    }

    func testReadsPythonFixtureMapped() throws {
        try checkMixedFixture(try SafetensorsFile(path: golden("mixed")))
    }

    func testReadsPythonFixtureFromBuffer() throws {
        try checkMixedFixture(try open(try readFile(golden("mixed"))))
    }

    func testWriterMatchesPythonByteForByte() throws {
        var writer = SafetensorsWriter()
        writer.metadata = ["format": "libdalle"]
        // Added in a different order from the file's: the writer orders them itself.
        try writer.add("e.i32", bytes: [7, 0, 0, 0, 0xF9, 0xFF, 0xFF, 0xFF], dtype: .i32, shape: [2])
        try writer.add("d.u8", bytes: [0, 1, 2], dtype: .u8, shape: [3])
        try writer.add("a.f16", try Tensor(shape: [3], scalars: [-1, 0, 1]), as: .f16)
        try writer.add("b.f32", try Tensor(shape: [5], scalars: [0, 0.5, 1, 1.5, 2]))
        try writer.add("c.bf16", try Tensor(shape: [2], scalars: [1, -2]), as: .bf16)
        XCTAssertEqual(writer.serialized(), try readFile(golden("writer_reference")))
    }

    // MARK: Round trips

    func testRoundTripEveryDType() throws {
        let values: [Float] = [0, -0.0, 1, -2.5, 0.1, 65504, 1e-7, 3e38, .infinity, -.infinity]
        var writer = SafetensorsWriter()
        writer.metadata = ["format": "libdalle", "dvae.n_hid": "256", "empty": "", "ü": "✓"]
        let tensor = try Tensor(shape: [2, 5], scalars: values)
        for dtype in [DType.f32, .f16, .bf16] { try writer.add("float.\(dtype.rawValue)", tensor, as: dtype) }
        var raw: [DType: [UInt8]] = [:]
        for dtype in DType.allCases {
            let bytes = (0..<(3 * dtype.byteSize)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ dtype.byteSize) }
            raw[dtype] = bytes
            try writer.add("raw.\(dtype.rawValue)", bytes: bytes, dtype: dtype, shape: [3, 1])
        }
        try writer.add("empty", bytes: [], dtype: .f32, shape: [4, 0])

        let path = temporaryPath("roundtrip")
        defer { unlink(path) }
        try writer.write(to: path)
        XCTAssertEqual(try readFile(path), writer.serialized())
        for st in [try SafetensorsFile(path: path), try open(writer.serialized())] {
            XCTAssertEqual(st.metadata, writer.metadata)
            XCTAssertEqual(st.names.count, 3 + DType.allCases.count + 1)
            XCTAssertEqual(try st.tensor("float.F32", shape: [2, 5]), tensor)
            XCTAssertEqual(
                try st.tensor("float.F16").scalars.map(\.bitPattern),
                values.map { Float(Float16($0)).bitPattern })
            XCTAssertEqual(
                try st.tensor("float.BF16").scalars.map(\.bitPattern),
                values.map { bfloat16ToFloat(floatToBFloat16($0)).bitPattern })
            for dtype in DType.allCases {
                XCTAssertEqual(st.info("raw.\(dtype.rawValue)"), TensorInfo(dtype: dtype, shape: [3, 1]))
                XCTAssertEqual(try st.bytes("raw.\(dtype.rawValue)"), raw[dtype])
            }
            XCTAssertEqual(try st.tensor("empty").shape, [4, 0])
            // Every tensor is aligned to its element size within the data section.
            let headerLength = writer.serialized().prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
            XCTAssertEqual(headerLength % 8, 0)
        }
    }

    func testIntegerDecoding() throws {
        var writer = SafetensorsWriter()
        try writer.add("i8", bytes: [0x80, 0xFF, 0x7F], dtype: .i8, shape: [3])
        try writer.add("i16", bytes: [0x00, 0x80, 0xFF, 0xFF, 0x34, 0x12], dtype: .i16, shape: [3])
        try writer.add("u16", bytes: [0xFF, 0xFF, 0x34, 0x12], dtype: .u16, shape: [2])
        try writer.add("u32", bytes: [0xFF, 0xFF, 0xFF, 0xFF], dtype: .u32, shape: [1])
        try writer.add("u64", bytes: [0, 0, 0, 0, 0, 0, 0, 0x80], dtype: .u64, shape: [1])
        try writer.add("bool", bytes: [0, 1], dtype: .bool, shape: [2])
        let st = try open(writer.serialized())
        XCTAssertEqual(try st.tensor("i8").scalars, [-128, -1, 127])
        XCTAssertEqual(try st.tensor("i16").scalars, [-32768, -1, 0x1234])
        XCTAssertEqual(try st.tensor("u16").scalars, [65535, 0x1234])
        XCTAssertEqual(try st.tensor("u32").scalars, [0x1p32])
        XCTAssertEqual(try st.tensor("u64").scalars, [0x1p63])
        XCTAssertEqual(try st.tensor("bool").scalars, [0, 1])
    }

    // MARK: Float conversions

    func testHalfConversionIsExactForEveryValue() {
        for bits in 0...UInt16.max {
            let expected = Float(Float16(bitPattern: bits))
            let actual = halfToFloat(bits)
            if expected.isNaN {
                XCTAssertTrue(actual.isNaN)
                XCTAssertEqual(floatToHalf(actual) & 0x8000, bits & 0x8000)
                XCTAssertEqual(floatToHalf(actual) & 0x7C00, 0x7C00)
            } else {
                XCTAssertEqual(actual.bitPattern, expected.bitPattern, "half 0x\(String(bits, radix: 16))")
                XCTAssertEqual(floatToHalf(actual), bits, "round trip of 0x\(String(bits, radix: 16))")
            }
        }
    }

    func testFloatToHalfRoundsToNearestEven() {
        // Every float between and around the half values, including all ties, via a stride
        // over float bit patterns that hits each half interval at several points.
        var bits: UInt32 = 0
        while bits < 0x7F80_0000 {
            for sign: UInt32 in [0, 0x8000_0000] {
                let f = Float(bitPattern: bits | sign)
                XCTAssertEqual(floatToHalf(f), Float16(f).bitPattern, "float \(f)")
            }
            bits += 0x7FF  // odd stride: visits every residue of the 13 dropped bits
        }
        for f: Float in [1 + 0x1p-11, 1 + 3 * 0x1p-11, 65520, 65519.99, 0x1p-25, 0x1.8p-25, 0x1p-24 * 1.5] {
            XCTAssertEqual(floatToHalf(f), Float16(f).bitPattern, "float \(f)")
        }
        XCTAssertEqual(floatToHalf(1 + 0x1p-11), 0x3C00)  // tie rounds to even (down)
        XCTAssertEqual(floatToHalf(1 + 3 * 0x1p-11), 0x3C02)  // tie rounds to even (up)
        XCTAssertEqual(floatToHalf(65520), 0x7C00)  // overflow to infinity
        XCTAssertEqual(floatToHalf(.nan) & 0x7E00, 0x7E00)
    }

    func testBFloat16Conversion() {
        for bits in 0...UInt16.max {
            let f = bfloat16ToFloat(bits)
            XCTAssertEqual(f.bitPattern, UInt32(bits) << 16)
            if f.isNaN {
                XCTAssertTrue(bfloat16ToFloat(floatToBFloat16(f)).isNaN)
            } else {
                XCTAssertEqual(floatToBFloat16(f), bits)
            }
        }
        XCTAssertEqual(floatToBFloat16(1 + 0x1p-8), 0x3F80)  // tie to even (down)
        XCTAssertEqual(floatToBFloat16(1 + 3 * 0x1p-8), 0x3F82)  // tie to even (up)
        XCTAssertEqual(floatToBFloat16(1 + 0x1.1p-8), 0x3F81)  // above the tie
        XCTAssertEqual(floatToBFloat16(.greatestFiniteMagnitude), 0x7F80)  // rounds to infinity
        XCTAssertEqual(floatToBFloat16(Float(bitPattern: 0x7F80_0001)) & 0x7FC0, 0x7FC0)  // NaN stays NaN
        XCTAssertEqual(floatToBFloat16(.leastNonzeroMagnitude), 0)
        XCTAssertEqual(floatToBFloat16(Float(bitPattern: 0x0001_8000)), 0x0002)  // subnormal tie to even
    }

    // MARK: Lookups and I/O errors

    func testMissingTensorAndWrongShape() throws {
        let st = try SafetensorsFile(path: golden("mixed"))
        XCTAssertNil(st.info("nope"))
        XCTAssertThrowsError(try st.tensor("nope")) { XCTAssertEqual($0 as? DalleError, .badFile("missing tensor 'nope'")) }
        XCTAssertThrowsError(try st.bytes("nope"))
        XCTAssertThrowsError(try st.tensor("dvae.f32", shape: [3, 2, 4])) {
            XCTAssertEqual($0 as? DalleError, .badFile("tensor 'dvae.f32' has shape [2, 3, 4], expected [3, 2, 4]"))
        }
        let store: WeightStore = st
        XCTAssertEqual(try store.tensor("dvae.i32", shape: [6]).scalars, [-3, -2, -1, 0, 1, 2])
    }

    func testMissingFileIsIOError() {
        XCTAssertThrowsError(try SafetensorsFile(path: "/nonexistent/model.safetensors")) { error in
            guard case DalleError.io(let message) = error else { return XCTFail("expected io, got \(error)") }
            XCTAssertTrue(message.contains("/nonexistent/model.safetensors"), message)
            XCTAssertTrue(message.contains("No such file"), message)
        }
        XCTAssertThrowsError(try SafetensorsFile(path: Self.goldenDirectory)) { error in
            guard case DalleError.io(let message) = error else { return XCTFail("expected io, got \(error)") }
            XCTAssertTrue(message.contains("not a regular file"), message)
        }
    }

    func testEmptyAndShortFilesOnDisk() throws {
        let path = temporaryPath("short")
        defer { unlink(path) }
        for length in [0, 5] {
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(repeating: 1, count: length)))
            XCTAssertThrowsError(try SafetensorsFile(path: path)) {
                XCTAssertEqual(
                    $0 as? DalleError,
                    .badFile("safetensors '\(path)': file is \(length) bytes, shorter than the 8-byte header length"))
            }
        }
    }

    func testWriterErrors() throws {
        var writer = SafetensorsWriter()
        let t = try Tensor(shape: [2], scalars: [1, 2])
        try writer.add("a", t)
        XCTAssertThrowsError(try writer.add("a", t)) {
            XCTAssertEqual($0 as? DalleError, .invalidArgument("tensor 'a' was already added"))
        }
        XCTAssertThrowsError(try writer.add("__metadata__", t))
        XCTAssertThrowsError(try writer.add("b", t, as: .i32)) {
            guard case DalleError.unsupported = $0 else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try writer.add("c", bytes: [1, 2, 3], dtype: .f16, shape: [2]))
        XCTAssertThrowsError(try writer.add("d", bytes: [], dtype: .f32, shape: [Int.max, 2]))
        XCTAssertThrowsError(try writer.write(to: "/nonexistent/dir/out.safetensors")) {
            guard case DalleError.io(let message) = $0 else { return XCTFail("\($0)") }
            XCTAssertTrue(message.contains("/nonexistent/dir/out.safetensors"), message)
        }
    }

    /// A write goes to `path.partial` and is renamed into place: an existing file is replaced whole,
    /// and a write that cannot be moved into place leaves neither a partial file nor a changed target.
    func testWriterReplacesFilesAtomically() throws {
        let path = temporaryPath("atomic")
        defer { unlink(path); rmdir(path) }
        FileManager.default.createFile(atPath: path, contents: Data([1, 2, 3]))
        var writer = SafetensorsWriter()
        try writer.add("x", try Tensor(shape: [2], scalars: [1, 2]))
        try writer.write(to: path)
        XCTAssertEqual(try readFile(path), writer.serialized())
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".partial"))

        unlink(path)
        XCTAssertEqual(mkdir(path, 0o755), 0)
        XCTAssertThrowsError(try writer.write(to: path)) {
            guard case DalleError.io(let message) = $0 else { return XCTFail("\($0)") }
            XCTAssertTrue(message.contains("into place at '\(path)'"), message)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".partial"))
        var isDirectory: ObjCBool = false
        XCTAssertTrue(FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue)
    }

    // MARK: Malformed files

    func testTruncatedFiles() throws {
        let valid = try readFile(golden("mixed"))
        let headerEnd = 8 + Int(valid[0]) + Int(valid[1]) << 8
        let cuts = [0, 1, 7, 8, 9, 100, headerEnd - 1, headerEnd, headerEnd + 1, valid.count - 1]
        let expected = [
            "shorter than the 8-byte header length", "shorter than the 8-byte header length",
            "shorter than the 8-byte header length", "runs past the end of the file", "runs past the end of the file",
            "runs past the end of the file", "runs past the end of the file", "run past the 0 bytes of data",
            "run past the 1 bytes of data", "run past the 489 bytes of data",
        ]
        for (cut, fragment) in zip(cuts, expected) {
            assertBadFile(Array(valid.prefix(cut)), fragment)
        }
        XCTAssertNoThrow(try open(valid))
    }

    func testBadHeaderLength() {
        assertBadFile(file("{}", headerLength: 3), "runs past the end")
        assertBadFile(file("{}", headerLength: 1_000), "header length 1000 runs past the end of the file (2 bytes")
        assertBadFile(file("{}", headerLength: 100_000_001), "larger than the 100000000-byte limit")
        assertBadFile(file("{}", headerLength: UInt64.max), "header length 18446744073709551615 is larger")
        assertBadFile(file("{}", headerLength: 1), "JSON: expected a string key at byte 1")
        assertBadFile(file("{}", headerLength: 0), "JSON: unexpected end of input")
    }

    func testBadJSONHeader() {
        assertBadFile(file("{\"a\": }"), "JSON: unexpected '}', expected a value at byte 6")
        assertBadFile(file("[]"), "header is not a JSON object")
        assertBadFile(file("\"x\""), "header is not a JSON object")
        assertBadFile([2, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0xFF], "JSON: expected a string key")
        var nonUTF8 = file("{\"ab\": 1}")
        nonUTF8[10] = 0xFF
        assertBadFile(nonUTF8, "JSON: string is not valid UTF-8 at byte 1")
    }

    func testBadEntries() {
        let cases: [(String, String)] = [
            (#"{"t": 3}"#, "tensor 't': entry is not an object"),
            (#"{"t": {"shape": [1], "data_offsets": [0, 4]}}"#, "tensor 't': missing \"dtype\""),
            (#"{"t": {"dtype": "F32", "data_offsets": [0, 4]}}"#, "tensor 't': missing \"shape\""),
            (#"{"t": {"dtype": "F32", "shape": [1]}}"#, "tensor 't': missing \"data_offsets\""),
            (#"{"t": {"dtype": 1, "shape": [1], "data_offsets": [0, 4]}}"#, "\"dtype\" is not a string"),
            (#"{"t": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}}"#, "\"shape\" is not an array"),
            (#"{"t": {"dtype": "F32", "shape": [1], "data_offsets": "0"}}"#, "\"data_offsets\" is not an array"),
            (#"{"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#,
             "\"shape\" holds -1, not a non-negative integer"),
            (#"{"t": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}"#,
             "\"shape\" holds 1.5, not a non-negative integer"),
            (#"{"t": {"dtype": "F32", "shape": [1e300], "data_offsets": [0, 4]}}"#,
             "\"shape\" holds 1e+300, not a non-negative integer"),
            (#"{"t": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}}"#, "\"shape\" holds \"1\""),
            (#"{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}"#, "\"data_offsets\" has 1 values, expected 2"),
            (#"{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}"#, "has 3 values"),
            (#"{"t": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}"#, "\"data_offsets\" holds -4"),
            (#"{"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}"#, "data_offsets [4, 0] begin after end"),
            (#"{"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#,
             "data_offsets [4, 8] run past the 4 bytes of data"),
            (#"{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}"#,
             "shape [2] of F32 needs 8 bytes, data_offsets [0, 4] hold 4"),
            (#"{"t": {"dtype": "F16", "shape": [1], "data_offsets": [0, 4]}}"#, "needs 2 bytes"),
            (#"{"t": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}}"#,
             "shape [4294967296, 4294967296] element count overflows"),
            (#"{"t": {"dtype": "F64", "shape": [1125899906842624, 1024], "data_offsets": [0, 4]}}"#,
             "needs more than Int.max bytes"),
            (#"{"__metadata__": {"a": 1}}"#, "__metadata__ value for 'a' is not a string"),
            (#"{"__metadata__": ["a"]}"#, "__metadata__ is not an object"),
            (#"{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "t": {}}"#, "duplicate key \"t\""),
        ]
        for (header, fragment) in cases {
            assertBadFile(file(header, data: [0, 0, 0, 0]), fragment)
        }
    }

    func testUnknownDTypeIsUnsupported() {
        let bytes = file(#"{"t": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}"#, data: [0, 0, 0, 0])
        XCTAssertThrowsError(try open(bytes)) {
            XCTAssertEqual(
                $0 as? DalleError, .unsupported("safetensors buffer: tensor 't': dtype \"F8_E4M3\" is not supported"))
        }
    }

    func testOverlappingTensors() {
        let header = #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "#
            + #""b": {"dtype": "U8", "shape": [2], "data_offsets": [6, 8]}}"#
        assertBadFile(file(header, data: [UInt8](repeating: 0, count: 8)), "tensors 'a' (bytes 0..<8) and 'b' (bytes 6..<8) overlap")
        let same = #"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "#
            + #""b": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}}"#
        assertBadFile(file(same, data: [0, 0, 0, 0]), "overlap")
    }

    /// Random byte corruptions of a valid file either load (and then every tensor reads)
    /// or throw a `DalleError`; none may crash.
    func testCorruptedFilesNeverCrash() throws {
        let valid = try readFile(golden("mixed"))
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {  // SplitMix64
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int(truncatingIfNeeded: (z ^ (z >> 31)) >> 1)
        }
        let headerEnd = 8 + Int(valid[0]) + Int(valid[1]) << 8
        let printable = Array("{}[]\":,0123456789-.eE \\u".utf8)
        var loaded = 0
        for _ in 0..<3000 {
            var bytes = valid
            for _ in 0..<(1 + next() % 3) {
                // Mostly hit the header, where structure lives; sometimes the length.
                let position = next() % 4 == 0 ? next() % 8 : 8 + next() % (headerEnd - 8)
                bytes[position] = next() % 2 == 0 ? printable[next() % printable.count] : UInt8(next() % 256)
            }
            do {
                let st = try open(bytes)
                for name in st.names { _ = try st.tensor(name) }
                loaded += 1
            } catch is DalleError {
            } catch {
                XCTFail("unexpected error \(error)")
            }
        }
        XCTAssertGreaterThan(loaded, 0)
        XCTAssertLessThan(loaded, 3000)
    }

    func testAcceptsEmptyTensorsGapsAndNullMetadata() throws {
        let header = #"{"__metadata__": null, "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, "#
            + #""e": {"dtype": "F32", "shape": [0], "data_offsets": [1, 1]}, "#
            + #""b": {"dtype": "U8", "shape": [1], "extra": true, "data_offsets": [3, 4]}}"#
        let st = try open(file(header, data: [1, 2, 3, 4]))
        XCTAssertEqual(st.metadata, [:])
        XCTAssertEqual(st.names, ["a", "b", "e"])
        XCTAssertEqual(try st.bytes("a"), [1, 2])
        XCTAssertEqual(try st.bytes("b"), [4])
        XCTAssertEqual(try st.tensor("e").shape, [0])
        XCTAssertEqual(try open(file("{}")).names, [])
    }
}
