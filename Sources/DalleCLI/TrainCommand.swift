import DalleCore
import DalleImageIO
#if canImport(Glibc)
import Glibc
#endif

/// `dalle train --stage tokenizer|dvae|transformer|clip --data shapes|DIR --out FILE [...]`:
/// trains one component (see `TrainingJob`); FILE is a checkpoint, resumed when it exists.
func train(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["stage", "data", "out", "tokenizer", "dvae", "steps", "batch", "lr", "warmup", "weight-decay",
                                  "clip-grad", "seed", "threads", "validation", "every", "vocab", "kl-weight", "dvae-schedule", "config", "init", "stop-at", "freeze", "caption-dropout",
                                  "caption-negatives"], maxPositional: 0)
    var job = TrainingJob(stage: try arguments.required("stage"), data: try arguments.required("data"), outputPath: try arguments.required("out"))
    job.tokenizerPath = arguments.options["tokenizer"]
    job.dvaePath = arguments.options["dvae"]
    job.initPath = arguments.options["init"]
    job.threads = try arguments.threads()
    job.vocabularySize = try integer(arguments, "vocab", default: 1024, BPETrainer.baseVocabularySize...65536)
    if arguments.options["kl-weight"] != nil { job.dvaeSchedule["kl-weight"] = try real(arguments, "kl-weight", default: 6.6) }
    do {
        for (key, value) in try TrainingJob.parseSchedule(arguments.options["dvae-schedule"] ?? "") { job.dvaeSchedule[key] = value }
    } catch DalleError.invalidArgument(let message) {
        throw UsageError("--dvae-schedule: \(message)")
    }
    for pair in (arguments.options["config"] ?? "").split(separator: ",") {
        let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
        guard kv.count == 2 else { throw UsageError("--config takes key=value pairs separated by commas, got '\(pair)'") }
        job.config[kv[0]] = kv[1]
    }
    var options = TrainingOptions()
    options.steps = try integer(arguments, "steps", default: 1000, 1...100_000_000)
    options.batchSize = try integer(arguments, "batch", default: 16, 1...4096)
    options.warmupSteps = try integer(arguments, "warmup", default: min(200, options.steps / 10), 0...100_000_000)
    options.seed = UInt64(try integer(arguments, "seed", default: 0, 0...Int.max))
    options.validationCount = try integer(arguments, "validation", default: 64, 0...100_000)
    options.validateEvery = try integer(arguments, "every", default: 100, 0...100_000_000)
    options.checkpointEvery = options.validateEvery
    options.learningRate = try real(arguments, "lr", default: 1e-3)
    options.weightDecay = try real(arguments, "weight-decay", default: 0.01)
    options.gradientClip = try real(arguments, "clip-grad", default: 1)
    options.captionDropout = try real(arguments, "caption-dropout", default: 0)
    options.captionNegatives = try integer(arguments, "caption-negatives", default: 0, 0...8)
    options.frozenPrefixes = (arguments.options["freeze"] ?? "").split(separator: ",").map(String.init)
    job.options = options
    if arguments.options["stop-at"] != nil { job.stopStep = try integer(arguments, "stop-at", default: options.steps, 1...options.steps) }
    // Ctrl-C stops after the current step, with a checkpoint to resume from.
    signal(SIGINT) { _ in trainingInterrupted = true }
    // On a terminal, the line is redrawn after every step and kept at each validation. In a log
    // file, only those lines are written (every tenth of the run without validation), with the
    // training losses averaged over the steps since the previous line.
    let terminal = isatty(2) != 0, every = options.validateEvery > 0 ? options.validateEvery : max(1, options.steps / 10)
    var sinceLastLine = LossAverage()
    try job.run(log: { fputs("dalle: \($0)\n", stderr) }) { progress in
        let keep = progress.step % every == 0 || progress.step == progress.totalSteps || trainingInterrupted
        if terminal {
            fputs("\r\u{1B}[K" + progress.line + (keep ? "\n" : ""), stderr)
        } else {
            sinceLastLine.add(progress)
            if keep { fputs(sinceLastLine.applied(to: progress).line + "\n", stderr); sinceLastLine = LossAverage() }
        }
        return !trainingInterrupted
    }
}

/// Training losses summed over steps, for a log line that shows their mean.
struct LossAverage {
    private var steps = 0, loss = 0.0, values: [Double] = []

    mutating func add(_ progress: TrainingProgress) {
        if values.count != progress.values.count { values = [Double](repeating: 0, count: progress.values.count) }
        steps += 1
        loss += Double(progress.loss)
        for (i, value) in progress.values.enumerated() { values[i] += Double(value.1) }
    }

    /// `progress` with its loss and stage values replaced by the means.
    func applied(to progress: TrainingProgress) -> TrainingProgress {
        guard steps > 0 else { return progress }
        var averaged = progress
        averaged.loss = Float(loss / Double(steps))
        averaged.values = progress.values.enumerated().map { ($0.element.0, Float(values[$0.offset] / Double(steps))) }
        return averaged
    }
}

