/// One component's configuration inside a bundle's flat `__metadata__`
/// (`"dvae.n_hid": "256"`): typed reads and range checks whose errors name the key.
public struct ComponentMetadata {
    public let metadata: [String: String]
    /// The key prefix, without its dot: "dvae", "transformer", "clip".
    public let component: String
    /// How messages name the component: "dVAE", "transformer", "CLIP".
    public let label: String

    public init(_ metadata: [String: String], component: String, label: String) {
        self.metadata = metadata
        self.component = component
        self.label = label
    }

    /// The raw value of `component.key`, or nil when absent.
    public func optional(_ key: String) -> String? { metadata[component + "." + key] }

    /// The value of `component.key`; `badFile` when absent.
    public func text(_ key: String) throws -> String {
        guard let value = optional(key) else { throw DalleError.badFile("\(label) metadata lacks '\(component).\(key)'") }
        return value
    }

    public func int(_ key: String) throws -> Int {
        let value = try text(key)
        guard let n = Int(value) else { throw malformed(key, value, "is not an integer") }
        return n
    }

    /// "true"/"1" or "false"/"0"; `defaultValue` when absent.
    public func bool(_ key: String, default defaultValue: Bool) throws -> Bool {
        guard let value = optional(key) else { return defaultValue }
        switch value {
        case "true", "1": return true
        case "false", "0": return false
        default: throw malformed(key, value, "is not a boolean")
        }
    }

    /// A comma-separated list, items trimmed; nil when absent.
    public func list(_ key: String) -> [String]? {
        optional(key).map { $0.split(separator: ",").map { $0.trimmingSpaces() } }
    }

    /// A comma-separated list of integers; nil when absent.
    public func ints(_ key: String) throws -> [Int]? {
        try list(key)?.map { item in
            guard let n = Int(item) else { throw malformed(key, item, "holds a non-integer") }
            return n
        }
    }

    /// A comma-separated list of finite numbers.
    public func floats(_ key: String) throws -> [Float] {
        try text(key).split(separator: ",").map { $0.trimmingSpaces() }.map { item in
            guard let v = Float(item), v.isFinite else { throw malformed(key, item, "holds a non-number") }
            return v
        }
    }

    /// `badFile` naming the field when `value` is outside `range`.
    public func check(_ name: String, _ value: Int, _ range: ClosedRange<Int>) throws {
        guard range.contains(value) else {
            throw DalleError.badFile("\(label) '\(name)' is \(value), expected \(range.lowerBound)...\(range.upperBound)")
        }
    }

    private func malformed(_ key: String, _ value: String, _ problem: String) -> DalleError {
        .badFile("\(label) metadata '\(component).\(key)' \(problem): '\(value)'")
    }
}
