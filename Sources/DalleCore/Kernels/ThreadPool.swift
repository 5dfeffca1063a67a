import Dispatch

/// Splits work over a fixed number of threads. Every kernel partitions its *outputs*
/// across threads (never a reduction), so results do not depend on the thread count.
public struct ThreadPool: Sendable {
    /// Number of worker threads (at least 1).
    public let threads: Int

    /// `threads` = 0 means one per online core.
    public init(threads: Int) {
        self.threads = threads > 0 ? threads : ThreadPool.onlineCores
    }

    public static var onlineCores: Int {
        #if canImport(Glibc)
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return 1
        #endif
    }

    /// Calls `body(item)` for each of `count` items, handed out one at a time to at most
    /// `threads` workers: a worker slowed by other load on the machine simply takes fewer.
    /// Each item must write its own outputs, so the result does not depend on who ran it.
    public func parallelForEach(_ count: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        let workers = min(threads, count)
        if workers == 1 { for i in 0..<count { body(i) }; return }
        #if canImport(Glibc)
        let next = ItemCounter()
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while let i = next.take(below: count) { body(i) }
        }
        #else
        parallelFor(count) { range in for i in range { body(i) } }
        #endif
    }

    /// `parallelForEach` for items that can fail: every item runs, then the error of the
    /// lowest-numbered failing item is thrown (the same one for any thread count).
    public func parallelForEach(_ count: Int, throwing body: (Int) throws -> Void) throws {
        var errors = [(any Error)?](repeating: nil, count: max(count, 0))
        errors.withUnsafeMutableBufferPointer { out in
            parallelForEach(count) { i in
                do { try body(i) } catch { out[i] = error }
            }
        }
        if let first = errors.lazy.compactMap({ $0 }).first { throw first }
    }

    /// `parallelForEach` with item 0 run on the calling thread: for work whose first item calls
    /// back into the host, which expects its callbacks on the thread that made the call.
    public func parallelForEachCallerFirst(_ count: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        let workers = min(threads, count)
        if workers == 1 { for i in 0..<count { body(i) }; return }
        #if canImport(Glibc)
        // The calling thread works in `concurrentPerform` too: it takes item 0 as it comes in
        // (or afterwards, should it not have taken part), the others take the rest.
        let caller = pthread_self(), first = ItemCounter(), rest = ItemCounter(start: 1)
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            if pthread_equal(pthread_self(), caller) != 0, first.take(below: 1) != nil { body(0) }
            while let i = rest.take(below: count) { body(i) }
        }
        if first.take(below: 1) != nil { body(0) }
        #else
        body(0)
        parallelForEach(count - 1) { body($0 + 1) }
        #endif
    }

    /// Calls `body(range)` for `count` items split into at most `threads` contiguous chunks.
    public func parallelFor(_ count: Int, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let chunks = min(threads, count)
        if chunks == 1 { body(0..<count); return }
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = count * c / chunks, hi = count * (c + 1) / chunks
            if lo < hi { body(lo..<hi) }
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// Runs `body` with a 64-byte-aligned scratch buffer of at least `bytes` bytes. On
/// pthreads platforms the buffer belongs to the calling thread and is kept between calls,
/// so kernels on the pool's long-lived workers do not pay for an allocation (and its page
/// faults) every time. Not reentrant on one thread.
func withThreadWorkspace<R>(bytes: Int, _ body: (UnsafeMutableRawPointer) -> R) -> R {
    #if canImport(Glibc)
    let header = 64
    if let current = pthread_getspecific(workspaceKey), current.load(as: Int.self) >= bytes {
        return body(current + header)
    }
    if let old = pthread_getspecific(workspaceKey) { old.deallocate() }
    let capacity = max(bytes, 1 << 20)
    let raw = UnsafeMutableRawPointer.allocate(byteCount: capacity + header, alignment: 64)
    raw.storeBytes(of: capacity, as: Int.self)
    pthread_setspecific(workspaceKey, raw)
    return body(raw + header)
    #else
    let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    defer { raw.deallocate() }
    return body(raw)
    #endif
}

#if canImport(Glibc)
/// A shared "next item" index behind a mutex.
private final class ItemCounter: @unchecked Sendable {
    private var next: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    init(start: Int = 0) {
        next = start
        pthread_mutex_init(mutex, nil)
    }
    deinit { pthread_mutex_destroy(mutex); mutex.deallocate() }

    /// The next index, or nil once the indices below `count` have been handed out.
    func take(below count: Int) -> Int? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard next < count else { return nil }
        next += 1
        return next - 1
    }
}

/// The key of each thread's workspace; the buffer is freed when its thread exits.
private let workspaceKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { $0?.deallocate() }
    return key
}()
#endif
