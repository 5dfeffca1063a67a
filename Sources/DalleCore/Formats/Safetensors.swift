#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element type and shape of one stored tensor.
public struct TensorInfo: Sendable, Equatable {
    public let dtype: DType
    public let shape: [Int]
    public init(dtype: DType, shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
    }
}

/// The largest header accepted; real headers are kilobytes to a few megabytes.
let safetensorsMaxHeaderLength = 100_000_000

/// A safetensors file, memory-mapped or held in memory, fully validated on open.
///
/// Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping
/// each tensor name to `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets
/// relative to the end of the header) plus an optional `"__metadata__"` object of
/// strings, then the raw little-endian tensor data.
public final class SafetensorsFile: WeightStore, @unchecked Sendable {
    /// String metadata (`"__metadata__"`); libdalle keeps each model's configuration here.
    public let metadata: [String: String]
    /// Tensor names, sorted.
    public let names: [String]

    private struct Entry {
        let info: TensorInfo
        let range: Range<Int>  // byte range within `data`
    }

    private let storage: Storage
    private let data: UnsafeRawBufferPointer
    private let entries: [String: Entry]

    /// Memory-maps the file at `path` read-only. Throws `DalleError.io` when it cannot
    /// be opened or mapped, `DalleError.badFile` when it is malformed.
    public convenience init(path: String) throws {
        try self.init(storage: try Storage(mapping: path), source: "'\(path)'")
    }

    /// Copies `bytes` (a whole safetensors file) into memory this object owns.
    public convenience init(bytes: UnsafeRawBufferPointer) throws {
        try self.init(storage: try Storage(copying: bytes), source: "buffer")
    }

    private init(storage: Storage, source: String) throws {
        self.storage = storage
        let file = storage.bytes
        do {
            let (headerLength, dataStart) = try Self.headerBounds(file)
            // The parsed JSON, the metadata and the tensor table: a few dozen bytes per header byte.
            try WorkingMemory.require(WorkingMemory.product(64, headerLength), for: "reading the header of \(source)")
            let header = try JSONValue.parse(UnsafeRawBufferPointer(rebasing: file[8..<8 + headerLength]))
            data = UnsafeRawBufferPointer(rebasing: file[dataStart...])
            (metadata, entries) = try Self.parseHeader(header, dataLength: data.count)
        } catch let DalleError.badFile(message) {
            throw DalleError.badFile("safetensors \(source): \(message)")
        } catch let DalleError.unsupported(message) {
            throw DalleError.unsupported("safetensors \(source): \(message)")
        }
        names = entries.keys.sorted()
    }

    /// Element type and shape of `name`, or nil when the file has no such tensor.
    public func info(_ name: String) -> TensorInfo? { entries[name]?.info }

