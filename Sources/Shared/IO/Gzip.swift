// gzip (RFC 1952) through zlib: detect by the magic bytes 1f 8b, inflate whole
// buffers (concatenated members included), deflate for tests and tools.
import CZlib
#if canImport(Glibc)
import Glibc
#endif

public enum Gzip {
    /// True when the bytes start with the gzip magic 1f 8b.
    public static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
    }

    /// The most bytes `decompress` produces: 4 GiB (a few kilobytes can inflate to gigabytes).
    public static let maxOutputBytes = 1 << 32

    /// Inflates a gzip buffer (all members), at most `limit` bytes. Errors name `what` and zlib's reason.
    public static func decompress(_ input: [UInt8], what: String = "gzip data", limit: Int = maxOutputBytes) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(min(input.count, limit / 4) * 4)
        var strm = z_stream()
        // inflateInit2 is a macro; 16 + MAX_WBITS selects the gzip wrapper.
        guard inflateInit2_(&strm, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DDPMError("\(what): zlib initialisation failed")
        }
        defer { inflateEnd(&strm) }
        let chunk = 1 << 20
        var buffer = [UInt8](repeating: 0, count: chunk)
        try input.withUnsafeBufferPointer { src in
            guard let base = src.baseAddress, src.count > 0 else { throw DDPMError("\(what): empty gzip data") }
            strm.next_in = UnsafeMutablePointer(mutating: base)
            strm.avail_in = UInt32(src.count)
            while true {
                let (status, produced): (Int32, Int) = buffer.withUnsafeMutableBufferPointer { b in
                    strm.next_out = b.baseAddress
                    strm.avail_out = UInt32(chunk)
                    let s = inflate(&strm, Z_NO_FLUSH)
                    return (s, chunk - Int(strm.avail_out))
                }
                if produced > 0 {
                    guard out.count + produced <= limit else { throw DDPMError("\(what): inflates to more than \(limit) bytes") }
                    out.append(contentsOf: buffer[0..<produced])
                }
                switch status {
                case Z_STREAM_END:
                    // Another gzip member may follow (as `cat a.gz b.gz` makes).
                    let offset = src.count - Int(strm.avail_in)
                    if offset + 1 < src.count, src[offset] == 0x1f, src[offset + 1] == 0x8b {
                        inflateReset(&strm)
                        continue
                    }
                    return
                case Z_OK:
                    if strm.avail_in == 0 && produced < chunk { throw DDPMError("\(what): truncated gzip data") }
                case Z_BUF_ERROR:
                    throw DDPMError("\(what): truncated gzip data")
                default:
                    let reason = strm.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                    throw DDPMError("\(what): corrupt gzip data (\(reason))")
                }
            }
        }
        return out
    }

    /// Deflates bytes into one gzip member.
    public static func compress(_ input: [UInt8], level: Int32 = 6) throws -> [UInt8] {
        var strm = z_stream()
        guard deflateInit2_(&strm, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY,
                            ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DDPMError("zlib initialisation failed")
        }
        defer { deflateEnd(&strm) }
        var out = [UInt8](repeating: 0, count: Int(deflateBound(&strm, UInt(input.count))) + 64)
        let written: Int = input.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                strm.next_in = UnsafeMutablePointer(mutating: src.baseAddress ?? UnsafePointer(bitPattern: 1)!)
                strm.avail_in = UInt32(src.count)
                strm.next_out = dst.baseAddress
                strm.avail_out = UInt32(dst.count)
                let s = deflate(&strm, Z_FINISH)
                return s == Z_STREAM_END ? dst.count - Int(strm.avail_out) : -1
            }
        }
        guard written >= 0 else { throw DDPMError("gzip compression failed") }
        return Array(out[0..<written])
    }
}

/// Whole-file reading and atomic writing of plain bytes.
public enum FileBytes {
    /// Reads a whole file ("-" is stdin).
    public static func read(_ path: String) throws -> [UInt8] {
        let fd = path == "-" ? 0 : open(path, O_RDONLY)
        guard fd >= 0 else { throw DDPMError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { if fd != 0 { close(fd) } }
        var st = stat()
        var out: [UInt8] = []
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG { out.reserveCapacity(Int(st.st_size)) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let r = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if r > 0 { out.append(contentsOf: buf[0..<r]); continue }
            if r == 0 { break }
            if errno == EINTR { continue }
            throw DDPMError("\(path): read error: \(String(cString: strerror(errno)))")
        }
        return out
    }

    /// Writes bytes atomically (temporary file, fsync, rename).
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let w = try AtomicFile(path: path)
        try w.append(bytes)
        try w.commit()
    }
}

/// A file written through a temporary sibling and renamed into place on `commit()`;
/// dropped without commit, the temporary file is removed. A path that exists and is not a
/// regular file or folder (/dev/null, a FIFO, /dev/stdout) is written in place instead:
/// renaming over it would replace the device with a plain file.
public final class AtomicFile {
    public let path: String
    let tmp: String
    public let fd: Int32
    let inPlace: Bool
    var committed = false

    public init(path: String) throws {
        self.path = path
        inPlace = AtomicFile.isSpecial(path)
        if inPlace {
            tmp = path
            fd = open(path, O_WRONLY)
            guard fd >= 0 else { throw DDPMError("cannot open \(path): \(String(cString: strerror(errno)))") }
        } else {
            tmp = path + ".tmp.\(getpid())"
            fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { throw DDPMError("cannot create \(tmp): \(String(cString: strerror(errno)))") }
        }
    }

    deinit {
        if !committed { close(fd); if !inPlace { unlink(tmp) } }
    }

    /// True when `path` exists and is neither a regular file nor a folder (a device, FIFO or socket).
    public static func isSpecial(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        let type = st.st_mode & S_IFMT
        return type != S_IFREG && type != S_IFDIR
    }

    public func append(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try append($0) }
    }

    public func append(_ raw: UnsafeRawBufferPointer) throws {
        do { try FileDescriptor.writeFully(fd, raw) } catch let e as DDPMError { throw DDPMError("\(e.message) on \(path)") }
    }

    /// Overwrites bytes at `offset` (e.g. a header reserved at the start).
    public func write(_ bytes: [UInt8], at offset: Int) throws {
        let r = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard r == bytes.count else { throw DDPMError("write error on \(path): \(String(cString: strerror(errno)))") }
    }

    public func commit() throws {
        if inPlace {
            close(fd)
            committed = true
            return
        }
        guard fsync(fd) == 0 else { throw DDPMError("cannot sync \(tmp): \(String(cString: strerror(errno)))") }
        close(fd)
        committed = true
        guard rename(tmp, path) == 0 else {
            let m = String(cString: strerror(errno))
            unlink(tmp)
            throw DDPMError("cannot rename \(tmp) to \(path): \(m)")
        }
    }
}
