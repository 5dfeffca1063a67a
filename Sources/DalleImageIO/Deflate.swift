/// DEFLATE compression (RFC 1951) and the zlib wrapper (RFC 1950).
///
/// LZ77 with hash chains finds repeats (with one step of lazy matching); each block of
/// tokens is then written with whichever costs fewest bits: a dynamic Huffman code built
/// from the block's statistics, the fixed code, or stored bytes.
enum Deflate {
    /// Compresses `data` into a zlib stream (header, DEFLATE data, Adler-32).
    static func zlibCompress(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x9C]  // 32 KiB window, default level; 0x789C % 31 == 0
        out += compress(data)
        let adler = data.withUnsafeBufferPointer { Checksum.adler32($0) }
        out += [UInt8(adler >> 24), UInt8(adler >> 16 & 0xFF), UInt8(adler >> 8 & 0xFF), UInt8(adler & 0xFF)]
        return out
    }

    /// Compresses `data` into a raw DEFLATE stream.
    static func compress(_ data: [UInt8]) -> [UInt8] {
        var writer = BitWriter()
        var matcher = Matcher(data)
        var tokens: [Token] = []
        tokens.reserveCapacity(blockTokens)
        var blockStart = 0
        repeat {
            tokens.removeAll(keepingCapacity: true)
            let blockEnd = matcher.fill(&tokens, limit: blockTokens)
            writeBlock(&writer, tokens, raw: data[blockStart..<blockEnd], isFinal: blockEnd == data.count)
            blockStart = blockEnd
        } while blockStart < data.count
        return writer.finish()
    }

    private static let blockTokens = 1 << 15

    // MARK: - Tokens

    /// A literal byte (`distance == 0`) or a back-reference of `length` 3...258 at `distance` 1...32768.
    struct Token {
        var length: UInt16
        var distance: UInt16
    }

    /// The length symbol (257...285) for a match length, and the distance symbol (0...29) for a distance.
    private static let lengthSymbol: [UInt16] = (0...258).map { length in
        guard length >= 3 else { return 0 }
        return UInt16(257 + (Tables.lengthBase.lastIndex { $0 <= length } ?? 0))
    }
    private static func distanceSymbol(_ distance: Int) -> Int {
        Tables.distanceBase.lastIndex { $0 <= distance } ?? 0
    }
    private static let distanceSymbolSmall: [UInt8] = (0...512).map { UInt8(distanceSymbol(max($0, 1))) }
    private static let distanceSymbolLarge: [UInt8] = (0..<256).map { UInt8(distanceSymbol($0 << 7 + 1)) }
    /// Fast distance symbol: exact table up to 512, then by (distance - 1) >> 7 (every base above 512 is 128k + 1).
    private static func symbol(forDistance d: Int) -> Int {
        d <= 512 ? Int(distanceSymbolSmall[d]) : Int(distanceSymbolLarge[(d - 1) >> 7])
    }

    // MARK: - Blocks

    private static func writeBlock(_ writer: inout BitWriter, _ tokens: [Token], raw: ArraySlice<UInt8>, isFinal: Bool) {
        var literalFrequency = [Int](repeating: 0, count: 286)
        var distanceFrequency = [Int](repeating: 0, count: 30)
        literalFrequency[256] = 1
        for t in tokens {
            if t.distance == 0 {
                literalFrequency[Int(t.length)] += 1
            } else {
                literalFrequency[Int(lengthSymbol[Int(t.length)])] += 1
                distanceFrequency[symbol(forDistance: Int(t.distance))] += 1
            }
        }
        let dynamicLiteral = huffmanLengths(literalFrequency, maxLength: 15)
        let dynamicDistance = huffmanLengths(distanceFrequency, maxLength: 15)
        let header = DynamicHeader(literal: dynamicLiteral, distance: dynamicDistance)

        func dataCost(_ literal: [UInt8], _ distance: [UInt8]) -> Int {
            var bits = 0
            for (s, f) in literalFrequency.enumerated() where f > 0 {
                bits += f * (Int(literal[s]) + (s > 256 ? Tables.lengthExtra[s - 257] : 0))
            }
            for (s, f) in distanceFrequency.enumerated() where f > 0 {
                bits += f * (Int(distance[s]) + Tables.distanceExtra[s])
            }
            return bits
        }
        let dynamicCost = header.cost + dataCost(dynamicLiteral, dynamicDistance)
        let fixedCost = dataCost(Tables.fixedLiteralLengths, fixedDistanceLengths)
        let storedCost = (raw.count + 5 * (raw.count / 65535 + 1)) * 8

        if storedCost <= min(dynamicCost, fixedCost) {
            writeStored(&writer, raw, isFinal: isFinal)
            return
        }
        writer.write(isFinal ? 1 : 0, bits: 1)
        if dynamicCost < fixedCost {
            writer.write(2, bits: 2)
            header.write(&writer)
            writeTokens(&writer, tokens, literal: dynamicLiteral, distance: dynamicDistance)
        } else {
            writer.write(1, bits: 2)
            writeTokens(&writer, tokens, literal: Tables.fixedLiteralLengths, distance: fixedDistanceLengths)
        }
    }

    private static let fixedDistanceLengths = [UInt8](repeating: 5, count: 30)

    private static func writeStored(_ writer: inout BitWriter, _ raw: ArraySlice<UInt8>, isFinal: Bool) {
        var start = raw.startIndex
        repeat {
            let end = min(start + 65535, raw.endIndex)
            writer.write(isFinal && end == raw.endIndex ? 1 : 0, bits: 1)
            writer.write(0, bits: 2)
            writer.alignToByte()
            let len = end - start
            writer.appendAligned([UInt8(len & 0xFF), UInt8(len >> 8), UInt8(~len & 0xFF), UInt8(~len >> 8 & 0xFF)])
            writer.appendAligned(raw[start..<end])
            start = end
        } while start < raw.endIndex
    }

    private static func writeTokens(_ writer: inout BitWriter, _ tokens: [Token], literal: [UInt8], distance: [UInt8]) {
        let literalCodes = canonicalCodes(literal), distanceCodes = canonicalCodes(distance)
        for t in tokens {
            if t.distance == 0 {
                writer.write(Int(literalCodes[Int(t.length)]), bits: Int(literal[Int(t.length)]))
            } else {
                let ls = Int(lengthSymbol[Int(t.length)])
                writer.write(Int(literalCodes[ls]), bits: Int(literal[ls]))
                writer.write(Int(t.length) - Tables.lengthBase[ls - 257], bits: Tables.lengthExtra[ls - 257])
                let d = Int(t.distance), ds = symbol(forDistance: d)
                writer.write(Int(distanceCodes[ds]), bits: Int(distance[ds]))
                writer.write(d - Tables.distanceBase[ds], bits: Tables.distanceExtra[ds])
            }
        }
        writer.write(Int(literalCodes[256]), bits: Int(literal[256]))
    }

    // MARK: - Huffman codes

    /// Canonical codes for `lengths`, bit-reversed so they can be written LSB first.
    static func canonicalCodes(_ lengths: [UInt8]) -> [UInt16] {
        var count = [Int](repeating: 0, count: 16)
        for l in lengths { count[Int(l)] += 1 }
        count[0] = 0
        var next = [Int](repeating: 0, count: 16)
        var code = 0
        for len in 1...15 { code = (code + count[len - 1]) << 1; next[len] = code }
        return lengths.map { l in
            guard l > 0 else { return 0 }
            var c = next[Int(l)], reversed = 0
            next[Int(l)] += 1
            for _ in 0..<Int(l) { reversed = reversed << 1 | (c & 1); c >>= 1 }
            return UInt16(reversed)
        }
    }

    /// Huffman code lengths (at most `maxLength`) for symbol frequencies. At least two symbols
    /// always get a code, so every code is complete (some decoders reject incomplete ones).
    static func huffmanLengths(_ frequency: [Int], maxLength: Int) -> [UInt8] {
        var freq = frequency
        var used = freq.indices.filter { freq[$0] > 0 }
        for s in 0..<min(2, freq.count) where used.count < 2 && freq[s] == 0 { freq[s] = 1; used.append(s) }
        used.sort { freq[$0] != freq[$1] ? freq[$0] < freq[$1] : $0 < $1 }
        let n = used.count

        // Two-queue Huffman construction over leaves sorted by frequency; parents record the tree.
        var weight = used.map { freq[$0] }
        var parent = [Int](repeating: -1, count: 2 * n - 1)
        var nextLeaf = 0, nextInternal = n
        weight.reserveCapacity(2 * n - 1)
        func takeSmallest() -> Int {
            if nextLeaf < n && (nextInternal >= weight.count || weight[nextLeaf] <= weight[nextInternal]) {
                nextLeaf += 1; return nextLeaf - 1
            }
            nextInternal += 1; return nextInternal - 1
        }
        while weight.count < 2 * n - 1 {
            let a = takeSmallest(), b = takeSmallest()
            parent[a] = weight.count; parent[b] = weight.count
            weight.append(weight[a] + weight[b])
        }
        var depth = [Int](repeating: 0, count: 2 * n - 1)
        for node in stride(from: 2 * n - 3, through: 0, by: -1) { depth[node] = depth[parent[node]] + 1 }

        // Limit lengths: clamp, then repay the Kraft excess by deepening shorter codes (as in miniz).
        var countAt = [Int](repeating: 0, count: maxLength + 1)
        for leaf in 0..<n { countAt[min(depth[leaf], maxLength)] += 1 }
        var kraft = 0
        for len in 1...maxLength { kraft += countAt[len] << (maxLength - len) }
        while kraft > 1 << maxLength {
            countAt[maxLength] -= 1
            for len in stride(from: maxLength - 1, through: 1, by: -1) where countAt[len] > 0 {
                countAt[len] -= 1; countAt[len + 1] += 2
                break
            }
            kraft -= 1
        }
        // The rarest symbols get the longest codes.
        var lengths = [UInt8](repeating: 0, count: freq.count)
        var leaf = 0
        for len in stride(from: maxLength, through: 1, by: -1) {
            for _ in 0..<countAt[len] { lengths[used[leaf]] = UInt8(len); leaf += 1 }
        }
        return lengths
    }

    /// The header of a dynamic block: both code-length tables, run-length coded with symbols 16-18.
    private struct DynamicHeader {
        let literalCount: Int, distanceCount: Int, codeLengthCount: Int
        let symbols: [(symbol: Int, extra: Int, extraBits: Int)]
        let codeLengthLengths: [UInt8]
        let cost: Int

        private static let order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

        init(literal: [UInt8], distance: [UInt8]) {
            literalCount = max(257, (literal.lastIndex { $0 != 0 } ?? 0) + 1)
            distanceCount = max(1, (distance.lastIndex { $0 != 0 } ?? 0) + 1)
            let all = Array(literal[0..<literalCount] + distance[0..<distanceCount])
            var symbols: [(symbol: Int, extra: Int, extraBits: Int)] = []
            var i = 0
            while i < all.count {
                var run = 1
                while i + run < all.count && all[i + run] == all[i] { run += 1 }
                if all[i] == 0 && run >= 3 {
                    run = min(run, 138)
                    symbols.append(run <= 10 ? (17, run - 3, 3) : (18, run - 11, 7))
                } else if all[i] != 0 && run >= 4 {
                    run = min(run, 7)
                    symbols.append((Int(all[i]), 0, 0))
                    symbols.append((16, run - 4, 2))
                } else {
                    run = 1
                    symbols.append((Int(all[i]), 0, 0))
                }
                i += run
            }
            var frequency = [Int](repeating: 0, count: 19)
            for s in symbols { frequency[s.symbol] += 1 }
            let lengths = Deflate.huffmanLengths(frequency, maxLength: 7)
            codeLengthCount = max(4, (Self.order.lastIndex { lengths[$0] != 0 } ?? 0) + 1)
            var cost = 5 + 5 + 4 + 3 * codeLengthCount
            for s in symbols { cost += Int(lengths[s.symbol]) + s.extraBits }
            self.symbols = symbols
            self.codeLengthLengths = lengths
            self.cost = cost
        }

        func write(_ writer: inout BitWriter) {
            writer.write(literalCount - 257, bits: 5)
            writer.write(distanceCount - 1, bits: 5)
            writer.write(codeLengthCount - 4, bits: 4)
            for i in 0..<codeLengthCount { writer.write(Int(codeLengthLengths[Self.order[i]]), bits: 3) }
            let codes = Deflate.canonicalCodes(codeLengthLengths)
            for s in symbols {
                writer.write(Int(codes[s.symbol]), bits: Int(codeLengthLengths[s.symbol]))
                writer.write(s.extra, bits: s.extraBits)
            }
        }
    }

    // MARK: - LZ77

    /// Finds back-references with hash chains over 3-byte prefixes in a 32 KiB window.
    private struct Matcher {
        let data: [UInt8]
        var position = 0
        var head: [Int32]
        var previous: [Int32]

        static let hashBits = 15
        static let window = 32768
        static let maxChain = 64
        static let niceLength = 128

        init(_ data: [UInt8]) {
            self.data = data
            head = [Int32](repeating: -1, count: 1 << Self.hashBits)
            previous = [Int32](repeating: -1, count: Self.window)
        }

        private func hash(_ i: Int) -> Int {
            let key = UInt32(data[i]) << 16 | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2])
            return Int((key &* 2_654_435_761) >> UInt32(32 - Self.hashBits))
        }

        private mutating func insert(_ i: Int) {
            guard i + 3 <= data.count else { return }
            let h = hash(i)
            previous[i & (Self.window - 1)] = head[h]
            head[h] = Int32(i)
        }

        /// The longest match for position `i` among earlier positions (length 0 if under 3).
        private func longestMatch(_ i: Int) -> (length: Int, distance: Int) {
            guard i + 3 <= data.count else { return (0, 0) }
            let maxLength = min(258, data.count - i)
            var best = (length: 0, distance: 0)
            var candidate = Int(head[hash(i)])
            var chain = Self.maxChain
            data.withUnsafeBufferPointer { d in
                while candidate >= 0 && i - candidate <= Self.window && chain > 0 {
                    if d[candidate + best.length] == d[i + best.length] || best.length == 0 {
                        var len = 0
                        while len < maxLength && d[candidate + len] == d[i + len] { len += 1 }
                        if len > best.length {
                            best = (len, i - candidate)
                            if len >= Self.niceLength || len == maxLength { break }
                        }
                    }
                    candidate = Int(previous[candidate & (Self.window - 1)])
                    chain -= 1
                }
            }
            return best.length >= 3 ? best : (length: 0, distance: 0)
        }

        /// Appends up to `limit` tokens and returns the input position reached.
        mutating func fill(_ tokens: inout [Token], limit: Int) -> Int {
            var pending = longestMatch(position)
            while position < data.count && tokens.count < limit {
                insert(position)
                let next = pending.length > 0 && pending.length < Self.niceLength ? longestMatch(position + 1) : (length: 0, distance: 0)
                if pending.length > 0 && next.length <= pending.length {
                    tokens.append(Token(length: UInt16(pending.length), distance: UInt16(truncatingIfNeeded: pending.distance)))
                    for k in 1..<pending.length { insert(position + k) }
                    position += pending.length
                    pending = longestMatch(position)
                } else {
                    // A literal, either because nothing matched or because the next position matches longer.
                    tokens.append(Token(length: UInt16(data[position]), distance: 0))
                    position += 1
                    pending = pending.length > 0 ? next : longestMatch(position)
                }
            }
            return position
        }
    }
}

/// LSB-first bit writer.
struct BitWriter {
    private(set) var bytes: [UInt8] = []
    private var buffer: UInt64 = 0
    private var bitCount = 0

    mutating func write(_ value: Int, bits: Int) {
        buffer |= UInt64(value) << UInt64(bitCount)
        bitCount += bits
        while bitCount >= 8 {
            bytes.append(UInt8(truncatingIfNeeded: buffer))
            buffer >>= 8
            bitCount -= 8
        }
    }

    mutating func alignToByte() {
        if bitCount > 0 { write(0, bits: 8 - bitCount) }
    }

    /// Appends whole bytes; call `alignToByte()` first.
    mutating func appendAligned<C: Collection>(_ data: C) where C.Element == UInt8 {
        bytes.append(contentsOf: data)
    }

    mutating func finish() -> [UInt8] {
        alignToByte()
        return bytes
    }
}
