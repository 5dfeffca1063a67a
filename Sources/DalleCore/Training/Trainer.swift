#if canImport(Glibc)
import Glibc
#endif

/// Hyper-parameters of a training run.
public struct TrainingOptions: Sendable, Equatable {
    public var steps = 1000
    public var batchSize = 16
    public var learningRate: Float = 1e-3
    public var warmupSteps = 100
    public var weightDecay: Float = 0.01
    /// Gradients are rescaled to at most this global L2 norm.
    public var gradientClip: Float = 1
    public var seed: UInt64 = 0
    /// Held-out examples for the validation loss.
    public var validationCount = 64
    /// Steps between validation losses and between checkpoints (0 = only at the end).
    public var validateEvery = 100
    public var checkpointEvery = 100
    /// Parameters whose names start with one of these prefixes are not updated (e.g. "clip.transformer."
    /// holds CLIP's text tower fixed while its image tower learns to match it).
    public var frozenPrefixes: [String] = []
    /// Transformer only: the share of training examples whose caption is replaced by the empty one,
    /// so the model also learns the unconditional stream that classifier-free guidance
    /// (`GenerationOptions.condScale`) contrasts with (DALLE-pytorch's `null_cond_prob`).
    public var captionDropout: Float = 0
    /// CLIP only: near misses of each Shapes World caption (`ShapesWorld.nearMissCaptions`, up to
    /// this many, 0...8) added to its example as hard negatives on the text side, so every image
    /// is trained to score its caption above the same caption with one colour, shape, size,
    /// number or relation changed. Drawn by the example's position in the run alone.
    public var captionNegatives = 0

    public init() {}

    func isFrozen(_ name: String) -> Bool { frozenPrefixes.contains { name.hasPrefix($0) } }

    /// Checks that the options describe a run that can take place.
    public func validate() throws {
        guard steps >= 1, steps <= 100_000_000 else { throw DalleError.invalidArgument("steps must be in 1...100000000, got \(steps)") }
        guard batchSize >= 1, batchSize <= 4096 else { throw DalleError.invalidArgument("batch size must be in 1...4096, got \(batchSize)") }
        guard learningRate > 0, learningRate.isFinite, learningRate < 1 else {
            throw DalleError.invalidArgument("learning rate must be in (0, 1), got \(learningRate)")
        }
        guard warmupSteps >= 0, validationCount >= 0, validateEvery >= 0, checkpointEvery >= 0 else {
            throw DalleError.invalidArgument("warm-up steps, validation count and intervals must not be negative")
        }
        guard weightDecay >= 0, gradientClip > 0 else { throw DalleError.invalidArgument("weight decay must be ≥ 0 and the gradient clip > 0") }
        guard captionDropout >= 0, captionDropout < 1 else {
            throw DalleError.invalidArgument("caption dropout must be in [0, 1), got \(captionDropout)")
        }
        guard (0...8).contains(captionNegatives) else {
            throw DalleError.invalidArgument("caption negatives must be in 0...8, got \(captionNegatives)")
        }
    }
}

/// What the progress callback sees after each step.
public struct TrainingProgress: Sendable {
    public var step: Int
    public var totalSteps: Int
    public var loss: Float
    /// Stage-specific values (e.g. "nll", "kl", "tau"; "text", "image").
    public var values: [(String, Float)]
    /// The latest validation loss, if one was computed.
    public var validationLoss: Float?
    public var learningRate: Float
    public var gradientNorm: Float
    public var examplesPerSecond: Double
    public var secondsLeft: Double

    /// One line: step, losses, throughput and ETA.
    public var line: String {
        func f(_ x: Float) -> String { x.isFinite ? String(Double(Int((Double(x) * 10000).rounded())) / 10000) : "\(x)" }
        let parts = values.map { "\($0.0) \(f($0.1))" }.joined(separator: " ")
        let eta = Int(secondsLeft.rounded())
        let val = validationLoss.map { " | val \(f($0))" } ?? ""
        return "step \(step)/\(totalSteps) | loss \(f(loss)) (\(parts))\(val) | lr \(learningRate) | \(Int(examplesPerSecond.rounded())) ex/s | ETA \(eta / 60)m\(eta % 60)s"
    }
}

