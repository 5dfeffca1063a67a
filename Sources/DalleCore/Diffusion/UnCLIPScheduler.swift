#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Diffusers' `UnCLIPScheduler`: the DDPM sampler Karlo (DALL·E 2) uses for its prior, decoder and
/// super-resolution stages, computed in Float in the reference's order of operations.
///
/// - ᾱ table: `squaredcos_cap_v2` (β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999) with
///   ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), in Double, then rounded to Float; ᾱ the running product).
/// - Skipping steps: β is recomputed per step as 1 − ᾱ_t/ᾱ_prev (the table's β when prev = t − 1).
/// - Variance: `fixed_small_log` (σ = exp(½·log(max(β̃, 1e-20))), β̃ = (1 − ᾱ_prev)/(1 − ᾱ_t)·β) or
///   `learned_range` (the model's extra channels v pick log σ² = f·log β + (1 − f)·log β̃, f = (v + 1)/2).
public struct UnCLIPScheduler: Sendable {
    public enum VarianceType: String, Sendable, Equatable {
        case fixedSmallLog = "fixed_small_log"
        case learnedRange = "learned_range"
    }

    public enum PredictionType: String, Sendable, Equatable {
        /// The model predicts the noise ε.
        case epsilon
        /// The model predicts the clean sample x₀ itself.
        case sample
    }

    /// The fields of diffusers' `scheduler_config.json` that change the arithmetic.
    public struct Configuration: Sendable, Equatable {
        public var trainTimesteps: Int
        public var varianceType: VarianceType
        public var predictionType: PredictionType
        public var clipSample: Bool
        public var clipSampleRange: Float

        public init(trainTimesteps: Int = 1000, varianceType: VarianceType = .fixedSmallLog,
                    predictionType: PredictionType = .epsilon, clipSample: Bool = true, clipSampleRange: Float = 1) {
            self.trainTimesteps = trainTimesteps
            self.varianceType = varianceType
            self.predictionType = predictionType
            self.clipSample = clipSample
            self.clipSampleRange = clipSampleRange
        }

        /// Karlo's three (as diffusers' `convert_kakao_brain_unclip_to_diffusers.py` builds them).
        public static let karloPrior = Configuration(varianceType: .fixedSmallLog, predictionType: .sample, clipSampleRange: 5)
        public static let karloDecoder = Configuration(varianceType: .learnedRange, predictionType: .epsilon)
        public static let karloSuperResolution = Configuration(varianceType: .fixedSmallLog, predictionType: .epsilon)

        /// Reads a diffusers `scheduler_config.json`; absent fields take diffusers' defaults.
        /// Throws `badFile` for a field of the wrong type or value, `unsupported` for another beta schedule.
        public init(json text: String) throws {
            let value: JSONValue
            do { value = try JSONValue.parse(text) } catch { throw DalleError.badFile("scheduler config: \(error)") }
            guard value.objectValue != nil else { throw DalleError.badFile("scheduler config is not a JSON object") }
            self.init()
            if let v = value["num_train_timesteps"] {
                guard let n = v.exactInteger else { throw DalleError.badFile("scheduler config: num_train_timesteps is not an integer") }
                trainTimesteps = n
            }
            if let v = value["variance_type"] {
                guard let s = v.stringValue, let t = VarianceType(rawValue: s) else {
                    throw DalleError.unsupported("scheduler config: variance_type \(v.serialized()) (fixed_small_log or learned_range)")
                }
                varianceType = t
            }
            if let v = value["prediction_type"] {
                guard let s = v.stringValue, let t = PredictionType(rawValue: s) else {
                    throw DalleError.unsupported("scheduler config: prediction_type \(v.serialized()) (epsilon or sample)")
                }
                predictionType = t
            }
            if let v = value["clip_sample"] {
                guard case .bool(let b) = v else { throw DalleError.badFile("scheduler config: clip_sample is not a boolean") }
                clipSample = b
            }
            if let v = value["clip_sample_range"] {
                guard case .number(let d) = v else { throw DalleError.badFile("scheduler config: clip_sample_range is not a number") }
                clipSampleRange = Float(d)
            }
            if let v = value["beta_schedule"], v != .string("squaredcos_cap_v2") {
                throw DalleError.unsupported("scheduler config: beta_schedule \(v.serialized()) (only squaredcos_cap_v2)")
            }
        }
    }

    /// The largest `trainTimesteps` accepted.
    public static let maxTrainTimesteps = 100_000

