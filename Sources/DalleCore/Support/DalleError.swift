/// Every failure inside libdalle. The C boundary maps each case to a `dalle_status`
/// code and keeps the message as the context's (or the thread's) last error.
public enum DalleError: Error, Equatable, CustomStringConvertible {
    /// A caller passed a bad value: a NULL pointer, a wrong size, a token out of range.
    case invalidArgument(String)
    /// A model file is malformed: truncated, bad JSON, offsets out of range, wrong shapes.
    case badFile(String)
    /// The file or request is well formed but asks for something this build does not do.
    case unsupported(String)
    /// Reading or writing a file failed.
    case io(String)
    /// An allocation failed or a size is too large to allocate.
    case outOfMemory(String)
    /// A progress or abort callback asked to stop.
    case cancelled

    public var description: String {
        switch self {
        case .invalidArgument(let m): return "invalid argument: \(m)"
        case .badFile(let m): return "bad model file: \(m)"
        case .unsupported(let m): return "unsupported: \(m)"
        case .io(let m): return "i/o error: \(m)"
        case .outOfMemory(let m): return "out of memory: \(m)"
        case .cancelled: return "cancelled"
        }
    }
}
