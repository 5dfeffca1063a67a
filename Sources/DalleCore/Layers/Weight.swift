/// How a `Weight`'s elements are stored: the floating-point dtypes kernels read directly,
/// and the block-quantized types (`QuantizedType`).
public enum WeightFormat: Sendable, Equatable {
    case f32, f16, bf16
    case quantized(QuantizedType)

    /// The stored dtype of this format, or nil for dtypes that are converted to f32 on load.
    init?(_ dtype: DType) {
        switch dtype {
        case .f32: self = .f32
        case .f16: self = .f16
        case .bf16: self = .bf16
        default: return nil
        }
    }

    /// Bytes per element of a floating-point format (quantized formats use `rowBytes`).
    var byteSize: Int { self == .f32 ? 4 : 2 }

    /// Bytes of one row of `cols` elements.
    func rowBytes(_ cols: Int) -> Int {
        if case let .quantized(type) = self { return type.rowBytes(cols) }
        return cols * byteSize
    }
}

/// One parameter tensor as the model file stores it: a view of the (memory-mapped) file's
/// little-endian bytes in their stored precision, never copied. Layers read it through
/// conversions that are exact (16-bit → f32), so a 16-bit file computes the same numbers as
/// its f32 expansion would. Tensors of other dtypes, and weights built in memory, are held
/// as an owned f32 buffer.
public struct Weight: @unchecked Sendable {
    public let shape: [Int]
    public let format: WeightFormat
    /// The first element; little-endian, any alignment.
    let base: UnsafeRawPointer
    /// Keeps the memory behind `base` alive (the mapped file, or an owned buffer).
    private let owner: AnyObject

    /// Element count (shapes are validated by the file reader or by `Tensor`).
    public var count: Int { shape.reduce(1, *) }

    /// A view of `base` owned by `owner`.
    init(shape: [Int], format: WeightFormat, base: UnsafeRawPointer, owner: AnyObject) {
        self.shape = shape
        self.format = format
        self.base = base
        self.owner = owner
    }

