import CDalle
import DalleCore
import DalleImageIO
#if canImport(Glibc)
import Glibc
#endif

/// `dalle --help`: the commands, one line each.
let usage = """
    usage: dalle <command> [options]
           dalle help COMMAND, dalle COMMAND --help   that command's options
           dalle --version                            the version

    commands:
    \(commands.map { "  " + $0.name + String(repeating: " ", count: 12 - $0.name.count) + $0.summary }.joined(separator: "\n"))

    \(defaultModelNote)
    """

/// How commands that take --model find the default model without it (Arguments.modelPath).
let defaultModelNote = """
    Without --model, the default model is used: $DALLE_MODEL, else
    share/dalle/models/\(defaultModelName) of the installation (PREFIX/bin/dalle),
    else models/\(defaultModelName) of the checkout (build/bin/dalle), else
    models/\(defaultModelName) in the current directory.

    """

/// `--threads N`, which every command that runs a model takes.
let threadsOption = "  --threads N          worker threads (default 0: every core)\n"

/// A subcommand: its name, a one-line summary and its own help (`dalle help NAME`).
struct Command {
    let name: String
    let summary: String
    let usage: String
    let run: (Arguments) throws -> Void
}

/// Every command, in the order `dalle --help` lists them.
let commands: [Command] = [
    Command(name: "info", summary: "describe a libdalle model file", usage: """
        info MODEL
          prints a model file's components, sizes and parameter count

        """, run: info),
    Command(name: "encode", summary: "encode an image to a grid of dVAE tokens", usage: """
        encode [--model M] --image IN.png --out T
          encodes an image to a grid of the model's dVAE tokens
          --image PATH         input PNG, of the model's image size (e.g. 256x256); alpha is ignored
          --out PATH           output token file, one grid row per line ("-": stdout)

        """ + threadsOption, run: encode),
    Command(name: "decode", summary: "decode a token grid to an image", usage: """
        decode [--model M] --tokens T --out OUT.png
          decodes a grid of dVAE tokens to an image
          --tokens PATH        token file: one grid row per line, ids separated by spaces ("-": stdin);
                               or several grids, one per line (generate --tokens-out), with --grid
          --out PATH           output image: PNG, or PPM when named .ppm

        """ + ImageOutput.usage(grid: "decode every grid of --tokens onto one contact sheet, --out") + threadsOption,
            run: decode),
    Command(name: "tokenize", summary: "print a caption's token ids", usage: tokenizeUsage, run: tokenizeCommand),
    Command(name: "generate", summary: "generate images from a caption", usage: generateUsage + threadsOption, run: generate),
    Command(name: "vary", summary: "DALL-E 2: variations of an image", usage: varyUsage + threadsOption, run: vary),
    Command(name: "interpolate", summary: "DALL-E 2: frames between two prompts or two images", usage: interpolateUsage + threadsOption,
            run: interpolate),
    Command(name: "rerank", summary: "score images against a caption with CLIP", usage: rerankUsage + threadsOption, run: rerank),
    Command(name: "shapes", summary: "render Shapes World training images with their captions", usage: shapesUsage, run: shapes),
    Command(name: "judge", summary: "judge a 64x64 image against a Shapes World caption", usage: judgeUsage, run: judge),
    Command(name: "eval", summary: "the Shapes World evaluation of a model (pass rates)", usage: evalUsage + threadsOption,
            run: evaluate),
    Command(name: "candidates", summary: "judged candidates of a model, training data for a reranker",
            usage: candidatesUsage + threadsOption, run: candidates),
    Command(name: "train", summary: "train one component (tokenizer, dvae, transformer, clip)", usage: trainUsage, run: train),
    Command(name: "bundle", summary: "join trained components into one model file", usage: bundleUsage, run: bundle),
]

/// One command's help: its usage, and where the default model comes from when it takes --model.
func help(for command: Command) -> String {
    "usage: dalle " + command.usage + (command.usage.contains("[--model M]") ? "\n" + defaultModelNote : "")
}

/// Runs the command in `args` (without the program name) and returns the exit status.
func runCLI(_ args: [String], cpu: CPUFeatures = .detected) -> Int32 {
    do {
        try CPUFeatures.checkSupported(cpu)
        let arguments = try Arguments(args)
        if arguments.wantsVersion {
            print("dalle \(DALLE_VERSION_STRING)")
            return 0
        }
        // `dalle help [COMMAND]`, `dalle [COMMAND] --help`
        let name = arguments.command == "help" ? arguments.positional.first : arguments.command
        let command = try name.map { name in
            guard let command = commands.first(where: { $0.name == name }) else { throw UsageError("unknown command '\(name)'") }
            return command
        }
        if arguments.wantsHelp || arguments.command == "help" {
            print(command.map(help) ?? usage, terminator: "")
            return 0
        }
        guard let command else { throw UsageError("no command given") }
        try command.run(arguments)
        return 0
    } catch let status as ExitStatus {
        return status.code
    } catch let error as UsageError {
        printError("dalle: \(error.message)\nRun 'dalle --help' for usage.")
    } catch let error as RunError {
        printError("dalle: \(error.message)")
    } catch {
        printError("dalle: \(error)")
    }
    return 1
}

/// A failure whose message is complete as it stands (no `DalleError` category prefix).
struct RunError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

