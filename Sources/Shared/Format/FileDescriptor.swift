// Whole-buffer reads and writes on a file descriptor, retrying short transfers and EINTR.
#if canImport(Glibc)
import Glibc
#endif

public enum FileDescriptor {
    /// Reads until `buf` is full or end of file; returns the bytes read.
    public static func readFully(_ fd: Int32, _ buf: UnsafeMutableRawBufferPointer) throws -> Int {
        var done = 0
        while done < buf.count {
            let r = read(fd, buf.baseAddress! + done, buf.count - done)
            if r > 0 { done += r; continue }
            if r == 0 { break }
            if errno == EINTR { continue }
            throw DDPMError("read error: \(String(cString: strerror(errno)))")
        }
        return done
    }

    /// Writes all of `buf`.
    public static func writeFully(_ fd: Int32, _ buf: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buf.count {
            let r = write(fd, buf.baseAddress! + done, buf.count - done)
            if r > 0 { done += r; continue }
            if r < 0 && errno == EINTR { continue }
            throw DDPMError("write error: \(String(cString: strerror(errno)))")
        }
    }
}

/// Text written to a file descriptor (stdout by default), every write checked: a full disk or a
/// closed pipe is an error, never a lost result.
public struct TextOutput {
    public let fd: Int32
    public init(fd: Int32 = 1) { self.fd = fd }
    /// A reader that went away (EPIPE: `tool | head`) ends us as SIGPIPE would, quietly; any other
    /// failure is an error naming it.
    public func write(_ text: String) throws {
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let r = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if r > 0 { done += r; continue }
                if r < 0 && errno == EINTR { continue }
                if r < 0 && errno == EPIPE { signal(SIGPIPE, SIG_DFL); raise(SIGPIPE) }
                throw DDPMError("write error on \(fd == 1 ? "stdout" : "file descriptor \(fd)"): \(String(cString: strerror(errno)))")
            }
        }
    }
}
