import CDalle
import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// What a pointer handed to the caller is.
enum HandleKind: String {
    case model = "dalle_model"
    case context = "dalle_context"
    case tokens = "dalle_tokens data"
    case images = "dalle_image_batch images"
    case image = "dalle_image data"
}

/// Every live pointer the library handed out, so that a freed, foreign or mistyped
/// pointer is rejected with a message instead of being dereferenced.
enum Registry {
    private static let lock = Lock()
    nonisolated(unsafe) private static var live: [UnsafeMutableRawPointer: HandleKind] = [:]

    static func insert(_ p: UnsafeMutableRawPointer, _ kind: HandleKind) {
        lock.withLock { live[p] = kind }
    }

    /// Removes `p`; throws unless it is a live pointer of `kind`.
    static func remove(_ p: UnsafeMutableRawPointer, _ kind: HandleKind) throws {
        try lock.withLock {
            try check(p, kind)
            live[p] = nil
        }
    }

    /// Runs `body` while `p` is known to be a live pointer of `kind`.
    static func withLive<T>(_ p: UnsafeMutableRawPointer, _ kind: HandleKind, _ body: () -> T) throws -> T {
        try lock.withLock {
            try check(p, kind)
            return body()
        }
    }

    private static func check(_ p: UnsafeMutableRawPointer, _ kind: HandleKind) throws {
        switch live[p] {
        case kind?: return
        case let other?: throw DalleError.invalidArgument("\(p) is a \(other.rawValue), not a \(kind.rawValue)")
        case nil: throw DalleError.invalidArgument("\(p) is not a live \(kind.rawValue) (already freed, or not from libdalle)")
        }
    }
}

/// A Swift object behind an opaque C handle: retained while the handle is live.
enum Handles {
    static func make<T: AnyObject>(_ object: T, _ kind: HandleKind) -> OpaquePointer {
        let p = Unmanaged.passRetained(object).toOpaque()
        Registry.insert(p, kind)
        return OpaquePointer(p)
    }

    /// The object behind a live handle (a strong reference, so a concurrent free cannot
    /// destroy it mid-call). `name` is the parameter's name for messages.
    static func resolve<T: AnyObject>(_ handle: OpaquePointer?, _ kind: HandleKind, as _: T.Type, name: String) throws -> T {
        guard let handle else { throw DalleError.invalidArgument("\(name) is NULL") }
        let p = UnsafeMutableRawPointer(handle)
        return try Registry.withLive(p, kind) { Unmanaged<T>.fromOpaque(p).takeUnretainedValue() }
    }

    /// Unregisters the handle and drops its reference; throws for a handle that is not live.
    static func release<T: AnyObject>(_ handle: OpaquePointer, _ kind: HandleKind, as _: T.Type) throws {
        let p = UnsafeMutableRawPointer(handle)
        try Registry.remove(p, kind)
        Unmanaged<T>.fromOpaque(p).release()
    }
}

/// malloc'd memory handed to the caller, registered so that its free function can tell
/// library allocations from anything else.
enum CallerMemory {
    static func allocate(bytes: Int, _ kind: HandleKind) throws -> UnsafeMutableRawPointer {
        guard let p = malloc(max(bytes, 1)) else { throw DalleError.outOfMemory("cannot allocate \(bytes) bytes for \(kind.rawValue)") }
        Registry.insert(p, kind)
        return p
    }

    static func free(_ p: UnsafeMutableRawPointer, _ kind: HandleKind) throws {
        try Registry.remove(p, kind)
        Glibc.free(p)
    }
}

/// Reads a caller's params struct that starts with `uint32_t struct_size`: fields past
/// the caller's size keep their defaults; a size this library does not know is an error.
func readParams<T>(_ pointer: UnsafePointer<T>?, defaults: T, name: String, minimumSize: Int) throws -> T {
    guard let pointer else { return defaults }
    let size = Int(UnsafeRawPointer(pointer).load(as: UInt32.self))
    guard size >= minimumSize, size <= MemoryLayout<T>.size else {
        throw DalleError.invalidArgument("\(name).struct_size is \(size); this libdalle expects \(MemoryLayout<T>.size) (sizeof(\(name)) from a matching dalle.h; use \(name.replacingSuffix("params", "default_params"))())")
    }
    var result = defaults
    withUnsafeMutableBytes(of: &result) { out in
        out.copyMemory(from: UnsafeRawBufferPointer(start: UnsafeRawPointer(pointer), count: size))
    }
    return result
}

extension String {
    func replacingSuffix(_ suffix: String, _ replacement: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) + replacement : self
    }
}
