import DalleCore
import DalleImageIO
#if canImport(Glibc)
import Glibc
#endif

let generateUsage = """
    generate [--model M] --prompt TEXT --out-dir DIR [options]
      generates images from a caption with the model's transformer, writing DIR/000.png ...
      --prompt TEXT        the caption ("" for an unconditional image)
      --count N            images to generate (default 1)
      --seed S             seed of the draws (default: random; printed)
      --out-dir DIR        where the PNGs go (created if missing)
      --temperature T      > 0 (default 1)
      --top-k K            keep the K likeliest tokens; 0 = all (default), 1 = greedy
      --top-p P            keep the likeliest tokens up to mass P, in (0, 1] (default 1)
      --cond-scale C       classifier-free guidance scale (default: the model's, else 1 = off)
      --prime IMAGE        a PNG whose first token rows are kept (image completion)
      --prime-rows R       rows of --prime kept (default 7/16 of the grid, as OpenAI's 14 of 32)
      --tokens-out FILE    each image's token ids as one line ("-": stdout)
      --rerank K           keep the K best of the --count images, written best first (000.png is
                           the best); prints "score path (clip C + W x log-likelihood L)" for each
      --likelihood-weight W  --rerank's score is CLIP's + W x the transformer's mean log-likelihood
                           per token (default: the model's, else 0 = CLIP alone)
      --prior-steps N, --decoder-steps N, --super-res-steps N   unCLIP (DALL-E 2): steps, 1 ... 1000 (25, 25, 7)
      --prior-guidance G, --decoder-guidance G   unCLIP: guidance scales, > 0 (default 4, 8)
      --noise FILE         unCLIP: float32 noise (prior_latents, decoder_latents, ...: see dalle.h)

    """ + ImageOutput.usage(grid: "also write every image on one contact sheet, DIR/grid.png, as min-dalle does")

/// `dalle generate`: prompt -> images in --out-dir, with a progress bar on a terminal.
func generate(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["model", "prompt", "count", "seed", "out-dir", "temperature", "top-k", "top-p",
                                  "cond-scale", "prime", "prime-rows", "tokens-out", "rerank", "likelihood-weight", "threads",
                                  "prior-steps", "decoder-steps", "super-res-steps", "prior-guidance", "decoder-guidance", "noise"]
                                  + ImageOutput.options, maxPositional: 0)
    let output = try ImageOutput(arguments)
    guard let prompt = arguments.options["prompt"] else { throw UsageError("missing --prompt (use --prompt \"\" for an unconditional image)") }
    let outDir = try arguments.required("out-dir")
    let model = try DalleModel(path: try arguments.modelPath())
    var options = GenerationOptions(
        count: try arguments.number("count", default: 1),
        sampling: SamplingOptions(temperature: try arguments.number("temperature", default: 1),
                                  topK: try arguments.number("top-k", default: 0),
                                  topP: try arguments.number("top-p", default: 1)),
        condScale: try arguments.number("cond-scale", default: model.condScale),
        keepBest: try arguments.number("rerank", default: 0),
        likelihoodWeight: try arguments.number("likelihood-weight", default: model.likelihoodWeight))
    options.unclip = try unclipSettings(arguments)
    let threads = try arguments.threads()
    let session = try DalleSession(model: model, threads: threads,
                                   seed: try arguments.options["seed"].map { _ in try arguments.number("seed", default: UInt64(0)) })
    options.seed = session.seed

    if let primePath = arguments.options["prime"] {
        let grid = try model.generationGridSize()
        let rows = try arguments.number("prime-rows", default: grid * 7 / 16)
        options.primeRows = rows
        let image: RGBImage
        do { image = try PNG.read(path: primePath) } catch DalleError.badFile(let message) { throw RunError("cannot read the image \(message)") }
        guard let imageTokenizer = model.imageTokenizer else { throw DalleError.unsupported("--prime needs a model with a dvae component") }
        let tokens = try image.pixels.withUnsafeBufferPointer { pixels in
            let view = ImageView(width: image.width, height: image.height, channels: 3, pixels: pixels)
            try ImageConversion.validate(view, size: imageTokenizer.imageSize, label: primePath)
            return try imageTokenizer.encode(try ImageConversion.tensor(from: [view], size: imageTokenizer.imageSize), pool: session.pool)
        }
        options.primeTokens = Array(tokens.prefix(max(0, min(rows, grid)) * grid))
    } else if arguments.options["prime-rows"] != nil {
        throw UsageError("--prime-rows needs --prime IMAGE")
    }

    if let vocabulary = model.promptVocabulary,
       let warning = vocabulary.warning(for: prompt, unknown: vocabulary.unknownWords(in: prompt)) {
        printError("dalle: warning: " + warning)
    }
    try generateAndWrite(session: session, prompt: prompt, options: options, outDir: outDir, output: output, tokensPath: arguments.options["tokens-out"])
}

