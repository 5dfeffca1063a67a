import DalleCore
import DalleImageIO

/// How generate and decode write their images: enlarged by `--scale N` (nearest neighbour, or
/// bicubic with `--scale-filter bicubic`), and with `--grid` also as one contact sheet.
struct ImageOutput {
    let scale: Int
    let bicubic: Bool
    let grid: Bool

    static let options = ["scale", "scale-filter", "grid"]
    /// The options' help lines; `grid` says what --grid does for the command.
    static func usage(grid: String) -> String {
        """
          --scale N            write images N times larger, 1 ... 16 (default 1)
          --scale-filter F     how --scale fills pixels: nearest (default, crisp) or bicubic (smooth)
          --grid               \(grid)

        """
    }

    init(_ arguments: Arguments) throws {
        scale = try arguments.number("scale", default: 1)
        guard (1...16).contains(scale) else { throw UsageError("--scale must be an integer from 1 to 16, got \(scale)") }
        switch arguments.options["scale-filter"] ?? "nearest" {
        case "nearest": bicubic = false
        case "bicubic": bicubic = true
        case let other: throw UsageError("--scale-filter must be nearest or bicubic, got '\(other)'")
        }
        grid = arguments.flag("grid")
    }

    /// `image` enlarged by `scale`.
    func scaled(_ image: RGBImage) throws -> RGBImage {
        guard scale > 1 else { return image }
        let (w, h) = (image.width * scale, image.height * scale)
        if !bicubic {
            var out = [UInt8](repeating: 0, count: w * h * 3)
            for y in 0..<h {
                let source = (y / scale) * image.width
                for x in 0..<w {
                    let s = (source + x / scale) * 3, d = (y * w + x) * 3
                    out[d] = image.pixels[s]; out[d + 1] = image.pixels[s + 1]; out[d + 2] = image.pixels[s + 2]
                }
            }
            return try RGBImage(width: w, height: h, pixels: out)
        }
        // PyTorch's bicubic (a = -0.75, edges clamped) on the [1, 3, H, W] planes, rounded and clamped back to bytes.
        var planes = [Float](repeating: 0, count: image.pixels.count)
        let n = image.width * image.height
        for i in 0..<n { for c in 0..<3 { planes[c * n + i] = Float(image.pixels[i * 3 + c]) } }
        let resized = try Tensor(shape: [1, 3, image.height, image.width], scalars: planes)
            .resizedBicubic(height: h, width: w, antialias: false).scalars
        var out = [UInt8](repeating: 0, count: w * h * 3)
        for i in 0..<(w * h) {
            for c in 0..<3 { out[i * 3 + c] = UInt8(min(max(resized[c * w * h + i], 0), 255).rounded()) }
        }
        return try RGBImage(width: w, height: h, pixels: out)
    }

    /// `images` (all one size) tiled row by row on a sheet of ceil(sqrt(n)) columns and as many
    /// rows as they need, cells touching; cells past the last image are black.
    static func contactSheet(_ images: [RGBImage]) throws -> RGBImage {
        guard let first = images.first else { throw DalleError.invalidArgument("no images for the contact sheet") }
        var columns = 1
        while columns * columns < images.count { columns += 1 }
        let rows = (images.count + columns - 1) / columns
        let (cw, ch) = (first.width, first.height), width = columns * cw
        var out = [UInt8](repeating: 0, count: width * rows * ch * 3)
        for (n, image) in images.enumerated() {
            let (x0, y0) = ((n % columns) * cw, (n / columns) * ch)
            for y in 0..<ch {
                let d = ((y0 + y) * width + x0) * 3
                out.replaceSubrange(d..<(d + cw * 3), with: image.pixels[(y * cw * 3)..<((y + 1) * cw * 3)])
            }
        }
        return try RGBImage(width: width, height: rows * ch, pixels: out)
    }
}

/// Image files by their name: `.ppm` is written as binary PPM (P6), any other name as PNG, except
/// names that promise a format the CLI does not write (JPEG, GIF, ...), which are refused.
enum ImageFile {
    static let refused = ["jpg", "jpeg", "jpe", "jfif", "gif", "bmp", "webp", "tif", "tiff", "avif", "heic"]

    /// Throws when `path` names a format the CLI does not write; call before any work is done.
    static func checkWritable(_ path: String) throws {
        let ext = fileExtension(path)
        if refused.contains(ext) {
            throw RunError("\(path): dalle writes PNG and PPM images, not \(ext.uppercased()); name the file .png (or .ppm)")
        }
    }

    static func write(_ image: RGBImage, path: String) throws {
        try checkWritable(path)
        if fileExtension(path) == "ppm" {
            let bytes = Array("P6\n\(image.width) \(image.height)\n255\n".utf8) + image.pixels
            try writeBytes(bytes, path: path)
        } else {
            try PNG.write(image, path: path)
        }
    }

    /// The lower-cased extension of the file name (after its last dot), or "".
    static func fileExtension(_ path: String) -> String {
        let name = path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return "" }
        return name[name.index(after: dot)...].lowercased()
    }
}