/// Runs a `TrainingStage` over a data source: batches in a fixed order (endless sources in
/// index order, finite ones in a seeded shuffle per epoch), AdamW with warm-up and cosine decay,
/// gradient clipping, periodic validation, and checkpoints from which `run` resumes exactly.
///
/// A checkpoint is a libdalle bundle holding the stage's component (loadable as a model) plus
/// the optimizer state ("optimizer.m." / "optimizer.v." tensors) and "training.*" metadata.
public final class Trainer {
    public let stage: TrainingStage
    public let training: TrainingDataSource
    public let validation: TrainingDataSource
    public let options: TrainingOptions
    public let pool: ThreadPool
    let optimizer: AdamW
    public private(set) var step = 0
    /// The shuffled order of the last epoch `exampleIndex` drew from, kept for its next example.
    private var epochOrder: (epoch: Int, order: [Int])?

    public init(stage: TrainingStage, training: TrainingDataSource, validation: TrainingDataSource,
                options: TrainingOptions, pool: ThreadPool) throws {
        try options.validate()
        guard training.count > 0 else { throw DalleError.invalidArgument("the training data holds no examples") }
        self.stage = stage
        self.training = training
        self.validation = validation
        self.options = options
        self.pool = pool
        optimizer = AdamW(weightDecay: options.weightDecay)
        guard options.captionDropout == 0 || stage.component == "transformer" else {
            throw DalleError.invalidArgument("caption dropout is for the transformer stage, not the \(stage.component)")
        }
        guard options.captionNegatives == 0 || stage.component == "clip" else {
            throw DalleError.invalidArgument("caption negatives are for the clip stage, not the \(stage.component)")
        }
        for prefix in options.frozenPrefixes where !stage.parameters.names.contains(where: { $0.hasPrefix(prefix) }) {
            throw DalleError.invalidArgument("no parameter of the \(stage.component) starts with '\(prefix)' (its names begin "
                + "'\(stage.component).'); nothing to freeze")
        }
        for (name, v) in stage.parameters.all { v.requiresGrad = !options.isFrozen(name) }
    }

    var schedule: LearningRateSchedule {
        LearningRateSchedule(peak: options.learningRate, warmupSteps: options.warmupSteps, totalSteps: options.steps)
    }

    /// Index into the training source of the i-th example of all batches, and the pass over the
    /// source (epoch) it belongs to.
    func exampleIndex(_ position: Int) -> (index: Int, epoch: Int) {
        let count = training.count
        if count == Int.max { return (position, 0) }
        let epoch = position / count, offset = position % count
        if let cached = epochOrder, cached.epoch == epoch { return (cached.order[offset], epoch) }
        var rng = SplitMix64(seed: options.seed ^ (0xE90C &* UInt64(epoch + 1)))
        var order = Array(0..<count)
        for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        epochOrder = (epoch, order)
        return (order[offset], epoch)
    }

    /// The examples of step `step`, each caption dropped (made empty) with probability
    /// `captionDropout` and given `captionNegatives` near-miss captions, decided by the example's
    /// position in the run alone.
    func batch(at step: Int) throws -> [TrainingExample] {
        try (0..<options.batchSize).map { i in
            let position = step * options.batchSize + i
            let (index, epoch) = exampleIndex(position)
            var example = try training.example(at: index, epoch: epoch)
            if options.captionDropout > 0 {
                var rng = SplitMix64(seed: options.seed ^ 0xD309_CA97 ^ UInt64(position))
                if Float(rng.next() >> 40) / Float(1 << 24) < options.captionDropout { example.caption = "" }
            }
            example.negativeCaptions += ShapesWorld.nearMissCaptions(of: example.caption, count: options.captionNegatives,
                                                                     seed: options.seed, index: UInt64(position))
            return example
        }
    }

    public func validationLoss() throws -> Float? {
        let n = min(options.validationCount, validation.count)
        guard n > 0 else { return nil }
        return try stage.validationLoss((0..<n).map { try validation.example(at: $0) }, pool: pool)
    }

