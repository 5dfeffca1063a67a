import CDalle
@testable import DalleCAPI
import DalleCore
import XCTest

/// The Shapes World through the C API, called as a C program calls it: render → judge round
/// trips, the training stream against ShapesWorld.trainingSample, and every bad input as a
/// status plus a message.
final class ShapesWorldAPITests: XCTestCase {
    let ok = dalle_status(DALLE_OK)
    let invalid = dalle_status(DALLE_INVALID_ARGUMENT)
    let caption = "a red circle to the left of a green square"

    override class func setUp() {
        DalleCAPI.dalle_log_set_level(dalle_log_level(DALLE_LOG_NONE))
    }

    func lastError() -> String { String(cString: dalle_last_error()) }

    func pixels(_ image: dalle_image) -> [UInt8] {
        Array(UnsafeBufferPointer(start: image.data, count: Int(image.width * image.height * image.channels)))
    }

    /// Judges `image` against `caption`: (status, passed, reason).
    func judge(_ image: dalle_image, _ caption: String, capacity: Int = 512) -> (dalle_status, Bool, String) {
        var image = image
        var passed = true
        var reason = [CChar](repeating: 1, count: max(capacity, 1))
        let status = dalle_shapes_judge(&image, caption, &passed, &reason, capacity)
        return (status, passed, capacity > 0 ? String(cString: reason) : "")
    }

    func testRenderThenJudgePasses() throws {
        var image = dalle_image()
        XCTAssertEqual(dalle_shapes_render(caption, 7, &image), ok, lastError())
        defer { dalle_image_free(&image) }
        XCTAssertEqual([image.width, image.height, image.channels], [64, 64, 3])
        let expected = try ShapesWorld.render(caption: ShapesWorld.Caption.parse(caption), seed: 7)
        XCTAssertEqual(pixels(image), expected.pixels)
        let (status, passed, reason) = judge(image, caption)
        XCTAssertEqual(status, ok, lastError())
        XCTAssertTrue(passed)
        XCTAssertEqual(reason, "")
        // A held-out pair renders too.
        let heldOut = ShapesWorld.heldOutPairs[0]
        var held = dalle_image()
        XCTAssertEqual(dalle_shapes_render("a \(heldOut.colour.rawValue) \(heldOut.shape.rawValue)", 1, &held), ok, lastError())
        dalle_image_free(&held)
    }

    func testWrongCaptionFailsWithReason() throws {
        var image = dalle_image()
        XCTAssertEqual(dalle_shapes_render(caption, 3, &image), ok, lastError())
        defer { dalle_image_free(&image) }
        let (status, passed, reason) = judge(image, "two blue squares")
        XCTAssertEqual(status, ok, lastError())
        XCTAssertFalse(passed)
        XCTAssertTrue(reason.contains("two blue squares"), reason)
        // The reason is truncated to the buffer, NUL included.
        let (_, shortPassed, short) = judge(image, "two blue squares", capacity: 9)
        XCTAssertFalse(shortPassed)
        XCTAssertEqual(short, String(reason.prefix(8)))
        let (noBufferStatus, noBufferPassed, _) = judge(image, "two blue squares", capacity: 0)
        XCTAssertEqual(noBufferStatus, ok, lastError())
        XCTAssertFalse(noBufferPassed)
    }

    func testTrainingSampleMatchesTheStream() throws {
        for index: UInt64 in [0, 1, 17, 1000] {
            let expected = try ShapesWorld.trainingSample(seed: 5, index: index)
            var length = 0
            XCTAssertEqual(dalle_shapes_training_sample(5, index, nil, 0, &length, nil), ok, lastError())
            XCTAssertEqual(length, expected.caption.text.utf8.count)
            var buffer = [CChar](repeating: 1, count: length + 1)
            var image = dalle_image()
            XCTAssertEqual(dalle_shapes_training_sample(5, index, &buffer, buffer.count, &length, &image), ok, lastError())
            XCTAssertEqual(String(cString: buffer), expected.caption.text)
            XCTAssertEqual(pixels(image), expected.image.pixels)
            XCTAssertTrue(judge(image, expected.caption.text).1, "sample \(index): \(expected.caption.text)")
            dalle_image_free(&image)
            XCTAssertNil(image.data)
        }
    }

