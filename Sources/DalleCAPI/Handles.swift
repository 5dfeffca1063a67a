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

/// Every live buffer the library handed out (tokens, images), so that a freed, foreign or
/// mistyped pointer is rejected with a message instead of being freed.
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

/// Swift objects behind opaque C handles. A handle is a key, never an address: keys count up
/// from a 64-bit counter and are never reused, so a freed handle stays invalid for ever, even
/// after a new model or context is created (its address might have been the freed one's). The
/// keys lie outside the user address space, so no caller's pointer can pass for one either.
enum Handles {
    private static let lock = Lock()
    nonisolated(unsafe) private static var objects: [UInt: (kind: HandleKind, object: AnyObject)] = [:]
    nonisolated(unsafe) private static var issued: UInt = 0
    /// The first key (a non-canonical x86-64 address); keys step by 16.
    private static let base: UInt = 0xDA11_E000_0000_0000

    static func make<T: AnyObject>(_ object: T, _ kind: HandleKind) -> OpaquePointer {
        lock.withLock {
            issued += 1
            let key = base &+ issued &* 16
            objects[key] = (kind, object)
            return OpaquePointer(bitPattern: key).unsafelyUnwrapped
        }
    }

    /// The object behind a live handle (a strong reference, so a concurrent free cannot
    /// destroy it mid-call). `name` is the parameter's name for messages.
    static func resolve<T: AnyObject>(_ handle: OpaquePointer?, _ kind: HandleKind, as _: T.Type, name: String) throws -> T {
        guard let handle else { throw DalleError.invalidArgument("\(name) is NULL") }
        return try lock.withLock { try entry(handle, kind, as: T.self) }
    }

    /// Unregisters the handle and drops its reference; throws for a handle that is not live.
    static func release<T: AnyObject>(_ handle: OpaquePointer, _ kind: HandleKind, as _: T.Type) throws {
        let object = try lock.withLock { () throws -> T in
            let object = try entry(handle, kind, as: T.self)
            objects[UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))] = nil
            return object
        }
        _ = object  // released here, outside the lock (a model's deinit may take a while)
    }

    private static func entry<T: AnyObject>(_ handle: OpaquePointer, _ kind: HandleKind, as _: T.Type) throws -> T {
        let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(handle)))
        guard let entry = objects[key] else {
            throw DalleError.invalidArgument("\(handle) is not a live \(kind.rawValue) (already freed, or not from libdalle)")
        }
        guard entry.kind == kind, let object = entry.object as? T else {
            throw DalleError.invalidArgument("\(handle) is a \(entry.kind.rawValue), not a \(kind.rawValue)")
        }
        return object
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