    /// Trains from the current step to `options.steps` (or to `stopStep` of that schedule, if
    /// earlier), writing checkpoints to `checkpointPath` (if any). `progress` returns false to
    /// stop early; a checkpoint is written first, so nothing is lost. Returns whether the run
    /// reached its last step.
    @discardableResult
    public func run(checkpointPath: String?, stopStep: Int? = nil, progress: (TrainingProgress) -> Bool) throws -> Bool {
        var validation: Float? = nil
        let start = monotonicSeconds(), firstStep = step, end = min(stopStep ?? options.steps, options.steps)
        while step < end {
            let examples = try batch(at: step)
            let (loss, values) = try stage.lossAndGradients(examples, step: step, totalSteps: options.steps, pool: pool)
            guard loss.isFinite else {
                throw DalleError.invalidArgument("the loss became \(loss) at step \(step); lower the learning rate")
            }
            let norm = stage.parameters.clipGradients(maxNorm: options.gradientClip)
            let lr = schedule.rate(at: step)
            optimizer.update(stage.parameters, learningRate: lr)
            stage.afterUpdate()
            step += 1
            let last = step == options.steps
            if last || (options.validateEvery > 0 && step % options.validateEvery == 0) { validation = try validationLoss() }
            let elapsed = monotonicSeconds() - start, done = Double(step - firstStep)
            let report = TrainingProgress(step: step, totalSteps: options.steps, loss: loss, values: values,
                                          validationLoss: validation, learningRate: lr, gradientNorm: norm,
                                          examplesPerSecond: done * Double(options.batchSize) / max(elapsed, 1e-9),
                                          secondsLeft: elapsed / done * Double(options.steps - step))
            let keepGoing = progress(report)
            if let checkpointPath, last || !keepGoing || step == end || (options.checkpointEvery > 0 && step % options.checkpointEvery == 0) {
                try saveCheckpoint(to: checkpointPath)
            }
            if !keepGoing { return false }
        }
        return step == options.steps
    }

    // MARK: Checkpoints

    static let optionKeys = ["steps", "batch_size", "learning_rate", "warmup_steps", "weight_decay", "gradient_clip", "seed", "frozen", "caption_dropout",
                             "caption_negatives"]

    var optionValues: [String] { Trainer.values(of: options) }

    static func values(of o: TrainingOptions) -> [String] {
        [String(o.steps), String(o.batchSize), String(o.learningRate), String(o.warmupSteps), String(o.weightDecay),
         String(o.gradientClip), String(o.seed), o.frozenPrefixes.joined(separator: ","), String(o.captionDropout),
         String(o.captionNegatives)]
    }

    /// Writes the model, the optimizer state and the position in the run (atomically, as every
    /// `SafetensorsWriter` file).
    public func saveCheckpoint(to path: String) throws {
        var writer = SafetensorsWriter()
        writer.metadata = stage.metadata
        writer.metadata["format"] = DalleModel.formatName
        writer.metadata["format_version"] = String(DalleModel.formatVersion)
        writer.metadata["components"] = stage.component
        writer.metadata["training.stage"] = stage.component
        writer.metadata["training.step"] = String(step)
        writer.metadata["training.adam_step"] = String(optimizer.step)
        for (key, value) in zip(Trainer.optionKeys, optionValues) { writer.metadata["training." + key] = value }
        for (name, v) in stage.parameters.all {
            let shape = v.shape
            try writer.add(name, Tensor(uncheckedShape: shape, scalars: v.value))
            if let m = optimizer.firstMoments[name], let s = optimizer.secondMoments[name] {
                try writer.add("optimizer.m." + name, Tensor(uncheckedShape: shape, scalars: m))
                try writer.add("optimizer.v." + name, Tensor(uncheckedShape: shape, scalars: s))
            }
        }
        for (name, tensor) in stage.parameters.buffers { try writer.add(name, tensor) }
        try writer.write(to: path)
    }

    /// Restores the optimizer state and step from a checkpoint written by `saveCheckpoint` for
    /// the same stage and options (the model's values must already come from that file).
    public func resume(from file: SafetensorsFile) throws {
        let m = file.metadata
        guard m["training.stage"] == stage.component else {
            throw DalleError.invalidArgument("the checkpoint is for stage '\(m["training.stage"] ?? "none")', not '\(stage.component)'")
        }
        // Checkpoints from before an option was recorded ran with its default.
        let defaults = Trainer.values(of: TrainingOptions())
        for ((key, value), original) in zip(zip(Trainer.optionKeys, optionValues), defaults) where m["training." + key] ?? original != value {
            throw DalleError.invalidArgument("the checkpoint was made with \(key) = \(m["training." + key] ?? "?"), this run has \(value); resume with the same options")
        }
        guard let saved = m["training.step"].flatMap(Int.init), saved >= 0, saved <= options.steps,
              let adam = m["training.adam_step"].flatMap(Int.init), adam >= 0 else {
            throw DalleError.badFile("the checkpoint's training.step / training.adam_step is missing or out of range")
        }
        for (name, v) in stage.parameters.all {
            if file.names.contains("optimizer.m." + name) {
                optimizer.firstMoments[name] = try file.tensor("optimizer.m." + name, shape: v.shape).scalars
                optimizer.secondMoments[name] = try file.tensor("optimizer.v." + name, shape: v.shape).scalars
            }
        }
        optimizer.step = adam
        step = saved
    }
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
