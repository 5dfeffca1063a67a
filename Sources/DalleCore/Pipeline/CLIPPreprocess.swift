/// CLIP's image preprocessing (`clip.clip._transform`): Resize(n, BICUBIC) of the short
/// side, CenterCrop(n), ToTensor, Normalize(CLIP's mean and std), with the resize done
/// exactly as Pillow's `Image.resize(size, BICUBIC)` does it on 8-bit images: a separable
/// cubic filter (a = -0.5) widened by the scale when downscaling (antialiasing), 22-bit
/// fixed-point coefficients, and rounding to uint8 after the horizontal pass and again
/// after the vertical one. Any alpha channel is dropped before resizing.
public enum CLIPPreprocess {
    public static let mean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let std: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// How the centre crop's offset (the excess over the crop, halved) is rounded: torchvision's
    /// `CenterCrop` rounds half to even (OpenAI's CLIP); transformers' `CLIPImageProcessor` floors.
    public enum CropRounding: Sendable, Equatable {
        case halfToEven, down
    }

    /// The preprocessed images as [N, 3, size, size]. Images may have any size and aspect
    /// ratio; errors name them "images[firstIndex + i]".
    public static func tensor(from images: [ImageView], size: Int, firstIndex: Int = 0,
                              cropRounding: CropRounding = .halfToEven) throws -> Tensor {
        let plane = size * size
        var scalars = [Float](repeating: 0, count: images.count * 3 * plane)
        for (n, image) in images.enumerated() {
            let cropped = try resizeAndCrop(image, size: size, label: "images[\(firstIndex + n)]", cropRounding: cropRounding)
            for p in 0..<plane {
                for c in 0..<3 {
                    let x = Float(cropped.pixels[p * 3 + c]) / 255
                    scalars[(n * 3 + c) * plane + p] = (x - mean[c]) / std[c]
                }
            }
        }
        return Tensor(uncheckedShape: [images.count, 3, size, size], scalars: scalars)
    }

    /// Resize so the short side is `size` (the long side ⌊size · long / short⌋), then crop the
    /// centre `size`×`size` square (offsets rounded as `cropRounding` says).
    public static func resizeAndCrop(_ image: ImageView, size: Int, label: String = "image",
                                     cropRounding: CropRounding = .halfToEven) throws -> RGBImage {
        guard image.channels == 3 || image.channels == 4 else {
            throw DalleError.invalidArgument("\(label) has \(image.channels) channels; expected 3 (RGB) or 4 (RGBA)")
        }
        guard image.width > 0, image.height > 0, image.width <= 1 << 15, image.height <= 1 << 15,
              image.width * image.height <= 1 << 26 else {
            throw DalleError.invalidArgument("\(label) is \(image.width)x\(image.height); sides must be 1...32768 and the image at most 2^26 pixels")
        }
        guard image.pixels.count == image.width * image.height * image.channels else {
            throw DalleError.invalidArgument("\(label) holds \(image.pixels.count) bytes; \(image.width)x\(image.height)x\(image.channels) needs \(image.width * image.height * image.channels)")
        }
        guard size > 0, size <= 1 << 14 else { throw DalleError.invalidArgument("preprocessing size \(size) out of range") }
        let (w, h) = (image.width, image.height)
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        for p in 0..<(w * h) {
            for c in 0..<3 { rgb[p * 3 + c] = image.pixels[p * image.channels + c] }
        }
        let short = min(w, h), long = max(w, h)
        let newLong = Int(Double(size) * Double(long) / Double(short))
        let (nw, nh) = w <= h ? (size, newLong) : (newLong, size)
        guard nw * nh <= 1 << 26 else {
            throw DalleError.invalidArgument("\(label) is \(w)x\(h); resized to \(nw)x\(nh) before cropping it would exceed 2^26 pixels (aspect ratio too extreme)")
        }
        if nw != w { rgb = resample(rgb, width: w, height: h, horizontal: true, to: nw) }
        if nh != h { rgb = resample(rgb, width: nw, height: h, horizontal: false, to: nh) }
        let half = cropRounding == .halfToEven ? roundHalfEven : { $0 / 2 }
        let top = half(nh - size), left = half(nw - size)
        var out = [UInt8](repeating: 0, count: size * size * 3)
        for y in 0..<size {
            for x in 0..<(size * 3) { out[y * size * 3 + x] = rgb[((top + y) * nw + left) * 3 + x] }
        }
        return try RGBImage(width: size, height: size, pixels: out)
    }

    /// round(d / 2) with ties to even (Python's `round`).
    static func roundHalfEven(_ d: Int) -> Int {
        let half = d / 2
        return d % 2 == 0 || half % 2 == 0 ? half : half + 1
    }

    /// Pillow's bicubic kernel (a = -0.5).
    static func cubic(_ x: Double) -> Double {
        let a = -0.5, x = abs(x)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    static let precisionBits = 32 - 8 - 2

    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: for each output index its
    /// first input index, and fixed-point weights.
    static func coefficients(inSize: Int, outSize: Int) -> (start: [Int], weights: [[Int]]) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = 2 * filterScale
        var starts: [Int] = [], weights: [[Int]] = []
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            let ss = 1 / filterScale
            let xmin = max(Int(center - support + 0.5), 0)
            let xmax = min(Int(center + support + 0.5), inSize)
            var k = (xmin..<xmax).map { cubic((Double($0) - center + 0.5) * ss) }
            let total = k.reduce(0, +)
            if total != 0 { k = k.map { $0 / total } }
            let one = Double(1 << precisionBits)
            starts.append(xmin)
            weights.append(k.map { Int($0 < 0 ? -0.5 + $0 * one : 0.5 + $0 * one) })
        }
        return (starts, weights)
    }

    /// One pass of Pillow's 8-bit resampling along rows (`horizontal`) or columns.
    static func resample(_ src: [UInt8], width: Int, height: Int, horizontal: Bool, to outSize: Int) -> [UInt8] {
        let (starts, weights) = coefficients(inSize: horizontal ? width : height, outSize: outSize)
        let (ow, oh) = horizontal ? (outSize, height) : (width, outSize)
        var out = [UInt8](repeating: 0, count: ow * oh * 3)
        let rounding = 1 << (precisionBits - 1)
        for y in 0..<oh {
            for x in 0..<ow {
                let i = horizontal ? x : y
                let k = weights[i]
                for c in 0..<3 {
                    var s = rounding
                    for (j, wj) in k.enumerated() {
                        let (sx, sy) = horizontal ? (starts[i] + j, y) : (x, starts[i] + j)
                        s += Int(src[(sy * width + sx) * 3 + c]) * wj
                    }
                    out[(y * ow + x) * 3 + c] = UInt8(clamping: s >> precisionBits)
                }
            }
        }
        return out
    }
}