    /// An f32 copy of `tensor`.
    public init(_ tensor: Tensor) {
        let buffer = OwnedBytes(byteCount: tensor.count * 4)
        tensor.scalars.withUnsafeBytes { if $0.count > 0 { buffer.bytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        self.init(shape: tensor.shape, format: .f32, base: UnsafeRawPointer(buffer.bytes), owner: buffer)
    }

    /// The same elements seen with another shape of equal element count (the caller checks).
    func viewed(as shape: [Int]) -> Weight { Weight(shape: shape, format: format, base: base, owner: owner) }

    /// Elements per row of the first dimension.
    var rowLength: Int { shape.dropFirst().reduce(1, *) }

    /// Bytes the stored tensor occupies.
    var storedByteCount: Int { (shape.first ?? 1) * format.rowBytes(shape.count > 1 ? rowLength : 1) }

    /// Rows `range` of the first dimension, as a view.
    func rows(_ range: Range<Int>) -> Weight {
        Weight(shape: [range.count] + shape.dropFirst(), format: format,
               base: base + range.lowerBound * format.rowBytes(rowLength), owner: owner)
    }

    /// Element `i` as Float (exact for every format).
    @inline(__always)
    func element(_ i: Int) -> Float {
        switch format {
        case .f32: return Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
        case .f16: return halfToFloat(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
        case .bf16: return bfloat16ToFloat(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
        case let .quantized(type):
            let cols = rowLength, row = i / cols, column = i % cols
            let block = base + row * type.rowBytes(cols) + column / QuantizedType.blockSize * type.blockBytes
            return type.value(block, column % QuantizedType.blockSize)
        }
    }

    /// Converts elements [start, start + n) into `out`.
    func decode(from start: Int, count n: Int, into out: UnsafeMutablePointer<Float>) {
        switch format {
        case .f32: DType.f32.decode(base + start * 4, count: n, into: out)
        case .f16: DType.f16.decode(base + start * 2, count: n, into: out)
        case .bf16: DType.bf16.decode(base + start * 2, count: n, into: out)
        case .quantized: for i in 0..<n { out[i] = element(start + i) }
        }
    }

    /// Tells the owner that this tensor's stored bytes will not be read again (a layer
    /// repacked them): a memory-mapped file drops their pages from this process's resident
    /// memory (they are read from the file again should anything touch them).
    func releaseStoredBytes() {
        (owner as? ReleasableBytes)?.release(UnsafeRawBufferPointer(start: base, count: storedByteCount))
    }

    /// Throws `badFile` naming tensor `name` and the first element that is NaN or infinite.
    /// Reads the stored bits, 16 lanes at a time (a quantized tensor's values are finite
    /// once its scales are, which the file reader checks).
    func checkFinite(_ name: String) throws {
        try Weight.checkFinite(base, count: count, format: format, name: name)
        // Tensors read lazily (embeddings) need not stay resident for having been checked.
        if count * format.byteSize >= 1 << 20 { releaseStoredBytes() }
    }

    /// `checkFinite` for `count` elements of `format` at `base`.
    static func checkFinite(_ base: UnsafeRawPointer, count: Int, format: WeightFormat, name: String) throws {
        let bad: Int?
        switch format {
        case .f32: bad = firstNonFinite(base, count: count, size: 4, exponent: 0x7f80_0000)
        case .f16: bad = firstNonFinite(base, count: count, size: 2, exponent: 0x7c00)
        case .bf16: bad = firstNonFinite(base, count: count, size: 2, exponent: 0x7f80)
        case .quantized: bad = nil
        }
        if let bad {
            let value = Weight(shape: [count], format: format, base: base, owner: OwnedBytes(byteCount: 0)).element(bad)
            throw DalleError.badFile("tensor '\(name)' holds \(value) at element \(bad); weights must be finite")
        }
    }

    /// Every element as Float: for small tensors (norms, biases, scales) that layers keep in f32.
    public func floats() -> [Float] {
        let n = count
        return [Float](unsafeUninitializedCapacity: n) { buffer, initialized in
            if n > 0, let out = buffer.baseAddress { decode(from: 0, count: n, into: out) }
            initialized = n
        }
    }
}

/// An owner of weight bytes that can drop them from resident memory.
protocol ReleasableBytes: AnyObject {
    func release(_ bytes: UnsafeRawBufferPointer)
}

/// A heap buffer freed with its owner (64-byte aligned, at least one cache line).
final class OwnedBytes {
    let bytes: UnsafeMutableRawPointer
    let byteCount: Int

    init(byteCount: Int) {
        self.byteCount = byteCount
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 64), alignment: 64)
    }

    deinit { bytes.deallocate() }
}

/// The index of the first of `count` floats at `p` (`size` bytes each, 2 or 4) whose
/// exponent bits (`exponent`) are all set — NaN or infinity — or nil. The fast pass reads
/// 8-byte words holding 8 / size values: each value's exponent bits plus the exponent's
/// lowest bit carry into the value's sign bit exactly when they are all ones, and no carry
/// crosses into the next value; the words' results are ORed. Only when that finds one is the
/// index searched for.
private func firstNonFinite(_ p: UnsafeRawPointer, count: Int, size: Int, exponent: UInt64) -> Int? {
    let lanes = 8 / size, bits = UInt64(8 * size)
    var mask: UInt64 = 0, carry: UInt64 = 0, sign: UInt64 = 0
    for lane in 0..<UInt64(lanes) {
        mask |= exponent << (lane * bits)
        carry |= (exponent & ~(exponent &- 1)) << (lane * bits)
        sign |= (1 << (bits - 1)) << (lane * bits)
    }
    let words = count / lanes
    var seen: UInt64 = 0
    for w in 0..<words {
        seen |= (p.loadUnaligned(fromByteOffset: 8 * w, as: UInt64.self) & mask) &+ carry
    }
    func element(_ i: Int) -> UInt64 {
        size == 2 ? UInt64(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                  : UInt64(p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
    }
    for i in (seen & sign != 0 ? 0 : words * lanes)..<count where element(i) & exponent == exponent { return i }
    return nil
}
