/// The trainable tensors of a model, by their bundle names, in a fixed order (the order in
/// which the model declared them), so optimizer state and checkpoints line up.
public final class ParameterSet {
    public private(set) var names: [String] = []
    private var byName: [String: Variable] = [:]
    /// Names of tensors that take no weight decay (biases, norms, embeddings, scales).
    private(set) var noDecay: Set<String> = []

    public init() {}

    /// Declares `name` with `shape`, its values read from `source` (which may make them up).
    @discardableResult
    func declare(_ name: String, _ shape: [Int], from source: WeightStore, decay: Bool) throws -> Variable {
        guard byName[name] == nil else { throw DalleError.invalidArgument("parameter '\(name)' declared twice") }
        let v = Variable.parameter(try source.tensor(name, shape: shape).scalars, shape: shape)
        names.append(name)
        byName[name] = v
        if !decay { noDecay.insert(name) }
        return v
    }

    /// Constant tensors the model file needs beside its parameters (a rotary table): saved
    /// with them, never updated.
    public private(set) var buffers: [(name: String, tensor: Tensor)] = []

    func declareBuffer(_ name: String, _ tensor: Tensor) {
        buffers.append((name, tensor))
    }

    public subscript(name: String) -> Variable? { byName[name] }

    /// The parameter called `name`; a name the model never declared is an error, never an empty stand-in.
    public func named(_ name: String) throws -> Variable {
        guard let v = byName[name] else {
            throw DalleError.invalidArgument("no parameter '\(name)' among the \(names.count) of this model")
        }
        return v
    }

    /// Parameters in declaration order.
    public var all: [(name: String, variable: Variable)] { names.compactMap { n in byName[n].map { (n, $0) } } }

    public var scalarCount: Int { all.reduce(0) { $0 + $1.variable.count } }

    /// Current values as tensors under their bundle names, with the buffers.
    public var tensors: [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, v) in all { out[name] = Tensor(uncheckedShape: v.shape, scalars: v.value) }
        for (name, t) in buffers { out[name] = t }
        return out
    }

    public func zeroGrad() { for (_, v) in all { v.zeroGrad() } }

    /// Adds Σ scales[i] · shadows[i]'s gradient to each parameter's gradient, the shadows in
    /// their order (each parameter's sum on one thread: the result does not depend on the pool).
    func accumulateGradients(from shadows: ArraySlice<ParameterSet>, scales: [Float], pool: ThreadPool) {
        let parameters = all.filter(\.variable.requiresGrad)
        pool.parallelForEach(parameters.count) { i in
            let (name, v) = parameters[i]
            for (shadow, scale) in zip(shadows, scales) {
                guard let g = shadow[name]?.grad, !g.isEmpty else { continue }
                v.accumulateGrad { dv in withPointers(g) { gs in for j in 0..<g.count { dv[j] += scale * gs[j] } } }
            }
        }
    }

    /// The same parameters as new variables that share these values (nothing is copied) and
    /// keep gradients of their own: a micro-batch computes on a shadow while others run beside
    /// it, and the trainer then sums the shadows' gradients in a fixed order.
    func shadow() -> ParameterSet {
        let copy = ParameterSet()
        copy.names = names
        copy.noDecay = noDecay
        for (name, v) in byName { copy.byName[name] = Variable(v.value, shape: v.shape, requiresGrad: v.requiresGrad) }
        return copy
    }
}

/// A `WeightStore` that makes up initial values: normal with a per-tensor standard deviation
/// and mean chosen by `rule` from the name and shape, from a seeded generator, in the order asked.
final class InitializingStore: WeightStore {
    private var rng: SplitMix64
    private let rule: (String, [Int]) -> (mean: Float, std: Float)
    private(set) var made: [String: Tensor] = [:]

    init(seed: UInt64, rule: @escaping (String, [Int]) -> (mean: Float, std: Float)) {
        rng = SplitMix64(seed: seed)
        self.rule = rule
    }

    var names: [String] { made.keys.sorted() }

    func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        if let t = made[name] { return t }
        let (mean, std) = rule(name, shape)
        let n = shape.reduce(1, *)
        let t = Tensor(uncheckedShape: shape, scalars: (0..<n).map { _ in std == 0 ? mean : mean + std * Float(rng.nextGaussian()) })
        made[name] = t
        return t
    }
}