    /// The tensor `name` converted to float32 (from any stored dtype; a quantized tensor is
    /// dequantized to its [rows, cols] shape).
    public func tensor(_ name: String) throws -> Tensor {
        if quantization(name) != nil {
            let weight = try self.weight(name, shape: try shape(of: name))
            return Tensor(uncheckedShape: weight.shape, scalars: weight.floats())
        }
        let entry = try self.entry(name)
        let count = entry.range.count / entry.info.dtype.byteSize
        let base = data.baseAddress.map { UnsafeRawPointer($0) + entry.range.lowerBound }
        let scalars = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base, let out = buffer.baseAddress, count > 0 {
                entry.info.dtype.decode(base, count: count, into: out)
            }
            initialized = count
        }
        return Tensor(uncheckedShape: entry.info.shape, scalars: scalars)
    }

    /// The tensor `name` as float32; throws `DalleError.badFile` when it is missing or
    /// its shape is not `shape`.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let actual = try self.shape(of: name)
        guard actual == shape else {
            throw DalleError.badFile("tensor '\(name)' has shape \(actual), expected \(shape)")
        }
        return try tensor(name)
    }

    /// The quantized type the metadata records for tensor `name` ("NAME.quantization"), if any.
    public func quantization(_ name: String) -> QuantizedType? {
        metadata[QuantizedType.metadataKey(name)].flatMap(QuantizedType.init(rawValue:))
    }

    /// The shape of tensor `name` as models see it: a quantized tensor's [rows, cols], else the stored shape.
    public func shape(of name: String) throws -> [Int] {
        let info = try entry(name).info
        guard let type = quantization(name) else { return info.shape }
        guard info.dtype == .u8, info.shape.count == 2, info.shape[1] % type.blockBytes == 0 else {
            throw DalleError.badFile("tensor '\(name)' is marked \(type.rawValue) but holds \(info.dtype.rawValue) \(info.shape); "
                + "expected U8 [rows, a multiple of \(type.blockBytes)]")
        }
        return [info.shape[0], info.shape[1] / type.blockBytes * QuantizedType.blockSize]
    }

    /// The tensor `name` in place when it is stored as f32, f16, bf16 or quantized (a view
    /// that keeps this file open), else converted to f32; throws as `tensor(_:shape:)`, and
    /// for a quantized tensor whose metadata, size or scales are invalid.
    public func weight(_ name: String, shape: [Int]) throws -> Weight {
        let entry = try self.entry(name)
        if let key = metadata[QuantizedType.metadataKey(name)] {
            guard let type = QuantizedType(rawValue: key) else {
                throw DalleError.unsupported("tensor '\(name)': quantization \"\(key)\" is not supported (q8_0, q4_0)")
            }
            let actual = try self.shape(of: name)
            guard actual == shape else {
                throw DalleError.badFile("tensor '\(name)' (\(type.rawValue)) has shape \(actual), expected \(shape)")
            }
            guard !entry.range.isEmpty, let base = data.baseAddress else { return Weight(Tensor(zeros: shape)) }
            let start = UnsafeRawPointer(base) + entry.range.lowerBound
            try type.validateScales(start, rows: shape[0], cols: shape[1], name: name)
            return Weight(shape: shape, format: .quantized(type), base: start, owner: self)
        }
        guard entry.info.shape == shape else {
            throw DalleError.badFile("tensor '\(name)' has shape \(entry.info.shape), expected \(shape)")
        }
        guard let format = WeightFormat(entry.info.dtype), !entry.range.isEmpty, let base = data.baseAddress else {
            return Weight(try tensor(name))
        }
        return Weight(shape: shape, format: format, base: UnsafeRawPointer(base) + entry.range.lowerBound, owner: self)
    }

    /// The raw little-endian bytes of `name` (for U8 blobs and other non-float data).
    public func bytes(_ name: String) throws -> [UInt8] {
        try withRawBytes(name) { Array($0) }
    }

    /// Calls `body` with the raw bytes of `name` in place (no copy); the pointer is
    /// valid only during the call.
    public func withRawBytes<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let entry = try self.entry(name)
        return try body(UnsafeRawBufferPointer(rebasing: data[entry.range]))
    }

    private func entry(_ name: String) throws -> Entry {
        guard let entry = entries[name] else { throw DalleError.badFile("missing tensor '\(name)'") }
        return entry
    }

    // MARK: Validation

    /// Reads the header length and checks it against the file; returns it and where data starts.
    private static func headerBounds(_ file: UnsafeRawBufferPointer) throws -> (Int, Int) {
        guard file.count >= 8 else {
            throw DalleError.badFile("file is \(file.count) bytes, shorter than the 8-byte header length")
        }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(file[i]) << (8 * UInt64(i)) }
        guard length <= UInt64(safetensorsMaxHeaderLength) else {
            throw DalleError.badFile("header length \(length) is larger than the \(safetensorsMaxHeaderLength)-byte limit")
        }
        let headerLength = Int(length)
        guard headerLength <= file.count - 8 else {
            throw DalleError.badFile(
                "header length \(headerLength) runs past the end of the file (\(file.count - 8) bytes after the length)")
        }
        return (headerLength, 8 + headerLength)
    }

    private static func parseHeader(_ header: JSONValue, dataLength: Int) throws
        -> ([String: String], [String: Entry])
    {
        guard let members = header.objectValue else { throw DalleError.badFile("header is not a JSON object") }
        var metadata: [String: String] = [:]
        var entries: [String: Entry] = [:]
        for (name, value) in members {
            if name == "__metadata__" {
                metadata = try parseMetadata(value)
            } else {
                entries[name] = try parseEntry(name, value, dataLength: dataLength)
            }
        }
        // No two tensors may share bytes (empty tensors occupy none).
        let occupied = entries.filter { !$0.value.range.isEmpty }.sorted {
            ($0.value.range.lowerBound, $0.key) < ($1.value.range.lowerBound, $1.key)
        }
        for (previous, next) in zip(occupied, occupied.dropFirst())
        where next.value.range.lowerBound < previous.value.range.upperBound {
            throw DalleError.badFile(
                "tensors '\(previous.key)' (bytes \(previous.value.range)) and '\(next.key)' (bytes \(next.value.range)) overlap")
        }
        return (metadata, entries)
    }

    private static func parseMetadata(_ value: JSONValue) throws -> [String: String] {
        if value == .null { return [:] }
        guard let members = value.objectValue else { throw DalleError.badFile("__metadata__ is not an object") }
        var metadata: [String: String] = [:]
        for (key, value) in members {
            guard let string = value.stringValue else {
                throw DalleError.badFile("__metadata__ value for '\(key)' is not a string")
            }
            metadata[key] = string
        }
        return metadata
    }

    private static func parseEntry(_ name: String, _ value: JSONValue, dataLength: Int) throws -> Entry {
        func bad(_ message: String) -> DalleError { .badFile("tensor '\(name)': \(message)") }
        guard value.objectValue != nil else { throw bad("entry is not an object") }
        guard let dtypeValue = value["dtype"] else { throw bad("missing \"dtype\"") }
        guard let dtypeName = dtypeValue.stringValue else { throw bad("\"dtype\" is not a string") }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw DalleError.unsupported("tensor '\(name)': dtype \"\(dtypeName)\" is not supported")
        }
        guard let shapeValue = value["shape"] else { throw bad("missing \"shape\"") }
        let shape = try indices(shapeValue, field: "shape", bad)
        guard let offsetsValue = value["data_offsets"] else { throw bad("missing \"data_offsets\"") }
        let offsets = try indices(offsetsValue, field: "data_offsets", bad)
        guard offsets.count == 2 else { throw bad("\"data_offsets\" has \(offsets.count) values, expected 2") }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin <= end else { throw bad("data_offsets [\(begin), \(end)] begin after end") }
        guard end <= dataLength else {
            throw bad("data_offsets [\(begin), \(end)] run past the \(dataLength) bytes of data")
        }
        guard let elements = Tensor.elementCount(shape) else { throw bad("shape \(shape) element count overflows") }
        let (byteCount, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow, byteCount == end - begin else {
            throw bad("shape \(shape) of \(dtype.rawValue) needs \(overflow ? "more than Int.max" : "\(byteCount)") bytes, "
                + "data_offsets [\(begin), \(end)] hold \(end - begin)")
        }
        return Entry(info: TensorInfo(dtype: dtype, shape: shape), range: begin..<end)
    }

    /// An array of exact non-negative integers.
    private static func indices(_ value: JSONValue, field: String, _ bad: (String) -> DalleError) throws -> [Int] {
        guard let items = value.arrayValue else { throw bad("\"\(field)\" is not an array") }
        return try items.map { item in
            guard let n = item.exactInteger, n >= 0 else {
                throw bad("\"\(field)\" holds \(item.serialized()), not a non-negative integer")
            }
            return n
        }
    }
}

