import CDalle
import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// The status code of a Swift error crossing the boundary.
func status(of error: Error) -> dalle_status {
    switch error as? DalleError {
    case .invalidArgument?: return dalle_status(DALLE_INVALID_ARGUMENT)
    case .badFile?: return dalle_status(DALLE_BAD_FILE)
    case .unsupported?: return dalle_status(DALLE_UNSUPPORTED)
    case .io?: return dalle_status(DALLE_IO_ERROR)
    case .outOfMemory?: return dalle_status(DALLE_OUT_OF_MEMORY)
    case .cancelled?: return dalle_status(DALLE_CANCELLED)
    case nil: return dalle_status(DALLE_INTERNAL_ERROR)
    }
}

/// Runs the body of the exported function `function`: clears this thread's last error,
/// and turns any error into a status code plus a message ("dalle_encode: invalid
/// argument: ...") kept as the thread's last error (and, via `onError`, the context's).
/// On a CPU without the features the kernels are built for (`cpu`, the detected ones), the
/// body does not run: DALLE_UNSUPPORTED, naming what is missing.
func boundary(_ function: String, cpu: CPUFeatures = .detected, onError: ((String) -> Void)? = nil,
              _ body: () throws -> Void) -> dalle_status {
    ThreadError.clear()
    do {
        try CPUFeatures.checkSupported(cpu)
        try body()
        return dalle_status(DALLE_OK)
    } catch {
        let message = "\(function): \(error)"
        ThreadError.set(message)
        onError?(message)
        Log.write(dalle_log_level(DALLE_LOG_DEBUG), message)
        return status(of: error)
    }
}

/// Reports a failure of a function that returns no status (the free functions, getters):
/// the thread's last error and an error-level log line.
func reportMisuse(_ function: String, _ error: Error) {
    let message = "\(function): \(error)"
    ThreadError.set(message)
    Log.write(dalle_log_level(DALLE_LOG_ERROR), message)
}

/// A C copy of `text`, allocated with malloc (nil when out of memory).
func mallocCString(_ text: String) -> UnsafeMutablePointer<CChar>? {
    let bytes = Array(text.utf8CString)
    guard let p = malloc(bytes.count)?.assumingMemoryBound(to: CChar.self) else { return nil }
    p.initialize(from: bytes, count: bytes.count)
    return p
}

/// A NUL-terminated string that lives as long as the process.
func staticCString(_ text: String) -> UnsafePointer<CChar> {
    let bytes = Array(text.utf8CString)
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
    p.initialize(from: bytes, count: bytes.count)
    return UnsafePointer(p)
}

let emptyCString = staticCString("")

/// This thread's last error message, kept under a pthread key (freed with the thread).
enum ThreadError {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { free($0) }
        return key
    }()

    static func clear() {
        guard let old = pthread_getspecific(key) else { return }
        pthread_setspecific(key, nil)
        free(old)
    }

    static func set(_ message: String) {
        clear()
        if let copy = mallocCString(message) { pthread_setspecific(key, copy) }
    }

    static var current: UnsafePointer<CChar> {
        guard let p = pthread_getspecific(key) else { return emptyCString }
        return UnsafePointer(p.assumingMemoryBound(to: CChar.self))
    }
}

/// "invalid argument", "bad model file", ... for each status code.
@_cdecl("dalle_status_string")
public func dalle_status_string(_ status: dalle_status) -> UnsafePointer<CChar> {
    switch Int(status) {
    case Int(DALLE_OK): return statusStrings[0]
    case Int(DALLE_INVALID_ARGUMENT): return statusStrings[1]
    case Int(DALLE_BAD_FILE): return statusStrings[2]
    case Int(DALLE_UNSUPPORTED): return statusStrings[3]
    case Int(DALLE_IO_ERROR): return statusStrings[4]
    case Int(DALLE_OUT_OF_MEMORY): return statusStrings[5]
    case Int(DALLE_CANCELLED): return statusStrings[6]
    case Int(DALLE_INTERNAL_ERROR): return statusStrings[7]
    default: return statusStrings[8]
    }
}

private let statusStrings: [UnsafePointer<CChar>] = [
    "ok", "invalid argument", "bad model file", "unsupported", "i/o error", "out of memory",
    "cancelled", "internal error", "unknown status",
].map(staticCString)

/// The message of the last failed call on this thread, or "".
@_cdecl("dalle_last_error")
public func dalle_last_error() -> UnsafePointer<CChar> {
    ThreadError.current
}