func info(_ arguments: Arguments) throws {
    try arguments.check(allowed: [], maxPositional: 1)
    guard let path = arguments.positional.first else { throw UsageError("info needs a MODEL file") }
    let model = try DalleModel(path: path)
    print("model: \(path)")
    print("format: \(model.metadata["format"] ?? "?") version \(model.metadata["format_version"] ?? "?")")
    print("components: \(model.components)")
    for part in model.loaded {
        print("  \(part.kind.name) (\(part.variant)): \(part.parameterCount) parameters; can \(part.kind.capabilities)")
    }
    if !model.skippedComponents.isEmpty {
        print("skipped components (not supported by this build): \(model.skippedComponents.joined(separator: ","))")
    }
    print("parameters: \(model.parameterCount)")
    if let c = model.dvaeConfig {
        print("dvae: \(c.imageSize)x\(c.imageSize) RGB images <-> \(c.tokenGridSize)x\(c.tokenGridSize) token grids, "
            + "vocabulary \(c.vocabSize)")
        print("dvae layers: \(c.groupCount) groups, \(c.blocksPerGroup) blocks per group, "
            + "\(c.hiddenChannels) hidden channels, \(c.initChannels) token-embedding channels")
    }
    if let c = model.transformer?.config {
        print("transformer: \(c.depth) layers of \(c.dim), \(c.textSeqLen) text + \(c.imageSeqLen) image positions, "
            + "guidance scale \(model.condScale)\(model.condScale == 1 ? " (off)" : ""), "
            + "reranking likelihood weight \(model.likelihoodWeight)\(model.likelihoodWeight == 0 ? " (CLIP alone)" : "")")
    }
    if let v = model.promptVocabulary {
        print("vocabulary: \(v.words.count) words" + (v.grammar.map { ", captions of the \($0) grammar" } ?? "")
            + " (generate warns about prompts outside it)")
    }
    if let c = model.clip?.config {
        print("clip: ViT \(c.imageResolution)px/\(c.visionPatchSize), vision \(c.visionLayers)x\(c.visionWidth), "
            + "text \(c.textLayers)x\(c.textWidth) over \(c.contextLength) tokens, embeddings of \(c.embedDim)")
    }
}

func encode(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["model", "image", "out", "threads"], maxPositional: 0)
    let (imagePath, outPath) = (try arguments.required("image"), try arguments.required("out"))
    let session = try openSession(arguments)
    let config = try session.model.requireImageTokenizer()
    let image: RGBImage
    do {
        image = try PNG.read(path: imagePath)
    } catch DalleError.badFile(let message) {
        throw RunError("cannot read the image \(message)")
    }
    guard image.width == config.imageSize, image.height == config.imageSize else {
        throw DalleError.invalidArgument("\(imagePath) is \(image.width)x\(image.height); this model encodes "
            + "\(config.imageSize)x\(config.imageSize) images (resize or crop it first)")
    }
    let start = now()
    let tokens = try image.pixels.withUnsafeBufferPointer { pixels in
        try session.encode([ImageView(width: image.width, height: image.height, channels: 3, pixels: pixels)])
    }
    let grid = try TokenGrid(rows: config.gridSize, columns: config.gridSize, tokens: tokens)
    try TokenText.write(grid, path: outPath)
    printError("dalle: encoded \(imagePath) to \(grid.rows)x\(grid.columns) tokens in \(seconds(since: start)) -> \(outPath)")
}

func decode(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["model", "tokens", "out", "threads"] + ImageOutput.options, maxPositional: 0)
    let (tokensPath, outPath) = (try arguments.required("tokens"), try arguments.required("out"))
    let output = try ImageOutput(arguments)
    try ImageFile.checkWritable(outPath)
    let session = try openSession(arguments)
    let config = try session.model.requireImageTokenizer()
    let grid = try TokenText.read(path: tokensPath)
    let side = config.gridSize
    // One grid (a row per line), or with --grid one whole grid per line (generate --tokens-out).
    let count: Int
    if grid.rows == side, grid.columns == side {
        count = 1
    } else if side > 1, grid.columns == side * side {
        guard output.grid else {
            throw UsageError("\(tokensPath) holds \(grid.rows) token grids, one per line; pass --grid to decode them onto one contact sheet")
        }
        count = grid.rows
    } else {
        throw DalleError.invalidArgument("\(tokensPath) holds a \(grid.rows)x\(grid.columns) token grid; this model decodes \(side)x\(side) grids"
            + " (or, with --grid, lines of \(side * side) ids, one grid each)")
    }
    let start = now()
    let pixels = try grid.tokens.withUnsafeBufferPointer { try session.decode(tokens: $0, count: count) }
    let size = config.imageSize, imageBytes = size * size * 3
    let images = try (0..<count).map { n in
        try output.scaled(try RGBImage(width: size, height: size, pixels: Array(pixels[(n * imageBytes)..<((n + 1) * imageBytes)])))
    }
    let image = output.grid ? try ImageOutput.contactSheet(images) : images[0]
    try ImageFile.write(image, path: outPath)
    printError("dalle: decoded \(count == 1 ? "" : "\(count) grids of ")\(side)x\(side) tokens to a \(image.width)x\(image.height) image in \(seconds(since: start)) -> \(outPath)")
}

private func openSession(_ arguments: Arguments) throws -> DalleSession {
    let threads = try arguments.threads()
    let model = try DalleModel(path: try arguments.modelPath())
    return try DalleSession(model: model, threads: threads)
}

func printError(_ message: String) {
    fputs(message + "\n", stderr)
}

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func seconds(since start: Double) -> String {
    let ms = Int(((now() - start) * 1000).rounded())
    return "\(ms / 1000).\(String(ms % 1000 / 10).leftPadded(to: 2)) s"
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
