import CDalle
import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// Encodes `n_images` images into token grids allocated for the caller.
@_cdecl("dalle_encode")
public func dalle_encode(_ ctx: OpaquePointer?, _ images: UnsafePointer<dalle_image>?, _ nImages: UInt32,
                         _ outTokens: UnsafeMutablePointer<dalle_tokens>?) -> dalle_status {
    withContext("dalle_encode", ctx) { box in
        guard let outTokens else { throw DalleError.invalidArgument("out_tokens is NULL") }
        outTokens.pointee = dalle_tokens()
        let count = Int(nImages)
        guard count <= Int(DALLE_MAX_BATCH) else {
            throw DalleError.invalidArgument("n_images is \(count); at most DALLE_MAX_BATCH (\(DALLE_MAX_BATCH)) per call")
        }
        guard count == 0 || images != nil else { throw DalleError.invalidArgument("images is NULL but n_images is \(count)") }
        let config = try box.session.model.requireImageTokenizer()
        var views: [ImageView] = []
        for i in 0..<count {
            let image = images.unsafelyUnwrapped[i]
            guard image.channels == 3 || image.channels == 4 else {
                throw DalleError.invalidArgument("images[\(i)].channels is \(image.channels); expected 3 (RGB) or 4 (RGBA)")
            }
            guard Int(image.width) == config.imageSize, Int(image.height) == config.imageSize else {
                throw DalleError.invalidArgument("images[\(i)] is \(image.width)x\(image.height); this model takes \(config.imageSize)x\(config.imageSize) images (resize first)")
            }
            guard let data = image.data else { throw DalleError.invalidArgument("images[\(i)].data is NULL") }
            let bytes = Int(image.width) * Int(image.height) * Int(image.channels)  // bounded by the checks above
            views.append(ImageView(width: Int(image.width), height: Int(image.height), channels: Int(image.channels),
                                   pixels: UnsafeBufferPointer(start: data, count: bytes)))
        }
        let tokens = try box.session.encode(views, progress: box.progressHandler(Int32(DALLE_PHASE_ENCODE)))
        var result = dalle_tokens()
        result.count = nImages
        result.rows = UInt32(config.gridSize)
        result.cols = UInt32(config.gridSize)
        if !tokens.isEmpty {
            let p = try CallerMemory.allocate(bytes: tokens.count * MemoryLayout<Int32>.stride, .tokens)
            tokens.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            result.data = p.assumingMemoryBound(to: Int32.self)
        }
        outTokens.pointee = result
    }
}

/// Decodes token grids into RGB8 images allocated for the caller.
@_cdecl("dalle_decode")
public func dalle_decode(_ ctx: OpaquePointer?, _ tokens: UnsafePointer<dalle_tokens>?,
                         _ outImages: UnsafeMutablePointer<dalle_image_batch>?) -> dalle_status {
    withContext("dalle_decode", ctx) { box in
        guard let outImages else { throw DalleError.invalidArgument("out_images is NULL") }
        outImages.pointee = dalle_image_batch()
        guard let tokens else { throw DalleError.invalidArgument("tokens is NULL") }
        let grids = tokens.pointee
        let config = try box.session.model.requireImageTokenizer()
        let count = Int(grids.count)
        guard count <= Int(DALLE_MAX_BATCH) else {
            throw DalleError.invalidArgument("tokens->count is \(count); at most DALLE_MAX_BATCH (\(DALLE_MAX_BATCH)) per call")
        }
        guard Int(grids.rows) == config.gridSize, Int(grids.cols) == config.gridSize else {
            throw DalleError.invalidArgument("token grids are \(grids.rows)x\(grids.cols); this model's grid is \(config.gridSize)x\(config.gridSize)")
        }
        guard count == 0 || grids.data != nil else { throw DalleError.invalidArgument("tokens->data is NULL but tokens->count is \(count)") }
        let ids = UnsafeBufferPointer(start: grids.data, count: count * config.gridSize * config.gridSize)
        let pixels = try box.session.decode(tokens: ids, count: count, progress: box.progressHandler(Int32(DALLE_PHASE_DECODE)))
        outImages.pointee = try imageBatch(pixels, count: count, size: config.imageSize)
    }
}

/// Frees token data the library allocated and zeroes the struct.
@_cdecl("dalle_tokens_free")
public func dalle_tokens_free(_ tokens: UnsafeMutablePointer<dalle_tokens>?) {
    guard let tokens else { return }
    if let data = tokens.pointee.data {
        do { try CallerMemory.free(UnsafeMutableRawPointer(data), .tokens) }
        catch { reportMisuse("dalle_tokens_free", error); return }
    }
    tokens.pointee = dalle_tokens()
}

/// Frees a batch of images the library allocated and zeroes the struct.
@_cdecl("dalle_image_batch_free")
public func dalle_image_batch_free(_ images: UnsafeMutablePointer<dalle_image_batch>?) {
    guard let images else { return }
    if let block = images.pointee.images {
        do { try CallerMemory.free(UnsafeMutableRawPointer(block), .images) }
        catch { reportMisuse("dalle_image_batch_free", error); return }
    }
    images.pointee = dalle_image_batch()
}
