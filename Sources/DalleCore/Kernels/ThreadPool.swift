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
