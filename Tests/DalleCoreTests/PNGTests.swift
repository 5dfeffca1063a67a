import XCTest
@testable import DalleCore
@testable import DalleImageIO

/// PNG decoding against fixtures made by tools/make_png_fixtures.py, encode/decode round
/// trips, DEFLATE round trips and every kind of malformed input.
final class PNGTests: XCTestCase {
    static let fixtureDirectory: String = {
        let file = "\(#filePath)"
        let dir = file[..<(file.lastIndex(of: "/") ?? file.startIndex)]
        return dir + "/Golden/png"
    }()

    // MARK: - Decoding fixtures

    func testDecodesEveryFixtureKind() throws {
        let manifest = String(decoding: try FileIO.read(path: Self.fixtureDirectory + "/manifest.txt"), as: UTF8.self)
        let entries = manifest.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        XCTAssertGreaterThanOrEqual(entries.count, 37)
        for entry in entries {
            let name = entry[0]
            let image = try PNG.read(path: "\(Self.fixtureDirectory)/\(name).png")
            let expected = try FileIO.read(path: "\(Self.fixtureDirectory)/\(name).rgb")
            XCTAssertEqual(image.width, Int(entry[1]), name)
            XCTAssertEqual(image.height, Int(entry[2]), name)
            XCTAssertEqual(image.pixels, expected, name)
        }
    }

    // MARK: - Round trips

    func testEncodeDecodeRoundTripOnOddSizes() throws {
        var rng = SplitMix64(seed: 7)
        for (w, h) in [(1, 1), (1, 9), (9, 1), (3, 7), (17, 5), (64, 33), (101, 3)] {
            for smooth in [false, true] {
                let pixels = (0..<(w * h * 3)).map { i -> UInt8 in
                    smooth ? UInt8(truncatingIfNeeded: (i / 3 % w) * 5 + (i / (3 * w)) * 3 + (i % 3) * 60) : rng.byte()
                }
                let image = try RGBImage(width: w, height: h, pixels: pixels)
                let encoded = try PNG.encode(image)
                XCTAssertEqual(try PNG.decode(encoded), image, "\(w)x\(h) smooth=\(smooth)")
                try export(image, encoded, name: "roundtrip_\(w)x\(h)_\(smooth ? "smooth" : "noise")")
            }
        }
    }

    func testEncodedSmoothImageIsSmall() throws {
        let w = 256, h = 256
        var pixels = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h { for x in 0..<w { for c in 0..<3 { pixels[(y * w + x) * 3 + c] = UInt8((x + y * c) & 0xFF) } } }
        let image = try RGBImage(width: w, height: h, pixels: pixels)
        let encoded = try PNG.encode(image)
        XCTAssertLessThan(encoded.count, pixels.count / 20, "gradient should compress at least 20x")
        XCTAssertEqual(try PNG.decode(encoded), image)
        try export(image, encoded, name: "gradient_256")
    }

    func testWriteThenReadFile() throws {
        var rng = SplitMix64(seed: 3)
        let image = try RGBImage(width: 5, height: 4, pixels: (0..<60).map { _ in rng.byte() })
        let path = "/tmp/dalle-png-test-\(getpid()).png"
        defer { unlink(path) }
        try PNG.write(image, path: path)
        XCTAssertEqual(try PNG.read(path: path), image)
    }

    func testDeflateInflateRoundTrip() throws {
        var rng = SplitMix64(seed: 11)
        let text = Array("the quick brown fox jumps over the lazy dog; ".utf8)
        var inputs: [[UInt8]] = [
            [],
            [42],
            (0..<100_000).map { _ in rng.byte() },                         // incompressible: stored blocks
            [UInt8](repeating: 7, count: 300_000),                         // one long run
            (0..<200_000).map { text[$0 % text.count] },                   // repetitive text
            (0..<70_000).map { i in UInt8(truncatingIfNeeded: i / 300) },  // slow ramp
        ]
        inputs.append((0..<150_000).map { i in i % 1000 < 500 ? rng.byte() : text[i % text.count] })  // mixed blocks
        for data in inputs {
            let compressed = Deflate.zlibCompress(data)
            XCTAssertEqual(try Inflate.zlibDecompress(compressed, maxOutput: data.count), data, "length \(data.count)")
            if data.count > 1000 && data.first == 7 { XCTAssertLessThan(compressed.count, 1000) }
        }
        XCTAssertThrowsError(try Inflate.zlibDecompress(Deflate.zlibCompress(inputs[4]), maxOutput: 1000))
    }

    func testHuffmanLengthsAreLimitedAndComplete() {
        // Fibonacci frequencies force a very deep unconstrained tree.
        var freq = [1, 1]
        while freq.count < 30 { freq.append(freq[freq.count - 1] + freq[freq.count - 2]) }
        let lengths = Deflate.huffmanLengths(freq, maxLength: 15)
        XCTAssertLessThanOrEqual(lengths.max() ?? 0, 15)
        XCTAssertEqual(lengths.reduce(0) { $0 + (1 << (15 - Int($1))) }, 1 << 15, "Kraft sum must be exactly 1")
        XCTAssertNoThrow(try Huffman(lengths: lengths))
    }