    public let configuration: Configuration
    /// β_t, α_t = 1 − β_t and ᾱ_t = Π α, each as Float (index t = 0 … T − 1).
    public let betas: [Float]
    public let alphas: [Float]
    public let alphasCumprod: [Float]

    /// Builds the tables; throws `invalidArgument` for T outside 2 … 100 000 or a clip range
    /// that is not finite and positive.
    public init(_ configuration: Configuration) throws {
        let t = configuration.trainTimesteps
        guard t >= 2, t <= Self.maxTrainTimesteps else {
            throw DalleError.invalidArgument("unCLIP scheduler: num_train_timesteps \(t) outside 2...\(Self.maxTrainTimesteps)")
        }
        guard configuration.clipSampleRange.isFinite, configuration.clipSampleRange > 0 else {
            throw DalleError.invalidArgument("unCLIP scheduler: clip_sample_range \(configuration.clipSampleRange) is not a positive number")
        }
        self.configuration = configuration
        func alphaBar(_ s: Double) -> Double { pow(cos((s + 0.008) / 1.008 * Double.pi / 2), 2) }
        betas = (0..<t).map { i in
            Float(min(1 - alphaBar(Double(i + 1) / Double(t)) / alphaBar(Double(i) / Double(t)), 0.999))
        }
        alphas = betas.map { 1 - $0 }
        // torch.cumprod on the CPU carries the running product in double.
        var product = 1.0
        alphasCumprod = alphas.map { product *= Double($0); return Float(product) }
    }

    /// The timesteps of an `count`-step run, noisiest first: round(i·(T − 1)/(count − 1)) for
    /// i = count − 1 … 0, rounding halves to even as numpy does (25 steps: 999, 957, …, 0).
    ///
    /// `count == 1` gives [T − 1]: diffusers' `set_timesteps(1)` raises ZeroDivisionError; one step
    /// from pure noise, taken to `previousTimestep: -1`, predicts x₀ directly. Throws
    /// `invalidArgument` for counts below 1 or above T (more steps than timesteps would repeat some).
    public func timesteps(count: Int) throws -> [Int] {
        let t = configuration.trainTimesteps
        guard count >= 1, count <= t else {
            throw DalleError.invalidArgument("unCLIP scheduler: \(count) steps (1 to \(t))")
        }
        if count == 1 { return [t - 1] }
        let ratio = Double(t - 1) / Double(count - 1)
        return (0..<count).reversed().map { Int((Double($0) * ratio).rounded(.toNearestOrEven)) }
    }

    /// Whether `step` adds noise (and so needs `noise`): t > 0 and a previous timestep ≥ 0.
    ///
    /// Diffusers also draws noise at t > 0 when stepping straight to −1 (only when called that way;
    /// its pipeline's last step is t = 0), but its variance there is 0 (1e-10 for
    /// `fixed_small_log`): no noise is taken then.
    public static func addsNoise(timestep: Int, previousTimestep: Int) -> Bool { timestep > 0 && previousTimestep >= 0 }

    public struct StepResult: Sendable, Equatable {
        /// x_prev, the next step's sample; the shape of `sample`.
        public var previousSample: Tensor
        /// The predicted x₀ after clipping.
        public var predictedOriginalSample: Tensor
    }

