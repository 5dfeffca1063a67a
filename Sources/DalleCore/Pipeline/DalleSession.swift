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
        let (dvae, config) = try model.requireDVAE()
        try checkBatch(images.count, "images")
        for (i, image) in images.enumerated() {
            try ImageConversion.validate(image, size: config.imageSize, label: "images[\(i)]")
        }
        let gridCount = config.tokenGridSize * config.tokenGridSize
        let reporter = StepReporter(total: images.count, handler: progress, cancellation: cancellation)
        try reporter.report(0)
        var tokens = [Int32]()
        tokens.reserveCapacity(images.count * gridCount)
        for (i, image) in images.enumerated() {
            let pixels = try ImageConversion.tensor(from: [image], size: config.imageSize)
            tokens += try dvae.encode(pixels, pool: pool)
            try reporter.report(i + 1)
        }
        return tokens
    }

    /// RGB8 images (image size squared, interleaved) of `count` token grids held grid after
    /// grid in `tokens`; every id must be below the codebook size. One progress step per grid.
    public func decode(tokens: UnsafeBufferPointer<Int32>, count: Int, progress: ProgressHandler? = nil) throws -> [UInt8] {
        cancellation.reset()
        let (dvae, config) = try model.requireDVAE()
        try checkBatch(count, "token grids")
        let gridCount = config.tokenGridSize * config.tokenGridSize
        guard tokens.count == count * gridCount else {
            throw DalleError.invalidArgument("\(count) token grids of \(config.tokenGridSize)x\(config.tokenGridSize) need \(count * gridCount) ids, got \(tokens.count)")
        }
        for (i, id) in tokens.enumerated() where id < 0 || Int(id) >= config.vocabSize {
            throw DalleError.invalidArgument("token \(i % gridCount) of grid \(i / gridCount) is \(id); ids must be in 0..<\(config.vocabSize) (the codebook size)")
        }
        let imageBytes = config.imageSize * config.imageSize * 3
        let reporter = StepReporter(total: count, handler: progress, cancellation: cancellation)
        try reporter.report(0)
        var pixels = [UInt8](repeating: 0, count: count * imageBytes)
        for n in 0..<count {
            let grid = Array(tokens[(n * gridCount)..<((n + 1) * gridCount)])
            let image = try dvae.decode(tokens: grid, count: 1, pool: pool)
            try pixels.withUnsafeMutableBufferPointer { out in
                let slot = UnsafeMutableBufferPointer(rebasing: out[(n * imageBytes)..<((n + 1) * imageBytes)])
                try ImageConversion.writeRGB8(image, image: 0, into: slot)
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
