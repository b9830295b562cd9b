// --threads, shared by the tools that run networks: the default is the cores up to 2, shared
// among the ranks of one machine under mpirun (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE), so that
// `mpirun -np 2` on a 2-core machine runs 2 ranks x 1 thread, not 2 x 2 fighting for 2 cores.
import ArgumentParser
import Foundation

public struct ThreadArguments: ParsableArguments {
    @Option(help: "Threads (OpenBLAS and our own loops; default: the cores up to 2, shared among the ranks of one machine under mpirun). Results do not depend on it.")
    public var threads: Int?

    public init() {}

    public func validate() throws {
        if let threads, !(1...256).contains(threads) { throw ValidationError("--threads must lie in 1 ... 256, got \(threads)") }
    }

    /// Sets the process's thread count: the flag, else `defaultCount`.
    public func apply() { BLAS.maxThreads = threads ?? ThreadArguments.defaultCount }

    /// This machine's cores divided among its ranks, at most 2 and at least 1.
    public static var defaultCount: Int {
        max(1, min(2, ProcessInfo.processInfo.activeProcessorCount / Communicator.launchedLocalSize))
    }
}
