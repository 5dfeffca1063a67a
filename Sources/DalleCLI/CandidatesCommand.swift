import DalleCore
#if canImport(Glibc)
import Glibc
#endif

let candidatesUsage = """
    candidates [--model M] --captions N --out FILE [options]
      generates candidates for the first N captions of the Shapes World training stream and
      judges them: a candidate set, training data for a reranker (dalle train --stage clip
      --data FILE: each caption's passing candidates in turn, or its reference, against up to
      two failing ones, the next ones each epoch)
      --candidates N       images per caption (default 8)
      --seed S             the training stream's seed, and of the draws (default 0)
      --temperature T, --top-k K, --top-p P, --cond-scale C   sampling, as for generate

    """

/// `dalle candidates`: writes a judged candidate set (`ShapesWorld.CandidateSet`), progress on stderr.
func candidates(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["model", "captions", "out", "candidates", "seed", "temperature", "top-k", "top-p",
                                  "cond-scale", "threads"], maxPositional: 0)
    let path = try arguments.modelPath(), out = try arguments.required("out")
    let model = try DalleModel(path: path)
    _ = try arguments.required("captions")
    let captions: Int = try arguments.number("captions", default: 0), count: Int = try arguments.number("candidates", default: 8)
    let seed: UInt64 = try arguments.number("seed", default: 0)
    let session = try DalleSession(model: model, threads: try arguments.threads())
    let bar = ProgressBar(logLines: true)
    let start = now()
    let set = try session.makeShapesCandidateSet(
        captions: captions, count: count, seed: seed,
        sampling: SamplingOptions(temperature: try arguments.number("temperature", default: 1),
                                  topK: try arguments.number("top-k", default: 0),
                                  topP: try arguments.number("top-p", default: 1)),
        condScale: try arguments.number("cond-scale", default: model.condScale)) { step, total in
            bar.show("candidates", step, total); return true
        }
    bar.finish()
    try set.write(to: out)
    let passing = set.passed.joined().filter { $0 }.count, anyPassing = set.passed.filter { $0.contains(true) }.count
    printError("dalle: \(set.captions.count) captions x \(count) candidates from \(path) in \(seconds(since: start)): "
        + "\(passing) candidates pass the judge, \(anyPassing) captions have one; written to \(out)")
}
