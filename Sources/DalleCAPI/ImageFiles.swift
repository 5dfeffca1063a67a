import CDalle
import DalleCore
import DalleImageIO

/// Reads a PNG file into an RGB8 image allocated for the caller (freed by dalle_image_free).
@_cdecl("dalle_image_read_file")
public func dalle_image_read_file(_ path: UnsafePointer<CChar>?, _ outImage: UnsafeMutablePointer<dalle_image>?) -> dalle_status {
    outImage?.pointee = dalle_image()
    return boundary("dalle_image_read_file") {
        guard let outImage else { throw DalleError.invalidArgument("out_image is NULL") }
        guard let path else { throw DalleError.invalidArgument("path is NULL") }
        outImage.pointee = try callerImage(try PNG.read(path: String(cString: path)))
    }
}

/// Writes the caller's image (RGB, or RGBA with the alpha dropped) to `path` as an RGB8 PNG.
@_cdecl("dalle_image_write_png")
public func dalle_image_write_png(_ path: UnsafePointer<CChar>?, _ image: UnsafePointer<dalle_image>?) -> dalle_status {
    boundary("dalle_image_write_png") {
        guard let path else { throw DalleError.invalidArgument("path is NULL") }
        guard let image else { throw DalleError.invalidArgument("image is NULL") }
        let picture = image.pointee
        let (width, height, channels) = (Int(picture.width), Int(picture.height), Int(picture.channels))
        guard channels == 3 || channels == 4 else {
            throw DalleError.invalidArgument("image->channels is \(channels); expected 3 (RGB) or 4 (RGBA)")
        }
        // Each side first, so that their product cannot overflow.
        guard width > 0, height > 0, width <= PNG.maxPixels, height <= PNG.maxPixels, width * height <= PNG.maxPixels else {
            throw DalleError.invalidArgument("image is \(width)x\(height); a PNG written here has 1 to \(PNG.maxPixels) pixels")
        }
        guard let data = picture.data else { throw DalleError.invalidArgument("image->data is NULL") }
        let source = UnsafeBufferPointer(start: data, count: width * height * channels)
        var rgb: [UInt8] = []
        rgb.reserveCapacity(width * height * 3)
        for start in stride(from: 0, to: source.count, by: channels) { rgb.append(contentsOf: source[start..<(start + 3)]) }
        try PNG.write(try RGBImage(width: width, height: height, pixels: rgb), path: String(cString: path))
    }
}
