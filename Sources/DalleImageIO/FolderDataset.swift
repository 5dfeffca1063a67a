import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// A user's folder of captioned images as a training source: every `NAME.png` with a
/// `NAME.txt` beside it, in subfolders too, loaded into memory at init at `imageSize`×`imageSize`.
///
/// - Order: by relative path, byte-wise (locale-independent), so example i is always the same file.
/// - Caption: the whole `.txt` file as UTF-8 (a byte-order mark dropped), every run of whitespace,
///   newlines included, collapsed to one space, ends trimmed. A multi-line file is one caption.
/// - Images: any PNG (grayscale, palette, RGBA and 16-bit become RGB8, alpha dropped). A non-square
///   image is centre-cropped to a square; an image of another size is resized (area averaging
///   down, bilinear up). Both are counted in `summary` and said in `warnings`.
/// - Skipped, with a warning: images in another format (.jpg, .jpeg, .bmp, .gif, .webp, .tif,
///   .tiff: convert them to PNG), PNGs without a caption file, with an empty caption, or that
///   cannot be read or decoded. Ignored, with a warning: captions without an image, other files.
///   Hidden entries (names starting with ".") are not visited, nor links to folders (with a warning).
/// - Throws `io` when the folder cannot be opened, `invalidArgument` when it is not a folder or
///   holds no usable image–caption pair (the message says what it found instead).
public struct FolderSource: TrainingDataSource {
    /// How the scan went: what was used and what was skipped or ignored, by reason.
    public struct Summary: Equatable, Sendable {
        /// Image–caption pairs loaded (= `count`).
        public var used = 0
        /// Of `used`: images resized to the model's size (includes every cropped one).
        public var resized = 0
        /// Of `used`: non-square images centre-cropped to a square before resizing.
        public var cropped = 0
        /// Skipped: images in a format other than PNG.
        public var unsupportedFormat = 0
        /// Skipped: PNGs without a caption file.
        public var missingCaption = 0
        /// Skipped: PNGs whose caption is empty or only whitespace.
        public var emptyCaption = 0
        /// Skipped: PNGs (or their captions) that could not be read or decoded.
        public var unreadable = 0
        /// Ignored: caption files without an image.
        public var captionsWithoutImage = 0
        /// Ignored: files that are neither images nor captions.
        public var otherFiles = 0

        /// Images skipped for any reason.
        public var skipped: Int { unsupportedFormat + missingCaption + emptyCaption + unreadable }
    }

    /// The folder as given.
    public let directory: String
    public let imageSize: Int
    /// Each example's image path relative to `directory`, in example order.
    public let imagePaths: [String]
    /// The scan's counts, for a caller to print.
    public let summary: Summary
    /// One line per kind of problem (skipped files, resizes), for the caller to print; empty when all was well.
    public let warnings: [String]
    private let examples: [TrainingExample]

    /// Image extensions recognised but not decoded (lower case).
    public static let unsupportedImageExtensions: Set<String> = ["jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff"]

