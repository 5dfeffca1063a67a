import DalleCore

/// "MAJOR.MINOR.PATCH" of the library, a static NUL-terminated string.
@_cdecl("dalle_version")
public func dalle_version() -> UnsafePointer<CChar> {
    return UnsafeRawPointer(versionString).assumingMemoryBound(to: CChar.self)
}

private let versionString: UnsafeMutablePointer<CChar> = {
    let s = Array("0.1.0".utf8CString)
    let p = UnsafeMutablePointer<CChar>.allocate(capacity: s.count)
    p.initialize(from: s, count: s.count)
    return p
}()
