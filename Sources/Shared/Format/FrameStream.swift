// Reading and writing frame streams over file descriptors, frame by frame,
// in bounded memory: each tensor's bytes are read straight into its storage.
#if canImport(Glibc)
import Glibc
#endif

/// Reads frames one at a time from a file descriptor (stdin by default).
public final class FrameReader {
    public let fd: Int32
    public let name: String
    private let ownsFD: Bool
    /// How many frames have been read so far; errors name frame `framesRead + 1`.
    public private(set) var framesRead = 0
    private var pushedBack: Frame?

    public init(fd: Int32 = 0, name: String = "stdin") {
        self.fd = fd
        self.name = name
        self.ownsFD = false
        if fd == 0 { Pipes.enlarge(fd) }
    }

    public init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw DDPMError("cannot open \(path): \(String(cString: strerror(errno)))") }
        self.fd = fd
        self.name = path
        self.ownsFD = true
    }

    deinit { if ownsFD { close(fd) } }

    /// Puts a frame back so that the next `next()` returns it (used to peek at a leading schedule frame).
    public func pushBack(_ frame: Frame) { pushedBack = frame }

    /// The next frame, or nil at a clean end of stream.
    public func next() throws -> Frame? {
        if let f = pushedBack { pushedBack = nil; return f }
        let n = framesRead + 1
        do {
            guard let frame = try readFrame() else { return nil }
            framesRead = n
            return frame
        } catch let e as DDPMError {
            throw DDPMError("\(name): frame \(n): \(e.message)")
        }
    }

    /// Reads every remaining frame.
    public func readAll() throws -> [Frame] {
        var frames: [Frame] = []
        while let f = try next() { frames.append(f) }
        return frames
    }

    private func readFrame() throws -> Frame? {
        var lengthBytes = [UInt8](repeating: 0, count: 8)
        let got = try lengthBytes.withUnsafeMutableBytes { try readFully($0) }
        if got == 0 { return nil }
        guard got == 8 else { throw DDPMError("truncated frame: \(got) of 8 header-length bytes") }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(lengthBytes[i]) << (8 * UInt64(i)) }
        guard n >= 2 else { throw DDPMError("header length \(n) is too small") }
        guard n <= UInt64(maxHeaderBytes) else {
            throw DDPMError("header length \(n) exceeds the limit of \(maxHeaderBytes) bytes (not a tensor stream?)")
        }
        var header = [UInt8](repeating: 0, count: Int(n))
        let hgot = try header.withUnsafeMutableBytes { try readFully($0) }
        guard hgot == Int(n) else { throw DDPMError("truncated frame: header has \(hgot) of \(n) bytes") }
        let (metadata, entries, _) = try Safetensors.parseHeader(header)
        var frame = Frame(metadata: metadata)
        for e in entries {
            let storage: TensorStorage
            let count = e.shape.reduce(1, *)
            switch e.dtype {
            case .f32: storage = .f32(try readArray(Float.self, count: count, entry: e))
            case .f64: storage = .f64(try readArray(Double.self, count: count, entry: e))
            case .i64: storage = .i64(try readArray(Int64.self, count: count, entry: e))
            case .i32: storage = .i32(try readArray(Int32.self, count: count, entry: e))
            case .u8: storage = .u8(try readArray(UInt8.self, count: count, entry: e))
            }
            frame[e.name] = Tensor(shape: e.shape, storage: storage)
        }
        return frame
    }

    /// Largest single tensor accepted (the machine has 24 GiB).
    static let maxTensorBytes = 16 << 30
    /// Tensors larger than this are read in chunks, so a header that promises
    /// more data than the stream holds fails on the data, not on a huge allocation.
    static let chunkBytes = 64 << 20

    private func readArray<T>(_ type: T.Type, count: Int, entry: TensorEntry) throws -> [T] {
        let size = MemoryLayout<T>.stride
        guard count * size <= FrameReader.maxTensorBytes else {
            throw DDPMError("tensor '\(entry.name)' has \(count * size) bytes, over the limit of \(FrameReader.maxTensorBytes)")
        }
        if count * size > FrameReader.chunkBytes {
            var a: [T] = []
            let step = FrameReader.chunkBytes / size
            while a.count < count {
                let part = try readArrayDirect(T.self, count: min(step, count - a.count), entry: entry, before: a.count * size, total: count * size)
                a.append(contentsOf: part)
            }
            return a
        }
        return try readArrayDirect(T.self, count: count, entry: entry, before: 0, total: count * size)
    }

    private func readArrayDirect<T>(_ type: T.Type, count: Int, entry: TensorEntry, before: Int, total: Int) throws -> [T] {
        var got = 0
        let a = [T](unsafeUninitializedCapacity: count) { buf, initialized in
            got = (try? readFully(UnsafeMutableRawBufferPointer(buf))) ?? -1
            initialized = count  // plain-old-data; contents checked below
        }
        guard got == count * MemoryLayout<T>.stride else {
            throw DDPMError("truncated frame: tensor '\(entry.name)' has \(before + max(got, 0)) of \(total) bytes")
        }
        return a
    }

    /// Reads until the buffer is full or end of file; returns the bytes read.
    private func readFully(_ buf: UnsafeMutableRawBufferPointer) throws -> Int { try FileDescriptor.readFully(fd, buf) }
}