    func testErrors() throws {
        var image = dalle_image()
        XCTAssertEqual(dalle_shapes_render(nil, 0, &image), invalid)
        XCTAssertTrue(lastError().contains("caption is NULL"), lastError())
        XCTAssertEqual(dalle_shapes_render(caption, 0, nil), invalid)
        XCTAssertTrue(lastError().contains("out_image is NULL"), lastError())
        XCTAssertEqual(dalle_shapes_render("a purple elephant", 0, &image), invalid)
        XCTAssertTrue(lastError().hasPrefix("dalle_shapes_render: invalid argument: "), lastError())
        XCTAssertNil(image.data)
        let notUTF8: [CChar] = [0x61, 0x20, CChar(bitPattern: 0xFF), 0]
        XCTAssertEqual(dalle_shapes_render(notUTF8, 0, &image), invalid)
        XCTAssertTrue(lastError().contains("not valid UTF-8"), lastError())

        XCTAssertEqual(dalle_shapes_render(caption, 0, &image), ok, lastError())
        defer { dalle_image_free(&image) }
        var passed = true
        XCTAssertEqual(dalle_shapes_judge(nil, caption, &passed, nil, 0), invalid)
        XCTAssertTrue(lastError().contains("image is NULL"), lastError())
        XCTAssertEqual(dalle_shapes_judge(&image, caption, nil, nil, 0), invalid)
        XCTAssertTrue(lastError().contains("out_passed is NULL"), lastError())
        XCTAssertEqual(dalle_shapes_judge(&image, nil, &passed, nil, 0), invalid)
        XCTAssertEqual(dalle_shapes_judge(&image, "a red", &passed, nil, 0), invalid)
        XCTAssertEqual(dalle_shapes_judge(&image, caption, &passed, nil, 8), invalid)
        XCTAssertTrue(lastError().contains("reason_buf is NULL"), lastError())
        var wrongSize = image
        wrongSize.width = 32
        XCTAssertEqual(dalle_shapes_judge(&wrongSize, caption, &passed, nil, 0), invalid)
        XCTAssertTrue(lastError().contains("64x64"), lastError())
        var wrongChannels = image
        wrongChannels.channels = 2
        XCTAssertEqual(dalle_shapes_judge(&wrongChannels, caption, &passed, nil, 0), invalid)
        var noData = image
        noData.data = nil
        XCTAssertEqual(dalle_shapes_judge(&noData, caption, &passed, nil, 0), invalid)
        XCTAssertFalse(passed)

        var length = 0
        var small = [CChar](repeating: 0, count: 4)
        var sample = dalle_image()
        XCTAssertEqual(dalle_shapes_training_sample(0, 0, &small, small.count, &length, &sample), invalid)
        XCTAssertTrue(lastError().contains("room for 4 bytes"), lastError())
        XCTAssertGreaterThan(length, 3)
        XCTAssertNil(sample.data)
        XCTAssertEqual(dalle_shapes_training_sample(0, 0, nil, 4, &length, nil), invalid)
        XCTAssertEqual(dalle_shapes_training_sample(0, 0, nil, 0, nil, nil), invalid)
        XCTAssertTrue(lastError().contains("out_caption_len is NULL"), lastError())

        // Freeing: NULL and zeroed are ignored; memory the library did not allocate is refused.
        dalle_image_free(nil)
        var zeroed = dalle_image()
        dalle_image_free(&zeroed)
        var foreign = [UInt8](repeating: 0, count: 12)
        foreign.withUnsafeMutableBufferPointer { buffer in
            var fake = dalle_image(width: 2, height: 2, channels: 3, data: buffer.baseAddress)
            dalle_image_free(&fake)
            XCTAssertNotNil(fake.data)
        }
        XCTAssertTrue(lastError().contains("dalle_image_free"), lastError())
    }
}
