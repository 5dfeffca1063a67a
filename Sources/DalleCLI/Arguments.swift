/// A command line split into a subcommand, its `--name value` options and positional arguments.
/// Hand-written: the CLI is small and takes no package dependencies.
struct Arguments: Equatable {
    var command: String?
    var options: [String: String] = [:]
    var positional: [String] = []
    var wantsHelp = false
    var wantsVersion = false

    /// Options that take no value (`--grid`); they are stored with the value "true".
    static let flags: Set<String> = ["grid"]

    /// Parses `args` (without the program name). Options are `--name value` or `--name=value`, flags
    /// (`flags`) just `--name`; `-h`/`--help` anywhere asks for help, `--version` for the version; `--` ends option parsing.
    /// Throws `UsageError` for an option missing its value or given twice.
    init(_ args: [String]) throws {
        var i = 0
        var optionsEnded = false
        while i < args.count {
            let arg = args[i]
            i += 1
            if optionsEnded || !arg.hasPrefix("-") || arg == "-" {
                if command == nil { command = arg } else { positional.append(arg) }
            } else if arg == "--" {
                optionsEnded = true
            } else if arg == "-h" || arg == "--help" {
                wantsHelp = true
            } else if arg == "--version" {
                wantsVersion = true
            } else if arg.hasPrefix("--"), arg.count > 2 {
                var name = String(arg.dropFirst(2)), value: String
                if let eq = name.firstIndex(of: "=") {
                    value = String(name[name.index(after: eq)...])
                    name = String(name[..<eq])
                    if Arguments.flags.contains(name) { throw UsageError("option --\(name) takes no value") }
                } else if Arguments.flags.contains(name) {
                    value = "true"
                } else {
                    guard i < args.count else { throw UsageError("option --\(name) needs a value") }
                    value = args[i]
                    i += 1
                }
                guard options[name] == nil else { throw UsageError("option --\(name) is given twice") }
                options[name] = value
            } else {
                throw UsageError("unknown option '\(arg)'")
            }
        }
    }

    /// Throws unless every option given is in `allowed` and at most `maxPositional` positional arguments follow the command.
    func check(allowed: [String], maxPositional: Int) throws {
        for name in options.keys.sorted() where !allowed.contains(name) {
            throw UsageError("unknown option --\(name) for '\(command ?? "")'")
        }
        if positional.count > maxPositional {
            throw UsageError("unexpected argument '\(positional[maxPositional])'")
        }
    }

    /// The value of a required option.
    func required(_ name: String) throws -> String {
        guard let value = options[name], !value.isEmpty else { throw UsageError("missing --\(name)") }
        return value
    }

    /// Whether the flag `--name` was given.
    func flag(_ name: String) -> Bool { options[name] != nil }

    /// `--threads N` (0, the default, uses every core).
    func threads() throws -> Int {
        guard let text = options["threads"] else { return 0 }
        guard let n = Int(text), n >= 0, n <= 4096 else {
            throw UsageError("--threads must be an integer from 0 (all cores) to 4096, got '\(text)'")
        }
        return n
    }
}

/// A mistake in the command line; the CLI prints it with a pointer to `--help`.
struct UsageError: Error, Equatable {
    let message: String
    init(_ message: String) { self.message = message }
}
