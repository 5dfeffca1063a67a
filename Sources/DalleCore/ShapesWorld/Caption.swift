/// The Shapes World (shared/shapes-world.md, v1): a procedurally rendered world of 64×64
/// captioned images — eight colours, three shapes, two sizes, counting and four spatial
/// relations — that libdalle trains its default model on and evaluates it against.
///
/// - `ShapesWorld.Caption`: the caption grammar (`parse`, `text`).
/// - `ShapesWorld.render(caption:seed:)`, `ShapesWorld.TrainingStream`: the renderer.
/// - `ShapesWorld.judge(_:caption:)`: the spec's checker.
/// - `ShapesWorld.evaluationCaptions(seed:)`: the fixed evaluation set.
public enum ShapesWorld {
    /// Images are `imageSize`×`imageSize` RGB8.
    public static let imageSize = 64
    /// The flat background colour.
    public static let background: (r: UInt8, g: UInt8, b: UInt8) = (128, 128, 128)
    /// Colour–shape pairs never produced for training: the zero-shot test.
    public static let heldOutPairs: [ColourShape] = [
        ColourShape(colour: .purple, shape: .triangle),
        ColourShape(colour: .orange, shape: .circle),
        ColourShape(colour: .white, shape: .square),
    ]

    public enum Colour: String, CaseIterable, Hashable, Sendable {
        case red, green, blue, yellow, purple, orange, white, black

        /// The colour's flat RGB value.
        public var rgb: (r: UInt8, g: UInt8, b: UInt8) {
            switch self {
            case .red: return (220, 40, 40)
            case .green: return (40, 170, 60)
            case .blue: return (40, 80, 220)
            case .yellow: return (240, 210, 40)
            case .purple: return (140, 60, 180)
            case .orange: return (245, 140, 30)
            case .white: return (245, 245, 245)
            case .black: return (20, 20, 20)
            }
        }
    }

    public enum Shape: String, CaseIterable, Hashable, Sendable {
        case circle, square, triangle

        /// The plural word used by counting captions.
        public var plural: String { rawValue + "s" }
    }

    public enum Size: String, CaseIterable, Hashable, Sendable {
        case small, large

        /// The side of the shape's bounding box in pixels.
        public var pixels: Int { self == .small ? 12 : 24 }
    }

    /// How many objects a counting caption asks for.
    public enum Number: Int, CaseIterable, Hashable, Sendable {
        case two = 2, three = 3

        public var word: String { self == .two ? "two" : "three" }
    }

    /// A spatial relation "A RELATION B".
    public enum Relation: String, CaseIterable, Hashable, Sendable {
        case leftOf = "to the left of"
        case rightOf = "to the right of"
        case above, below

        public var words: String { rawValue }

        /// left of ↔ right of, above ↔ below.
        public var opposite: Relation {
            switch self {
            case .leftOf: return .rightOf
            case .rightOf: return .leftOf
            case .above: return .below
            case .below: return .above
            }
        }
    }

    /// A colour with a shape (the unit the held-out pairs are made of).
    public struct ColourShape: Hashable, Sendable {
        public var colour: Colour
        public var shape: Shape
        public init(colour: Colour, shape: Shape) {
            self.colour = colour
            self.shape = shape
        }

        public var isHeldOut: Bool { ShapesWorld.heldOutPairs.contains(self) }
    }

    /// One object as a caption describes it; `size` nil means the caption gives none
    /// (the renderer draws it at random, the judge accepts either).
    public struct ObjectDescription: Hashable, Sendable {
        public var colour: Colour
        public var shape: Shape
        public var size: Size?

        public init(colour: Colour, shape: Shape, size: Size? = nil) {
            self.colour = colour
            self.shape = shape
            self.size = size
        }

        public var colourShape: ColourShape { ColourShape(colour: colour, shape: shape) }

        /// "[SIZE] COLOUR SHAPE", the shape word plural when `plural`.
        func words(plural: Bool) -> String {
            (size.map { $0.rawValue + " " } ?? "") + colour.rawValue + " " + (plural ? shape.plural : shape.rawValue)
        }
    }

    /// The caption templates.
    public enum Template: String, CaseIterable, Hashable, Sendable {
        case single = "one object"
        case counting
        case relation
    }

    /// A caption of the grammar.
    public enum Caption: Hashable, Sendable, CustomStringConvertible {
        /// `a [SIZE] COLOUR SHAPE`
        case single(ObjectDescription)
        /// `NUMBER [SIZE] COLOUR SHAPEs`
        case counting(Number, ObjectDescription)
        /// `a [SIZE] COLOUR SHAPE RELATION a [SIZE] COLOUR SHAPE`; the two differ in colour or shape.
        case relation(ObjectDescription, Relation, ObjectDescription)

        public var template: Template {
            switch self {
            case .single: return .single
            case .counting: return .counting
            case .relation: return .relation
            }
        }

