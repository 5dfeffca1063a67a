extension ShapesWorld {
    /// Pixels kept free between every object and the image border, and between any two objects' boxes.
    public static let margin = 2

    /// An object with its size resolved and its place chosen: it covers the `size.pixels`-square
    /// box whose top-left pixel is (`x`, `y`) (x to the right, y down).
    public struct PlacedObject: Hashable, Sendable {
        public var colour: Colour
        public var shape: Shape
        public var size: Size
        public var x: Int
        public var y: Int

        public init(colour: Colour, shape: Shape, size: Size, x: Int, y: Int) {
            self.colour = colour
            self.shape = shape
            self.size = size
            self.x = x
            self.y = y
        }

        /// Empty pixel columns (`axis` 0) or rows (1) from this box's far edge to `other`'s near edge
        /// in the positive direction; negative when `other` does not lie beyond this box.
        func gap(to other: PlacedObject, axis: Int) -> Int {
            axis == 0 ? other.x - (x + size.pixels) : other.y - (y + size.pixels)
        }

        /// The number of empty pixels between the two boxes along the axis where they are farthest apart.
        func separation(from other: PlacedObject) -> Int {
            max(gap(to: other, axis: 0), other.gap(to: self, axis: 0), gap(to: other, axis: 1), other.gap(to: self, axis: 1))
        }
    }

    /// The pixels a shape of side `side` covers in its `side`×`side` box, row-major, row 0 at the top.
    /// With pixel (i, j) the box's column i and row j:
    /// - square: every pixel;
    /// - circle: pixels whose centre (i + ½, j + ½) lies in the closed disc of diameter `side` centred
    ///   on the box: (2i + 1 − s)² + (2j + 1 − s)² ≤ s²;
    /// - triangle (apex up, base `side`, height `side`): pixels whose bottom-edge midpoint (i + ½, j + 1)
    ///   lies in the closed triangle with apex (s/2, 0) and base from (0, s) to (s, s): |2i + 1 − s| ≤ j + 1.
    /// Every shape's bounding box is the full `side`×`side` box. Pixels (fill ratio): circle 112 of 144
    /// and 448 of 576 (0.778), triangle 84 (0.583) and 312 (0.542), square 144 and 576 (1).
    public static func mask(_ shape: Shape, side s: Int) -> [Bool] {
        var mask = [Bool](repeating: false, count: s * s)
        for j in 0..<s {
            for i in 0..<s {
                let dx = 2 * i + 1 - s, dy = 2 * j + 1 - s
                switch shape {
                case .square: mask[j * s + i] = true
                case .circle: mask[j * s + i] = dx * dx + dy * dy <= s * s
                case .triangle: mask[j * s + i] = abs(dx) <= j + 1
                }
            }
        }
        return mask
    }

    /// Draws `objects` in flat colour on the gray background, without anti-aliasing. Objects must lie
    /// inside the image (pixels outside are clipped).
    public static func draw(_ objects: [PlacedObject]) -> RGBImage {
        paint(objects.map(Stamp.init))
    }

    /// A mask of `width`×`height` pixels (row-major, true where drawn) in one colour with its
    /// top-left pixel at (`x`, `y`): an object as `draw` paints it, or a misshapen one.
    struct Stamp {
        var mask: [Bool]
        var width: Int, height: Int
        var x: Int, y: Int
        var colour: Colour

        init(mask: [Bool], width: Int, height: Int, x: Int, y: Int, colour: Colour) {
            (self.mask, self.width, self.height, self.x, self.y, self.colour) = (mask, width, height, x, y, colour)
        }

        init(_ object: PlacedObject) {
            let s = object.size.pixels
            self.init(mask: ShapesWorld.mask(object.shape, side: s), width: s, height: s, x: object.x, y: object.y, colour: object.colour)
        }
    }

    /// Paints `stamps` in order on the gray background; pixels outside the image are clipped.
    static func paint(_ stamps: [Stamp]) -> RGBImage {
        let n = imageSize
        var pixels = [UInt8](repeating: 0, count: n * n * 3)
        for p in 0..<n * n {
            (pixels[3 * p], pixels[3 * p + 1], pixels[3 * p + 2]) = background
        }
        for stamp in stamps {
            let rgb = stamp.colour.rgb
            for j in 0..<stamp.height where (0..<n).contains(stamp.y + j) {
                for i in 0..<stamp.width where (0..<n).contains(stamp.x + i) && stamp.mask[j * stamp.width + i] {
                    let p = (stamp.y + j) * n + stamp.x + i
                    (pixels[3 * p], pixels[3 * p + 1], pixels[3 * p + 2]) = rgb
                }
            }
        }
        return RGBImage(uncheckedWidth: n, height: n, pixels: pixels)
    }

    /// Renders `caption` (any caption of the grammar, held-out pairs included: the evaluation mode)
    /// at a random layout drawn from `seed`; unstated sizes are drawn at random.
    /// Throws `DalleError.invalidArgument` for a caption outside the grammar.
    public static func render(caption: Caption, seed: UInt64) throws -> RGBImage {
        try caption.validate()
        var rng = ShapesRandom(seed: seed, stream: .render, index: 0)
        return draw(layout(caption, rng: &rng))
    }

    /// Chooses sizes (where the caption gives none) and places every object of `caption` uniformly
    /// at random under the spec's constraints: each box fully inside with `margin` pixels to the
    /// border, any two boxes at least `margin` empty pixels apart, and for a relation "A r B" the
    /// boxes at least `margin` pixels apart along r's axis in r's direction. Objects are placed one
    /// after another, each uniformly among the positions that satisfy the constraints with the ones
    /// before; when none is left, sizes and places are all drawn again. Every caption of the grammar
    /// fits, so this ends: even three large objects (a 2×2 arrangement) succeed in about 2 tries of 3.
    static func layout(_ caption: Caption, rng: inout ShapesRandom) -> [PlacedObject] {
        let descriptions = caption.objects
        var relation: Relation?
        if case .relation(_, let r, _) = caption { relation = r }
        while true {
            var placed: [PlacedObject] = []
            for d in descriptions {
                let size = d.size ?? (rng.below(2) == 0 ? .small : .large)
                let candidates = positions(for: size, after: placed, relation: relation)
                guard !candidates.isEmpty else { break }
                let (x, y) = candidates[rng.below(candidates.count)]
                placed.append(PlacedObject(colour: d.colour, shape: d.shape, size: size, x: x, y: y))
            }
            if placed.count == descriptions.count { return placed }
        }
    }

    /// True when the boxes of `a` and `b` are as far apart as the world requires: `margin` pixels
    /// along some axis, or for a relation (`a` its A, `b` its B) along the relation's axis in its direction.
    static func areApart(_ a: PlacedObject, _ b: PlacedObject, relation: Relation?) -> Bool {
        switch relation {
        case nil: return a.separation(from: b) >= margin
        case .leftOf?: return a.gap(to: b, axis: 0) >= margin
        case .rightOf?: return b.gap(to: a, axis: 0) >= margin
        case .above?: return a.gap(to: b, axis: 1) >= margin
        case .below?: return b.gap(to: a, axis: 1) >= margin
        }
    }

    /// Every top-left corner where a box of `size` satisfies the constraints with `placed`
    /// (for a relation, `placed` is empty or holds A, and the new box is B).
    static func positions(for size: Size, after placed: [PlacedObject], relation: Relation?) -> [(Int, Int)] {
        let range = margin...(imageSize - margin - size.pixels)
        var result: [(Int, Int)] = []
        for y in range {
            for x in range {
                let box = PlacedObject(colour: .red, shape: .square, size: size, x: x, y: y)
                if placed.allSatisfy({ areApart($0, box, relation: relation) }) { result.append((x, y)) }
            }
        }
        return result
    }
}

extension RGBImage {
    /// Wraps pixels whose count is known to be width·height·3.
    fileprivate init(uncheckedWidth width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}
