import DalleCore

/// DEFLATE decompression (RFC 1951) and the zlib wrapper (RFC 1950): stored, fixed- and
/// dynamic-Huffman blocks. Every read is bounds-checked; malformed input throws `DalleError.badFile`.
enum Inflate {
    /// Decompresses a zlib stream, checking its header and Adler-32 trailer. Throws if the
    /// output would exceed `maxOutput` bytes, so a hostile stream cannot exhaust memory.
    static func zlibDecompress(_ data: [UInt8], maxOutput: Int) throws -> [UInt8] {
        guard data.count >= 6 else { throw corrupt("zlib stream is truncated") }
        let cmf = data[0], flg = data[1]
        guard cmf & 0x0F == 8, cmf >> 4 <= 7 else { throw corrupt("zlib stream is not deflate-compressed") }
        guard (UInt16(cmf) << 8 | UInt16(flg)) % 31 == 0 else { throw corrupt("zlib header check failed") }
        guard flg & 0x20 == 0 else { throw corrupt("zlib stream needs a preset dictionary") }
        var reader = BitReader(data, start: 2)
        let out = try inflate(&reader, maxOutput: maxOutput)
        let trailer = reader.alignedBytePosition()
        guard trailer + 4 <= data.count else { throw corrupt("zlib stream is missing its Adler-32 trailer") }
        let stored = UInt32(data[trailer]) << 24 | UInt32(data[trailer + 1]) << 16
            | UInt32(data[trailer + 2]) << 8 | UInt32(data[trailer + 3])
        let actual = out.withUnsafeBufferPointer { Checksum.adler32($0) }
        guard stored == actual else { throw corrupt("zlib Adler-32 checksum mismatch") }
        return out
    }

    /// Decompresses a raw DEFLATE stream (no zlib wrapper).
    static func decompress(_ data: [UInt8], maxOutput: Int) throws -> [UInt8] {
        var reader = BitReader(data, start: 0)
        return try inflate(&reader, maxOutput: maxOutput)
    }

    static func corrupt(_ message: String) -> DalleError { .badFile("corrupt compressed data: \(message)") }

    // MARK: - Blocks

    private static func inflate(_ reader: inout BitReader, maxOutput: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(min(maxOutput, 1 << 24))
        var isFinal = false
        while !isFinal {
            isFinal = try reader.bits(1) == 1
            switch try reader.bits(2) {
            case 0: try storedBlock(&reader, &out, maxOutput: maxOutput)
            case 1: try huffmanBlock(&reader, &out, Tables.fixedLiteral, Tables.fixedDistance, maxOutput: maxOutput)
            case 2:
                let (literal, distance) = try dynamicTables(&reader)
                try huffmanBlock(&reader, &out, literal, distance, maxOutput: maxOutput)
            default: throw corrupt("invalid block type 3")
            }
        }
        return out
    }

    private static func storedBlock(_ reader: inout BitReader, _ out: inout [UInt8], maxOutput: Int) throws {
        let start = reader.alignedBytePosition()
        let data = reader.data
        guard start + 4 <= data.count else { throw corrupt("stored block header is truncated") }
        let len = Int(data[start]) | Int(data[start + 1]) << 8
        let nlen = Int(data[start + 2]) | Int(data[start + 3]) << 8
        guard len == nlen ^ 0xFFFF else { throw corrupt("stored block length check failed") }
        guard start + 4 + len <= data.count else { throw corrupt("stored block is truncated") }
        guard out.count + len <= maxOutput else { throw corrupt("more data than expected") }
        out.append(contentsOf: data[(start + 4)..<(start + 4 + len)])
        reader.reset(to: start + 4 + len)
    }

    private static func huffmanBlock(
        _ reader: inout BitReader, _ out: inout [UInt8], _ literal: Huffman, _ distance: Huffman, maxOutput: Int
    ) throws {
        while true {
            let symbol = try reader.decode(literal)
            if symbol < 256 {
                guard out.count < maxOutput else { throw corrupt("more data than expected") }
                out.append(UInt8(symbol))
            } else if symbol == 256 {
                return
            } else {
                let lengthIndex = symbol - 257
                guard lengthIndex < 29 else { throw corrupt("invalid length symbol \(symbol)") }
                let length = Tables.lengthBase[lengthIndex] + (try reader.bits(Tables.lengthExtra[lengthIndex]))
                let distanceIndex = try reader.decode(distance)
                guard distanceIndex < 30 else { throw corrupt("invalid distance symbol \(distanceIndex)") }
                let dist = Tables.distanceBase[distanceIndex] + (try reader.bits(Tables.distanceExtra[distanceIndex]))
                guard dist <= out.count else { throw corrupt("distance \(dist) reaches before the start of the data") }
                guard out.count + length <= maxOutput else { throw corrupt("more data than expected") }
                var from = out.count - dist
                for _ in 0..<length { out.append(out[from]); from += 1 }
            }
        }
    }

