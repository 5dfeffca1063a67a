#if canImport(Glibc)
import Glibc
#endif

/// A mutual-exclusion lock over a heap-allocated `pthread_mutex_t` (stdlib-only: no
/// Foundation, no Synchronization).
public final class Lock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Runs `body` only if the lock is free right now; returns nil when another thread holds it.
    public func withLockIfAvailable<T>(_ body: () throws -> T) rethrows -> T? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }
}

/// A stop request that any thread may raise while a session call runs.
public final class CancellationFlag: @unchecked Sendable {
    private let lock = Lock()
    private var requested = false

    public init() {}

    public func request() { lock.withLock { requested = true } }
    public func reset() { lock.withLock { requested = false } }
    public var isRequested: Bool { lock.withLock { requested } }
}
