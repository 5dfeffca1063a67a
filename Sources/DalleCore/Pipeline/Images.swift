/// A borrowed 8-bit image: rows top to bottom, pixels interleaved (RGB or RGBA), no padding.
public struct ImageView {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: UnsafeBufferPointer<UInt8>

    public init(width: Int, height: Int, channels: Int, pixels: UnsafeBufferPointer<UInt8>) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}

/// An owned RGB8 image (3 interleaved channels).
public struct RGBImage: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    /// Wraps `pixels`; throws when their count is not width·height·3.
    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0,
              let n = Tensor.elementCount([width, height, 3]), n == pixels.count else {
            throw DalleError.invalidArgument("an RGB image of \(width)x\(height) needs \(width)·\(height)·3 bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public func withView<T>(_ body: (ImageView) throws -> T) rethrows -> T {
        try pixels.withUnsafeBufferPointer { try body(ImageView(width: width, height: height, channels: 3, pixels: $0)) }
    }
}

/// Conversion between 8-bit interleaved images and the dVAE's NCHW float tensors in [0, 1].
public enum ImageConversion {
    /// Checks that `image` is `size`×`size` with 3 (RGB) or 4 (RGBA) channels and holds
    /// exactly that many bytes. `label` names the image in the error ("images[2]").
    public static func validate(_ image: ImageView, size: Int, label: String) throws {
        guard image.channels == 3 || image.channels == 4 else {
            throw DalleError.invalidArgument("\(label) has \(image.channels) channels; expected 3 (RGB) or 4 (RGBA)")
        }
        guard image.width == size, image.height == size else {
            throw DalleError.invalidArgument("\(label) is \(image.width)x\(image.height); this model takes \(size)x\(size) images (resize first)")
        }
        guard let bytes = Tensor.elementCount([image.width, image.height, image.channels]),
              image.pixels.count == bytes else {
            throw DalleError.invalidArgument("\(label) holds \(image.pixels.count) bytes; \(image.width)x\(image.height)x\(image.channels) needs \(image.width * image.height * image.channels)")
        }
    }

    /// The images as a [N, 3, size, size] tensor, x = u8 / 255 (alpha dropped). Validates each image.
    public static func tensor(from images: [ImageView], size: Int) throws -> Tensor {
        for (i, image) in images.enumerated() { try validate(image, size: size, label: "images[\(i)]") }
        let plane = size * size
        var scalars = [Float](repeating: 0, count: images.count * 3 * plane)
        scalars.withUnsafeMutableBufferPointer { out in
            for (n, image) in images.enumerated() {
                let base = n * 3 * plane, stride = image.channels
                for p in 0..<plane {
                    for c in 0..<3 {
                        out[base + c * plane + p] = Float(image.pixels[p * stride + c]) * (1 / 255)
                    }
                }
            }
        }
        return Tensor(uncheckedShape: [images.count, 3, size, size], scalars: scalars)
    }

    /// Image `n` of a [N, 3, H, W] tensor as interleaved RGB8 written into `out`
    /// (H·W·3 bytes): u8 = round(clamp(x, 0, 1) · 255).
    public static func writeRGB8(_ tensor: Tensor, image n: Int, into out: UnsafeMutableBufferPointer<UInt8>) throws {
        guard tensor.rank == 4, tensor.shape[1] == 3, n >= 0, n < tensor.shape[0] else {
            throw DalleError.invalidArgument("expected image \(n) of a [N, 3, H, W] tensor, got shape \(tensor.shape)")
        }
        let plane = tensor.shape[2] * tensor.shape[3]
        guard out.count == plane * 3 else {
            throw DalleError.invalidArgument("output buffer holds \(out.count) bytes, the image needs \(plane * 3)")
        }
        let base = n * 3 * plane
        tensor.scalars.withUnsafeBufferPointer { x in
            for p in 0..<plane {
                for c in 0..<3 { out[p * 3 + c] = quantize(x[base + c * plane + p]) }
            }
        }
    }

    /// Every image of a [N, 3, H, W] tensor as RGB8.
    public static func rgbImages(_ tensor: Tensor) throws -> [RGBImage] {
        guard tensor.rank == 4 else { throw DalleError.invalidArgument("expected a [N, 3, H, W] tensor, got shape \(tensor.shape)") }
        let (h, w) = (tensor.shape[2], tensor.shape[3])
        return try (0..<tensor.shape[0]).map { n in
            var pixels = [UInt8](repeating: 0, count: h * w * 3)
            try pixels.withUnsafeMutableBufferPointer { try writeRGB8(tensor, image: n, into: $0) }
            return try RGBImage(width: w, height: h, pixels: pixels)
        }
    }

    /// round(clamp(x, 0, 1) · 255); NaN maps to 0.
    @inline(__always)
    static func quantize(_ x: Float) -> UInt8 {
        let clamped = x > 0 ? min(x, 1) : 0
        return UInt8((clamped * 255).rounded())
    }
}
