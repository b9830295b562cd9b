// The mpirun forms with 2 ranks on this machine (Open MPI; skipped when mpirun is missing):
// sharded sampling equals the one-process stream byte for byte, over shared memory and over TCP;
// a tool that cannot share its work refuses, naming the rank; ranks given different flags stop
// with a message naming the odd rank; a killed rank ends the whole job within seconds.
import Foundation
import XCTest
@testable import Shared

final class MPITests: XCTestCase {
    static let mpirun: String? = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// mpirun -np 2 (oversubscribed: 2 ranks on 2 cores are fine, root allowed as in CI) with
    /// `options` before the program; `program` is a tool name and its arguments. stdout to a file.
    func mpi(_ options: [String], _ program: [String], stdout: String, timeout: Double = 120) throws -> GuardedResult {
        guard let mpirun = MPITests.mpirun else { throw XCTSkip("Open MPI's mpirun is not installed") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        let tool = productsDirectory.appendingPathComponent(program[0]).path
        // timeout(1) ends mpirun with SIGTERM, which mpirun passes on to its ranks.
        let words = ["timeout", "-k", "5", String(Int(timeout)), mpirun, "--oversubscribe"] + options + [tool] + program.dropFirst()
        p.arguments = ["-c", words.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ") + " > '\(stdout)'"]
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        let err = Pipe()
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let start = Date()
        var errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        p.waitUntilExit()
        let timedOut = p.terminationStatus == 124 || Date().timeIntervalSince(start) >= timeout
        group.wait()
        return GuardedResult(status: p.terminationStatus, signal: nil, timedOut: timedOut, stdout: Data(), stderr: String(decoding: errData, as: UTF8.self))
    }

    let sampleArgs = ["denoise", "--analytic", "mixture mu=-1,1 sigma=0.3,0.5", "--shape", "6", "-n", "1000", "--batch", "96",
                      "--steps", "20", "--sampler", "ddpm", "--seed", "5", "--quiet"]

    func testShardedSamplingEqualsOneProcess() throws {
        let dir = temporaryDirectory()
        let one = try runTool(sampleArgs[0], Array(sampleArgs.dropFirst()))
        XCTAssertEqual(one.status, 0, one.stderr)
        for (name, options) in [("shared memory", [String]()), ("tcp", ["--mca", "btl", "tcp,self"])] {
            let path = dir.appendingPathComponent("two-\(name).st").path
            let r = try mpi(["-np", "2"] + options, sampleArgs, stdout: path)
            XCTAssertEqual(r.status, 0, "\(name): \(r.stderr)")
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), one.stdout, "\(name): the 2-rank stream differs from the 1-process one")
        }
    }

    func testToolsThatDoNotShareRefuse() throws {
        let dir = temporaryDirectory().appendingPathComponent("out").path
        let r = try mpi(["-np", "2"], ["schedule", "--text"], stdout: dir)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("schedule (rank 0 of 2): schedule does not share its work among ranks"), r.stderr)
        let nll = try mpi(["-np", "2"], ["denoise", "--analytic", "gaussian mu=0 sigma=1", "--shape", "2", "--from", "10"], stdout: dir)
        XCTAssertNotEqual(nll.status, 0)
        XCTAssertTrue(nll.stderr.contains("only sampling from noise is shared among ranks"), nll.stderr)
    }

    func testRanksWithDifferentFlagsStop() throws {
        guard let mpirun = MPITests.mpirun else { throw XCTSkip("Open MPI's mpirun is not installed") }
        _ = mpirun
        let out = temporaryDirectory().appendingPathComponent("out").path
        var other = sampleArgs
        other[other.firstIndex(of: "--seed")! + 1] = "6"
        // MPMD: rank 0 and rank 1 run different command lines.
        let r = try mpi(["-np", "1"], sampleArgs + [":", "-np", "1", productsDirectory.appendingPathComponent("denoise").path] + other.dropFirst(), stdout: out, timeout: 60)
        XCTAssertFalse(r.timedOut, "ranks with different flags hung")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("differs between ranks: rank 1 against rank 0"), r.stderr)
    }

    func testAKilledRankEndsTheJob() throws {
        guard MPITests.mpirun != nil else { throw XCTSkip("Open MPI's mpirun is not installed") }
        let out = temporaryDirectory().appendingPathComponent("out").path
        // A long run (1000 steps of 20,000 samples per rank), marked so that its ranks can be found.
        let marker = "\(UInt32.random(in: 0...UInt32.max))"
        let args = ["denoise", "--analytic", "gaussian mu=0 sigma=1", "--shape", "64", "-n", "40000", "--seed", marker, "--quiet"]
        DispatchQueue.global().asyncAfter(deadline: .now() + 3) {
            // Kill one rank: the newest process named denoise whose arguments hold the marker.
            let k = Process()
            k.executableURL = URL(fileURLWithPath: "/bin/sh")
            k.arguments = ["-c", "for p in $(pgrep -x denoise); do tr '\\0' ' ' < /proc/$p/cmdline | grep -q -- '--seed \(marker) ' && echo $p; done | tail -n 1 | xargs -r kill -9"]
            try? k.run(); k.waitUntilExit()
        }
        let start = Date()
        let r = try mpi(["-np", "2"], args, stdout: out, timeout: 60)
        let took = Date().timeIntervalSince(start)
        XCTAssertFalse(r.timedOut, "the job outlived a killed rank")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(took, 3 + 10, "the job took \(took) s to end after a rank was killed")
        print("killed rank: mpirun ended \(String(format: "%.1f", took - 3)) s after the kill: \(r.stderr.split(separator: "\n").first ?? "")")
    }

    /// examples/shards.sh: --offset shards concatenate to the one-process stream (no MPI needed).
    func testOffsetShardsScript() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let r = try runBash([root.appendingPathComponent("examples/shards.sh").path, "4"])
        let text = String(decoding: r.stdout, as: UTF8.self)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(text.contains("= one process, byte for byte"), text)
    }
}
