/// Block-quantized weights, GGUF's `q8_0` and `q4_0`: each row is cut into blocks of 32
/// values, each block one f16 scale d and 32 integers q, a value being q · d — q8_0: int8 q
/// (34 bytes a block); q4_0: 4-bit q stored as q + 8, value j in the low nibble of byte j and
/// value j + 16 in its high nibble (18 bytes a block). A model file stores such a [rows, cols]
/// tensor as a U8 tensor [rows, cols / 32 · blockBytes] holding the blocks byte for byte as
/// GGUF lays them out, with the metadata entry "NAME.quantization": "q8_0" (or "q4_0").
public enum QuantizedType: String, Sendable, CaseIterable {
    case q8_0, q4_0

    /// Values per block.
    public static let blockSize = 32

    /// Bytes per block.
    public var blockBytes: Int { self == .q8_0 ? 34 : 18 }

    /// The metadata key that marks tensor `name` as quantized.
    public static func metadataKey(_ name: String) -> String { name + ".quantization" }

    /// Bytes of a row of `cols` values (cols a multiple of 32).
    func rowBytes(_ cols: Int) -> Int { cols / QuantizedType.blockSize * blockBytes }

    /// Quantizes `count` values (a multiple of 32) into blocks at `out`, rounding as ggml's
    /// `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref` do. Throws on a non-finite value.
    func quantize(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutableRawPointer) throws {
        for b in 0..<(count / QuantizedType.blockSize) {
            let v = x + b * QuantizedType.blockSize, block = out + b * blockBytes
            var amax: Float = 0, signedMax: Float = 0
            for j in 0..<QuantizedType.blockSize {
                guard v[j].isFinite else { throw DalleError.invalidArgument("cannot quantize the non-finite value \(v[j])") }
                if abs(v[j]) > amax { amax = abs(v[j]); signedMax = v[j] }
            }
            let d = self == .q8_0 ? amax / 127 : signedMax / -8
            let inverse: Float = d != 0 ? 1 / d : 0
            block.storeBytes(of: floatToHalf(d).littleEndian, as: UInt16.self)
            let q = block + 2
            switch self {
            case .q8_0:
                for j in 0..<32 {
                    q.storeBytes(of: Int8(clamped((v[j] * inverse).rounded(), -127, 127)), toByteOffset: j, as: Int8.self)
                }
            case .q4_0:
                for j in 0..<16 {
                    // ggml: MIN(15, (int8_t)(x·id + 8.5)), truncating toward zero.
                    let low = clamped(v[j] * inverse + 8.5, 0, 15), high = clamped(v[j + 16] * inverse + 8.5, 0, 15)
                    q.storeBytes(of: UInt8(low | high << 4), toByteOffset: j, as: UInt8.self)
                }
            }
        }
    }

    /// The scale of the block at `block`.
    @inline(__always)
    static func scale(_ block: UnsafeRawPointer) -> Float {
        Float(Float16(bitPattern: UInt16(littleEndian: block.loadUnaligned(as: UInt16.self))))
    }

    /// Value `j` (0..<32) of the block at `block`: q · d, exactly as the kernels compute it.
    @inline(__always)
    func value(_ block: UnsafeRawPointer, _ j: Int) -> Float {
        let q = block + 2
        switch self {
        case .q8_0: return Float(q.load(fromByteOffset: j, as: Int8.self)) * QuantizedType.scale(block)
        case .q4_0:
            let byte = q.load(fromByteOffset: j % 16, as: UInt8.self)
            return Float(Int(j < 16 ? byte & 15 : byte >> 4) - 8) * QuantizedType.scale(block)
        }
    }

    /// Throws unless every block of the [rows, cols] tensor at `base` has a finite scale.
    func validateScales(_ base: UnsafeRawPointer, rows: Int, cols: Int, name: String) throws {
        let blocks = rows * (cols / QuantizedType.blockSize)
        for b in 0..<blocks {
            let d = QuantizedType.scale(base + b * blockBytes)
            guard d.isFinite else {
                throw DalleError.badFile("tensor '\(name)' (\(rawValue)): block \(b) has the scale \(d); scales must be finite")
            }
        }
    }
}

/// `f` truncated toward zero into lo...hi (an overflowing scale's ±infinity or NaN included).
private func clamped(_ f: Float, _ lo: Int, _ hi: Int) -> Int {
    guard f > Float(lo) else { return lo }
    guard f < Float(hi) else { return hi }
    return Int(f)
}