    /// Order in which code-length code lengths are stored (RFC 1951 §3.2.7).
    private static let codeLengthOrder = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    private static func dynamicTables(_ reader: inout BitReader) throws -> (Huffman, Huffman) {
        let literalCount = try reader.bits(5) + 257
        let distanceCount = try reader.bits(5) + 1
        let codeLengthCount = try reader.bits(4) + 4
        guard literalCount <= 286, distanceCount <= 30 else { throw corrupt("too many literal or distance codes") }
        var codeLengthLengths = [UInt8](repeating: 0, count: 19)
        for i in 0..<codeLengthCount { codeLengthLengths[codeLengthOrder[i]] = UInt8(try reader.bits(3)) }
        let codeLengthCode = try Huffman(lengths: codeLengthLengths)

        var lengths: [UInt8] = []
        lengths.reserveCapacity(literalCount + distanceCount)
        while lengths.count < literalCount + distanceCount {
            let symbol = try reader.decode(codeLengthCode)
            let value: UInt8, repeats: Int
            switch symbol {
            case 0...15: value = UInt8(symbol); repeats = 1
            case 16:
                guard let last = lengths.last else { throw corrupt("repeat code with no previous length") }
                value = last; repeats = 3 + (try reader.bits(2))
            case 17: value = 0; repeats = 3 + (try reader.bits(3))
            default: value = 0; repeats = 11 + (try reader.bits(7))
            }
            guard lengths.count + repeats <= literalCount + distanceCount else {
                throw corrupt("code lengths overrun the table")
            }
            lengths.append(contentsOf: repeatElement(value, count: repeats))
        }
        guard lengths[256] != 0 else { throw corrupt("dynamic block has no end-of-block code") }
        return (try Huffman(lengths: Array(lengths[0..<literalCount])),
                try Huffman(lengths: Array(lengths[literalCount...])))
    }
}

/// Canonical Huffman decoding table indexed by the next `maxLength` input bits (LSB first).
/// Each entry packs `symbol << 4 | codeLength`; length 0 marks a bit pattern no code uses.
struct Huffman {
    let table: [UInt16]
    let maxLength: Int

    /// Builds the table for code `lengths` (each 0...15) read from a stream. Over-subscribed
    /// codes throw; incomplete ones are legal and their unused bit patterns stay invalid.
    init(lengths: [UInt8]) throws {
        var count = [Int](repeating: 0, count: 16)
        for l in lengths { count[Int(l)] += 1 }
        var left = 1
        for len in 1...15 {
            left = left * 2 - count[len]
            guard left >= 0 else { throw Inflate.corrupt("over-subscribed Huffman code") }
        }
        self.init(validLengths: lengths)
    }

    /// Builds the table for code lengths already known to be valid.
    init(validLengths lengths: [UInt8]) {
        var count = [Int](repeating: 0, count: 16)
        for l in lengths { count[Int(l)] += 1 }
        count[0] = 0
        let maxLength = max(1, (1...15).last { count[$0] > 0 } ?? 1)
        var nextCode = [Int](repeating: 0, count: 16)
        var code = 0
        for len in 1...15 { code = (code + count[len - 1]) << 1; nextCode[len] = code }
        var table = [UInt16](repeating: 0, count: 1 << maxLength)
        for (symbol, l) in lengths.enumerated() where l > 0 {
            let len = Int(l)
            var reversed = 0, c = nextCode[len]
            nextCode[len] += 1
            for _ in 0..<len { reversed = reversed << 1 | (c & 1); c >>= 1 }
            let entry = UInt16(symbol << 4 | len)
            var i = reversed
            while i < table.count { table[i] = entry; i += 1 << len }
        }
        self.table = table
        self.maxLength = maxLength
    }
}

/// LSB-first bit reader over a byte array. Reads past the end are padded with zeros in the
/// buffer but throw as soon as a padded bit is consumed.
struct BitReader {
    let data: [UInt8]
    private var position: Int
    private var buffer: UInt64 = 0
    private var bitCount = 0
    private var paddingBits = 0

    init(_ data: [UInt8], start: Int) {
        self.data = data
        self.position = start
    }

    private mutating func refill() {
        while bitCount <= 56 {
            if position < data.count {
                buffer |= UInt64(data[position]) << UInt64(bitCount)
                position += 1
            } else {
                paddingBits += 8
            }
            bitCount += 8
        }
    }

    private mutating func consume(_ n: Int) throws {
        buffer >>= UInt64(n)
        bitCount -= n
        guard bitCount >= paddingBits else { throw Inflate.corrupt("stream is truncated") }
    }

    /// The next `n` bits (0...16) as an integer, first bit in the lowest place.
    mutating func bits(_ n: Int) throws -> Int {
        if n == 0 { return 0 }
        if bitCount < n { refill() }
        let value = Int(buffer & ((1 << UInt64(n)) - 1))
        try consume(n)
        return value
    }

    mutating func decode(_ code: Huffman) throws -> Int {
        if bitCount < code.maxLength { refill() }
        let entry = Int(code.table[Int(buffer & ((1 << UInt64(code.maxLength)) - 1))])
        let len = entry & 15
        guard len > 0 else { throw Inflate.corrupt("invalid Huffman code") }
        try consume(len)
        return entry >> 4
    }

    /// Drops the bits left in the current byte and returns the index of the next whole byte.
    mutating func alignedBytePosition() -> Int {
        let wholeBytesBuffered = (bitCount - paddingBits) / 8
        return position - wholeBytesBuffered
    }

    /// Continues reading at byte `index` with an empty bit buffer.
    mutating func reset(to index: Int) {
        position = index
        buffer = 0
        bitCount = 0
        paddingBits = 0
    }
}

/// Length and distance tables shared by the compressor and the decompressor (RFC 1951 §3.2.5).
enum Tables {
    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31,
                             35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
                              3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
    static let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193,
                               257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
    static let distanceExtra = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6,
                                7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13]

    /// Code lengths of the fixed literal/length code: 0-143 -> 8, 144-255 -> 9, 256-279 -> 7, 280-287 -> 8.
    static let fixedLiteralLengths: [UInt8] = (0..<288).map { $0 < 144 ? 8 : $0 < 256 ? 9 : $0 < 280 ? 7 : 8 }

    static let fixedLiteral = Huffman(validLengths: fixedLiteralLengths)
    static let fixedDistance = Huffman(validLengths: [UInt8](repeating: 5, count: 30))
}
