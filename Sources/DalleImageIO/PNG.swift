import DalleCore

/// PNG reading and writing in pure Swift (RFC 2083 / ISO 15948).
///
/// `decode` accepts every standard PNG: grayscale, RGB, palette, gray+alpha and RGBA at every
/// bit depth they allow, all five filters, Adam7 interlacing, any number of IDAT chunks. It
/// always returns RGB8 (DalleCore's `RGBImage`): alpha (and a palette's tRNS) is dropped, not composited; 16-bit
/// samples keep their high byte; 1/2/4-bit gray is scaled to 0...255. Malformed files throw
/// `DalleError.badFile`, unsupported ones `DalleError.unsupported`.
///
/// `encode` writes RGB8, non-interlaced, choosing each row's filter by the minimum-sum-of-
/// absolute-differences heuristic, compressed by `Deflate`.
public enum PNG {
    /// The largest image `decode` accepts, in pixels (64 Mi, e.g. 8192 x 8192).
    public static let maxPixels = 1 << 26

    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    // MARK: - Files

    /// Reads and decodes the PNG file at `path`.
    public static func read(path: String) throws -> RGBImage {
        let bytes = try FileIO.read(path: path)
        do {
            return try decode(bytes)
        } catch DalleError.badFile(let message) {
            throw DalleError.badFile("\(path): \(message)")
        } catch DalleError.unsupported(let message) {
            throw DalleError.unsupported("\(path): \(message)")
        }
    }

    /// Encodes `image` and writes it to `path`, replacing any existing file.
    public static func write(_ image: RGBImage, path: String) throws {
        try FileIO.write(try encode(image), path: path)
    }

    // MARK: - Decoding

    private struct Header {
        let width: Int, height: Int, bitDepth: Int, colorType: Int, interlaced: Bool

        /// Samples per pixel for the colour type.
        var channels: Int { [1, 0, 3, 1, 2, 0, 4][colorType] }
        var bitsPerPixel: Int { channels * bitDepth }
        /// Bytes per complete pixel (at least 1): the distance filters look back.
        var filterStride: Int { max(1, bitsPerPixel / 8) }
        func rowBytes(_ width: Int) -> Int { (width * bitsPerPixel + 7) / 8 }
    }

