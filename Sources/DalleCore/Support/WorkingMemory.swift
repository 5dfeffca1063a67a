#if canImport(Glibc)
import Glibc
#endif

/// Memory asked of the system before work that needs it starts, so that a refusal is
/// `DalleError.outOfMemory` instead of the allocator stopping the process (Swift's allocator
/// cannot report a failure). Each operation computes an upper bound of what it will allocate
/// (its `workingBytes`) and calls `require` first; loading requires room for each tensor's
/// copies before reading it.
///
/// `require` maps the bytes (writable, private, so strict overcommit charges them) and unmaps
/// them at once: it catches an address-space limit (`ulimit -v`, RLIMIT_AS), strict overcommit
/// and requests larger than the machine. Memory taken by other processes after the check,
/// under the kernel's default overcommit, is the kernel's to police (its OOM killer).
public enum WorkingMemory {
    /// Throws `outOfMemory` saying `what` needed the memory when the system would refuse
    /// `bytes` more now, with room to spare for work split over `threads` threads.
    public static func require(_ bytes: Int, threads: Int = 1, for what: @autoclosure () -> String) throws {
        #if canImport(Glibc)
        // The memory itself, writable (so strict overcommit charges it), and while it is mapped the
        // worker threads' room as address space alone (arenas and stacks are reserved, not committed).
        let asked = sum(bytes, slack), threadRoom = threads > 1 ? product(threads, perThread) : 0
        func refused() -> DalleError {
            .outOfMemory("\(what()) needs \(megabytes(bytes)) of working memory and \(megabytes(slack + threadRoom)) to spare, which the system refused")
        }
        guard let memory = mmap(nil, asked, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), memory != MAP_FAILED else {
            throw refused()
        }
        defer { munmap(memory, asked) }
        guard threadRoom > 0 else { return }
        guard let room = mmap(nil, threadRoom, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), room != MAP_FAILED else {
            throw refused()
        }
        munmap(room, threadRoom)
        #endif
    }

    /// Room asked beyond every estimate for the small allocations around the work: the calling
    /// thread's GEMM workspace, bookkeeping, the caller's own.
    static let slack = 16 << 20
    /// And, when work is split, for each of up to `threads` worker threads beside the caller (the
    /// system's thread pool may wake that many): its stack, its GEMM workspace and a new malloc
    /// arena, for which glibc maps 128 MiB of address space (and keeps the aligned 64 MiB of it).
    static let perThread = 144 << 20

    /// The sum of `terms`, or `Int.max` when it overflows (a request no system grants).
    static func sum(_ terms: Int...) -> Int {
        terms.reduce(0) { total, term in
            let (s, overflow) = total.addingReportingOverflow(max(term, 0))
            return overflow ? Int.max : s
        }
    }

    /// The product of `factors`, or `Int.max` when it overflows.
    static func product(_ factors: Int...) -> Int { product(factors) }

    static func product(_ factors: [Int]) -> Int {
        factors.reduce(1) { total, factor in
            let (p, overflow) = total.multipliedReportingOverflow(by: max(factor, 0))
            return overflow ? Int.max : p
        }
    }

    private static func megabytes(_ bytes: Int) -> String {
        bytes >= 1 << 20 ? "\(bytes >> 20) MiB" : "\(bytes) bytes"
    }
}
