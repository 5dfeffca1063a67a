extension ShapesWorld {
    /// How generated pictures go wrong (`tools/experiments/candidate_reasons.py` on a model's candidates): an
    /// object a row or column of cells short, so its box is no longer square; objects merged into
    /// one blob; an object missing or one too many; an object of the wrong size.
    public enum Defect: String, CaseIterable, Sendable {
        /// One object's box a third shorter along one axis: the object squashed, or a third of it cut away.
        case misshapen
        /// One object moved onto another, touching or overlapping it.
        case merged
        /// One object left out.
        case missing
        /// One object of a training pair added where it fits.
        case extra
        /// One object whose size the caption states drawn at the other size.
        case resized
    }

    /// Up to `count` defect images of training sample `index` (`trainingSample(seed:index:mix:)`):
    /// its own layout drawn with one `Defect` each, the kind drawn uniformly among those its caption
    /// allows. Each image's objects fail the judge against the sample's caption, places aside (a
    /// relation's direction is not what generated pictures get wrong): a drawn defect whose objects
    /// still match (an overlap that leaves a recognisable object, say) is drawn again, at most
    /// 8·`count` draws in all. As CLIP's hard negatives they are the mistakes it must learn to rank
    /// below a correct picture, on the sample's own layout.
    static func makeDefectImages(seed: UInt64, index: UInt64, mix: TemplateMix, count: Int) -> [RGBImage] {
        let (caption, placed) = trainingLayout(seed: seed, index: index, mix: mix)
        var rng = ShapesRandom(seed: seed, stream: .defect, index: index)
        let stated = caption.objects.indices.filter { caption.objects[$0].size != nil }
        let kinds = Defect.allCases.filter { ($0 != .merged || placed.count > 1) && ($0 != .resized || !stated.isEmpty) }
        var images: [RGBImage] = []
        for _ in 0..<8 * count where images.count < count {
            let defect = kinds[rng.below(kinds.count)]
            guard let stamps = draw(defect, on: placed, stated: stated, rng: &rng) else { continue }
            let image = paint(stamps)
            guard let analysis = try? analyse(image) else { continue }
            if matchingOrders(analysis.objects, caption.objects).isEmpty { images.append(image) }
        }
        return images
    }

    /// `placed` as stamps with `defect` applied, or nil where it does not fit (no free place for an extra object).
    static func draw(_ defect: Defect, on placed: [PlacedObject], stated: [Int], rng: inout ShapesRandom) -> [Stamp]? {
        var objects = placed
        let i = rng.below(objects.count)
        switch defect {
        case .misshapen:
            var stamps = objects.map(Stamp.init)
            stamps[i] = misshapen(objects[i], rng: &rng)
            return stamps
        case .merged:
            let j = (i + 1 + rng.below(objects.count - 1)) % objects.count
            objects[j] = moved(objects[j], onto: objects[i], rng: &rng)
        case .missing:
            objects.remove(at: i)
        case .extra:
            let pair = trainingPairs[rng.below(trainingPairs.count)], size: Size = rng.below(2) == 0 ? .small : .large
            let free = positions(for: size, after: objects, relation: nil)
            guard !free.isEmpty else { return nil }
            let (x, y) = free[rng.below(free.count)]
            objects.append(PlacedObject(colour: pair.colour, shape: pair.shape, size: size, x: x, y: y))
        case .resized:
            let k = stated[rng.below(stated.count)], old = objects[k].size
            let size: Size = old == .small ? .large : .small, far = imageSize - size.pixels
            let shift = (old.pixels - size.pixels) / 2
            objects[k].size = size
            objects[k].x = min(max(objects[k].x + shift, 0), far)
            objects[k].y = min(max(objects[k].y + shift, 0), far)
        }
        return objects.map(Stamp.init)
    }

    /// `object` with its box two thirds as long along a random axis: its mask resampled (squashed
    /// about its centre) or a third of it cut away from one side.
    static func misshapen(_ object: PlacedObject, rng: inout ShapesRandom) -> Stamp {
        let s = object.size.pixels, short = s * 2 / 3, full = mask(object.shape, side: s)
        let horizontal = rng.below(2) == 0, squash = rng.below(2) == 0, cutStart = rng.below(2) == 0 ? 0 : s - short
        let (w, h) = horizontal ? (short, s) : (s, short)
        var m = [Bool](repeating: false, count: w * h)
        for j in 0..<h {
            for i in 0..<w {
                let (si, sj) = squash ? (i * s / w, j * s / h) : (horizontal ? (i + cutStart, j) : (i, j + cutStart))
                m[j * w + i] = full[sj * s + si]
            }
        }
        let offset = squash ? (s - short) / 2 : cutStart
        return Stamp(mask: m, width: w, height: h, x: object.x + (horizontal ? offset : 0), y: object.y + (horizontal ? 0 : offset),
                     colour: object.colour)
    }

    /// `object` moved beside `anchor` along a random axis and side, its box touching the anchor's or
    /// overlapping it by up to a third of its side, roughly aligned across; kept inside the image.
    static func moved(_ object: PlacedObject, onto anchor: PlacedObject, rng: inout ShapesRandom) -> PlacedObject {
        let s = object.size.pixels, a = anchor.size.pixels, overlap = rng.below(s / 3 + 1), horizontal = rng.below(2) == 0
        let (anchorAlong, anchorAcross) = horizontal ? (anchor.x, anchor.y) : (anchor.y, anchor.x)
        let along = rng.below(2) == 0 ? anchorAlong - s + overlap : anchorAlong + a - overlap
        let across = anchorAcross + (a - s) / 2 + rng.below(s / 2 + 1) - s / 4
        let (x, y) = horizontal ? (along, across) : (across, along), far = imageSize - s
        var moved = object
        moved.x = min(max(x, 0), far)
        moved.y = min(max(y, 0), far)
        return moved
    }
}
