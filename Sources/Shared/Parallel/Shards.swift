// Sharding a sampling run over the ranks of a job: rank r draws whole batches, a contiguous run
// of them, so that its frames are exactly the frames a one-process run writes for those samples
// (sample j draws only from its own streams: Sampling/Sample.swift); rank 0 then writes its own
// frames and every other rank's, in rank order: one stream, byte for byte the one-process stream.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum Shards {
    /// The samples of `rank` among `size` ranks for n samples in batches of b: batches
    /// floor(r B / size) ..< floor((r + 1) B / size) of the B = ceil(n / b) batches.
    public static func range(count n: Int, batch b: Int, rank: Int, size: Int) -> Range<Int> {
        precondition(b >= 1 && size >= 1 && rank >= 0 && rank < size && n >= 0)
        let batches = (n + b - 1) / b
        let lo = batches * rank / size, hi = batches * (rank + 1) / size
        return min(n, lo * b) ..< min(n, hi * b)
    }
}

/// Where a rank's frames go: rank 0 straight to stdout, other ranks to an unlinked temporary file
/// that `finish` sends to rank 0 in pieces, which writes them after its own.
public final class GatheredOutput {
    public let comm: Communicator
    public let writer: FrameWriter
    private let fd: Int32
    private static let piece = 64 << 20
    private static let sizeTag = 17, dataTag = 18

    public init(comm: Communicator) throws {
        self.comm = comm
        if comm.rank == 0 {
            // mpirun hands rank 0 a pseudo-terminal for stdout and forwards it to its own stdout,
            // which the terminal check of FrameWriter has already been applied to by the user.
            writer = try FrameWriter(allowTerminal: true)
            fd = 1
        } else {
            var template = Array(((ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/ddpm-shard-XXXXXX").utf8CString)
            let f = mkstemp(&template)
            guard f >= 0 else { throw DDPMError("cannot create a temporary file for this rank's samples: \(String(cString: strerror(errno)))") }
            unlink(template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
            fd = f
            writer = try FrameWriter(fd: f, allowTerminal: true, name: "this rank's temporary file")
        }
    }

    /// Rank 0: receives and writes every other rank's frames in rank order. Other ranks: send theirs.
    public func finish() throws {
        if comm.rank == 0 {
            var buffer = [UInt8](repeating: 0, count: GatheredOutput.piece)
            for r in 1..<comm.size {
                var size: UInt64 = 0
                try withUnsafeMutableBytes(of: &size) { try comm.receive($0, from: r, tag: GatheredOutput.sizeTag) }
                var left = Int(size)
                while left > 0 {
                    let n = min(left, buffer.count)
                    try buffer.withUnsafeMutableBytes { try comm.receive(UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), from: r, tag: GatheredOutput.dataTag) }
                    try buffer.withUnsafeBytes { try FileDescriptor.writeFully(1, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    left -= n
                }
            }
            return
        }
        defer { close(fd) }
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0, lseek(fd, 0, SEEK_SET) == 0 else { throw DDPMError("cannot read back this rank's samples: \(String(cString: strerror(errno)))") }
        var size = UInt64(end)
        try withUnsafeBytes(of: &size) { try comm.send($0, to: 0, tag: GatheredOutput.sizeTag) }
        var buffer = [UInt8](repeating: 0, count: GatheredOutput.piece)
        var left = Int(end)
        while left > 0 {
            let n = min(left, buffer.count)
            let got = try buffer.withUnsafeMutableBytes { try FileDescriptor.readFully(fd, UnsafeMutableRawBufferPointer(rebasing: $0[0..<n])) }
            guard got == n else { throw DDPMError("this rank's temporary file ended early") }
            try buffer.withUnsafeBytes { try comm.send(UnsafeRawBufferPointer(rebasing: $0[0..<n]), to: 0, tag: GatheredOutput.dataTag) }
            left -= n
        }
    }
}
