import DalleCore
#if canImport(Glibc)
import Glibc
#endif

let evalUsage = """
    eval [--model M] [options]
      the Shapes World evaluation: generates candidates for a fixed, seeded set of captions of
      every template and of the held-out pairs, judges every image, and prints the pass rates
      (with CLIP picking the best candidate, the average candidate, any candidate) and the dVAE's
      reconstruction rate as a table
      --candidates N       images per caption (default 8); 0 measures the dVAE's reconstructions
                           alone, and then a model file with only a dVAE will do
      --seed S             seed of the captions, draws and reconstruction images (default 0)
      --per-template N     captions per template (default 50)
      --per-held-out N     captions per held-out colour-shape pair (default 10)
      --reconstruction N   training images run through the dVAE, besides one rendering of
                           each caption (default 200)
      --temperature T, --top-k K, --top-p P, --cond-scale C   sampling, as for generate
                           (the guidance scale defaults to the model's)
      --likelihood-weight W  CLIP's pick, as generate --rerank (default: the model's)

    """

/// `dalle eval`: the Shapes World pass-rate table on stdout, progress on stderr.
func evaluate(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["model", "candidates", "seed", "per-template", "per-held-out", "reconstruction",
                                  "temperature", "top-k", "top-p", "cond-scale", "likelihood-weight", "threads"], maxPositional: 0)
    let path = try arguments.modelPath()
    let model = try DalleModel(path: path)
    let options = ShapesWorld.EvaluationOptions(
        candidates: try arguments.number("candidates", default: 8),
        seed: try arguments.number("seed", default: UInt64(0)),
        perTemplate: try arguments.number("per-template", default: 50),
        perHeldOutPair: try arguments.number("per-held-out", default: 10),
        sampling: SamplingOptions(temperature: try arguments.number("temperature", default: 1),
                                  topK: try arguments.number("top-k", default: 0),
                                  topP: try arguments.number("top-p", default: 1)),
        condScale: try arguments.number("cond-scale", default: model.condScale),
        likelihoodWeight: try arguments.number("likelihood-weight", default: model.likelihoodWeight),
        reconstructionSamples: try arguments.number("reconstruction", default: 200))
    try options.validate()
    let session = try DalleSession(model: model, threads: try arguments.threads())
    printError("dalle: evaluating \(path) on the Shapes World (\(options.candidates) candidates per caption, seed \(options.seed), "
        + "guidance scale \(options.condScale), likelihood weight \(options.likelihoodWeight))")
    let bar = ProgressBar(logLines: true)
    let start = now()
    let report = try session.evaluateShapesWorld(options) { step, total in bar.show("eval", step, total); return true }
    bar.finish()
    print(report.table(), terminator: "")
    let generated = options.candidates > 0 ? "\(report.total.captions) captions x \(options.candidates) candidates and " : ""
    printError("dalle: evaluated \(generated)\(report.reconstructionImages) reconstructions in \(seconds(since: start))")
}