    /// Decodes a PNG file's bytes to RGB8.
    public static func decode(_ bytes: [UInt8]) throws -> RGBImage {
        guard bytes.count >= 8, Array(bytes[0..<8]) == signature else { throw bad("not a PNG file (bad signature)") }
        var header: Header?
        var palette: [UInt8] = []
        var compressed: [UInt8] = []
        var sawIDAT = false, sawIEND = false
        var offset = 8
        while !sawIEND {
            guard offset + 12 <= bytes.count else {
                throw bad(header == nil ? "missing IHDR chunk" : sawIDAT ? "missing IEND chunk (file truncated?)" : "missing IDAT chunk")
            }
            let length = Int(readUInt32(bytes, offset))
            let type = Array(bytes[(offset + 4)..<(offset + 8)])
            let name = String(decoding: type, as: UTF8.self)
            guard length <= Int(Int32.max), offset + 12 + length <= bytes.count else {
                throw bad("chunk \(name) is truncated")
            }
            let dataStart = offset + 8, dataEnd = dataStart + length
            let storedCRC = readUInt32(bytes, dataEnd)
            guard Checksum.crc32(bytes[(offset + 4)..<dataEnd]) == storedCRC else { throw bad("CRC mismatch in chunk \(name)") }
            let data = bytes[dataStart..<dataEnd]
            offset = dataEnd + 4

            guard header != nil || name == "IHDR" else { throw bad("first chunk is \(name), not IHDR") }
            switch name {
            case "IHDR":
                guard header == nil else { throw bad("more than one IHDR chunk") }
                header = try parseHeader(Array(data))
            case "PLTE":
                guard length % 3 == 0, length > 0, length <= 768 else { throw bad("PLTE chunk has invalid length \(length)") }
                palette = Array(data)
            case "IDAT":
                sawIDAT = true
                compressed.append(contentsOf: data)
            case "IEND":
                sawIEND = true
            default:
                // Bit 5 of the first byte clear marks a critical chunk a decoder must understand.
                if type[0] & 0x20 == 0 { throw DalleError.unsupported("unknown critical PNG chunk \(name)") }
            }
        }
        guard let header else { throw bad("missing IHDR chunk") }
        guard sawIDAT else { throw bad("missing IDAT chunk") }
        if header.colorType == 3 && palette.isEmpty { throw bad("palette image without a PLTE chunk") }

        let passes = header.interlaced ? adam7 : [Pass(x0: 0, y0: 0, dx: 1, dy: 1)]
        var expected = 0
        for pass in passes {
            let (w, h) = pass.size(header.width, header.height)
            if w > 0 && h > 0 { expected += h * (1 + header.rowBytes(w)) }
        }
        let raw = try Inflate.zlibDecompress(compressed, maxOutput: expected)
        guard raw.count == expected else {
            throw bad("image data holds \(raw.count) bytes, expected \(expected) (file truncated?)")
        }

        var pixels = [UInt8](repeating: 0, count: header.width * header.height * 3)
        var start = 0
        for pass in passes {
            let (w, h) = pass.size(header.width, header.height)
            guard w > 0 && h > 0 else { continue }
            let rowBytes = header.rowBytes(w)
            var previous = [UInt8](repeating: 0, count: rowBytes)
            var row = [UInt8](repeating: 0, count: rowBytes)
            for y in 0..<h {
                let filter = raw[start]
                for i in 0..<rowBytes { row[i] = raw[start + 1 + i] }
                try unfilter(filter, &row, previous: previous, stride: header.filterStride)
                try expand(row, header: header, palette: palette, width: w,
                           into: &pixels, at: (pass.y0 + y * pass.dy) * header.width, x0: pass.x0, dx: pass.dx)
                swap(&row, &previous)
                start += 1 + rowBytes
            }
        }
        return try RGBImage(width: header.width, height: header.height, pixels: pixels)
    }

