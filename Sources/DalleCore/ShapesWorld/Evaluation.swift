extension ShapesWorld {
    /// The group an evaluation caption is scored in.
    public enum EvaluationGroup: String, CaseIterable, Hashable, Sendable {
        case single = "one object"
        case counting
        case relation
        /// Captions with a held-out colour–shape pair (any template).
        case heldOut = "held-out pairs"
    }

    /// A caption of the evaluation set with the group it counts towards.
    public struct EvaluationCaption: Hashable, Sendable {
        public var caption: Caption
        public var group: EvaluationGroup
    }

    /// The fixed evaluation set: `perTemplate` captions of each template drawn as training draws them
    /// (never a held-out pair), in the order one object, counting, relation; then `perHeldOutPair` captions
    /// for each held-out pair (purple triangle, orange circle, white square) cycling through the templates
    /// one object, counting, relation — the pair is the object, the counted object, or A or B (evenly) of a
    /// relation whose other object is a training pair. Defaults: 50 + 50 + 50 + 3 × 10 (4 one object,
    /// 3 counting, 3 relation each) = 180 captions. A function of its arguments alone.
    public static func evaluationCaptions(seed: UInt64 = 0, perTemplate: Int = 50, perHeldOutPair: Int = 10) -> [EvaluationCaption] {
        var result: [EvaluationCaption] = []
        var index: UInt64 = 0
        func nextRandom() -> ShapesRandom {
            defer { index += 1 }
            return ShapesRandom(seed: seed, stream: .evaluation, index: index)
        }
        let groups: [(EvaluationGroup, TemplateMix)] = [
            (.single, TemplateMix(single: 1, counting: 0, relation: 0)),
            (.counting, TemplateMix(single: 0, counting: 1, relation: 0)),
            (.relation, TemplateMix(single: 0, counting: 0, relation: 1)),
        ]
        for (group, mix) in groups {
            for _ in 0..<max(0, perTemplate) {
                var rng = nextRandom()
                result.append(EvaluationCaption(caption: randomCaption(mix: mix, pairs: trainingPairs, rng: &rng), group: group))
            }
        }
        for pair in heldOutPairs {
            for k in 0..<max(0, perHeldOutPair) {
                var rng = nextRandom()
                let held = randomObject(pairs: [pair], rng: &rng)
                let caption: Caption
                switch groups[k % groups.count].0 {
                case .single: caption = .single(held)
                case .counting: caption = .counting(rng.below(2) == 0 ? .two : .three, held)
                default:
                    let relation = Relation.allCases[rng.below(Relation.allCases.count)]
                    let other = randomObject(pairs: trainingPairs, rng: &rng)
                    caption = rng.below(2) == 0 ? .relation(held, relation, other) : .relation(other, relation, held)
                }
                result.append(EvaluationCaption(caption: caption, group: .heldOut))
            }
        }
        return result
    }
}
