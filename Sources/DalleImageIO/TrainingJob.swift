import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// One training command, as the CLI (`dalle train`) and the C API (`dalle_train`) give it:
/// which stage, on what data, written where. The output file is a checkpoint that is also a
/// loadable bundle; when it already holds a checkpoint of the same stage, training resumes
/// from it (the options must be the same).
public struct TrainingJob {
    /// "tokenizer", "dvae", "transformer" or "clip".
    public var stage: String
    /// "shapes" for the Shapes World, "shapes-near-misses" for it with every caption followed by a
    /// near miss (hard negatives for CLIP, see `ShapesWorldSource.nearMisses`), "shapes-defects" for
    /// it with two defect images of each picture as CLIP's hard negatives (`ShapesWorldSource.defects`), each of the
    /// three optionally with ":SINGLE,COUNTING,RELATION" template weights (`shapesData`); a judged candidate
    /// set FILE.safetensors (`ShapesWorld.CandidateSet`: a model's own candidates, the failing ones
    /// hard negatives for CLIP, see `CandidateSetSource`; several, comma-separated, are joined), or a folder of NAME.png images with
    /// NAME.txt captions.
    public var data: String
    public var outputPath: String
    /// A model file (bundle or checkpoint) whose weights and configuration start a new run
    /// (fine-tuning, with a fresh optimizer); ignored when resuming.
    public var initPath: String?
    /// Trained tokenizer (transformer and CLIP stages) and dVAE (transformer stage) files.
    public var tokenizerPath: String?
    public var dvaePath: String?
    /// Model configuration overrides, keys without the stage prefix ("dim" → "transformer.dim");
    /// ignored when resuming (the checkpoint's configuration wins).
    public var config: [String: String] = [:]
    public var options = TrainingOptions()
    /// Ids of a trained tokenizer.
    public var vocabularySize = 1024
    /// dVAE only: schedule settings by name — "kl-weight" (final KL weight, the paper's 6.6),
    /// "anneal" (fraction of the run over which τ goes 1 → 1/16), "kl-warmup", "noise-warmup",
    /// "noise" (the Gumbel noise's full scale, 0 for none),
    /// "fixed-scale", "hard" (fractions, see `DVAEStage`), "usage" and "usage-floor" (the
    /// codebook-usage term's weight and the code count it keeps); how a fresh model starts:
    /// "logit-init" (standard deviation of its logit weights, see `TrainableDVAE.Initialisation`)
    /// and "kmeans" (seed its codebook by k-means over the cells of this many training images,
    /// see `TrainableDVAE.seedCodebook`).
    public var dvaeSchedule: [String: Float] = [:]