    /// One reverse step from `timestep` to `previousTimestep` (nil: `timestep − 1`, as diffusers'
    /// `prev_timestep=None`, using the table's β), exactly as diffusers' `UnCLIPScheduler.step`.
    ///
    /// `sample` is [B, C, …]; `modelOutput` has its shape, or for `learned_range` 2C channels along
    /// dimension 1 (the predicted noise or x₀, then the variance values). `noise` (the shape of
    /// `sample`) is required where `addsNoise` says so, checked and ignored elsewhere.
    /// Throws `invalidArgument` for timesteps out of range, mismatched shapes, missing noise or
    /// values that are not finite.
    public func step(modelOutput: Tensor, timestep t: Int, sample: Tensor, previousTimestep: Int? = nil,
                     noise: Tensor? = nil) throws -> StepResult {
        let prev = previousTimestep ?? t - 1
        let train = configuration.trainTimesteps
        guard t >= 0, t < train else { throw DalleError.invalidArgument("unCLIP step: timestep \(t) outside 0..<\(train)") }
        guard prev >= -1, prev < t else {
            throw DalleError.invalidArgument("unCLIP step: previous timestep \(prev) outside -1..<\(t)")
        }
        guard sample.rank >= 2, sample.shape.allSatisfy({ $0 > 0 }) else {
            throw DalleError.invalidArgument("unCLIP step: sample of shape \(sample.shape) (want [batch, channels, ...])")
        }
        var expected = sample.shape
        if configuration.varianceType == .learnedRange { expected[1] *= 2 }
        guard modelOutput.shape == expected else {
            throw DalleError.invalidArgument("unCLIP step: model output of shape \(modelOutput.shape), expected \(expected)"
                + (configuration.varianceType == .learnedRange ? " (learned_range: the sample's channels twice)" : ""))
        }
        let needsNoise = Self.addsNoise(timestep: t, previousTimestep: prev)
        if let noise, noise.shape != sample.shape {
            throw DalleError.invalidArgument("unCLIP step: noise of shape \(noise.shape), expected \(sample.shape)")
        }
        if needsNoise && noise == nil {
            throw DalleError.invalidArgument("unCLIP step: timestep \(t) adds noise, and none was given")
        }
        let checked = [("model output", modelOutput), ("sample", sample)] + (needsNoise ? noise.map { [("noise", $0)] } ?? [] : [])
        for (name, tensor) in checked {
            if let i = tensor.scalars.firstIndex(where: { !$0.isFinite }) {
                throw DalleError.invalidArgument("unCLIP step: \(name) holds \(tensor.scalars[i]) at index \(i)")
            }
        }

        // 1. ᾱ, β (0-d float32 tensors in the reference).
        let alphaProdT = alphasCumprod[t]
        let alphaProdPrev: Float = prev >= 0 ? alphasCumprod[prev] : 1
        let betaProdT = 1 - alphaProdT
        let betaProdPrev = 1 - alphaProdPrev
        let beta: Float, alpha: Float
        if prev == t - 1 {
            (beta, alpha) = (betas[t], alphas[t])
        } else {
            beta = 1 - alphaProdT / alphaProdPrev
            alpha = 1 - beta
        }
        // 2–5. Predicted x₀ (clipped), then the posterior mean.
        let originalCoefficient = (alphaProdPrev.squareRoot() * beta) / betaProdT
        let sampleCoefficient = (alpha.squareRoot() * betaProdPrev) / betaProdT
        let sqrtBetaProdT = betaProdT.squareRoot(), sqrtAlphaProdT = alphaProdT.squareRoot()
        let range = configuration.clipSampleRange
        let inner = sample.count / sample.shape[0]  // one batch item's values
        let outputStride = modelOutput.count / sample.shape[0]
        var original = [Float](repeating: 0, count: sample.count)
        var previous = [Float](repeating: 0, count: sample.count)
        // 6. The posterior variance (t > 0): log β̃ and log β for learned_range, σ for fixed_small_log.
        let posteriorVariance = betaProdPrev / betaProdT * beta
        let fixedStd = expf(0.5 * logf(max(posteriorVariance, 1e-20)))
        let minLog = logf(posteriorVariance), maxLog = logf(beta)
        modelOutput.scalars.withUnsafeBufferPointer { out in
            sample.scalars.withUnsafeBufferPointer { x in
                for b in 0..<sample.shape[0] {
                    for j in 0..<inner {
                        let i = b * inner + j, o = b * outputStride + j
                        var x0: Float
                        switch configuration.predictionType {
                        case .epsilon: x0 = (x[i] - sqrtBetaProdT * out[o]) / sqrtAlphaProdT
                        case .sample: x0 = out[o]
                        }
                        if configuration.clipSample { x0 = min(max(x0, -range), range) }
                        original[i] = x0
                        var mean = originalCoefficient * x0 + sampleCoefficient * x[i]
                        if needsNoise, let noise {
                            let std: Float
                            switch configuration.varianceType {
                            case .fixedSmallLog: std = fixedStd
                            case .learnedRange:
                                let fraction = (out[o + inner] + 1) / 2
                                std = expf(0.5 * (fraction * maxLog + (1 - fraction) * minLog))
                            }
                            mean = mean + std * noise.scalars[i]
                        }
                        previous[i] = mean
                    }
                }
            }
        }
        return StepResult(previousSample: Tensor(uncheckedShape: sample.shape, scalars: previous),
                          predictedOriginalSample: Tensor(uncheckedShape: sample.shape, scalars: original))
    }
}