    /// Scans and loads `directory` with `threads` decoding threads (0: one per core; the result
    /// does not depend on it). `imageSize` must be 1...4096.
    public init(directory: String, imageSize: Int, threads: Int = 0) throws {
        guard imageSize >= 1, imageSize <= 4096 else {
            throw DalleError.invalidArgument("image size must be 1...4096, got \(imageSize)")
        }
        var folderWarnings: [String] = []
        let files = try Self.listFiles(directory, warnings: &folderWarnings)
        var scan = Scan(files: files)

        // Load the candidates in parallel, each into its own slot.
        let candidates = scan.candidates
        var outcomes = [Outcome](repeating: .unreadable(""), count: candidates.count)
        outcomes.withUnsafeMutableBufferPointer { slots in
            ThreadPool(threads: threads).parallelForEach(candidates.count) { i in
                slots[i] = Self.load(candidates[i], in: directory, size: imageSize)
            }
        }

        var examples: [TrainingExample] = [], imagePaths: [String] = []
        var unreadable: [String] = [], emptyCaption: [String] = []
        for (candidate, outcome) in zip(candidates, outcomes) {
            switch outcome {
            case .loaded(let example, let resized, let cropped):
                examples.append(example)
                imagePaths.append(candidate.image)
                if resized { scan.summary.resized += 1 }
                if cropped { scan.summary.cropped += 1 }
            case .emptyCaption:
                scan.summary.emptyCaption += 1
                emptyCaption.append(candidate.caption)
            case .unreadable(let message):
                scan.summary.unreadable += 1
                unreadable.append(message)
            }
        }
        scan.summary.used = examples.count
        let summary = scan.summary

        var warnings = folderWarnings
        func warn(_ count: Int, _ what: String, _ items: [String]) {
            guard count > 0 else { return }
            let shown = items.prefix(5).joined(separator: ", ")
            warnings.append("\(what): \(shown)" + (items.count > 5 ? ", and \(items.count - 5) more" : ""))
        }
        warn(summary.unsupportedFormat, "skipped \(plural(summary.unsupportedFormat, "image")) in an unsupported format "
             + "(convert to PNG)", scan.unsupported)
        warn(summary.missingCaption, "skipped \(plural(summary.missingCaption, "image")) without a caption "
             + "(NAME.txt beside NAME.png)", scan.missingCaption)
        warn(summary.emptyCaption, "skipped \(plural(summary.emptyCaption, "image")) with an empty caption", emptyCaption)
        warn(summary.unreadable, "skipped \(plural(summary.unreadable, "unreadable image"))", unreadable)
        warn(summary.captionsWithoutImage, "ignored \(plural(summary.captionsWithoutImage, "caption")) without an image",
             scan.captionsWithoutImage)
        warn(summary.otherFiles, "ignored \(plural(summary.otherFiles, "other file"))", scan.other)
        if summary.resized > 0 {
            warnings.append("resized \(plural(summary.resized, "image")) to \(imageSize)x\(imageSize)"
                + (summary.cropped > 0 ? " (\(summary.cropped) non-square: centre-cropped to a square first)" : ""))
        }

        guard !examples.isEmpty else {
            throw DalleError.invalidArgument(Self.nothingUsable(in: directory, summary: summary, extensions: scan.unsupportedExtensions))
        }
        self.directory = directory
        self.imageSize = imageSize
        self.imagePaths = imagePaths
        self.summary = summary
        self.warnings = warnings
        self.examples = examples
    }

    public var count: Int { examples.count }

    public func example(at index: Int) throws -> TrainingExample {
        guard index >= 0, index < examples.count else {
            throw DalleError.invalidArgument("training example \(index) is out of range 0..<\(examples.count)")
        }
        return examples[index]
    }

    /// A caption file's text: UTF-8 (invalid bytes replaced), a leading byte-order mark dropped,
    /// whitespace runs collapsed to one space, ends trimmed.
    public static func caption(fromFile bytes: [UInt8]) -> String {
        var text = String(decoding: bytes, as: UTF8.self)
        if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
        return text.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    // MARK: - Scanning

    /// An image with a caption file, both relative to the folder.
    struct Candidate {
        var image: String
        var caption: String
    }

    /// The folder's files sorted into candidates and the reasons others are not used.
    struct Scan {
        var candidates: [Candidate] = []
        var summary = Summary()
        var unsupported: [String] = [], missingCaption: [String] = [], captionsWithoutImage: [String] = [], other: [String] = []
        /// Unsupported files by extension (lower case), for the error message.
        var unsupportedExtensions: [String: Int] = [:]

        /// `files`: relative paths, sorted.
        init(files: [String]) {
            var captions: [String: String] = [:], imageStems: Set<String> = []
            for file in files {
                let (stem, ext) = FolderSource.splitExtension(file)
                if ext == "txt" {
                    if captions[stem] == nil { captions[stem] = file }
                } else if ext == "png" || FolderSource.unsupportedImageExtensions.contains(ext) {
                    imageStems.insert(stem)
                }
            }
            for file in files {
                let (stem, ext) = FolderSource.splitExtension(file)
                if ext == "png" {
                    if let caption = captions[stem] {
                        candidates.append(Candidate(image: file, caption: caption))
                    } else {
                        summary.missingCaption += 1
                        missingCaption.append(file)
                    }
                } else if FolderSource.unsupportedImageExtensions.contains(ext) {
                    summary.unsupportedFormat += 1
                    unsupported.append(file)
                    unsupportedExtensions[ext, default: 0] += 1
                } else if ext == "txt" {
                    if !imageStems.contains(stem) {
                        summary.captionsWithoutImage += 1
                        captionsWithoutImage.append(file)
                    }
                } else {
                    summary.otherFiles += 1
                    other.append(file)
                }
            }
        }
    }

    /// (path without extension, lower-case extension); the extension is empty when the name has none.
    static func splitExtension(_ path: String) -> (stem: String, ext: String) {
        let name = path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return (path, "") }
        let ext = String(name[name.index(after: dot)...]).lowercased()
        return (String(path.dropLast(ext.count + 1)), ext)
    }