        /// The objects the image holds, one entry per object drawn (a counting caption repeats its description).
        public var objects: [ObjectDescription] {
            switch self {
            case .single(let o): return [o]
            case .counting(let n, let o): return Array(repeating: o, count: n.rawValue)
            case .relation(let a, _, let b): return [a, b]
            }
        }

        /// True when any object is a held-out colour–shape pair.
        public var containsHeldOutPair: Bool { objects.contains { $0.colourShape.isHeldOut } }

        /// The canonical caption text.
        public var text: String {
            switch self {
            case .single(let o): return "a " + o.words(plural: false)
            case .counting(let n, let o): return n.word + " " + o.words(plural: true)
            case .relation(let a, let r, let b):
                return "a " + a.words(plural: false) + " " + r.words + " a " + b.words(plural: false)
            }
        }

        public var description: String { text }

        /// Throws unless the caption is in the grammar (a relation's two objects must differ in colour or shape).
        public func validate() throws {
            if case .relation(let a, _, let b) = self, a.colourShape == b.colourShape {
                throw DalleError.invalidArgument("caption '\(text)': the two objects of a relation must differ in colour or shape")
            }
        }

        /// Parses a caption of the grammar: lower case, single spaces, no punctuation.
        /// Throws `DalleError.invalidArgument` saying which word (1-based) is wrong and what was expected.
        public static func parse(_ caption: String) throws -> Caption {
            var parser = try CaptionParser(caption)
            return try parser.parseCaption()
        }
    }
}

/// A recursive-descent parser over the caption's words.
private struct CaptionParser {
    let caption: String
    let words: [Substring]
    var index = 0

    init(_ caption: String) throws {
        self.caption = caption
        guard !caption.isEmpty else { throw DalleError.invalidArgument("empty caption") }
        let words = caption.split(separator: " ", omittingEmptySubsequences: false)
        for (i, word) in words.enumerated() where word.isEmpty {
            let what = i == 0 ? "starts with a space" : i == words.count - 1 ? "ends with a space" : "has a double space after word \(i)"
            throw DalleError.invalidArgument("caption '\(caption)' \(what); words are separated by single spaces")
        }
        self.words = words
    }

    mutating func parseCaption() throws -> ShapesWorld.Caption {
        let first = try take("'a', 'two' or 'three'")
        let caption: ShapesWorld.Caption
        switch first {
        case "a":
            let a = try object(plural: false)
            if index == words.count { return .single(a) }
            let relation = try self.relation()
            try expect("a", "'a' after the relation")
            let b = try object(plural: false)
            caption = .relation(a, relation, b)
        case "two", "three":
            let number: ShapesWorld.Number = first == "two" ? .two : .three
            caption = .counting(number, try object(plural: true))
        default:
            throw error(at: index - 1, "expected 'a', 'two' or 'three'")
        }
        if index < words.count {
            throw error(at: index, "expected the end of the caption")
        }
        try caption.validate()
        return caption
    }

    private mutating func object(plural: Bool) throws -> ShapesWorld.ObjectDescription {
        var word = try take("a size or a colour")
        var size: ShapesWorld.Size?
        if let s = ShapesWorld.Size(rawValue: String(word)) {
            size = s
            word = try take("a colour")
        }
        guard let colour = ShapesWorld.Colour(rawValue: String(word)) else {
            let sizes = size == nil ? "a size (small, large) or " : ""
            throw error(at: index - 1, "expected \(sizes)a colour (\(ShapesWorld.Colour.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let shapes = ShapesWorld.Shape.allCases.map { plural ? $0.plural : $0.rawValue }
        let shapeWord = try take("a shape (\(shapes.joined(separator: ", ")))")
        guard let i = shapes.firstIndex(of: String(shapeWord)) else {
            throw error(at: index - 1, "expected a shape (\(shapes.joined(separator: ", ")))")
        }
        return ShapesWorld.ObjectDescription(colour: colour, shape: ShapesWorld.Shape.allCases[i], size: size)
    }

    private mutating func relation() throws -> ShapesWorld.Relation {
        let start = index
        for relation in ShapesWorld.Relation.allCases {
            let phrase = relation.words.split(separator: " ")
            if words.count - start >= phrase.count, Array(words[start..<start + phrase.count]) == phrase {
                index += phrase.count
                return relation
            }
        }
        throw error(at: start, "expected the end of the caption or a relation (to the left of, to the right of, above, below)")
    }

    private mutating func take(_ expected: String) throws -> Substring {
        guard index < words.count else {
            throw DalleError.invalidArgument("caption '\(caption)' ends after word \(words.count); expected \(expected)")
        }
        index += 1
        return words[index - 1]
    }

    private mutating func expect(_ word: Substring, _ expected: String) throws {
        if try take(expected) != word { throw error(at: index - 1, "expected \(expected)") }
    }

    private func error(at i: Int, _ message: String) -> DalleError {
        DalleError.invalidArgument("caption '\(caption)', word \(i + 1) '\(words[i])': \(message)")
    }
}
