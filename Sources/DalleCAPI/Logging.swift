import CDalle
import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// Where the library's log messages go: a host callback, or the default stderr logger.
enum Log {
    private static let lock = Lock()
    nonisolated(unsafe) private static var callback: dalle_log_callback? = nil
    nonisolated(unsafe) private static var userData: UnsafeMutableRawPointer? = nil
    nonisolated(unsafe) private static var minLevel = dalle_log_level(DALLE_LOG_WARN)

    static func set(_ cb: dalle_log_callback?, _ data: UnsafeMutableRawPointer?) {
        lock.withLock { (callback, userData) = (cb, data) }
    }

    static func setLevel(_ level: dalle_log_level) {
        lock.withLock { minLevel = level }
    }

    /// Delivers `message` at `level` (outside the lock, so a callback may call dalle_log_set).
    static func write(_ level: dalle_log_level, _ message: @autoclosure () -> String) {
        let (cb, data, minimum) = lock.withLock { (callback, userData, minLevel) }
        guard level >= minimum, level < dalle_log_level(DALLE_LOG_NONE) else { return }
        let text = message()
        if let cb {
            text.withCString { cb(level, $0, data) }
        } else {
            let names = ["debug", "info", "warn", "error"]
            fputs("libdalle: \(names[Int(level)]): \(text)\n", stderr)
        }
    }
}

/// Routes log messages to `callback` (NULL restores the default stderr logger).
@_cdecl("dalle_log_set")
public func dalle_log_set(_ callback: dalle_log_callback?, _ userData: UnsafeMutableRawPointer?) {
    Log.set(callback, userData)
}

/// Drops messages below `minLevel` (DALLE_LOG_NONE silences the library); a level outside
/// DALLE_LOG_DEBUG ... DALLE_LOG_NONE leaves the level as it was and is reported.
@_cdecl("dalle_log_set_level")
public func dalle_log_set_level(_ minLevel: dalle_log_level) {
    guard minLevel >= dalle_log_level(DALLE_LOG_DEBUG), minLevel <= dalle_log_level(DALLE_LOG_NONE) else {
        reportMisuse("dalle_log_set_level", DalleError.invalidArgument(
            "min_level is \(minLevel); use DALLE_LOG_DEBUG (0) ... DALLE_LOG_NONE (4); the level is unchanged"))
        return
    }
    Log.setLevel(minLevel)
}
