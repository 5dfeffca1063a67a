import CDalle
import DalleCore
#if canImport(Glibc)
import Glibc
#endif

/// Tokenizes a caption into a caller-supplied id buffer (size-first: see include/dalle.h).
@_cdecl("dalle_tokenize")
public func dalle_tokenize(_ ctx: OpaquePointer?, _ utf8Text: UnsafePointer<CChar>?, _ mode: dalle_tokenize_mode,
                           _ outIds: UnsafeMutablePointer<Int32>?, _ capacity: Int, _ outCount: UnsafeMutablePointer<Int>?,
                           _ outTruncated: UnsafeMutablePointer<Bool>?) -> dalle_status {
    outCount?.pointee = 0
    outTruncated?.pointee = false
    return withContext("dalle_tokenize", ctx) { box in
        guard let outCount else { throw DalleError.invalidArgument("out_count is NULL") }
        guard let utf8Text else { throw DalleError.invalidArgument("utf8_text is NULL") }
        guard outIds != nil || capacity == 0 else { throw DalleError.invalidArgument("out_ids is NULL but capacity is \(capacity)") }
        let model = box.session.model
        let convention: TextConvention
        switch Int(mode) {
        case Int(DALLE_TOKENIZE_MODEL): convention = model.defaultTextConvention
        case Int(DALLE_TOKENIZE_RAW): convention = .raw
        case Int(DALLE_TOKENIZE_CLIP): convention = .clip(contextLength: TextConvention.clipContextLength)
        case Int(DALLE_TOKENIZE_DALLE): convention = .dalle(textLength: model.transformerTextLength ?? TextConvention.dalleTextLength)
        default: throw DalleError.invalidArgument("mode is \(mode); expected a DALLE_TOKENIZE_* value (0 to 3)")
        }
        let tokenizer = try model.requireTokenizer()
        let bytes = UnsafeRawBufferPointer(start: utf8Text, count: strlen(utf8Text))
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw DalleError.invalidArgument("utf8_text is not valid UTF-8")
        }
        let result = try tokenizer.tokenize(text, convention)
        outCount.pointee = result.ids.count
        outTruncated?.pointee = result.truncated
        guard let outIds else { return }  // size query
        guard result.ids.count <= capacity else {
            throw DalleError.invalidArgument("out_ids has room for \(capacity) ids but the result has \(result.ids.count) (*out_count says how many)")
        }
        for (i, id) in result.ids.enumerated() { outIds[i] = id }
    }
}