let trainUsage = """
    train --stage S --data D --out FILE [options]
      trains one component, S: tokenizer, dvae, transformer or clip. FILE is a checkpoint,
      resumed when it exists. D: shapes (the Shapes World); shapes-near-misses (each caption
      then a near miss) or shapes-defects (each picture with two defect images), as CLIP's hard
      negatives; :S,C,R after any of them weighs the one object, counting and relation
      templates (default 1,1,2); judged candidate sets (dalle candidates; A.safetensors,
      B.safetensors); or a folder of NAME.png + NAME.txt
      --tokenizer F, --dvae F   trained tokenizer / dVAE files (transformer and clip stages; CLIP
                                with a dVAE trains on its reconstructions, the kind it reranks)
      --steps N --batch N --lr X --warmup N --weight-decay X --clip-grad X --seed S --threads N
      --validation N            held-out examples for the validation loss (default 64)
      --every N                 steps between validation losses and checkpoints (default 100)
      --vocab N                 tokenizer ids (tokenizer stage, default 1024)
      --kl-weight X             dVAE: final KL weight (default 6.6)
      --dvae-schedule k=v,...   dVAE: anneal (τ 1 → 1/16 over this fraction, 0.3), kl-warmup (0.1),
                                noise-warmup (0.6), noise (the Gumbel noise's full scale, 1;
                                0 with hard=0: the decoder reads the argmax codes, as at inference),
                                fixed-scale (b ≥ 1 for this fraction, 0.2),
                                hard (straight-through samples from this fraction on, 1 = never),
                                usage (weight of the codebook-usage term, 0 = off), usage-floor
                                (the term acts while the batch uses fewer codes' worth, all),
                                logit-init (std of a fresh encoder's logit weights, 0),
                                kmeans (seed a fresh codebook by k-means over the cells of
                                this many training images, 0 = off)
      --config k=v,...          model configuration, e.g. dim=256,depth=4 (keys of the stage's bundle metadata)
      --init FILE               start from this model's weights (fine-tuning; a fresh optimizer)
      --freeze PREFIX,...       leave parameters whose names start so unchanged (e.g. clip.transformer.)
      --caption-dropout P       transformer: train this share of examples on the empty caption, for
                                classifier-free guidance (generate --cond-scale), 0
      --caption-negatives K     clip: up to K near misses of each Shapes World caption (one colour,
                                shape, size, number or relation changed) as hard negatives, 0
      --stop-at STEP            stop after this step of the schedule, with a checkpoint (a model
                                file; the same command without --stop-at resumes it)

    """

let bundleUsage = """
    bundle --out FILE [--dtype f16] [--cond-scale C] [--likelihood-weight W] PART...
      joins trained components into one model file, each from the first PART that holds it
      --dtype T            how weights are stored: f16 (default), bf16, f32, or q8 / q4 (the
                           linear layers in GGUF's q8_0 / q4_0 blocks, the rest f16)
      --cond-scale C, --likelihood-weight W   the guidance scale and reranking weight that
                           generate and eval use by default
      --vocabulary V       the words generate warns about prompts outside of: shapes-world (that
                           grammar's), or a FILE of captions, one per line (default: the tokenizer's)

    """

/// Set by SIGINT during `dalle train`.
nonisolated(unsafe) var trainingInterrupted = false

/// `dalle bundle --out FILE [--dtype T] [--cond-scale C] [--likelihood-weight W] PART...`: joins the components of trained parts into one model.
func bundle(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["out", "dtype", "cond-scale", "likelihood-weight", "vocabulary"], maxPositional: 16)
    let out = try arguments.required("out")
    let dtype: DType, quantization: QuantizedType?
    switch arguments.options["dtype"] ?? "f16" {
    case "f32": (dtype, quantization) = (.f32, nil)
    case "f16": (dtype, quantization) = (.f16, nil)
    case "bf16": (dtype, quantization) = (.bf16, nil)
    case "q8", "q8_0": (dtype, quantization) = (.f16, .q8_0)
    case "q4", "q4_0": (dtype, quantization) = (.f16, .q4_0)
    case let other: throw UsageError("--dtype must be f32, f16, bf16, q8 or q4, got '\(other)'")
    }
    guard !arguments.positional.isEmpty else { throw UsageError("bundle needs the trained parts (tokenizer, dvae, transformer, clip files)") }
    func finite(_ name: String) throws -> Float? {
        try arguments.options[name].map { text -> Float in
            guard let x = Float(text), x.isFinite else { throw UsageError("--\(name) must be a finite number, got '\(text)'") }
            return x
        }
    }
    let vocabulary = try arguments.options["vocabulary"].map { name -> PromptVocabulary in
        if name == PromptVocabulary.shapesWorldGrammar { return PromptVocabulary.shapesWorld }
        let text = try readTextFile(name)
        let captions = text.split(whereSeparator: \.isNewline).map(String.init)
        guard !captions.isEmpty else { throw UsageError("--vocabulary \(name) holds no captions") }
        return PromptVocabulary(captions: captions)
    }
    try TrainingSetup.assembleBundle(try arguments.positional.map { try SafetensorsFile(path: $0) }, dtype: dtype,
                                     quantization: quantization, to: out, condScale: try finite("cond-scale"), likelihoodWeight: try finite("likelihood-weight"),
                                     vocabulary: vocabulary)
    let model = try DalleModel(path: out)
    fputs("dalle: bundle with \(model.components) written to \(out)\n", stderr)
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

/// The UTF-8 text of the file at `path`.
private func readTextFile(_ path: String) throws -> String {
    guard let file = fopen(path, "rb") else { throw DalleError.io("cannot open \(path): \(String(cString: strerror(errno)))") }
    defer { fclose(file) }
    var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, file) }
        if n == 0 { break }
        bytes += chunk[0..<n]
    }
    guard ferror(file) == 0 else { throw DalleError.io("cannot read \(path)") }
    return String(decoding: bytes, as: UTF8.self)
}
