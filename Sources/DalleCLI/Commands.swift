import DalleCore
import DalleImageIO
#if canImport(Glibc)
import Glibc
#endif

let usage = """
    usage: dalle <command> [options]

    commands:
      info MODEL                                 describe a libdalle model file
      encode --model M --image IN.png --out T    encode an image to a grid of dVAE tokens
      decode --model M --tokens T --out OUT.png  decode a token grid to an image
      tokenize --model M [--mode MODE] TEXT      print a caption's token ids (MODE: model, raw, clip, dalle)
      shapes --count N [--seed S] --out-dir DIR  render Shapes World training images: DIR/000.png + 000.txt, ...
      judge --caption "..." IMAGE.png            judge a 64x64 image against a Shapes World caption
                                                 (prints pass, or fail: REASON and exits 1)
      train --stage S --data D --out FILE [...]  train one component on the Shapes World (D = shapes;
                                                 shapes-near-misses: each caption then a near miss, or
                                                 shapes-defects: each picture with two defect images, as
                                                 CLIP's hard negatives; :S,C,R after any of them
                                                 weighs the one object, counting and relation
                                                 templates, default 1,1,2), judged candidate sets (dalle
                                                 candidates; A.safetensors,B.safetensors) or a folder
                                                 of NAME.png + NAME.txt; FILE is a checkpoint, resumed
                                                 when it exists. S: tokenizer, dvae, transformer, clip
      bundle --out FILE [--dtype f16|f32|bf16|q8|q4] [--cond-scale C] [--likelihood-weight W] PART...
                                                 join trained components into one model file, each
                                                 from the first PART that holds it (C, W: the guidance
                                                 scale and reranking weight generate and eval use by default)

    train options:
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

    options:
      --model PATH     libdalle model file (.safetensors with a dvae component; default: see eval)
      --image PATH     input PNG, of the model's image size (e.g. 256x256); alpha is ignored
      --tokens PATH    token file: one grid row per line, ids separated by spaces ("-": stdin)
      --out PATH       output token file ("-": stdout) or PNG image
      --threads N      worker threads (default 0: every core)
      --count N        number of images to render
      --seed S         Shapes World stream seed (default 0)
      --out-dir DIR    output directory (created if missing)
      --caption TEXT   a caption of the Shapes World grammar, e.g. "a red circle to the left of a blue square"
      -h, --help       show this help

    """

/// Runs the command in `args` (without the program name) and returns the exit status.
func runCLI(_ args: [String]) -> Int32 {
    do {
        let arguments = try Arguments(args)
        if arguments.wantsHelp || arguments.command == "help" {
            print(usage + generateUsage + rerankUsage + candidatesUsage + evalUsage, terminator: "")
            return 0
        }
        switch arguments.command {
        case "tokenize": try tokenizeCommand(arguments)
        case "info": try info(arguments)
        case "encode": try encode(arguments)
        case "decode": try decode(arguments)
        case "shapes": try shapes(arguments)
        case "judge": try judge(arguments)
        case "generate": try generate(arguments)
        case "rerank": try rerank(arguments)
        case "train": try train(arguments)
        case "bundle": try bundle(arguments)
        case "eval": try evaluate(arguments)
        case "candidates": try candidates(arguments)
        case nil: throw UsageError("no command given")
        case let other?: throw UsageError("unknown command '\(other)'")
        }
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

private func info(_ arguments: Arguments) throws {
    try arguments.check(allowed: [], maxPositional: 1)
    guard let path = arguments.positional.first else { throw UsageError("info needs a MODEL file") }
    let model = try DalleModel(path: path)
    print("model: \(path)")
    print("format: \(model.metadata["format"] ?? "?") version \(model.metadata["format_version"] ?? "?")")
    print("components: \(model.components)")
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
    if let c = model.clip?.config {
        print("clip: ViT \(c.imageResolution)px/\(c.visionPatchSize), vision \(c.visionLayers)x\(c.visionWidth), "
            + "text \(c.textLayers)x\(c.textWidth) over \(c.contextLength) tokens, embeddings of \(c.embedDim)")
    }
}

private func encode(_ arguments: Arguments) throws {
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

private func decode(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["model", "tokens", "out", "threads"], maxPositional: 0)
    let (tokensPath, outPath) = (try arguments.required("tokens"), try arguments.required("out"))
    let session = try openSession(arguments)
    let config = try session.model.requireImageTokenizer()
    let grid = try TokenText.read(path: tokensPath)
    let side = config.gridSize
    guard grid.rows == side, grid.columns == side else {
        throw DalleError.invalidArgument("\(tokensPath) holds a \(grid.rows)x\(grid.columns) token grid; this model decodes \(side)x\(side) grids")
    }
    let start = now()
    let pixels = try grid.tokens.withUnsafeBufferPointer { try session.decode(tokens: $0, count: 1) }
    let image = try RGBImage(width: config.imageSize, height: config.imageSize, pixels: pixels)
    try PNG.write(image, path: outPath)
    printError("dalle: decoded \(side)x\(side) tokens to a \(image.width)x\(image.height) image in \(seconds(since: start)) -> \(outPath)")
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
