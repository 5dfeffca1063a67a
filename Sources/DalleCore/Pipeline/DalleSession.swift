/// Everything a call on a model mutates: the thread pool, the seed, the cancellation flag.
/// One thread at a time uses a session; many sessions may share one `DalleModel`.
public final class DalleSession: @unchecked Sendable {
    public let model: DalleModel
    public let pool: ThreadPool
    /// The seed of this session's random draws (picked at random when none was given).
    public let seed: UInt64
    /// Raised by `cancel()` from any thread; cleared when a call starts.
    public let cancellation = CancellationFlag()

    /// The most images or token grids one call accepts.
    public static let maxBatch = 4096

    /// `threads` = 0 uses every online core; `seed` nil picks one at random.
    public init(model: DalleModel, threads: Int = 0, seed: UInt64? = nil) throws {
        guard threads >= 0 else { throw DalleError.invalidArgument("thread count \(threads) is negative (0 means all cores)") }
        guard threads <= 4096 else { throw DalleError.invalidArgument("thread count \(threads) is absurd (at most 4096)") }
        self.model = model
        self.pool = ThreadPool(threads: threads)
        self.seed = seed ?? UInt64.random(in: 0..<UInt64.max)
    }

    /// Asks the running call to stop at its next step.
    public func cancel() { cancellation.request() }

    /// Token grids of `images` (each the model's image size, RGB or RGBA), grid after grid,
    /// row-major. One progress step per image.
    public func encode(_ images: [ImageView], progress: ProgressHandler? = nil) throws -> [Int32] {
        cancellation.reset()
        let dvae = try model.requireImageTokenizer()
        try checkBatch(images.count, "images")
        for (i, image) in images.enumerated() {
            try ImageConversion.validate(image, size: dvae.imageSize, label: "images[\(i)]")
        }
        let gridCount = dvae.gridSize * dvae.gridSize
        let reporter = StepReporter(total: images.count, handler: progress, cancellation: cancellation)
        try reporter.report(0)
        var tokens = [Int32]()
        tokens.reserveCapacity(images.count * gridCount)
        for (i, image) in images.enumerated() {
            let pixels = try ImageConversion.tensor(from: [image], size: dvae.imageSize)
            tokens += try dvae.encode(pixels, pool: pool)
            try reporter.report(i + 1)
        }
        return tokens
    }

    /// RGB8 images (image size squared, interleaved) of `count` token grids held grid after
    /// grid in `tokens`; every id must be below the codebook size. One progress step per grid.
    public func decode(tokens: UnsafeBufferPointer<Int32>, count: Int, progress: ProgressHandler? = nil) throws -> [UInt8] {
        cancellation.reset()
        let dvae = try model.requireImageTokenizer()
        try checkBatch(count, "token grids")
        let gridCount = dvae.gridSize * dvae.gridSize
        guard tokens.count == count * gridCount else {
            throw DalleError.invalidArgument("\(count) token grids of \(dvae.gridSize)x\(dvae.gridSize) need \(count * gridCount) ids, got \(tokens.count)")
        }
        for (i, id) in tokens.enumerated() where id < 0 || Int(id) >= dvae.vocabSize {
            throw DalleError.invalidArgument("token \(i % gridCount) of grid \(i / gridCount) is \(id); ids must be in 0..<\(dvae.vocabSize) (the codebook size)")
        }
        return try decodeRGB8(Array(tokens), count: count, with: dvae, progress: progress)
    }

    /// RGB8 images of `count` token grids already checked against `decoder`; one progress
    /// step per grid.
    func decodeRGB8(_ tokens: [Int32], count: Int, with decoder: ImageTokenizer,
                    progress: ProgressHandler?) throws -> [UInt8] {
        let gridCount = decoder.gridSize * decoder.gridSize
        let imageBytes = decoder.imageSize * decoder.imageSize * 3
        try WorkingMemory.require(WorkingMemory.product(2, count, imageBytes), for: "\(count) decoded images")
        let reporter = StepReporter(total: count, handler: progress, cancellation: cancellation)
        try reporter.report(0)
        var pixels = [UInt8](repeating: 0, count: count * imageBytes)
        for n in 0..<count {
            let image = try decoder.decode(tokens: Array(tokens[(n * gridCount)..<((n + 1) * gridCount)]), count: 1, pool: pool)
            try pixels.withUnsafeMutableBufferPointer { out in
                try ImageConversion.writeRGB8(image, image: 0, into: UnsafeMutableBufferPointer(rebasing: out[(n * imageBytes)..<((n + 1) * imageBytes)]))
            }
            try reporter.report(n + 1)
        }
        return pixels
    }

    private func checkBatch(_ count: Int, _ what: String) throws {
        guard count >= 0, count <= DalleSession.maxBatch else {
            throw DalleError.invalidArgument("\(count) \(what) in one call; at most \(DalleSession.maxBatch)")
        }
    }
}
