/// Element types a model file can store, named as safetensors names them.
public enum DType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8"
    case u64 = "U64", u32 = "U32", u16 = "U16", u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool: return 1
        }
    }

    /// Position in the Rust safetensors `Dtype` enum. Writers lay tensors out by this
    /// rank, largest first, then by name, so every tensor is aligned to its element size.
    var layoutRank: Int {
        switch self {
        case .bool: return 0
        case .u8: return 1
        case .i8: return 2
        case .i16: return 3
        case .u16: return 4
        case .f16: return 5
        case .bf16: return 6
        case .i32: return 7
        case .u32: return 8
        case .f32: return 9
        case .f64: return 10
        case .i64: return 11
        case .u64: return 12
        }
    }

    /// Converts `count` little-endian elements at `source` (any alignment) to Float.
    /// Floating types convert exactly (f64 and wide integers round to nearest).
    func decode(_ source: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        switch self {
        case .f32:
            #if _endian(little)
            UnsafeMutableRawPointer(out).copyMemory(from: source, byteCount: count * 4)
            #else
            for i in 0..<count { out[i] = Float(bitPattern: load(UInt32.self, source, i)) }
            #endif
        case .f16: for i in 0..<count { out[i] = halfToFloat(load(UInt16.self, source, i)) }
        case .bf16: for i in 0..<count { out[i] = bfloat16ToFloat(load(UInt16.self, source, i)) }
        case .f64: for i in 0..<count { out[i] = Float(Double(bitPattern: load(UInt64.self, source, i))) }
        case .i64: for i in 0..<count { out[i] = Float(Int64(bitPattern: load(UInt64.self, source, i))) }
        case .i32: for i in 0..<count { out[i] = Float(Int32(bitPattern: load(UInt32.self, source, i))) }
        case .i16: for i in 0..<count { out[i] = Float(Int16(bitPattern: load(UInt16.self, source, i))) }
        case .i8: for i in 0..<count { out[i] = Float(Int8(bitPattern: load(UInt8.self, source, i))) }
        case .u64: for i in 0..<count { out[i] = Float(load(UInt64.self, source, i)) }
        case .u32: for i in 0..<count { out[i] = Float(load(UInt32.self, source, i)) }
        case .u16: for i in 0..<count { out[i] = Float(load(UInt16.self, source, i)) }
        case .u8, .bool: for i in 0..<count { out[i] = Float(load(UInt8.self, source, i)) }
        }
    }

    /// Encodes floats as little-endian f32, f16 or bf16 (rounding to nearest even);
    /// nil for the other types, which have no lossless float encoding worth offering.
    func encode(_ values: [Float]) -> [UInt8]? {
        switch self {
        case .f32: return littleEndianBytes(values) { $0.bitPattern }
        case .f16: return littleEndianBytes(values, floatToHalf)
        case .bf16: return littleEndianBytes(values, floatToBFloat16)
        default: return nil
        }
    }
}

@inline(__always)
private func load<T: FixedWidthInteger>(_: T.Type, _ base: UnsafeRawPointer, _ index: Int) -> T {
    T(littleEndian: base.loadUnaligned(fromByteOffset: index * MemoryLayout<T>.size, as: T.self))
}

/// The little-endian bytes of `encode(v)` for each value.
@inline(__always)
private func littleEndianBytes<T: FixedWidthInteger>(_ values: [Float], _ encode: (Float) -> T) -> [UInt8] {
    let size = MemoryLayout<T>.size
    return [UInt8](unsafeUninitializedCapacity: values.count * size) { buffer, initialized in
        let out = UnsafeMutableRawBufferPointer(buffer)
        for (i, v) in values.enumerated() {
            out.storeBytes(of: encode(v).littleEndian, toByteOffset: i * size, as: T.self)
        }
        initialized = values.count * size
    }
}

/// IEEE binary16 bits to Float, exactly (subnormals, infinities and NaN payloads kept).
@inline(__always)
func halfToFloat(_ h: UInt16) -> Float {
    let sign: UInt32 = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1f
    let mantissa = UInt32(h & 0x3ff)
    if exponent == 0x1f { return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13)) }
    if exponent == 0 {
        // Zero or subnormal: mantissa × 2^-24, exact in Float.
        let magnitude = Float(mantissa) * 0x1p-24
        return sign == 0 ? magnitude : -magnitude
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

/// Float to IEEE binary16 bits, rounding to nearest even; overflow gives infinity, NaN stays NaN.
func floatToHalf(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
    let exponent = Int((bits >> 23) & 0xff)
    let mantissa = bits & 0x7f_ffff
    if exponent == 0xff {
        // Infinity, or NaN kept quiet with the top of its payload.
        return mantissa == 0 ? sign | 0x7c00 : sign | 0x7e00 | UInt16(truncatingIfNeeded: mantissa >> 13)
    }
    let halfExponent = exponent - 112
    if halfExponent >= 0x1f { return sign | 0x7c00 }
    if halfExponent <= 0 {
        // Subnormal half (or zero): shift the full significand right, rounding to nearest even.
        if halfExponent < -10 { return sign }
        let significand = mantissa | 0x80_0000
        let shift = UInt32(14 - halfExponent)
        let truncated = significand >> shift
        let remainder = significand & ((1 << shift) - 1)
        let halfway: UInt32 = 1 << (shift - 1)
        let roundUp = remainder > halfway || (remainder == halfway && truncated & 1 == 1)
        return sign | UInt16(truncatingIfNeeded: truncated + (roundUp ? 1 : 0))
    }
    // Normal: drop 13 mantissa bits with round-to-nearest-even; a carry into the
    // exponent is correct (it may produce infinity).
    let combined = (UInt32(halfExponent) << 10) | (mantissa >> 13)
    let remainder = mantissa & 0x1fff
    let roundUp = remainder > 0x1000 || (remainder == 0x1000 && combined & 1 == 1)
    return sign | UInt16(truncatingIfNeeded: combined + (roundUp ? 1 : 0))
}

/// bfloat16 bits to Float, exactly (bfloat16 is the top half of a Float).
@inline(__always)
func bfloat16ToFloat(_ b: UInt16) -> Float {
    Float(bitPattern: UInt32(b) << 16)
}

/// Float to bfloat16 bits, rounding to nearest even; NaN stays a quiet NaN.
func floatToBFloat16(_ f: Float) -> UInt16 {
    let bits = f.bitPattern
    if f.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x0040 }
    let rounding: UInt32 = 0x7fff + ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
}
