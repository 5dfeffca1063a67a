@testable import DalleCore
import XCTest

/// `PromptVocabulary`: the words a bundle records, the prompt's words outside them, the grammar
/// check, and what the shipped default model records.
final class PromptVocabularyTests: XCTestCase {
    func testWordsAreCleanedLowerCasedAndSplitAtNonLetters() {
        XCTAssertEqual(PromptVocabulary.words(in: "  A Photo of  a CAT, it's café-au-lait &amp; 42!"),
                       ["a", "photo", "of", "a", "cat", "it", "s", "café", "au", "lait", "42"])
        XCTAssertEqual(PromptVocabulary.words(in: ""), [])
        XCTAssertEqual(PromptVocabulary.words(in: "?! ..."), [])
    }

    func testUnknownWordsAreDistinctInPromptOrder() {
        let v = PromptVocabulary(captions: ["a red circle", "Two blue squares."])
        XCTAssertEqual(v.words, ["a", "blue", "circle", "red", "squares", "two"])
        XCTAssertNil(v.grammar)
        XCTAssertEqual(v.unknownWords(in: "A cat, a CAT and a red dog"), ["cat", "and", "dog"])
        XCTAssertEqual(v.unknownWords(in: "two red squares"), [])
        XCTAssertNil(v.grammarProblem(in: "squares red two"))  // no grammar recorded: words only
        XCTAssertEqual(v.warning(for: "a cat", unknown: ["cat"]),
                       "the prompt has 1 word the model was never trained on ('cat'); its images will not show it")
        XCTAssertNil(v.warning(for: "a red circle", unknown: []))
    }

    func testShapesWorldGrammar() throws {
        let v = PromptVocabulary.shapesWorld
        XCTAssertEqual(v.words.count, 26)
        for sample in try ShapesWorld.TrainingStream(seed: 3).prefix(200) {
            let caption = sample.caption.text
            XCTAssertEqual(v.unknownWords(in: caption), [], caption)
            XCTAssertNil(v.grammarProblem(in: caption), caption)
        }
        XCTAssertEqual(v.unknownWords(in: "a photo of a cat"), ["photo", "cat"])
        XCTAssertNil(v.grammarProblem(in: "A small red circle!"))
        XCTAssertEqual(v.grammarProblem(in: "circle red a"), "caption 'circle red a', word 1 'circle': expected 'a', 'two' or 'three'")
        let warning = try XCTUnwrap(v.warning(for: "a photo of a cat", unknown: ["photo", "cat"]))
        XCTAssertTrue(warning.hasPrefix("the prompt has 2 words the model was never trained on ('photo', 'cat'); its images will not show them (it knows Shapes World captions only"), warning)
    }

    func testMetadataRoundTripAndErrors() throws {
        let v = PromptVocabulary(words: ["b", "a", "b"], grammar: nil)
        XCTAssertEqual(v.words, ["b", "a"])
        XCTAssertEqual(try PromptVocabulary(metadata: v.metadata), v)
        XCTAssertEqual(try PromptVocabulary(metadata: PromptVocabulary.shapesWorld.metadata), PromptVocabulary.shapesWorld)
        XCTAssertNil(try PromptVocabulary(metadata: ["tokenizer.kind": "clip-bpe"]))
        XCTAssertEqual(try PromptVocabulary(metadata: [PromptVocabulary.grammarKey: "shapes-world"]), PromptVocabulary.shapesWorld)
        XCTAssertThrowsError(try PromptVocabulary(metadata: [PromptVocabulary.grammarKey: "coco"]))
        XCTAssertThrowsError(try PromptVocabulary(metadata: [PromptVocabulary.wordsKey: ""]))
    }

    /// The shipped model records the Shapes World's words and grammar (its weights are unchanged).
    func testDefaultModelRecordsTheShapesWorld() throws {
        let model = try DalleModel(path: CAPITests.repoRoot + "/models/shapes-world.safetensors")
        XCTAssertEqual(model.promptVocabulary, PromptVocabulary.shapesWorld)
    }
}
