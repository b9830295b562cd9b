// Where a converter writes the one binary file it makes (.npy, .png): a path, or stdout when
// no path is given. Files are written atomically (AtomicFile); stdout gets the finished bytes
// only, so a failed run writes nothing there either, and a terminal is refused.
#if canImport(Glibc)
import Glibc
#endif

public enum BinaryOutput: Sendable, Equatable {
    case file(String)
    case stdout

    /// The path, or stdout for nil and "-".
    public init(_ path: String?) {
        if let path, path != "-" { self = .file(path) } else { self = .stdout }
    }

    /// The path, or "stdout" (for messages).
    public var name: String {
        switch self {
        case .file(let p): return p
        case .stdout: return "stdout"
        }
    }

    /// Refuses a terminal on stdout, as FrameWriter does for streams. Call before any work.
    public func checkNotTerminal(_ what: String) throws {
        if self == .stdout, isatty(1) != 0 {
            throw DDPMError("refusing to write \(what) to a terminal; redirect stdout to a file or pipe")
        }
    }

    /// Writes whole bytes: atomically to the file, or to stdout.
    public func write(_ bytes: [UInt8]) throws {
        switch self {
        case .file(let p): try FileBytes.write(bytes, to: p)
        case .stdout:
            do { try bytes.withUnsafeBytes { try FileDescriptor.writeFully(1, $0) } }
            catch let e as DDPMError { throw DDPMError("\(e.message) on stdout") }
        }
    }
}

/// An anonymous temporary file (in TMPDIR, unlinked at once): room to finish output whose
/// start is written last (the .npy header) when the destination cannot seek (a pipe).
public final class ScratchFile {
    public let fd: Int32

    public init() throws {
        var dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        if dir.isEmpty { dir = "/tmp" }
        var template = Array((dir + "/ddpm-scratch-XXXXXX").utf8CString)
        fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw DDPMError("cannot create a temporary file in \(dir): \(String(cString: strerror(errno)))") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    }

    deinit { close(fd) }

    public func append(_ raw: UnsafeRawBufferPointer) throws {
        do { try FileDescriptor.writeFully(fd, raw) } catch let e as DDPMError { throw DDPMError("\(e.message) on a temporary file") }
    }

    /// Overwrites bytes at `offset`.
    public func write(_ bytes: [UInt8], at offset: Int) throws {
        let r = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard r == bytes.count else { throw DDPMError("write error on a temporary file: \(String(cString: strerror(errno)))") }
    }

    /// Copies the whole file to `out` (e.g. 1, stdout); `name` is the destination in errors.
    public func copy(to out: Int32, name: String) throws {
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var offset: off_t = 0
        while true {
            let r = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if r == 0 { return }
            if r < 0 {
                if errno == EINTR { continue }
                throw DDPMError("read error on a temporary file: \(String(cString: strerror(errno)))")
            }
            do { try buf.withUnsafeBytes { try FileDescriptor.writeFully(out, UnsafeRawBufferPointer(rebasing: $0[0..<r])) } }
            catch let e as DDPMError { throw DDPMError("\(e.message) on \(name)") }
            offset += off_t(r)
        }
    }
}
