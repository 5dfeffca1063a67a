import DalleCore
import DalleImageIO
#if canImport(Glibc)
import Glibc
#endif

/// `dalle train --stage tokenizer|dvae|transformer|clip --data shapes|DIR --out FILE [...]`:
/// trains one component and writes it (with its optimizer state) to FILE, a checkpoint that is
/// also a loadable bundle. When FILE already holds a checkpoint of the same stage and options,
/// training resumes from it.
func train(_ arguments: Arguments) throws {
    let configKeys = ["config"]
    try arguments.check(allowed: ["stage", "data", "out", "tokenizer", "dvae", "steps", "batch", "lr", "warmup", "weight-decay",
                                  "clip-grad", "seed", "threads", "validation", "every", "vocab", "kl-weight"] + configKeys, maxPositional: 0)
    let stageName = try arguments.required("stage"), out = try arguments.required("out")
    let pool = ThreadPool(threads: try arguments.threads())
    let seed = try integer(arguments, "seed", default: 0, 0...Int.max)
    let data = try dataSource(arguments, imageSize: try imageSize(arguments, stage: stageName))

    if stageName == "tokenizer" {
        let vocab = try integer(arguments, "vocab", default: 1024, BPETrainer.baseVocabularySize...65536)
        let tokenizer = try TrainingSetup.trainTokenizer(data.training, vocabularySize: vocab)
        try TrainingSetup.writeTokenizer(tokenizer, to: out)
        fputs("dalle: tokenizer with \(tokenizer.vocabularySize) ids (\(tokenizer.merges.count) merges) written to \(out)\n", stderr)
        return
    }

    var options = TrainingOptions()
    options.steps = try integer(arguments, "steps", default: 1000, 1...100_000_000)
    options.batchSize = try integer(arguments, "batch", default: 16, 1...4096)
    options.warmupSteps = try integer(arguments, "warmup", default: min(200, options.steps / 10), 0...100_000_000)
    options.seed = UInt64(seed)
    options.validationCount = try integer(arguments, "validation", default: 64, 0...100_000)
    options.validateEvery = try integer(arguments, "every", default: 100, 0...100_000_000)
    options.checkpointEvery = options.validateEvery
    options.learningRate = try real(arguments, "lr", default: 1e-3)
    options.weightDecay = try real(arguments, "weight-decay", default: 0.01)
    options.gradientClip = try real(arguments, "clip-grad", default: 1)

    let tokenizer = try arguments.options["tokenizer"].map { path -> Tokenizer in
        guard let t = try DalleModel(path: path).tokenizer else { throw DalleError.invalidArgument("\(path) holds no tokenizer") }
        return t
    }
    let imageTokenizer = try arguments.options["dvae"].map { try DalleModel(path: $0).requireImageTokenizer() }

    // Resume when `out` is a checkpoint of this stage; otherwise start from the configuration.
    let existing = access(out, F_OK) == 0 ? try SafetensorsFile(path: out) : nil
    if let existing, existing.metadata["training.stage"] == nil {
        throw DalleError.invalidArgument("\(out) exists and is not a training checkpoint; choose another --out")
    }
    var config = existing?.metadata ?? TrainingSetup.defaults(stageName)
    if existing == nil, let overrides = arguments.options["config"] {
        for pair in overrides.split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw UsageError("--config takes key=value pairs separated by commas, got '\(pair)'") }
            config[stageName + "." + kv[0]] = kv[1]
        }
    }
    let stage = try TrainingSetup.stage(stageName, config: config, checkpoint: existing, seed: UInt64(seed),
                                        tokenizer: tokenizer, imageTokenizer: imageTokenizer, pool: pool)
    if let dvaeStage = stage as? DVAEStage, let beta = arguments.options["kl-weight"] {
        guard let value = Float(beta), value >= 0 else { throw UsageError("--kl-weight must be a number ≥ 0, got '\(beta)'") }
        dvaeStage.maxKLWeight = value
    }
    let trainer = try Trainer(stage: stage, training: data.training, validation: data.validation, options: options, pool: pool)
    if let existing {
        try trainer.resume(from: existing)
        fputs("dalle: resuming \(stageName) from step \(trainer.step) of \(out)\n", stderr)
    }
    fputs("dalle: training \(stageName) (\(stage.parameters.scalarCount) parameters) for \(options.steps) steps of \(options.batchSize) on \(pool.threads) threads\n", stderr)
    try trainer.run(checkpointPath: out) { progress in
        fputs("\r\u{1B}[K" + progress.line + (progress.step % max(1, options.validateEvery) == 0 || progress.step == progress.totalSteps ? "\n" : ""), stderr)
        return true
    }
    fputs("dalle: \(stageName) written to \(out)\n", stderr)
}

/// `dalle bundle --out FILE [--dtype f16] PART...`: joins the components of trained parts into one model.
func bundle(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["out", "dtype"], maxPositional: 16)
    let out = try arguments.required("out")
    let dtype: DType
    switch arguments.options["dtype"] ?? "f16" {
    case "f32": dtype = .f32
    case "f16": dtype = .f16
    case "bf16": dtype = .bf16
    case let other: throw UsageError("--dtype must be f32, f16 or bf16, got '\(other)'")
    }
    guard !arguments.positional.isEmpty else { throw UsageError("bundle needs the trained parts (tokenizer, dvae, transformer, clip files)") }
    try TrainingSetup.assembleBundle(try arguments.positional.map { try SafetensorsFile(path: $0) }, dtype: dtype, to: out)
    let model = try DalleModel(path: out)
    fputs("dalle: bundle with \(model.components) written to \(out)\n", stderr)
}

/// The image side a stage trains on: 64 for the Shapes World defaults, else the dVAE's.
private func imageSize(_ arguments: Arguments, stage: String) throws -> Int {
    if let path = arguments.options["dvae"] { return try DalleModel(path: path).requireImageTokenizer().imageSize }
    return ShapesWorld.imageSize
}

private func dataSource(_ arguments: Arguments, imageSize: Int) throws -> TrainingSplit {
    let data = try arguments.required("data")
    let seed = UInt64(try integer(arguments, "seed", default: 0, 0...Int.max))
    if data == "shapes" {
        return try ShapesWorldSource(seed: seed, imageSize: imageSize).trainingAndValidation(validationCount: 256)
    }
    let folder = try FolderSource(directory: data, imageSize: imageSize, threads: try arguments.threads())
    for warning in folder.warnings { fputs("dalle: warning: \(warning)\n", stderr) }
    fputs("dalle: \(folder.count) captioned images from \(data)\n", stderr)
    return try folder.trainingAndValidation(validationFraction: 0.05)
}

private func integer(_ arguments: Arguments, _ name: String, default value: Int, _ range: ClosedRange<Int>) throws -> Int {
    guard let text = arguments.options[name] else { return value }
    guard let n = Int(text), range.contains(n) else { throw UsageError("--\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(text)'") }
    return n
}

private func real(_ arguments: Arguments, _ name: String, default value: Float) throws -> Float {
    guard let text = arguments.options[name] else { return value }
    guard let x = Float(text), x.isFinite, x >= 0 else { throw UsageError("--\(name) must be a number ≥ 0, got '\(text)'") }
    return x
}