    enum Outcome {
        case loaded(TrainingExample, resized: Bool, cropped: Bool)
        case emptyCaption
        case unreadable(String)
    }

    /// Reads one candidate's caption and image, the image cropped and resized to `size`.
    static func load(_ candidate: Candidate, in directory: String, size: Int) -> Outcome {
        do {
            let caption = Self.caption(fromFile: try FileIO.read(path: join(directory, candidate.caption)))
            guard !caption.isEmpty else { return .emptyCaption }
            let bytes = try FileIO.read(path: join(directory, candidate.image))
            let original: RGBImage
            do { original = try PNG.decode(bytes) } catch let error as DalleError {
                return .unreadable("\(candidate.image): \(reason(error))")
            }
            let square = original.centreCropped()
            let image = try square.resized(width: size, height: size)
            let cropped = square.width != original.width || square.height != original.height
            return .loaded(TrainingExample(caption: caption, image: image),
                           resized: cropped || square.width != size, cropped: cropped)
        } catch let error as DalleError {
            return .unreadable(Self.reason(error))
        } catch {
            return .unreadable("\(candidate.image): \(error)")
        }
    }

    /// The message of a read or decode error.
    private static func reason(_ error: DalleError) -> String {
        switch error {
        case .badFile(let m), .unsupported(let m), .io(let m), .invalidArgument(let m), .outOfMemory(let m): return m
        case .cancelled: return "cancelled"
        }
    }

    private static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// The error message for a folder without a usable pair: what it holds instead.
    static func nothingUsable(in directory: String, summary s: Summary, extensions: [String: Int]) -> String {
        var found: [String] = []
        for (ext, n) in extensions.sorted(by: { $0.key < $1.key }) { found.append("\(plural(n, ".\(ext) file"))") }
        if s.unsupportedFormat > 0 { found[found.count - 1] += " (unsupported format, convert to PNG)" }
        if s.missingCaption > 0 { found.append("\(plural(s.missingCaption, "PNG image")) without a .txt caption") }
        if s.emptyCaption > 0 { found.append("\(plural(s.emptyCaption, "PNG image")) with an empty caption") }
        if s.unreadable > 0 { found.append("\(plural(s.unreadable, "unreadable PNG image"))") }
        if s.captionsWithoutImage > 0 { found.append("\(plural(s.captionsWithoutImage, ".txt caption")) without an image") }
        if s.otherFiles > 0 { found.append("\(plural(s.otherFiles, "other file"))") }
        let what = found.isEmpty ? "the folder is empty" : "found " + found.joined(separator: ", ")
        return "no PNG images with captions in \(directory): \(what); expected NAME.png with NAME.txt beside it"
    }

    /// The relative paths of the regular files under `directory`, sorted byte-wise.
    static func listFiles(_ directory: String, warnings: inout [String]) throws -> [String] {
        var status = stat()
        guard stat(directory, &status) == 0 else {
            throw DalleError.io("cannot open training folder \(directory): \(String(cString: strerror(errno)))")
        }
        guard status.st_mode & S_IFMT == S_IFDIR else {
            throw DalleError.invalidArgument("\(directory) is not a folder; expected a folder of NAME.png images with NAME.txt captions")
        }
        var files: [String] = []
        var pending = [""]
        while let relative = pending.popLast() {
            let path = relative.isEmpty ? directory : join(directory, relative)
            guard let handle = opendir(path) else {
                let message = "cannot open folder \(path): \(String(cString: strerror(errno)))"
                if relative.isEmpty { throw DalleError.io(message) }
                warnings.append("skipped a folder: " + message)
                continue
            }
            defer { closedir(handle) }
            while let entry = readdir(handle) {
                let name = withUnsafePointer(to: &entry.pointee.d_name) {
                    $0.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) {
                        String(cString: $0)
                    }
                }
                guard !name.hasPrefix(".") else { continue }
                let child = relative.isEmpty ? name : relative + "/" + name
                var link = stat(), target = stat()
                guard lstat(join(directory, child), &link) == 0 else { continue }
                if link.st_mode & S_IFMT == S_IFDIR {
                    pending.append(child)
                } else if stat(join(directory, child), &target) == 0 {
                    if target.st_mode & S_IFMT == S_IFREG { files.append(child) }
                    if target.st_mode & S_IFMT == S_IFDIR { warnings.append("did not follow the link to a folder \(child)") }
                }
            }
        }
        return files.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }
}

/// "1 image", "3 images".
private func plural(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
