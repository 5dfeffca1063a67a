import CDalle
import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// Renders a Shapes World caption into a 64x64 RGB image allocated for the caller.
@_cdecl("dalle_shapes_render")
public func dalle_shapes_render(_ caption: UnsafePointer<CChar>?, _ seed: UInt64,
                                _ outImage: UnsafeMutablePointer<dalle_image>?) -> dalle_status {
    outImage?.pointee = dalle_image()
    return boundary("dalle_shapes_render") {
        guard let outImage else { throw DalleError.invalidArgument("out_image is NULL") }
        let parsed = try ShapesWorld.Caption.parse(try utf8String(caption, name: "caption"))
        outImage.pointee = try callerImage(try ShapesWorld.render(caption: parsed, seed: seed))
    }
}

/// Sample `index` of the Shapes World training stream `seed`: its caption into the caller's
/// buffer (size-first, NUL-terminated) and its image allocated for the caller.
@_cdecl("dalle_shapes_training_sample")
public func dalle_shapes_training_sample(_ seed: UInt64, _ index: UInt64, _ captionBuffer: UnsafeMutablePointer<CChar>?,
                                         _ captionCapacity: Int, _ outCaptionLength: UnsafeMutablePointer<Int>?,
                                         _ outImage: UnsafeMutablePointer<dalle_image>?) -> dalle_status {
    outCaptionLength?.pointee = 0
    outImage?.pointee = dalle_image()
    return boundary("dalle_shapes_training_sample") {
        guard let outCaptionLength else { throw DalleError.invalidArgument("out_caption_len is NULL") }
        guard captionBuffer != nil || captionCapacity == 0 else {
            throw DalleError.invalidArgument("caption_buf is NULL but caption_capacity is \(captionCapacity)")
        }
        let sample = try ShapesWorld.trainingSample(seed: seed, index: index)
        let text = Array(sample.caption.text.utf8)
        outCaptionLength.pointee = text.count
        if let captionBuffer {
            guard text.count < captionCapacity else {
                throw DalleError.invalidArgument("caption_buf has room for \(captionCapacity) bytes but the caption needs \(text.count + 1) with its NUL (*out_caption_len says its length)")
            }
            for (i, byte) in text.enumerated() { captionBuffer[i] = CChar(bitPattern: byte) }
            captionBuffer[text.count] = 0
        }
        if let outImage { outImage.pointee = try callerImage(sample.image) }
    }
}

/// Judges a 64x64 image against a Shapes World caption.
@_cdecl("dalle_shapes_judge")
public func dalle_shapes_judge(_ image: UnsafePointer<dalle_image>?, _ caption: UnsafePointer<CChar>?,
                               _ outPassed: UnsafeMutablePointer<Bool>?, _ reasonBuffer: UnsafeMutablePointer<CChar>?,
                               _ reasonCapacity: Int) -> dalle_status {
    outPassed?.pointee = false
    if let reasonBuffer, reasonCapacity > 0 { reasonBuffer[0] = 0 }
    return boundary("dalle_shapes_judge") {
        guard let outPassed else { throw DalleError.invalidArgument("out_passed is NULL") }
        guard reasonBuffer != nil || reasonCapacity == 0 else {
            throw DalleError.invalidArgument("reason_buf is NULL but reason_capacity is \(reasonCapacity)")
        }
        guard let image else { throw DalleError.invalidArgument("image is NULL") }
        let parsed = try ShapesWorld.Caption.parse(try utf8String(caption, name: "caption"))
        let picture = image.pointee
        let size = ShapesWorld.imageSize
        guard picture.channels == 3 || picture.channels == 4 else {
            throw DalleError.invalidArgument("image->channels is \(picture.channels); expected 3 (RGB) or 4 (RGBA)")
        }
        guard Int(picture.width) == size, Int(picture.height) == size else {
            throw DalleError.invalidArgument("image is \(picture.width)x\(picture.height); the Shapes World judges \(size)x\(size) images")
        }
        guard let data = picture.data else { throw DalleError.invalidArgument("image->data is NULL") }
        let view = ImageView(width: size, height: size, channels: Int(picture.channels),
                             pixels: UnsafeBufferPointer(start: data, count: size * size * Int(picture.channels)))
        let verdict = try ShapesWorld.judge(view, caption: parsed)
        outPassed.pointee = verdict.passed
        if let reasonBuffer { copyTruncated(verdict.reason ?? "", to: reasonBuffer, capacity: reasonCapacity) }
    }
}

/// Frees the pixels of an image the library allocated and zeroes the struct.
@_cdecl("dalle_image_free")
public func dalle_image_free(_ image: UnsafeMutablePointer<dalle_image>?) {
    guard let image else { return }
    if let data = image.pointee.data {
        do { try CallerMemory.free(UnsafeMutableRawPointer(data), .image) }
        catch { reportMisuse("dalle_image_free", error); return }
    }
    image.pointee = dalle_image()
}

/// The NUL-terminated UTF-8 text at `text`; throws for NULL or invalid UTF-8.
func utf8String(_ text: UnsafePointer<CChar>?, name: String) throws -> String {
    guard let text else { throw DalleError.invalidArgument("\(name) is NULL") }
    guard let string = String(validating: UnsafeRawBufferPointer(start: text, count: strlen(text)), as: UTF8.self) else {
        throw DalleError.invalidArgument("\(name) is not valid UTF-8")
    }
    return string
}

/// Copies `text` into `buffer` with its NUL, cut at a UTF-8 character boundary to fit `capacity` bytes.
private func copyTruncated(_ text: String, to buffer: UnsafeMutablePointer<CChar>, capacity: Int) {
    guard capacity > 0 else { return }
    let bytes = Array(text.utf8)
    var end = min(bytes.count, capacity - 1)
    while end > 0, end < bytes.count, bytes[end] & 0xC0 == 0x80 { end -= 1 }
    for i in 0..<end { buffer[i] = CChar(bitPattern: bytes[i]) }
    buffer[end] = 0
}

/// `image` in a caller allocation (freed by dalle_image_free).
func callerImage(_ image: RGBImage) throws -> dalle_image {
    let data = try CallerMemory.allocate(bytes: image.pixels.count, .image)
    image.pixels.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    return dalle_image(width: UInt32(image.width), height: UInt32(image.height), channels: 3,
                       data: data.assumingMemoryBound(to: UInt8.self))
}
