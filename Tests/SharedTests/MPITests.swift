// The mpirun forms with 2 ranks on this machine (Open MPI; skipped when mpirun is missing):
// sharded sampling equals the one-process stream byte for byte, over shared memory and over TCP;
// a tool that cannot share its work refuses, naming the rank; ranks given different flags stop
// with a message naming the odd rank; a killed rank ends the whole job within seconds.
// Data-parallel train: 2 ranks against 1 process for the MLP (bit for bit where each rank's share
// is one of the MLP's lanes, else within the bound of docs/PARALLEL.md) and a small U-Net with
// dropout over TCP; a 2-rank checkpoint resumed by 1 process; a killed rank; odd data.
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

    /// After `seconds`, kills (SIGKILL) the newest process named `name` whose command line
    /// holds `marker` followed by a space: one rank of the job under test.
    static func killNewestRank(named name: String, holding marker: String, after seconds: Double) {
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
            let k = Process()
            k.executableURL = URL(fileURLWithPath: "/bin/sh")
            k.arguments = ["-c", "for p in $(pgrep -x \(name)); do tr '\\0' ' ' < /proc/$p/cmdline | grep -q -- '\(marker) ' && echo $p; done | tail -n 1 | xargs -r kill -9"]
            try? k.run(); k.waitUntilExit()
        }
    }

    func testAKilledRankEndsTheJob() throws {
        guard MPITests.mpirun != nil else { throw XCTSkip("Open MPI's mpirun is not installed") }
        let out = temporaryDirectory().appendingPathComponent("out").path
        // A long run (1000 steps of 20,000 samples per rank), marked so that its ranks can be found.
        let marker = "\(UInt32.random(in: 0...UInt32.max))"
        let args = ["denoise", "--analytic", "gaussian mu=0 sigma=1", "--shape", "64", "-n", "40000", "--seed", marker, "--quiet"]
        MPITests.killNewestRank(named: "denoise", holding: "--seed \(marker)", after: 3)
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

    // MARK: data-parallel train

    /// Relative L2 distances ||a - b|| / ||a|| of the raw weights and of their EMA of two model files.
    func weightDistance(_ a: String, _ b: String) throws -> (raw: Double, ema: Double) {
        let fa = try Frame.load(path: a), fb = try Frame.load(path: b)
        var num = ["raw.": 0.0, "ema.": 0.0], den = num
        for (name, t) in fa.tensors {
            guard let prefix = ["raw.", "ema."].first(where: { name.hasPrefix($0) }) else { continue }
            let x = t.floats, y = try fb.require(name).floats
            XCTAssertEqual(x.count, y.count, name)
            for (u, v) in zip(x, y) { num[prefix]! += Double(u - v) * Double(u - v); den[prefix]! += Double(u) * Double(u) }
        }
        XCTAssertGreaterThan(den["raw."]!, 0, "no weights in \(a)")
        return ((num["raw."]! / den["raw."]!).squareRoot(), (num["ema."]! / den["ema."]!).squareRoot())
    }

    /// The `step,loss` lines of a log: the same steps, the losses within `tolerance` (relative).
    func assertLogsClose(_ a: String, _ b: String, tolerance: Double, file: StaticString = #filePath, line: UInt = #line) throws {
        let la = try String(contentsOfFile: a, encoding: .utf8).split(separator: "\n"), lb = try String(contentsOfFile: b, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(la.count, lb.count, "the logs have \(la.count) and \(lb.count) lines", file: file, line: line)
        XCTAssertEqual(la.first, "step,loss", file: file, line: line)
        var worst = 0.0
        for (x, y) in zip(la.dropFirst(), lb.dropFirst()) {
            let p = x.split(separator: ","), q = y.split(separator: ",")
            XCTAssertEqual(p[0], q[0], file: file, line: line)
            let u = Double(p[1])!, v = Double(q[1])!
            worst = max(worst, abs(u - v) / abs(u))
        }
        XCTAssertLessThanOrEqual(worst, tolerance, "the losses differ by \(worst) (relative)", file: file, line: line)
    }

    /// Writes a training set: `args` of `tensor`, into `name` in `dir`.
    func dataFile(_ dir: URL, _ name: String, _ args: [String]) throws -> String {
        let path = dir.appendingPathComponent(name).path
        try run("tensor", args).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The bound of docs/PARALLEL.md for a few dozen steps: the weights after K steps within 1e-5
    /// (relative L2), the loss of every step within 1e-5 (measured: about 1e-7 and 1e-8).
    static let dataParallelBound = 1e-5

    func testDataParallelMLPEqualsOneProcess() throws {
        guard MPITests.mpirun != nil else { throw XCTSkip("Open MPI's mpirun is not installed") }
        let dir = temporaryDirectory()
        let data = try dataFile(dir, "roll.st", ["toy", "swissroll", "-n", "2000", "--seed", "1"])
        // --batch 100: one process runs 2 lanes of 50 rows (MLP.laneCount), each rank 1 lane of
        // the same 50 rows, and the loss gradient's 1/100 = (1/50) * 0.5 is exact: bit for bit.
        // --batch 256: 2 lanes of 128 against 2 x 2 lanes of 64: the sums group differently.
        for (batch, steps) in [(100, 60), (256, 100)] {
            let common = ["--data", data, "--steps", String(steps), "--batch", String(batch), "--seed", "3", "--quiet"]
            let one = dir.appendingPathComponent("one-\(batch)").path, two = dir.appendingPathComponent("two-\(batch)").path
            let r1 = try runTool("train", common + ["-o", one + ".st", "--log", one + ".csv"])
            XCTAssertEqual(r1.status, 0, r1.stderr)
            let r2 = try mpi(["-np", "2"], ["train"] + common + ["-o", two + ".st", "--log", two + ".csv", "--checkpoint", two + ".ck.st"], stdout: "/dev/null")
            XCTAssertEqual(r2.status, 0, r2.stderr)
            XCTAssertEqual(r2.stderr, "", "a quiet run prints nothing")
            let d = try weightDistance(one + ".st", two + ".st")
            print("data-parallel MLP, batch \(batch), \(steps) steps: weights differ by \(d.raw) (raw), \(d.ema) (EMA), relative L2")
            if batch == 100 {
                XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: one + ".st")), try Data(contentsOf: URL(fileURLWithPath: two + ".st")),
                               "with each rank's share one of the MLP's lanes the model is the 1-process model byte for byte")
            } else {
                XCTAssertGreaterThan(d.raw, 0, "expected the grouping of the sums to show (else this case tests nothing new)")
            }
            XCTAssertLessThanOrEqual(d.raw, MPITests.dataParallelBound)
            XCTAssertLessThanOrEqual(d.ema, MPITests.dataParallelBound)
            try assertLogsClose(one + ".csv", two + ".csv", tolerance: MPITests.dataParallelBound)
            // The checkpoint holds the global batch and step, nothing of the ranks.
            let ck = try TrainCheckpoint(frame: try Frame.load(path: two + ".ck.st"))
            XCTAssertEqual(ck.step, steps)
            XCTAssertEqual(ck.config.batch, batch)
        }
    }

    let unetFlags = ["--channels", "16", "--mults", "1,2", "--res-blocks", "1", "--attn", "14", "--groups", "8", "--dropout", "0.1",
                     "--batch", "8", "--seed", "2", "--quiet"]

    func digits(_ dir: URL) throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let mnist = root.appendingPathComponent("data/mnist-10k")
        return try dataFile(dir, "digits.st", ["from-idx", mnist.appendingPathComponent("train-images-idx3-ubyte.gz").path,
                                               mnist.appendingPathComponent("train-labels-idx1-ubyte.gz").path, "--limit", "256"])
    }

    /// A small U-Net with dropout (masks keyed by the example's place in the whole batch: without
    /// that the weights differ by about 4e-4), the ranks talking over TCP.
    func testDataParallelUNetOverTCPEqualsOneProcess() throws {
        guard MPITests.mpirun != nil else { throw XCTSkip("Open MPI's mpirun is not installed") }
        let dir = temporaryDirectory()
        let common = ["--data", try digits(dir), "--steps", "10"] + unetFlags
        let one = dir.appendingPathComponent("one").path, two = dir.appendingPathComponent("two").path
        let r1 = try runTool("train", common + ["-o", one + ".st", "--log", one + ".csv"])
        XCTAssertEqual(r1.status, 0, r1.stderr)
        let r2 = try mpi(["-np", "2", "--mca", "btl", "tcp,self"], ["train"] + common + ["--log", two + ".csv"], stdout: two + ".st")
        XCTAssertEqual(r2.status, 0, r2.stderr)
        let d = try weightDistance(one + ".st", two + ".st")
        print("data-parallel U-Net over TCP, 10 steps: weights differ by \(d.raw) (raw), \(d.ema) (EMA), relative L2")
        XCTAssertLessThanOrEqual(d.raw, MPITests.dataParallelBound)
        XCTAssertLessThanOrEqual(d.ema, MPITests.dataParallelBound)
        try assertLogsClose(one + ".csv", two + ".csv", tolerance: MPITests.dataParallelBound)
    }

    /// 10 steps on 2 ranks, checkpointed, then 1 process to 20: the uninterrupted 1-process run.
    func testTwoRankCheckpointResumesWithOneProcess() throws {
        guard MPITests.mpirun != nil else { throw XCTSkip("Open MPI's mpirun is not installed") }
        let dir = temporaryDirectory()
        let data = try digits(dir)
        let path = { dir.appendingPathComponent($0).path }
        let r1 = try runTool("train", ["--data", data, "--steps", "20"] + unetFlags + ["-o", path("full.st"), "--log", path("full.csv")])
        XCTAssertEqual(r1.status, 0, r1.stderr)
        let r2 = try mpi(["-np", "2"], ["train", "--data", data, "--steps", "10"] + unetFlags + ["--checkpoint", path("ck.st"), "--log", path("resumed.csv")],
                         stdout: "/dev/null")
        XCTAssertEqual(r2.status, 0, r2.stderr)
        let r3 = try runTool("train", ["--data", data, "--steps", "20", "--resume", path("ck.st"), "--quiet", "-o", path("resumed.st"), "--log", path("resumed.csv")])
        XCTAssertEqual(r3.status, 0, r3.stderr)
        let d = try weightDistance(path("full.st"), path("resumed.st"))
        print("2-rank checkpoint resumed by 1 process: weights differ by \(d.raw) (raw), \(d.ema) (EMA), relative L2")
        XCTAssertLessThanOrEqual(d.raw, MPITests.dataParallelBound)
        XCTAssertLessThanOrEqual(d.ema, MPITests.dataParallelBound)
        try assertLogsClose(path("full.csv"), path("resumed.csv"), tolerance: MPITests.dataParallelBound)
    }

    func testAKilledRankEndsTraining() throws {
        guard MPITests.mpirun != nil else { throw XCTSkip("Open MPI's mpirun is not installed") }
        let dir = temporaryDirectory()
        let data = try dataFile(dir, "roll.st", ["toy", "swissroll", "-n", "2000", "--seed", "1"])
        let ck = dir.appendingPathComponent("ck.st").path
        // Far more steps than 3 s hold, a checkpoint every 20; the checkpoint path marks the ranks.
        let args = ["train", "--data", data, "--steps", "100000000", "--checkpoint", ck, "--every", "20", "--quiet", "-o", "/dev/null"]
        MPITests.killNewestRank(named: "train", holding: ck, after: 3)
        let start = Date()
        let r = try mpi(["-np", "2"], args, stdout: "/dev/null", timeout: 60)
        let took = Date().timeIntervalSince(start)
        XCTAssertFalse(r.timedOut, "the training outlived a killed rank")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(took, 3 + 10, "the job took \(took) s to end after a rank was killed")
        // The last checkpoint is whole (written to a temporary file, then renamed).
        let last = try TrainCheckpoint(frame: try Frame.load(path: ck))
        XCTAssertGreaterThan(last.step, 0)
        XCTAssertEqual(last.step % 20, 0)
        print("killed rank in train: mpirun ended \(String(format: "%.1f", took - 3)) s after the kill; checkpoint of step \(last.step) intact")
    }

    func testRanksGivenDifferentDataStop() throws {
        guard MPITests.mpirun != nil else { throw XCTSkip("Open MPI's mpirun is not installed") }
        let dir = temporaryDirectory()
        let a = try dataFile(dir, "a.st", ["toy", "moons", "-n", "500", "--seed", "1"])
        let b = try dataFile(dir, "b.st", ["toy", "moons", "-n", "500", "--seed", "2"])
        let train = productsDirectory.appendingPathComponent("train").path
        let rest = ["--steps", "5", "--quiet", "-o", dir.appendingPathComponent("m.st").path]
        let r = try mpi(["-np", "1"], ["train", "--data", a] + rest + [":", "-np", "1", train, "--data", b] + rest, stdout: "/dev/null", timeout: 60)
        XCTAssertFalse(r.timedOut, "ranks given different data hung")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("train (rank 0 of 2): train's flags, data, schedule or starting model differs between ranks: rank 1 against rank 0")
                      || r.stderr.contains("train (rank 1 of 2): train's flags, data, schedule or starting model differs between ranks: rank 1 against rank 0"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("m.st").path), "a model was written")
        // stdin reaches rank 0 only: the data must be a file.
        let s = try mpi(["-np", "2"], ["train", "--steps", "5"], stdout: "/dev/null", timeout: 60)
        XCTAssertNotEqual(s.status, 0)
        XCTAssertTrue(s.stderr.contains("under mpirun every rank reads the data: give --data FILE"), s.stderr)
    }

    /// --threads changes nothing in the model (one process).
    func testTrainThreadsDoNotChangeTheModel() throws {
        let dir = temporaryDirectory()
        let data = try digits(dir)
        let common = ["--data", data, "--steps", "3"] + unetFlags
        let one = try run("train", common + ["--threads", "1"]), two = try run("train", common + ["--threads", "2"])
        XCTAssertFalse(one.isEmpty)
        XCTAssertEqual(one, two, "the U-Net trained with 1 and 2 threads differs")
    }

    /// denoise's --threads (the group train shares) changes no sample; 0 is a one-line error.
    func testDenoiseThreadsDoNotChangeTheSamples() throws {
        let dir = temporaryDirectory()
        let model = dir.appendingPathComponent("m.st").path
        _ = try run("train", ["--data", try digits(dir), "--steps", "2", "-o", model] + unetFlags)
        let common = ["--model", model, "-n", "6", "--steps", "4", "--seed", "3", "--quiet"]
        let one = try run("denoise", common + ["--threads", "1"]), two = try run("denoise", common + ["--threads", "2"])
        XCTAssertGreaterThan(one.count, 6 * 28 * 28 * 4)
        XCTAssertEqual(one, two, "samples with 1 and 2 threads differ")
        let bad = try runTool("denoise", common + ["--threads", "0"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--threads must lie in 1 ... 256, got 0"), bad.stderr)
    }
}
