/// A weight store seen under other names, the renaming written as data: each name of `store` that
/// `select` keeps is renamed by `rules` (fragment → replacement, applied in order, each to its
/// first occurrence), given `prefix`, and read as stored (16-bit weights stay views of the file),
/// transposed when its new name (without `prefix`) is in `transposed`, or — when the new name ends
/// in "#i" — as part i of a tensor stacked from parts 0, 1, … along dimension 0 (q, k and v into
/// one projection; an f32 copy). An incomplete stack stays unreadable, so loading reports the
/// tensor missing. `constants` adds tensors no file stores. Serves CLIP checkpoints in Hugging
/// Face's layout and unCLIP's text and image encoders.
struct RemappedWeights: WeightStore {
    struct Source {
        var parts: [String]
        var transpose: Bool
    }

    let store: WeightStore
    /// New name → the stored tensors it reads.
    let sources: [String: Source]
    let rules: [(from: String, to: String)]
    let prefix: String
    let constants: [String: Tensor]
    /// Stacks with a part missing: new name → the parts the store has, by index.
    let incomplete: [String: [Int: String]]

    init(_ store: WeightStore, rules: [(from: String, to: String)], transposed: Set<String> = [], prefix: String = "",
         constants: [String: Tensor] = [:], select: (String) -> Bool = { _ in true }) {
        (self.store, self.rules, self.prefix, self.constants) = (store, rules, prefix, constants)
        var sources: [String: Source] = [:], pieces: [String: [Int: String]] = [:]
        for name in store.names where select(name) {
            var target = name
            for rule in rules {
                if let range = target.firstRange(of: rule.from) { target.replaceSubrange(range, with: rule.to) }
            }
            if let hash = target.lastIndex(of: "#"), let part = Int(target[target.index(after: hash)...]) {
                pieces[prefix + String(target[..<hash]), default: [:]][part] = name
            } else {
                sources[prefix + target] = Source(parts: [name], transpose: transposed.contains(target))
            }
        }
        var incomplete: [String: [Int: String]] = [:]
        for (target, parts) in pieces {
            let ordered = (0..<parts.count).compactMap { parts[$0] }
            if ordered.count == parts.count, stackRules(rules, target: String(target.dropFirst(prefix.count)), part: parts.count).isEmpty {
                sources[target] = Source(parts: ordered, transpose: false)
            } else {
                incomplete[target] = parts
            }
        }
        self.sources = sources
        self.incomplete = incomplete
    }

    var names: [String] { (Array(sources.keys) + Array(constants.keys)).sorted() }

    /// The shape `name` would have, or nil when it is absent or the store is not a file (whose
    /// shapes are known without reading).
    func shape(_ name: String) -> [Int]? {
        if let constant = constants[name] { return constant.shape }
        guard let source = sources[name], let file = store as? SafetensorsFile else { return nil }
        let shapes = source.parts.compactMap { file.info($0)?.shape }
        guard shapes.count == source.parts.count, let first = shapes.first else { return nil }
        if source.transpose { return first.reversed() }
        if shapes.count == 1 { return first }
        guard !first.isEmpty, shapes.allSatisfy({ $0.dropFirst() == first.dropFirst() }) else { return nil }
        return [shapes.reduce(0) { $0 + $1[0] }] + first.dropFirst()
    }

    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        if let constant = constants[name] {
            guard constant.shape == shape else { throw DalleError.badFile("tensor '\(name)' has shape \(constant.shape), expected \(shape)") }
            return constant
        }
        let source = try checkedSource(name, shape: shape)
        if source.transpose {
            let t = try store.tensor(source.parts[0], shape: shape.reversed())
            return Tensor(uncheckedShape: shape, scalars: transposedPlanes(t.scalars, images: 1, rows: shape[1], columns: shape[0], pool: ThreadPool(threads: 1)))
        }
        if source.parts.count == 1 { return try store.tensor(source.parts[0], shape: shape) }
        var part = shape
        part[0] = shape[0] / source.parts.count
        var scalars: [Float] = []
        for name in source.parts { scalars += try store.tensor(name, shape: part).scalars }
        return Tensor(uncheckedShape: shape, scalars: scalars)
    }

    func weight(_ name: String, shape: [Int]) throws -> Weight {
        if constants[name] != nil { return Weight(try tensor(name, shape: shape)) }
        let source = try checkedSource(name, shape: shape)
        if source.parts.count == 1, !source.transpose { return try store.weight(source.parts[0], shape: shape) }
        return Weight(try tensor(name, shape: shape))
    }

    /// The name a new name would be read from, for messages about a missing tensor: the rules undone,
    /// last first; a rule that drops a prefix is undone when the store has names under that prefix
    /// and the guess's first component. Nil when no rule applies.
    private func storedName(_ name: String) -> String? {
        guard name.hasPrefix(prefix) else { return nil }
        var stored = String(name.dropFirst(prefix.count))
        for rule in rules.reversed() where !rule.to.isEmpty {
            if let range = stored.firstRange(of: rule.to) { stored.replaceSubrange(range, with: rule.from) }
        }
        let head = stored.prefix { $0 != "." }
        if let dropped = rules.first(where: { rule in
            rule.to.isEmpty && store.names.contains { $0.hasPrefix(rule.from + head + ".") }
        }) {
            stored = dropped.from + stored
        }
        return stored == String(name.dropFirst(prefix.count)) ? nil : stored
    }

    /// What the file lacks for `name`: its stored name, or the missing parts of a stack.
    private func missing(_ name: String) -> String {
        if let parts = incomplete[name] {
            let stem = String(name.dropFirst(prefix.count))
            let count = (0...(parts.keys.max() ?? 0) + 1).last { !stackRules(rules, target: stem, part: $0).isEmpty } ?? 0
            let absent = (0...count).filter { parts[$0] == nil }.compactMap { storedName(name + "#\($0)") }
            return "missing tensor '\(name)': the file lacks " + absent.map { "'\($0)'" }.joined(separator: ", ")
        }
        return "missing tensor '\(name)'" + (storedName(name).map { " (stored as '\($0)')" } ?? "")
    }

    private func checkedSource(_ name: String, shape: [Int]) throws -> Source {
        guard let source = sources[name] else { throw DalleError.badFile(missing(name)) }
        if store is SafetensorsFile, self.shape(name) != shape {
            let stored = source.parts.map { "'\($0)'" }.joined(separator: ", ")
            throw DalleError.badFile("tensor '\(name)' (stored as \(stored)) has shape \(self.shape(name).map { "\($0)" } ?? "(inconsistent q/k/v parts)"), expected \(shape)")
        }
        let readable = source.transpose ? shape.count == 2 : source.parts.count == 1 || shape.first.map { $0 % source.parts.count == 0 } == true
        guard readable else {
            throw DalleError.badFile("tensor '\(name)' of shape \(shape) cannot be read from \(source.parts)")
        }
        return source
    }
}

/// The rules that make part `part` of the stack `target` (a rule whose replacement ends in "#part"
/// and, without it, ends `target`).
private func stackRules(_ rules: [(from: String, to: String)], target: String, part: Int) -> [(from: String, to: String)] {
    rules.filter { rule in
        guard rule.to.hasSuffix("#\(part)") else { return false }
        return target.hasSuffix(String(rule.to.dropLast("#\(part)".count)))
    }
}