/// Generates `options` for `prompt` with a progress bar and writes outDir/000.png ... (and the
/// tokens to `tokensPath`), printing each kept image's CLIP score.
private func generateAndWrite(session: DalleSession, prompt: String, options: GenerationOptions, outDir: String, output: ImageOutput, tokensPath: String?) throws {
    try makeDirectory(outDir)
    let bar = ProgressBar()
    let start = now()
    let result = try session.generate(prompt: prompt, options: options,
                                      tokenProgress: { step, total in bar.show("tokens", step, total); return true },
                                      decodeProgress: { step, total in bar.show("decode", step, total); return true },
                                      rerankProgress: { step, total in bar.show("rerank", step, total); return true })
    bar.finish()
    if result.truncatedTokenCount > 0 {
        printError("dalle: warning: the prompt is \(result.promptTokenCount + result.truncatedTokenCount) tokens; the last \(result.truncatedTokenCount) past the model's text length were dropped")
    }
    let imageBytes = result.imageSize * result.imageSize * 3
    var written: [RGBImage] = []
    for n in 0..<result.count {
        let image = try output.scaled(try RGBImage(width: result.imageSize, height: result.imageSize,
                                                   pixels: Array(result.pixels[(n * imageBytes)..<((n + 1) * imageBytes)])))
        try PNG.write(image, path: outDir + "/" + imageName(n))
        if output.grid { written.append(image) }
        // The score the order used, then its parts.
        if n < result.scores.count {
            let (clip, logLikelihood) = (result.scores[n], result.logLikelihoods[n])
            print("\(clip + options.likelihoodWeight * logLikelihood) \(outDir)/\(imageName(n)) "
                + "(clip \(clip) + \(options.likelihoodWeight) x log-likelihood \(logLikelihood))")
        }
    }
    if output.grid { try PNG.write(try ImageOutput.contactSheet(written), path: outDir + "/grid.png") }
    if let tokensPath = tokensPath {
        let grid = result.gridSize * result.gridSize
        let lines = (0..<result.count).map { n in result.tokens[(n * grid)..<((n + 1) * grid)].map(String.init).joined(separator: " ") }
        try writeText(lines.joined(separator: "\n") + "\n", path: tokensPath)
    }
    let kept = result.scores.isEmpty ? "" : ", kept the best \(result.count)"
    printError("dalle: generated \(options.count) image(s)\(kept) with seed \(result.seed) in \(seconds(since: start)) -> \(outDir)/\(imageName(0))"
        + (result.count > 1 ? " ... \(imageName(result.count - 1))" : ""))
}

/// The unCLIP options `arguments` may hold: step counts, guidance scales, --noise.
private func unclipSettings(_ arguments: Arguments) throws -> UnCLIPSettings {
    var u = UnCLIPSettings()
    u.priorSteps = try arguments.options["prior-steps"].map { _ in try arguments.number("prior-steps", default: 0) }
    u.decoderSteps = try arguments.options["decoder-steps"].map { _ in try arguments.number("decoder-steps", default: 0) }
    u.superResolutionSteps = try arguments.options["super-res-steps"].map { _ in try arguments.number("super-res-steps", default: 0) }
    u.priorGuidance = try arguments.options["prior-guidance"].map { _ in try arguments.number("prior-guidance", default: Float(0)) }
    u.decoderGuidance = try arguments.options["decoder-guidance"].map { _ in try arguments.number("decoder-guidance", default: Float(0)) }
    if let path = arguments.options["noise"] { u.noise = try UnCLIPNoise.tensors(in: try SafetensorsFile(path: path)) }
    return u
}

let varyUsage = """
    vary [--model M] --image IN.png --out-dir DIR [options]
      DALL-E 2 (an unCLIP model with an image encoder): variations of an image, DIR/000.png ...
      --image PATH         the input PNG (any size: resized and centre-cropped as CLIP's preprocessing)
      --count N            variations to make (default 1)
      --seed S             seed of the draws (default: random; printed)
      --decoder-steps N, --super-res-steps N, --decoder-guidance G, --noise FILE   as for generate

    """ + ImageOutput.usage(grid: "also write every variation on one contact sheet, DIR/grid.png")

/// `dalle vary`: variations of --image in --out-dir.
func vary(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["model", "image", "count", "seed", "out-dir", "threads", "decoder-steps", "super-res-steps",
                                  "decoder-guidance", "noise"] + ImageOutput.options, maxPositional: 0)
    let output = try ImageOutput(arguments)
    let image = try readImage(try arguments.required("image"))
    let outDir = try arguments.required("out-dir")
    var options = GenerationOptions(count: try arguments.number("count", default: 1))
    options.unclip = try unclipSettings(arguments)
    options.unclip.image = image
    let session = try DalleSession(model: try DalleModel(path: try arguments.modelPath()), threads: try arguments.threads(),
                                   seed: try arguments.options["seed"].map { _ in try arguments.number("seed", default: UInt64(0)) })
    options.seed = session.seed
    try generateAndWrite(session: session, prompt: "", options: options, outDir: outDir, output: output, tokensPath: nil)
}

