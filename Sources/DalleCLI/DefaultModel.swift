import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// The shipped default model's file name.
let defaultModelName = "shapes-world.safetensors"

extension Arguments {
    /// `--model PATH`, or the default model when none is given: `$DALLE_MODEL`, then the
    /// installed one (`bin/dalle` -> `../share/dalle/models/`), then `models/` beside the
    /// checkout (build/bin/dalle -> ../../models/), then in the current directory. Throws
    /// saying where it looked when none is there.
    func modelPath() throws -> String {
        if let path = options["model"] {
            guard !path.isEmpty else { throw UsageError("--model is empty") }
            return path
        }
        if let path = getenv("DALLE_MODEL").map({ String(cString: $0) }), !path.isEmpty {
            guard access(path, R_OK) == 0 else {
                throw RunError("DALLE_MODEL is \(path), which cannot be read: \(String(cString: strerror(errno)))")
            }
            return path
        }
        var candidates: [String] = []
        if let prefix = executableAncestor(2) { candidates.append(prefix + "/share/dalle/models/" + defaultModelName) }
        if let checkout = executableAncestor(3) { candidates.append(checkout + "/models/" + defaultModelName) }
        candidates.append("models/" + defaultModelName)
        if let found = candidates.first(where: { access($0, R_OK) == 0 }) { return found }
        throw RunError("no --model given and no default model found; looked at $DALLE_MODEL (unset), "
            + candidates.joined(separator: ", ") + ". Pass --model PATH or set DALLE_MODEL.")
    }
}

/// The directory `levels` steps above the running executable (1: the one holding it;
/// PREFIX/bin/dalle -> 2: PREFIX).
private func executableAncestor(_ levels: Int) -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard length > 0 else { return nil }
    var path = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    for _ in 0..<levels {
        guard let slash = path.lastIndex(of: "/") else { return nil }
        path = String(path[..<slash])
    }
    return path
}
