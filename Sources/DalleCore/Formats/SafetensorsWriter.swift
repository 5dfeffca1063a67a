#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds a safetensors file in the layout Python's `safetensors` writes: tensors
/// ordered by dtype (widest first) then name, header padded with spaces to a
/// multiple of 8 bytes, so every tensor's data is aligned to its element size.
public struct SafetensorsWriter {
    /// String metadata stored as `"__metadata__"` (keys written sorted).
    public var metadata: [String: String] = [:]

    private struct Entry {
        let name: String
        let dtype: DType
        let shape: [Int]
        let data: [UInt8]
    }

    private var entries: [String: Entry] = [:]

    public init() {}

    /// Adds `tensor` stored as `dtype` (f32, f16 or bf16; rounding to nearest even).
    public mutating func add(_ name: String, _ tensor: Tensor, as dtype: DType = .f32) throws {
        guard let data = dtype.encode(tensor.scalars) else {
            throw DalleError.unsupported("cannot store float tensor '\(name)' as \(dtype.rawValue); use f32, f16 or bf16")
        }
        try add(name, bytes: data, dtype: dtype, shape: tensor.shape)
    }

    /// Adds `tensor` [rows, cols] (cols a multiple of 32) block-quantized, as a U8 tensor with
    /// the metadata entry that marks it (see `QuantizedType`).
    public mutating func add(_ name: String, _ tensor: Tensor, quantizedAs type: QuantizedType) throws {
        guard tensor.rank == 2, tensor.shape[1] % QuantizedType.blockSize == 0 else {
            throw DalleError.invalidArgument("tensor '\(name)' of shape \(tensor.shape) cannot be \(type.rawValue)-quantized: it must be [rows, a multiple of 32]")
        }
        let rowBytes = type.rowBytes(tensor.shape[1])
        var bytes = [UInt8](repeating: 0, count: tensor.shape[0] * rowBytes)
        try tensor.scalars.withUnsafeBufferPointer { x in
            try bytes.withUnsafeMutableBytes { out in
                for r in 0..<tensor.shape[0] {
                    try type.quantize(x.baseAddress.unsafelyUnwrapped + r * tensor.shape[1], count: tensor.shape[1],
                                      into: out.baseAddress.unsafelyUnwrapped + r * rowBytes)
                }
            }
        }
        try add(name, bytes: bytes, dtype: .u8, shape: [tensor.shape[0], rowBytes])
        metadata[QuantizedType.metadataKey(name)] = type.rawValue
    }

    /// Adds raw little-endian `bytes` holding a tensor of `dtype` and `shape`.
    public mutating func add(_ name: String, bytes: [UInt8], dtype: DType, shape: [Int]) throws {
        guard name != "__metadata__" else { throw DalleError.invalidArgument("tensor name '__metadata__' is reserved") }
        guard entries[name] == nil else { throw DalleError.invalidArgument("tensor '\(name)' was already added") }
        guard let elements = Tensor.elementCount(shape),
            case let (byteCount, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize),
            !overflow, byteCount == bytes.count
        else {
            throw DalleError.invalidArgument(
                "tensor '\(name)': \(bytes.count) bytes do not hold shape \(shape) of \(dtype.rawValue)")
        }
        entries[name] = Entry(name: name, dtype: dtype, shape: shape, data: bytes)
    }

    /// Tensors in file order: widest dtype first, then by name.
    private var ordered: [Entry] {
        entries.values.sorted { ($1.dtype.layoutRank, $0.name) < ($0.dtype.layoutRank, $1.name) }
    }

    /// The 8-byte length and the space-padded JSON header.
    private func header(for ordered: [Entry]) -> [UInt8] {
        var members: [(key: String, value: JSONValue)] = []
        if !metadata.isEmpty {
            let sorted = metadata.sorted { $0.key < $1.key }
            members.append(("__metadata__", .object(sorted.map { ($0.key, JSONValue.string($0.value)) })))
        }
        var offset = 0
        for entry in ordered {
            let info: JSONValue = .object([
                ("dtype", .string(entry.dtype.rawValue)),
                ("shape", .array(entry.shape.map { .number(Double($0)) })),
                ("data_offsets", .array([.number(Double(offset)), .number(Double(offset + entry.data.count))])),
            ])
            members.append((entry.name, info))
            offset += entry.data.count
        }
        var json = Array(JSONValue.object(members).serialized().utf8)
        json.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - json.count % 8) % 8))
        var out = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(json.count) >> (8 * UInt64($0))) }
        out.append(contentsOf: json)
        return out
    }

    /// The whole file.
    public func serialized() -> [UInt8] {
        let ordered = self.ordered
        var out = header(for: ordered)
        for entry in ordered { out.append(contentsOf: entry.data) }
        return out
    }

    /// Writes the file to `path` atomically: into `path.partial`, renamed over `path` once complete,
    /// so an interrupted write never leaves a truncated file behind. Throws `DalleError.io` on failure.
    public func write(to path: String) throws {
        let temporary = path + ".partial"
        guard let file = fopen(temporary, "wb") else {
            throw DalleError.io("cannot create '\(temporary)': \(errnoDescription())")
        }
        let ordered = self.ordered
        var ok = true
        for chunk in [header(for: ordered)] + ordered.map(\.data) where ok {
            ok = chunk.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) == $0.count }
        }
        let closed = fclose(file) == 0
        guard ok && closed else {
            let reason = errnoDescription()
            unlink(temporary)
            throw DalleError.io("cannot write '\(temporary)': \(reason)")
        }
        guard rename(temporary, path) == 0 else {
            let reason = errnoDescription()
            unlink(temporary)
            throw DalleError.io("cannot move '\(temporary)' into place at '\(path)': \(reason)")
        }
    }
}
