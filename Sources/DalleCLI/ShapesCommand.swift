import DalleCore
import DalleImageIO
#if canImport(Glibc)
import Glibc
#endif

/// A command's verdict that is not an error: the CLI exits with `code` after the command printed its result.
struct ExitStatus: Error {
    let code: Int32
}

let shapesUsage = """
    shapes --count N [--seed S] --out-dir DIR
      renders Shapes World training images: DIR/000.png with its caption in DIR/000.txt, ...
      --count N            number of images to render
      --seed S             Shapes World stream seed (default 0)
      --out-dir DIR        output directory (created if missing)

    """

let judgeUsage = """
    judge --caption TEXT IMAGE.png
      judges a 64x64 image against a Shapes World caption: prints pass, or fail: REASON and
      exits 1
      --caption TEXT       a caption of the Shapes World grammar, e.g. "a red circle to the left
                           of a blue square"

    """

/// `dalle shapes --count N [--seed S] --out-dir DIR`: writes training samples 0..<N of the Shapes World
/// stream `S` as DIR/000.png with its caption in DIR/000.txt (one line), and so on.
func shapes(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["count", "seed", "out-dir"], maxPositional: 0)
    let countText = try arguments.required("count"), directory = try arguments.required("out-dir")
    guard let count = Int(countText), count >= 1, count <= 10_000_000 else {
        throw UsageError("--count must be an integer from 1 to 10000000, got '\(countText)'")
    }
    let seedText = arguments.options["seed"] ?? "0"
    guard let seed = UInt64(seedText) else { throw UsageError("--seed must be an integer from 0 to 2^64-1, got '\(seedText)'") }
    if mkdir(directory, 0o755) != 0 && errno != EEXIST {
        throw DalleError.io("cannot create the directory \(directory): \(String(cString: strerror(errno)))")
    }
    let digits = max(3, String(count - 1).count)
    var stream = try ShapesWorld.TrainingStream(seed: seed)
    for i in 0..<count {
        guard let sample = stream.next() else { break }
        let name = directory + "/" + String(repeating: "0", count: max(0, digits - String(i).count)) + String(i)
        try PNG.write(sample.image, path: name + ".png")
        try writeText(sample.caption.text + "\n", path: name + ".txt")
    }
    fputs("dalle: wrote \(count) Shapes World images (seed \(seed)) with captions to \(directory)\n", stderr)
}

/// `dalle judge --caption "..." IMAGE.png`: prints "pass", or "fail: REASON" and exits with status 1.
func judge(_ arguments: Arguments) throws {
    try arguments.check(allowed: ["caption"], maxPositional: 1)
    let caption = try ShapesWorld.Caption.parse(try arguments.required("caption"))
    guard let path = arguments.positional.first else { throw UsageError("judge needs an IMAGE.png") }
    let image: RGBImage
    do {
        image = try PNG.read(path: path)
    } catch DalleError.badFile(let message) {
        throw RunError("cannot read the image \(message)")
    }
    let verdict = try ShapesWorld.judge(image, caption: caption)
    if let reason = verdict.reason {
        print("fail: \(reason)")
        throw ExitStatus(code: 1)
    }
    print("pass")
}

private func writeText(_ text: String, path: String) throws {
    guard let file = fopen(path, "w") else { throw DalleError.io("cannot create \(path): \(String(cString: strerror(errno)))") }
    let written = fputs(text, file)
    guard fclose(file) == 0, written >= 0 else { throw DalleError.io("cannot write \(path): \(String(cString: strerror(errno)))") }
}
