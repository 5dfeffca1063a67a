extension ShapesWorld {
    /// A pixel farther than this (Euclidean RGB) from every palette colour is noise.
    public static let noiseDistance = 60
    /// Components of one colour with fewer pixels are noise.
    public static let minimumObjectPixels = 24
    /// An image whose noise covers more than this percentage fails.
    public static let maximumNoisePercent = 3
    /// A relation's centroids must differ by at least this many pixels along its axis.
    public static let minimumCentroidOffset = 4.0
    /// An object whose longest box side is at most this is small, else large.
    public static let largestSmallSide = 17

    /// An object the judge found: a 4-connected component of one palette colour with at least
    /// `minimumObjectPixels` pixels.
    public struct DetectedObject: Hashable, Sendable, CustomStringConvertible {
        public var colour: Colour
        /// nil when the fill ratio or the aspect ratio fits no shape.
        public var shape: Shape?
        public var size: Size
        public var pixelCount: Int
        /// The bounding box: top-left pixel (x, y), width and height.
        public var x: Int, y: Int, width: Int, height: Int
        /// The mean of the pixels' coordinates.
        public var centroidX: Double, centroidY: Double

        /// pixels / bounding-box area.
        public var fill: Double { Double(pixelCount) / Double(width * height) }
        /// width / height.
        public var aspect: Double { Double(width) / Double(height) }

        /// "a small red circle", or "an unrecognised large red object".
        public var description: String {
            guard let shape else { return "an unrecognised \(size) \(colour) object" }
            return "a \(size) \(colour) \(shape)"
        }

        func matches(_ d: ObjectDescription) -> Bool {
            colour == d.colour && shape == d.shape && (d.size == nil || d.size == size)
        }
    }

    /// What the judge saw in an image.
    public struct Analysis: Hashable, Sendable {
        /// The objects, in the order of their first pixel (rows top to bottom, left to right).
        public var objects: [DetectedObject]
        /// Pixels far from every palette colour plus pixels of components too small to be objects.
        public var noisePixels: Int
    }

    /// The judge's decision; `reason` says why an image failed (nil when it passed).
    public struct Verdict: Hashable, Sendable {
        public var passed: Bool
        public var reason: String?
        public var analysis: Analysis
    }

    /// Steps 1–4 of the spec: palette mapping, components, noise, shape and size of every object.
    /// Takes a 64×64 RGB or RGBA image (alpha ignored); throws `DalleError.invalidArgument` for another size.
    public static func analyse(_ image: ImageView) throws -> Analysis {
        guard image.width == imageSize, image.height == imageSize else {
            throw DalleError.invalidArgument("the Shapes World judges \(imageSize)x\(imageSize) images; this one is \(image.width)x\(image.height)")
        }
        try ImageConversion.validate(image, size: imageSize, label: "the image")
        let n = imageSize, stride = image.channels
        // Step 1: each pixel's palette index (0..<8 colours, 8 background) or -1 for noise.
        var palette = Colour.allCases.map { [Int($0.rgb.r), Int($0.rgb.g), Int($0.rgb.b)] }
        palette.append([Int(background.r), Int(background.g), Int(background.b)])
        let backgroundIndex = palette.count - 1
        var labels = [Int](repeating: -1, count: n * n)
        var noise = 0
        for p in 0..<n * n {
            var best = -1, bestDistance = noiseDistance * noiseDistance
            for (k, c) in palette.enumerated() {
                let dr = Int(image.pixels[p * stride]) - c[0]
                let dg = Int(image.pixels[p * stride + 1]) - c[1]
                let db = Int(image.pixels[p * stride + 2]) - c[2]
                let d = dr * dr + dg * dg + db * db
                if d <= bestDistance && (best < 0 || d < bestDistance) {
                    best = k
                    bestDistance = d
                }
            }
            labels[p] = best
            if best < 0 { noise += 1 }
        }
        // Step 2: 4-connected components of one colour.
        var visited = [Bool](repeating: false, count: n * n)
        var objects: [DetectedObject] = []
        var stack: [Int] = []
        for start in 0..<n * n where !visited[start] && labels[start] >= 0 && labels[start] != backgroundIndex {
            let label = labels[start]
            visited[start] = true
            stack.append(start)
            var count = 0, sumX = 0, sumY = 0
            var minX = n, minY = n, maxX = -1, maxY = -1
            while let p = stack.popLast() {
                let x = p % n, y = p / n
                count += 1
                sumX += x
                sumY += y
                (minX, maxX, minY, maxY) = (min(minX, x), max(maxX, x), min(minY, y), max(maxY, y))
                for (q, inside) in [(p - 1, x > 0), (p + 1, x < n - 1), (p - n, y > 0), (p + n, y < n - 1)]
                where inside && !visited[q] && labels[q] == label {
                    visited[q] = true
                    stack.append(q)
                }
            }
            guard count >= minimumObjectPixels else {
                noise += count
                continue
            }
            // Steps 3 and 4: shape by fill ratio and aspect, size by the longest side.
            let width = maxX - minX + 1, height = maxY - minY + 1
            var object = DetectedObject(
                colour: Colour.allCases[label], shape: nil, size: max(width, height) <= largestSmallSide ? .small : .large,
                pixelCount: count, x: minX, y: minY, width: width, height: height,
                centroidX: Double(sumX) / Double(count), centroidY: Double(sumY) / Double(count))
            if object.aspect >= 0.7 && object.aspect <= 1.4 {
                let f = object.fill
                object.shape = f >= 0.88 ? .square : f >= 0.66 ? .circle : f >= 0.35 ? .triangle : nil
            }
            objects.append(object)
        }
        return Analysis(objects: objects, noisePixels: noise)
    }

    /// Judges `image` against `caption` exactly as the spec says: noise at most 3 % of the image, every
    /// object's shape recognised, the same number of objects as the caption, a one-to-one assignment of
    /// objects to the caption's objects with each colour and shape as stated and each stated size, and for
    /// a relation, A's and B's centroids at least 4 px apart along the axis in the stated direction.
    public static func judge(_ image: ImageView, caption: Caption) throws -> Verdict {
        let analysis = try analyse(image)
        func fail(_ reason: String) -> Verdict { Verdict(passed: false, reason: reason, analysis: analysis) }
        let found = analysis.objects
        if analysis.noisePixels * 100 > maximumNoisePercent * imageSize * imageSize {
            let percent = Double(analysis.noisePixels * 1000 / (imageSize * imageSize)) / 10
            return fail("noise covers \(analysis.noisePixels) pixels (\(percent) % of the image; at most \(maximumNoisePercent) % allowed)")
        }
        if let odd = found.first(where: { $0.shape == nil }) {
            return fail("unrecognised shape: the \(odd.colour) object at (\(odd.x), \(odd.y)), \(odd.width)x\(odd.height), "
                + "has fill ratio \(rounded(odd.fill)) and aspect \(rounded(odd.aspect))")
        }
        let wanted = caption.objects
        guard found.count == wanted.count else {
            let list = found.isEmpty ? "" : ": " + listing(found.map(\.description))
            return fail("expected \(wanted.count) object\(wanted.count == 1 ? "" : "s"), found \(found.count)\(list)")
        }
        var relationFailure: String?
        for order in matchingOrders(found, wanted) {
            guard case .relation(let a, let relation, let b) = caption else {
                return Verdict(passed: true, reason: nil, analysis: analysis)
            }
            let (ca, cb) = (found[order[0]], found[order[1]])
            let (offset, axis): (Double, String)
            switch relation {
            case .leftOf: (offset, axis) = (cb.centroidX - ca.centroidX, "x")
            case .rightOf: (offset, axis) = (ca.centroidX - cb.centroidX, "x")
            case .above: (offset, axis) = (cb.centroidY - ca.centroidY, "y")
            case .below: (offset, axis) = (ca.centroidY - cb.centroidY, "y")
            }
            if offset >= minimumCentroidOffset { return Verdict(passed: true, reason: nil, analysis: analysis) }
            let (pa, pb) = axis == "x" ? (ca.centroidX, cb.centroidX) : (ca.centroidY, cb.centroidY)
            relationFailure = relationFailure ?? "the \(a.colour) \(a.shape) is not \(relation.words) the \(b.colour) \(b.shape): "
                + "centroid \(axis) \(rounded(pa)) vs \(rounded(pb)) (needs \(Int(minimumCentroidOffset)) px or more)"
        }
        if let relationFailure { return fail(relationFailure) }
        let expected: String
        switch caption {
        case .single, .counting: expected = caption.text
        case .relation(let a, _, let b): expected = "a " + a.words(plural: false) + " and a " + b.words(plural: false)
        }
        return fail("expected \(expected), found \(listing(found.map(\.description)))")
    }

    /// `analyse` for an owned image.
    public static func analyse(_ image: RGBImage) throws -> Analysis {
        try image.withView { try analyse($0) }
    }

    /// `judge` for an owned image.
    public static func judge(_ image: RGBImage, caption: Caption) throws -> Verdict {
        try image.withView { try judge($0, caption: caption) }
    }

    /// The orderings of `found` that match `wanted` one to one (colour, shape, stated size), places aside.
    static func matchingOrders(_ found: [DetectedObject], _ wanted: [ObjectDescription]) -> [[Int]] {
        guard found.count == wanted.count else { return [] }
        return permutations(found.count).filter { zip($0, wanted).allSatisfy { found[$0].matches($1) } }
    }

    /// Every ordering of 0..<n (n ≤ 3 here).
    private static func permutations(_ n: Int) -> [[Int]] {
        guard n > 0 else { return [[]] }
        return permutations(n - 1).flatMap { p in (0...p.count).map { i in var q = p; q.insert(n - 1, at: i); return q } }
    }

    private static func listing(_ items: [String]) -> String {
        items.count <= 1 ? items.joined() : items.dropLast().joined(separator: ", ") + " and " + (items.last ?? "")
    }

    private static func rounded(_ x: Double) -> Double { (x * 100).rounded() / 100 }
}