let interpolateUsage = """
    interpolate [--model M] (--from TEXT --to TEXT | --from-image A.png --to-image B.png) --out-dir DIR [options]
      DALL-E 2 (an unCLIP model): the frames of the spherical interpolation between two prompts' CLIP
      text embeddings, or two images' CLIP image embeddings (needs an image encoder), DIR/000.png ...
      --from TEXT, --to TEXT            the prompts at the two ends
      --from-image PATH, --to-image PATH  the images at the two ends (PNG, any size)
      --frames N           images from one end to the other, both included (default 5)
      --seed S             seed of the draws (default: random; printed)
      --prior-steps N, --decoder-steps N, --super-res-steps N, --prior-guidance G, --decoder-guidance G,
      --noise FILE         as for generate

    """ + ImageOutput.usage(grid: "also write the frames on one contact sheet, DIR/grid.png")

/// `dalle interpolate`: frames between two prompts or two images in --out-dir.
func interpolate(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["model", "from", "to", "from-image", "to-image", "frames", "seed", "out-dir", "threads", "prior-steps",
                                  "decoder-steps", "super-res-steps", "prior-guidance", "decoder-guidance", "noise"] + ImageOutput.options,
                        maxPositional: 0)
    let output = try ImageOutput(arguments)
    var options = GenerationOptions(count: try arguments.number("frames", default: 5))
    options.unclip = try unclipSettings(arguments)
    let prompt: String
    switch (arguments.options["from"], arguments.options["to"], arguments.options["from-image"], arguments.options["to-image"]) {
    case (let from?, let to?, nil, nil):
        prompt = from
        options.unclip.interpolationEnd = .prompt(to)
    case (nil, nil, let from?, let to?):
        prompt = ""
        options.unclip.image = try readImage(from)
        options.unclip.interpolationEnd = .image(try readImage(to))
    default:
        throw UsageError("give --from and --to (prompts), or --from-image and --to-image")
    }
    let outDir = try arguments.required("out-dir")
    let session = try DalleSession(model: try DalleModel(path: try arguments.modelPath()), threads: try arguments.threads(),
                                   seed: try arguments.options["seed"].map { _ in try arguments.number("seed", default: UInt64(0)) })
    options.seed = session.seed
    try generateAndWrite(session: session, prompt: prompt, options: options, outDir: outDir, output: output, tokensPath: nil)
}

private func readImage(_ path: String) throws -> RGBImage {
    do { return try PNG.read(path: path) } catch DalleError.badFile(let message) { throw RunError("cannot read the image \(message)") }
}

private func imageName(_ n: Int) -> String {
    let digits = String(n)
    return String(repeating: "0", count: max(0, 3 - digits.count)) + digits + ".png"
}

extension Arguments {
    /// `--name VALUE` parsed as a number, or `fallback` when the option is absent.
    func number<T: LosslessStringConvertible>(_ name: String, default fallback: T) throws -> T {
        guard let text = options[name] else { return fallback }
        guard let value = T(text) else { throw UsageError("--\(name) must be a number, got '\(text)'") }
        return value
    }
}

/// Creates `path` unless it is already a directory.
private func makeDirectory(_ path: String) throws {
    var info = stat()
    if stat(path, &info) == 0 {
        guard info.st_mode & S_IFMT == S_IFDIR else { throw DalleError.io("\(path) exists and is not a directory") }
        return
    }
    guard mkdir(path, 0o755) == 0 else { throw DalleError.io("cannot create directory \(path): \(String(cString: strerror(errno)))") }
}

private func writeText(_ text: String, path: String) throws {
    try writeBytes(Array(text.utf8), path: path)
}

/// Writes `bytes` to `path` ("-": standard output), replacing any file there.
func writeBytes(_ bytes: [UInt8], path: String) throws {
    let file = path == "-" ? stdout : fopen(path, "wb")
    guard let file else { throw DalleError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
    let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
    let flushed = path == "-" ? fflush(file) : fclose(file)
    guard written == bytes.count, flushed == 0 else { throw DalleError.io("cannot write \(path): \(String(cString: strerror(errno)))") }
}

/// Progress on stderr: on a terminal a one-line bar redrawn in place; elsewhere (a log file)
/// nothing, or with `logLines` a plain line at every tenth of the way, for long runs.
final class ProgressBar {
    private let terminal: Bool, logLines: Bool
    private var lastDrawn = "", lastTenth = 0

    init(logLines: Bool = false) {
        terminal = isatty(2) != 0
        self.logLines = logLines
    }

    func show(_ label: String, _ step: Int, _ total: Int) {
        guard total > 0 else { return }
        if terminal {
            let width = 30, filled = width * step / total
            let line = "\(label) [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                + "] \(step)/\(total)"
            guard line != lastDrawn else { return }
            lastDrawn = line
            fputs("\r" + line + "\u{1B}[K", stderr)
        } else if logLines, 10 * step / total > lastTenth {
            lastTenth = 10 * step / total
            fputs("dalle: \(label) \(step)/\(total)\n", stderr)
        }
    }

    func finish() {
        if terminal, !lastDrawn.isEmpty { fputs("\n", stderr) }
    }
}