    private static func parseHeader(_ d: [UInt8]) throws -> Header {
        guard d.count == 13 else { throw bad("IHDR chunk has length \(d.count), not 13") }
        let width = Int(readUInt32(d, 0)), height = Int(readUInt32(d, 4))
        let bitDepth = Int(d[8]), colorType = Int(d[9])
        guard width > 0, height > 0, width <= Int(Int32.max), height <= Int(Int32.max) else {
            throw bad("invalid image size \(width)x\(height)")
        }
        guard width <= maxPixels, height <= maxPixels, width * height <= maxPixels else {
            throw DalleError.unsupported("image size \(width)x\(height) exceeds the limit of \(maxPixels) pixels")
        }
        let allowedDepths: [Int: [Int]] = [0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16]]
        guard let depths = allowedDepths[colorType] else { throw bad("invalid colour type \(colorType)") }
        guard depths.contains(bitDepth) else { throw bad("bit depth \(bitDepth) is invalid for colour type \(colorType)") }
        guard d[10] == 0 else { throw bad("unknown compression method \(d[10])") }
        guard d[11] == 0 else { throw bad("unknown filter method \(d[11])") }
        guard d[12] <= 1 else { throw bad("unknown interlace method \(d[12])") }
        return Header(width: width, height: height, bitDepth: bitDepth, colorType: colorType, interlaced: d[12] == 1)
    }

    /// One Adam7 pass (or the whole image): pixels at x0 + k*dx, y0 + j*dy.
    private struct Pass {
        let x0: Int, y0: Int, dx: Int, dy: Int
        func size(_ width: Int, _ height: Int) -> (Int, Int) {
            ((width - x0 + dx - 1) / dx, (height - y0 + dy - 1) / dy)
        }
    }

    private static let adam7 = [
        Pass(x0: 0, y0: 0, dx: 8, dy: 8), Pass(x0: 4, y0: 0, dx: 8, dy: 8), Pass(x0: 0, y0: 4, dx: 4, dy: 8),
        Pass(x0: 2, y0: 0, dx: 4, dy: 4), Pass(x0: 0, y0: 2, dx: 2, dy: 4), Pass(x0: 1, y0: 0, dx: 2, dy: 2),
        Pass(x0: 0, y0: 1, dx: 1, dy: 2),
    ]

    /// Reverses filter `type` on `row` in place, given the previous (already unfiltered) row.
    private static func unfilter(_ type: UInt8, _ row: inout [UInt8], previous: [UInt8], stride: Int) throws {
        let n = row.count
        switch type {
        case 0: break
        case 1: for i in stride..<max(n, stride) { row[i] &+= row[i - stride] }
        case 2: for i in 0..<n { row[i] &+= previous[i] }
        case 3:
            for i in 0..<n {
                let left = i >= stride ? Int(row[i - stride]) : 0
                row[i] &+= UInt8((left + Int(previous[i])) / 2)
            }
        case 4:
            for i in 0..<n {
                let left = i >= stride ? row[i - stride] : 0, upLeft = i >= stride ? previous[i - stride] : 0
                row[i] &+= paeth(left, previous[i], upLeft)
            }
        default: throw bad("invalid filter type \(type)")
        }
    }

    static func paeth(_ a: UInt8, _ b: UInt8, _ c: UInt8) -> UInt8 {
        let p = Int(a) + Int(b) - Int(c)
        let pa = abs(p - Int(a)), pb = abs(p - Int(b)), pc = abs(p - Int(c))
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c
    }

    /// Converts one unfiltered row of `width` pixels to RGB8, writing pixel k at x0 + k*dx of
    /// the output row starting at pixel index `rowStart`.
    private static func expand(
        _ row: [UInt8], header: Header, palette: [UInt8], width: Int,
        into pixels: inout [UInt8], at rowStart: Int, x0: Int, dx: Int
    ) throws {
        let depth = header.bitDepth
        let bytesPerSample = depth == 16 ? 2 : 1
        for k in 0..<width {
            let o = (rowStart + x0 + k * dx) * 3
            switch header.colorType {
            case 0, 3:
                var sample: Int
                if depth >= 8 {
                    sample = Int(row[k * bytesPerSample])
                } else {
                    let bit = k * depth
                    sample = Int(row[bit >> 3] >> UInt8(8 - depth - (bit & 7))) & ((1 << depth) - 1)
                }
                if header.colorType == 3 {
                    guard sample * 3 + 2 < palette.count else { throw bad("palette index \(sample) out of range") }
                    pixels[o] = palette[sample * 3]; pixels[o + 1] = palette[sample * 3 + 1]; pixels[o + 2] = palette[sample * 3 + 2]
                } else {
                    if depth < 8 { sample = sample * 255 / ((1 << depth) - 1) }
                    pixels[o] = UInt8(sample); pixels[o + 1] = UInt8(sample); pixels[o + 2] = UInt8(sample)
                }
            case 4:
                let g = row[k * 2 * bytesPerSample]
                pixels[o] = g; pixels[o + 1] = g; pixels[o + 2] = g
            default:  // 2 (RGB) and 6 (RGBA): the first three samples, high byte first.
                let p = k * header.channels * bytesPerSample
                pixels[o] = row[p]; pixels[o + 1] = row[p + bytesPerSample]; pixels[o + 2] = row[p + 2 * bytesPerSample]
            }
        }
    }

    // MARK: - Encoding

    /// Encodes `image` as an RGB8, non-interlaced PNG. Throws `invalidArgument` when the
    /// pixel count does not match the size, or a side exceeds PNG's limit of 2^31 - 1.
    public static func encode(_ image: RGBImage) throws -> [UInt8] {
        guard image.width > 0, image.height > 0, image.width <= Int(Int32.max), image.height <= Int(Int32.max),
              let count = Tensor.elementCount([image.width, image.height, 3]), count == image.pixels.count else {
            throw DalleError.invalidArgument(
                "cannot encode a \(image.width)x\(image.height) image from \(image.pixels.count) bytes as PNG")
        }
        let rowBytes = image.width * 3
        var filtered: [UInt8] = []
        filtered.reserveCapacity(image.height * (rowBytes + 1))
        var candidate = [UInt8](repeating: 0, count: rowBytes)
        var best = [UInt8](repeating: 0, count: rowBytes)
        let zeros = [UInt8](repeating: 0, count: rowBytes)
        image.pixels.withUnsafeBufferPointer { px in
            for y in 0..<image.height {
                let row = UnsafeBufferPointer(rebasing: px[(y * rowBytes)..<((y + 1) * rowBytes)])
                zeros.withUnsafeBufferPointer { z in
                    let up = y > 0 ? UnsafeBufferPointer(rebasing: px[((y - 1) * rowBytes)..<(y * rowBytes)]) : z
                    var bestType = 0, bestScore = Int.max
                    for type in 0...4 {
                        let score = filterRow(type, row, up, into: &candidate)
                        if score < bestScore { bestScore = score; bestType = type; swap(&best, &candidate) }
                    }
                    filtered.append(UInt8(bestType))
                    filtered.append(contentsOf: best)
                }
            }
        }
        var out = signature
        var ihdr: [UInt8] = []
        appendUInt32(&ihdr, UInt32(image.width))
        appendUInt32(&ihdr, UInt32(image.height))
        ihdr += [8, 2, 0, 0, 0]  // 8-bit RGB, deflate, adaptive filtering, no interlace
        appendChunk(&out, "IHDR", ihdr)
        let compressed = Deflate.zlibCompress(filtered)
        var start = 0
        repeat {  // IDAT chunks of at most 1 MiB
            let end = min(start + (1 << 20), compressed.count)
            appendChunk(&out, "IDAT", compressed[start..<end])
            start = end
        } while start < compressed.count
        appendChunk(&out, "IEND", [])
        return out
    }

    /// Applies filter `type` (stride 3) to `row` given the row above; returns the sum of the
    /// filtered bytes read as signed magnitudes, the usual cost for choosing a filter.
    private static func filterRow(
        _ type: Int, _ row: UnsafeBufferPointer<UInt8>, _ up: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]
    ) -> Int {
        var score = 0
        for i in 0..<row.count {
            let left: UInt8 = i >= 3 ? row[i - 3] : 0, upLeft: UInt8 = i >= 3 ? up[i - 3] : 0
            let predictor: UInt8
            switch type {
            case 0: predictor = 0
            case 1: predictor = left
            case 2: predictor = up[i]
            case 3: predictor = UInt8((Int(left) + Int(up[i])) / 2)
            default: predictor = paeth(left, up[i], upLeft)
            }
            let v = row[i] &- predictor
            out[i] = v
            score += v < 128 ? Int(v) : 256 - Int(v)
        }
        return score
    }

    // MARK: - Helpers

    private static func bad(_ message: String) -> DalleError { .badFile("PNG: \(message)") }

    private static func readUInt32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    private static func appendUInt32(_ out: inout [UInt8], _ v: UInt32) {
        out += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    private static func appendChunk<C: Collection>(_ out: inout [UInt8], _ type: String, _ data: C) where C.Element == UInt8 {
        appendUInt32(&out, UInt32(data.count))
        let typeBytes = Array(type.utf8)
        out += typeBytes
        out += data
        appendUInt32(&out, Checksum.crc32(data, continuing: Checksum.crc32(typeBytes)))
    }
}
