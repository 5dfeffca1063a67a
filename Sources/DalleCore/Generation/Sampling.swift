#if canImport(Glibc)
import Glibc
#endif

/// How the next image token is drawn from the transformer's logits.
public struct SamplingOptions: Sendable, Equatable {
    /// Logits are divided by this before top-p and the draw; must be > 0.
    public var temperature: Float
    /// Keep only the `topK` most likely tokens; 0 keeps all, 1 is greedy decoding.
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches `topP`; in (0, 1], 1 keeps all.
    public var topP: Float

    public init(temperature: Float = 1, topK: Int = 0, topP: Float = 1) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
    }

    /// Throws unless every field is in range.
    public func validate() throws {
        guard temperature.isFinite, temperature > 0 else {
            throw DalleError.invalidArgument("temperature is \(temperature); it must be a finite number > 0 (use top_k 1 for greedy decoding)")
        }
        guard topK >= 0 else { throw DalleError.invalidArgument("top_k is \(topK); it must be >= 0 (0 keeps every token)") }
        guard topP.isFinite, topP > 0, topP <= 1 else {
            throw DalleError.invalidArgument("top_p is \(topP); it must be in (0, 1] (1 keeps every token)")
        }
    }
}

/// A counter-based random stream: the uniform of draw `counter` in stream `stream` depends on
/// nothing else, so candidate `i` of a batch gets the same draws whatever the batch size, the
/// thread count or the order of the work. (SplitMix64's finaliser applied to a keyed counter.)
public struct CounterRandom: Sendable {
    public let seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// A uniform number in [0, 1) with 53 random bits.
    public func uniform(stream: Int, counter: Int) -> Double {
        let key = CounterRandom.mix(seed &+ 0x9E37_79B9_7F4A_7C15 &* UInt64(truncatingIfNeeded: stream &+ 1))
        let bits = CounterRandom.mix(key ^ CounterRandom.mix(UInt64(truncatingIfNeeded: counter) &+ 0xD1B5_4A32_D192_ED03))
        return Double(bits >> 11) * 0x1.0p-53
    }

    static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Top-k / top-p filtering and the draw, on one row of logits.
public enum Sampler {
    /// The tokens that survive filtering, most likely first (ties: lower id first), with their
    /// probabilities after temperature, renormalised over the survivors.
    public static func candidates(_ logits: UnsafeBufferPointer<Float>, options: SamplingOptions) -> [(token: Int, probability: Double)] {
        let count = logits.count
        guard count > 0 else { return [] }
        let inverseTemperature = 1 / Double(options.temperature)
        let keep = options.topK > 0 ? min(options.topK, count) : count
        var order: [Int]
        if keep < count {
            order = topTokens(logits, keep)
        } else {
            order = Array(0..<count)
            if options.topP < 1 { order.sort { moreLikely(logits, $0, $1) } }
        }
        // Softmax over the kept tokens (max-subtracted, in double).
        var maxLogit = -Double.infinity
        for t in order where Double(logits[t]) > maxLogit { maxLogit = Double(logits[t]) }
        if !maxLogit.isFinite { return [(order.min { moreLikely(logits, $0, $1) } ?? 0, 1)] }
        var weights = order.map { exp((Double(logits[$0]) - maxLogit) * inverseTemperature) }
        var total = weights.reduce(0, +)
        if options.topP < 1 {
            // `order` is sorted here: keep the shortest prefix whose mass reaches top_p.
            let target = Double(options.topP) * total
            var mass = 0.0, cut = 0
            while cut < order.count {
                mass += weights[cut]
                cut += 1
                if mass >= target { break }
            }
            order.removeSubrange(cut...)
            weights.removeSubrange(cut...)
            total = mass
        }
        return zip(order, weights).map { ($0, $1 / total) }
    }

    /// The token the uniform number `u` in [0, 1) picks from `logits` after filtering
    /// (inverse CDF over the survivors, most likely first). Top-k 1 is the argmax.
    public static func sample(_ logits: UnsafeBufferPointer<Float>, options: SamplingOptions, uniform u: Double) -> Int {
        let survivors = candidates(logits, options: options)
        var cumulative = 0.0
        for (token, probability) in survivors {
            cumulative += probability
            if u < cumulative { return token }
        }
        return survivors.last?.token ?? 0
    }

    /// log softmax(logits)[token], in Double: the log-probability of `token` before any filtering
    /// (NaN logits count as impossible; -infinity when the token is).
    public static func logProbability(of token: Int, _ logits: UnsafeBufferPointer<Float>) -> Double {
        var maximum = -Double.infinity
        for x in logits where !x.isNaN { maximum = max(maximum, Double(x)) }
        guard maximum.isFinite, !logits[token].isNaN else { return -.infinity }
        var total = 0.0
        for x in logits where !x.isNaN { total += exp(Double(x) - maximum) }
        return Double(logits[token]) - maximum - log(total)
    }

    /// Logit order, most likely first: higher value, then lower id; NaN counts as least likely.
    static func moreLikely(_ logits: UnsafeBufferPointer<Float>, _ a: Int, _ b: Int) -> Bool {
        let x = logits[a].isNaN ? -Float.infinity : logits[a]
        let y = logits[b].isNaN ? -Float.infinity : logits[b]
        return x > y || (x == y && a < b)
    }

    /// The `k` most likely tokens (0 < k < count), most likely first: a selection of the k-th
    /// largest logit (expected linear time), then a sort of the k survivors only.
    static func topTokens(_ logits: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        var values = logits.map { $0.isNaN ? -Float.infinity : $0 }
        // Quickselect: afterwards values[k - 1] is the k-th largest.
        var (lo, hi) = (0, values.count - 1)
        let target = k - 1
        while lo < hi {
            let pivot = values[(lo + hi) / 2]
            var (i, j) = (lo, hi)
            while i <= j {
                while values[i] > pivot { i += 1 }
                while values[j] < pivot { j -= 1 }
                if i <= j { values.swapAt(i, j); i += 1; j -= 1 }
            }
            if target <= j { hi = j } else if target >= i { lo = i } else { break }
        }
        let threshold = values[target]
        var chosen: [Int] = []
        chosen.reserveCapacity(k)
        for t in 0..<logits.count where !logits[t].isNaN && logits[t] > threshold { chosen.append(t) }
        for t in 0..<logits.count where chosen.count < k && (logits[t].isNaN ? -Float.infinity : logits[t]) == threshold {
            chosen.append(t)
        }
        chosen.sort { moreLikely(logits, $0, $1) }
        return chosen
    }
}