/// Writes frames to a file descriptor (stdout by default).
public final class FrameWriter {
    public let fd: Int32
    /// The destination in error messages: "stdout" for fd 1 unless given.
    public let name: String

    /// Refuses a terminal on stdout, as gzip does: binary data there helps nobody.
    public init(fd: Int32 = 1, allowTerminal: Bool = false, name: String? = nil) throws {
        if !allowTerminal && isatty(fd) != 0 {
            throw DDPMError("refusing to write a binary tensor stream to a terminal; redirect to a file or pipe (e.g. '| tensor info')")
        }
        self.fd = fd
        self.name = name ?? (fd == 1 ? "stdout" : "file descriptor \(fd)")
        if fd == 1 { Pipes.enlarge(fd) }
    }

    public func write(_ frame: Frame) throws {
        let header = Safetensors.header(for: frame)
        var length = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { length[i] = UInt8((UInt64(header.count) >> (8 * UInt64(i))) & 0xFF) }
        try length.withUnsafeBytes { try writeFully($0) }
        try header.withUnsafeBytes { try writeFully($0) }
        for (_, t) in frame.tensors {
            switch t.storage {
            case .f32(let a): try a.withUnsafeBytes { try writeFully($0) }
            case .f64(let a): try a.withUnsafeBytes { try writeFully($0) }
            case .i64(let a): try a.withUnsafeBytes { try writeFully($0) }
            case .i32(let a): try a.withUnsafeBytes { try writeFully($0) }
            case .u8(let a): try a.withUnsafeBytes { try writeFully($0) }
            }
        }
    }

    /// Every write is checked: a full disk or a closed reader is an error naming the destination.
    private func writeFully(_ buf: UnsafeRawBufferPointer) throws {
        do { try FileDescriptor.writeFully(fd, buf) } catch let e as DDPMError {
            throw DDPMError(e.message.replacingPrefix("write error", with: "write error on \(name)"))
        }
    }
}

extension String {
    func replacingPrefix(_ prefix: String, with other: String) -> String {
        hasPrefix(prefix) ? other + dropFirst(prefix.count) : self
    }
}

public enum Pipes {
    /// Grows a pipe's buffer to 1 MiB (F_SETPIPE_SZ): pipe throughput goes from
    /// ~0.5 to ~3.5 GB/s on this machine (docs/BENCHMARKS.md). Not a pipe: no-op.
    public static func enlarge(_ fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFIFO else { return }
        _ = fcntl(fd, 1031 /* F_SETPIPE_SZ */, 1 << 20)
    }
}

extension Frame {
    /// Reads a file that holds exactly one frame (a .safetensors file, e.g. a model).
    public static func load(path: String) throws -> Frame {
        let r = try FrameReader(path: path)
        guard let f = try r.next() else { throw DDPMError("\(path): empty file, expected one frame") }
        return f
    }

    /// Reads every frame of a stream file.
    public static func loadAll(path: String) throws -> [Frame] {
        try FrameReader(path: path).readAll()
    }

    /// Writes frames to `path` atomically: a temporary file in the same folder,
    /// fsync, then rename, so a crash never leaves a half-written file behind.
    public static func save(_ frames: [Frame], path: String) throws {
        // A device or FIFO (-o /dev/null, a named pipe) is written in place: renaming over it would replace it.
        var st = stat()
        if stat(path, &st) == 0, (st.st_mode & S_IFMT) != S_IFREG, (st.st_mode & S_IFMT) != S_IFDIR {
            let fd = open(path, O_WRONLY)
            guard fd >= 0 else { throw DDPMError("cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            let w = try FrameWriter(fd: fd, allowTerminal: true, name: path)
            for f in frames { try w.write(f) }
            return
        }
        let tmp = path + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw DDPMError("cannot create \(tmp): \(String(cString: strerror(errno)))") }
        do {
            let w = try FrameWriter(fd: fd, allowTerminal: true, name: tmp)
            for f in frames { try w.write(f) }
            guard fsync(fd) == 0 else { throw DDPMError("cannot sync \(tmp): \(String(cString: strerror(errno)))") }
            close(fd)
        } catch {
            close(fd)
            unlink(tmp)
            throw error
        }
        guard rename(tmp, path) == 0 else {
            let msg = String(cString: strerror(errno))
            unlink(tmp)
            throw DDPMError("cannot rename \(tmp) to \(path): \(msg)")
        }
    }

    public func save(path: String) throws { try Frame.save([self], path: path) }
}
