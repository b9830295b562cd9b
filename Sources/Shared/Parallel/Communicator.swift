// Many processes, one job: Open MPI's MPI_COMM_WORLD when a tool is started by mpirun, loaded at
// run time (Sources/CMPI), so a tool started without mpirun never touches MPI and the toolkit
// builds without Open MPI installed. Launched = Open MPI's launcher set OMPI_COMM_WORLD_SIZE.
// DDPM_MPI_LIB names another libmpi (default libmpi.so.40).
//
// Errors: MPI calls return their codes (MPI_ERRORS_RETURN); a failure is a DDPMError naming the
// call and the rank. A tool that fails under mpirun prints its one line with its rank and ends
// the whole job (MPI_Abort: Tool.swift), so no rank waits forever for one that has given up.
import CMPI
import Foundation

public final class Communicator {
    public let rank: Int
    public let size: Int

    /// Started by Open MPI's mpirun (or srun with Open MPI's PMIx).
    public static var launched: Bool { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil }
    /// The job's size as the launcher announced it (1 without mpirun), read without starting MPI.
    public static var launchedSize: Int { Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] ?? "1") ?? 1 }
    /// The ranks of this job on this machine as the launcher announced them (1 without mpirun).
    public static var launchedLocalSize: Int {
        max(1, Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "1") ?? 1)
    }

    private static let opened: Result<Communicator?, DDPMError> = {
        guard launched else { return .success(nil) }
        do { return .success(try Communicator()) } catch let e as DDPMError { return .failure(e) } catch { return .failure(DDPMError("\(error)")) }
    }()

    /// The job's communicator under mpirun (MPI initialised on first use), nil without mpirun.
    public static func world() throws -> Communicator? { try opened.get() }

    private init() throws {
        var err = [CChar](repeating: 0, count: 512)
        let lib = ProcessInfo.processInfo.environment["DDPM_MPI_LIB"]
        let rc = lib.map { p in p.withCString { ddpm_mpi_load($0, &err, Int32(err.count)) } } ?? ddpm_mpi_load(nil, &err, Int32(err.count))
        guard rc == 0 else {
            throw DDPMError("started by mpirun, but " + String(cString: err) + "; install Open MPI (openmpi-bin) or set DDPM_MPI_LIB")
        }
        try Communicator.check(ddpm_mpi_init(), "MPI_Init_thread", rank: nil)
        var r: Int32 = 0, s: Int32 = 0
        try Communicator.check(ddpm_mpi_rank(&r), "MPI_Comm_rank", rank: nil)
        try Communicator.check(ddpm_mpi_size(&s), "MPI_Comm_size", rank: nil)
        rank = Int(r); size = Int(s)
    }

    static func check(_ rc: Int32, _ call: String, rank: Int?) throws {
        guard rc != 0 else { return }
        var text = [CChar](repeating: 0, count: 512)
        ddpm_mpi_error_string(rc, &text, Int32(text.count))
        throw DDPMError("\(call) failed\(rank.map { " on rank \($0)" } ?? ""): \(String(cString: text))")
    }

    /// "rank 1 of 4" for messages.
    public var name: String { "rank \(rank) of \(size)" }

    /// In-place sum over all ranks.
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        try Communicator.check(ddpm_mpi_allreduce_sum_float(buffer.baseAddress, Int64(buffer.count)), "MPI_Allreduce", rank: rank)
    }
    public func allReduceSum(_ values: inout [Double]) throws {
        let rc = values.withUnsafeMutableBufferPointer { ddpm_mpi_allreduce_sum_double($0.baseAddress, Int64($0.count)) }
        try Communicator.check(rc, "MPI_Allreduce", rank: rank)
    }

    /// Every rank's value, in rank order.
    public func allGather(_ value: UInt64) throws -> [UInt64] {
        var out = [UInt64](repeating: 0, count: size)
        try Communicator.check(ddpm_mpi_allgather_u64(value, &out), "MPI_Allgather", rank: rank)
        return out
    }

    /// Every rank must hold the same `fingerprint` of `what` (flags, data, model): else an error
    /// naming the ranks that differ from rank 0, raised on every rank alike.
    public func agree(_ what: String, fingerprint: UInt64) throws {
        let all = try allGather(fingerprint)
        let odd = all.indices.filter { all[$0] != all[0] }
        guard odd.isEmpty else {
            throw DDPMError("\(what) differs between ranks: rank\(odd.count > 1 ? "s" : "") \(odd.map(String.init).joined(separator: ", ")) against rank 0 (every rank must be given the same flags, data and files)")
        }
    }

    public func broadcast(_ bytes: inout [UInt8], root: Int = 0) throws {
        let rc = bytes.withUnsafeMutableBytes { ddpm_mpi_bcast_bytes($0.baseAddress, Int64($0.count), Int32(root)) }
        try Communicator.check(rc, "MPI_Bcast", rank: rank)
    }

    public func send(_ bytes: UnsafeRawBufferPointer, to dest: Int, tag: Int) throws {
        try Communicator.check(ddpm_mpi_send_bytes(bytes.baseAddress, Int64(bytes.count), Int32(dest), Int32(tag)), "MPI_Send", rank: rank)
    }
    public func receive(_ bytes: UnsafeMutableRawBufferPointer, from source: Int, tag: Int) throws {
        try Communicator.check(ddpm_mpi_recv_bytes(bytes.baseAddress, Int64(bytes.count), Int32(source), Int32(tag)), "MPI_Recv", rank: rank)
    }

    public func barrier() throws { try Communicator.check(ddpm_mpi_barrier(), "MPI_Barrier", rank: rank) }

    /// Ends every process of the job with `code`.
    public func abort(_ code: Int32) -> Never {
        ddpm_mpi_abort(code)
        exit(code)
    }

    public func finalize() { _ = ddpm_mpi_finalize() }
}

/// A command that knows how to share its work among the ranks of an mpirun job; any other command
/// refuses to run with more than one rank (each would do the whole work and write it again).
public protocol ShardedCommand {}

/// FNV-1a over bytes: a fingerprint to compare flags and data between ranks (not a security hash).
public struct Fingerprint {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}
    public mutating func add(_ bytes: UnsafeRawBufferPointer) {
        for b in bytes { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    }
    public mutating func add(_ text: String) { var t = text; t.withUTF8 { add(UnsafeRawBufferPointer($0)) }; add([UInt8(0xFF)]) }
    public mutating func add(_ values: [Float]) { values.withUnsafeBytes { add($0) } }
    public mutating func add(_ bytes: [UInt8]) { bytes.withUnsafeBytes { add($0) } }
}
