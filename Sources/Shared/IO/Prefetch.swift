// Overlapping input with work: a background thread reads the next frames while
// the caller computes on the current one (bounded: at most `depth` frames ahead).
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads frames from a FrameReader on a background thread, up to `depth` frames ahead.
/// `next()` returns them in order; an error is returned in its place in the stream.
public final class FramePrefetcher: @unchecked Sendable {
    private let cond = NSCondition()
    private var queue: [Result<Frame?, Error>] = []
    private let depth: Int
    public let name: String

    public init(_ reader: FrameReader, depth: Int = 2) {
        self.depth = max(1, depth)
        self.name = reader.name
        let thread = Thread { [self] in
            while true {
                cond.lock()
                while queue.count >= self.depth { cond.wait() }
                cond.unlock()
                let r = Result<Frame?, Error> { try reader.next() }
                cond.lock()
                queue.append(r)
                cond.broadcast()
                cond.unlock()
                guard case .success(.some) = r else { return }   // end of stream or error: stop
            }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// The next frame, or nil at the end of the stream; after the end or an error, the same again.
    public func next() throws -> Frame? {
        cond.lock()
        while queue.isEmpty { cond.wait() }
        let r = queue[0]
        if case .success(.some) = r { queue.removeFirst() }
        cond.broadcast()
        cond.unlock()
        return try r.get()
    }
}

public enum Memory {
    /// Keeps freed buffers of up to 32 MiB in the heap for reuse (glibc mallopt
    /// M_MMAP_THRESHOLD, M_TRIM_THRESHOLD) instead of unmapping them, so a tool
    /// that allocates the same few-MB tensors frame after frame does not pay
    /// page faults for fresh memory on every frame.
    public static func reuseLargeAllocations() {
        #if canImport(Glibc)
        // mallopt is not in the Glibc module (malloc.h): look it up. RTLD_DEFAULT is 0.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(sym, to: Mallopt.self)
        _ = mallopt(-3 /* M_MMAP_THRESHOLD */, 32 << 20)   // glibc's maximum on 64-bit
        _ = mallopt(-1 /* M_TRIM_THRESHOLD */, 1 << 30)
        #endif
    }
}