    // MARK: - Malformed input

    func testRejectsBadSignature() {
        var png = validPNG()
        png[1] = 0x51
        assertBadFile(png, contains: "signature")
        assertBadFile([], contains: "signature")
    }

    func testRejectsTruncatedFile() {
        let png = validPNG()
        for cut in [9, 20, 33, 40, png.count - 13, png.count - 1] {
            XCTAssertThrowsError(try PNG.decode(Array(png[0..<cut])), "cut at \(cut)")
        }
        assertBadFile(Array(png[0..<(png.count - 12)]), contains: "IEND")
    }

    func testRejectsBadCRC() {
        var png = validPNG()
        png[40] ^= 0x01  // a byte inside the IDAT data
        assertBadFile(png, contains: "CRC")
    }

    func testRejectsAbsurdDimensions() {
        for (w, h) in [(0, 5), (5, 0), (100_000, 100_000), (0x7FFF_FFFF, 0x7FFF_FFFF), (0xFFFF_FFFF, 1)] {
            let png = makePNG([("IHDR", ihdr(width: w, height: h)), ("IDAT", Deflate.zlibCompress([0, 0, 0, 0])), ("IEND", [])])
            XCTAssertThrowsError(try PNG.decode(png), "\(w)x\(h)")
        }
        XCTAssertThrowsError(try RGBImage(width: Int.max, height: 3, pixels: []))
        // An image whose pixels were changed after construction no longer matches its size.
        var image = try? RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 0, count: 12))
        image?.pixels.removeLast()
        XCTAssertThrowsError(try image.map { try PNG.encode($0) })
    }

    func testRejectsCorruptDeflateStream() {
        let raw: [UInt8] = [0, 1, 2, 3, 0, 4, 5, 6]
        var z = Deflate.zlibCompress(raw)
        z[z.count - 1] ^= 0xFF  // Adler-32
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 2)), ("IDAT", z), ("IEND", [])]), contains: "Adler")
        // Block type 3 is reserved.
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 2)), ("IDAT", [0x78, 0x9C, 0x07, 0, 0, 0, 0]), ("IEND", [])]),
                      contains: "block type")
        // A stored block whose length check fails.
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 2)), ("IDAT", [0x78, 0x9C, 0x01, 8, 0, 0, 0] + raw), ("IEND", [])]),
                      contains: "length check")
        // Random garbage after a valid header must throw, never trap.
        var rng = SplitMix64(seed: 5)
        for _ in 0..<200 {
            let body = [0x78, 0x9C] + (0..<Int(rng.byte() % 64)).map { _ in rng.byte() }
            XCTAssertThrowsError(try PNG.decode(makePNG([("IHDR", ihdr(width: 3, height: 3)), ("IDAT", body), ("IEND", [])])))
        }
        // Too little and too much image data.
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 2)), ("IDAT", Deflate.zlibCompress([0, 1, 2, 3])), ("IEND", [])]),
                      contains: "expected 8")
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 2)), ("IDAT", Deflate.zlibCompress(raw + [0])), ("IEND", [])]),
                      contains: "more data")
    }

    func testRejectsMissingChunks() {
        let idat = ("IDAT", Deflate.zlibCompress([0, 1, 2, 3]))
        assertBadFile(makePNG([("IEND", [])]), contains: "IHDR")
        assertBadFile(makePNG([idat, ("IHDR", ihdr(width: 1, height: 1)), ("IEND", [])]), contains: "IHDR")
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 1)), ("IEND", [])]), contains: "IDAT")
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 1)), idat]), contains: "IEND")
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 1, colorType: 3)), ("IDAT", Deflate.zlibCompress([0, 0])), ("IEND", [])]),
                      contains: "PLTE")
    }

    func testRejectsInvalidHeaderAndPixelData() {
        let idat = ("IDAT", Deflate.zlibCompress([0, 1, 2, 3]))
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 1, bitDepth: 4)), idat, ("IEND", [])]), contains: "bit depth")
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 1, colorType: 5)), idat, ("IEND", [])]), contains: "colour type")
        assertBadFile(makePNG([("IHDR", Array(ihdr(width: 1, height: 1)[0..<12])), idat, ("IEND", [])]), contains: "IHDR")
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 1)), ("IDAT", Deflate.zlibCompress([5, 1, 2, 3])), ("IEND", [])]),
                      contains: "filter type")
        // Palette index 2 with a two-entry palette.
        assertBadFile(makePNG([("IHDR", ihdr(width: 1, height: 1, colorType: 3)), ("PLTE", [0, 0, 0, 9, 9, 9]),
                               ("IDAT", Deflate.zlibCompress([0, 2])), ("IEND", [])]), contains: "palette index")
        XCTAssertThrowsError(try PNG.decode(makePNG([("IHDR", ihdr(width: 1, height: 1)), ("ABCD", []), idat, ("IEND", [])]))) {
            XCTAssertEqual($0 as? DalleError, .unsupported("unknown critical PNG chunk ABCD"))
        }
    }

    func testMutatedFilesThrowOrDecodeButNeverTrap() throws {
        // Random byte changes with the chunk CRCs fixed up, so they reach the header, zlib
        // and filter code; every outcome must be an image of the declared size or a DalleError.
        var rng = SplitMix64(seed: 99)
        for name in ["ct0_d2_adam7_dyn", "ct3_d4_plain_dyn", "ct6_d16_plain_fixed", "ct2_d8_adam7_stored", "pillow_rgb"] {
            let original = try FileIO.read(path: "\(Self.fixtureDirectory)/\(name).png")
            for _ in 0..<300 {
                var bytes = original
                for _ in 0..<(1 + Int(rng.byte() % 4)) {
                    let i = 8 + Int(rng.next() % UInt64(bytes.count - 8))
                    bytes[i] = rng.byte() % 3 == 0 ? bytes[i] ^ (1 << (rng.byte() % 8)) : rng.byte()
                }
                if rng.byte() % 8 == 0 { bytes.removeLast(Int(rng.next() % UInt64(bytes.count / 2))) }
                fixCRCs(&bytes)
                do {
                    let image = try PNG.decode(bytes)
                    XCTAssertEqual(image.pixels.count, image.width * image.height * 3)
                } catch {
                    XCTAssertNotNil(error as? DalleError, "\(error)")
                }
            }
        }
    }

    func testReadMissingFileThrowsIOError() {
        XCTAssertThrowsError(try PNG.read(path: "/nonexistent/dir/x.png")) { error in
            guard case .io = error as? DalleError else { return XCTFail("expected an io error, got \(error)") }
        }
    }

    // MARK: - Helpers

    private func validPNG() -> [UInt8] {
        var rng = SplitMix64(seed: 1)
        // Noise, so the IDAT is long enough for the byte offsets the tests poke at.
        let image = try? RGBImage(width: 6, height: 5, pixels: (0..<90).map { _ in rng.byte() })
        return image.flatMap { try? PNG.encode($0) } ?? []
    }

    private func ihdr(width: Int, height: Int, bitDepth: UInt8 = 8, colorType: UInt8 = 2) -> [UInt8] {
        be32(UInt32(truncatingIfNeeded: width)) + be32(UInt32(truncatingIfNeeded: height)) + [bitDepth, colorType, 0, 0, 0]
    }

    private func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    private func makePNG(_ chunks: [(String, [UInt8])]) -> [UInt8] {
        var out = PNG.signature
        for (type, data) in chunks {
            let body = Array(type.utf8) + data
            out += be32(UInt32(data.count)) + body + be32(Checksum.crc32(body))
        }
        return out
    }

    /// Rewrites the CRC of every complete chunk so that only the mutated contents are wrong.
    private func fixCRCs(_ png: inout [UInt8]) {
        var offset = 8
        while offset + 12 <= png.count {
            let length = Int(png[offset]) << 24 | Int(png[offset + 1]) << 16 | Int(png[offset + 2]) << 8 | Int(png[offset + 3])
            guard offset + 12 + length <= png.count else { return }
            let crc = be32(Checksum.crc32(png[(offset + 4)..<(offset + 8 + length)]))
            png.replaceSubrange((offset + 8 + length)..<(offset + 12 + length), with: crc)
            offset += 12 + length
        }
    }

    private func assertBadFile(_ bytes: [UInt8], contains fragment: String, line: UInt = #line) {
        XCTAssertThrowsError(try PNG.decode(bytes), line: line) { error in
            guard case .badFile(let message) = error as? DalleError else {
                return XCTFail("expected badFile, got \(error)", line: line)
            }
            XCTAssertTrue(message.contains(fragment), "'\(message)' does not mention '\(fragment)'", line: line)
        }
    }

    /// With DALLE_PNG_EXPORT=DIR set, writes encoded images and their pixels for
    /// `python3 tools/make_png_fixtures.py --check DIR` (decodes them with Pillow).
    private func export(_ image: RGBImage, _ encoded: [UInt8], name: String) throws {
        guard let dir = getenv("DALLE_PNG_EXPORT").map({ String(cString: $0) }) else { return }
        try FileIO.write(encoded, path: "\(dir)/\(name).png")
        try FileIO.write(image.pixels, path: "\(dir)/\(name).rgb")
    }
}

extension SplitMix64 {
    /// A byte of test data.
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next() >> 56) }
}
