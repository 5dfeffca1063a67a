#if canImport(Glibc)
import Glibc
#endif

/// Adam with decoupled weight decay (Loshchilov & Hutter), applied to a `ParameterSet`; the
/// moments are kept per parameter in declaration order so checkpoints can store them.
public final class AdamW {
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    public var weightDecay: Float
    /// Updates taken so far (the bias correction's t).
    public internal(set) var step = 0
    var firstMoments: [String: [Float]] = [:]
    var secondMoments: [String: [Float]] = [:]

    public init(weightDecay: Float) { self.weightDecay = weightDecay }

    /// One update with learning rate `lr` from the accumulated gradients (then cleared).
    public func update(_ parameters: ParameterSet, learningRate lr: Float) {
        step += 1
        let correction1 = 1 - powf(beta1, Float(step)), correction2 = 1 - powf(beta2, Float(step))
        for (name, v) in parameters.all {
            guard !v.grad.isEmpty else { continue }
            var m = firstMoments[name] ?? [Float](repeating: 0, count: v.count)
            var s = secondMoments[name] ?? [Float](repeating: 0, count: v.count)
            let decay = parameters.noDecay.contains(name) ? 0 : lr * weightDecay
            var value = v.value
            let (b1, b2, eps) = (beta1, beta2, epsilon)
            v.grad.withUnsafeBufferPointer { g in
                for i in 0..<v.count {
                    m[i] = b1 * m[i] + (1 - b1) * g[i]
                    s[i] = b2 * s[i] + (1 - b2) * g[i] * g[i]
                    value[i] -= decay * value[i] + lr * (m[i] / correction1) / ((s[i] / correction2).squareRoot() + eps)
                }
            }
            v.setValue(value)
            firstMoments[name] = m
            secondMoments[name] = s
        }
        parameters.zeroGrad()
    }
}

extension ParameterSet {
    /// Scales all gradients so their global L2 norm is at most `maxNorm`; returns the norm before.
    @discardableResult
    public func clipGradients(maxNorm: Float) -> Float {
        var total: Double = 0
        for (_, v) in all { for g in v.grad { total += Double(g) * Double(g) } }
        let norm = Float(total.squareRoot())
        if norm > maxNorm, norm.isFinite {
            let scale = maxNorm / norm
            for (_, v) in all where !v.grad.isEmpty {
                v.accumulateGrad { g in for i in 0..<v.count { g[i] *= scale } }
            }
        }
        return norm
    }
}

/// Linear warm-up to the peak rate, then cosine decay to `peak · finalRatio` at `total` steps.
public struct LearningRateSchedule: Sendable, Equatable {
    public var peak: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var finalRatio: Float = 0.1

    public init(peak: Float, warmupSteps: Int, totalSteps: Int, finalRatio: Float = 0.1) {
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.totalSteps = totalSteps
        self.finalRatio = finalRatio
    }

    public func rate(at step: Int) -> Float {
        if step < warmupSteps { return peak * Float(step + 1) / Float(warmupSteps) }
        let progress = min(1, Float(step - warmupSteps) / Float(max(1, totalSteps - warmupSteps)))
        return peak * (finalRatio + (1 - finalRatio) * 0.5 * (1 + cosf(Float.pi * progress)))
    }
}
