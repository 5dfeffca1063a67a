extension ShapesWorld {
    /// How often each template is drawn for training, as integer weights.
    public struct TemplateMix: Hashable, Sendable {
        public var single: Int
        public var counting: Int
        public var relation: Int

        /// One object 25 %, counting 25 %, relation 50 % (relations have the most combinations).
        public static let standard = TemplateMix(single: 1, counting: 1, relation: 2)

        /// Weights must be 0...2²⁰ with a positive sum; the stream and `trainingSample` check them.
        public init(single: Int, counting: Int, relation: Int) {
            self.single = single
            self.counting = counting
            self.relation = relation
        }

        func validate() throws {
            guard single >= 0, counting >= 0, relation >= 0, single <= 1 << 20, counting <= 1 << 20, relation <= 1 << 20,
                  single + counting + relation > 0 else {
                throw DalleError.invalidArgument("template weights must be 0...\(1 << 20) with a positive sum, got "
                    + "single \(single), counting \(counting), relation \(relation)")
            }
        }
    }

    /// A captioned training image.
    public struct Sample: Equatable, Sendable {
        public var caption: Caption
        public var image: RGBImage
    }

    /// The colour–shape pairs training draws from: all 24 but the held-out three, uniformly.
    public static let trainingPairs: [ColourShape] = Colour.allCases.flatMap { colour in
        Shape.allCases.map { ColourShape(colour: colour, shape: $0) }
    }.filter { !$0.isHeldOut }

    /// Training sample number `index` of the stream `seed`: a function of (seed, index, mix) alone,
    /// so samples can be made in any order or on any number of threads.
    /// Captions: the template by `mix`; NUMBER two or three and the relation uniformly; each object's
    /// colour–shape pair uniformly from `trainingPairs` (a relation's B redrawn until it differs from A);
    /// each object's size stated with probability ½ (then small or large evenly), else drawn at random
    /// at render time. Never a held-out pair.
    public static func trainingSample(seed: UInt64, index: UInt64, mix: TemplateMix = .standard) throws -> Sample {
        try mix.validate()
        return makeTrainingSample(seed: seed, index: index, mix: mix)
    }

    /// The caption of `trainingSample(seed:index:mix:)` without rendering its image (for text-only work).
    public static func trainingCaption(seed: UInt64, index: UInt64, mix: TemplateMix = .standard) throws -> Caption {
        try mix.validate()
        return makeTrainingCaption(seed: seed, index: index, mix: mix)
    }

    static func makeTrainingCaption(seed: UInt64, index: UInt64, mix: TemplateMix) -> Caption {
        var rng = ShapesRandom(seed: seed, stream: .training, index: index)
        return randomCaption(mix: mix, pairs: trainingPairs, rng: &rng)
    }

    static func makeTrainingSample(seed: UInt64, index: UInt64, mix: TemplateMix) -> Sample {
        let (caption, placed) = trainingLayout(seed: seed, index: index, mix: mix)
        return Sample(caption: caption, image: draw(placed))
    }

    /// Training sample `index`'s caption and the layout its image is drawn from.
    static func trainingLayout(seed: UInt64, index: UInt64, mix: TemplateMix) -> (Caption, [PlacedObject]) {
        var rng = ShapesRandom(seed: seed, stream: .training, index: index)
        let caption = randomCaption(mix: mix, pairs: trainingPairs, rng: &rng)
        return (caption, layout(caption, rng: &rng))
    }

    /// The near miss of training sample `index`: a caption that differs from it in one thing a
    /// contrastive model must see (`nearMiss(of:rng:)`), drawn on the sample's own layout changed
    /// only where the captions differ (`nearMissLayout`). Batches of (sample, near miss) pairs give
    /// CLIP hard negatives that random batches almost never hold, and as minimal pairs: the two
    /// images differ in what the captions do and nothing else.
    static func makeNearMissSample(seed: UInt64, index: UInt64, mix: TemplateMix) -> Sample {
        let (original, placed) = trainingLayout(seed: seed, index: index, mix: mix)
        var rng = ShapesRandom(seed: seed, stream: .nearMiss, index: index)
        let caption = nearMiss(of: original, rng: &rng)
        return Sample(caption: caption, image: draw(nearMissLayout(placed, of: original, showing: caption, rng: &rng)))
    }

    /// The layout `placed` of `original` changed to show its near miss `caption`. Counting: one
    /// object dropped, or one added where it fits. Otherwise each object takes the near miss's colour,
    /// shape and stated size in its own place (a new size about the same centre), and a relation that
    /// turned is mirrored along its axis (every shape is left–right symmetric and stays upright, so
    /// only the places change). Where the result breaks the world's rules, a fresh layout.
    static func nearMissLayout(_ placed: [PlacedObject], of original: Caption, showing caption: Caption,
                               rng: inout ShapesRandom) -> [PlacedObject] {
        var relation: Relation?
        var objects = placed
        switch (original, caption) {
        case (.counting, .counting(let number, let o)):
            if number == .two {
                objects.remove(at: rng.below(objects.count))
                return objects
            }
            let size = o.size ?? (rng.below(2) == 0 ? .small : .large)
            let free = positions(for: size, after: objects, relation: nil)
            guard !free.isEmpty else { return layout(caption, rng: &rng) }
            let (x, y) = free[rng.below(free.count)]
            objects.append(PlacedObject(colour: o.colour, shape: o.shape, size: size, x: x, y: y))
            return objects
        case (.relation(_, let before, _), .relation(_, let after, _)):
            relation = after
            if before != after {
                let horizontal = after == .leftOf || after == .rightOf
                for i in objects.indices {
                    let far = imageSize - objects[i].size.pixels
                    if horizontal { objects[i].x = far - objects[i].x } else { objects[i].y = far - objects[i].y }
                }
            }
        default:
            break
        }
        for (i, d) in caption.objects.enumerated() where i < objects.count {
            let size = d.size ?? objects[i].size, shift = (objects[i].size.pixels - size.pixels) / 2
            objects[i] = PlacedObject(colour: d.colour, shape: d.shape, size: size, x: objects[i].x + shift, y: objects[i].y + shift)
        }
        return isValidLayout(objects, relation: relation) ? objects : layout(caption, rng: &rng)
    }

    /// True when every box lies inside the margins and every pair is apart as the world requires
    /// (for a relation, B beyond A along its axis).
    static func isValidLayout(_ objects: [PlacedObject], relation: Relation?) -> Bool {
        let inside = objects.allSatisfy { o in [o.x, o.y].allSatisfy { (margin...(imageSize - margin - o.size.pixels)).contains($0) } }
        return inside && objects.indices.allSatisfy { j in (0..<j).allSatisfy { areApart(objects[$0], objects[j], relation: relation) } }
    }

    /// One object: another training pair of the same colour or the same shape, or, where the caption
    /// states a size, the other size (a third of the time). Counting: the other number. A relation:
    /// the opposite one, or A or B changed as a single object is (a third each). Never a held-out
    /// pair, and a relation's two objects stay different.
    static func nearMiss(of caption: Caption, rng: inout ShapesRandom) -> Caption {
        func changed(_ o: ObjectDescription, avoiding other: ColourShape?) -> ObjectDescription {
            if let size = o.size, rng.below(3) == 0 {
                return ObjectDescription(colour: o.colour, shape: o.shape, size: size == .small ? .large : .small)
            }
            let neighbours = trainingPairs.filter { ($0.colour == o.colour) != ($0.shape == o.shape) && $0 != other }
            let pair = neighbours[rng.below(neighbours.count)]
            return ObjectDescription(colour: pair.colour, shape: pair.shape, size: o.size)
        }
        switch caption {
        case .single(let o):
            return .single(changed(o, avoiding: nil))
        case .counting(let n, let o):
            return .counting(n == .two ? .three : .two, o)
        case .relation(let a, let r, let b):
            switch rng.below(3) {
            case 0: return .relation(a, r.opposite, b)
            case 1: return .relation(changed(a, avoiding: b.colourShape), r, b)
            default: return .relation(a, r, changed(b, avoiding: a.colourShape))
            }
        }
    }

    /// Up to `count` different near misses of `caption` (`nearMiss(of:rng:)`), drawn for stream
    /// `seed` at `index`: captions that a picture of `caption` does not show, CLIP's hard negatives
    /// on the text side. Never a held-out pair; none for text outside the grammar. (A counting
    /// caption has one near miss, the other number.)
    public static func nearMissCaptions(of caption: String, count: Int, seed: UInt64, index: UInt64) -> [String] {
        guard count > 0, let parsed = try? Caption.parse(caption) else { return [] }
        var rng = ShapesRandom(seed: seed, stream: .nearMissCaption, index: index)
        var found: [String] = []
        for _ in 0..<(8 * count) where found.count < count {
            let miss = nearMiss(of: parsed, rng: &rng)
            if !miss.containsHeldOutPair, !found.contains(miss.text) { found.append(miss.text) }
        }
        return found
    }

    /// The training stream: samples 0, 1, 2, … of `trainingSample(seed:index:mix:)`, endless.
    public struct TrainingStream: Sequence, IteratorProtocol, Sendable {
        public let seed: UInt64
        public let mix: TemplateMix
        /// The index of the next sample.
        public var index: UInt64

        /// Throws when `mix` has no positive weight.
        public init(seed: UInt64, mix: TemplateMix = .standard, startIndex: UInt64 = 0) throws {
            try mix.validate()
            self.seed = seed
            self.mix = mix
            self.index = startIndex
        }

        public mutating func next() -> Sample? {
            defer { index &+= 1 }
            return ShapesWorld.makeTrainingSample(seed: seed, index: index, mix: mix)
        }
    }

    static func randomCaption(mix: TemplateMix, pairs: [ColourShape], rng: inout ShapesRandom) -> Caption {
        var r = rng.below(mix.single + mix.counting + mix.relation)
        if r < mix.single { return .single(randomObject(pairs: pairs, rng: &rng)) }
        r -= mix.single
        if r < mix.counting {
            let number: Number = rng.below(2) == 0 ? .two : .three
            return .counting(number, randomObject(pairs: pairs, rng: &rng))
        }
        let relation = Relation.allCases[rng.below(Relation.allCases.count)]
        let a = randomObject(pairs: pairs, rng: &rng)
        var b = randomObject(pairs: pairs, rng: &rng)
        while b.colourShape == a.colourShape { b = randomObject(pairs: pairs, rng: &rng) }
        return .relation(a, relation, b)
    }

    static func randomObject(pairs: [ColourShape], rng: inout ShapesRandom) -> ObjectDescription {
        let pair = pairs[rng.below(pairs.count)]
        let size: Size? = rng.below(2) == 0 ? nil : (rng.below(2) == 0 ? .small : .large)
        return ObjectDescription(colour: pair.colour, shape: pair.shape, size: size)
    }
}

/// The Shapes World's random numbers: SplitMix64 seeded per (seed, stream, index), so every
/// sample has its own generator and streams for different purposes never share numbers.
struct ShapesRandom {
    enum Stream: UInt64 {
        case training = 0x7472_6169_6E00_0001
        case render = 0x7265_6E64_6572_0002
        case evaluation = 0x6576_616C_0000_0003
        case nearMiss = 0x6E65_6172_0000_0004
        case defect = 0x6465_6665_6374_0005
        case nearMissCaption = 0x6361_7074_696F_0006
    }

    private var generator: SplitMix64

    init(seed: UInt64, stream: Stream, index: UInt64) {
        var base = SplitMix64(seed: seed ^ stream.rawValue)
        var mixed = SplitMix64(seed: base.next() ^ index)
        generator = SplitMix64(seed: mixed.next())
    }

    /// Uniform in 0..<n for n ≥ 1 (Lemire's multiply-and-reject, unbiased).
    mutating func below(_ n: Int) -> Int {
        let bound = UInt64(n)
        let threshold = (0 &- bound) % bound
        while true {
            let product = generator.next().multipliedFullWidth(by: bound)
            if product.low >= threshold { return Int(product.high) }
        }
    }
}
