import DalleCore

/// A rectangular grid of image-token ids, row-major.
public struct TokenGrid: Equatable, Sendable {
    public let rows: Int
    public let columns: Int
    public let tokens: [Int32]

    /// Throws unless both sizes are positive and `tokens.count == rows * columns`.
    public init(rows: Int, columns: Int, tokens: [Int32]) throws {
        guard rows > 0, columns > 0, let n = Tensor.elementCount([rows, columns]), n == tokens.count else {
            throw DalleError.invalidArgument("a \(rows)x\(columns) token grid needs \(rows)·\(columns) ids, got \(tokens.count)")
        }
        self.rows = rows
        self.columns = columns
        self.tokens = tokens
    }
}

/// Token grids as text, the CLI's token file format: one grid row per line, decimal ids
/// separated by spaces, a newline after every row. Parsing also accepts tabs, CR LF line
/// ends, blank lines and `#` comments to the end of a line.
public enum TokenText {
    /// The largest grid `parse` accepts, in ids.
    public static let maxTokens = 1 << 24

    public static func format(_ grid: TokenGrid) -> String {
        var text = ""
        text.reserveCapacity(grid.tokens.count * 5)
        for r in 0..<grid.rows {
            let row = grid.tokens[(r * grid.columns)..<((r + 1) * grid.columns)]
            text += row.map { String($0) }.joined(separator: " ")
            text += "\n"
        }
        return text
    }

    /// Parses `text`; errors name the line and the offending field.
    public static func parse(_ text: String) throws -> TokenGrid {
        var tokens: [Int32] = []
        var columns = 0, rows = 0
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.prefix { $0 != "#" }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.isEmpty { continue }
            if rows == 0 {
                columns = fields.count
            } else if fields.count != columns {
                throw DalleError.invalidArgument("token file line \(index + 1) has \(fields.count) ids; the first row has \(columns)")
            }
            for field in fields {
                guard let id = Int32(field), id >= 0 else {
                    throw DalleError.invalidArgument("token file line \(index + 1): '\(field.prefix(20))' is not a token id (a non-negative integer)")
                }
                tokens.append(id)
            }
            guard tokens.count <= maxTokens else {
                throw DalleError.invalidArgument("token file holds more than \(maxTokens) ids")
            }
            rows += 1
        }
        guard rows > 0 else { throw DalleError.invalidArgument("token file holds no token ids") }
        return try TokenGrid(rows: rows, columns: columns, tokens: tokens)
    }

    /// Reads and parses the token file at `path` ("-" reads standard input).
    public static func read(path: String) throws -> TokenGrid {
        let bytes = path == "-" ? try FileIO.readStandardInput() : try FileIO.read(path: path)
        do {
            return try parse(String(decoding: bytes, as: UTF8.self))
        } catch DalleError.invalidArgument(let message) {
            throw DalleError.invalidArgument("\(path): \(message)")
        }
    }

    /// Writes `grid` to `path` ("-" writes standard output).
    public static func write(_ grid: TokenGrid, path: String) throws {
        let bytes = Array(format(grid).utf8)
        if path == "-" { try FileIO.writeStandardOutput(bytes) } else { try FileIO.write(bytes, path: path) }
    }
}