    /// `dvaeSchedule` from "name=number,..." (numbers ≥ 0; names are checked when the job runs).
    public static func parseSchedule(_ text: String) throws -> [String: Float] {
        var schedule: [String: Float] = [:]
        for pair in text.split(separator: ",") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2, let value = Float(kv[1]), value.isFinite, value >= 0 else {
                throw DalleError.invalidArgument("the dVAE schedule takes name=number pairs (numbers ≥ 0) separated by commas, got '\(pair)'")
            }
            schedule[kv[0]] = value
        }
        return schedule
    }
    public var threads = 0
    /// Stop after this step of the schedule (nil: run it to the end); the checkpoint resumes.
    public var stopStep: Int?

    public init(stage: String, data: String, outputPath: String) {
        self.stage = stage
        self.data = data
        self.outputPath = outputPath
    }

    /// Runs the job. `log` receives human-readable lines (data warnings, start, resume, end);
    /// `progress` sees every step and returns false to stop early (after a checkpoint).
    /// Returns whether training reached its last step.
    @discardableResult
    public func run(log: (String) -> Void, progress: (TrainingProgress) -> Bool) throws -> Bool {
        guard TrainingSetup.stages.contains(stage) else {
            throw DalleError.invalidArgument("unknown training stage '\(stage)' (stages: \(TrainingSetup.stages.joined(separator: ", ")))")
        }
        let pool = ThreadPool(threads: threads)
        let imageTokenizer = try dvaePath.map { try DalleModel(path: $0).requireImageTokenizer() }
        let tokenizer = try tokenizerPath.map { path -> Tokenizer in
            guard let t = try DalleModel(path: path).tokenizer else { throw DalleError.invalidArgument("\(path) holds no tokenizer") }
            return t
        }
        if stage == "tokenizer" {
            let data = try dataSplit(imageSize: ShapesWorld.imageSize, log: log)
            let trained = try TrainingSetup.trainTokenizer(data.training, vocabularySize: vocabularySize)
            // Shapes World data (any of its variants) follows that caption grammar.
            let grammar = try Self.shapesData(self.data) != nil ? PromptVocabulary.shapesWorldGrammar : nil
            let vocabulary = try TrainingSetup.vocabulary(data.training, grammar: grammar)
            try TrainingSetup.writeTokenizer(trained, vocabulary: vocabulary, to: outputPath)
            log("tokenizer with \(trained.vocabularySize) ids (\(trained.merges.count) merges) and a vocabulary of \(vocabulary.words.count) words written to \(outputPath)")
            return true
        }
        let existing = access(outputPath, F_OK) == 0 ? try SafetensorsFile(path: outputPath) : nil
        if let existing, existing.metadata["training.stage"] == nil {
            throw DalleError.invalidArgument("\(outputPath) exists and is not a training checkpoint; choose another output file")
        }
        let initial = existing == nil ? try initPath.map { try SafetensorsFile(path: $0) } : nil
        var configuration = existing?.metadata ?? initial?.metadata ?? TrainingSetup.defaults(stage)
        if existing == nil, initial == nil { for (key, value) in config { configuration[stage + "." + key] = value } }
        // Images at the size the model reads: the dVAE's own, the transformer's dVAE's, CLIP's resolution.
        let sizeKey = stage == "dvae" ? "dvae.image_size" : "clip.image_resolution"
        let imageSize = imageTokenizer?.imageSize ?? configuration[sizeKey].flatMap { Int($0) } ?? ShapesWorld.imageSize
        let data = try dataSplit(imageSize: imageSize, log: log)
        let trainingStage = try TrainingSetup.stage(stage, config: configuration, checkpoint: existing ?? initial, seed: options.seed,
                                                    tokenizer: tokenizer, imageTokenizer: imageTokenizer, pool: pool,
                                                    dvaeInit: .init(logitStd: dvaeSchedule["logit-init"] ?? 0))
        if let dvae = trainingStage as? DVAEStage {
            for (key, value) in dvaeSchedule {
                switch key {
                case "kl-weight": dvae.maxKLWeight = value
                case "anneal": dvae.annealFraction = value
                case "kl-warmup": dvae.klWarmupFraction = value
                case "noise-warmup": dvae.noiseWarmupFraction = value
                case "noise": dvae.noiseScale = value
                case "fixed-scale": dvae.fixedScaleFraction = value
                case "hard": dvae.hardFraction = value
                case "usage": dvae.usageWeight = value
                case "usage-floor": dvae.usageFloor = value
                case "logit-init", "kmeans": break
                default: throw DalleError.invalidArgument("unknown dVAE schedule setting '\(key)' (kl-weight, anneal, kl-warmup, noise-warmup, noise, fixed-scale, hard, usage, usage-floor, logit-init, kmeans)")
                }
            }
        }
        if let dvae = trainingStage as? DVAEStage, existing == nil, initial == nil, let images = dvaeSchedule["kmeans"], images >= 1 {
            guard images <= 4096, images == images.rounded() else {
                throw DalleError.invalidArgument("dVAE schedule setting 'kmeans' must be a whole number of images up to 4096, got \(images)")
            }
            let codes = try dvae.seedCodebook(from: (0..<Int(images)).map { try data.training.example(at: $0) }, pool: pool)
            log("codebook seeded by k-means over the cells of \(Int(images)) training images: \(codes) codes in use")
        }
        let trainer = try Trainer(stage: trainingStage, training: data.training, validation: data.validation, options: options, pool: pool)
        if let existing {
            try trainer.resume(from: existing)
            log("resuming \(stage) from step \(trainer.step) of \(outputPath)")
        }
        if let initPath, existing == nil { log("starting from the weights of \(initPath)") }
        log("training \(stage) (\(trainingStage.parameters.scalarCount) parameters) for \(options.steps) steps of \(options.batchSize) on \(pool.threads) threads")
        let finished = try trainer.run(checkpointPath: outputPath, stopStep: stopStep, progress: progress)
        log(finished ? "\(stage) written to \(outputPath)" : "stopped at step \(trainer.step); checkpoint in \(outputPath)")
        return finished
    }

    /// The Shapes World source a data string names — "shapes", "shapes-near-misses" or "shapes-defects",
    /// optionally followed by ":SINGLE,COUNTING,RELATION" template weights (default 1,1,2; checked by
    /// `ShapesWorldSource`) — or nil for other data.
    static func shapesData(_ data: String) throws -> (String, ShapesWorld.TemplateMix)? {
        let parts = data.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard ["shapes", "shapes-near-misses", "shapes-defects"].contains(parts[0]) else { return nil }
        guard parts.count == 2 else { return (parts[0], .standard) }
        let weights = parts[1].split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
        guard weights.count == 3, let single = weights[0], let counting = weights[1], let relation = weights[2] else {
            throw DalleError.invalidArgument("\(parts[0]) takes template weights as ':SINGLE,COUNTING,RELATION' (e.g. '\(parts[0]):1,2,1'), got '\(data)'")
        }
        return (parts[0], ShapesWorld.TemplateMix(single: single, counting: counting, relation: relation))
    }

    func dataSplit(imageSize: Int, log: (String) -> Void) throws -> TrainingSplit {
        if let (name, mix) = try Self.shapesData(data) {
            return try ShapesWorldSource(seed: options.seed, mix: mix, imageSize: imageSize, nearMisses: name == "shapes-near-misses",
                                         defects: name == "shapes-defects" ? 2 : 0)
                .trainingAndValidation(validationCount: 256)
        }
        let files = data.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        if files.allSatisfy({ $0.hasSuffix(".safetensors") }) {
            let set = try ShapesWorld.CandidateSet(joining: try files.map { try ShapesWorld.CandidateSet(path: $0) })
            log("\(set.captions.count) captions with \(set.candidatesPerCaption) judged candidates each from \(data)")
            return try CandidateSetSource(set: set, imageSize: imageSize).trainingAndValidation(validationFraction: 0.05)
        }
        let folder = try FolderSource(directory: data, imageSize: imageSize, threads: threads)
        for warning in folder.warnings { log("warning: \(warning)") }
        log("\(folder.count) captioned images from \(data)")
        return try folder.trainingAndValidation(validationFraction: 0.05)
    }
}
