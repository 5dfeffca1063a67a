/// A diffusers or transformers `config.json`, read field by field; errors name the part and the key.
struct DiffusersConfig {
    let value: JSONValue
    /// How messages name the part: "prior", "text_encoder", …
    let part: String

    /// `badFile` when `text` is not a JSON object.
    init(json text: String, part: String) throws {
        do { value = try JSONValue.parse(text) } catch { throw DalleError.badFile("\(part) config is not JSON: \(error)") }
        guard value.objectValue != nil else { throw DalleError.badFile("\(part) config is not a JSON object") }
        self.part = part
    }

    subscript(key: String) -> JSONValue? { value[key] }

    /// The integer `key`; `badFile` when absent, not an integer or outside `range`.
    func int(_ key: String, _ range: ClosedRange<Int>) throws -> Int {
        guard let n = value[key]?.exactInteger, range.contains(n) else {
            throw DalleError.badFile("\(part) config: '\(key)' is \(value[key]?.serialized() ?? "absent"), "
                + "expected an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    /// `unsupported` when `key` is present with another value than `allowed`.
    func expect(_ key: String, _ allowed: JSONValue, _ what: String? = nil) throws {
        if let v = value[key], v != allowed {
            throw DalleError.unsupported("\(part) config: \(key) = \(v.serialized()) (this port supports \(what ?? allowed.serialized()))")
        }
    }
}