extension SafetensorsFile: ReleasableBytes {
    func release(_ bytes: UnsafeRawBufferPointer) { storage.release(bytes) }
}

/// The bytes of a safetensors file: a read-only mapping or an owned copy, released on deinit.
private final class Storage {
    let bytes: UnsafeRawBufferPointer
    private let isMapped: Bool

    init(mapping path: String) throws {
        // O_NONBLOCK: opening a FIFO must not hang; it then fails the regular-file check.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw DalleError.io("cannot open '\(path)': \(errnoDescription())") }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw DalleError.io("cannot stat '\(path)': \(errnoDescription())") }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw DalleError.io("'\(path)' is not a regular file") }
        let size = Int(status.st_size)
        isMapped = size > 0
        if size == 0 {
            // mmap rejects empty files; an empty buffer fails validation with a clear message.
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), address != MAP_FAILED else {
            // ENOMEM: the address space is full or limited (ulimit -v), not a problem with the file.
            let refused = errno == ENOMEM
            let reason = "cannot map '\(path)': \(errnoDescription())"
            throw refused ? DalleError.outOfMemory(reason) : DalleError.io(reason)
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    init(copying source: UnsafeRawBufferPointer) throws {
        isMapped = false
        // malloc, not Swift's allocate: a size the system refuses is an error to report, not an abort.
        let (rounded, overflow) = source.count.addingReportingOverflow(63)
        guard !overflow, let copy = aligned_alloc(64, max(rounded / 64 * 64, 64)) else {
            throw DalleError.outOfMemory("cannot allocate \(source.count) bytes for a copy of the model buffer")
        }
        if source.count > 0, let from = source.baseAddress { copy.copyMemory(from: from, byteCount: source.count) }
        bytes = UnsafeRawBufferPointer(start: copy, count: source.count)
    }

    /// Drops the whole pages inside `range` (part of `bytes`) from resident memory when the
    /// file is mapped; they are read from the file again if touched. An owned copy keeps them.
    func release(_ range: UnsafeRawBufferPointer) {
        guard isMapped, let start = range.baseAddress, let base = bytes.baseAddress,
              start >= base, start + range.count <= base + bytes.count else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard page > 0 else { return }
        let first = (Int(bitPattern: start) + page - 1) / page * page
        let end = (Int(bitPattern: start) + range.count) / page * page
        guard end > first, let address = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(address, end - first, MADV_DONTNEED)
    }

    deinit {
        if isMapped {
            munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress), bytes.count)
        } else {
            free(UnsafeMutableRawPointer(mutating: bytes.baseAddress))
        }
    }
}

func errnoDescription() -> String {
    guard let message = strerror(errno) else { return "errno \(errno)" }
    return String(cString: message)
}
