import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// Whole-file reads and writes with Glibc.
enum FileIO {
    static func read(path: String) throws -> [UInt8] {
        guard let file = fopen(path, "rb") else { throw DalleError.io("cannot open \(path): \(errnoMessage())") }
        defer { fclose(file) }
        return try readAll(file, name: path)
    }

    static func readStandardInput() throws -> [UInt8] { try readAll(stdin, name: "standard input") }

    static func writeStandardOutput(_ bytes: [UInt8]) throws {
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, stdout) }
        guard written == bytes.count, fflush(stdout) == 0 else {
            throw DalleError.io("cannot write standard output: \(errnoMessage())")
        }
    }

    private static func readAll(_ file: UnsafeMutablePointer<FILE>, name path: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
            bytes.append(contentsOf: chunk[0..<n])
            if n < chunk.count {
                if ferror(file) != 0 { throw DalleError.io("cannot read \(path): \(errnoMessage())") }
                return bytes
            }
        }
    }

    static func write(_ bytes: [UInt8], path: String) throws {
        guard let file = fopen(path, "wb") else { throw DalleError.io("cannot create \(path): \(errnoMessage())") }
        let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
        let closed = fclose(file)
        guard written == bytes.count, closed == 0 else { throw DalleError.io("cannot write \(path): \(errnoMessage())") }
    }

    private static func errnoMessage() -> String { String(cString: strerror(errno)) }
}
